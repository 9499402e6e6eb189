"""The verdict: which method to use, or plainly "inconclusive, do X", decided from the measured runs alone.

The rules (docs/VERDICT.md states them for users):

1. **Reference.** Full fine-tuning when the study has a finished run of it; else the best method, and the verdict
   says that no full fine-tuning ceiling was measured.
2. **Did the reference learn?** The lower end of the 95% Wilson interval of its test metric (on the test
   examples; over seeds, of their mean) must lie above the baseline: the test split's majority share for class
   labels, chance for multiple choice (the better of a uniform guess among the choices and always answering the
   commonest correct choice), 0 for exact match. If not, the verdict is inconclusive: the budget, the data or the model is too small
   for the task, and no method can be judged against a reference that did not learn.
3. **Had it flattened?** If the reference's best validation pass was its last one and it gained more than the
   tolerance over every earlier pass, it was still learning when the budget ran out: inconclusive, with a budget
   extrapolated from its last gains (they shrink geometrically) or, when they do not shrink, twice the budget.
   A run that early stopping ended had flattened by definition; one validation pass says nothing either way
   (noted, not blocking).
4. **The gap.** For every PEFT method, mean test metric minus the reference's, in points, with a 95% interval:
   a paired normal interval over the test examples (the runs' per-example hits, ``test_correct``; several seeds:
   each method's mean hit per example) with Agresti and Min's adjustment (half an example added to each cell of
   the paired table, so that a small test split with few disagreements is not falsely certain), plus, with two seeds or more, each method's seed-to-seed variance of the
   mean. Records without per-example hits fall back to the unpaired interval of two proportions (wider). The
   best PEFT method is decisive:
   - interval's lower end ≥ −tolerance: the PEFT method is within the tolerance of full fine-tuning, or better:
     the decision is that method;
   - upper end < −tolerance: full fine-tuning is better by more than the tolerance: the decision is ``full``;
   - otherwise inconclusive: the interval straddles the tolerance. ``next`` then names the runs that decide it
     (the reference and that method), to which the driver adds seeds up to ``--max-seeds``.

The statistics are approximations a reader can check by hand (normal quantile 1.96; the seed variance is a sample
variance of a few seeds), chosen over a bootstrap so that the same records always give the same verdict.

Regression (a kind whose per-example record is predictions, not hits) keeps the rules and changes the statistics:
rule 2's interval is Fisher's for Spearman's rho on the test examples and its baseline 0 (predicting the training
mean); rule 4's gap is in Spearman points (×100) with a normal interval whose test-sample variance is a paired
bootstrap over test examples, seeded (1000 resamples, seed 0) so that the same records still give the same verdict.
"""

from __future__ import annotations

import math
from typing import Any

from peftlab.evaluate.stats import Z_95, paired_spearman_gap, spearman_interval, wilson_interval
from peftlab.methods import trains
from peftlab.tasks.kinds import PREDICTIONS, task_kind_of

REFERENCE_METHOD = "full"
DEFAULT_TOLERANCE_POINTS = 1.0
COST_KEYS = {"peak_memory": "peak_memory_bytes", "train_time": "train_seconds",
             "trainable_params": "trainable_params", "checkpoint_size": "checkpoint_bytes"}


