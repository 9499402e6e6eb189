"""The suite table: tasks as rows, methods as columns, from each task's compare results.

Per task and method: the mean ± sample std over seeds of the task's headline metric (accuracy, or exact match for
generation), the difference to full fine-tuning in points with Welch's t-test (significant at p < 0.05; needs 2+
seeds of both), the robust drop (clean − perturbed accuracy, in points, mean over seeds), the generalization gap
(train − test, points) and forgetting (CKA to the base, LM loss change). Per task family and
method: the mean difference to full fine-tuning over the family's tasks, how many tasks were significantly worse or
better, and the mean robust drop. Per task: the advisor's call next to the measured gap (docs/DIAGNOSE.md). A task
run with `train_sizes` (under the suite's `compare:`) is summarised at its largest size, with its crossovers.
"""

from __future__ import annotations

from datetime import datetime, timezone
from statistics import mean
from typing import Any

from peftlab.bench.claims import evaluate_claims, smallest_matching_rank
from peftlab.report.markdown import md, table as markdown_table
from peftlab.report.tables import headline_metric
from peftlab.study.summary import REFERENCE_METHOD, aggregate


def suite_table(suite, finished: dict[str, dict]) -> dict[str, Any]:
    """suite.json: the suite, one summary per finished task, the family aggregates, and the tasks still to run."""
    tasks = [task_summary(task, finished[task.name]["results"], finished[task.name]["wall_seconds"])
             for task in suite.tasks if task.name in finished]
    claims = evaluate_claims(suite.claims, finished, list(suite.methods))
    for claim in claims:
        if claim["kind"] == "fit" and claim.get("methods"):
            claim["lora_rank"] = smallest_matching_rank(claim)
    return {"suite": suite.describe(), "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "methods": list(suite.methods), "tasks": tasks, "families": family_summary(tasks, suite.methods),
            "claims": claims, "pending": [task.name for task in suite.tasks if task.name not in finished]}


def task_summary(task, results: dict[str, Any], wall_seconds: float | None) -> dict[str, Any]:
    metric, _ = headline_metric(results)
    runs = results["runs"]
    aggregates = aggregate(runs, (metric,))
    reference = (aggregates.get(REFERENCE_METHOD) or {}).get(metric) or {}
    methods = {}
    for method, entry in aggregates.items():
        stats = entry[metric] or {}
        ok = [run for run in runs if run["method"] == method and run["status"] == "ok"]
        drops = [run["robustness"]["drop_points"] for run in ok
                 if (run.get("robustness") or {}).get("drop_points") is not None]
        gaps = [run["generalization"]["gap_points"][metric] for run in ok
                if isinstance(((run.get("generalization") or {}).get("gap_points") or {}).get(metric), (int, float))]
        forgetting = [run["forgetting"] for run in ok if (run.get("forgetting") or {}).get("status") == "ok"]
        ckas = [record["cka"] for record in forgetting if isinstance(record.get("cka"), (int, float))]
        losses = [record["lm_loss_change"] for record in forgetting
                  if isinstance(record.get("lm_loss_change"), (int, float))]
        difference = (100 * (stats["mean"] - reference["mean"])
                      if stats.get("mean") is not None and reference.get("mean") is not None else None)
        methods[method] = {
            "runs": entry["runs"], "failed": entry["failed"], "n": stats.get("n", 0), "mean": stats.get("mean"),
            "std": stats.get("std"), "ci95": stats.get("ci95"), "difference_points": difference,
            "vs_full": stats.get("vs_full"), "robust_drop_points": mean(drops) if drops else None,
            "robust_drop_vs_full": (results.get("robustness_vs_full") or {}).get(method),  # paired over examples
            "generalization_gap_points": mean(gaps) if gaps else None,  # train − test, mean over seeds
            "forgetting_cka": mean(ckas) if ckas else None, "forgetting_lm_loss_change": mean(losses) if losses else None,
            "train_seconds": mean(run["cost"]["train_seconds"] for run in ok) if ok else None,
            "reasons": sorted({run.get("reason", "") for run in runs if run["method"] == method and run["status"] != "ok"}),
        }
    study = results["study"]
    regime = results.get("train_sizes")  # --train-sizes: the table is at the largest size; the crossovers here
    sizes = {"train_sizes": {"sizes": regime["sizes"], "crossovers": {
        method: {key: record[key] for key in ("pattern", "crossings", "text")}
        for method, record in regime["crossovers"].items()}}} if isinstance(regime, dict) else {}
    every_run = runs + (regime.get("runs", []) if isinstance(regime, dict) else [])
    return {"name": task.name, "family": task.family, "data": task.data, "metric": metric,
            "train_examples": ((study.get("task") or {}).get("sizes") or {}).get("train"),
            "test_majority_share": (study.get("task") or {}).get("test_majority_share"),
            "methods": methods, "advisor": _advisor(results), "verdict": _verdict(results), "wall_seconds": wall_seconds,
            "run_seconds": sum((run.get("timing") or {}).get("wall_seconds") or 0.0 for run in every_run), **sizes}


