"""The terminal comparison table: one row per method, quality and cost, each next to full fine-tuning."""

from __future__ import annotations

import math
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

REFERENCE_METHOD = "full"


def human_bytes(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return "-"


def human_count(value: float | None) -> str:
    if value is None:
        return "-"
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.2f}{unit}"
    return f"{value:.0f}"


def percent(share: float) -> str:
    """A share as a plain percentage with two significant digits for small values: 100%, 1.5%, 0.0034%."""
    value = 100 * share
    if value >= 10:
        return f"{value:.0f}%"
    return f"{value:.2g}%" if value >= 1e-4 else f"{value:.1e}%"


def _difference(value: float | None, reference: float | None, points: bool = True) -> str:
    if value is None or reference is None:
        return ""
    delta = (value - reference) * (100 if points else 1)
    return f" ({delta:+.1f})"


def reference_run(runs: list[dict]) -> dict | None:
    return next((r for r in runs if r["method"] == REFERENCE_METHOD and r["status"] == "ok"), None)


COMPARISON_COLUMNS = ("method", "accuracy (Δ pts)", "macro F1 (Δ pts)", "trainable", "optimizer state", "peak memory",
                      "train s", "tokens/s", "checkpoint", "infer ms/ex")


def quality_metrics(results: dict[str, Any]) -> tuple[tuple[str, str], tuple[str, str]]:
    """The two quality columns' (metric key, column name): generation tasks are scored by exact and normalised
    match instead of accuracy and macro F1 (docs/DECODERS.md)."""
    if (results["study"].get("task") or {}).get("type") == "generation":
        return ("exact_match", "exact match (Δ pts)"), ("normalized_match", "normalised match (Δ pts)")
    return ("accuracy", COMPARISON_COLUMNS[1]), ("macro_f1", COMPARISON_COLUMNS[2])


def comparison_columns(results: dict[str, Any]) -> tuple[str, ...]:
    """COMPARISON_COLUMNS with the task's two quality metrics (exact and normalised match for generation)."""
    (_, first), (_, second) = quality_metrics(results)
    return (COMPARISON_COLUMNS[0], first, second, *COMPARISON_COLUMNS[3:])


def headline_metric(results: dict[str, Any]) -> tuple[str, str]:
    """(metrics key, words) of the score runs are ranked by: accuracy, or exact match for generation tasks."""
    (key, _), _ = quality_metrics(results)
    return key, key.replace("_", " ")