def study_verdict(header: dict[str, Any], runs: list[dict], tuned: bool = False) -> dict[str, Any]:
    """The verdict record of results.json (``verdict``) from the study's header and its run records."""
    config = header.get("config") or {}
    tolerance = float(config.get("tolerance", DEFAULT_TOLERANCE_POINTS))
    kind = task_kind_of(header.get("task"))
    metric = kind.quality_metrics[0].key
    by_predictions = kind.per_example == PREDICTIONS  # regression: Spearman's intervals, not proportions
    measured = _method_groups(runs, metric)
    groups = {method: group for method, group in measured.items() if trains(method)}
    verdict: dict[str, Any] = {"decision": "inconclusive", "conclusive": False, "metric": metric,
                               "tolerance_points": tolerance, "reference": None, "best_peft": None,
                               "gap_points": None, "gap_ci95_points": None, "methods": {}, "cost_vs_full": None,
                               "learned": None, "flattened": None, "seeds": {m: len(g) for m, g in groups.items()},
                               "floor": _floor(measured, groups, metric),
                               "learning_rates": "tuned" if tuned else "fixed defaults", "reasons": [],
                               "advice": [], "next": None}
    if not groups:
        verdict["reasons"].append("no run finished, so there is nothing to compare" if not measured else
                                  "no run that trains finished (only the zero-shot floor), so there is nothing to "
                                  "compare")
        verdict["advice"].append("see the failed runs' reasons in results.json and OUT/logs/")
        return verdict
    reference = REFERENCE_METHOD if REFERENCE_METHOD in groups else max(groups, key=lambda m: _mean(groups[m], metric))
    floor = verdict["floor"]
    if floor is not None and _mean(groups[reference], metric) <= floor["value"]:  # training did not beat no training
        verdict["reasons"].append(
            f"{reference}, the reference, scores no better than {floor['method']} (no training): {metric} "
            f"{_mean(groups[reference], metric):.3f} vs {floor['value']:.3f}")
        verdict["advice"].append(f"the base model as it is ({floor['method']}) does as well here: train longer or on "
                                 "more examples, or use it untrained")
    verdict["reference"] = reference
    task = header.get("task") or {}
    test_examples = (task.get("sizes") or {}).get("test")
    learned = (_learned_correlation(groups[reference], metric, kind.baseline_name, test_examples) if by_predictions
               else _learned(groups[reference], metric, *_baseline(task, kind.baseline_name), test_examples))
    verdict["learned"] = learned
    flattened = _flattened(groups[reference], metric, tolerance)
    verdict["flattened"] = flattened
    name = "full fine-tuning" if reference == REFERENCE_METHOD else f"the best method, {reference}"
    if not learned["learned"]:
        verdict["reasons"].append(
            f"{name} did not learn the task: test {metric} {learned['value']:.3f} (95% interval "
            f"{_interval(learned['ci95'])}) is not above the {learned['baseline_name']} baseline "
            f"{learned['baseline']:.3f}, so no method can be judged against it")
        verdict["advice"] += ["train longer (--epochs, --max-steps; --until-conclusive extends the runs itself) or on "
                              "more examples (--max-train-examples)", "or use a larger or better-suited model"]
        budget = _budget_steps(groups[reference][0])
        verdict["next"] = {"budget_steps": 2 * budget} if budget else None  # what --until-conclusive tries next
        return verdict
    if flattened["flat"] is False:
        verdict["reasons"].append(
            f"{name} was still improving when the budget ran out (its last validation pass gained "
            f"{flattened['last_gain_points']:+.1f} points, more than the {tolerance:g}-point tolerance)")
        verdict["advice"].append(flattened["advice"])
        if flattened.get("budget_steps"):
            verdict["next"] = {"budget_steps": flattened["budget_steps"]}
        return verdict
    if flattened["flat"] is None:
        verdict["reasons"].append(f"whether {name} had flattened is unknown: {flattened['reason']}")
    if reference != REFERENCE_METHOD:
        verdict.update(decision=reference, conclusive=True)
        verdict["reasons"].append(f"no full fine-tuning run finished, so there is no ceiling to compare with: "
                                  f"{reference} is the best of the methods run ({metric} {_mean(groups[reference], metric):.3f})")
        return verdict
    peft = {method: group for method, group in groups.items() if method != REFERENCE_METHOD}
    if not peft:
        verdict.update(decision=REFERENCE_METHOD, conclusive=True)
        verdict["reasons"].append("only full fine-tuning finished: no PEFT method to compare with")
        return verdict
    gap_of = _correlation_gap if by_predictions else _gap
    verdict["methods"] = {method: gap_of(group, groups[REFERENCE_METHOD], metric, test_examples)
                          for method, group in peft.items()}
    best = max(peft, key=lambda method: (verdict["methods"][method]["gap_points"],
                                         -_mean(peft[method], "trainable_params", "cost")))
    gap = verdict["methods"][best]
    verdict.update(best_peft=best, gap_points=gap["gap_points"], gap_ci95_points=gap["ci95_points"],
                   cost_vs_full=_cost_ratios(peft[best], groups[REFERENCE_METHOD]))
    low, high = gap["ci95_points"]
    said = f"{best} − full: {gap['gap_points']:+.1f} points, 95% interval [{low:+.1f}, {high:+.1f}] ({gap['interval']})"
    if low >= -tolerance:
        verdict.update(decision=best, conclusive=True)
        verdict["reasons"].append(f"{said}: within the {tolerance:g}-point tolerance of full fine-tuning or better")
        others = [m for m, g in verdict["methods"].items() if m != best and g["ci95_points"][0] >= -tolerance]
        if others:
            verdict["reasons"].append(f"also within the tolerance: {', '.join(others)}")
    elif high < -tolerance:
        verdict.update(decision=REFERENCE_METHOD, conclusive=True)
        verdict["reasons"].append(f"{said}: full fine-tuning is better by more than the {tolerance:g}-point "
                                  "tolerance")
    else:
        verdict["reasons"].append(f"{said}: the interval straddles the {tolerance:g}-point tolerance, so the data "
                                  "cannot tell whether the gap matters")
        verdict["advice"].append("add seeds (--seeds, or --max-seeds to add them only to the runs that decide) or "
                                 "test examples (--max-eval-examples), or accept a larger --tolerance")
        verdict["next"] = {"add_seeds": [REFERENCE_METHOD, best]}
    if not tuned:
        verdict["reasons"].append("learning rates were not raced (--no-tune, or --train-sizes: each method's default "
                                  "or configured rate): a method can lose to a mis-set rate")
    if any(len(group) < 2 for group in (groups[REFERENCE_METHOD], peft[best])):
        verdict["reasons"].append("one seed: the interval covers the test sample, not seed-to-seed variation")
    return verdict