def _verdict(results: dict[str, Any]) -> dict[str, Any] | None:
    """The task's verdict (peftlab.study.verdict): decision, whether conclusive, the first reason."""
    verdict = results.get("verdict")
    if not isinstance(verdict, dict):
        return None
    return {"decision": verdict.get("decision"), "conclusive": verdict.get("conclusive"),
            "reason": (verdict.get("reasons") or [""])[0]}


def _advisor(results: dict[str, Any]) -> dict[str, Any] | None:
    recommendation, check = results.get("recommendation"), results.get("advisor_check")
    if not recommendation:
        return {"status": "none", "reason": results.get("diagnosis_skipped") or results.get("diagnosis_failed") or "no diagnosis"}
    call = recommendation["decision"] if recommendation["decision"] == "full" else f"{recommendation.get('method')} r{recommendation.get('rank')}"
    return {"call": call, "decision": recommendation["decision"], "confidence": recommendation.get("confidence"),
            "gap_points": (check or {}).get("gap_points"), "best_peft_method": (check or {}).get("best_peft_method"),
            "agrees": (check or {}).get("agrees")}


def family_summary(tasks: list[dict], methods: list[str]) -> dict[str, dict]:
    """{family: {"tasks": [...], method: {mean_difference_points, significantly_worse, significantly_better,
    tasks_compared, mean_robust_drop_points, significantly_less_robust, significantly_more_robust,
    robustness_tests}}}"""
    summary: dict[str, dict] = {}
    for family in dict.fromkeys(task["family"] for task in tasks):
        members = [task for task in tasks if task["family"] == family]
        entry: dict[str, Any] = {"tasks": [task["name"] for task in members]}
        for method in methods:
            cells = [task["methods"][method] for task in members if method in task["methods"]]
            differences = [cell["difference_points"] for cell in cells if cell["difference_points"] is not None]
            tests = [cell["vs_full"] for cell in cells if cell.get("vs_full")]
            drops = [cell["robust_drop_points"] for cell in cells if cell["robust_drop_points"] is not None]
            robust = [cell["robust_drop_vs_full"] for cell in cells if cell.get("robust_drop_vs_full")]
            entry[method] = {
                "tasks_compared": len(differences),
                "mean_difference_points": mean(differences) if differences else None,
                "significantly_worse": sum(t["significant"] and t["difference"] < 0 for t in tests),
                "significantly_better": sum(t["significant"] and t["difference"] > 0 for t in tests),
                "tests": len(tests),
                "mean_robust_drop_points": mean(drops) if drops else None,
                "significantly_less_robust": sum(t["significant"] and t["difference"] > 0 for t in robust),
                "significantly_more_robust": sum(t["significant"] and t["difference"] < 0 for t in robust),
                "robustness_tests": len(robust),
            }
        summary[family] = entry
    return summary


# --- Markdown ---------------------------------------------------------------------------------------------------

def quality_cell(cell: dict[str, Any] | None, reference: bool) -> str:
    """`81.2 ± 1.0 (−1.5*)`: mean ± std in %, the difference to FFT in points, * when Welch's p < 0.05."""
    if not cell or cell["mean"] is None:
        return "failed" if cell and cell["failed"] else "-"
    text = f"{100 * cell['mean']:.1f}" + (f" ± {100 * cell['std']:.1f}" if cell["std"] is not None else "")
    if not reference and cell["difference_points"] is not None:
        star = "*" if (cell.get("vs_full") or {}).get("significant") else ""
        text += f" ({cell['difference_points']:+.1f}{star})"
    if cell["failed"]:
        text += f" [{cell['failed']} failed]"
    return text


