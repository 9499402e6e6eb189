"""The data-size regime (--train-sizes): quality against training-set size per method, and the crossovers.

results.json's ``train_sizes`` (docs/MEASUREMENT.md): the sizes, per size and method the headline test metric
over the ok runs (one per seed: mean, sample std, 95% Student-t interval, n) with the difference to full
fine-tuning at that size, and per PEFT method where full fine-tuning overtakes it along increasing sizes (or the
reverse). The main comparison, the aggregates and the verdict are about the largest size: ``runs`` holds the
runs at that size, ``train_sizes.runs`` those at the smaller sizes (each record with its ``train_size``).

A crossover is where the sign of (full − method) changes between two consecutive sizes that both measured it: it
happened somewhere between those sizes (``between: [a, b]``). A size where the two are equal is a tie and is
stepped over. With seeds, each size's difference carries Welch's test, and a crossing whose two ends are not
significant is flagged as within the seed-to-seed noise.
"""

from __future__ import annotations

from typing import Any

from peftlab.evaluate.stats import mean_std_interval, welch_test

REFERENCE_METHOD = "full"
TIE_POINTS = 1e-9  # a difference this small (floating-point noise of equal scores) is a tie


def split_by_size(runs: list[dict], sizes: list[int]) -> tuple[list[dict], list[dict]]:
    """(the runs at the largest size, the runs at the smaller sizes), each in plan order."""
    largest = max(sizes)
    return ([run for run in runs if run.get("train_size") == largest],
            [run for run in runs if run.get("train_size") != largest])


def size_regime(runs: list[dict], sizes: list[int], metric: str) -> dict[str, Any]:
    """results.json's ``train_sizes`` without its ``runs`` (see the module docstring)."""
    methods = list(dict.fromkeys(run["method"] for run in runs))
    values = {(size, method): [run["metrics"][metric] for run in runs if run.get("train_size") == size
                               and run["method"] == method and run["status"] == "ok"
                               and isinstance((run.get("metrics") or {}).get(metric), (int, float))]
              for size in sizes for method in methods}
    per_size: dict[str, dict[str, Any]] = {}
    for size in sizes:
        entry = {}
        for method in methods:
            at = [run for run in runs if run.get("train_size") == size and run["method"] == method]
            if not at:
                continue
            summary = mean_std_interval(values[size, method]) if values[size, method] else {
                "n": 0, "mean": None, "std": None, "ci95": None}
            summary.update(runs=len(at), failed=sum(run["status"] != "ok" for run in at))
            reference = values.get((size, REFERENCE_METHOD)) or []
            if method != REFERENCE_METHOD and summary["mean"] is not None and reference:
                summary["vs_full_points"] = 100 * (summary["mean"] - sum(reference) / len(reference))
                summary["vs_full"] = welch_test(values[size, method], reference)
            entry[method] = summary
        per_size[str(size)] = entry
    crossovers = {method: crossover(method, sizes, per_size) for method in methods if method != REFERENCE_METHOD}
    return {"metric": metric, "sizes": list(sizes), "largest": max(sizes), "per_size": per_size,
            "crossovers": crossovers if REFERENCE_METHOD in methods else {},
            "reference": REFERENCE_METHOD if REFERENCE_METHOD in methods else None}


def crossover(method: str, sizes: list[int], per_size: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Where full fine-tuning overtakes ``method`` along increasing sizes, or the reverse.

    ``gaps_points``: full − method in points per size that measured both; ``pattern``: ``full_ahead`` /
    ``method_ahead`` (at every such size), ``tied``, ``crosses``, or ``unknown`` (fewer than one size measured
    both); ``crossings``: one per change of leader, ``{"between": [a, b], "leader_before", "leader_after",
    "within_noise"}`` (``within_noise``: True when neither end's difference is significant over seeds, None
    without seeds); ``text``: the line the report prints."""
    gaps: dict[int, float] = {}
    significant: dict[int, bool | None] = {}
    for size in sizes:
        entry = per_size[str(size)].get(method) or {}
        if entry.get("vs_full_points") is not None:
            gaps[size] = -entry["vs_full_points"]
            test = entry.get("vs_full")
            significant[size] = test["significant"] if test else None
    record: dict[str, Any] = {"gaps_points": {str(size): gap for size, gap in gaps.items()}, "crossings": []}
    signed = [(size, 1 if gap > 0 else -1) for size, gap in gaps.items() if abs(gap) > TIE_POINTS]
    ties = [size for size, gap in gaps.items() if abs(gap) <= TIE_POINTS]
    leader = {1: REFERENCE_METHOD, -1: method}
    for (before, sign_before), (after, sign_after) in zip(signed, signed[1:]):
        if sign_before != sign_after:
            ends = [significant.get(before), significant.get(after)]
            noise = None if None in ends else not any(ends)
            record["crossings"].append({"between": [before, after], "leader_before": leader[sign_before],
                                        "leader_after": leader[sign_after], "within_noise": noise})
    if not gaps:
        record.update(pattern="unknown", text=f"{method}: no size measured both it and full fine-tuning")
    elif not signed:
        record.update(pattern="tied", text=f"{method}: tied with full fine-tuning at every size")
    elif not record["crossings"]:
        ahead = "full" if signed[0][1] > 0 else method
        every = "every size" if len(gaps) == len(sizes) else "every size that measured both"  # a partial study
        record.update(pattern="full_ahead" if ahead == "full" else "method_ahead",
                      text=f"{method}: {ahead} ahead at {every}"
                      + (f" but tied at {', '.join(map(str, ties))}" if ties else "") + _range(method, gaps))
    else:
        record["pattern"] = "crosses"
        parts = []
        for crossing in record["crossings"]:
            low, high = crossing["between"]
            overtakes = "full fine-tuning overtakes" if crossing["leader_after"] == REFERENCE_METHOD else \
                f"{method} overtakes full fine-tuning"
            noise = " (within the seeds' noise)" if crossing["within_noise"] else ""
            parts.append(f"{overtakes} between {low} and {high} examples{noise}")
        record["text"] = f"{method}: " + "; ".join(parts) + _range(method, gaps)
    return record


def _range(method: str, gaps: dict[int, float]) -> str:
    return f" (full − {method}: " + ", ".join(f"{gap + 0.0:+.1f} pts at {size}" for size, gap in gaps.items()) + ")"
