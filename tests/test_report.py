"""The report builder: HTML sections, table, charts, diagnosis, escaping of hostile strings, md/csv, CLI, and the
report `compare` writes at the end of a study (on a hostile dataset)."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import logging
import re
import sys
from html.parser import HTMLParser

import pytest
from report_data import HOSTILE, diagnosis_json, hostile_csv, hostile_diagnosis, hostile_results, results_json

from peftlab.report.charts import pareto_frontier
from peftlab.report.write import write_report, write_report_safely
from conftest import FIXED_RATES

SECTIONS = ("decision", "comparison", "pareto", "curves", "overfitting", "robustness", "diagnosis", "environment")


class Page(HTMLParser):
    """Every start tag with its attributes, the text of every <script>, and the text of the whole page."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.scripts: list[str] = []
        self.text: list[str] = []
        self._in_script = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        if tag == "script":
            self.scripts.append("")

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data
        self.text.append(data)

    def all(self, tag: str, **attrs) -> list[dict]:
        return [a for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in attrs.items())]


def write(tmp_path, results, diagnosis=None, link=True, **kwargs):
    if diagnosis is not None:
        (tmp_path / "diagnosis.json").write_text(json.dumps(diagnosis))
        if link:
            results["diagnosis"] = "diagnosis.json"
    (tmp_path / "results.json").write_text(json.dumps(results))
    return write_report(tmp_path, **kwargs)


def assert_no_active_content(page: Page) -> None:
    """Only the report's own script; no element from the data; no handler or javascript: URL anywhere."""
    assert len(page.scripts) == 1 and "alert" not in page.scripts[0]
    assert not page.all("img") and not page.all("iframe") and not page.all("object")
    for tag, attrs in page.tags:
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)
            if name in ("href", "src", "action", "formaction", "xlink:href", "data"):
                assert (value or "").startswith("#"), (tag, name, value)  # links stay inside the page


