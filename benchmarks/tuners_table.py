"""The measured table of a study's methods for docs/METHODS.md: quality, trainable parameters, peak memory, train
time and checkpoint size per run, and on which Pareto fronts (quality against each cost) each method sits.

    python benchmarks/tuners_table.py OUT            # OUT: a `peftlab compare` study folder, finished or running

The fronts are the report's (`peftlab.report.charts.pareto_frontier`, the dashed line of its Pareto charts) over
the trained methods' test quality; zero-shot, which trains nothing, is listed but on no front.
"""

from __future__ import annotations

import sys

from peftlab import load_study
from peftlab.report.charts import PARETO_AXES, pareto_frontier
from peftlab.report.cells import human_bytes, human_count
from peftlab.report.tables import headline_metric

FRONTS = {"pareto_params": "params", "pareto_memory": "memory", "pareto_time": "time",
          "pareto_checkpoint": "checkpoint"}


def fronts(runs: list[dict], metric: str) -> dict[str, list[str]]:
    """Run key -> the costs on whose Pareto front (against test quality) that run sits."""
    on: dict[str, list[str]] = {run["run_key"]: [] for run in runs}
    for chart, short in FRONTS.items():
        key = PARETO_AXES[chart][0]
        measured = [run for run in runs if run.get("cost", {}).get("train_steps")
                    and isinstance(run["cost"].get(key), (int, float))]
        for i in pareto_frontier((run["cost"][key], run["metrics"][metric]) for run in measured):
            on[measured[i]["run_key"]].append(short)
    return on


def table(out: str) -> str:
    results = load_study(out)
    metric, words = headline_metric(results)
    runs = [run for run in results["runs"] if run["status"] == "ok"]
    on = fronts(runs, metric)
    lines = [f"| method | test {words} | macro F1 | trainable params | peak memory | train s | checkpoint | Pareto fronts |",
             "|---|---|---|---|---|---|---|---|"]
    for run in sorted(runs, key=lambda r: -r["metrics"][metric]):
        cost, metrics = run["cost"], run["metrics"]
        f1 = metrics.get("macro_f1")
        lines.append(" | ".join([
            f"| {run['method']}", f"{100 * metrics[metric]:.1f}", "-" if f1 is None else f"{100 * f1:.1f}",
            human_count(cost["trainable_params"]), human_bytes(cost["peak_memory_bytes"]),
            f"{cost['train_seconds']:.0f}", "-" if cost.get("checkpoint_bytes") is None else human_bytes(cost["checkpoint_bytes"]),
            ", ".join(on[run["run_key"]]) or "-"]) + " |")
    for run in results["runs"]:
        if run["status"] != "ok":
            lines.append(f"| {run['method']} | {run['status']}: {run.get('reason', '')[:120]} |||||||")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python benchmarks/tuners_table.py OUT")
    print(table(sys.argv[1]))
