"""The merged export: the base with the method's update folded into its weights, a plain transformers model."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from peftlab.methods.base import Method

MERGE_TOLERANCE = 1e-4  # max |logit difference| between the adapter model and the merged one
PROBE_TEXTS = [
    "A quiet, patient film that rewards attention.",
    "The plot falls apart long before the end.",
    "it was fine",
    "Nobody expected the sequel to be this good, and yet here we are, two hours later, still smiling.",
]


def probe_batch(tokenizer, max_length: int) -> dict[str, torch.Tensor]:
    """A small padded batch of fixed sentences to compare the model before and after merging."""
    return dict(tokenizer(PROBE_TEXTS, padding=True, truncation=True, max_length=max_length, return_tensors="pt"))


@torch.no_grad()
def logits(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    model.eval()
    device = next(model.parameters()).device
    inputs = {k: v.to(device) for k, v in batch.items()}
    if getattr(model.config, "is_encoder_decoder", False) and "decoder_input_ids" not in inputs:
        inputs["decoder_input_ids"] = inputs["input_ids"]  # any decoder tokens: the same before and after merging
    return model(**inputs).logits.float().cpu()


def write_merged(method: Method, model: nn.Module, tokenizer, folder: Path, max_length: int) -> dict:
    """Merge (in place: `model` is consumed), check the logits did not move, save with save_pretrained."""
    batch = probe_batch(tokenizer, max_length)
    before = logits(model, batch)
    merged = method.merge(model)
    difference = float((logits(merged, batch) - before).abs().max())
    if not difference <= MERGE_TOLERANCE:
        raise RuntimeError(f"merging '{method.name}' changed the logits by {difference:.2e} (> {MERGE_TOLERANCE})")
    merged.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    weights = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    return {"bytes": weights, "max_abs_logit_difference": difference}