def robust_cell(cell: dict[str, Any] | None) -> str:
    """`+3.6 (+1.2*)`: the mean robust drop in points; in brackets the paired difference to full's drop, * when
    significant (p < 0.05)."""
    cell = cell or {}
    text = _points(cell.get("robust_drop_points"))
    test = cell.get("robust_drop_vs_full")
    if test and text != "-":
        text += f" ({test['difference']:+.1f}{'*' if test['significant'] else ''})"
    return text


def claims_markdown(claims: list[dict[str, Any]]) -> list[str]:
    """The claims section: per claim and method, the statistic in points with its 95% bootstrap interval, the
    p-value and the outcome (peftlab.bench.claims)."""
    lines = ["## Claims", "",
             "Each claim as a statistic over the suite's tasks, from the runs' per-example test hits: a method's gap is "
             "its accuracy minus full fine-tuning's (points, paired within each seed); an interaction is the gap on "
             "the shifted task minus the gap on the reference; a slope is the gap's least-squares slope over the "
             "levels; a fit is the gap on a random-label task scored on its own training rows. Negative = the claim's "
             "direction. 95% bootstrap interval over seeds and test examples (with one seed: the test sample only), "
             "two-sided p; outcome: reproduced / contrary (p < 0.05), no effect (interval within ± tolerance), "
             "inconclusive.", ""]
    rows = []
    for claim in claims:
        if claim.get("status") == "pending":
            rows.append([claim["name"], "-", "-", "-", "-", "-", md(claim["reason"])])
            continue
        for method, tests in claim["methods"].items():
            for what, test in tests.items():
                rows.append([claim["name"], md(method), md(what), f"{test['statistic']:+.1f}",
                             f"[{test['ci95'][0]:+.1f}, {test['ci95'][1]:+.1f}]", f"{test['p_value']:.3g}",
                             test["outcome"]])
        if claim.get("seeds") == 1:
            rows.append([claim["name"], "-", "-", "-", "-", "-",
                         "one seed: the interval covers the test sample, not seed-to-seed variation"])
        if claim.get("not_run"):
            rows.append([claim["name"], "-", "-", "-", "-", "-", md("tested so far without: " + ", ".join(claim["not_run"]))])
        if claim.get("status") == "inconclusive":
            rows.append([claim["name"], "-", "-", "-", "-", "-", md("inconclusive: the reference did not learn ("
                                                                     + claim["reference"] + ")")])
        rank = claim.get("lora_rank")
        if rank:
            found = rank["smallest_rank_within_tolerance"]
            rows.append([claim["name"], "lora ranks", "-", "-", "-", "-",
                         md(("smallest rank within tolerance of full: " + str(found)) if found else
                            "no rank within tolerance of full")])
    lines += [markdown_table(["claim", "method", "test", "points", "95% interval", "p", "outcome"], rows), ""]
    return lines


def _overfit_cell(cell: dict[str, Any] | None) -> str:
    """`gap +4.2, CKA 0.981, LM Δ +0.031` (the parts measured)."""
    cell = cell or {}
    parts = []
    if cell.get("generalization_gap_points") is not None:
        parts.append(f"gap {cell['generalization_gap_points']:+.1f}")
    if cell.get("forgetting_cka") is not None:
        parts.append(f"CKA {cell['forgetting_cka']:.3f}")
    if cell.get("forgetting_lm_loss_change") is not None:
        parts.append(f"LM Δ {cell['forgetting_lm_loss_change']:+.3f}")
    return ", ".join(parts) or "-"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _points(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f}"


