"""Predicted against measured, for one model config, method and batch shape: what tests/test_estimate.py and
benchmarks/estimate_validation.py check and tabulate.

The model is built from its config with random weights (the cost does not depend on the values), the method is
applied with peftlab's registry exactly as ``compare`` applies it, and one training step is measured with
:mod:`peftlab.estimate.trace`.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import (AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoModelForSequenceClassification, BertConfig,
                          LlamaConfig)

from peftlab.estimate.architecture import facts_from_config
from peftlab.estimate.estimate import estimate_plan
from peftlab.estimate.plans import build_plan, modelled_methods, resolve_settings
from peftlab.estimate.settings import EstimateSettings
from peftlab.estimate.trace import measure
from peftlab.methods import get_method
from peftlab.models import load_config, resolve_model

TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def build_model(config, task: str, dtype: str = "fp32"):
    """A randomly initialised transformers model of this config for the task, in this dtype."""
    auto = {"causal-lm": AutoModelForCausalLM, "seq2seq-lm": AutoModelForSeq2SeqLM}.get(
        task, AutoModelForSequenceClassification)
    torch.manual_seed(0)
    return auto.from_config(config, dtype=TORCH_DTYPES[dtype])


def make_batch(config, task: str, batch_size: int, seq_len: int,
               target_len: int | None = None) -> dict[str, torch.Tensor]:
    """Random token ids; a causal LM's labels are its inputs, a seq2seq LM's `target_len` tokens (None: as long as
    the input), a classifier's one label per row."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(3, config.vocab_size, (batch_size, seq_len), generator=generator)
    if getattr(config, "is_encoder_decoder", False) and config.eos_token_id is not None:
        ids[:, -1] = config.eos_token_id  # BART's and T5's classifiers read the hidden state at the eos token
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if task == "seq2seq-lm" and target_len is not None:
        batch["labels"] = torch.randint(3, config.vocab_size, (batch_size, target_len), generator=generator)
    elif task in ("causal-lm", "seq2seq-lm"):
        batch["labels"] = ids.clone()
    else:
        batch["labels"] = torch.randint(0, config.num_labels, (batch_size,), generator=generator)
    return batch


def apply_method(model, method_name: str, overrides: dict[str, Any] | None = None):
    method = get_method(method_name)
    settings, _ = method.resolve(model, overrides or {})
    return method.apply(model, settings)


def predicted_and_measured(config, method: str, batch_size: int, seq_len: int, task: str = "classification",
                           dtype: str = "fp32", overrides: dict[str, Any] | None = None,
                           grad_checkpointing: bool = False, target_len: int | None = None) -> dict[str, Any]:
    """Estimate and measure one case on this machine's CPU; returns both and their ratios. `target_len`: a seq2seq
    LM's target length (None: as long as the input)."""
    facts = facts_from_config(config)
    settings = EstimateSettings(batch_size=batch_size, seq_len=seq_len, dtype=dtype, task=task, device="cpu",
                                grad_checkpointing=grad_checkpointing, target_len=target_len)
    plan = build_plan(facts, method, resolve_settings(method, overrides), task)
    predicted = estimate_plan(facts, plan, settings)
    base = build_model(config, task, dtype)
    if grad_checkpointing:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model = apply_method(base, method, overrides)
    measured = measure(model, make_batch(config, task, batch_size, seq_len, target_len))
    tokens = batch_size * seq_len
    return {
        "method": method, "batch_size": batch_size, "seq_len": seq_len, "dtype": dtype,
        "predicted_peak_bytes": predicted["memory_bytes"]["total"], "measured_peak_bytes": measured["peak"],
        "predicted_flops": predicted["flops_per_token"]["total"] * tokens, "measured_flops": measured["flops"],
        "memory_ratio": predicted["memory_bytes"]["total"] / measured["peak"],
        "flops_ratio": predicted["flops_per_token"]["total"] * tokens / measured["flops"],
        "predicted": predicted, "measured": measured,
    }


