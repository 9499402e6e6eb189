"""The self-contained HTML report of a study: one file, no network, readable on light and dark backgrounds.

Everything is inline: the CSS, one small script (sorting the tables; it holds no data) and the charts as SVG
(see peftlab.report.charts). Every string from results.json or diagnosis.json passes through ``escape`` before
it reaches the page (model names, column names, labels and reasons come from the user and the data), and a
Content-Security-Policy allows only the report's own script, by its hash: an injected <script> or event
handler would not run even if a string escaped escaping.
"""

from __future__ import annotations

import base64
import hashlib
import html
from typing import Any

from peftlab.report import charts as chart_module
from peftlab.report.charts import CHART_TITLES
from peftlab.report.summary import (
    ReportInputs,
    environment_rows,
    format_value,
    headline,
    recommendation,
    verdict_text,
)
from peftlab.report.tables import ReportTable, report_tables, table_title

SORT_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  var headers = table.querySelectorAll("thead th");
  headers.forEach(function (header, column) {
    var button = header.querySelector("button");
    if (!button) { return; }
    button.addEventListener("click", function () {
      var ascending = header.getAttribute("aria-sort") !== "ascending";
      headers.forEach(function (other) { other.removeAttribute("aria-sort"); });
      header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = sortKey(a, column), y = sortKey(b, column);
        if (x === null || y === null) { return (x === null) - (y === null); }
        var order = (typeof x === "number" && typeof y === "number") ? x - y : String(x).localeCompare(String(y));
        return ascending ? order : -order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
function sortKey(row, column) {
  var cell = row.cells[column];
  if (!cell || !cell.hasAttribute("data-sort")) { return null; }
  var text = cell.getAttribute("data-sort"), number = parseFloat(text);
  return /^[-+]?[.]?[0-9]/.test(text) && !isNaN(number) ? number : text;
}
"""

STYLE = """
:root { color-scheme: light dark; --bg: #ffffff; --fg: #1b1d21; --muted: #5b6270; --rule: #d9dce1;
  --stripe: #f4f5f7; --accent: #0b62c4; --bad: #b3261e; }
@media (prefers-color-scheme: dark) {
  :root { --bg: #15171b; --fg: #e6e8eb; --muted: #a2a9b5; --rule: #363a42; --stripe: #1d2025; --accent: #7db4f5;
    --bad: #f2877e; }
}
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1180px; padding: 24px; background: var(--bg); color: var(--fg);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
h1 { font-size: 1.6em; margin: 0 0 4px; } h2 { margin-top: 2em; border-bottom: 1px solid var(--rule); }
h3 { margin-bottom: 0.3em; }
nav a, a { color: var(--accent); } nav { margin: 8px 0 16px; } nav a { margin-right: 14px; }
.muted, caption, figcaption { color: var(--muted); font-size: 0.9em; }
.decision { font-size: 1.15em; font-weight: 600; } .headline { font-size: 1.05em; }
.note { border-left: 3px solid var(--rule); padding: 2px 10px; color: var(--muted); }
table { border-collapse: collapse; margin: 8px 0 12px; font-variant-numeric: tabular-nums; }
caption { text-align: left; padding-bottom: 6px; caption-side: top; }
th, td { padding: 4px 10px; border-bottom: 1px solid var(--rule); text-align: right; vertical-align: top; }
th:first-child, td:first-child, table.kv td, table.kv th, table.text td, table.text th { text-align: left; }
tbody tr:nth-child(even) { background: var(--stripe); }
tr.reference td { font-weight: 600; } tr.failed td, .failed { color: var(--bad); text-align: left; }
th button { font: inherit; font-weight: 600; color: inherit; background: none; border: 0; padding: 0; cursor: pointer; }
th[aria-sort="ascending"] button::after { content: " \\25B2"; } th[aria-sort="descending"] button::after { content: " \\25BC"; }
.scroll { overflow-x: auto; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(440px, 1fr)); gap: 18px; }
figure.chart { margin: 0; color: var(--fg); } figure.chart svg { width: 100%; height: auto; display: block; }
pre { background: var(--stripe); padding: 10px 12px; overflow-x: auto; border-radius: 4px; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 0.92em; }
"""


def escape(value: Any) -> str:
    """Text for HTML element content and attribute values (quotes escaped too)."""
    return html.escape(str(value), quote=True)


def build_html(inputs: ReportInputs) -> str:
    """The whole report as one HTML document."""
    results, diagnosis = inputs.results, inputs.diagnosis
    figures = chart_module.report_charts(results, diagnosis)
    study = results["study"]
    task_name = (study.get("task") or {}).get("name", study.get("data"))
    title = f"peftlab report: {study.get('model')} on {task_name}"
    tables = report_tables(results)
    sections = [
        ("decision", "Decision", _decision(inputs)),
        ("comparison", "Comparison", _comparison(tables)),
        *([("train-sizes", "Training-set size", _train_sizes(tables, figures))] if "train_sizes" in tables else []),
        ("pareto", "Quality vs cost", _charts(figures, ("pareto_params", "pareto_memory", "pareto_time",
                                                        "pareto_checkpoint", "rank"), _PARETO_NOTE)),
        ("curves", "Learning curves", _charts(figures, ("train_loss", "validation"), "")),
        ("overfitting", "Overfitting and forgetting", _charts(figures, ("overfitting",), _OVERFITTING_NOTE)),
        ("robustness", "Robustness", _robustness(tables["robustness"], figures)),
        ("diagnosis", "Diagnosis", _diagnosis(inputs, figures)),
        ("environment", "Environment and reproduction", _environment(results)),
    ]
    nav = "".join(f'<a href="#{anchor}">{escape(heading)}</a>' for anchor, heading, _ in sections)
    body = "".join(f'<section id="{anchor}"><h2>{escape(heading)}</h2>{content}</section>'
                   for anchor, heading, content in sections)
    script_hash = base64.b64encode(hashlib.sha256(SORT_SCRIPT.encode()).digest()).decode()
    policy = f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'sha256-{script_hash}'"
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{escape(policy)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<header><h1>{escape(title)}</h1><p class=\"muted\">{escape(table_title(results))}</p>"
        f"<nav>{nav}</nav></header><main>{body}</main>"
        f'<footer class="muted"><p>Written by peftlab from results.json; every number is measured in this study '
        f"(docs/MEASUREMENT.md).</p></footer><script>{SORT_SCRIPT}</script></body></html>\n"
    )


_OVERFITTING_NOTE = ("Train: the metric on a sample of each run's own training set, as large as the test set; the gap "
                     "to test is what the run overfit. Right: how much the model's representation of general English "
                     "sentences still matches the base model's (linear CKA; lower = more changed, more forgotten).")
_PARETO_NOTE = ("Each point is one method; the dashed line is the Pareto frontier: the methods no other method "
                "beats on both accuracy and that cost (ringed). Higher and further left is better.")


def _decision(inputs: ReportInputs) -> str:
    advice = recommendation(inputs.diagnosis)
    parts = []
    verdict = verdict_text(inputs.results)
    if verdict:  # what the runs measured comes first; the advisor's prediction follows
        line, reasons, todo = verdict
        parts.append(f'<p class="decision">{escape(line)}</p>')
        items = reasons + [f"To do: {item}" for item in todo]
        if items:
            parts.append("<ul class=\"reasons\">" + "".join(f"<li>{escape(r)}</li>" for r in items) + "</ul>")
    if advice:
        line, reasons = advice
        parts.append(f'<p class="decision">Advisor\'s prediction: {escape(line)}</p>' if verdict else
                     f'<p class="decision">Recommendation: {escape(line)}</p>')
        if reasons:
            parts.append("<ul class=\"reasons\">" + "".join(f"<li>{escape(r)}</li>" for r in reasons) + "</ul>")
    else:
        parts.append(f'<p class="note">No recommendation: {escape(inputs.diagnosis_note or "the diagnosis has none")}.</p>')
    parts.append(f'<p class="headline">{escape(headline(inputs.results))}</p>')
    check = inputs.results.get("advisor_check")
    if check is not None:
        parts.append("<h3>Advisor check</h3>" + (_kv_table(check.items()) if isinstance(check, dict)
                                                  else f"<p>{escape(format_value(check))}</p>"))
    return "".join(parts)


def _comparison(tables: dict[str, ReportTable]) -> str:
    """The comparison table, then tuning, seeds, overfitting and the estimate check where the study has them."""
    return report_table_html(tables["comparison"], always=True) + "".join(
        report_table_html(tables[name]) for name in ("tuning", "seeds", "overfitting", "estimate") if tables[name].shown)


def _train_sizes(tables: dict[str, ReportTable], figures: dict[str, Any]) -> str:
    """--train-sizes: quality against training-set size per method (table with the crossovers, chart), then the
    comparison at each smaller size."""
    return (report_table_html(tables["train_sizes"], always=True)
            + _charts(figures, ("train_sizes",), "Error bars: 95% intervals over seeds, where there are seeds.")
            + "".join(report_table_html(table) for name, table in tables.items() if name.startswith("comparison_n")))


def report_table_html(table: ReportTable, always: bool = False, sortable: bool = True) -> str:
    """A report table, sortable by any column (numbers by their raw value; failed rows, which span the table
    with their reason, stay last), then its notes; only the notes when it has no rows, unless ``always``."""
    notes = "".join(f'<p class="note">{escape(note)}</p>' for note in table.notes)
    if not table.shown_rows and not always:
        return notes
    columns = table.shown_columns
    head = "".join(f'<th scope="col"><button type="button">{escape(column.title)}</button></th>' if sortable
                   else f'<th scope="col">{escape(column.title)}</th>' for column in columns)
    rows = []
    for row in table.shown_rows:
        label = f'<td data-sort="{escape(row.label)}">{escape(row.label)}</td>'
        if row.status != "ok":
            rows.append(f'<tr class="failed">{label}<td colspan="{len(columns) - 1}">{escape(row.message)}</td></tr>')
            continue
        texts = [row.cells.get(column.key, "-") for column in columns[1:]]
        cells = "".join(f'<td data-sort="{escape(_sort_value(row.values.get(column.key), text))}">{escape(text)}</td>'
                        for column, text in zip(columns[1:], texts))
        row_class = ' class="reference"' if row.reference else ""
        rows.append(f"<tr{row_class}>{label}{cells}</tr>")
    caption = f"{table.title}. {table.legend + ' ' if table.legend else ''}" + ("Click a column to sort." if sortable else "")
    table_class = ' class="sortable"' if sortable else ""
    return (f'<div class="scroll"><table{table_class} id="{escape(table.name)}-table"><caption>{escape(caption)}'
            f"</caption><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>{notes}")


def _sort_value(value: Any, text: str) -> str:
    """What a cell sorts by: its raw number, else its text."""
    return repr(float(value)) if isinstance(value, (int, float)) and not isinstance(value, bool) else text


def _charts(figures: dict[str, Any], names: tuple[str, ...], note: str) -> str:
    drawn = []
    for name in names:
        figure = figures.get(name)
        if figure is None and name in chart_module.OPTIONAL_CHARTS:
            continue
        if figure is None:
            drawn.append(f'<p class="note">{escape(CHART_TITLES[name])}: nothing to draw (no finished run has '
                         "these numbers).</p>")
            continue
        drawn.append(f'<figure class="chart" data-chart="{escape(name)}" role="img" '
                     f'aria-label="{escape(CHART_TITLES[name])}">{chart_module.svg(figure, name)}'
                     f"<figcaption>{escape(CHART_TITLES[name])}</figcaption></figure>")
    return (f'<p class="muted">{escape(note)}</p>' if note else "") + f'<div class="charts">{"".join(drawn)}</div>'


def _robustness(table: ReportTable, figures: dict[str, Any]) -> str:
    if not table.shown:
        return ('<p class="note">Robustness was not measured in this study (it ran with --no-robustness); '
                "`peftlab robustness OUT` measures it on the saved runs.</p>")
    charts = _charts(figures, ("robustness_accuracy", "attacks"), "Error bars: 95% confidence intervals.")
    return report_table_html(table) + (charts if table.shown_rows else "")  # every record skipped: the notes say why


def _diagnosis(inputs: ReportInputs, figures: dict[str, Any]) -> str:
    diagnosis = inputs.diagnosis
    if diagnosis is None:
        return f'<p class="note">No diagnosis: {escape(inputs.diagnosis_note)}.</p>'
    parts = []
    vocabulary = diagnosis.get("vocabulary")
    if isinstance(vocabulary, dict):
        reference = vocabulary.get("reference") if isinstance(vocabulary.get("reference"), dict) else {}
        keys = [key for key in dict.fromkeys([*vocabulary, *reference]) if key != "reference"]
        parts.append(_plain_table(["signal", "this data", "reference"],
                                  [[key, format_value(vocabulary.get(key)), format_value(reference.get(key))]
                                   for key in keys],
                                  "Vocabulary: tokens per word (fertility), share of unknown tokens, share of words "
                                  "split into 3 or more tokens; the reference is text close to pretraining."))
    shift = diagnosis.get("shift")
    if isinstance(shift, dict):
        parts.append("<h3>Distribution shift</h3>" + _kv_table(shift.items()))
    probe = diagnosis.get("probe")
    if isinstance(probe, dict):
        parts.append("<h3>Linear probe on the frozen base</h3>" + _kv_table(probe.items()))
    spectrum = diagnosis.get("spectrum")
    if isinstance(spectrum, dict) and spectrum:
        parts.append("<h3>Low-rank structure of the full update</h3>" + _spectrum_table(spectrum))
        parts.append(_charts(figures, ("spectrum",), "Singular values of W_ft − W_0 per layer type (normalised to "
                                                      "the largest) or, where absent, the energy captured per rank."))
    known = {"vocabulary", "shift", "probe", "spectrum", "recommendation"}
    extra = [(key, value) for key, value in diagnosis.items() if key not in known]
    if extra:
        parts.append("<h3>Other signals</h3>" + _kv_table(extra))
    return "".join(parts) or '<p class="note">The diagnosis file holds no signals.</p>'


def _spectrum_table(spectrum: dict[str, Any]) -> str:
    ranks = chart_module.ENERGY_RANKS
    rows = []
    for layer, entry in spectrum.items():
        entry = entry if isinstance(entry, dict) else {}
        energy = entry.get("energy_at_rank") if isinstance(entry.get("energy_at_rank"), dict) else {}
        rows.append([layer, format_value(entry.get("effective_rank_90")),
                     *[f"{100 * energy[rank]:.1f}" if isinstance(energy.get(rank), (int, float)) else "-"
                       for rank in ranks]])
    return _plain_table(["layer type", "effective rank (90% energy)", *[f"energy % at rank {r}" for r in ranks]],
                        rows, "Effective rank: the smallest rank whose singular values hold 90% of the update's "
                              "energy (sum of squared singular values).")


def _environment(results: dict[str, Any]) -> str:
    study = results["study"]
    command = study.get("command")
    parts = [f"<p>Reproduce this study:</p><pre><code>{escape(command)}</code></pre>" if command else
             '<p class="note">The study recorded no command.</p>']
    parts.append(_kv_table(environment_rows(results)))
    settings = [[run["method"], run.get("status", "-"), format_value(run.get("config") or {}) or "-"]
                for run in results["runs"]]
    parts.append(_plain_table(["method", "status", "settings"], settings, "Per-method settings (learning rate and "
                                                                            "method options) as trained.", text=True))
    return "".join(parts)


def _kv_table(items) -> str:
    rows = "".join(f'<tr><th scope="row">{escape(key)}</th><td>{escape(format_value(value))}</td></tr>'
                   for key, value in items)
    return f'<table class="kv"><tbody>{rows}</tbody></table>'


def _plain_table(columns: list[str], rows: list[list[Any]], caption: str, text: bool = False) -> str:
    """A table of strings (the diagnosis' and the environment's); ``text``: every column left-aligned."""
    head = "".join(f'<th scope="col">{escape(c)}</th>' for c in columns)
    body = "".join(
        "<tr>" + "".join(f'<td data-sort="{escape(cell)}">{escape(cell)}</td>' for cell in row)
        + (f'<td colspan="{len(columns) - len(row)}"></td>' if len(row) < len(columns) else "") + "</tr>"
        for row in rows)
    table_class = ' class="text"' if text else ""
    return (f'<div class="scroll"><table{table_class}><caption>{escape(caption)}'
            f"</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>")
