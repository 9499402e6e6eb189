"""The report of every kind of study: multiple-choice and generation studies with robustness on (every run's
robustness record skipped, with its reason), runs whose estimate was skipped or failed or whose latency was not
measured; each table defined once (peftlab.report.tables) and rendered the same in the terminal, HTML, Markdown
and CSV."""

from __future__ import annotations

import csv
import io
import json
import re
from html import escape
from pathlib import Path

from report_data import results_json
from rich.console import Console

from peftlab.report import print_table
from peftlab.report.markdown import md
from peftlab.report.tables import report_tables
from peftlab.report.write import write_report
from peftlab import CompareConfig, compare
from conftest import FIXED_RATES

SRC = Path(__file__).resolve().parents[1] / "src"


def terminal(results: dict) -> str:
    console = Console(record=True, width=250)
    print_table(results, console)
    return console.export_text()


def every_format(run_dir: Path) -> tuple[str, str, list[dict]]:
    """report.html, report.md and the rows of report.csv of a study folder, rebuilt from its results.json."""
    html = write_report(run_dir).read_text()
    markdown = write_report(run_dir, format="md").read_text()
    rows = list(csv.DictReader(io.StringIO(write_report(run_dir, format="csv").read_text())))
    return html, markdown, rows


def section(html: str, name: str) -> str:
    return html.split(f'<section id="{name}">')[1].split("</section>")[0]


def test_multiple_choice_and_generation_studies_say_why_robustness_was_skipped(tiny_llama_dir, colour_bigbench,
                                                                               colour_jsonl, tmp_path):
    common = dict(model=str(tiny_llama_dir), max_train_examples=24, max_eval_examples=6, epochs=1, batch_size=8,
                  max_length=64, method_config=None, **FIXED_RATES)  # robustness on: the default
    for kind, data, methods, quality, task in (
            ("multiple-choice", colour_bigbench, ["lora"], "accuracy", {"task": "multiple-choice"}),
            ("generation", colour_jsonl, ["prompt", "lora"], "exact_match", {})):  # generation: inferred
        out = tmp_path / kind
        results = compare(CompareConfig(data=str(data), methods=methods, out=str(out), **task, **common))
        assert [run["status"] for run in results["runs"]] == ["ok"] * len(methods), results["runs"]
        reason = f"not available for task type {kind}"
        assert all(run["robustness"] == {"status": "skipped", "reason": reason} for run in results["runs"])
        note = f"robustness skipped: {reason} ({', '.join(methods)})"
        # compare itself wrote report.html (a report that fails is only a logged line, so check the file)
        assert note in section((out / "report.html").read_text(), "robustness")

        html, markdown, rows = every_format(out)
        first = results["runs"][0]
        score = f"{100 * first['metrics'][quality]:.1f}"
        comparison = html.split('id="comparison-table"')[1].split("</table>")[0]
        method, value = first["method"], first["metrics"][quality]
        assert f'<tr><td data-sort="{method}">{method}</td><td data-sort="{value!r}">{score}</td>' in comparison
        robustness = section(html, "robustness")
        assert f'<p class="note">{note}</p>' in robustness and "<table" not in robustness  # nothing was measured
        assert f"## Robustness\n\n{md(note)}\n" in markdown
        assert f"| {first['method']} | {score} |" in markdown
        assert [(row["method"], row["robustness_status"], row["robustness_reason"]) for row in rows] == [
            (method, "skipped", reason) for method in methods]
        assert rows[0][quality] == repr(first["metrics"][quality]) and rows[0]["robust_clean_accuracy"] == ""
        text = terminal(results)
        assert note in text and re.search(rf"{first['method']} +│ +{re.escape(score)} ", text), text
        assert ("exact match (Δ pts)" in text) == (kind == "generation")


