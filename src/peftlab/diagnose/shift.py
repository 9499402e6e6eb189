"""Domain shift: how far the task's text is from what the base model knows.

Two measurements, each on the task's text and on the reference English sample:

- ``lm_loss``: the base model's own language-modelling loss per token. Decoders: cross-entropy of the next
  token (``perplexity = exp(loss)``). Encoders: masked-LM pseudo-log-likelihood (each token masked in turn,
  Salazar et al. 2020), which needs the model's MLM head. An encoder checkpoint saved without its MLM head
  (all-MiniLM-L6-v2 is one: a sentence-embedding model, ``BertModel`` only) has no LM loss; the result says so
  (``lm_loss: null`` and a ``lm_note``) and the representation shift carries the shift signal alone.
- ``representation_mmd``: squared maximum mean discrepancy (unbiased, RBF kernel with the median-distance
  bandwidth) between mean-pooled hidden states of task texts and reference texts; 0 means the model
  represents them alike. ``centroid_cosine_distance`` (1 - cosine of the two mean vectors) is a plainer view.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_FOR_MASKED_LM_MAPPING_NAMES


def rbf_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased squared MMD with a Gaussian kernel; bandwidth = median pairwise distance of the pooled set."""
    x, y = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)
    both = torch.cat([x, y])
    distances = torch.cdist(both, both).pow(2)
    off_diagonal = distances[~torch.eye(len(both), dtype=torch.bool)]
    bandwidth = off_diagonal.median().clamp(min=1e-12)
    kernel = torch.exp(-distances / bandwidth)
    n, m = len(x), len(y)
    kxx, kyy, kxy = kernel[:n, :n], kernel[n:, n:], kernel[:n, n:]
    term_x = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    term_y = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return float(term_x + term_y - 2 * kxy.mean())


def representation_shift(task_features: np.ndarray, reference_features: np.ndarray) -> dict:
    """MMD and centroid distance between task and reference features (the same number of rows from each)."""
    n = min(len(task_features), len(reference_features))
    task_features, reference_features = task_features[:n], reference_features[:n]
    a, b = task_features.mean(0), reference_features.mean(0)
    cosine = float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))
    return {"representation_mmd": rbf_mmd2(task_features, reference_features),
            "centroid_cosine_distance": 1.0 - cosine, "texts_each": n}


def lm_kind(config) -> str | None:
    """'causal' for decoders, 'masked' for encoders with an MLM architecture, None otherwise."""
    if config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return "masked"
    if config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return "causal"
    return None


def load_lm(model_ref, config):
    """(model, kind, note): the base with its language-modelling head, or (None, kind, why not)."""
    kind = lm_kind(config)
    if kind is None:
        return None, None, f"model type {config.model_type!r} has no language-modelling head in transformers"
    loader = AutoModelForMaskedLM if kind == "masked" else AutoModelForCausalLM
    kwargs = model_ref.from_pretrained_kwargs()
    if not model_ref.gguf_file:
        kwargs["use_safetensors"] = True
    model, info = loader.from_pretrained(model_ref.path, dtype=torch.float32, output_loading_info=True, **kwargs)
    missing = [key for key in info["missing_keys"] if "position_ids" not in key]
    if missing:
        return None, kind, (f"the checkpoint has no {'masked' if kind == 'masked' else 'causal'}-LM head "
                            f"({len(missing)} head weights missing, e.g. {missing[0]}); LM loss not measured, "
                            "the representation shift is the shift signal")
    return model.eval(), kind, None


@torch.no_grad()
def causal_lm_loss(model, tokenizer, texts: list[str], max_length: int, batch_size: int = 8) -> float:
    """Mean next-token cross-entropy per predicted token over the texts."""
    total, count = 0.0, 0
    for start in range(0, len(texts), batch_size):
        encoded = tokenizer(texts[start:start + batch_size], truncation=True, max_length=max_length, padding=True,
                            return_tensors="pt")
        logits = model(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"]).logits[:, :-1]
        targets = encoded["input_ids"][:, 1:].clone()
        targets[encoded["attention_mask"][:, 1:] == 0] = -100
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                                                 ignore_index=-100, reduction="sum")
        total += float(loss)
        count += int((targets != -100).sum())
    return total / max(count, 1)


@torch.no_grad()
def masked_lm_pseudo_loss(model, tokenizer, texts: list[str], max_length: int, batch_size: int = 64) -> float:
    """Mean negative pseudo-log-likelihood per token: every non-special token masked in turn."""
    total, count = 0.0, 0
    for text in texts:
        ids = tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt")["input_ids"][0]
        special = set(tokenizer.all_special_ids)
        positions = [i for i, token in enumerate(ids.tolist()) if token not in special]
        for start in range(0, len(positions), batch_size):
            chunk = positions[start:start + batch_size]
            batch = ids.repeat(len(chunk), 1)
            rows = torch.arange(len(chunk))
            batch[rows, chunk] = tokenizer.mask_token_id
            log_probs = model(input_ids=batch).logits[rows, chunk].float().log_softmax(-1)
            total -= float(log_probs[torch.arange(len(chunk)), ids[chunk]].sum())
            count += len(chunk)
    return total / max(count, 1)


def lm_losses(model_ref, config, tokenizer, task_texts: list[str], reference: list[str], max_length: int) -> dict:
    """The LM loss per token on task and reference texts, with exp() of each, or why it is not measured."""
    model, kind, note = load_lm(model_ref, config)
    result = {"lm_kind": kind, "lm_texts_each": min(len(task_texts), len(reference))}
    if model is None:
        return {**result, "lm_loss": None, "lm_loss_reference": None, "lm_note": note}
    n = result["lm_texts_each"]
    measure = masked_lm_pseudo_loss if kind == "masked" else causal_lm_loss
    task_loss = measure(model, tokenizer, task_texts[:n], max_length)
    reference_loss = measure(model, tokenizer, reference[:n], max_length)
    name = "pseudo_perplexity" if kind == "masked" else "perplexity"
    return {**result, "lm_loss": task_loss, "lm_loss_reference": reference_loss,
            name: math.exp(min(task_loss, 50)), f"{name}_reference": math.exp(min(reference_loss, 50)),
            "lm_loss_ratio": task_loss / reference_loss if reference_loss else None}
