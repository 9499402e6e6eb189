"""End to end: the real `peftlab compare` CLI in a subprocess, on the real offline MiniLM, a few steps per method.

Subprocesses are expensive (imports alone take seconds), so checks are grouped: one run of every method on the
rotten_tomatoes alias serves the results/table checks, the reload round trip and the same-seed check; each other
data source kind gets one small run; the bad inputs run a few at a time in parallel and are checked one by one.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

# fixed rates and budget (tests/conftest.py FIXED_RATES_CLI): the rate race by default has its own test below
BUDGET = ["--max-steps", "3", "--max-train-examples", "64", "--max-eval-examples", "32", "--batch-size", "16",
          "--no-tune", "--evaluations-per-epoch", "1", "--patience", "0"]
STEPS, TRAIN_CAP, EVAL_CAP, BATCH = 3, 64, 32, 16
ALL_METHODS = ["full", "head", "bitfit", "lora", "adapter", "prompt", "ia3", "dora", "prefix"]
PEFT_METHODS = ["lora", "ia3", "prompt"]  # saved by HF peft: must load with plain PeftModel.from_pretrained
OWN_METHODS = ["adapter", "bitfit"]  # peftlab's own formats: only load_run reads them
METRIC_KEYS = ["accuracy", "macro_f1"]
COST_KEYS = ["trainable_params", "total_params", "optimizer_state_bytes", "peak_memory_bytes", "train_seconds",
             "train_tokens_per_second", "checkpoint_bytes", "inference_ms_per_example"]
BIGBENCH = Path(__file__).resolve().parents[2] / "shared" / "data" / "bigbench"
TIMEOUT_SMALL, TIMEOUT_ALL, TIMEOUT_ERROR = 900, 1800, 300


# --- helpers --------------------------------------------------------------------------------------------------------

@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    out: Path

    def results(self) -> dict:
        return json.loads((self.out / "results.json").read_text())

    def describe(self) -> str:
        return f"exit {self.returncode} after {self.seconds:.0f} s\n--- stdout ---\n{self.stdout[-3000:]}\n" \
               f"--- stderr ---\n{self.stderr[-5000:]}"


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    return env


def run_cli(out: Path, *args: str, budget: bool = True, timeout: float = TIMEOUT_SMALL) -> CliResult:
    """`python -m peftlab.cli compare --model minilm ARGS [BUDGET] --out OUT`, run in OUT's parent folder."""
    command = [sys.executable, "-m", "peftlab.cli", "compare", "--model", "minilm", *args,
               *(BUDGET if budget else []), "--out", str(out)]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=out.parent, env=cli_env(), capture_output=True, text=True, timeout=timeout)
    return CliResult(done.returncode, done.stdout, done.stderr, time.perf_counter() - start, out)


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def run_record(results: dict, method: str) -> dict:
    matches = [r for r in results["runs"] if r["method"] == method]
    assert len(matches) == 1, f"expected one run of {method}, got {[r['method'] for r in results['runs']]}"
    return matches[0]


def check_ok_run(result: CliResult, method: str, train_size: int = TRAIN_CAP) -> dict:
    """One finished run: status ok, every metric and cost numeric, the curve, the artifact folder."""
    results = result.results()
    record = run_record(results, method)
    assert record["status"] == "ok", f"{method} failed: {record.get('reason')}\n{result.describe()}"
    for key in METRIC_KEYS:
        assert is_number(record["metrics"].get(key)), (method, key, record["metrics"])
        assert 0.0 <= record["metrics"][key] <= 1.0, (method, key, record["metrics"][key])
    for key in COST_KEYS:
        assert is_number(record["cost"].get(key)), (method, key, record["cost"])
        assert record["cost"][key] >= 0, (method, key, record["cost"][key])
    cost = record["cost"]
    assert 0 < cost["trainable_params"] <= cost["total_params"], (method, cost)
    assert cost["train_steps"] == STEPS, (method, cost)
    assert cost["checkpoint_bytes"] > 0 and cost["train_seconds"] > 0 and cost["inference_ms_per_example"] > 0
    curve = record["curve"]
    assert len(curve["train_loss"]) == STEPS and all(is_number(x) for x in curve["train_loss"]), (method, curve)
    epochs = math.ceil(STEPS / math.ceil(train_size / BATCH))
    assert [v["epoch"] for v in curve["validation"]] == list(range(1, epochs + 1)), (method, curve)
    for point in curve["validation"]:
        assert all(is_number(point.get(k)) for k in ("accuracy", "macro_f1", "loss")), (method, point)
    assert record["artifact"] == f"runs/{method}"
    folder = result.out / "runs" / method
    assert folder.is_dir() and (folder / "peftlab_run.json").is_file(), f"{folder} missing or incomplete"
    run_info = json.loads((folder / "peftlab_run.json").read_text())
    assert run_info["method"] == method and run_info["label_names"] == results["study"]["task"]["label_names"]
    return record


