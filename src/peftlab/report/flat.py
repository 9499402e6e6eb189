"""The flat comparison table as CSV: one row per run, raw numbers (no units, no formatting) for spreadsheets."""

from __future__ import annotations

import csv
import io
from typing import Any

COLUMNS = ("method", "seed", "status", "reason", "accuracy", "macro_f1", "test_loss", "validation_accuracy", "best_epoch",
           "exact_match", "normalized_match", "validation_exact_match", "test_perplexity",
           "trainable_params", "total_params", "optimizer_state_bytes", "peak_memory_bytes", "train_seconds",
           "train_tokens", "train_tokens_per_second", "train_steps", "checkpoint_bytes", "inference_ms_per_example",
           "robust_clean_accuracy", "robust_perturbed_accuracy", "robust_drop_points", "word_attack_success_rate",
           "char_attack_success_rate")


def csv_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for run in results["runs"]:
        row = {"method": run["method"], "seed": run.get("seed"), "status": run.get("status"), "reason": run.get("reason", "")}
        row.update({key: value for key, value in (run.get("metrics") or {}).items() if key in COLUMNS})
        row.update({key: value for key, value in (run.get("cost") or {}).items() if key in COLUMNS})
        robustness = run.get("robustness") if isinstance(run.get("robustness"), dict) else {}
        attacks = robustness.get("attacks") or {}
        row.update({
            "robust_clean_accuracy": robustness.get("clean_accuracy"),
            "robust_perturbed_accuracy": robustness.get("perturbed_accuracy"),
            "robust_drop_points": robustness.get("drop_points"),
            "word_attack_success_rate": (attacks.get("word_substitution") or {}).get("success_rate"),
            "char_attack_success_rate": (attacks.get("char_edit") or {}).get("success_rate"),
        })
        rows.append(row)
    return rows


def build_csv(results: dict[str, Any]) -> str:
    """CSV text; a cell that a spreadsheet would run as a formula (=, +, -, @ first) is prefixed with '."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in csv_rows(results):
        writer.writerow({key: _cell(value) for key, value in row.items()})
    return buffer.getvalue()


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
