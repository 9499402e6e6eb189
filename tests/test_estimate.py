"""The cost estimate (peftlab.estimate) against what the real models hold and do.

- parameter counts: exact, for every method on tiny BERT / RoBERTa / Llama / Qwen2 classifiers and causal LMs, for
  MiniLM's and SmolLM2's configs, and for the built-in facts against the models' published sizes;
- FLOPs: within 20% of torch's FlopCounterMode over one forward + backward (in practice within 1%);
- peak memory: within 20% of the traced peak of live tensor bytes over a training step (CPU; see
  peftlab.estimate.trace), on small configs chosen so that activations and weights, not fixed overheads, dominate;
- the documented comparisons with published figures (docs/ESTIMATE.md) stay within 25%;
- the CLI's --json shape, and bad input as one error line with exit code 2.
"""

from __future__ import annotations

import json
import sys

import pytest
import torch
from transformers import (BertConfig, LlamaConfig, LlamaForCausalLM, Qwen2Config, RobertaConfig)

from peftlab.errors import ConfigError, MethodError, ModelError
from peftlab.estimate import EstimateSettings, estimate, estimate_run, facts_from_config, load_facts
from peftlab.estimate.gpus import GIB, get_gpu
from peftlab.estimate.plans import build_plan, resolve_settings
from peftlab.estimate.validate import apply_method, build_model, predicted_and_measured
from peftlab.measure import parameter_counts

ALL_METHODS = ["full", "head", "bitfit", "lora", "dora", "ia3", "prompt", "prefix", "adapter"]
TOLERANCE = 0.20


def bert_config(**overrides):
    settings = dict(vocab_size=2000, hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
                    intermediate_size=512, max_position_embeddings=256, num_labels=2)
    return BertConfig(**{**settings, **overrides})


def llama_config(**overrides):
    settings = dict(vocab_size=2000, hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
                    num_key_value_heads=2, intermediate_size=384, num_labels=2, pad_token_id=0)
    return LlamaConfig(**{**settings, **overrides})


def smollm2_config(**overrides):
    """SmolLM2-135M's architecture (the values its GGUF config holds; checked in test_smollm2_config_count)."""
    settings = dict(vocab_size=49152, hidden_size=576, num_hidden_layers=30, num_attention_heads=9,
                    num_key_value_heads=3, head_dim=64, intermediate_size=1536, max_position_embeddings=8192,
                    tie_word_embeddings=True, pad_token_id=2, num_labels=2)
    return LlamaConfig(**{**settings, **overrides})


def counts(config, task: str, method: str, overrides: dict | None = None):
    """((trainable, total) estimated, (trainable, total) of the real model with the method applied)."""
    plan = build_plan(facts_from_config(config), method, resolve_settings(method, overrides), task)
    estimated = (sum(n for _, n in plan.trainable), plan.tensors.total_numel() + sum(n for _, n in plan.added))
    real = parameter_counts(apply_method(build_model(config, task), method, overrides))
    return estimated, real


# --- parameter counts ---------------------------------------------------------------------------------------------

TINY = {
    "bert": (bert_config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64),
             "classification"),
    "roberta": (RobertaConfig(vocab_size=1000, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                              intermediate_size=64, max_position_embeddings=160, num_labels=3), "classification"),
    "llama": (llama_config(hidden_size=64, num_hidden_layers=2, intermediate_size=96), "classification"),
    "qwen2": (Qwen2Config(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                          num_key_value_heads=2, intermediate_size=96, num_labels=2, pad_token_id=0),
              "classification"),
    "llama-lm": (llama_config(hidden_size=64, num_hidden_layers=2, intermediate_size=96, tie_word_embeddings=False),
                 "causal-lm"),
}


@pytest.mark.parametrize("method", ALL_METHODS)
@pytest.mark.parametrize("model", list(TINY))
def test_parameter_counts_are_exact(model, method):
    config, task = TINY[model]
    if method == "bitfit" and model.startswith("llama"):
        with pytest.raises(MethodError, match="bias"):
            build_plan(facts_from_config(config), method, resolve_settings(method), task)
        return
    # peftlab's adapter trains whatever head the model has; the estimate leaves a causal LM's head frozen unless
    # modules_to_save names it, so the LM case is compared with the head frozen on both sides
    overrides = {"modules_to_save": []} if (method == "adapter" and task == "causal-lm") else None
    (trainable, total), real = counts(config, task, method, overrides)
    assert (trainable, total) == real


