"""Save and load: every method's checkpoint restores the trained model on a fresh base, bit for bit (or to
1e-6), through the method's own `load`, through peft directly where the files are peft's, and through
`load_run` on a folder written by `compare`."""

from __future__ import annotations

import json

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file

from conftest import FIXED_RATES, TINY_LABELS
from peftlab.evaluate import evaluate_split, predict_logits
from peftlab.methods import PEFTLAB_METHODS, get_method
from peftlab.methods.partial_state import STATE_FILE
from peftlab.files import RUN_FILE
from peftlab.study.artifacts import load_run
from peftlab import CompareConfig, compare
from peftlab.tasks import load_task
from peftlab.tasks.encode import encode_task

PEFT_METHODS = ["lora", "dora", "ia3", "prompt", "prefix"]


def token_batch(n: int = 4, length: int = 12, seed: int = 1) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1000, 30000, (n, length), generator=generator)
    input_ids[:, 0] = 101  # [CLS]
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, length // 3:] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask}


@torch.no_grad()
def logits_of(model, batch) -> torch.Tensor:
    model.eval()
    return model(**batch).logits


@torch.no_grad()
def perturb_trainable(model, seed: int = 0, scale: float = 0.1) -> list[str]:
    """Add seeded noise to every trainable parameter (a stand-in for training that moves all of them)."""
    generator = torch.Generator().manual_seed(seed)
    changed = []
    for name, p in model.named_parameters():
        if p.requires_grad:
            p.add_(scale * torch.randn(p.shape, generator=generator, dtype=p.dtype))
            changed.append(name)
    return changed


def trained(method_name, load_tiny_bert):
    method = get_method(method_name)
    base = load_tiny_bert()
    settings, _ = method.resolve(base, {})
    model = method.apply(base, settings)
    assert perturb_trainable(model)
    return method, model


@pytest.mark.parametrize("method_name", list(PEFTLAB_METHODS))
def test_save_then_load_on_a_fresh_base_gives_the_same_logits(method_name, load_tiny_bert, tmp_path):
    batch = token_batch()
    base_logits = logits_of(load_tiny_bert(), batch)
    method, model = trained(method_name, load_tiny_bert)
    expected = logits_of(model, batch)
    assert not torch.allclose(expected, base_logits, atol=1e-4), "the perturbation should change the output"

    method.save(model, tmp_path)
    loaded = method.load(load_tiny_bert(), tmp_path)
    actual = logits_of(loaded, batch)
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-6)


def test_a_second_fresh_base_is_identical(load_tiny_bert):
    # the roundtrip tests rely on every load of the tiny base giving the same weights
    a, b = load_tiny_bert().state_dict(), load_tiny_bert().state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("method_name", PEFT_METHODS)
def test_peft_methods_write_peft_files_that_peft_loads(method_name, load_tiny_bert, tmp_path):
    batch = token_batch()
    method, model = trained(method_name, load_tiny_bert)
    expected = logits_of(model, batch)
    method.save(model, tmp_path)
    assert (tmp_path / "adapter_config.json").is_file()
    assert (tmp_path / "adapter_model.safetensors").is_file()
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["task_type"] == "SEQ_CLS"
    assert "classifier" in config["modules_to_save"]  # peft adds its own SEQ_CLS head names ("score"...) too
    # the checkpoint holds only the method's tensors, not the base (which has ~1M parameters)
    saved = load_file(str(tmp_path / "adapter_model.safetensors"))
    assert 0 < sum(t.numel() for t in saved.values()) < 50_000
    assert any("classifier" in k for k in saved)

    loaded = PeftModel.from_pretrained(load_tiny_bert(), tmp_path)
    torch.testing.assert_close(logits_of(loaded, batch), expected, rtol=0, atol=1e-6)


def test_full_writes_a_transformers_checkpoint(load_tiny_bert, tmp_path):
    from transformers import AutoModelForSequenceClassification

    batch = token_batch()
    method, model = trained("full", load_tiny_bert)
    expected = logits_of(model, batch)
    method.save(model, tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    assert (tmp_path / "config.json").is_file()
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    torch.testing.assert_close(logits_of(reloaded, batch), expected, rtol=0, atol=1e-6)
    assert reloaded.config.id2label == dict(enumerate(TINY_LABELS))


@pytest.mark.parametrize("method_name", ["head", "bitfit"])
def test_partial_methods_save_exactly_their_trainable_tensors(method_name, load_tiny_bert, tmp_path):
    method, model = trained(method_name, load_tiny_bert)
    method.save(model, tmp_path)
    saved = load_file(str(tmp_path / STATE_FILE))
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert set(saved) == set(trainable)
    assert all(torch.equal(saved[n], trainable[n].detach()) for n in saved)


def test_adapter_writes_its_config_and_weights(load_tiny_bert, tmp_path):
    method, model = trained("adapter", load_tiny_bert)
    method.save(model, tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["peftlab_method"] == "adapter"
    assert config["modules_to_save"] == ["classifier"]
    saved = load_file(str(tmp_path / "adapter_model.safetensors"))
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert set(saved) == set(trainable)


def test_load_run_restores_what_compare_measured(tiny_bert_dir, tiny_task_csv, tmp_path):
    out = tmp_path / "study"
    methods = ["lora", "bitfit", "adapter"]
    results = compare(CompareConfig(**FIXED_RATES, model=str(tiny_bert_dir), data=str(tiny_task_csv), methods=methods,
                                    max_steps=3, batch_size=16, out=str(out)))
    on_disk = json.loads((out / "results.json").read_text())
    assert [r["method"] for r in on_disk["runs"]] == methods
    assert [r["status"] for r in on_disk["runs"]] == ["ok"] * len(methods), [r.get("reason") for r in on_disk["runs"]]

    task = load_task(str(tiny_task_csv), seed=0)
    assert on_disk["study"]["dataset_sha256"] == task.sha256

    base_logits = None
    for record in results["runs"]:
        name = record["method"]
        folder = out / record["artifact"]
        assert folder == out / "runs" / name and (folder / RUN_FILE).is_file()
        model, tokenizer, info = load_run(folder)
        assert info["method"] == name and info["label_names"] == TINY_LABELS
        assert record["cost"]["train_steps"] == 3
        encoded = encode_task(task, tokenizer, info["max_length"])
        scores = evaluate_split(model, encoded["test"], tokenizer, 64, "cpu", len(TINY_LABELS))
        assert scores["accuracy"] == record["metrics"]["accuracy"]
        assert scores["macro_f1"] == pytest.approx(record["metrics"]["macro_f1"], abs=1e-12)
        assert scores["loss"] == pytest.approx(record["metrics"]["test_loss"], rel=1e-5, abs=1e-7)

        # the reloaded model is the trained one, not the base it started from
        if base_logits is None:
            from peftlab.models import load_classifier, resolve_model

            base = load_classifier(resolve_model(str(tiny_bert_dir)), TINY_LABELS)
            base_logits, _ = predict_logits(base, encoded["test"], tokenizer, 64, "cpu")
        logits, _ = predict_logits(model, encoded["test"], tokenizer, 64, "cpu")
        assert abs(logits - base_logits).max() > 1e-6
