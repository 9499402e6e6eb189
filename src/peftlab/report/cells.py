"""How a number is written in a report cell: bytes, counts, shares, points, intervals; "-" where there is none.

The leaf of report/: the table definitions (report.tables), the headline sentence and the charts format numbers
with these, so a value reads the same in the terminal, the HTML page and the Markdown summary.
"""

from __future__ import annotations

import math

MISSING = "-"


def human_bytes(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return MISSING


def human_count(value: float | None) -> str:
    if value is None:
        return MISSING
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.2f}{unit}"
    return f"{value:.0f}"


def percent(share: float) -> str:
    """A share as a plain percentage with two significant digits for small values: 100%, 1.5%, 0.0034%."""
    value = 100 * share
    if value == 0:
        return "0%"
    if value >= 10:
        return f"{value:.0f}%"
    return f"{value:.2g}%" if value >= 1e-4 else f"{value:.1e}%"


def fixed(value: float | None, digits: int) -> str:
    """A plain number with ``digits`` decimals; "-" when it was not measured (None)."""
    return MISSING if value is None else f"{value:.{digits}f}"


def points(share: float | None) -> str:
    """A share in percentage points with one decimal: 0.823 -> 82.3."""
    return MISSING if share is None else f"{100 * share:.1f}"


def difference(value: float | None, reference: float | None) -> str:
    """The difference to a reference score in points, in brackets: " (-2.0)"; empty when either is missing."""
    if value is None or reference is None:
        return ""
    return f" ({100 * (value - reference):+.1f})"


def with_interval(value: float | None, ci95: list[float] | None) -> str:
    """A share as a percentage with its 95% interval: 85.2 [82–88]."""
    if value is None:
        return MISSING
    return f"{100 * value:.1f}" + (f" [{100 * ci95[0]:.0f}–{100 * ci95[1]:.0f}]" if ci95 else "")
