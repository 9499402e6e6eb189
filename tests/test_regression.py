"""Regression as a task kind: float targets loaded and detected, standardised for training and scored in their own
units (Spearman, Pearson, MSE, MAE, checked against scipy and numpy), every method on a one-output head, a compare
end to end on a tiny random BERT with robustness (the change in MAE) and every report format, the verdict's
statistics (Fisher's interval for Spearman, a paired bootstrap of the gap) and the refusals of bad input."""

from __future__ import annotations

import csv
import io
import json
import math
import random

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from transformers import AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification

from peftlab import CompareConfig, compare
from peftlab.diagnose.probe import ridge_probe
from peftlab.errors import ConfigError, DataError
from peftlab.export.exporter import ExportConfig, export
from peftlab.evaluate.kinds import kind_evaluation
from peftlab.evaluate.regression import evaluate_regression, mae, mse, pearson, regression_metrics, spearman
from peftlab.evaluate.stats import paired_spearman_gap, spearman_interval
from peftlab.methods import METHODS, PEFTLAB_METHODS
from peftlab.models import load_tokenizer, resolve_model
from peftlab.report.write import write_report
from peftlab.study.robustness import evaluate_saved_study
from peftlab.study.verdict import study_verdict
from peftlab.tasks import CLASSIFICATION, REGRESSION, load_task
from peftlab.tasks.labelled import NumericLabels
from peftlab.tasks.regression import MIN_DISTINCT_TARGETS

from conftest import FIXED_RATES, BAD_WORDS, FILLER_WORDS, GOOD_WORDS
from test_bad_inputs import assert_refused


def score_of(text: str) -> float:
    """The target: good words minus bad words, plus a little for length, a deterministic function of the text."""
    words = text.split()
    return (sum(w in GOOD_WORDS for w in words) - sum(w in BAD_WORDS for w in words)) / 2 + 0.05 * len(words)


def scored_texts(n: int = 160, seed: int = 0) -> pd.DataFrame:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words = rng.sample(GOOD_WORDS, rng.randint(0, 3)) + rng.sample(BAD_WORDS, rng.randint(0, 3)) + \
            rng.sample(FILLER_WORDS, rng.randint(2, 5))
        rng.shuffle(words)
        text = " ".join(words)
        rows.append({"text": text, "score": score_of(text)})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def scored_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("scored") / "scored.csv"
    scored_texts().to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def tokenizer(tiny_bert_dir):
    return load_tokenizer(resolve_model(str(tiny_bert_dir)))


# --- loading and detection -------------------------------------------------------------------------------------------

def test_fractional_targets_are_detected_as_regression_and_kept_as_floats(scored_csv):
    task = load_task(str(scored_csv), label_column="score")
    assert task.kind is REGRESSION and task.selection_metric == "spearman" and task.label_names == ["score"]
    assert task.num_labels == 1 and task.test_majority_share() is None
    frame = scored_texts()
    by_text = dict(zip(frame["text"], frame["score"]))
    for split in task.splits.values():  # every target is the float the file holds, for its own text
        assert all(math.isclose(row["label"], by_text[row["text"]]) for row in split)
    train = np.asarray(task.splits["train"]["label"])
    assert task.target_scale == pytest.approx((train.mean(), train.std()))
    described = task.describe()
    assert described["type"] == "regression" and described["target_mean"] == pytest.approx(train.mean())
    assert load_task(str(scored_csv), label_column="score", task_type="regression").sha256 == task.sha256


def test_named_classification_and_few_distinct_fractions_are_refused_with_the_way_out(scored_csv, tmp_path):
    with pytest.raises(NumericLabels, match="pass --task regression"):
        load_task(str(scored_csv), label_column="score", task_type="classification")
    halves = tmp_path / "halves.csv"  # 0.5 steps on a 1-5 scale: 9 distinct values, too few to guess
    pd.DataFrame({"text": [f"text number {i}" for i in range(90)],
                  "score": [1 + 0.5 * (i % (MIN_DISTINCT_TARGETS - 1)) for i in range(90)]}).to_csv(halves)
    with pytest.raises(DataError, match="9 distinct values.*pass --task regression"):
        load_task(str(halves), label_column="score")
    assert load_task(str(halves), label_column="score", task_type="regression").kind is REGRESSION
    integers = tmp_path / "integers.csv"  # whole numbers stay classes, as before
    pd.DataFrame({"text": [f"text number {i}" for i in range(40)], "label": [i % 3 for i in range(40)]}).to_csv(
        integers)
    assert load_task(str(integers)).kind is CLASSIFICATION