def test_minilm_config_count_matches_the_real_model():
    from peftlab.models import load_classifier, load_config, resolve_model

    ref = resolve_model("minilm")
    facts = load_facts("minilm").with_labels(2)
    plan = build_plan(facts, "full", resolve_settings("full"), "classification")
    real = parameter_counts(load_classifier(ref, ["neg", "pos"]))[1]
    assert plan.tensors.total_numel() == real == 22_713_986  # 22.7M: BERT, 6 layers, hidden 384, + 2-label head
    assert facts == facts_from_config(load_config(ref), name="minilm").with_labels(2)


def test_smollm2_config_count():
    facts = load_facts("smollm2-135m")  # read from the GGUF checkpoint's metadata, no weights loaded
    plan = build_plan(facts, "full", resolve_settings("full"), "causal-lm")
    assert plan.tensors.total_numel() == 134_515_008  # SmolLM2-135M, tied embeddings
    with torch.device("meta"):
        real = LlamaForCausalLM(smollm2_config())
    assert parameter_counts(real)[1] == 134_515_008
    assert facts.hidden_size == 576 and facts.num_layers == 30 and facts.num_kv_heads == 3 and facts.tie_word_embeddings


@pytest.mark.parametrize("name, task, expected", [
    ("llama-3.1-8b", "causal-lm", 8_030_261_248),
    ("meta-llama/Llama-3.1-70B-Instruct", "causal-lm", 70_553_706_496),
    ("Llama-3.2-3B", "causal-lm", 3_212_749_824),
    ("mistral-7b", "causal-lm", 7_241_732_096),
    ("Qwen/Qwen2.5-7B", "causal-lm", 7_615_616_512),
    ("bert-base-uncased", "classification", 109_482_240 + 768 * 2 + 2),
    ("RoBERTa-large", "classification", 355_361_794),
])
def test_builtin_facts_give_the_published_sizes(name, task, expected):
    plan = build_plan(load_facts(name), "full", resolve_settings("full"), task)
    assert plan.tensors.total_numel() == expected


# --- FLOPs and traced peak memory -------------------------------------------------------------------------------

MEASURED = [
    *[("bert", bert_config(), "classification", m, 8, 64, "fp32") for m in ALL_METHODS],
    *[("llama", llama_config(), "classification", m, 8, 64, "fp32") for m in ALL_METHODS if m != "bitfit"],
    *[("llama-lm-bf16", llama_config(tie_word_embeddings=False), "causal-lm", m, 4, 64, "bf16")
      for m in ("full", "lora", "ia3", "prompt")],
    *[("bert-bf16", bert_config(), "classification", m, 8, 64, "bf16") for m in ("full", "lora", "adapter")],
    *[("minilm", "minilm", "classification", m, 4, 64, "fp32") for m in ("full", "lora", "ia3", "prompt")],
    ("smollm2", smollm2_config(), "classification", "ia3", 1, 32, "fp32"),
]


def _config(config):
    if config == "minilm":
        from peftlab.models import load_config, resolve_model

        config = load_config(resolve_model("minilm"))
        config.num_labels = 2
    return config


@pytest.mark.parametrize("name, config, task, method, batch, seq, dtype", MEASURED,
                         ids=[f"{c[0]}-{c[3]}" for c in MEASURED])
def test_memory_and_flops_match_a_measured_step(name, config, task, method, batch, seq, dtype):
    result = predicted_and_measured(_config(config), method, batch, seq, task=task, dtype=dtype)
    assert abs(result["flops_ratio"] - 1) <= TOLERANCE, result["flops_ratio"]
    assert abs(result["memory_ratio"] - 1) <= TOLERANCE, (result["predicted_peak_bytes"], result["measured_peak_bytes"])


@pytest.mark.parametrize("method", ["full", "lora"])
def test_gradient_checkpointing_matches_a_measured_step(method):
    result = predicted_and_measured(llama_config(), method, 8, 64, grad_checkpointing=True)
    assert abs(result["memory_ratio"] - 1) <= TOLERANCE
    assert abs(result["flops_ratio"] - 1) <= TOLERANCE  # recomputation included
    plain = result["predicted"]["memory_bytes"]
    assert plain["activations_checkpointing"] < plain["activations_no_checkpointing"]


def test_lora_checkpoint_size_matches_peft(tmp_path):
    config = bert_config()
    model = apply_method(build_model(config, "classification"), "lora")
    model.save_pretrained(tmp_path, safe_serialization=True)
    written = (tmp_path / "adapter_model.safetensors").stat().st_size
    settings = EstimateSettings(batch_size=1, seq_len=8, dtype="fp32", task="classification")
    from peftlab.estimate.estimate import estimate_method

    predicted = estimate_method(facts_from_config(config), "lora", settings)["checkpoint_bytes"]
    assert abs(predicted / written - 1) < 0.05


