"""How much general ability a fine-tuned model lost: measured on general text, against the base it started from.

Two measures (docs/MEASUREMENT.md, ``forgetting``):

- **Representation change** (every model): linear CKA (Kornblith et al., 2019) between the base's and the
  fine-tuned model's mean-pooled last hidden states on the same general sentences; 1 = the representation is
  unchanged up to rotation and scale, lower = it moved. The fine-tuned model runs its whole forward (prompt and
  prefix tuning included), and only the sentence's own positions are pooled (virtual tokens are left out).
- **Language-model loss change** (causal LMs): mean token cross-entropy on the same sentences, fine-tuned − base;
  HF peft's method comparison logs forgetting this way. Positive = the model got worse at general text.

Written here (a few lines of numpy) rather than taken from a library: CKA is one formula, and peftlab must feed it
the fine-tuned model's own forward, which no library does for a PEFT model.
"""

from __future__ import annotations

import numpy as np
import torch


def _batches(tokenizer, texts: list[str], max_length: int, batch_size: int, device):
    for start in range(0, len(texts), batch_size):
        yield tokenizer(texts[start:start + batch_size], truncation=True, max_length=max_length, padding=True,
                        return_tensors="pt").to(device)


@torch.no_grad()
def sentence_features(model, tokenizer, texts: list[str], max_length: int, device, batch_size: int = 16) -> np.ndarray:
    """One row per text: the mean over the text's tokens of the model's last hidden state (an encoder-decoder's
    encoder), from the model's full forward (adapters, prompts and prefixes active)."""
    model.eval()
    rows = []
    for batch in _batches(tokenizer, texts, max_length, batch_size, device):
        output = model(**batch, output_hidden_states=True)
        hidden = getattr(output, "encoder_last_hidden_state", None)
        if hidden is None:
            hidden = output.hidden_states[-1]
        hidden = hidden[:, -batch["input_ids"].shape[1]:].float()  # prompt tuning prepends virtual tokens
        mask = batch["attention_mask"].unsqueeze(-1).float()
        rows.append(((hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)).cpu().numpy())
    return np.concatenate(rows)


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA of two feature matrices with the same rows: ||Yc' Xc||_F^2 / (||Xc' Xc||_F ||Yc' Yc||_F)."""
    x = np.asarray(x, dtype=np.float64) - np.mean(x, axis=0)
    y = np.asarray(y, dtype=np.float64) - np.mean(y, axis=0)
    cross = np.linalg.norm(y.T @ x) ** 2
    norms = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    return float(cross / norms) if norms > 0 else float("nan")


@torch.no_grad()
def lm_cross_entropy(model, tokenizer, texts: list[str], max_length: int, device, batch_size: int = 16) -> float:
    """Mean next-token cross-entropy over every predicted token of the texts (padding excluded)."""
    model.eval()
    total, tokens = 0.0, 0
    for batch in _batches(tokenizer, texts, max_length, batch_size, device):
        logits = model(**batch).logits.float()
        logits = logits[:, -batch["input_ids"].shape[1]:]  # the texts' own positions
        targets = batch["input_ids"][:, 1:]
        keep = batch["attention_mask"][:, 1:].bool() & batch["attention_mask"][:, :-1].bool()
        losses = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), targets, reduction="none")
        total += float(losses[keep].sum())
        tokens += int(keep.sum())
    return total / tokens if tokens else float("nan")
