"""--train-sizes: the comparison at several training-set sizes (nested subsets, seeded; the same validation and
test sets), results.json's `train_sizes` section with the crossovers, resume, bad sizes, and the report."""

from __future__ import annotations

import csv
import io
import json
import sys

import pytest
from rich.console import Console

from peftlab import CompareConfig, compare
from peftlab.bench.suite import Suite, SuiteTask, load_suite
from peftlab.bench.table import suite_markdown, suite_table, task_summary
from peftlab.cli import main
from peftlab.errors import ConfigError
from peftlab.files import STORE_FILE
from peftlab.options import config_from_mapping, config_from_sources
from peftlab.report import print_table
from peftlab.report.markdown import md
from peftlab.report.write import write_report
from peftlab.study.driver import more_seeds
from peftlab.study.inputs import prepare_study, run_context, run_inputs, train_subset
from peftlab.study.runs import RunSpec, plan_runs
from peftlab.study.sizes import crossover, size_regime
from peftlab.study.store import StudyStore


def _config(tiny_bert_dir, tiny_task_csv, out, **overrides) -> CompareConfig:
    settings = dict(model=str(tiny_bert_dir), data=str(tiny_task_csv), methods=["full", "head"], epochs=1,
                    batch_size=8, out=str(out), robustness=False, diagnose=False, train_sizes=["8", "16", "all"],
                    evaluations_per_epoch=1, patience=None)
    return CompareConfig(**{**settings, **overrides})


def _rows(dataset) -> list[tuple]:
    return [(tuple(row["input_ids"]), row["labels"]) for row in dataset]


def test_subsets_are_nested_seeded_and_share_validation_and_test(tiny_bert_dir, tiny_task_csv, tmp_path):
    context = run_context(_config(tiny_bert_dir, tiny_task_csv, tmp_path / "s", seed=3))
    train = context.encoded["train"]
    assert context.study.train_sizes == [8, 16, len(train)]  # `all`: the whole (capped) training split
    subsets = {size: _rows(run_inputs(context, size)["train"]) for size in (8, 16, len(train))}
    assert [len(rows) for rows in subsets.values()] == [8, 16, len(train)]
    assert subsets[8] == subsets[16][:8] and subsets[16] == subsets[len(train)][:16]  # nested
    assert sorted(subsets[len(train)]) == sorted(_rows(train))  # `all` is every example, shuffled
    assert subsets[16] != _rows(train)[:16]  # shuffled, not the split's first rows
    for split in ("validation", "test"):
        assert run_inputs(context, 8)[split] is context.encoded[split]
    assert _rows(train_subset(train, 16, 3)) == subsets[16]  # the study seed decides the order
    assert _rows(train_subset(train, 16, 4)) != subsets[16]
    assert run_inputs(context, None) is context.encoded  # without --train-sizes: the study's splits as they are


def test_run_keys_and_plan_are_unchanged_without_train_sizes():
    assert [spec.key for spec in plan_runs(["full", "lora"], 0, 1)] == [
        "run/full/seed=0/lr=default", "run/lora/seed=0/lr=default"]
    specs = plan_runs(["full", "lora"], 0, 2, train_sizes=[8, 16])
    assert [(spec.method, spec.seed, spec.train_size) for spec in specs] == [
        ("full", 0, 16), ("lora", 0, 16), ("full", 1, 16), ("lora", 1, 16),
        ("full", 0, 8), ("lora", 0, 8), ("full", 1, 8), ("lora", 1, 8)]  # the largest size first
    assert specs[0].key == "run/full/seed=0/lr=default/n=16"
    assert [spec.artifact_name for spec in specs] == ["full", "lora", "full-seed1", "lora-seed1", "full-n8",
                                                     "lora-n8", "full-n8-seed1", "lora-n8-seed1"]
    assert len({spec.key for spec in specs}) == len(specs)
    assert RunSpec("lora", 1, train_size=8, largest=False).label(2) == "lora n8 s1"