# --- memory model details ---------------------------------------------------------------------------------------

def _memory(model: str, method: str, **settings) -> dict:
    return estimate(model, [method], EstimateSettings(**settings))[0]["memory_bytes"]


def test_qlora_stores_layer_linears_in_nf4():
    lora, qlora = _memory("llama-3.1-8b", "lora"), _memory("llama-3.1-8b", "qlora")
    facts = load_facts("llama-3.1-8b")
    layer_weights = 218_112_000 * facts.num_layers - 2 * 4096 * facts.num_layers  # linears only, no norms
    saved = lora["weights"] - qlora["weights"]
    assert saved == pytest.approx(layer_weights * (2 - 0.5 - 1 / 64 - 4 / (64 * 256)), rel=1e-6)
    assert qlora["activations"] == lora["activations"] and qlora["total"] < lora["total"]


def test_optimizer_state_per_trainable_parameter():
    adamw = _memory("bert-base", "full", dtype="fp32", optimizer="adamw")
    adamw8bit = _memory("bert-base", "full", dtype="fp32", optimizer="adamw8bit")
    sgd = _memory("bert-base", "full", dtype="fp32", optimizer="sgd")
    params = 109_483_778
    assert adamw["optimizer"] == pytest.approx(8 * params, rel=1e-3)  # two fp32 moments
    assert adamw8bit["optimizer"] == pytest.approx(2 * params, rel=0.03)  # two 8-bit moments + block constants
    assert sgd["optimizer"] == 0
    assert adamw["weights"] == adamw["gradients"] == 4 * params


def test_frozen_base_needs_less_than_full_fine_tuning():
    full = estimate("llama-3.1-8b", ["full"], EstimateSettings(grad_checkpointing=True))[0]
    lora = estimate("llama-3.1-8b", ["lora"], EstimateSettings(grad_checkpointing=True))[0]
    assert lora["memory_bytes"]["total"] < full["memory_bytes"]["total"]
    # a frozen base skips the weight gradients: about 4N instead of 6N FLOPs per token (plus attention and head)
    assert lora["flops_per_token"]["backward_weights"] < 0.01 * full["flops_per_token"]["backward_weights"]
    assert 0.6 < lora["flops_per_token"]["total"] / full["flops_per_token"]["total"] < 0.8
    assert lora["step_seconds"] < full["step_seconds"]


def test_fits_on_lists_the_gpus_with_room():
    small = estimate("bert-base", ["lora"], EstimateSettings(batch_size=8, seq_len=128))[0]
    huge = estimate("llama-3.1-70b", ["full"], EstimateSettings())[0]
    assert "RTX4090-24GB" in small["fits_on"] and huge["fits_on"] == []
    assert get_gpu("h100").name == "H100-80GB"
    with pytest.raises(ConfigError, match="ambiguous"):
        get_gpu("a100")


def test_estimate_run_for_a_compare_run():
    from peftlab.models import load_config, resolve_model

    config = load_config(resolve_model("minilm"))
    config.num_labels = 2
    run = estimate_run(config, "lora", {"r": 8, "lora_alpha": 16, "target_modules": "all-linear",
                                        "learning_rate": 5e-4}, batch_size=32, seq_len=128)
    assert run["peak_memory_bytes"] == run["memory_bytes"]["total"] > run["memory_bytes"]["weights"]
    assert run["flops_per_step"] == pytest.approx(run["flops_per_token"]["total"] * 32 * 128)
    assert run["trainable_params"] == 338_690


# --- published figures (docs/ESTIMATE.md) -------------------------------------------------------------------------

