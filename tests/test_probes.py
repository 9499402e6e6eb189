"""Probes never fail a trained run: on model types the estimate does not model, every run is ok and the estimate
probe's record says why it was skipped; a probe that raises is recorded as failed, with its log, and the run and
its other measurements stay."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from conftest import FIXED_RATES, MINILM_VOCAB_SIZE, TINY_LABELS
from peftlab import CompareConfig, compare
from peftlab.errors import ModelError
from peftlab.measure import Phases
from peftlab.models import load_tokenizer, resolve_model
from peftlab.study import probes
from peftlab.study.probes import Probe, ProbeSkipped, guarded, run_probes


def _tiny_model_dir(tmp_path_factory, name: str, model_class, config):
    directory = tmp_path_factory.mktemp(name)
    torch.manual_seed(0)
    model_class(config).save_pretrained(directory, safe_serialization=True)
    load_tokenizer(resolve_model("minilm")).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def tiny_distilbert_dir(tmp_path_factory):
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    config = DistilBertConfig(vocab_size=MINILM_VOCAB_SIZE, dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                              max_position_embeddings=160, num_labels=len(TINY_LABELS))
    return _tiny_model_dir(tmp_path_factory, "tiny-distilbert", DistilBertForSequenceClassification, config)


@pytest.fixture(scope="module")
def tiny_gpt2_dir(tmp_path_factory):
    from transformers import GPT2Config, GPT2ForSequenceClassification

    config = GPT2Config(vocab_size=MINILM_VOCAB_SIZE, n_embd=32, n_layer=2, n_head=2, n_positions=160,
                        num_labels=len(TINY_LABELS), pad_token_id=0)
    return _tiny_model_dir(tmp_path_factory, "tiny-gpt2", GPT2ForSequenceClassification, config)


@pytest.mark.parametrize("model_fixture,model_type", [("tiny_distilbert_dir", "distilbert"), ("tiny_gpt2_dir", "gpt2")])
def test_runs_on_architectures_beyond_bert_and_llama_are_estimated(model_fixture, model_type, request, tiny_task_csv,
                                                                   tmp_path):
    model_dir = request.getfixturevalue(model_fixture)
    out = tmp_path / "study"
    results = compare(CompareConfig(**FIXED_RATES, model=str(model_dir), data=str(tiny_task_csv), methods=["full", "lora"],
                                    max_steps=2, batch_size=8, robustness=False, diagnose=False, out=str(out)))
    assert [run["method"] for run in results["runs"]] == ["full", "lora"]
    for run in results["runs"]:
        assert run["status"] == "ok", run.get("reason")
        estimate = run["estimate"]
        assert estimate["status"] == "ok", estimate  # measured, not skipped
        assert 0.8 <= estimate["flops_per_step_estimated"] / estimate["flops_per_step_counted"] <= 1.25
        assert estimate["trainable_params_estimated"] == run["cost"]["trainable_params"]
        assert run["latency"]["status"] == "ok" and run["cost"]["inference_ms_per_example"] > 0


def test_a_model_the_estimate_cannot_model_is_skipped_and_the_run_stays_ok(tiny_bert_dir, tiny_task_csv, tmp_path,
                                                                          monkeypatch):
    def not_modelled(*args, **kwargs):
        raise ModelError("cannot estimate model '(config)': model_type 'mystery' is not modelled")

    monkeypatch.setattr(probes, "estimate_run", not_modelled)
    out = tmp_path / "study"
    results = compare(CompareConfig(**FIXED_RATES, model=str(tiny_bert_dir), data=str(tiny_task_csv), methods=["full", "lora"],
                                    max_steps=2, batch_size=8, robustness=False, diagnose=False, out=str(out)))
    for run in results["runs"]:
        assert run["status"] == "ok", run.get("reason")
        assert run["estimate"]["status"] == "skipped"
        assert "'mystery'" in run["estimate"]["reason"] and "not modelled" in run["estimate"]["reason"]
        assert 0.0 <= run["metrics"]["accuracy"] <= 1.0
        assert (out / run["artifact"]).is_dir()
    written = json.loads((out / "results.json").read_text())
    assert [run["estimate"]["status"] for run in written["runs"]] == ["skipped", "skipped"]
    assert (out / "report.html").is_file()  # the report shows runs whose estimate was skipped


def test_a_probe_that_raises_leaves_the_run_ok(tiny_bert_dir, tiny_task_csv, tmp_path, monkeypatch):
    class Broken(Probe):
        name = "estimate"

        def measure(self, run):
            raise RuntimeError("the cost model broke")

    monkeypatch.setattr(probes, "PROBES", (probes.LatencyProbe(), Broken()))
    out = tmp_path / "study"
    results = compare(CompareConfig(**FIXED_RATES, model=str(tiny_bert_dir), data=str(tiny_task_csv), methods=["lora"],
                                    max_steps=2, batch_size=8, robustness=False, diagnose=False, out=str(out)))
    run = results["runs"][0]
    assert run["status"] == "ok"
    assert run["estimate"] == {"status": "failed", "reason": "RuntimeError: the cost model broke"}
    assert "the cost model broke" in (out / "logs" / "lora.estimate.log").read_text()
    assert run["metrics"]["accuracy"] >= 0 and run["cost"]["trainable_params"] > 0
    assert "estimate" in run["timing"]["phases"]


def test_guarded_records_ok_skipped_and_failed():
    logs = []
    assert guarded(lambda: {"value": 1}, logs.append) == {"status": "ok", "value": 1}

    def skip():
        raise ProbeSkipped("does not apply here")

    assert guarded(skip, logs.append) == {"status": "skipped", "reason": "does not apply here"}
    assert logs == []

    def fail():
        raise ValueError("bad\nsecond line")

    assert guarded(fail, logs.append) == {"status": "failed", "reason": "ValueError: bad"}
    assert "Traceback" in logs[0]


def test_a_probe_the_study_did_not_ask_for_writes_no_record():
    class Off(Probe):
        name = "off"

        def enabled(self, study):
            return False

        def measure(self, run):
            raise AssertionError("not called")

    assert run_probes(SimpleNamespace(study=None), Phases(), lambda probe, text: None, (Off(),)) == {}