def table_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("│")]


def check_table_rows(stdout: str, methods: list[str]) -> None:
    rows = table_lines(stdout)
    for method in methods:
        assert any(re.match(rf"│ {re.escape(method)}( \(ref\))? +│", row) for row in rows), \
            f"no table row for {method} in stdout:\n{stdout}"
        assert f"{method}: ok" in stdout, f"no progress line for {method}:\n{stdout}"
    assert "results.json" in stdout


def rotten_tomatoes_rows(n_per_class: int = 75) -> list[tuple[str, str]]:
    """(text, label name) rows from the real corpus, n_per_class of each class, in corpus order."""
    from peftlab.tasks import load_task

    train = load_task("rotten_tomatoes", max_train_examples=0).splits["train"]
    names = train.features["label"].names
    rows, counts = [], {name: 0 for name in names}
    for text, label in zip(train["text"], train["label"]):
        name = names[label]
        if counts[name] < n_per_class:
            counts[name] += 1
            rows.append((text, name))
        if all(c == n_per_class for c in counts.values()):
            break
    return rows


# --- the study on every method (rotten_tomatoes alias) --------------------------------------------------------------

@pytest.fixture(scope="module")
def all_methods(tmp_path_factory) -> CliResult:
    out = tmp_path_factory.mktemp("all_methods") / "out"
    result = run_cli(out, "--data", "rotten_tomatoes", "--methods", ",".join(ALL_METHODS), timeout=TIMEOUT_ALL)
    assert result.returncode == 0, result.describe()
    return result


def test_every_method_runs_and_reports(all_methods):
    results = all_methods.results()
    assert [r["method"] for r in results["runs"]] == ALL_METHODS
    for method in ALL_METHODS:
        check_ok_run(all_methods, method)
    full, head = run_record(results, "full")["cost"], run_record(results, "head")["cost"]
    assert full["trainable_params"] == full["total_params"]
    assert head["trainable_params"] < full["trainable_params"] / 1000
    for method in ALL_METHODS[1:]:
        assert run_record(results, method)["cost"]["trainable_params"] < full["trainable_params"]
    assert not (all_methods.out / "logs").exists(), "logs/ is written only for failed runs"
    assert not list((all_methods.out / "runs").glob(".*")), "a staging folder was left behind"

    study = results["study"]
    assert study["model"] == "minilm" and study["data"] == "rotten_tomatoes" and study["seed"] == 0
    assert re.fullmatch(r"[0-9a-f]{64}", study["dataset_sha256"])
    assert study["methods"] == ALL_METHODS
    assert study["budget"]["max_steps"] == STEPS and study["budget"]["batch_size"] == BATCH
    assert study["budget"]["max_train_examples"] == TRAIN_CAP and study["budget"]["max_eval_examples"] == EVAL_CAP
    assert study["task"]["sizes"] == {"train": TRAIN_CAP, "validation": EVAL_CAP, "test": EVAL_CAP}
    assert study["task"]["label_names"] == ["fresh", "rotten"]
    for package in ("python", "torch", "transformers", "peft"):
        assert re.match(r"\d+\.\d+", study["versions"].get(package, "")), study["versions"]
    assert study["hardware"]["device"] in ("cpu", "cuda", "mps") and study["hardware"]["cpu_cores"] >= 1

    check_table_rows(all_methods.stdout, ALL_METHODS)
    assert "Traceback" not in all_methods.stderr