TORCHTUNE_LORA = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0,
                  "target_modules": ["q_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}


def test_llama_3_1_8b_within_25_percent_of_torchtune():
    """torchtune README (Llama 3.1 8B, batch 2, packed 2048, bf16, activation checkpointing, one RTX 4090)."""
    common = dict(batch_size=2, seq_len=2048, dtype="bf16", grad_checkpointing=True, recipe="torchtune",
                  gpu="RTX4090-24GB")
    overrides = {"lora": TORCHTUNE_LORA, "qlora": {**TORCHTUNE_LORA,
                                                   "target_modules": ["q_proj", "k_proj", *TORCHTUNE_LORA["target_modules"][1:]]}}
    lora, qlora = estimate("llama-3.1-8b", ["lora", "qlora"], EstimateSettings(**common), overrides)
    full = estimate("llama-3.1-8b", ["full"], EstimateSettings(**common, optimizer="adamw8bit",
                                                              optimizer_in_backward=True))[0]
    assert lora["memory_bytes"]["total"] / GIB == pytest.approx(16.2, rel=0.25)
    assert qlora["memory_bytes"]["total"] / GIB == pytest.approx(7.4, rel=0.25)
    # the paged 8-bit AdamW state lives in CUDA managed memory, outside the allocator torchtune's peak reads
    full_allocated = full["memory_bytes"]["total"] - full["memory_bytes"]["optimizer"]
    assert full_allocated / GIB == pytest.approx(18.9, rel=0.25)


@pytest.mark.parametrize("method, overrides, published", [
    ("full", {}, 37_241_225_216),
    ("lora", {"r": 32, "lora_alpha": 64, "lora_dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}, 22_273_851_392),
    ("ia3", {}, 23_137_878_016),
    ("prompt", {"num_virtual_tokens": 200}, 24_379_392_000),
])
def test_llama_3_2_3b_within_25_percent_of_the_peft_method_comparison(method, overrides, published):
    settings = EstimateSettings(batch_size=4, seq_len=768, dtype="bf16", padded=True, gpu="L40S-48GB")
    result = estimate("llama-3.2-3b", [method], settings, {method: overrides})[0]
    assert result["memory_bytes"]["total"] == pytest.approx(published, rel=0.25)


# --- command line ----------------------------------------------------------------------------------------------

def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    from peftlab.cli import main

    monkeypatch.setattr(sys, "argv", ["peftlab", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    return exit_info.value.code or 0, captured.out, captured.err


def test_cli_json_has_one_object_per_method(monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "estimate", "--model", "llama-3.1-8b", "--methods",
                           "full,lora,qlora,ia3,prompt,adapter", "--seq-len", "2048", "--batch-size", "8",
                           "--dtype", "bf16", "--grad-checkpointing", "--gpu", "H100-80GB", "--json")
    assert code == 0
    results = json.loads(out)
    assert [r["method"] for r in results] == ["full", "lora", "qlora", "ia3", "prompt", "adapter"]
    for result in results:
        assert {"method", "total_params", "trainable_params", "memory_bytes", "flops_per_token", "step_seconds",
                "checkpoint_bytes", "fits_on"} <= set(result)
        assert {"weights", "gradients", "optimizer", "activations", "total"} <= set(result["memory_bytes"])
        assert {"forward", "backward_activations", "backward_weights"} <= set(result["flops_per_token"])
        assert result["step_seconds"] > 0 and isinstance(result["fits_on"], list)


def test_cli_table(monkeypatch, capsys, tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps(llama_config().to_dict()))
    code, out, _ = run_cli(monkeypatch, capsys, "estimate", "--model", str(config), "--methods", "full,lora",
                           "--seq-len", "64", "--batch-size", "2")
    assert code == 0 and "lora" in out and "peak GiB" in out


@pytest.mark.parametrize("args, message", [
    (["--model", "no-such-model-anywhere"], "cannot estimate model"),
    (["--model", "MALFORMED"], "not valid JSON"),
    (["--model", "llama-3.1-8b", "--methods", "full,nope"], "unknown method 'nope'"),
    (["--model", "llama-3.1-8b", "--gpu", "V100"], "unknown --gpu"),
    (["--model", "llama-3.1-8b", "--dtype", "int3"], "unknown --dtype"),
    (["--model", "bert-base", "--task", "causal-lm"], "encoder"),
    (["--model", "llama-3.1-8b", "--method-config", "BADKEY"], "has no setting"),
])
def test_cli_bad_input_is_one_error_line(monkeypatch, capsys, tmp_path, args, message):
    malformed = tmp_path / "config.json"
    malformed.write_text("{not json")
    bad_key = tmp_path / "methods.yaml"
    bad_key.write_text("lora: {rank: 16}\n")
    args = [{"MALFORMED": str(malformed), "BADKEY": str(bad_key)}.get(a, a) for a in args]
    code, out, err = run_cli(monkeypatch, capsys, "estimate", *args)
    assert code == 2
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1


def test_unknown_architecture_is_a_model_error(tmp_path):
    """Any model type transformers knows is estimated (tests/test_estimate_generic.py); one it does not know is a
    one-line ModelError naming it."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model_type": "no-such-architecture", "hidden_size": 768}))
    with pytest.raises(ModelError, match="no-such-architecture"):
        load_facts(str(config))
