"""Classification metrics from predicted and true label indices.

Written with numpy rather than scikit-learn: two short formulas do not justify a heavy dependency.
"""

from __future__ import annotations

import numpy as np


def correctness(hits) -> str:
    """Per-example hits as a compact string ("1": right, "0": wrong) in the split's row order: what a paired
    comparison of two runs on the same test set reads (:mod:`peftlab.study.verdict`)."""
    return "".join("1" if hit else "0" for hit in hits)


def accuracy(predicted: np.ndarray, true: np.ndarray) -> float:
    return float(np.mean(predicted == true)) if len(true) else float("nan")


def macro_f1(predicted: np.ndarray, true: np.ndarray, num_labels: int) -> float:
    """Unweighted mean of per-class F1 over the classes that occur in `true` or `predicted`."""
    scores = []
    for label in range(num_labels):
        true_positive = np.sum((predicted == label) & (true == label))
        predicted_count = np.sum(predicted == label)
        true_count = np.sum(true == label)
        if predicted_count == 0 and true_count == 0:
            continue
        scores.append(2 * true_positive / (predicted_count + true_count))
    return float(np.mean(scores)) if scores else float("nan")


def classification_metrics(logits: np.ndarray, true: np.ndarray, num_labels: int) -> dict:
    predicted = logits.argmax(axis=-1)
    return {"accuracy": accuracy(predicted, true), "macro_f1": macro_f1(predicted, true, num_labels),
            "correct": correctness(predicted == true)}