def _floor(measured: dict[str, list[dict]], trained: dict[str, list[dict]], metric: str) -> dict[str, Any] | None:
    """The zero-shot floor (a method that trains nothing) and the share of the floor → full gap each trained method
    closes (1 = as good as full fine-tuning, 0 = no better than no training); None without such a run."""
    floors = [method for method in measured if method not in trained]
    if not floors:
        return None
    method = floors[0]
    value = _mean(measured[method], metric)
    ceiling = _mean(trained[REFERENCE_METHOD], metric) if REFERENCE_METHOD in trained else None
    closes = {name: (_mean(group, metric) - value) / (ceiling - value)
              for name, group in trained.items() if name != REFERENCE_METHOD} \
        if ceiling is not None and ceiling > value else {}
    said = f"{method} (no training) scores {metric} {value:.3f}"
    if ceiling is not None:
        said += f"; full fine-tuning {ceiling:.3f} ({100 * (ceiling - value):+.1f} points over it)"
    if closes:
        said += "; share of that gap closed: " + ", ".join(f"{name} {share:.0%}" for name, share in closes.items())
    return {"method": method, "value": value, "ceiling": ceiling, "gap_closed": closes, "said": said}


def _method_groups(runs: list[dict], metric: str) -> dict[str, list[dict]]:
    """{method: its ok runs with a number for the metric}, in plan order."""
    groups: dict[str, list[dict]] = {}
    for run in runs:
        value = (run.get("metrics") or {}).get(metric)
        if run.get("status") == "ok" and isinstance(value, (int, float)) and math.isfinite(value):
            groups.setdefault(run["method"], []).append(run)
    return groups


def _mean(group: list[dict], key: str, section: str = "metrics") -> float:
    values = [run[section][key] for run in group if isinstance((run.get(section) or {}).get(key), (int, float))]
    return sum(values) / len(values) if values else 0.0


def _examples(group: list[dict]) -> int | None:
    hits = group[0].get("test_correct")
    return len(hits) if isinstance(hits, str) and hits else None


def _baseline(task: dict[str, Any], kind_baseline_name: str) -> tuple[float, str]:
    """What the reference must beat, and its name: the test split's majority share (class labels), the accuracy
    of guessing without reading the input (multiple choice: ``test_chance_share``), else 0 (the kind's name)."""
    for key, name in (("test_majority_share", "majority class"), ("test_chance_share", "chance")):
        if isinstance(task.get(key), (int, float)):
            return float(task[key]), name
    return 0.0, kind_baseline_name


def _learned(group: list[dict], metric: str, baseline: float, baseline_name: str,
             test_examples: int | None) -> dict[str, Any]:
    value, n = _mean(group, metric), _examples(group) or test_examples
    ci95 = wilson_interval(round(value * n), n) if n else None
    low = ci95[0] if ci95 else value
    return {"method": group[0]["method"], "value": value, "ci95": ci95, "examples": n, "baseline": baseline,
            "baseline_name": baseline_name, "learned": low > baseline}