@pytest.mark.parametrize("scores, needle", [
    ([2.5] * 40, "are all 2.5; regression needs targets that vary"),
    (["high", *([0.5] * 39)], "holds 'high' at row index 0; regression needs a number per example"),
    ([None, *np.linspace(0, 1, 39)], "1 missing targets, first at row index 0"),
])
def test_unusable_targets_are_one_data_error(tmp_path, scores, needle):
    path = tmp_path / "bad.csv"
    pd.DataFrame({"text": [f"text number {i}" for i in range(40)], "score": scores}).to_csv(path, index=False)
    with pytest.raises(DataError, match=needle):
        load_task(str(path), label_column="score", task_type="regression")


def test_bad_regression_input_is_one_line_and_exit_2(monkeypatch, capsys, tmp_path, tiny_bert_dir, scored_csv):
    out = tmp_path / "out"
    assert_refused(monkeypatch, capsys, ["compare", "--model", tiny_bert_dir, "--data", scored_csv, "--label-column",
                                         "score", "--task", "classification", "--methods", "head", "--out", out],
                   out, "looks like regression", "--task regression")
    robust = tmp_path / "robust.csv"
    scored_texts(20, seed=1).to_csv(robust, index=False)
    assert_refused(monkeypatch, capsys, ["compare", "--model", tiny_bert_dir, "--data", scored_csv, "--label-column",
                                         "score", "--robust-set", robust, "--methods", "head", "--out", out],
                   out, "--robust-set", "regression")


# --- metrics ------------------------------------------------------------------------------------------------------

def test_metrics_match_scipy_and_numpy_on_known_arrays():
    true = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    predicted = np.array([1.5, 1.0, 3.5, 3.0, 6.0, 5.5])
    assert spearman(predicted, true) == pytest.approx(stats.spearmanr(predicted, true)[0])
    assert spearman(predicted, true) == pytest.approx(1 - 6 * 6 / (6 * 35))  # 1 − 6Σd²/(n(n²−1)), every d = ±1
    assert pearson(predicted, true) == pytest.approx(np.corrcoef(predicted, true)[0, 1])
    assert mse(predicted, true) == pytest.approx(np.mean((predicted - true) ** 2)) == pytest.approx(3.75 / 6)
    assert mae(predicted, true) == pytest.approx(np.mean([0.5, 1, 0.5, 1, 1, 0.5]))
    assert spearman([3, 3, 3, 3], [1, 2, 3, 4]) == 0.0 == pearson([1, 2, 3, 4], [2, 2, 2, 2])  # constant: no association
    assert regression_metrics(true, true) == {"spearman": 1.0, "pearson": pytest.approx(1.0), "mse": 0.0, "mae": 0.0}


def test_spearman_interval_and_paired_bootstrap():
    low, high = spearman_interval(0.5, 103)  # atanh(0.5) ± 1.96 · sqrt(1.06 / 100)
    half = 1.959963984540054 * math.sqrt(1.06 / 100)
    assert (low, high) == pytest.approx((math.tanh(math.atanh(0.5) - half), math.tanh(math.atanh(0.5) + half)))
    assert spearman_interval(0.5, 3) is None
    rng = np.random.default_rng(0)
    targets = rng.normal(size=80)
    good, noisy = targets + 0.3 * rng.normal(size=80), targets + 2.0 * rng.normal(size=80)
    same = paired_spearman_gap([good], [good], targets)
    assert same["variance"] == 0.0  # identical predictions: the gap is 0 on every resample
    gap = paired_spearman_gap([noisy], [good], targets)
    assert gap == paired_spearman_gap([noisy], [good], targets) and gap["variance"] > 0  # seeded
    def unpaired(a, b):  # the delta-method variance of two independent Spearman estimates on 80 examples
        return 1.06 / 77 * ((1 - spearman(a, targets) ** 2) ** 2 + (1 - spearman(b, targets) ** 2) ** 2)

    # independent errors: about the unpaired variance; two near-identical methods: pairing removes almost all of it
    assert 0.5 < gap["variance"] / unpaired(noisy, good) < 2
    close = good + 0.05 * rng.normal(size=80)
    assert paired_spearman_gap([close], [good], targets)["variance"] < 0.05 * unpaired(close, good)


