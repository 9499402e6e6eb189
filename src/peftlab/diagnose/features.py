"""Mean-pooled last hidden states of the frozen base model: the features for the shift score and the probe."""

from __future__ import annotations

import numpy as np
import torch


@torch.no_grad()
def pooled_features(model, tokenizer, texts: list[str], max_length: int, batch_size: int = 32,
                    pairs: list[str] | None = None, device="cpu") -> np.ndarray:
    """One row per text: the mean over non-padding tokens of the base model's last hidden state.

    ``model`` is any transformers model with a base (a classifier from ``load_classifier`` works: its head is
    not used; an encoder-decoder's encoder is used). Texts are sorted by length for batching and returned in input order.
    """
    base = getattr(model, model.base_model_prefix, model)
    if getattr(model.config, "is_encoder_decoder", False) and hasattr(base, "get_encoder"):
        base = base.get_encoder()  # T5, BART: the encoder's states represent the input
    base.eval()
    accepted = _accepted(base)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    rows: list[np.ndarray] = [None] * len(texts)  # type: ignore[list-item]
    for start in range(0, len(order), batch_size):
        index = order[start:start + batch_size]
        batch_pairs = [pairs[i] for i in index] if pairs is not None else None
        encoded = tokenizer([texts[i] for i in index], batch_pairs, truncation=True, max_length=max_length,
                            padding=True, return_tensors="pt").to(device)
        hidden = base(**{k: v for k, v in encoded.items() if k in accepted}).last_hidden_state.float()
        mask = encoded["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        for row, i in zip(pooled.cpu().numpy(), index):
            rows[i] = row
    return np.stack(rows) if rows else np.zeros((0, 0), dtype=np.float32)


def _accepted(base) -> set[str]:
    import inspect

    return set(inspect.signature(base.forward).parameters)
