"""Reporting: the terminal table (and later HTML/Markdown reports)."""

from peftlab.report.table import comparison_table, print_table

__all__ = ["comparison_table", "print_table"]