def test_the_default_study_races_the_rates_and_the_run_is_the_survivor(tmp_path):
    """peftlab's defaults on the real MiniLM (no --no-tune): 3 rates per method raced at 3 validation passes per
    epoch (64 examples, batch 16: 4 steps per epoch; 9 steps: 7 passes, rungs at passes 1 and 3); the pruner keeps
    one rate per method at the first rung, and that trial's training is the method's run."""
    out = tmp_path / "out"
    result = run_cli(out, "--data", "rotten_tomatoes", "--methods", "full,lora", "--max-steps", "9",
                     "--max-train-examples", "64", "--max-eval-examples", "32", "--batch-size", "16",
                     "--no-robustness", "--no-diagnose", budget=False)
    assert result.returncode == 0, result.describe()
    results = result.results()
    assert results["study"]["config"]["tune"] == ["lr"] and results["study"]["budget"]["patience"] == 3
    for method in ("full", "lora"):
        tuning = results["tuning"]["methods"][method]
        assert tuning["rungs"] == [1, 3] and len(tuning["grid"]) == 3
        survivor, = [t for t in tuning["trials"] if t["status"] == "ok"]
        assert sorted((t["status"], t["evaluations"]) for t in tuning["trials"] if t is not survivor) == [
            ("pruned", 1), ("pruned", 1)]
        run = run_record(results, method)
        assert run["status"] == "ok" and run["config"]["learning_rate"] == survivor["learning_rate"]
        assert run["timing"]["resumed_from_epoch"] and len(run["curve"]["validation"]) == survivor["evaluations"]
        assert survivor["evaluations"] == 7 or run["stopped"]["evaluation"] == survivor["evaluations"]  # or stopped
        assert run["cost"]["train_steps"] == survivor["steps"]
    assert results["verdict"]["learning_rates"] == "tuned"
    assert "learning-rate race" in result.stdout and "Traceback" not in result.stderr


def test_table_shares_are_plain_percentages(all_methods):
    rows = table_lines(all_methods.stdout)
    assert len(rows) == len(ALL_METHODS)
    full_row = next(row for row in rows if row.startswith("│ full"))
    assert "(100%)" in full_row, full_row
    assert not any(re.search(r"\de[+-]\d", row) for row in rows), "\n".join(rows)


def test_same_seed_gives_identical_results(all_methods, tmp_path):
    """A lone lora run reproduces the lora run of the nine-method study exactly (same seed, other process)."""
    again = run_cli(tmp_path / "out", "--data", "rotten_tomatoes", "--methods", "lora", "--seed", "0")
    assert again.returncode == 0, again.describe()
    first, second = run_record(all_methods.results(), "lora"), check_ok_run(again, "lora")
    assert second["metrics"] == first["metrics"]
    assert second["curve"] == first["curve"]
    assert second["config"] == first["config"]
    for key in ("trainable_params", "total_params", "train_tokens", "train_steps"):
        assert second["cost"][key] == first["cost"][key], key
    assert again.results()["study"]["dataset_sha256"] == all_methods.results()["study"]["dataset_sha256"]


# --- reloading the saved runs through the real model ----------------------------------------------------------------

TEXTS = ["A moving, beautifully acted film.", "Dull, predictable and far too long.",
         "The plot is thin but the cast makes it worth seeing."]


