"""The report's tables in the terminal (rich): the verdict's lines, the comparison, then tuning, seeds, robustness and the estimate
check when the study has them; each table is defined in peftlab.report.tables, this module only lays it out.

Cells are rich ``Text``, never markup, so a method name or reason with brackets prints as it is.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from peftlab.report.summary import verdict_text
from peftlab.report.tables import ReportTable, comparison, report_tables, robustness

BOXES = {"comparison": box.HEAVY_HEAD}  # the main table framed; the others plain (box.SIMPLE_HEAD)


def rich_table(table: ReportTable) -> Table:
    """A report table as a rich Table: ok rows cell by cell, a failed row's message (red) after its label."""
    columns = table.shown_columns
    out = Table(title=Text(table.title), title_justify="left", box=BOXES.get(table.name, box.SIMPLE_HEAD))
    for column in columns:
        out.add_column(column.title, justify=column.align)
    for row in table.shown_rows:
        if row.status == "ok":
            out.add_row(Text(row.label), *(Text(row.cells.get(column.key, "-")) for column in columns[1:]))
        else:
            out.add_row(Text(row.label), Text(row.message, style="red"), *[""] * (len(columns) - 2))
    return out


def print_report_table(table: ReportTable, console: Console) -> None:
    """The table when it has rows, then its notes (skipped records, with their reasons)."""
    if table.shown_rows:
        console.print(rich_table(table))
    for note in table.notes:
        console.print(Text(note))


def comparison_table(results: dict[str, Any]) -> Table:
    return rich_table(comparison(results))


def print_verdict(results: dict[str, Any], console: Console) -> None:
    """The verdict line in bold, its reasons and what to do (nothing for results from before verdicts)."""
    verdict = verdict_text(results)
    if verdict is None:
        return
    line, reasons, todo = verdict
    console.print(Text(line, style="bold"))
    for reason in reasons:
        console.print(Text(f"  - {reason}"))
    for item in todo:
        console.print(Text(f"  to do: {item}"))


def print_table(results: dict[str, Any], console: Console | None = None) -> None:
    """The verdict, then the comparison table, then tuning, seeds, robustness and the estimate check where the
    study has them."""
    console = console or Console()
    print_verdict(results, console)
    tables = report_tables(results)
    console.print(rich_table(tables.pop("comparison")))
    for table in tables.values():
        print_report_table(table, console)


def robustness_table(results: dict[str, Any]) -> Table | None:
    """Per method: clean accuracy, accuracy per perturbation family, mean robust drop, attack success rates;
    None when no run has a measured or failed robustness record."""
    table = robustness(results)
    return rich_table(table) if table.shown_rows else None


def print_robustness_table(results: dict[str, Any], console: Console | None = None) -> None:
    print_report_table(robustness(results), console or Console())