def test_html_report_has_every_section_table_and_chart(tmp_path):
    path = write(tmp_path, results_json())
    assert path == tmp_path / "report.html"
    text = path.read_text()
    page = Page(text)
    assert [a["id"] for a in page.all("section")] == list(SECTIONS)
    rows = re.findall(r"<tr[^>]*>.*?</tr>", text.split('id="comparison-table"')[1].split("</table>")[0], re.S)
    assert len(rows) == 1 + 4  # header + full, lora, head, failed ia3
    assert 'class="failed"' in rows[-1] and "RuntimeError: diverged (loss nan)" in rows[-1]
    assert 'data-sort="0.82"' in rows[1] and "82.0" in rows[1] and "(ref)" in rows[1]
    assert "80.0 (-2.0)" in rows[2]  # lora's accuracy and its difference to full fine-tuning in points
    charts = [a["data-chart"] for a in page.all("figure")]
    assert charts == ["pareto_params", "pareto_memory", "pareto_time", "pareto_checkpoint", "train_loss",
                      "validation", "overfitting", "robustness_accuracy", "attacks"]
    assert text.count("<svg") == len(charts)
    # the headline sentence, with the study's own numbers
    assert "lora, reached 80.0% test accuracy against 82.0% for full fine-tuning (-2.0 points)" in text
    assert "No recommendation: no diagnosis.json in this study" in text and "No diagnosis:" in text
    assert "peftlab compare --model tiny-bert --data data.csv --out runs/x" in text
    # self-contained: nothing is fetched (SVG namespace declarations are names, not requests)
    assert not re.search(r"""(src|href|action)\s*=\s*["']?\s*(https?:|//)""", text)
    assert "@import" not in text and not re.search(r"url\((?!#)", text)  # url(#clip) is a reference in the page
    ids = [a["id"] for _, a in page.tags if "id" in a]
    assert len(ids) == len(set(ids))  # several SVGs on one page, no id shared
    # the Content-Security-Policy allows exactly the report's script
    policy = page.all("meta", **{"http-equiv": "Content-Security-Policy"})[0]["content"]
    digest = base64.b64encode(hashlib.sha256(page.scripts[0].encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in policy and "default-src 'none'" in policy
    assert "prefers-color-scheme: dark" in text and "currentColor" in text


def test_pareto_frontier_keeps_the_undominated_points_in_cost_order():
    points = [(10, 0.8), (1, 0.6), (5, 0.7), (6, 0.65), (1, 0.5), (20, 0.8)]
    assert pareto_frontier(points) == [1, 2, 0]
    assert pareto_frontier([(1, 0.5)]) == [0]


def test_diagnosis_is_rendered_when_present(tmp_path):
    text = write(tmp_path, results_json(), diagnosis_json()).read_text()
    page = Page(text)
    assert "Recommendation: Parameter-efficient fine-tuning: lora at rank 8; train the embeddings: no " \
           "(confidence: medium)" in text
    assert "<li>the task is close to pretraining</li>" in text
    assert "spectrum" in [a["data-chart"] for a in page.all("figure")]
    assert "<th scope=\"row\">mmd</th><td>0.12</td>" in text and "majority_accuracy" in text
    assert "effective rank (90% energy)" in text and "<td data-sort=\"ffn_in\">ffn_in</td><td data-sort=\"8\">8</td>" in text
    # the spectrum without singular values: energy per rank instead
    other = tmp_path / "energy"
    other.mkdir()
    assert 'data-chart="spectrum"' in write(other, results_json(), diagnosis_json(singular_values=False)).read_text()


def test_missing_or_broken_diagnosis_is_a_note_not_an_error(tmp_path):
    results = results_json()
    results["diagnosis"] = "diagnosis.json"
    (tmp_path / "results.json").write_text(json.dumps(results))
    assert "results.json links &#x27;diagnosis.json&#x27; but that file is missing" in write_report(tmp_path).read_text()
    (tmp_path / "diagnosis.json").write_text("{not json")
    assert "diagnosis.json is unreadable (JSONDecodeError" in write_report(tmp_path).read_text()
    (tmp_path / "diagnosis.json").write_text(json.dumps({"recommendation": {"decision": "full"}, "spectrum": {"q": 3}}))
    text = write_report(tmp_path).read_text()
    assert "Recommendation: Full fine-tuning" in text and "<td data-sort=\"q\">q</td><td data-sort=\"-\">-</td>" in text


def test_hostile_strings_render_as_text(tmp_path):
    results = hostile_results()
    results["advisor_check"] = {"note": HOSTILE[1]}
    text = write(tmp_path, results, hostile_diagnosis()).read_text()
    page = Page(text)
    assert_no_active_content(page)
    visible = "".join(page.text)
    for hostile in HOSTILE:  # every string is on the page, as text
        assert hostile in visible
    assert f"a {HOSTILE[0]} example" in visible and f"bad label {HOSTILE[1]}" in visible


def test_markdown_and_csv(tmp_path):
    results = hostile_results()
    path = write(tmp_path, results, hostile_diagnosis(), format="md")
    text = path.read_text()
    command = re.search(r"^(`{3,})\n(.*?)\n\1$", text, re.M | re.S)  # a code block shows its text verbatim
    assert command.group(2) == results["study"]["command"]
    outside = text.replace(command.group(0), "")
    assert path.name == "report.md" and "<script" not in outside and "<img" not in outside
    figures = re.findall(r"!\[[^\]]*\]\((figures/[a-z_]+\.png)\)", text)
    assert len(figures) == 10
    for figure in figures:
        assert (tmp_path / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| head | 65.0 (-17.0) |" in text
    rows = list(csv.DictReader(io.StringIO(write_report(tmp_path, format="csv").read_text())))
    assert [row["status"] for row in rows] == ["ok", "ok", "ok", "failed"]
    assert rows[0]["accuracy"] == "0.82" and rows[1]["method"] == HOSTILE[2]
    assert rows[3]["reason"] == f"DataError: bad label {HOSTILE[1]}" and rows[3]["accuracy"] == ""


def run_cli(monkeypatch, *args):
    from peftlab.cli import main

    monkeypatch.setattr(sys, "argv", ["peftlab", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code


def test_cli_report_and_its_errors(tmp_path, monkeypatch, capsys):
    (tmp_path / "results.json").write_text(json.dumps(results_json()))
    assert run_cli(monkeypatch, "report", str(tmp_path), "--format", "csv") in (0, None)
    assert (tmp_path / "report.csv").is_file()
    assert run_cli(monkeypatch, "report", str(tmp_path / "missing")) == 2
    assert run_cli(monkeypatch, "report", str(tmp_path), "--format", "pdf") == 2
    broken = results_json()
    del broken["runs"][0]["cost"]["train_seconds"]
    (tmp_path / "results.json").write_text(json.dumps(broken))
    assert run_cli(monkeypatch, "report", str(tmp_path)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-3].startswith("error: ") and "no results.json" in err[-3]
    assert err[-2] == "error: --format must be one of html, md, csv, got 'pdf'"
    assert err[-1].startswith("error: ") and "not a complete peftlab results file (KeyError: 'train_seconds')" in err[-1]
    assert "Traceback" not in "\n".join(err)


def test_a_report_failure_after_compare_is_one_logged_line(tmp_path, caplog):
    broken = results_json()
    del broken["runs"][1]["cost"]["peak_memory_bytes"]
    with caplog.at_level(logging.WARNING):
        assert write_report_safely(tmp_path, broken) is None
    assert len(caplog.records) == 1 and "the HTML report was not written" in caplog.records[0].getMessage()
    assert not (tmp_path / "report.html").exists()


def test_compare_writes_the_report_of_a_hostile_dataset(tmp_path, tiny_bert_dir):
    """A real (tiny) study whose column names and labels are markup: compare leaves report.html next to
    results.json, every string from the data shown as text, every chart drawn."""
    from peftlab import CompareConfig, compare

    data = hostile_csv(tmp_path / "data.csv")
    out = tmp_path / "out"
    results = compare(CompareConfig(**FIXED_RATES, 
        model=str(tiny_bert_dir), data=str(data), methods=["full", "lora"], text_column=HOSTILE[0],
        label_column=HOSTILE[1], max_steps=3, batch_size=8, out=str(out), perturb_examples=12, attack_examples=4,
        attack_query_budget=10))
    assert [run["status"] for run in results["runs"]] == ["ok", "ok"]
    assert set(results["study"]["task"]["label_names"]) == {HOSTILE[0], HOSTILE[2]}
    page = Page((out / "report.html").read_text())
    assert_no_active_content(page)
    visible = "".join(page.text)
    assert f"labels{HOSTILE[0]}, {HOSTILE[2]}" in visible.replace("\n", "")
    assert HOSTILE[1] in visible  # the label column's name
    # compare ran the diagnosis too: its recommendation and signals are in the report, its spectrum is the 10th chart
    assert (out / "diagnosis.json").is_file()
    assert "No diagnosis" not in visible and "No recommendation" not in visible
    assert len(page.all("figure")) == 10
