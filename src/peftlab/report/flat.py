"""The report as CSV: one row per run, the raw values (no units, no formatting) of the comparison, robustness and
estimate-check tables (peftlab.report.tables), joined on the run, for spreadsheets; with --train-sizes the runs of
every size, each with its ``train_size``.

A skipped or failed record leaves its numbers empty and says why in ``<table>_status`` / ``<table>_reason``
(e.g. ``robustness_reason``: "not available for task type generation").
"""

from __future__ import annotations

import csv
import io
from typing import Any

from peftlab.report.tables import comparison, estimate_check, overfitting, robustness


def csv_columns_and_rows(results: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """The CSV's header (each table's column keys, first occurrence kept) and one dict of raw values per run. With
    --train-sizes a first column ``train_size`` and the runs of every size, the largest first."""
    regime = results.get("train_sizes")
    if not isinstance(regime, dict):
        return _columns_and_rows(results)
    header, rows = ["train_size"], []
    for size in sorted(regime["sizes"], reverse=True):
        runs = results["runs"] if size == regime["largest"] else [
            run for run in regime.get("runs", []) if run.get("train_size") == size]
        columns, sized = _columns_and_rows({**results, "runs": runs})
        header += [column for column in columns if column not in header]
        rows += [{"train_size": size, **row} for row in sized]
    return header, rows


def _columns_and_rows(results: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    tables = (comparison(results), robustness(results), overfitting(results), estimate_check(results))
    header = list(dict.fromkeys(column.key for table in tables for column in table.columns))
    values = [{row.key: row.values for row in table.rows} for table in tables]
    rows = []
    for row in tables[0].rows:  # every run
        merged: dict[str, Any] = {}
        for table_values in reversed(values):  # a key two tables share (peak memory) keeps the first one's value
            merged.update(table_values.get(row.key, {}))
        rows.append(merged)
    return header, rows


def build_csv(results: dict[str, Any]) -> str:
    """CSV text; a cell that a spreadsheet would run as a formula (=, +, -, @ first) is prefixed with '."""
    header, rows = csv_columns_and_rows(results)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _cell(value) for key, value in row.items()})
    return buffer.getvalue()


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