def comparison_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The comparison table as data, shared by the terminal table and the HTML/Markdown/CSV reports.

    One row per run: ``method``, ``status``, ``reason`` (failed runs), ``reference`` (FFT), ``cells`` (the
    formatted text of each column of COMPARISON_COLUMNS after the first) and ``values`` (the raw number behind
    each cell, for sorting and CSV; None where the run has no value)."""
    runs = results["runs"]
    (first, _), (second, _) = quality_metrics(results)
    rows = []
    for run in runs:
        reference = reference_run([r for r in runs if r.get("seed") == run.get("seed")])  # full, the same seed
        ref_metrics = reference["metrics"] if reference else {}
        row = {"method": run["method"], "status": run["status"], "reason": run.get("reason", ""),
               "reference": run is reference, "cells": [], "values": [],
               "seed": run.get("seed") if "aggregates" in results else None}
        rows.append(row)
        if run["status"] != "ok":
            continue
        metrics, cost = run["metrics"], run["cost"]
        share = cost["trainable_params"] / cost["total_params"] if cost["total_params"] else 0
        row["values"] = [metrics[first], metrics[second], cost["trainable_params"],
                         cost["optimizer_state_bytes"], cost["peak_memory_bytes"], cost["train_seconds"],
                         cost["train_tokens_per_second"], cost["checkpoint_bytes"], cost["inference_ms_per_example"]]
        row["cells"] = [
            f"{100 * metrics[first]:.1f}" + ("" if row["reference"] else _difference(metrics[first], ref_metrics.get(first))),
            f"{100 * metrics[second]:.1f}" + ("" if row["reference"] else _difference(metrics[second], ref_metrics.get(second))),
            f"{human_count(cost['trainable_params'])} ({percent(share)})",
            human_bytes(cost["optimizer_state_bytes"]),
            human_bytes(cost["peak_memory_bytes"]),
            f"{cost['train_seconds']:.1f}",
            f"{cost['train_tokens_per_second']:.0f}",
            human_bytes(cost["checkpoint_bytes"]),
            f"{cost['inference_ms_per_example']:.2f}",
        ]
    return rows


def comparison_table(results: dict[str, Any]) -> Table:
    table = Table(title=table_title(results), title_justify="left")
    for column in comparison_columns(results):
        table.add_column(column, justify="left" if column == "method" else "right")
    for row in comparison_rows(results):
        label = row["method"] + ("" if row.get("seed") is None else f" s{row['seed']}")  # several seeds: which
        if row["status"] != "ok":
            table.add_row(label, f"[red]failed: {row['reason']}[/red]", *[""] * 8)
            continue
        table.add_row(label + (" (ref)" if row["reference"] else ""), *row["cells"])
    return table


def table_title(results: dict[str, Any]) -> str:
    study = results["study"]
    sizes = study["task"]["sizes"]
    budget = study["budget"]
    steps = f"{budget['max_steps']} steps" if budget.get("max_steps") else f"{budget['epochs']} epochs"
    return (f"{study['model']} on {study['task']['name']} (train {sizes['train']}, validation {sizes['validation']}, "
            f"test {sizes['test']}; {steps}, batch {budget['batch_size']}, seed {study['seed']}) — test metrics")


def print_table(results: dict[str, Any], console: Console | None = None) -> None:
    """The comparison table, then the robustness table when the runs have robustness results."""
    console = console or Console()
    console.print(comparison_table(results))
    from peftlab.report.study_tables import print_study_tables  # seeds and tuning, when the study has them

    print_study_tables(results, console)
    print_robustness_table(results, console)
    from peftlab.report.estimate_check import estimate_check_table  # imports this module's helpers

    check = estimate_check_table(results)
    if check is not None:
        console.print(check)


# --- robustness -------------------------------------------------------------------------------------------------

ROBUSTNESS_FAMILIES = ("char", "word", "noise", "distractor")  # see peftlab.evaluate.perturb.FAMILIES


def with_interval(value: float | None, ci95: list[float] | None) -> str:
    """A share as a percentage with its 95% interval: 85.2 [82–88]."""
    if value is None:
        return "-"
    return f"{100 * value:.1f}" + (f" [{100 * ci95[0]:.0f}–{100 * ci95[1]:.0f}]" if ci95 else "")


def robustness_table(results: dict[str, Any]) -> Table | None:
    """Per method: clean accuracy, accuracy per perturbation family, mean robust drop, attack success rates."""
    runs = [run for run in results["runs"] if run["status"] == "ok" and run.get("robustness")]
    if not runs:
        return None
    has_set = any("robust_set" in run["robustness"] for run in runs)
    table = Table(*robustness_columns(has_set), box=box.SIMPLE_HEAD, title_justify="left",
                  title=robustness_title(next((r["robustness"] for r in runs if "attacks" in r["robustness"]), {})))
    for run in runs:
        if run["robustness"].get("status") == "failed":
            table.add_row(run["method"], f"[red]failed: {run['robustness'].get('reason', '')}[/red]")
        elif run["robustness"].get("status") == "skipped":  # e.g. multiple-choice and generation tasks
            table.add_row(run["method"], f"skipped: {run['robustness'].get('reason', '')}")
        else:
            table.add_row(run["method"], *robustness_cells(run["robustness"], has_set))
    return table


def robustness_columns(has_set: bool) -> list[str]:
    return ["method", "clean", *ROBUSTNESS_FAMILIES, "drop pts", "word attack", "char attack",
            *(["robust set"] if has_set else [])]


def robustness_cells(robustness: dict, has_set: bool) -> list[str]:
    """The cells after the method of a robustness record that did not fail (see robustness_columns)."""
    families, attacks = robustness.get("families", {}), robustness.get("attacks", {})
    cells = [with_interval(robustness["clean_accuracy"], robustness["clean_ci95"])]
    cells += [with_interval(families[f]["accuracy"], families[f]["ci95"]) if f in families else "-"
              for f in ROBUSTNESS_FAMILIES]
    drop = robustness.get("drop_points")
    cells.append("-" if drop is None else f"{drop:+.1f}")
    cells += [with_interval(attacks[a]["success_rate"], attacks[a]["ci95"]) if a in attacks else "-"
              for a in ("word_substitution", "char_edit")]
    if has_set:
        robust_set = robustness.get("robust_set")
        cells.append(with_interval(robust_set["accuracy"], robust_set["ci95"]) if robust_set else "-")
    return cells


def robustness_title(first: dict) -> str:
    attack = first.get("attacks", {}).get("word_substitution", {})
    severity = first.get("severity")
    touched = f"{100 * severity:.0f}%" if isinstance(severity, (int, float)) else "-"
    return (f"robustness: accuracy % [95% CI] on {first.get('examples', '-')} test examples, perturbations touching "
            f"{touched} of the words; drop = clean − mean perturbed, in points; attack success % of the correctly "
            f"classified among {attack.get('examples', '-')} examples, at most {attack.get('query_budget', '-')} "
            "queries each")


def print_robustness_table(results: dict[str, Any], console: Console | None = None) -> None:
    table = robustness_table(results)
    if table is not None:
        (console or Console()).print(table)
