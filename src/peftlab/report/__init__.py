"""Reporting: every table defined once (report.tables) and rendered to the terminal (report.table), the HTML page
(report.html), the Markdown summary (report.markdown) and CSV (report.flat); report.write writes the files."""

from peftlab.report.table import comparison_table, print_table

__all__ = ["comparison_table", "print_table"]
