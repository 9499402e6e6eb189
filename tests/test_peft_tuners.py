"""Every peft tuner peftlab generates from peft's registry (methods/peft_tuners.py), on a tiny random BERT
classifier and a tiny random Llama causal LM: it applies, trains a few steps with a finite loss, saves, and loads
back through ``PeftModel.from_pretrained`` with identical logits; a refused tuner says why in one line."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from peft import PeftModel
from transformers import BertConfig, BertForSequenceClassification, LlamaConfig, LlamaForCausalLM

from peftlab import CompareConfig, compare
from peftlab.export import ExportConfig, export
from peftlab.methods.peft_tuners import PEFT_TUNER_METHODS, TUNER_REFUSALS
from peftlab.study.store import StudyStore
from conftest import FIXED_RATES

TUNERS = [m for m in PEFT_TUNER_METHODS if not m.refused]
REFUSED = [m for m in PEFT_TUNER_METHODS if m.refused]


def tiny_bert() -> torch.nn.Module:
    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2,
                                                    num_attention_heads=2, intermediate_size=128,
                                                    max_position_embeddings=64, num_labels=2))


def tiny_llama() -> torch.nn.Module:
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                        num_key_value_heads=2, intermediate_size=128, max_position_embeddings=64))


MODELS = {"seq-cls-bert": tiny_bert, "causal-llama": tiny_llama}


def batch(kind: str) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 100, (4, 12), generator=generator)
    labels = torch.tensor([0, 1, 0, 1]) if kind == "seq-cls-bert" else ids.clone()
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


@pytest.mark.parametrize("kind", list(MODELS))
@pytest.mark.parametrize("method", TUNERS, ids=lambda m: m.name)
def test_tuner_trains_saves_and_loads_back(method, kind, tmp_path):
    model = MODELS[kind]()
    settings = method.default_settings(model)
    reason = method.refusal(model, settings)
    if reason is not None:
        assert reason.strip() and "\n" not in reason
        pytest.skip(f"{method.name} refused on {kind}: {reason}")
    peft_model = method.apply(model, settings)
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    assert trainable, f"{method.name} trains no parameter"
    optimizer = torch.optim.AdamW(trainable, lr=method.learning_rate)
    inputs = batch(kind)
    peft_model.train()
    for _ in range(3):
        loss = peft_model(**inputs).loss
        assert torch.isfinite(loss), f"{method.name}: loss {loss}"
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    peft_model.eval()
    with torch.no_grad():
        expected = peft_model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
    method.save(peft_model, tmp_path)
    assert (tmp_path / "adapter_model.safetensors").is_file()
    loaded = PeftModel.from_pretrained(MODELS[kind](), str(tmp_path))
    loaded.eval()
    with torch.no_grad():
        got = loaded(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
    torch.testing.assert_close(got, expected)
    if method.mergeable:
        merged = method.merge(loaded)
        with torch.no_grad():
            folded = merged(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
        torch.testing.assert_close(folded, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("method", REFUSED, ids=lambda m: m.name)
def test_refused_tuner_says_why_in_one_line(method):
    model = tiny_bert()
    reason = method.refusal(model, {})
    assert reason == TUNER_REFUSALS[method.name.upper()]
    assert "\n" not in reason and len(reason) > 20


def test_a_study_gives_adalora_its_total_steps_and_refuses_what_cannot_run(tiny_bert_dir, tiny_task_csv, tmp_path):
    results = compare(CompareConfig(**FIXED_RATES, model=str(tiny_bert_dir), data=str(tiny_task_csv), methods=["adalora", "xlora",
                                    "loha"], max_steps=3, batch_size=16, seed=0, out=str(tmp_path),
                                    robustness=False, diagnose=False))
    runs = {r["method"]: r for r in results["runs"]}
    assert runs["adalora"]["status"] == "ok", runs["adalora"].get("reason")
    assert runs["adalora"]["config"]["total_step"] == 3  # the run's length, not the placeholder default
    # the loop called update_and_allocate after every step: at the last one AdaLoRA fixed its ranks, which peft
    # saves as the adapter's rank_pattern (None when the allocation never ran)
    saved = json.loads((tmp_path / runs["adalora"]["artifact"] / "adapter_config.json").read_text())
    assert isinstance(saved["rank_pattern"], dict) and saved["rank_pattern"]
    assert sum(sum(mask) for mask in saved["rank_pattern"].values()) <= 8 * len(saved["rank_pattern"])  # target_r
    assert runs["loha"]["status"] == "ok", runs["loha"].get("reason")
    assert runs["xlora"]["status"] == "refused" and TUNER_REFUSALS["XLORA"] in runs["xlora"]["reason"]


def test_generated_tuners_work_everywhere_methods_work(tiny_bert_dir, tiny_task_csv, tmp_path):
    """LoHa and VeRA, two of the tuners generated from peft's registry: two seeds, a tuned rate, robustness, an
    estimate record saying the estimate does not model them (the run stays ok), export in the peft format and a
    resume that trains nothing again."""
    config = CompareConfig(model=str(tiny_bert_dir), data=str(tiny_task_csv), methods=["loha", "vera"], epochs=2,
                           batch_size=16, seeds=2, tune=["lr"], tune_points=2, robustness=True, perturb_examples=16,
                           attack_examples=2, attack_query_budget=8, diagnose=False, out=str(tmp_path / "out"))
    results = compare(config)
    runs = results["runs"]
    assert sorted((r["method"], r["seed"]) for r in runs) == [("loha", 0), ("loha", 1), ("vera", 0), ("vera", 1)]
    assert all(r["status"] == "ok" for r in runs), [r.get("reason") for r in runs]
    for name in ("loha", "vera"):
        tuning = results["tuning"]["methods"][name]
        assert len(tuning["trials"]) == 2
        assert all(r["config"]["learning_rate"] == tuning["chosen_learning_rate"] for r in runs if r["method"] == name)
    for run in runs:
        assert run["robustness"]["status"] == "ok", run["robustness"]
        assert run["estimate"]["status"] == "skipped" and "not modelled" in run["estimate"]["reason"]
    export(ExportConfig(run_dir=str(tmp_path / "out"), method="loha", adapter=str(tmp_path / "adapter")))
    saved = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert saved["peft_type"] == "LOHA"
    finished = {row["run_key"]: row["finished_at"] for row in StudyStore(tmp_path / "out" / "study.sqlite").runs()}
    compare(config)
    assert {row["run_key"]: row["finished_at"]
            for row in StudyStore(tmp_path / "out" / "study.sqlite").runs()} == finished


def test_a_generated_tuner_trains_a_decoder_on_multiple_choice(tiny_llama_dir, colour_bigbench, tmp_path):
    results = compare(CompareConfig(**FIXED_RATES, model=str(tiny_llama_dir), data=str(colour_bigbench), task="multiple-choice",
                                    methods=["loha", "lokr"], max_steps=4, batch_size=8, max_train_examples=24,
                                    max_eval_examples=6, robustness=False, diagnose=False, out=str(tmp_path)))
    for run in results["runs"]:
        assert run["status"] == "ok", run.get("reason")
        assert 0.0 <= run["metrics"]["accuracy"] <= 1.0 and run["cost"]["trainable_params"] > 0
        assert len(run["test_correct"]) == 6