def _learned_correlation(group: list[dict], metric: str, baseline_name: str,
                         test_examples: int | None) -> dict[str, Any]:
    """Regression: learned when the lower end of Spearman's 95% interval (Fisher's z, on the test examples) is above
    0, the score of predicting the training mean everywhere."""
    value = _mean(group, metric)
    predictions = group[0].get("test_predictions")
    n = len(predictions) if isinstance(predictions, list) and predictions else test_examples
    ci95 = spearman_interval(value, n) if n else None
    low = ci95[0] if ci95 else value
    return {"method": group[0]["method"], "value": value, "ci95": ci95, "examples": n, "baseline": 0.0,
            "baseline_name": baseline_name, "learned": low > 0.0}


def _correlation_gap(group: list[dict], reference: list[dict], metric: str,
                     test_examples: int | None) -> dict[str, Any]:
    """Regression: mean Spearman(group) − mean Spearman(reference) in points (×100) with a 95% normal interval
    whose variance is a seeded paired bootstrap over the test examples (both sides' predictions on the same
    resampled examples), plus each side's seed-to-seed variance with two seeds or more. Without per-example
    predictions: the unpaired delta-method variance (1.06 / (n − 3)) · (1 − rho²)² of each side (wider)."""
    mean, ref_mean = _mean(group, metric), _mean(reference, metric)
    predictions, ref_predictions = _predictions(group), _predictions(reference)
    targets = group[0].get("test_targets")
    if predictions and ref_predictions and targets == reference[0].get("test_targets") \
            and {len(p) for p in predictions + ref_predictions} == {len(targets)}:
        variance = paired_spearman_gap(predictions, ref_predictions, targets)["variance"]
        interval = "paired bootstrap over test examples"
    else:
        n = test_examples or 0
        variance = (1.06 / (n - 3) * ((1 - mean ** 2) ** 2 + (1 - ref_mean ** 2) ** 2)) if n > 3 else math.inf
        interval = "unpaired, no per-example predictions"
    variance, interval = _with_seed_variance(variance, interval, group, reference, metric)
    half = Z_95 * math.sqrt(variance) if math.isfinite(variance) else math.inf
    gap = 100 * (mean - ref_mean)
    return {"gap_points": gap, "ci95_points": [gap - 100 * half, gap + 100 * half], "interval": interval,
            "seeds": len(group)}


def _predictions(group: list[dict]) -> list[list[float]] | None:
    """Each run's per-example test predictions; None when a run lacks them."""
    lists = [run.get("test_predictions") for run in group]
    return lists if all(isinstance(p, list) and p for p in lists) else None


def _flattened(group: list[dict], metric: str, tolerance: float) -> dict[str, Any]:
    """Whether the (first seed's) validation curve had flattened by the end of the budget."""
    run = group[0]
    if run.get("stopped"):
        return {"flat": True, "reason": "early stopping ended it"}
    curve = [row.get(metric) for row in (run.get("curve") or {}).get("validation") or []]
    curve = [value for value in curve if isinstance(value, (int, float)) and math.isfinite(value)]
    if len(curve) < 2:
        return {"flat": None, "reason": "one validation pass (raise --epochs or --evaluations-per-epoch)"}
    gain = 100 * (curve[-1] - max(curve[:-1]))
    if gain <= tolerance:
        return {"flat": True, "last_gain_points": gain}
    steps = _budget_steps(run)
    passes = len(curve)
    more = _passes_until_flat(curve, tolerance)
    if more is not None and steps:
        factor = (passes + more) / passes
        advice = (f"train about {factor:.1f}× longer (about {math.ceil(steps * factor)} steps, e.g. --max-steps "
                  f"{math.ceil(steps * factor)}), extrapolated from the shrinking gains of its last validation passes")
    else:
        factor = 2.0
        advice = (f"train at least twice as long (--max-steps {2 * steps}): its gains were not shrinking"
                  if steps else "train at least twice as long: its gains were not shrinking")
    return {"flat": False, "last_gain_points": gain, "budget_factor": factor, "advice": advice,
            "budget_steps": math.ceil(steps * factor) if steps else None}