def test_ridge_probe_scores_frozen_features_against_the_training_mean():
    rng = np.random.default_rng(0)
    targets = rng.normal(size=200)
    informative = np.column_stack([targets + 0.1 * rng.normal(size=200), rng.normal(size=(200, 7))])
    probe = ridge_probe(informative[:150], targets[:150], informative[150:], targets[150:])
    assert probe["model"] == "ridge" and probe["spearman"] > 0.9 and probe["headroom_reached"] > 0.8
    assert probe["mean_mse"] == pytest.approx(mse(np.full(50, targets[:150].mean()), targets[150:]))
    assert probe["headroom_reached"] == pytest.approx(1 - probe["mse"] / probe["mean_mse"])
    noise = rng.normal(size=(200, 8))  # features that know nothing of the target: no headroom to speak of
    assert ridge_probe(noise[:150], targets[:150], noise[150:], targets[150:])["headroom_reached"] < 0.1


# --- training and evaluation -----------------------------------------------------------------------------------------

def test_targets_are_standardised_for_training_and_scored_in_their_units(scored_csv, tiny_bert_dir, tokenizer):
    task = load_task(str(scored_csv), label_column="score")
    encoded = task.kind.encode(task, tokenizer, 32)
    mean, std = task.target_scale
    test = encoded["test"]
    assert np.asarray(test["labels"]) == pytest.approx((np.asarray(test["target"]) - mean) / std)
    torch.manual_seed(0)
    model = task.kind.load_model(resolve_model(str(tiny_bert_dir)), task.label_names, tokenizer.pad_token_id)
    assert model.config.num_labels == 1 and model.config.problem_type == "regression"
    scores = evaluate_regression(model, test, tokenizer, 8, "cpu", 1, "test")
    with torch.no_grad():
        batch = tokenizer(list(task.splits["test"]["text"]), truncation=True, max_length=32, padding=True,
                          return_tensors="pt")
        raw = model(**batch).logits[:, 0].numpy()
    assert scores["predictions"] == pytest.approx(raw * std + mean, rel=1e-4, abs=1e-5)  # mapped back, row order
    assert scores["targets"] == pytest.approx(list(task.splits["test"]["label"]))
    assert scores["mae"] == pytest.approx(mae(raw * std + mean, list(task.splits["test"]["label"])), rel=1e-4)
    metrics = kind_evaluation(REGRESSION).run_metrics(scores, scores, 1)
    assert set(metrics) == {"spearman", "pearson", "mse", "mae", "test_loss", "validation_spearman", "best_epoch"}


COMMON = dict(label_column="score", max_length=32, batch_size=16, method_config=None, diagnose=False, **FIXED_RATES)


@pytest.mark.parametrize("method", PEFTLAB_METHODS)
def test_every_built_in_method_trains_a_regressor_in_compare(method, scored_csv, tiny_bert_dir, tmp_path):
    assert "regression" in METHODS[method].task_kinds
    results = compare(CompareConfig(model=str(tiny_bert_dir), data=str(scored_csv), methods=[method],
                                    out=str(tmp_path / method), max_steps=2, robustness=False, **COMMON))
    run = results["runs"][0]
    assert run["status"] == "ok", run.get("reason")
    assert {"spearman", "pearson", "mse", "mae"} <= set(run["metrics"])
    assert len(run["test_predictions"]) == len(run["test_targets"]) == results["study"]["task"]["sizes"]["test"]


TUNERS = [name for name, m in METHODS.items() if name not in PEFTLAB_METHODS and "regression" in m.task_kinds]


@pytest.mark.parametrize("name", TUNERS)
def test_every_peft_tuner_that_claims_regression_takes_mse_steps_on_a_one_output_head(name):
    """As tests/test_peft_tuners.py on classification: a tiny BERT with a one-output regression head, float labels,
    three optimizer steps with a finite MSE loss."""
    method = METHODS[name]
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2,
                                                     num_attention_heads=2, intermediate_size=128,
                                                     max_position_embeddings=64, num_labels=1,
                                                     problem_type="regression"))
    settings = method.default_settings(model)
    reason = method.refusal(model, settings)
    if reason is not None:
        pytest.skip(f"{name} refused on a BERT regressor: {reason}")
    tuned = method.apply(model, settings)
    trainable = [p for p in tuned.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=method.learning_rate)
    ids = torch.randint(3, 100, (4, 12), generator=torch.Generator().manual_seed(1))
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.tensor([0.5, -1.0, 2.0, 0.0])}
    tuned.train()
    for _ in range(3):
        output = tuned(**inputs)
        assert output.logits.shape[-1] == 1 and torch.isfinite(output.loss), f"{name}: loss {output.loss}"
        output.loss.backward()
        optimizer.step()
        optimizer.zero_grad()


