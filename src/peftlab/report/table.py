"""The terminal comparison table: one row per method, quality and cost, each next to full fine-tuning."""

from __future__ import annotations

import math
from typing import Any

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


def comparison_table(results: dict[str, Any]) -> Table:
    runs = results["runs"]
    reference = reference_run(runs)
    ref_metrics = reference["metrics"] if reference else {}
    table = Table(title=_title(results), title_justify="left")
    for column in ("method", "accuracy (Δ pts)", "macro F1 (Δ pts)", "trainable", "optimizer state", "peak memory",
                   "train s", "tokens/s", "checkpoint", "infer ms/ex"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for run in runs:
        if run["status"] != "ok":
            table.add_row(run["method"], f"[red]failed: {run.get('reason', '')}[/red]", *[""] * 8)
            continue
        metrics, cost = run["metrics"], run["cost"]
        is_reference = run is reference
        share = cost["trainable_params"] / cost["total_params"] if cost["total_params"] else 0
        table.add_row(
            run["method"] + (" (ref)" if is_reference else ""),
            f"{100 * metrics['accuracy']:.1f}" + ("" if is_reference else _difference(metrics["accuracy"], ref_metrics.get("accuracy"))),
            f"{100 * metrics['macro_f1']:.1f}" + ("" if is_reference else _difference(metrics["macro_f1"], ref_metrics.get("macro_f1"))),
            f"{human_count(cost['trainable_params'])} ({percent(share)})",
            human_bytes(cost["optimizer_state_bytes"]),
            human_bytes(cost["peak_memory_bytes"]),
            f"{cost['train_seconds']:.1f}",
            f"{cost['train_tokens_per_second']:.0f}",
            human_bytes(cost["checkpoint_bytes"]),
            f"{cost['inference_ms_per_example']:.2f}",
        )
    return table


def _title(results: dict[str, Any]) -> str:
    study = results["study"]
    sizes = study["task"]["sizes"]
    budget = study["budget"]
    steps = f"{budget['max_steps']} steps" if budget.get("max_steps") else f"{budget['epochs']} epochs"
    return (f"{study['model']} on {study['task']['name']} (train {sizes['train']}, validation {sizes['validation']}, "
            f"test {sizes['test']}; {steps}, batch {budget['batch_size']}, seed {study['seed']}) — test metrics")


def print_table(results: dict[str, Any], console: Console | None = None) -> None:
    (console or Console()).print(comparison_table(results))
