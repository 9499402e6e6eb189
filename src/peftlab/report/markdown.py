"""The Markdown summary of a study (for READMEs, pull requests and papers): tables and PNG figures.

Strings from the user or the data are escaped for Markdown and HTML (a Markdown renderer passes raw HTML through),
so a hostile label or model name renders as text.
"""

from __future__ import annotations

import html
import re
from typing import Any

from peftlab.report import charts as chart_module
from peftlab.report.html import CHART_TITLES
from peftlab.report.summary import ReportInputs, environment_rows, format_value, headline, recommendation
from peftlab.report.table import (
    comparison_columns,
    comparison_rows,
    robustness_cells,
    robustness_columns,
    robustness_title,
    table_title,
)


def md(value: Any) -> str:
    """Text safe in a Markdown paragraph or table cell: HTML-escaped (no raw HTML, no autolinks), the characters
    that make emphasis, code, links or cells backslashed, a leading block marker backslashed, one line."""
    text = html.escape(str(value), quote=True).replace("\r", " ").replace("\n", " ")
    text = re.sub(r"([\\`*_\[\]|~])", r"\\\1", text)
    text = re.sub(r"^(\s*)([#+-])(?=\s|$)", r"\1\\\2", text)  # a heading or list marker at the start
    return re.sub(r"^(\s*\d+)([.)])(?=\s|$)", r"\1\\\2", text)


def table(columns: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(md(c) for c in columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(md(c) for c in row + [""] * (len(columns) - len(row))) + " |" for row in rows]
    return "\n".join(lines)


def build_markdown(inputs: ReportInputs, figure_folder: str = "figures") -> tuple[str, dict[str, bytes]]:
    """The Markdown text and its figures (file name -> PNG bytes, linked as FIGURE_FOLDER/<name>.png)."""
    results = inputs.results
    study = results["study"]
    figures = {}
    for name, figure in chart_module.report_charts(results, inputs.diagnosis, foreground="black").items():
        if figure is not None:
            figures[f"{name}.png"] = chart_module.png(figure)
    out = [f"# peftlab report: {md(study.get('model'))} on {md((study.get('task') or {}).get('name', study.get('data')))}", ""]
    advice = recommendation(inputs.diagnosis)
    if advice:
        out += [f"**Recommendation: {md(advice[0])}**", ""] + [f"- {md(reason)}" for reason in advice[1]] + [""]
    else:
        out += [f"No recommendation: {md(inputs.diagnosis_note or 'the diagnosis has none')}.", ""]
    out += [md(headline(results)), "", "## Comparison", "", md(table_title(results)) + " (Δ: points vs full fine-tuning)", ""]
    rows = []
    for row in comparison_rows(results):
        if row["status"] != "ok":
            rows.append([row["method"], f"failed: {row['reason']}"])
        else:
            rows.append([row["method"] + (" (ref)" if row["reference"] else ""), *row["cells"]])
    out += [table(list(comparison_columns(results)), rows), ""]
    robust = [run for run in results["runs"] if run.get("status") == "ok" and isinstance(run.get("robustness"), dict)]
    if robust:
        has_set = any("robust_set" in run["robustness"] for run in robust)
        out += ["## Robustness", "", md(robustness_title(next((r["robustness"] for r in robust if "attacks" in r["robustness"]), {}))), ""]
        out += [table(robustness_columns(has_set), [
            [run["method"], *(robustness_cells(run["robustness"], has_set) if run["robustness"].get("status") != "failed"
                              else [f"failed: {run['robustness'].get('reason', '')}"])] for run in robust]), ""]
    out += _diagnosis(inputs)
    out += ["## Figures", ""]
    for name in figures:
        title = CHART_TITLES[name.removesuffix(".png")]
        out += [f"![{md(title)}]({figure_folder}/{name})", ""]
    command = str(study.get("command", ""))
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", command)), default=0))
    out += ["## Environment", "", "Reproduce:", "", fence, command, fence, ""]
    out += [table(["", ""], [[key, value] for key, value in environment_rows(results)]), ""]
    return "\n".join(out), figures


def _diagnosis(inputs: ReportInputs) -> list[str]:
    diagnosis = inputs.diagnosis
    if diagnosis is None:
        return ["## Diagnosis", "", f"No diagnosis: {md(inputs.diagnosis_note)}.", ""]
    out = ["## Diagnosis", ""]
    vocabulary = diagnosis.get("vocabulary")
    if isinstance(vocabulary, dict):
        reference = vocabulary.get("reference") if isinstance(vocabulary.get("reference"), dict) else {}
        keys = [key for key in dict.fromkeys([*vocabulary, *reference]) if key != "reference"]
        out += [table(["vocabulary", "this data", "reference"],
                      [[key, format_value(vocabulary.get(key)), format_value(reference.get(key))] for key in keys]), ""]
    for name in ("shift", "probe"):
        if isinstance(diagnosis.get(name), dict):
            out += [table([name, "value"], [[k, format_value(v)] for k, v in diagnosis[name].items()]), ""]
    spectrum = diagnosis.get("spectrum")
    if isinstance(spectrum, dict) and spectrum:
        out += [table(["layer type", "effective rank (90% energy)"],
                      [[layer, format_value(entry.get("effective_rank_90") if isinstance(entry, dict) else None)]
                       for layer, entry in spectrum.items()]), ""]
    return out