def validation_cases() -> list[tuple[str, Any, str, str, int, int, str, bool]]:
    """(label, config, task, method, batch, seq_len, dtype, gradient checkpointing) of the documented table; the
    "every method" rows take every registered method the estimate models."""
    every_method = modelled_methods()
    tiny_bert = BertConfig(vocab_size=2000, hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
                           intermediate_size=512, max_position_embeddings=256, num_labels=2)
    tiny_llama = LlamaConfig(vocab_size=2000, hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
                             num_key_value_heads=2, intermediate_size=384, num_labels=2, pad_token_id=0)
    small_llama_lm = LlamaConfig(vocab_size=8000, hidden_size=256, num_hidden_layers=6, num_attention_heads=8,
                                 num_key_value_heads=2, intermediate_size=768, tie_word_embeddings=False)
    minilm = load_config(resolve_model("minilm"))
    minilm.num_labels = 2
    smollm2 = LlamaConfig(vocab_size=49152, hidden_size=576, num_hidden_layers=30, num_attention_heads=9,
                          num_key_value_heads=3, head_dim=64, intermediate_size=1536, max_position_embeddings=8192,
                          tie_word_embeddings=True, pad_token_id=2, num_labels=2)
    cases = []
    cases += [("tiny BERT", tiny_bert, "classification", m, 8, 64, "fp32", False) for m in every_method]
    cases += [("tiny BERT", tiny_bert, "classification", m, 8, 64, "bf16", False) for m in ("full", "lora", "ia3")]
    cases += [("tiny Llama", tiny_llama, "classification", m, 8, 64, "fp32", False)
              for m in every_method if m != "bitfit"]
    cases += [("tiny Llama", tiny_llama, "classification", m, 8, 64, "fp32", True) for m in ("full", "lora")]
    cases += [("small Llama LM", small_llama_lm, "causal-lm", m, 4, 128, "bf16", False)
              for m in ("full", "head", "lora", "ia3", "prompt", "prefix")]
    cases += [("MiniLM-L6", minilm, "classification", m, 8, 128, "fp32", False) for m in every_method]
    cases += [("MiniLM-L6", minilm, "classification", m, 8, 128, "fp32", True) for m in ("full", "lora")]
    cases += [("SmolLM2-135M", smollm2, "classification", m, 2, 64, "fp32", False)
              for m in ("full", "head", "lora", "ia3", "prompt", "adapter")]
    cases += [("SmolLM2-135M LM", smollm2, "causal-lm", m, 1, 128, "bf16", False) for m in ("lora", "prompt")]
    return cases


def validation_table() -> str:
    """Run every case of :func:`validation_cases` and return the markdown table docs/ESTIMATE.md shows."""
    lines = ["| model | task | method | batch x seq | dtype | ckpt | peak MB predicted / measured | ratio "
             "| GFLOP predicted / measured | ratio |", "|" + "---|" * 10]
    for label, config, task, method, batch, seq, dtype, checkpointing in validation_cases():
        result = predicted_and_measured(config, method, batch, seq, task=task, dtype=dtype,
                                        grad_checkpointing=checkpointing)
        lines.append(
            f"| {label} | {task} | {method} | {batch} x {seq} | {dtype} | {'yes' if checkpointing else 'no'} "
            f"| {result['predicted_peak_bytes'] / 1e6:.1f} / {result['measured_peak_bytes'] / 1e6:.1f} "
            f"| {result['memory_ratio']:.2f} | {result['predicted_flops'] / 1e9:.2f} / "
            f"{result['measured_flops'] / 1e9:.2f} | {result['flops_ratio']:.2f} |")
        print(lines[-1], flush=True)
    return "\n".join(lines)


if __name__ == "__main__":  # python -m peftlab.estimate.validate > table.md
    import os
    import warnings

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    validation_table()
