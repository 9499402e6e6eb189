"""results.json, derived from the store: the header, one record per run in plan order, aggregates over seeds, tuning,
the verdict (:mod:`peftlab.study.verdict`) and, with --train-sizes, the data-size regime (:mod:`peftlab.study.sizes`).

Aggregates: per method, over its ok runs (one per seed), the mean, sample std and 95% Student-t interval of each
test metric, and against full fine-tuning the difference of means with Welch's t-test (significant at p < 0.05).
Robustness against full fine-tuning (``robustness_vs_full``): each method's robust drop minus full's, example by
example on the same perturbed examples, with a paired bootstrap test (:func:`robustness_vs_full`).
"""

from __future__ import annotations

from typing import Any

from peftlab.evaluate.robustness import example_drops
from peftlab.evaluate.stats import mean_std_interval, paired_bootstrap_test, welch_test
from peftlab.study.runs import RunSpec
from peftlab.study.sizes import size_regime, split_by_size
from peftlab.study.verdict import study_verdict
from peftlab.tasks.kinds import task_kind_of

REFERENCE_METHOD = "full"


def derive_results(header: dict, specs: list[RunSpec], records: dict[str, dict], tuning: dict | None) -> dict[str, Any]:
    """results.json from the study's header and its run records, in plan order. With --train-sizes
    (``header["train_sizes"]``) ``runs``, the aggregates and the verdict are about the largest size, and
    ``train_sizes`` holds the regime with the smaller sizes' runs (:mod:`peftlab.study.sizes`)."""
    runs = [records[spec.key] for spec in specs if spec.key in records]
    sizes = header.get("train_sizes")
    every_size = runs
    if sizes:
        runs, smaller = split_by_size(every_size, sizes)
    runs, shorter = latest_budgets(runs)
    results: dict[str, Any] = {"study": header, "runs": runs}
    if shorter:  # --until-conclusive extended the runs: the earlier budgets' records, for the curves and the record
        results["budget_extension"] = {"budgets": sorted({_budget(run) for run in shorter + runs if _budget(run)}),
                                       "runs": shorter}
    if sizes:
        metric = task_kind_of(header.get("task")).quality_metrics[0].key
        results["train_sizes"] = {**size_regime(every_size, sizes, metric), "runs": smaller}
    seeds_per_method = [sum(run["method"] == method for run in runs) for method in {run["method"] for run in runs}]
    if header.get("seeds", 1) > 1 or max(seeds_per_method, default=1) > 1:  # --seeds, or seeds added by --max-seeds
        metrics = task_kind_of(header.get("task")).quality_metrics  # the task's two quality metrics
        results["aggregates"] = aggregate(runs, tuple(metric.key for metric in metrics))
    if tuning is not None:
        results["tuning"] = tuning_summary(tuning, runs)
    robust = robustness_vs_full(runs)
    if robust:
        results["robustness_vs_full"] = robust
    results["verdict"] = study_verdict(header, runs, tuned=tuning is not None)
    return results


def latest_budgets(runs: list[dict]) -> tuple[list[dict], list[dict]]:
    """(the runs at each method and seed's longest budget, the shorter ones --until-conclusive continued from).
    A run's budget is the one --until-conclusive extended it to (``extended_to_steps``), else the study's."""
    longest: dict[tuple, int] = {}
    for run in runs:
        key = (run["method"], run["seed"], run.get("train_size"))
        longest[key] = max(longest.get(key, 0), run.get("extended_to_steps") or 0)
    latest = [run for run in runs if (run.get("extended_to_steps") or 0) == longest[(run["method"], run["seed"],
                                                                                      run.get("train_size"))]]
    return latest, [run for run in runs if run not in latest]


def _budget(run: dict) -> int | None:
    return run.get("extended_to_steps") or (run.get("cost") or {}).get("budget_steps")


def aggregate(runs: list[dict], metrics: tuple[str, ...] = ("accuracy", "macro_f1")) -> dict[str, dict]:
    """{method: {"runs", "failed", metric: {n, mean, std, ci95, vs_full}}} over the ok runs of each method."""
    methods = list(dict.fromkeys(run["method"] for run in runs))
    values = {method: {metric: [run["metrics"][metric] for run in runs if run["method"] == method and run["status"] == "ok"]
                       for metric in metrics} for method in methods}
    summary = {}
    for method in methods:
        entry: dict[str, Any] = {"runs": sum(run["method"] == method for run in runs),
                                 "failed": sum(run["method"] == method and run["status"] != "ok" for run in runs)}
        for metric in metrics:
            entry[metric] = mean_std_interval(values[method][metric]) if values[method][metric] else None
            if entry[metric] is not None and method != REFERENCE_METHOD and REFERENCE_METHOD in values:
                entry[metric]["vs_full"] = welch_test(values[method][metric], values[REFERENCE_METHOD][metric])
        summary[method] = entry
    return summary


def robustness_vs_full(runs: list[dict]) -> dict[str, dict]:
    """{method: paired test} of each method's robust drop minus full fine-tuning's, in points: per example, (clean
    right − share of its perturbed versions right) of the method minus the same of full's run with the same seed
    (the same examples: the study builds one robustness suite), pooled over seeds, with a paired bootstrap over
    the examples (:func:`peftlab.evaluate.stats.paired_bootstrap_test`). Positive: the method loses more under
    perturbation than full fine-tuning. Methods without a full run of the same seed, or without per-example hits
    (records of an older peftlab), are left out."""
    ok = [run for run in runs if run["status"] == "ok"]
    reference = {run["seed"]: example_drops(run.get("robustness")) for run in ok if run["method"] == REFERENCE_METHOD}
    differences: dict[str, list] = {}
    seeds: dict[str, int] = {}
    for run in ok:
        drops, full = example_drops(run.get("robustness")), reference.get(run["seed"])
        if run["method"] == REFERENCE_METHOD or drops is None or full is None or len(drops) != len(full):
            continue
        differences.setdefault(run["method"], []).extend(100 * (drops - full))
        seeds[run["method"]] = seeds.get(run["method"], 0) + 1
    tests = {method: paired_bootstrap_test(values) for method, values in differences.items()}
    return {method: {**test, "seeds": seeds[method]} for method, test in tests.items() if test is not None}


def tuning_summary(tuning: dict, runs: list[dict]) -> dict[str, Any]:
    """The tuning per method, its seconds, and its cost over one untuned pass in training steps: the steps the
    trials trained plus those the first-seed runs trained themselves (none when a run continued from its chosen
    trial's checkpoint, as it does), over the steps of one pass (every method's budget once)."""
    seconds = sum(result["seconds"] for result in tuning.values())
    first = min((run["seed"] for run in runs), default=None)
    primary = [run for run in runs if run["seed"] == first and run.get("cost")]
    one_pass = sum(run["cost"].get("budget_steps") or run["cost"].get("train_steps") or 0 for run in primary)
    own = sum(run["cost"].get("train_steps") or 0 for run in primary
              if not (run.get("timing") or {}).get("resumed_from_epoch"))
    steps = sum(result.get("steps", 0) for result in tuning.values()) + own
    return {"methods": tuning, "seconds": seconds, "steps": steps, "one_pass_steps": one_pass,
            "cost_vs_one_pass": steps / one_pass if one_pass else None}
