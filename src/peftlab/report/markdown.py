"""The Markdown summary of a study (for READMEs, pull requests and papers): tables and PNG figures.

Strings from the user or the data are escaped for Markdown and HTML (a Markdown renderer passes raw HTML through),
so a hostile label or model name renders as text.
"""

from __future__ import annotations

import html
import re
from typing import Any

from peftlab.report import charts as chart_module
from peftlab.report.charts import CHART_TITLES
from peftlab.report.summary import ReportInputs, environment_rows, format_value, headline, recommendation, verdict_text
from peftlab.report.tables import ReportTable, report_tables


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


def report_table(report: ReportTable, always: bool = False) -> list[str]:
    """A report table's lines: its title and legend, the table (a failed row's message after its label), then
    its notes; only the notes when it has no rows, unless ``always``."""
    out = []
    if report.shown_rows or always:
        columns = report.shown_columns
        rows = [[row.label, *(row.cells.get(column.key, "-") for column in columns[1:])] if row.status == "ok"
                else [row.label, row.message] for row in report.shown_rows]
        out += [md(f"{report.title}. {report.legend}" if report.legend else report.title), "",
                table([column.title for column in columns], rows), ""]
    for note in report.notes:
        out += [md(note), ""]
    return out


def build_markdown(inputs: ReportInputs, figure_folder: str = "figures") -> tuple[str, dict[str, bytes]]:
    """The Markdown text and its figures (file name -> PNG bytes, linked as FIGURE_FOLDER/<name>.png)."""
    results = inputs.results
    study = results["study"]
    figures = {}
    for name, figure in chart_module.report_charts(results, inputs.diagnosis, foreground="black").items():
        if figure is not None:
            figures[f"{name}.png"] = chart_module.png(figure)
    out = [f"# peftlab report: {md(study.get('model'))} on {md((study.get('task') or {}).get('name', study.get('data')))}", ""]
    advice, verdict = recommendation(inputs.diagnosis), verdict_text(results)
    if verdict:  # what the runs measured comes first; the advisor's prediction follows
        out += [f"**{md(verdict[0])}**", ""] + [f"- {md(reason)}" for reason in verdict[1]]
        out += [f"- To do: {md(item)}" for item in verdict[2]] + [""]
    if advice:
        label = "Advisor's prediction" if verdict else "Recommendation"
        out += [f"**{label}: {md(advice[0])}**", ""] + [f"- {md(reason)}" for reason in advice[1]] + [""]
    else:
        out += [f"No recommendation: {md(inputs.diagnosis_note or 'the diagnosis has none')}.", ""]
    tables = report_tables(results)
    out += [md(headline(results)), "", "## Comparison", ""] + report_table(tables["comparison"], always=True)
    for name in ("tuning", "seeds", "overfitting", "estimate"):
        out += report_table(tables[name])
    if "train_sizes" in tables:  # --train-sizes
        out += ["## Training-set size", ""] + report_table(tables["train_sizes"], always=True)
        for name, sized in tables.items():
            if name.startswith("comparison_n"):
                out += report_table(sized)
    if tables["robustness"].shown:
        out += ["## Robustness", ""] + report_table(tables["robustness"])
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
