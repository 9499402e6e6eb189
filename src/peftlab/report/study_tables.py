"""Terminal tables for a study's seeds (mean ± std, 95% CI, significance against full) and its tuning."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from peftlab.report.table import quality_metrics
from peftlab.study.tuning import objective


def _points(summary: dict | None) -> str:
    if not summary or summary.get("mean") is None:
        return "-"
    text = f"{100 * summary['mean']:.1f}"
    if summary.get("std") is not None:
        low, high = summary["ci95"]
        text += f" ± {100 * summary['std']:.1f} [{100 * low:.1f}–{100 * high:.1f}]"
    return text


def _versus_full(summary: dict | None) -> str:
    test = (summary or {}).get("vs_full")
    if not test:
        return "-"
    verdict = "significant" if test["significant"] else "not significant"
    return f"{100 * test['difference']:+.1f} pts, p={test['p_value']:.3f} ({verdict})"


def seeds_table(results: dict[str, Any]) -> Table | None:
    aggregates = results.get("aggregates")
    if not aggregates:
        return None
    (first, first_name), (second, second_name) = quality_metrics(results)
    first_name, second_name = (name.replace(" (Δ pts)", "") for name in (first_name, second_name))
    table = Table("method", "runs ok", f"{first_name} mean ± std [95% CI]", "vs full (Welch t)",
                  f"{second_name} mean ± std [95% CI]", "vs full (Welch t)", box=box.SIMPLE_HEAD, title_justify="left",
                  title=f"over {results['study'].get('seeds')} seeds: test metrics in %")
    for method, entry in aggregates.items():
        table.add_row(method, f"{entry['runs'] - entry['failed']}/{entry['runs']}", _points(entry[first]),
                      _versus_full(entry[first]), _points(entry[second]), _versus_full(entry[second]))
    return table


def _trial_score(trial: dict) -> str:
    key = objective(trial)
    value = trial["best_validation"][key]
    return f"{100 * value:.1f}" if key == "accuracy" else f"{key} {value:.3g}"


def tuning_table(results: dict[str, Any]) -> Table | None:
    tuning = results.get("tuning")
    if not tuning:
        return None
    ratio = tuning.get("cost_vs_one_pass")
    table = Table("method", "chosen lr", "trials: lr → best validation score (epochs trained, status)", "tuning s",
                  box=box.SIMPLE_HEAD, title_justify="left",
                  title=f"--tune lr: {tuning['seconds']:.0f} s of tuning"
                        + (f" = {ratio:.2f}× one untuned pass ({tuning['one_pass_seconds']:.0f} s)" if ratio else ""))
    for method, entry in tuning["methods"].items():
        trials = "; ".join(
            f"{t['learning_rate']:g} → " + (_trial_score(t) if t.get("best_validation") else "-")
            + f" ({t['epochs_trained']}, {t['status']})" for t in entry["trials"])
        chosen = entry.get("chosen_learning_rate")
        table.add_row(method, "-" if chosen is None else f"{chosen:g}", trials, f"{entry['seconds']:.1f}")
    return table


def print_study_tables(results: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console()
    for table in (tuning_table(results), seeds_table(results)):
        if table is not None:
            console.print(table)