def test_crossover_finds_where_full_overtakes_or_falls_behind():
    def per_size(gaps):  # gaps: full − method in points, per size
        return {str(size): {"full": {}, "lora": {"vs_full_points": -gap, "vs_full": None}}
                for size, gap in gaps.items()}
    sizes = [100, 300, 1000]
    crosses = crossover("lora", sizes, per_size({100: -2.0, 300: 1.5, 1000: 4.0}))
    assert crosses["pattern"] == "crosses"
    assert crosses["crossings"] == [{"between": [100, 300], "leader_before": "lora", "leader_after": "full",
                                     "within_noise": None}]
    assert "full fine-tuning overtakes between 100 and 300 examples" in crosses["text"]
    back = crossover("lora", sizes, per_size({100: 3.0, 300: 0.0, 1000: -1.0}))  # a tie at 300 is stepped over
    assert back["crossings"][0]["between"] == [100, 1000] and back["crossings"][0]["leader_after"] == "lora"
    assert crossover("lora", sizes, per_size({100: 3.0, 300: 2.0, 1000: 1.0}))["pattern"] == "full_ahead"
    tie = crossover("lora", sizes, per_size({100: 1.3, 300: -0.0, 1000: 2.7}))  # equal scores at 300
    assert tie["pattern"] == "full_ahead" and tie["text"] == (
        "lora: full ahead at every size but tied at 300 (full − lora: +1.3 pts at 100, +0.0 pts at 300, +2.7 pts at "
        "1000)")
    ahead = crossover("lora", sizes, per_size({100: -3.0, 300: -2.0, 1000: -1.0}))
    assert ahead["pattern"] == "method_ahead" and ahead["text"].startswith("lora: lora ahead at every size")
    assert crossover("lora", sizes, per_size({100: 0.0, 300: 0.0, 1000: 0.0}))["pattern"] == "tied"
    partial = crossover("lora", sizes, {**per_size({1000: 2.5}), "100": {}, "300": {}})  # a study still running
    assert partial["text"] == "lora: full ahead at every size that measured both (full − lora: +2.5 pts at 1000)"


def test_size_regime_intervals_over_seeds_and_noise():
    runs = [{"method": method, "seed": seed, "status": "ok", "train_size": size,
             "metrics": {"accuracy": value + 0.01 * seed}}
            for size, values in {10: {"full": 0.60, "lora": 0.70}, 20: {"full": 0.90, "lora": 0.75}}.items()
            for method, value in values.items() for seed in (0, 1, 2)]
    regime = size_regime(runs, [10, 20], "accuracy")
    entry = regime["per_size"]["10"]["lora"]
    assert entry["n"] == 3 and entry["mean"] == pytest.approx(0.71) and entry["ci95"][0] < 0.71 < entry["ci95"][1]
    assert entry["vs_full_points"] == pytest.approx(10.0) and entry["vs_full"]["significant"]
    record = regime["crossovers"]["lora"]
    assert record["crossings"] == [{"between": [10, 20], "leader_before": "lora", "leader_after": "full",
                                    "within_noise": False}]
    assert record["gaps_points"] == {"10": pytest.approx(-10.0), "20": pytest.approx(15.0)}