def test_compare_end_to_end_with_robustness_report_and_verdict(scored_csv, tiny_bert_dir, tmp_path):
    out = tmp_path / "study"
    rates = tmp_path / "rates.yaml"  # rates at which the tiny model learns (as in tests/test_diagnose.py)
    rates.write_text("full: {learning_rate: 0.001}\nlora: {learning_rate: 0.005}\n")
    results = compare(CompareConfig(model=str(tiny_bert_dir), data=str(scored_csv), methods=["full", "lora"],
                                    out=str(out), epochs=6, perturb_examples=12, attack_examples=4,
                                    **{**COMMON, "method_config": str(rates), "diagnose": True}))
    assert results["study"]["task"]["type"] == "regression"  # inferred: no --task
    runs = {run["method"]: run for run in results["runs"]}
    assert [run["status"] for run in runs.values()] == ["ok", "ok"], results["runs"]
    full = runs["full"]
    assert full["metrics"]["validation_spearman"] == max(row["spearman"] for row in full["curve"]["validation"])
    assert full["metrics"]["mse"] == pytest.approx(mse(full["test_predictions"], full["test_targets"]), rel=1e-4)
    assert full["metrics"]["spearman"] == pytest.approx(spearman(full["test_predictions"], full["test_targets"]))
    assert full["metrics"]["spearman"] > 0.3, full["metrics"]  # it learns something of good − bad words
    for run in runs.values():  # robustness: MAE on clean and perturbed texts; the attacks say why they did not run
        robust = run["robustness"]
        assert robust["status"] == "ok" and robust["score"] == "mae" and robust["examples"] == 12
        assert robust["mae_increase"] == pytest.approx(robust["perturbed_mae"] - robust["clean_mae"])
        assert robust["attacks"]["status"] == "skipped" and "no class to flip" in robust["attacks"]["reason"]
    assert results["study"]["robustness"]["settings"]["attack_examples"] == 0  # no neighbours built for nothing

    assert "diagnosis_failed" not in results, results.get("diagnosis_failed")  # the diagnosis, with a ridge probe
    diagnosis = json.loads((out / "diagnosis.json").read_text())
    assert diagnosis["probe"]["model"] == "ridge" and diagnosis["probe"]["test_examples"] == 16
    assert diagnosis["task_shape"]["target_std"] > 0 and diagnosis["spectrum_source"]["kind"] == "compare_full_run"
    assert results["recommendation"]["decision"] in ("full", "peft")

    verdict = results["verdict"]
    assert verdict["metric"] == "spearman" and verdict["reference"] == "full"
    assert verdict["learned"]["baseline_name"] == "training mean" and verdict["learned"]["baseline"] == 0.0
    assert verdict["learned"]["ci95"] == pytest.approx(spearman_interval(full["metrics"]["spearman"], 16))
    if verdict["methods"]:  # judged only when full fine-tuning learned and had flattened
        assert verdict["methods"]["lora"]["interval"] == "paired bootstrap over test examples"

    html, markdown = (out / "report.html").read_text(), write_report(out, format="md").read_text()
    rows = list(csv.DictReader(io.StringIO(write_report(out, format="csv").read_text())))
    for text in (html, markdown):
        assert "Spearman (Δ pts)" in text and "Pearson (Δ pts)" in text and "MSE" in text and "clean MAE" in text
        assert "no class to flip" in text
    assert [row["method"] for row in rows] == ["full", "lora"]
    assert float(rows[0]["spearman"]) == pytest.approx(full["metrics"]["spearman"])
    assert float(rows[1]["robust_clean_mae"]) == pytest.approx(runs["lora"]["robustness"]["clean_mae"])

    merged = tmp_path / "merged"  # export: the merged LoRA regressor predicts what the run predicted
    export(ExportConfig(run_dir=str(out), method="lora", adapter=str(tmp_path / "adapter"), merged=str(merged)))
    with pytest.raises(ConfigError, match="--compress measures the compressed adapter's test accuracy"):
        export(ExportConfig(run_dir=str(out), method="lora", adapter=str(tmp_path / "a2"), compress=[0.5]))
    assert not (tmp_path / "a2").exists()
    model = AutoModelForSequenceClassification.from_pretrained(merged).eval()
    texts = list(load_task(str(scored_csv), label_column="score").splits["test"]["text"])
    with torch.no_grad():
        z = model(**load_tokenizer(resolve_model(str(merged)))(texts, truncation=True, max_length=32, padding=True,
                                                                 return_tensors="pt")).logits[:, 0].numpy()
    scale = results["study"]["task"]
    assert z * scale["target_std"] + scale["target_mean"] == pytest.approx(runs["lora"]["test_predictions"],
                                                                           abs=1e-4)

    again = evaluate_saved_study(out, perturb_examples=6)  # `peftlab robustness` on the saved regression runs
    assert [run["robustness"]["examples"] for run in again["runs"]] == [6, 6]
    assert again["runs"][0]["robustness"]["score"] == "mae"


