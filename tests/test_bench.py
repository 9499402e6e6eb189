"""`peftlab bench`: suites read and checked before anything trains, a tiny suite (two tasks, two methods, one seed, a
few steps) run end to end into the suite table, resume across tasks after an interruption, and the built-in suite."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from peftlab.bench import BUILTIN_SUITES, load_suite, run_suite
from peftlab.bench.run import SUITE_FILE, SUITE_MARKDOWN, TASKS_DIR
from peftlab.bench.table import family_summary, quality_cell, suite_markdown
from peftlab.errors import ConfigError, DataError
from peftlab.files import STORE_FILE
from peftlab.study.store import StudyStore

from conftest import FIXED_RATES, tiny_texts

BIGBENCH = Path(__file__).resolve().parents[2] / "shared" / "data" / "bigbench"


def write_suite(folder: Path, tiny_bert_dir, **changes) -> Path:
    """Two tiny CSV tasks in FOLDER and a suite over them: full and head, one seed, 4 steps, small robustness."""
    tiny_texts(120, seed=1).to_csv(folder / "easy.csv", index=False)
    tiny_texts(120, seed=2).rename(columns={"text": "review", "label": "stars"}).to_csv(folder / "other.csv", index=False)
    suite = {
        "name": "tiny", "model": str(tiny_bert_dir), "methods": ["full", "head"], "seeds": 1,
        "compare": {"max_steps": 4, "batch_size": 16, "max_length": 32, "perturb_examples": 12, "attack_examples": 2,
                    "attack_query_budget": 10, "diagnose": False, **FIXED_RATES},
        "tasks": [
            {"name": "easy", "family": "simple", "data": "easy.csv"},
            {"name": "other", "family": "renamed columns", "data": "other.csv",
             "compare": {"text_column": "review", "label_column": "stars", "robustness": False}},
        ],
    }
    suite.update(changes)
    path = folder / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    return path


def comparable(suite_json: dict) -> list:
    return [(task["name"], {m: (c["mean"], c["difference_points"], c["robust_drop_points"]) for m, c in task["methods"].items()})
            for task in suite_json["tasks"]]


def test_tiny_suite_end_to_end_and_resume_across_tasks(tmp_path, tiny_bert_dir):
    path = write_suite(tmp_path, tiny_bert_dir)
    suite = load_suite(str(path))
    assert [task.data for task in suite.tasks] == [str((tmp_path / "easy.csv").resolve()), str((tmp_path / "other.csv").resolve())]

    reference = run_suite(suite, tmp_path / "uninterrupted")
    assert reference["pending"] == [] and [t["name"] for t in reference["tasks"]] == ["easy", "other"]
    easy = reference["tasks"][0]
    assert easy["metric"] == "accuracy" and easy["train_examples"] == 96
    assert 0.5 <= easy["test_majority_share"] <= 1  # two labels: the commoner one is at least half of the test split
    easy_runs = json.loads((tmp_path / "uninterrupted" / TASKS_DIR / "easy" / "results.json").read_text())["runs"]
    assert easy["run_seconds"] == pytest.approx(sum(run["timing"]["wall_seconds"] for run in easy_runs))
    for method in ("full", "head"):
        cell = easy["methods"][method]
        assert cell["n"] == 1 and 0 <= cell["mean"] <= 1 and cell["std"] is None and cell["failed"] == 0
        assert cell["robust_drop_points"] is not None  # robustness on for this task
        run = next(r for r in easy_runs if r["method"] == method)
        assert cell["generalization_gap_points"] == pytest.approx(run["generalization"]["gap_points"]["accuracy"])
        assert cell["forgetting_cka"] == pytest.approx(run["forgetting"]["cka"])
        assert cell["forgetting_lm_loss_change"] is None  # an encoder: no LM loss
    head_vs_full = easy["methods"]["head"]["robust_drop_vs_full"]  # paired over the same perturbed examples
    assert head_vs_full["test"] == "paired_bootstrap" and head_vs_full["examples"] == 12
    assert head_vs_full["difference"] == pytest.approx(easy["methods"]["head"]["robust_drop_points"]
                                                       - easy["methods"]["full"]["robust_drop_points"])
    assert easy["methods"]["full"]["difference_points"] == 0
    head = easy["methods"]["head"]
    assert head["difference_points"] == pytest.approx(100 * (head["mean"] - easy["methods"]["full"]["mean"]))
    assert reference["tasks"][1]["methods"]["head"]["robust_drop_points"] is None  # robustness off for this task
    assert set(reference["families"]) == {"simple", "renamed columns"}
    markdown = (tmp_path / "uninterrupted" / SUITE_MARKDOWN).read_text()
    assert f"| easy | simple | {100 * easy['test_majority_share']:.1f} |" in markdown and "## By task family" in markdown and "Not run yet" not in markdown
    assert "## Overfitting and forgetting" in markdown and f"CKA {easy['methods']['head']['forgetting_cka']:.3f}" in markdown

    # Interrupt inside the second task, after its first run: the first task and that run are kept.
    out = tmp_path / "interrupted"

    def stop_in_other(task, run):
        if task.name == "other":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_suite(suite, out, on_run_done=stop_in_other)
    partial = json.loads((out / SUITE_FILE).read_text())
    assert [t["name"] for t in partial["tasks"]] == ["easy"] and partial["pending"] == ["other"]
    assert "Not run yet" in (out / SUITE_MARKDOWN).read_text()
    easy_rows = {row["run_key"]: row for row in StudyStore(out / TASKS_DIR / "easy" / STORE_FILE).runs()}
    other_rows = {row["run_key"]: row for row in StudyStore(out / TASKS_DIR / "other" / STORE_FILE).runs()}
    assert [row["status"] for row in other_rows.values()] == ["ok"]  # full finished before the interruption

    seen = []
    resumed = run_suite(suite, out, on_run_done=lambda task, run: seen.append((task.name, run["method"])))
    assert seen == [("other", "head")]  # nothing of the first task, nor the finished run, is repeated
    for key, row in easy_rows.items():
        assert StudyStore(out / TASKS_DIR / "easy" / STORE_FILE).run(key)["finished_at"] == row["finished_at"]
    assert StudyStore(out / TASKS_DIR / "other" / STORE_FILE).run("run/full/seed=0/lr=default")["attempts"] == 1
    assert comparable(resumed) == comparable(reference)

    # A third call finds everything done and only rewrites the table.
    again = run_suite(suite, out, on_run_done=lambda task, run: seen.append(task.name))
    assert seen == [("other", "head")] and comparable(again) == comparable(reference)


def test_more_seeds_later_adds_only_the_new_seeds(tmp_path, tiny_bert_dir):
    path = write_suite(tmp_path, tiny_bert_dir)
    first = run_suite(load_suite(str(path), only_tasks=["other"], seeds=1), tmp_path / "out")
    assert first["tasks"][0]["methods"]["head"]["n"] == 1
    seen = []
    second = run_suite(load_suite(str(path), only_tasks=["other"], seeds=2), tmp_path / "out",
                       on_run_done=lambda task, run: seen.append((run["method"], run["seed"])))
    assert seen == [("full", 1), ("head", 1)]
    head = second["tasks"][0]["methods"]["head"]
    assert head["n"] == 2 and head["std"] is not None and head["vs_full"] is not None
    assert second["suite"]["seeds"] == 2
    with pytest.raises(ConfigError, match="--seeds must be at least 1"):
        load_suite(str(path), seeds=0)

    # The task's own settings changed: its finished results are not reused; its study refuses the other budget.
    suite = yaml.safe_load(path.read_text())
    suite["tasks"][1]["compare"]["max_steps"] = 5
    path.write_text(yaml.safe_dump(suite))
    with pytest.raises(ConfigError, match="differs in budget"):
        run_suite(load_suite(str(path), only_tasks=["other"], seeds=2), tmp_path / "out")


def test_bad_suites_fail_before_anything_is_written(tmp_path, tiny_bert_dir):
    path = write_suite(tmp_path, tiny_bert_dir)
    good = yaml.safe_load(path.read_text())

    def rewritten(**changes) -> str:
        changed = tmp_path / "changed.yaml"
        changed.write_text(yaml.safe_dump({**good, **changes}))
        return str(changed)

    with pytest.raises(ConfigError, match="neither a built-in suite"):
        load_suite("no-such-suite")
    with pytest.raises(ConfigError, match="unknown key 'method'"):
        load_suite(rewritten(method=["full"]))
    with pytest.raises(ConfigError, match="unknown key 'epoch'"):
        load_suite(rewritten(compare={"epoch": 2}))
    with pytest.raises(ConfigError, match="unknown key 'out'"):
        load_suite(rewritten(compare={"out": "x"}))
    with pytest.raises(ConfigError, match="must be unique"):
        load_suite(rewritten(tasks=[good["tasks"][0], good["tasks"][0]]))
    with pytest.raises(ConfigError, match="'family' is missing"):
        load_suite(rewritten(tasks=[{"name": "x", "data": "easy.csv"}]))
    with pytest.raises(DataError, match="data file missing.json not found"):
        load_suite(rewritten(tasks=[{"name": "x", "family": "f", "data": "missing.json"}]))
    with pytest.raises(ConfigError, match="has no task 'nope'"):
        load_suite(str(path), only_tasks=["nope"])
    (tmp_path / "broken.yaml").write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="cannot read suite"):
        load_suite(str(tmp_path / "broken.yaml"))

    # A bad column in the *last* task stops the suite before the first task trains.
    bad = rewritten(tasks=[good["tasks"][0], {**good["tasks"][1], "compare": {"text_column": "nope"}}])
    with pytest.raises(DataError):
        run_suite(load_suite(bad), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_bench_runs_a_suite_file(tmp_path, tiny_bert_dir):
    path = write_suite(tmp_path, tiny_bert_dir, methods=["head"])
    done = subprocess.run([sys.executable, "-m", "peftlab.cli", "bench", str(path), "--tasks", "other", "--out", "out"],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "task 1/1: other (renamed columns)" in done.stdout and "| other | renamed columns |" in done.stdout
    written = json.loads((tmp_path / "out" / SUITE_FILE).read_text())
    assert [task["name"] for task in written["tasks"]] == ["other"] and written["methods"] == ["head"]
    assert (tmp_path / "out" / TASKS_DIR / "other" / "results.json").is_file()


def test_cli_bench_bad_input_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "suite.yaml").write_text("name: s\nmodel: minilm\nmethods: [full]\ntasks:\n"
                                         "  - {name: a, family: f, data: nothing_here.csv}\n")
    done = subprocess.run([sys.executable, "-m", "peftlab.cli", "bench", str(tmp_path / "suite.yaml")],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().startswith("error: task 'a': data file nothing_here.csv not found")
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "runs").exists()


@pytest.mark.skipif(not BIGBENCH.is_dir(), reason="../shared/data/bigbench is not beside this checkout")
def test_builtin_suite_reads_with_the_shared_data():
    assert "peft-vs-fft-cpu" in BUILTIN_SUITES
    suite = load_suite("peft-vs-fft-cpu", str(BIGBENCH))
    assert suite.seeds == 3 and len(suite.tasks) == 8
    assert suite.methods == ["full", "head", "bitfit", "lora", "dora", "adapter", "ia3", "prompt"]
    assert suite.families() == ["simple classification", "shifted vocabulary", "reasoning"]
    assert all(Path(task.data).is_file() for task in suite.tasks if task.name != "rotten_tomatoes")
    with pytest.raises(DataError, match="--data-dir"):
        load_suite("peft-vs-fft-cpu")  # the package holds no data


def test_family_summary_and_cells_on_fixed_numbers():
    def cell(mean, difference, significant=None, drop=None):
        return {"mean": mean, "std": 0.01, "n": 3, "failed": 0, "difference_points": difference, "robust_drop_points": drop,
                "vs_full": None if significant is None else {"difference": difference / 100, "significant": significant}}

    tasks = [
        {"name": "a", "family": "reasoning", "methods": {"full": cell(0.8, 0.0, drop=2.0), "lora": cell(0.7, -10.0, True, 4.0)}},
        {"name": "b", "family": "reasoning", "methods": {"full": cell(0.6, 0.0, drop=1.0), "lora": cell(0.62, 2.0, False, 2.0)}},
    ]
    families = family_summary(tasks, ["full", "lora"])
    lora = families["reasoning"]["lora"]
    assert lora["mean_difference_points"] == pytest.approx(-4.0) and lora["mean_robust_drop_points"] == pytest.approx(3.0)
    assert (lora["significantly_worse"], lora["significantly_better"], lora["tests"]) == (1, 0, 2)
    assert quality_cell(tasks[0]["methods"]["lora"], False) == "70.0 ± 1.0 (-10.0*)"
    assert quality_cell(tasks[0]["methods"]["full"], True) == "80.0 ± 1.0"


def test_strings_from_the_suite_and_its_data_stay_inert_in_the_suite_table():
    from report_data import HOSTILE

    hostile = " | ".join(HOSTILE) + "\n# heading"
    cell = {"mean": 0.7, "std": 0.01, "n": 1, "failed": 0, "difference_points": 0.0, "robust_drop_points": None,
            "vs_full": None}
    tasks = [{"name": hostile, "family": hostile, "test_majority_share": 0.5, "methods": {"full": cell, "lora": cell},
              "advisor": {"call": hostile, "best_peft_method": hostile, "gap_points": 1.0, "agrees": True},
              "verdict": {"decision": hostile, "conclusive": False, "reason": hostile},
              "train_examples": 10, "metric": hostile, "run_seconds": 1.0, "wall_seconds": 2.0}]
    table = {"suite": {"name": hostile, "model": hostile, "seeds": 1, "tasks": [hostile], "description": hostile,
                       "compare": {"text_column": hostile}},
             "methods": ["full", "lora"], "tasks": tasks, "written_at": "now", "pending": [hostile],
             "families": family_summary(tasks, ["full", "lora"])}
    text = suite_markdown(table)
    for raw in ("<script>", "<img", "\n# heading"):
        assert raw not in text
    assert "&lt;script&gt;" in text
    blocks, block = [], []
    for line in text.splitlines() + [""]:  # the tables: runs of lines starting with a bar
        if line.startswith("|"):
            block.append(line)
        elif block:
            blocks, block = blocks + [block], []
    assert len(blocks) == 5 and any("&lt;script&gt;" in line for b in blocks for line in b)  # quality, robust drop,
    # overfitting and forgetting, families, per task
    for lines in blocks:  # no cell breaks out of its table: every row has its header's number of cell bars
        assert len({len(re.findall(r"(?<!\\)\|", line)) for line in lines}) == 1, lines
