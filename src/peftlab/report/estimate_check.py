"""The terminal table that puts each run's measured peak memory and FLOPs next to the analytic estimate."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.table import Table

from peftlab.report.table import human_bytes


def estimate_rows(results: dict[str, Any]) -> list[list[str]]:
    """Per run with an estimate: method, peak memory measured and estimated, GFLOP counted and estimated, ratio."""
    rows = []
    for run in results["runs"]:
        if run["status"] != "ok" or not run.get("estimate"):
            continue
        estimate = run["estimate"]
        counted, estimated = estimate["flops_per_step_counted"], estimate["flops_per_step_estimated"]
        rows.append([
            run["method"], human_bytes(run["cost"]["peak_memory_bytes"]), human_bytes(estimate["peak_memory_bytes"]),
            f"{counted / 1e9:.1f}", f"{estimated / 1e9:.1f}", f"{estimated / counted:.2f}" if counted else "-",
        ])
    return rows


def estimate_check_table(results: dict[str, Any]) -> Table | None:
    rows = estimate_rows(results)
    if not rows:
        return None
    table = Table("method", "peak memory measured", "estimated", "GFLOP counted", "estimated", "ratio",
                  box=box.SIMPLE_HEAD, title_justify="left",
                  title="measured vs estimated (peftlab estimate): peak memory over the run (CPU: process RSS, which "
                        "adds allocator overhead to the estimated tensor bytes), FLOPs of one forward+backward on the "
                        "first rows of the first training batch")
    for row in rows:
        table.add_row(*row)
    return table
