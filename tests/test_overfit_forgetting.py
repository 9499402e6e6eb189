"""The generalization gap and forgetting probes: the metric on a sample of the run's own training set and its gap
to test; linear CKA of the representations on general text (1 = unchanged) and, for causal LMs, the change of the
language-model loss (0 = unchanged); both never fail a run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from peftlab import CompareConfig, compare
from peftlab.evaluate.forgetting import lm_cross_entropy, linear_cka, sentence_features
from peftlab.models import load_causal_lm, load_tokenizer, resolve_model
from peftlab.study import probes
from peftlab.study.inputs import run_context
from peftlab.study.probes import ForgettingProbe, GeneralizationProbe, TrainedRun
from peftlab.tasks.reference import reference_texts
from conftest import FIXED_RATES


def test_linear_cka():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 8))
    rotation, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    assert linear_cka(x, x) == pytest.approx(1.0)
    assert linear_cka(x, 3.0 * x @ rotation + 1.0) == pytest.approx(1.0)  # invariant to rotation, scale, shift
    assert linear_cka(x, rng.normal(size=(50, 8))) < 0.5


def test_an_untrained_model_has_not_forgotten(tmp_path, tiny_llama_dir, tiny_task_csv, colour_bigbench):
    """The probes on the base model itself: CKA 1, loss change 0, gap = train − test exactly."""
    context = run_context(CompareConfig(**FIXED_RATES, model=str(tiny_llama_dir), data=str(colour_bigbench), methods=["full"],
                                        task="multiple-choice",
                                        max_steps=1, batch_size=8, out=str(tmp_path / "o"), robustness=False))
    study = context.study
    base = study.task.kind.load_model(study.model_ref, study.task.label_names, study.tokenizer.pad_token_id)
    trained = TrainedRun(base, "full", {}, 0, study, context.encoded, torch.device("cpu"), {"accuracy": 0.25})
    forgetting = ForgettingProbe().measure(trained)
    assert forgetting["cka"] == pytest.approx(1.0, abs=1e-6)
    assert forgetting["lm_loss_change"] == pytest.approx(0.0, abs=1e-6) and forgetting["lm_loss"] > 0
    gap = GeneralizationProbe().measure(trained)
    assert gap["examples"] == len(context.encoded["test"])
    assert gap["gap_points"]["accuracy"] == pytest.approx(100 * (gap["train"]["accuracy"] - 0.25))
    tokenizer = load_tokenizer(resolve_model(str(tiny_llama_dir)))
    texts = reference_texts()[:8]
    model = load_causal_lm(resolve_model(str(tiny_llama_dir)), tokenizer.pad_token_id)
    one_by_one = [lm_cross_entropy(model, tokenizer, [text], 64, "cpu") for text in texts[:2]]
    assert lm_cross_entropy(model, tokenizer, texts[:2], 64, "cpu", batch_size=1) == pytest.approx(
        np.average(one_by_one, weights=[len(tokenizer(t)["input_ids"]) - 1 for t in texts[:2]]))
    assert sentence_features(model, tokenizer, texts, 64, "cpu").shape == (8, model.config.hidden_size)


def test_runs_record_the_gap_and_forgetting(tmp_path, tiny_bert_dir, tiny_task_csv):
    rates = tmp_path / "rates.yaml"
    rates.write_text("full: {learning_rate: 3.0e-3}\n")  # a high rate: full fine-tuning moves in 6 steps
    results = compare(CompareConfig(**FIXED_RATES, model=str(tiny_bert_dir), data=str(tiny_task_csv),
                                    methods=["full", "lora", "head", "prompt"], max_steps=6, batch_size=8,
                                    out=str(tmp_path / "out"), robustness=False, diagnose=False,
                                    method_config=str(rates)))
    runs = {run["method"]: run for run in results["runs"]}
    for method, run in runs.items():
        assert run["status"] == "ok", run
        gap = run["generalization"]
        assert gap["status"] == "ok" and set(gap["train"]) == {"accuracy", "macro_f1", "loss"}
        assert gap["gap_points"]["accuracy"] == pytest.approx(100 * (gap["train"]["accuracy"] - run["metrics"]["accuracy"]))
        assert runs[method]["forgetting"]["status"] == "ok" and "lm_loss_change" not in run["forgetting"]
    assert runs["head"]["forgetting"]["cka"] == pytest.approx(1.0, abs=1e-6)  # only the head trained
    assert runs["full"]["forgetting"]["cka"] < 0.99  # every weight moved: so did the representation


def test_a_failing_forgetting_probe_leaves_the_run_ok(tmp_path, tiny_bert_dir, tiny_task_csv, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no reference text")

    monkeypatch.setattr(probes, "reference_texts", broken)
    results = compare(CompareConfig(**FIXED_RATES, model=str(tiny_bert_dir), data=str(tiny_task_csv), methods=["lora"],
                                    max_steps=2, batch_size=8, out=str(tmp_path / "out"), robustness=False,
                                    diagnose=False))
    run = results["runs"][0]
    assert run["status"] == "ok" and run["forgetting"] == {"status": "failed",
                                                           "reason": "RuntimeError: no reference text"}
    assert run["generalization"]["status"] == "ok"