def _budget_steps(run: dict) -> int:
    """The steps of the run's budget (what it was planned to train; it may have stopped before)."""
    cost = run.get("cost") or {}
    return int(cost.get("budget_steps") or cost.get("train_steps") or 0)


def _passes_until_flat(curve: list[float], tolerance: float) -> int | None:
    """More validation passes until a pass gains less than the tolerance, if the gains shrink geometrically."""
    if len(curve) < 3:
        return None
    last, before = 100 * (curve[-1] - curve[-2]), 100 * (curve[-2] - curve[-3])
    if not 0 < last < before:
        return None
    ratio = last / before
    return max(1, math.ceil(math.log(tolerance / last) / math.log(ratio))) if last > tolerance else 1


def _gap(group: list[dict], reference: list[dict], metric: str, test_examples: int | None) -> dict[str, Any]:
    """Mean(group) − mean(reference) in points with a 95% interval (paired over test examples when both sides
    have per-example hits of the same test set, plus seed variance with two seeds or more)."""
    mean, ref_mean = _mean(group, metric), _mean(reference, metric)
    hits, ref_hits = _mean_hits(group), _mean_hits(reference)
    if hits is not None and ref_hits is not None and len(hits) == len(ref_hits):
        # Agresti & Min (2005): half an example added to each cell of the paired 2x2 table, so that few or no
        # discordant examples (a tiny test split) still give an honest width; fractional with seeds' mean hits
        n = len(hits)
        wins = sum(max(a - b, 0.0) for a, b in zip(hits, ref_hits)) + 0.5
        losses = sum(max(b - a, 0.0) for a, b in zip(hits, ref_hits)) + 0.5
        centre_shift = (wins - losses) / (n + 2) - (mean - ref_mean)
        variance = ((wins + losses) / (n + 2) - ((wins - losses) / (n + 2)) ** 2) / (n + 2)
        interval = "paired over test examples"
    else:
        n = _examples(group) or _examples(reference) or test_examples or 0
        variance = (mean * (1 - mean) + ref_mean * (1 - ref_mean)) / n if n else math.inf
        centre_shift = 0.0
        interval = "unpaired, no per-example hits"
    variance, interval = _with_seed_variance(variance, interval, group, reference, metric)
    half = Z_95 * math.sqrt(variance) if math.isfinite(variance) else math.inf
    gap, centre = 100 * (mean - ref_mean), 100 * (mean - ref_mean + centre_shift)
    return {"gap_points": gap, "ci95_points": [centre - 100 * half, centre + 100 * half], "interval": interval,
            "seeds": len(group)}


def _with_seed_variance(variance: float, interval: str, group: list[dict], reference: list[dict],
                        metric: str) -> tuple[float, str]:
    """The gap's variance plus each side's seed-to-seed variance of the mean (two seeds or more), and the
    interval's description saying so."""
    for side in (group, reference):
        if len(side) >= 2:
            values = [run["metrics"][metric] for run in side]
            side_mean = sum(values) / len(values)
            variance += sum((v - side_mean) ** 2 for v in values) / (len(values) - 1) / len(values)
    if any(len(side) >= 2 for side in (group, reference)):
        interval += " and seeds"
    return variance, interval


def _mean_hits(group: list[dict]) -> list[float] | None:
    """Per test example, the share of the group's runs that got it right; None when a run lacks its hits."""
    strings = [run.get("test_correct") for run in group]
    if not all(isinstance(s, str) and s for s in strings) or len({len(s) for s in strings}) != 1:
        return None
    return [sum(s[i] == "1" for s in strings) / len(strings) for i in range(len(strings[0]))]


def _cost_ratios(group: list[dict], reference: list[dict]) -> dict[str, float | None]:
    """The best PEFT method's mean cost over full fine-tuning's, per cost (None where either is not measured)."""
    ratios = {}
    for name, key in COST_KEYS.items():
        mine, theirs = _mean(group, key, "cost"), _mean(reference, key, "cost")
        ratios[name] = mine / theirs if mine and theirs else None
    return ratios


def _interval(ci95: list[float] | None) -> str:
    return f"{ci95[0]:.3f}–{ci95[1]:.3f}" if ci95 else "not computed"
