"""Registering a method in one place is all compare, estimate, the memory options, export and the report need.

The toy method is `lora-qv`: LoRA r=2 on the attention query and value projections only, as a peft config with
defaults, naming the estimate's LoRA plan. It is registered by one call (`registered_method`) for this module and
gone after it; nothing else in peftlab knows about it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from peft import AutoPeftModelForSequenceClassification, LoraConfig
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from peftlab.cli import list_methods
from peftlab.errors import MethodError
from peftlab.estimate import EstimateSettings, estimate, estimate_run, is_modelled, modelled_methods
from peftlab.estimate.plans import PLAN_BUILDERS
from peftlab.evaluate import evaluate_split
from peftlab.export import ExportConfig, export
from peftlab.export.evaluation import evaluate_folder, study_test_task
from peftlab.methods import (ESTIMATE_PLANS, METHODS, PEFTLAB_METHODS, get_method, parse_methods, register_method, registered_method,
                             unregister_method)
from peftlab.methods.head import HEAD
from peftlab.methods.peft_methods import LORA_UPDATE, PeftLibraryMethod
from peftlab.models.memory import MemoryOptions
from peftlab import CompareConfig, compare
from peftlab.study.artifacts import load_run
from peftlab.tasks.encode import encode_task
from conftest import FIXED_RATES

NAME = "lora-qv"
LORA_QV = PeftLibraryMethod(
    name=NAME,
    summary="LoRA r=2 on the attention query and value projections only (a test's own method)",
    learning_rate=5e-3,
    settings_class=LoraConfig,
    defaults={"r": 2, "lora_alpha": 4, "lora_dropout": 0.0, "target_modules": ["query", "value"]},
    mergeable=True,
    update_tensors=dict(LORA_UPDATE),
    estimate_plan="lora",
)
HIDDEN, LAYERS, LABELS = 32, 2, 2  # conftest's tiny BERT
# per layer, query and value (32 -> 32) each get A (2 x 32) and B (32 x 2); the head trains as peft's copy
LORA_QV_FACTORS = LAYERS * 2 * 2 * (HIDDEN + HIDDEN)  # 512
HEAD_PARAMS = HIDDEN * LABELS + LABELS  # 66
LORA_QV_TRAINABLE = LORA_QV_FACTORS + HEAD_PARAMS  # 578
TEXTS = ["the movie was great and wonderful", "awful boring plot", "it was the film", "terrible",
         "a really lovely and amazing story, quite happy"]


@pytest.fixture(scope="module")
def lora_qv():
    with registered_method(LORA_QV) as method:
        yield method
    assert NAME not in METHODS  # unregistered: other test modules see the built-in registry only


@pytest.fixture(scope="module")
def study(lora_qv, tiny_bert_dir, tiny_task_csv, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("registered-method-study")
    results = compare(CompareConfig(**FIXED_RATES, model=str(tiny_bert_dir), data=str(tiny_task_csv), methods=[NAME], max_steps=4,
                                    batch_size=16, seed=0, out=str(out), robustness=False, diagnose=False))
    (record,) = results["runs"]
    assert record["status"] == "ok", record.get("reason")
    return out, record


def test_the_registry_and_peftlab_methods_see_a_registered_method(lora_qv, capsys):
    assert METHODS[NAME] is lora_qv and list(METHODS)[-1] == NAME  # after the built-in ones
    assert get_method(NAME) is lora_qv
    assert parse_methods(f"full, {NAME}") == ["full", NAME]
    assert NAME in modelled_methods() and is_modelled(NAME)
    list_methods()
    row = next(line for line in capsys.readouterr().out.splitlines() if NAME in line)
    assert "0.005" in row and "r=2" in row


def test_registration_refuses_what_would_break_later():
    with pytest.raises(MethodError, match="'lora' is already registered"):
        register_method(dataclasses.replace(LORA_QV, name="lora"))
    with pytest.raises(MethodError, match="letters, digits"):
        register_method(dataclasses.replace(LORA_QV, name="lora,qv"))  # --methods splits on commas
    with pytest.raises(MethodError, match="unknown estimate_plan 'lora-qv'.*full, head, bitfit, lora"):
        register_method(dataclasses.replace(LORA_QV, name="typo", estimate_plan="lora-qv"))
    with pytest.raises(MethodError, match="built in"):
        unregister_method("lora")
    with pytest.raises(MethodError, match="not registered"):
        unregister_method("never-registered")
    assert "typo" not in METHODS and "lora" in METHODS


def test_every_plan_a_method_may_name_has_a_builder():
    assert set(PLAN_BUILDERS) == set(ESTIMATE_PLANS)
    assert all(METHODS[name].estimate_plan in ESTIMATE_PLANS for name in PEFTLAB_METHODS)
    # the tuners generated from peft's registry are not modelled by the estimate (it refuses them in one line)
    assert all(method.estimate_plan is None for name, method in METHODS.items() if name not in PEFTLAB_METHODS
               and name != NAME)


# --- compare ------------------------------------------------------------------------------------------------------

def test_compare_trains_it_with_the_trainable_count_the_estimate_gives(study, tiny_bert_dir):
    out, record = study
    assert record["method"] == NAME
    assert record["config"]["r"] == 2 and sorted(record["config"]["target_modules"]) == ["query", "value"]
    assert record["config"]["learning_rate"] == 5e-3
    assert record["cost"]["trainable_params"] == LORA_QV_TRAINABLE
    assert record["cost"]["train_steps"] == 4
    config = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir).config
    estimated = estimate_run(config, NAME, record["config"], batch_size=16, seq_len=32)
    assert estimated["trainable_params"] == record["cost"]["trainable_params"]
    assert estimated["total_params"] == record["cost"]["total_params"]
    # the run's own estimate record: FLOPs of one step counted under FlopCounterMode against the estimate
    check = record["estimate"]
    assert check["peak_memory_bytes"] > 0 and check["peak_memory_shape"][0] == 16
    assert 0.8 <= check["flops_per_step_estimated"] / check["flops_per_step_counted"] <= 1.2
    assert (out / "runs" / NAME / "adapter_config.json").is_file()
    assert NAME in (out / "report.html").read_text()


# --- estimate -----------------------------------------------------------------------------------------------------

def test_estimate_models_it_from_the_config_alone(lora_qv, tiny_bert_dir, load_tiny_bert):
    settings = EstimateSettings(batch_size=4, seq_len=32, dtype="fp32", task="classification", device="cpu")
    qv, lora = estimate(str(tiny_bert_dir), [NAME, "lora"], settings)
    base = sum(p.numel() for p in load_tiny_bert().parameters())
    assert qv["method"] == NAME and qv["trainable_params"] == LORA_QV_TRAINABLE
    assert qv["total_params"] == base + LORA_QV_FACTORS + HEAD_PARAMS  # the base, the factors, the head's copy
    assert lora["trainable_params"] == 7746  # r=8 on all 13 linears + the head (tests/test_methods.py)
    # fp32 on CPU: AdamW keeps two fp32 moments per trainable parameter plus a 4-byte step per tensor
    tensors = LAYERS * 2 * 2 + 1  # lora_A and lora_B of query and value per layer; the head (one entry in the plan)
    assert qv["memory_bytes"]["optimizer"] == 2 * 4 * LORA_QV_TRAINABLE + 4 * tensors
    assert qv["memory_bytes"]["gradients"] == 4 * LORA_QV_TRAINABLE
    # fewer LoRA branches: fewer weight-gradient FLOPs than LoRA everywhere, the same forward through the base
    assert 0 < qv["flops_per_token"]["backward_weights"] < lora["flops_per_token"]["backward_weights"]
    assert qv["checkpoint_bytes"] < lora["checkpoint_bytes"]


def test_a_method_naming_no_plan_is_refused_by_the_estimate_in_one_line(tiny_bert_dir):
    unmodelled = dataclasses.replace(LORA_QV, name="lora-unmodelled", estimate_plan=None)
    with registered_method(unmodelled):
        assert not is_modelled("lora-unmodelled") and "lora-unmodelled" not in modelled_methods()
        with pytest.raises(MethodError, match="method 'lora-unmodelled' is not modelled by the estimate"):
            estimate(str(tiny_bert_dir), ["lora-unmodelled"], EstimateSettings(task="classification"))
    assert "lora-unmodelled" not in METHODS


# --- memory options -----------------------------------------------------------------------------------------------

def test_memory_options_read_what_the_method_trains(lora_qv, load_tiny_bert):
    base_trainer = dataclasses.replace(HEAD, name="head-again")  # trains the base's own classifier
    assert base_trainer.trains_base_weights and not lora_qv.trains_base_weights
    with pytest.raises(MethodError, match="method 'head-again' trains the base's own weights"):
        MemoryOptions(load_in_4bit=True).prepare(load_tiny_bert(), base_trainer)
    model = MemoryOptions(gradient_checkpointing=True).prepare(load_tiny_bert(), lora_qv)
    assert model.is_gradient_checkpointing and model.config.use_cache is False


# --- export -------------------------------------------------------------------------------------------------------

@torch.no_grad()
def logits_of(model, batch) -> torch.Tensor:
    return model.eval()(**batch).logits


def test_export_writes_an_adapter_and_a_merged_model_with_the_runs_predictions(study, tmp_path):
    out, record = study
    summary = export(ExportConfig(run_dir=str(out), method=NAME, adapter=str(tmp_path / "adapter"),
                                  merged=str(tmp_path / "merged")))
    adapter, merged = Path(summary["adapter"]["path"]), Path(summary["merged"]["path"])
    assert summary["adapter"]["peft_format"] and summary["merged"]["max_abs_logit_difference"] <= 1e-4
    written = json.loads((adapter / "adapter_config.json").read_text())
    assert written["r"] == 2 and sorted(written["target_modules"]) == ["query", "value"]
    weights = load_file(str(adapter / "adapter_model.safetensors"))
    factors = sorted(key for key in weights if ".lora_" in key)
    assert len(factors) == LAYERS * 2 * 2 and all(".query." in key or ".value." in key for key in factors)
    assert all(weights[key].abs().max() > 0 for key in factors if ".lora_B." in key)  # a real update to merge

    trained, tokenizer, info = load_run(out / "runs" / NAME)
    batch = dict(AutoTokenizer.from_pretrained(adapter)(TEXTS, padding=True, return_tensors="pt"))
    expected = logits_of(trained, batch)
    from_adapter = logits_of(AutoPeftModelForSequenceClassification.from_pretrained(adapter), batch)
    from_merged = logits_of(AutoModelForSequenceClassification.from_pretrained(merged), batch)
    torch.testing.assert_close(from_adapter, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(from_merged, expected, rtol=0, atol=1e-4)
    assert torch.equal(from_merged.argmax(-1), expected.argmax(-1))

    # on the study's own test split: the same accuracy as the run recorded, for the adapter and the merged model
    task = study_test_task(out, json.loads((out / "results.json").read_text())["study"])
    assert evaluate_folder(adapter, task)["accuracy"] == record["metrics"]["accuracy"]
    test = encode_task(task, tokenizer, info["max_length"])["test"]
    merged_model = AutoModelForSequenceClassification.from_pretrained(merged)
    scores = evaluate_split(merged_model, test, tokenizer, 64, "cpu", task.num_labels, "test")
    assert scores["accuracy"] == record["metrics"]["accuracy"]
