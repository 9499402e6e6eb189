"""Regression: scoring a one-output head, its metrics, and its robustness (the change in error under perturbation).

The model predicts standardised targets (:mod:`peftlab.tasks.regression`); predictions are mapped back to the
target's units with the task's ``target_scale`` before any metric, so Pearson, Spearman, MSE and MAE are in the
data's own units. ``loss`` is the model's MSE on standardised targets, the quantity training minimised.

Correlations of a constant prediction (or of constant targets) are undefined; they count as 0 here, the score of
predicting the training mean, so that an untrained model selects and ranks as "no association" instead of NaN.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from scipy import stats

from peftlab.evaluate.perturb import FAMILIES
from peftlab.evaluate.predict import predict_logits
from peftlab.evaluate.stats import bootstrap_mean_interval

def _constant(values: np.ndarray) -> bool:
    return values.size < 2 or bool(np.all(values == values[0]))


def pearson(predicted, true) -> float:
    """Pearson's r (0 when either side is constant)."""
    predicted, true = np.asarray(predicted, dtype=float), np.asarray(true, dtype=float)
    return 0.0 if _constant(predicted) or _constant(true) else float(stats.pearsonr(predicted, true)[0])


def spearman(predicted, true) -> float:
    """Spearman's rank correlation, ties at their mean rank (0 when either side is constant)."""
    predicted, true = np.asarray(predicted, dtype=float), np.asarray(true, dtype=float)
    return 0.0 if _constant(predicted) or _constant(true) else float(stats.spearmanr(predicted, true)[0])


def mse(predicted, true) -> float:
    return float(np.mean((np.asarray(predicted, dtype=float) - np.asarray(true, dtype=float)) ** 2))


def mae(predicted, true) -> float:
    return float(np.mean(np.abs(np.asarray(predicted, dtype=float) - np.asarray(true, dtype=float))))


def regression_metrics(predicted, true) -> dict:
    """Spearman, Pearson, MSE and MAE of predictions against targets (same units)."""
    return {"spearman": spearman(predicted, true), "pearson": pearson(predicted, true),
            "mse": mse(predicted, true), "mae": mae(predicted, true)}


def as_floats(values) -> list[float]:
    """Plain floats for a JSON record, not rounded: rounding would tie close predictions and change their ranks
    (a barely trained model's predictions differ in the 7th digit), and so the Spearman the verdict recomputes."""
    return [float(v) for v in values]


def _scale_of(dataset) -> tuple[float, float]:
    """The (mean, std) the split's ``labels`` were standardised with (every row of an encoded split carries them)."""
    return float(dataset[0]["target_mean"]), float(dataset[0]["target_std"])


def evaluate_regression(model, dataset, tokenizer, batch_size: int, device, num_labels: int = 1,
                        desc: str = "eval") -> dict:
    """Spearman, Pearson, MSE and MAE of a split encoded by :func:`peftlab.tasks.regression.encode_regression_task`
    (evaluate_split's signature), in the target's units; ``loss`` in standardised units; ``predictions`` and
    ``targets`` per example, in the split's row order (the verdict's paired comparison)."""
    logits, loss = predict_logits(model, dataset, tokenizer, batch_size, device, desc)
    mean, std = _scale_of(dataset)
    predicted = logits[:, 0].astype(float) * std + mean
    targets = np.asarray(dataset["target"], dtype=float)
    return {**regression_metrics(predicted, targets), "loss": loss, "predictions": as_floats(predicted),
            "targets": as_floats(targets)}


@torch.no_grad()
def predict_values(model, tokenizer, texts: list[str], pairs: list[str] | None, max_length: int, batch_size: int,
                   device, scale: tuple[float, float]) -> np.ndarray:
    """Predictions for each text (and pair), in order, in the target's units, truncated like training."""
    model.eval()
    values = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(texts[start:start + batch_size], pairs[start:start + batch_size] if pairs else None,
                          truncation=True, max_length=max_length, padding=True, return_tensors="pt")
        logits = model(**{key: value.to(device) for key, value in batch.items()}).logits
        values.append(logits[:, 0].float().cpu().numpy())
    mean, std = scale
    return np.concatenate(values).astype(float) * std + mean if values else np.zeros(0)


ATTACKS_SKIPPED = ("the word-substitution attacks search for an edit that flips the predicted class; a regression "
                   "model has no class to flip")


def evaluate_regression_robustness(model, tokenizer, suite, device, task) -> dict:
    """The ``robustness`` record of a regression run: MAE on the clean sample and on each perturbation of it, the
    increase in MAE (perturbed − clean, in the target's units), pooled per family and overall with a bootstrap
    interval over examples; the attacks are skipped with the reason (:data:`ATTACKS_SKIPPED`)."""
    start = time.perf_counter()
    settings, clean = suite.settings, suite.clean
    sets = {"clean": clean.texts, **suite.perturbed}
    texts = [text for texts in sets.values() for text in texts]
    pairs = clean.pairs * len(sets) if clean.pairs else None
    predicted = predict_values(model, tokenizer, texts, pairs, suite.max_length, settings.batch_size, device,
                               task.target_scale)
    targets, n = np.asarray(clean.labels, dtype=float), len(clean)
    errors = {name: np.abs(predicted[k * n:(k + 1) * n] - targets) for k, name in enumerate(sets)}
    clean_errors = errors.pop("clean")
    clean_mae = float(clean_errors.mean()) if n else None
    result = {"examples": n, "severity": settings.severity, "score": "mae", "clean_mae": clean_mae,
              "clean_ci95": bootstrap_mean_interval(clean_errors, seed=settings.seed),
              "clean_spearman": spearman(predicted[:n], targets) if n else None}
    result["perturbations"] = {name: _pooled({name: e}, clean_mae, settings.seed) for name, e in errors.items()}
    pooled = _pooled(errors, clean_mae, settings.seed)
    result.update(perturbed_mae=pooled["mae"], perturbed_ci95=pooled["ci95"], mae_increase=pooled["mae_increase"])
    result["families"] = {family: _pooled({m: errors[m] for m in members if m in errors}, clean_mae, settings.seed)
                          for family, members in FAMILIES.items() if any(m in errors for m in members)}
    result["attacks"] = {"status": "skipped", "reason": ATTACKS_SKIPPED}
    if suite.robust_set is not None:
        result["robust_set"] = {"status": "skipped", "reason": "--robust-set is read as class labels"}
    result["skipped"] = dict(suite.skipped)
    result["seconds"] = time.perf_counter() - start
    return result


def _pooled(errors: dict[str, np.ndarray], clean_mae: float | None, seed: int) -> dict:
    """Mean absolute error over several perturbations of the same examples, a bootstrap interval over examples, and
    its increase over the clean MAE."""
    if not errors or clean_mae is None:
        return {"mae": None, "ci95": None, "mae_increase": None}
    per_example = np.mean(np.stack(list(errors.values())), axis=0)
    value = float(per_example.mean())
    return {"mae": value, "ci95": bootstrap_mean_interval(per_example, seed=seed), "mae_increase": value - clean_mae}