def test_skipped_and_failed_estimates_and_unmeasured_latency_are_shown_with_their_reasons(tmp_path):
    results = results_json()
    full, lora, head, _ = results["runs"]
    full["estimate"] = {"status": "skipped", "reason": "model_type 'distilbert' is not modelled"}
    lora["estimate"] = {"status": "failed", "reason": "ValueError: no FLOPs counted"}  # head's: an old ok record
    head["cost"]["inference_ms_per_example"] = None  # the latency probe did not measure it
    (tmp_path / "results.json").write_text(json.dumps(results))

    text = terminal(results)
    assert "estimate skipped: model_type 'distilbert' is not modelled (full)" in text
    assert re.search(r"lora +failed: ValueError: no FLOPs counted", text)
    assert re.search(r"head +800\.0 MB +400\.0 MB +2\.0 +2\.0 +1\.00", text), text  # measured vs estimated
    assert re.search(r"│ head +│ +65\.0 \(-17\.0\) .*│ +3\.2 KB │ +- │", text)  # latency: "-"
    assert re.search(r"│ lora +│ +80\.0 \(-2\.0\) .*│ +80\.0 KB │ +2\.50 │", text)

    html, markdown, rows = every_format(tmp_path)
    estimate = html.split('id="estimate-table"')[1].split("</section>")[0]
    assert '<tr class="failed"><td data-sort="lora">lora</td><td colspan="5">failed: ValueError: no FLOPs counted' \
           in estimate
    assert '<td data-sort="head">head</td><td data-sort="800000000.0">800.0 MB</td>' in estimate
    assert '<p class="note">estimate skipped: model_type &#x27;distilbert&#x27; is not modelled (full)</p>' in estimate
    assert "full</td><td data-sort=\"1400000000.0\">" not in estimate  # a skipped estimate is a note, not a row
    head_row = re.search(r'<tr><td data-sort="head">head</td>.*?</tr>', html).group(0)
    assert head_row.endswith('<td data-sort="3200.0">3.2 KB</td><td data-sort="-">-</td></tr>')

    assert "estimate skipped: model\\_type &#x27;distilbert&#x27; is not modelled (full)" in markdown
    assert "| lora | failed: ValueError: no FLOPs counted |" in markdown
    assert "| head | 800.0 MB | 400.0 MB | 2.0 | 2.0 | 1.00 |" in markdown
    assert "| 3.2 KB | \\- |" in markdown  # head's latency

    by_method = {row["method"]: row for row in rows}
    assert (by_method["full"]["estimate_status"], by_method["full"]["estimate_reason"]) == (
        "skipped", "model_type 'distilbert' is not modelled")
    assert by_method["lora"]["estimate_status"] == "failed" and by_method["lora"]["flops_ratio"] == ""
    assert by_method["head"]["estimate_status"] == "ok" and by_method["head"]["flops_ratio"] == "1.0"
    assert by_method["head"]["inference_ms_per_example"] == ""
    assert by_method["lora"]["inference_ms_per_example"] == "2.5"
    assert by_method["ia3"]["status"] == "failed" and by_method["ia3"]["estimate_status"] == ""


def test_each_table_is_defined_once_and_every_format_shows_its_cells(tmp_path):
    """Every formatted cell of every table definition is in the terminal, the HTML page and the Markdown summary;
    every raw value of a per-run table is in the CSV."""
    results = results_json()
    results["study"]["seeds"] = 1  # a seeds and a tuning table too, so every table is rendered
    results["aggregates"] = {"full": {"runs": 1, "failed": 0, "accuracy": {"n": 1, "mean": 0.82, "std": None},
                                      "macro_f1": {"n": 1, "mean": 0.81, "std": None}}}
    trial = {"learning_rate": 0.002, "best_validation": {"accuracy": 0.8, "loss": 0.4}, "evaluations": 2,
             "status": "ok"}
    results["tuning"] = {"seconds": 42.0, "methods": {"lora": {"chosen_learning_rate": 0.002, "seconds": 42.0,
                                                               "trials": [trial]}}}
    (tmp_path / "results.json").write_text(json.dumps(results))
    tables = report_tables(results)
    assert list(tables) == ["comparison", "tuning", "seeds", "overfitting", "robustness", "estimate"]
    text = terminal(results)
    html, markdown, rows = every_format(tmp_path)
    for table in tables.values():
        assert table.shown_rows, table.name
        title = table.title[:60]  # the terminal wraps a long title
        assert title in text and escape(title) in html and md(title) in markdown, table.name
        for row in table.shown_rows:
            cells = [row.label, *row.cells.values()] if row.status == "ok" else [row.label, row.message]
            for cell in cells:
                assert cell in text, (table.name, cell)
                assert f">{escape(cell)}</td>" in html, (table.name, cell)
                assert f"| {md(cell)} |" in markdown, (table.name, cell)
    for table in (tables["comparison"], tables["robustness"], tables["estimate"]):
        for row in table.rows:
            for key, value in row.values.items():
                assert rows[row.key][key] == ("" if value is None else str(value)), (table.name, key)
