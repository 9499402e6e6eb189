"""Confidence intervals for accuracies, rates and rank correlations.

The Wilson score interval for a share of successes (accuracy, attack success rate): unlike the normal
approximation it stays inside [0, 1] and behaves at 0/n and n/n. A percentile bootstrap for means of per-example
scores (mean accuracy over several perturbations of the same examples), and a paired bootstrap test of a mean of
per-example differences (one method's robust drop against another's on the same examples). Written here (a few lines each) rather
than imported from statsmodels. For regression: Fisher's interval for Spearman's rho, and a seeded paired bootstrap
of the difference of two runs' Spearman on the same test examples (ranks from scipy).
"""

from __future__ import annotations

import math

import numpy as np

Z_95 = 1.959963984540054  # standard normal quantile for a two-sided 95% interval


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> list[float] | None:
    """[low, high] of the Wilson score interval for successes / trials; None when there are no trials."""
    if trials <= 0:
        return None
    share = successes / trials
    denominator = 1 + z * z / trials
    centre = (share + z * z / (2 * trials)) / denominator
    half_width = z * math.sqrt(share * (1 - share) / trials + z * z / (4 * trials * trials)) / denominator
    return [max(0.0, centre - half_width), min(1.0, centre + half_width)]


def rate(successes: int, trials: int) -> float | None:
    return successes / trials if trials > 0 else None


def bootstrap_mean_interval(values, resamples: int = 2000, seed: int = 0) -> list[float] | None:
    """[low, high]: the 2.5th and 97.5th percentiles of the mean over ``resamples`` seeded resamples of ``values``
    (with replacement); None for no values. For means of per-example scores that are not 0/1 counts."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return None
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(resamples, values.size))].mean(axis=1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def mean_std_interval(values) -> dict:
    """n, mean, sample std and the 95% Student-t interval of the mean of a few values (e.g. one per seed);
    std and interval are None for fewer than two values."""
    from scipy import stats as scipy_stats

    values = np.asarray(values, dtype=float)
    summary = {"n": int(values.size), "mean": float(values.mean()) if values.size else None, "std": None, "ci95": None}
    if values.size >= 2:
        std = float(values.std(ddof=1))
        half = float(scipy_stats.t.ppf(0.975, values.size - 1)) * std / math.sqrt(values.size)
        summary.update(std=std, ci95=[summary["mean"] - half, summary["mean"] + half])
    return summary


def welch_test(values, reference) -> dict | None:
    """Difference of means (values − reference) with Welch's two-sided t-test; None for fewer than two of either.
    Significant means p < 0.05."""
    from scipy import stats as scipy_stats

    values, reference = np.asarray(values, dtype=float), np.asarray(reference, dtype=float)
    if values.size < 2 or reference.size < 2:
        return None
    difference = float(values.mean() - reference.mean())
    # Written out rather than scipy's ttest_ind, which warns "precision loss" whenever one side has no spread (a
    # method that stayed at the majority class on every seed), a case the formula handles.
    variances = values.var(ddof=1) / values.size, reference.var(ddof=1) / reference.size
    spread = sum(variances)
    if spread <= 1e-24:
        p_value = 1.0 if difference == 0 else 0.0  # no spread on either side: the t statistic is undefined
    else:
        freedom = spread**2 / (variances[0] ** 2 / (values.size - 1) + variances[1] ** 2 / (reference.size - 1))
        p_value = float(2 * scipy_stats.t.sf(abs(difference) / math.sqrt(spread), freedom))
    return {"difference": difference, "p_value": p_value, "significant": p_value < 0.05, "test": "welch_t"}


def bootstrap_p_value(replicates: np.ndarray) -> float:
    """Two-sided bootstrap p-value of "the statistic is 0": twice the share of resampled statistics on the far side
    of 0, at least one over the number of resamples."""
    far = min(float((replicates <= 0).mean()), float((replicates >= 0).mean()))
    return min(1.0, max(1.0 / len(replicates), 2 * far))


def paired_bootstrap_test(differences, resamples: int = 2000, seed: int = 0) -> dict | None:
    """The mean of per-example differences (two measurements of the same examples, e.g. two methods' robust drops),
    its 95% percentile-bootstrap interval over examples, and the two-sided bootstrap p-value (twice the share of
    resampled means on the far side of 0, at least 1/resamples); significant means p < 0.05. None for fewer than
    two examples."""
    differences = np.asarray(differences, dtype=float)
    if differences.size < 2:
        return None
    rng = np.random.default_rng(seed)
    means = differences[rng.integers(0, differences.size, size=(resamples, differences.size))].mean(axis=1)
    difference = float(differences.mean())
    p_value = 1.0 if not differences.any() else bootstrap_p_value(means)
    return {"difference": difference, "ci95": [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))],
            "p_value": p_value, "significant": p_value < 0.05, "examples": int(differences.size),
            "test": "paired_bootstrap"}


def spearman_interval(rho: float, n: int, z: float = Z_95) -> list[float] | None:
    """[low, high] of a 95% interval for Spearman's rho on n examples: Fisher's z-transform with the standard
    error sqrt(1.06 / (n − 3)) of Fieller, Hartley and Pearson (1957); None for fewer than 4 examples."""
    if n is None or n < 4:
        return None
    centre, half = math.atanh(max(-0.999999, min(0.999999, rho))), z * math.sqrt(1.06 / (n - 3))
    return [math.tanh(centre - half), math.tanh(centre + half)]


def _row_spearman(predicted: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Spearman's rho of each row of ``predicted`` with the same row of ``true`` (0 where a row is constant)."""
    from scipy import stats as scipy_stats

    a = scipy_stats.rankdata(predicted, axis=1)
    b = scipy_stats.rankdata(true, axis=1)
    a, b = a - a.mean(axis=1, keepdims=True), b - b.mean(axis=1, keepdims=True)
    norm = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    return np.divide((a * b).sum(axis=1), norm, out=np.zeros(len(a)), where=norm > 0)


def paired_spearman_gap(predictions: list, reference: list, targets, resamples: int = 1000,
                        seed: int = 0) -> dict:
    """Mean Spearman of ``predictions`` (one list per seed) minus that of ``reference``, on the same test targets,
    and the variance of that difference over ``resamples`` seeded bootstrap resamples of the test examples (each
    resample scores every seed of both sides on the same examples, so the pairing is kept)."""
    targets = np.asarray(targets, dtype=float)
    rng = np.random.default_rng(seed)
    index = rng.integers(0, targets.size, size=(resamples, targets.size))
    true = targets[index]

    def mean_rho(sides: list) -> np.ndarray:
        return np.mean([_row_spearman(np.asarray(p, dtype=float)[index], true) for p in sides], axis=0)

    differences = mean_rho(predictions) - mean_rho(reference)
    return {"variance": float(differences.var(ddof=1)), "resamples": resamples}