def _logits(model, tokenizer, max_length: int):
    import torch

    batch = tokenizer(TEXTS, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits


@pytest.fixture(scope="module")
def test_split(all_methods):
    """The study's own test split, rebuilt from the same options (its fingerprint must match)."""
    from peftlab.tasks import load_task

    task = load_task("rotten_tomatoes", max_train_examples=TRAIN_CAP, max_eval_examples=EVAL_CAP, seed=0)
    assert task.sha256 == all_methods.results()["study"]["dataset_sha256"]
    return task


def _check_reproduces_test_metrics(model, tokenizer, task, record: dict, max_length: int) -> None:
    from peftlab.evaluate import evaluate_split
    from peftlab.tasks.encode import encode_task

    encoded = encode_task(task, tokenizer, max_length)
    scores = evaluate_split(model, encoded["test"], tokenizer, 64, "cpu", task.num_labels, "test")
    assert scores["accuracy"] == record["metrics"]["accuracy"], (record["method"], scores, record["metrics"])
    assert scores["macro_f1"] == pytest.approx(record["metrics"]["macro_f1"], abs=1e-9)
    assert scores["loss"] == pytest.approx(record["metrics"]["test_loss"], abs=1e-5)


@pytest.mark.parametrize("method", PEFT_METHODS)
def test_peft_run_loads_with_plain_peft(all_methods, test_split, method):
    """OUT/runs/<peft method> is a standard peft folder: PeftModel.from_pretrained on a plain base gives exactly the
    logits of peftlab.load_run, whatever the RNG state when the base (and its random head) is created -- the
    trained head is saved with the adapter (modules_to_save)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    import peftlab

    folder = all_methods.out / "runs" / method
    info = json.loads((folder / "peftlab_run.json").read_text())
    model, tokenizer, loaded_info = peftlab.load_run(folder)
    assert loaded_info["method"] == method and not model.training
    ours = _logits(model, tokenizer, info["max_length"])

    plain = []
    for seed in (1, 12345):  # two different random heads on the base: must not matter
        torch.manual_seed(seed)
        base = AutoModelForSequenceClassification.from_pretrained(info["model_path"], num_labels=2)
        peft_model = PeftModel.from_pretrained(base, folder).eval()
        plain.append(_logits(peft_model, tokenizer, info["max_length"]))
    assert torch.equal(plain[0], plain[1])
    assert torch.equal(ours, plain[0]), (ours, plain[0])
    _check_reproduces_test_metrics(model, tokenizer, test_split, run_record(all_methods.results(), method),
                                   info["max_length"])


@pytest.mark.parametrize("method", OWN_METHODS)
def test_own_format_run_loads_twice_identically(all_methods, test_split, method):
    import torch

    import peftlab

    folder = all_methods.out / "runs" / method
    first, tokenizer, info = peftlab.load_run(folder)
    second, _, _ = peftlab.load_run(folder)
    assert info["method"] == method and not first.training and not second.training
    assert torch.equal(_logits(first, tokenizer, info["max_length"]), _logits(second, tokenizer, info["max_length"]))
    _check_reproduces_test_metrics(first, tokenizer, test_split, run_record(all_methods.results(), method),
                                   info["max_length"])


# --- other data source kinds ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def corpus_rows() -> list[tuple[str, str]]:
    rows = rotten_tomatoes_rows()
    assert len(rows) == 150
    return rows


@pytest.fixture(scope="module")
def csv_and_jsonl_runs(tmp_path_factory, corpus_rows):
    """The same 150 rows as a CSV file (text,label) and as a JSONL file (review,sentiment: auto-detected)."""
    import pandas as pd

    folder = tmp_path_factory.mktemp("files")
    csv_path, jsonl_path = folder / "reviews.csv", folder / "reviews.jsonl"
    pd.DataFrame(corpus_rows, columns=["text", "label"]).to_csv(csv_path, index=False)
    with jsonl_path.open("w", encoding="utf-8") as f:
        for text, label in corpus_rows:
            f.write(json.dumps({"id": len(text), "review": text, "sentiment": label}) + "\n")
    csv_run = run_cli(folder / "out_csv", "--data", str(csv_path), "--methods", "head")
    jsonl_run = run_cli(folder / "out_jsonl", "--data", str(jsonl_path), "--methods", "bitfit")
    return csv_run, jsonl_run


def _check_small_file_study(result: CliResult, method: str, name: str, columns: dict) -> dict:
    assert result.returncode == 0, result.describe()
    check_ok_run(result, method)
    check_table_rows(result.stdout, [method])
    task = result.results()["study"]["task"]
    assert task["name"] == name and task["columns"] == columns
    assert task["sizes"] == {"train": TRAIN_CAP, "validation": 15, "test": 15}  # 10% of 150 each, train capped
    return task


def test_csv_file(csv_and_jsonl_runs):
    task = _check_small_file_study(csv_and_jsonl_runs[0], "head", "reviews",
                                   {"text": "text", "text_pair": None, "label": "label"})
    assert task["label_names"] == ["fresh", "rotten"]


def test_jsonl_file_same_rows_same_fingerprint(csv_and_jsonl_runs):
    csv_run, jsonl_run = csv_and_jsonl_runs
    task = _check_small_file_study(jsonl_run, "bitfit", "reviews",
                                   {"text": "review", "text_pair": None, "label": "sentiment"})
    assert task["label_names"] == ["fresh", "rotten"]
    assert jsonl_run.results()["study"]["dataset_sha256"] == csv_run.results()["study"]["dataset_sha256"]


def test_text_pair_csv(tmp_path, corpus_rows):
    """Pairs of reviews, label: do they agree? Columns named explicitly, none auto-detectable."""
    import pandas as pd

    n = len(corpus_rows)
    partners = [corpus_rows[(7 * i + 3) % n] for i in range(n)]
    pairs = [(text, other, "same" if label == other_label else "different")
             for (text, label), (other, other_label) in zip(corpus_rows, partners)]
    assert {p[2] for p in pairs} == {"same", "different"}
    path = tmp_path / "pairs.csv"
    pd.DataFrame(pairs, columns=["left", "right", "agree"]).to_csv(path, index=False)
    result = run_cli(tmp_path / "out", "--data", str(path), "--text-column", "left", "--text-pair-column", "right",
                     "--label-column", "agree", "--methods", "ia3")
    task = _check_small_file_study(result, "ia3", "pairs", {"text": "left", "text_pair": "right", "label": "agree"})
    assert task["label_names"] == ["different", "same"]


def test_bigbench_task_file(tmp_path):
    source = BIGBENCH / "winowhy.json"
    if not source.is_file():
        pytest.skip(f"{source} is not here")
    result = run_cli(tmp_path / "out", "--data", str(source), "--methods", "head")
    assert result.returncode == 0, result.describe()
    check_ok_run(result, "head")
    check_table_rows(result.stdout, ["head"])
    task = result.results()["study"]["task"]
    assert task["name"] == "winowhy" and task["label_names"] == ["correct", "incorrect"]
    assert task["columns"] == {"text": "input", "text_pair": None, "label": "target_scores"}
    assert task["sizes"] == {"train": TRAIN_CAP, "validation": EVAL_CAP, "test": EVAL_CAP}


# --- bad inputs: exit 2, one `error:` line naming the problem, nothing written --------------------------------------

def _bad_inputs(folder: Path) -> dict[str, tuple[list[str], list[str]]]:
    """case -> (CLI arguments, substrings the error line must contain). Writes the input files into folder."""
    def write(name: str, text: str) -> str:
        (folder / name).write_text(text, encoding="utf-8")
        return str(folder / name)

    good = write("good.csv", "text,label\n" + "".join(f"review number {i},{'ab'[i % 2]}\n" for i in range(40)))
    one_class = write("one_class.csv", "text,label\n" + "".join(f"review number {i},fresh\n" for i in range(40)))
    empty_cell = write("empty_cell.csv", "text,label\n" + "".join(
        f"{'' if i == 7 else f'review number {i}'},{i % 2}\n" for i in range(40)))
    number_text = write("number_text.jsonl", "".join(
        json.dumps({"text": 12345 if i == 3 else f"review number {i}", "label": i % 2}) + "\n" for i in range(40)))
    broken_jsonl = write("broken.jsonl", '{"text": "fine", "label": 0}\n{"text": "cut off", "label": \n'
                         '{"text": "fine too", "label": 1}\n')
    (folder / "garbage.parquet").write_bytes(b"\x00\x01 this is not parquet \xff" * 20)
    return {
        "unknown model": (["--model", "/nonexistent/model/folder"], ["/nonexistent/model/folder"]),
        "unknown data name": (["--data", "no_such_dataset_xyz"], ["no_such_dataset_xyz"]),
        "unknown method": (["--methods", "lora,nope"], ["'nope'"]),
        "missing column": (["--data", good, "--text-column", "review"], ["'review'", "good.csv"]),
        "empty csv": (["--data", write("empty.csv", "text,label\n")], ["empty.csv"]),
        "single class": (["--data", one_class], ["single class", "one_class.csv"]),
        "empty text cell": (["--data", empty_cell], ["'text'", "empty_cell.csv", "row index 7"]),
        "non-string text": (["--data", number_text], ["'text'", "number_text.jsonl", "row index 3"]),
        "broken jsonl line": (["--data", broken_jsonl], ["broken.jsonl", "line 2"]),
        "garbage parquet": (["--data", str(folder / "garbage.parquet")], ["garbage.parquet"]),
        "unknown method setting": (["--methods", "lora", "--method-config",
                                    write("unknown_key.yaml", "lora: {nonexistent_key: 1}\n")],
                                   ["nonexistent_key", "lora"]),
        "invalid yaml": (["--methods", "lora", "--method-config", write("invalid.yaml", "lora: {r: 16\n  : - ]\n")],
                         ["invalid.yaml", "YAML"]),
    }


BAD_INPUT_CASES = [
    "unknown model", "unknown data name", "unknown method", "missing column", "empty csv", "single class",
    "empty text cell", "non-string text", "broken jsonl line", "garbage parquet", "unknown method setting",
    "invalid yaml",
]


@pytest.fixture(scope="module")
def bad_input_results(tmp_path_factory) -> dict[str, tuple[CliResult, list[str]]]:
    """Every bad-input case, run three at a time (each is mostly import time)."""
    folder = tmp_path_factory.mktemp("bad_inputs")
    cases = _bad_inputs(folder)
    assert sorted(cases) == sorted(BAD_INPUT_CASES)

    def run(item):
        index, (case, (args, _)) = item
        return case, run_cli(folder / f"out_{index}", *args, timeout=TIMEOUT_ERROR)

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = dict(pool.map(run, enumerate(cases.items())))
    return {case: (results[case], needles) for case, (_, needles) in cases.items()}


@pytest.mark.parametrize("case", BAD_INPUT_CASES)
def test_bad_input_is_one_error_line(bad_input_results, case):
    result, needles = bad_input_results[case]
    assert result.returncode == 2, result.describe()
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and result.stderr.strip() == lines[0], result.describe()
    line = lines[0]
    assert line.startswith("error: ") and len(line) > len("error: ") + 10, line
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    assert "Traceback" not in result.stderr + result.stdout
    assert not result.out.exists(), f"{result.out} was created for a bad input"


def test_unknown_data_name_fails_fast_offline(bad_input_results):
    result, _ = bad_input_results["unknown data name"]
    assert result.returncode == 2, result.describe()
    assert result.seconds < 90, f"took {result.seconds:.0f} s: the offline hub lookup should fail at once"


def test_out_that_is_a_file_is_one_error_line(tmp_path):
    out = tmp_path / "not_a_folder"
    out.write_text("keep me\n")
    result = run_cli(out, "--data", "rotten_tomatoes", "--methods", "head")
    assert "Traceback" not in result.stderr, result.describe()
    assert result.returncode == 2, result.describe()
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "not_a_folder" in lines[0], result.describe()
    assert out.read_text() == "keep me\n"