def suite_markdown(table: dict[str, Any]) -> str:
    suite, methods, tasks = table["suite"], table["methods"], table["tasks"]
    seeds = suite["seeds"]
    lines = [f"# Suite {md(suite['name'])}: {md(suite['model'])}, {len(suite['tasks'])} tasks, {seeds} seed(s)", ""]
    if suite.get("description"):
        lines += [md(suite["description"]), ""]
    lines += [f"Written {table['written_at']}. Budget: " + md(", ".join(f"{k}={v}" for k, v in suite["compare"].items()) or "compare defaults"), ""]
    if table["pending"]:
        lines += [f"**Not run yet:** {md(', '.join(table['pending']))}.", ""]
    if table.get("claims"):
        lines += claims_markdown(table["claims"])
    lines += ["## Quality", "",
              "Test metric in % (accuracy; exact match for generation tasks), mean ± std over seeds; in brackets the "
              "difference to full fine-tuning in points, `*` where Welch's t-test gives p < 0.05 (needs 2+ seeds). "
              "`majority`: the accuracy of always answering the test set's most common label.", ""]
    lines += [markdown_table(["task", "family", "majority", *methods],
                             [[task["name"], task["family"], _share(task.get("test_majority_share")),
                               *(quality_cell(task["methods"].get(m), m == REFERENCE_METHOD) for m in methods)]
                              for task in tasks]), ""]
    lines += ["## Robust drop", "", "Clean minus perturbed test accuracy, in points, mean over seeds (higher = less "
              "robust); in brackets the method's drop minus full fine-tuning's, paired over the same perturbed "
              "examples (all seeds pooled), `*` where the paired bootstrap gives p < 0.05.", ""]
    lines += [markdown_table(["task", *methods], [[task["name"], *(robust_cell(task["methods"].get(m)) for m in methods)]
                                                  for task in tasks]), ""]
    lines += ["## Overfitting and forgetting", "",
              "Per method: train − test metric in points (the generalization gap, on a sample of the run's own "
              "training set); the representation's linear CKA to the base on general English (1 = unchanged) and, "
              "for causal LMs, the LM loss change on it (fine-tuned − base); means over seeds.", ""]
    lines += [markdown_table(["task", *methods], [[task["name"], *(_overfit_cell(task["methods"].get(m)) for m in methods)]
                                                  for task in tasks]), ""]
    lines += ["## By task family", "",
              "Mean difference to full fine-tuning over the family's tasks (points); then tasks significantly worse / "
              "better than full out of those tested; then mean robust drop (points), and tasks where the method was "
              "significantly less / more robust than full (paired bootstrap) out of those tested.", ""]
    rows = []
    for family, entry in table["families"].items():
        for method in methods:
            cell = entry[method]
            rows.append([family, method, len(entry["tasks"]), _points(cell["mean_difference_points"]),
                         f"{cell['significantly_worse']} / {cell['significantly_better']} of {cell['tests']}",
                         _points(cell["mean_robust_drop_points"]),
                         f"{cell['significantly_less_robust']} / {cell['significantly_more_robust']} of "
                         f"{cell['robustness_tests']}"])
    lines += [markdown_table(["family", "method", "tasks", "Δ vs full (pts)", "sig. worse / better", "robust drop",
                              "sig. less / more robust"], rows), ""]
    sized = [task for task in tasks if task.get("train_sizes")]
    if sized:  # a suite run with `train_sizes` under `compare:`
        lines += ["## Training-set sizes", "", "The tables above are at each task's largest training-set size; here "
                  "where full fine-tuning overtakes each method along the sizes (or the reverse).", ""]
        lines += [markdown_table(["task", "sizes", "crossovers"],
                                 [[task["name"], ", ".join(map(str, task["train_sizes"]["sizes"])),
                                   "; ".join(record["text"] for record in task["train_sizes"]["crossovers"].values())
                                   or "no full fine-tuning run"] for task in sized]), ""]
    lines += ["## Per task", ""]
    lines += ["`runs s`: the runs' own wall seconds summed (a resumed run counts from its last checkpoint); `wall s`: "
              "the invocation that finished the task, diagnosis included (shorter when earlier invocations had "
              "finished some of its runs).", ""]
    lines += ["`verdict`: the study's decision (docs/VERDICT.md); `inconclusive` says why in `suite.json`.", ""]
    lines += [markdown_table(["task", "train examples", "metric", "verdict", "best PEFT", "gap to full (pts)", "advisor",
                              "advisor agrees", "runs s", "wall s"], [_task_row(task) for task in tasks]), ""]
    return "\n".join(lines)


def _task_row(task: dict[str, Any]) -> list[Any]:
    advisor = task["advisor"] or {}
    agrees = advisor.get("agrees")
    verdict = task.get("verdict") or {}
    return [task["name"], task["train_examples"] or "-", task["metric"], verdict.get("decision") or "-",
            advisor.get("best_peft_method") or "-",
            _points(advisor.get("gap_points")), advisor.get("call") or advisor.get("reason", "-"),
            "-" if agrees is None else ("yes" if agrees else "no"), f"{task.get('run_seconds') or 0:.0f}",
            "-" if task["wall_seconds"] is None else f"{task['wall_seconds']:.0f}"]
