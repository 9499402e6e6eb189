"""Task shape: how many examples, how many labels, how balanced, how long the texts are."""

from __future__ import annotations

import math

import numpy as np


def task_shape(task, encoded, max_length: int) -> dict:
    """Sizes, label balance (majority share, normalised entropy; a regression target's mean, spread and range) and
    text lengths (words; tokens after encoding)."""
    train = task.splits["train"]
    labels = np.asarray(train["label"])
    if task.target_scale is not None:  # numeric targets (regression): their spread instead of class shares
        label_stats = {"target_mean": float(labels.mean()), "target_std": float(labels.std()),
                       "target_min": float(labels.min()), "target_max": float(labels.max()),
                       "majority_share": None, "label_entropy": None}
    else:
        counts = np.bincount(labels, minlength=task.num_labels)
        shares = counts / counts.sum()
        entropy = -sum(p * math.log(p) for p in shares if p > 0)
        label_stats = {"label_shares": {name: float(share) for name, share in zip(task.label_names, shares)},
                       "majority_share": float(shares.max()),
                       "label_entropy": entropy / math.log(task.num_labels) if task.num_labels > 1 else 0.0}
    words = [len(text.split()) for text in train["text"]]
    tokens = np.asarray(encoded["train"]["length"]) if encoded is not None else None
    return {
        "examples": {split: len(dataset) for split, dataset in task.splits.items()},
        "labels": task.num_labels,
        "label_names": list(task.label_names),
        **label_stats,
        "text_pair": task.has_text_pair,
        "words_mean": float(np.mean(words)),
        "words_p95": float(np.percentile(words, 95)),
        "tokens_mean": float(tokens.mean()) if tokens is not None else None,
        "tokens_p95": float(np.percentile(tokens, 95)) if tokens is not None else None,
        "truncated_share": float(np.mean(tokens >= max_length)) if tokens is not None else None,
    }