def test_a_study_at_three_sizes_resumes_and_reports(tiny_bert_dir, tiny_task_csv, tmp_path):
    out = tmp_path / "study"
    config = _config(tiny_bert_dir, tiny_task_csv, out)
    results = compare(config)
    regime = results["train_sizes"]
    everything = len(prepare_study(config, writes_out=False).task.splits["train"])
    assert regime["sizes"] == [8, 16, everything] and regime["largest"] == everything
    assert [(run["method"], run["train_size"]) for run in results["runs"]] == [("full", everything),
                                                                               ("head", everything)]
    assert [(run["method"], run["train_size"]) for run in regime["runs"]] == [
        ("full", 16), ("head", 16), ("full", 8), ("head", 8)]
    for run in results["runs"] + regime["runs"]:
        assert run["status"] == "ok", run.get("reason")
        assert run["run_key"].endswith(f"/n={run['train_size']}")
        steps = run["cost"]["budget_steps"]
        assert steps == -(-run["train_size"] // 8)  # one epoch of the run's own subset: fewer steps when smaller
    assert {run["artifact"] for run in regime["runs"]} == {"runs/full-n16", "runs/head-n16", "runs/full-n8",
                                                           "runs/head-n8"}
    assert [run["artifact"] for run in results["runs"]] == ["runs/full", "runs/head"]
    for size in ("8", "16", str(everything)):
        for method in ("full", "head"):
            entry = regime["per_size"][size][method]
            at = [r for r in results["runs"] + regime["runs"] if r["train_size"] == int(size) and r["method"] == method]
            assert entry["n"] == 1 and entry["mean"] == at[0]["metrics"]["accuracy"] and entry["ci95"] is None
        assert regime["per_size"][size]["head"]["vs_full_points"] == pytest.approx(
            100 * (regime["per_size"][size]["head"]["mean"] - regime["per_size"][size]["full"]["mean"]))
    record = regime["crossovers"]["head"]
    assert record["pattern"] in ("full_ahead", "method_ahead", "crosses", "tied") and record["text"].startswith("head:")
    assert set(record["gaps_points"]) <= {"8", "16", str(everything)}
    assert results["verdict"]["seeds"] == {"full": 1, "head": 1}  # the verdict is about the largest size alone
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["train_sizes"]["crossovers"] == json.loads(json.dumps(regime["crossovers"]))
    assert on_disk["study"]["train_sizes"] == [8, 16, everything]

    again = compare(config)  # every (method, seed, size) run is in the store: nothing trains again
    rows = StudyStore(out / STORE_FILE).runs()
    assert len(rows) == 6 and {row["attempts"] for row in rows} == {1}
    assert again["train_sizes"]["per_size"] == json.loads(json.dumps(regime["per_size"]))

    more = compare(_config(tiny_bert_dir, tiny_task_csv, out, train_sizes=["4", "8", "16", "all"]))
    rows = StudyStore(out / STORE_FILE).runs()  # a size added: only its two runs train
    assert len(rows) == 8 and {row["attempts"] for row in rows} == {1}
    assert more["train_sizes"]["sizes"] == [4, 8, 16, everything]

    console = Console(record=True, width=250)
    print_table(more, console)
    text = console.export_text()
    assert "training-set size" in text and "head: " in text
    for size in (4, 8, 16):
        assert f"at training-set size {size}" in text  # one comparison table per size
    html = write_report(out, "html").read_text()
    assert 'id="train-sizes"' in html and 'data-chart="train_sizes"' in html and record["text"][:20] in html
    markdown = write_report(out, "md").read_text()
    assert "## Training-set size" in markdown and "figures/train_sizes.png" in markdown
    assert (out / "figures" / "train_sizes.png").is_file()
    rows = list(csv.DictReader(io.StringIO(write_report(out, "csv").read_text())))
    assert [(row["train_size"], row["method"]) for row in rows] == [
        (str(size), method) for size in (everything, 16, 8, 4) for method in ("full", "head")]

    summary = task_summary(SuiteTask("tiny", "simple classification", str(tiny_task_csv)), more, 1.0)
    assert summary["train_sizes"]["sizes"] == [4, 8, 16, everything]
    assert summary["train_sizes"]["crossovers"]["head"]["text"] == more["train_sizes"]["crossovers"]["head"]["text"]
    assert summary["methods"]["head"]["runs"] == 1  # the suite's table is at the largest size
    suite = Suite("s", str(tiny_bert_dir), ["full", "head"], [SuiteTask("tiny", "simple classification", "x")])
    text = suite_markdown(suite_table(suite, {"tiny": {"results": more, "wall_seconds": 1.0}}))
    assert "## Training-set sizes" in text and md(summary["train_sizes"]["crossovers"]["head"]["text"]) in text


def test_max_seeds_adds_seeds_at_the_largest_size(tiny_bert_dir, tiny_task_csv, tmp_path):
    config = _config(tiny_bert_dir, tiny_task_csv, tmp_path, max_seeds=3)
    specs = plan_runs(["full", "head"], 0, 1, train_sizes=[8, 96])
    results = {"study": {"train_sizes": [8, 96]}, "verdict": {"next": {"add_seeds": ["full", "head"]}}}
    extra = more_seeds(results, specs, config, {})
    assert [(spec.method, spec.seed, spec.train_size, spec.largest) for spec in extra] == [
        ("full", 1, 96, True), ("head", 1, 96, True)]
    assert [spec.artifact_name for spec in extra] == ["full-seed1", "head-seed1"]
    unsized = more_seeds({"study": {}, "verdict": results["verdict"]}, plan_runs(["full", "head"], 0, 1), config, {})
    assert [spec.key for spec in unsized] == ["run/full/seed=1/lr=default", "run/head/seed=1/lr=default"]


def test_a_bench_suite_takes_train_sizes(tmp_path, tiny_task_csv):
    path = tmp_path / "suite.yaml"
    path.write_text(f"name: s\nmodel: minilm\nmethods: [full, lora]\ncompare: {{train_sizes: [100, 300, all]}}\n"
                    f"tasks:\n  - {{name: t, family: f, data: {tiny_task_csv}}}\n")
    suite = load_suite(str(path))
    config = config_from_mapping(CompareConfig, {**suite.compare_settings(suite.tasks[0]), "out": str(tmp_path)})
    assert config.requested_train_sizes() == [100, 300, None]


@pytest.mark.parametrize("sizes, needle", [
    ("100,abc", "--train-sizes takes positive whole numbers"), ("0,all", "--train-sizes takes positive"),
    ("8,8", "--train-sizes lists 8 twice"), ("8,100000", "--train-sizes 100000 is more than the"),
])
def test_bad_sizes_are_one_line_and_exit_2(sizes, needle, tiny_bert_dir, tiny_task_csv, tmp_path, monkeypatch,
                                           capsys):
    out = tmp_path / "never"
    monkeypatch.setattr(sys, "argv", ["peftlab", "compare", "--model", str(tiny_bert_dir), "--data",
                                      str(tiny_task_csv), "--out", str(out), "--no-robustness", "--train-sizes", sizes])
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err
    assert not out.exists()


def test_train_sizes_refuse_tune_and_read_from_yaml_lists(tiny_bert_dir, tiny_task_csv, tmp_path):
    with pytest.raises(ConfigError, match="--train-sizes with --tune"):
        _config(tiny_bert_dir, tiny_task_csv, tmp_path, tune=["lr"]).check()
    config_file = tmp_path / "study.yaml"
    config_file.write_text("train_sizes: [8, 16, all]\n")  # YAML numbers, as a bench suite's `compare:` gives them
    assert config_from_sources(CompareConfig, config_file, {}).requested_train_sizes() == [8, 16, None]