# --- the verdict on regression records -------------------------------------------------------------------------------

def _record(method: str, predictions, targets, validation=(0.2, 0.5, 0.5)) -> dict:
    return {"method": method, "status": "ok", "seed": 0,
            "metrics": {"spearman": spearman(predictions, targets), "pearson": pearson(predictions, targets)},
            "cost": {"trainable_params": 1000 if method == "full" else 10, "train_steps": 30},
            "curve": {"validation": [{"spearman": v} for v in validation]},
            "test_predictions": list(map(float, predictions)), "test_targets": list(map(float, targets))}


def _header(n: int) -> dict:
    return {"task": {"type": "regression", "sizes": {"test": n}, "test_majority_share": None},
            "config": {"tolerance": 1.0}}


def test_verdict_judges_regression_runs_by_spearman():
    rng = np.random.default_rng(1)
    targets = rng.normal(size=300)
    full = targets + 0.5 * rng.normal(size=300)
    same = full + 1e-3 * rng.normal(size=300)  # a PEFT method as good as full fine-tuning
    worse = targets + 3.0 * rng.normal(size=300)  # clearly worse
    verdict = study_verdict(_header(300), [_record("full", full, targets), _record("lora", same, targets)])
    assert verdict["learned"]["learned"] and verdict["decision"] == "lora" and verdict["conclusive"]
    gap = verdict["methods"]["lora"]
    assert gap["interval"] == "paired bootstrap over test examples" and gap["ci95_points"][0] >= -1.0
    verdict = study_verdict(_header(300), [_record("full", full, targets), _record("lora", worse, targets)])
    assert verdict["decision"] == "full" and verdict["gap_points"] < -10 and verdict["gap_ci95_points"][1] < -1.0
    noise = rng.normal(size=12)  # a tiny model that learned nothing: inconclusive, with the reason
    verdict = study_verdict(_header(12), [_record("full", noise, targets[:12]), _record("lora", noise, targets[:12])])
    assert verdict["decision"] == "inconclusive" and not verdict["learned"]["learned"]
    assert "training mean baseline" in verdict["reasons"][0]
    no_predictions = [{k: v for k, v in _record(m, p, targets).items() if not k.startswith("test_")}
                      for m, p in (("full", full), ("lora", worse))]
    unpaired = study_verdict(_header(300), no_predictions)["methods"]["lora"]
    assert unpaired["interval"] == "unpaired, no per-example predictions"
    paired = study_verdict(_header(300), [_record("full", full, targets), _record("lora", worse, targets)])
    assert unpaired["gap_points"] == pytest.approx(paired["methods"]["lora"]["gap_points"])


def test_zero_shot_has_no_reading_for_regression_and_is_refused(scored_csv, tiny_bert_dir, tmp_path):
    results = compare(CompareConfig(model=str(tiny_bert_dir), data=str(scored_csv), methods=["zero-shot", "full"],
                                    out=str(tmp_path / "out"), max_steps=2, robustness=False, **COMMON))
    runs = {run["method"]: run for run in results["runs"]}
    assert runs["zero-shot"]["status"] == "refused" and "training mean" in runs["zero-shot"]["reason"]
    assert runs["full"]["status"] == "ok" and results["verdict"]["floor"] is None
