"""A study's results for notebooks and scripts: what `compare` returns and `load_study(OUT)` reads back.

:class:`Results` *is* results.json — a ``dict`` subclass, so ``results["runs"]``, ``json.dumps(results)`` and
every function that takes the results dict keep working — with views on top, each built from the report's own
definitions so that a notebook shows the numbers the terminal, the HTML report and the CSV show:

- ``.table(name="comparison")``: a pandas DataFrame, one row per run, the columns of the terminal table
  (:mod:`peftlab.report.tables`) as raw values (fractions, counts, bytes, seconds; no formatting). ``raw=True``
  gives every raw column (the CSV's).
- ``.verdict``: the comparison in words and numbers (:func:`verdict`).
- ``.runs``: one :class:`RunResult` per run, indexed by position or by its label (``"lora"``, ``"lora s1"``),
  with its metrics, cost, curve, robustness and artifact folder; ``.load()`` rebuilds the trained model.
- ``.plot(kind)``: a matplotlib Figure of one of the report's charts (:data:`PLOT_KINDS`).
- ``_repr_html_``: in Jupyter, the verdict and the comparison table.
- ``.to_dict()``: a plain dict, as in results.json.

``load_study(OUT)`` reads a finished study folder, or one still running: then results.json holds the runs that
finished so far (the driver rewrites it after each), ``.in_progress`` lists the runs its store marks as running,
and a study with no finished run yet is its store's header with no runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from peftlab.errors import ConfigError, PeftlabError
from peftlab.files import RESULTS_FILE, STORE_FILE, read_results
from peftlab.report.cells import human_bytes
from peftlab.report.charts import CHART_TITLES, draw_chart
from peftlab.report.html import escape, report_table_html
from peftlab.report.summary import best_peft_run, headline, read_inputs, recommendation, verdict_text
from peftlab.report.tables import REFERENCE_METHOD, headline_metric, reference_run, report_tables, run_label
from peftlab.study.artifacts import load_run
from peftlab.study.store import StudyStore

PLOT_KINDS = tuple(CHART_TITLES)  # pareto_params, pareto_memory, ..., train_loss, validation, robustness_accuracy...
PLOT_ALIASES = {"pareto": "pareto_params", "curves": "train_loss", "loss": "train_loss",
                "robustness": "robustness_accuracy"}


@dataclass(frozen=True)
class RunResult:
    """One run of a study: its record (results.json's ``runs[i]``) and the study folder its artifact lives in."""

    record: dict[str, Any]
    label: str
    folder: Path | None = None

    @property
    def method(self) -> str:
        return self.record["method"]

    @property
    def seed(self) -> int | None:
        return self.record.get("seed")

    @property
    def status(self) -> str:
        return self.record["status"]

    @property
    def reason(self) -> str:
        return self.record.get("reason", "")

    @property
    def metrics(self) -> dict[str, Any]:
        return self.record.get("metrics") or {}

    @property
    def cost(self) -> dict[str, Any]:
        return self.record.get("cost") or {}

    @property
    def curve(self) -> dict[str, Any]:
        """The per-step train loss and the per-evaluation validation scores."""
        return self.record.get("curve") or {}

    @property
    def robustness(self) -> dict[str, Any] | None:
        return self.record.get("robustness")

    @property
    def artifact(self) -> Path | None:
        """The trained run's folder (OUT/runs/<method>), None when nothing was saved (a failed or refused run)."""
        relative = self.record.get("artifact")
        if not relative:
            return None
        return self.folder / relative if self.folder is not None else Path(relative)

    def load(self):
        """(model, tokenizer, run info): the trained model rebuilt from its folder (:func:`peftlab.load_run`)."""
        if self.artifact is None:
            raise PeftlabError(f"run {self.label} has no saved model ({self.status}"
                               + (f": {self.reason})" if self.reason else ")"))
        return load_run(self.artifact)

    def __repr__(self) -> str:
        if self.status != "ok":
            return f"RunResult({self.label}: {self.status}{': ' + self.reason if self.reason else ''})"
        numbers = ", ".join(f"{key} {value:.3f}" for key, value in self.metrics.items()
                            if isinstance(value, float))
        return (f"RunResult({self.label}: {numbers}; {self.cost.get('trainable_params')} trainable, "
                f"peak {human_bytes(self.cost.get('peak_memory_bytes'))})")


class RunList(list):
    """The runs in results.json's order; ``runs["lora"]`` picks a run by its label (the method, with its seed as
    ``"lora s1"`` when the study ran several) or by its method when that has one run."""

    def __getitem__(self, key):
        if not isinstance(key, str):
            return super().__getitem__(key)
        for run in self:
            if run.label == key:
                return run
        matches = [run for run in self if run.method == key]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise KeyError(f"{key!r} ran {len(matches)} times; pick one of {', '.join(r.label for r in matches)}")
        raise KeyError(f"no run {key!r}; the runs are {', '.join(run.label for run in self) or 'none'}")

    def labels(self) -> list[str]:
        return [run.label for run in self]


class Results(dict):
    """results.json with notebook views (module docstring). ``folder`` is the study folder (None: not saved)."""

    def __init__(self, results: dict[str, Any], folder: str | Path | None = None,
                 diagnosis: dict[str, Any] | None = None, in_progress: list[dict[str, Any]] | None = None):
        super().__init__(results)
        self.folder = Path(folder) if folder is not None else None
        self._diagnosis = diagnosis
        self.in_progress = in_progress or []  # load_study on a running study: the runs its store marks running

    # --- the dict ------------------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return dict(self)

    @property
    def diagnosis(self) -> dict[str, Any] | None:
        """diagnosis.json (or the diagnosis in results.json) when the study has one."""
        if self._diagnosis is None and self.folder is not None:
            self._diagnosis = read_inputs(self.folder, dict(self)).diagnosis
        return self._diagnosis

    # --- views ---------------------------------------------------------------------------------------------------

    @property
    def runs(self) -> RunList:
        return RunList(RunResult(run, run_label(self, run), self.folder) for run in self["runs"])

    def table(self, name: str = "comparison", raw: bool = False) -> pd.DataFrame:
        """One of the report's tables (comparison, robustness, estimate, seeds, tuning) as a DataFrame of raw
        values: the terminal table's columns, plus the run's seed and status; ``raw=True``: every raw column."""
        tables = report_tables(self)
        if name not in tables:
            raise ConfigError(f"no table {name!r}; the tables are {', '.join(tables)}")
        table = tables[name]
        keys = [column.key for column in table.columns
                if raw or column.title or column.key in ("seed", "status")]
        first = table.columns[0].key  # the row label's column (the method): tables that keep no raw value for it
        frame = pd.DataFrame([{key: row.values.get(key) for key in keys} | {first: row.values.get(first, row.label.removesuffix(" (ref)"))}
                              for row in table.rows], columns=keys)
        frame.index = pd.Index([row.label.removesuffix(" (ref)") for row in table.rows], name="run")
        return frame

    @property
    def verdict(self) -> dict[str, Any]:
        return verdict(self, self.diagnosis)

    def plot(self, kind: str = "pareto_params") -> Figure:
        """One of the report's charts as a matplotlib Figure (kinds: :data:`PLOT_KINDS`, or the short names
        pareto, curves, loss, robustness). A chart the study has no numbers for is a one-line PeftlabError."""
        name = PLOT_ALIASES.get(kind, kind)
        if name not in CHART_TITLES:
            raise ConfigError(f"no chart {kind!r}; the kinds are {', '.join([*PLOT_KINDS, *PLOT_ALIASES])}")
        figure = draw_chart(self, name, self.diagnosis, foreground="black")
        if figure is None:
            raise PeftlabError(f"{CHART_TITLES[name]}: nothing to draw (no finished run of this study has these "
                               "numbers)")
        return figure

    # --- display -------------------------------------------------------------------------------------------------

    def _title(self) -> str:
        study = self["study"]
        task = (study.get("task") or {}).get("name", study.get("data"))
        return f"{study.get('model')} on {task}"

    def __repr__(self) -> str:
        statuses: dict[str, int] = {}
        for run in self["runs"]:
            statuses[run["status"]] = statuses.get(run["status"], 0) + 1
        counts = ", ".join(f"{n} {status}" for status, n in statuses.items()) or "no run finished"
        running = f", {len(self.in_progress)} running" if self.in_progress else ""
        where = f" in {self.folder}" if self.folder is not None else ""
        return f"Results({self._title()}: {counts}{running}{where})\n{headline(self)}"

    def _repr_html_(self) -> str:
        words = self.verdict
        parts = [f"<h4>peftlab: {escape(self._title())}</h4>"]
        line = verdict_text(self)
        if line:
            parts.append(f"<p><b>{escape(line[0])}</b></p>")
        parts.append(f"<p>{escape(words['headline'])}</p>")
        if words.get("recommendation"):
            parts.append(f"<p>Recommendation (diagnosis): {escape(words['recommendation'])}</p>")
        if self.in_progress:
            parts.append(f"<p>Running: {escape(', '.join(run['method'] for run in self.in_progress))}</p>")
        table = report_tables(self)["comparison"]
        parts.append(report_table_html(table, always=True, sortable=False))
        return "<div>" + "".join(parts) + "</div>"


def verdict(results: dict[str, Any], diagnosis: dict[str, Any] | None = None) -> dict[str, Any]:
    """The comparison's outcome: the headline sentence, the best PEFT run and its gap to full fine-tuning (points
    of the headline metric, same seed order as the table), and the diagnosis's recommendation with its reasons.
    A study whose results.json carries its own ``verdict`` record returns that record, with the headline added."""
    key, words = headline_metric(results)
    reference, best = reference_run(results["runs"]), best_peft_run(results)
    advice = recommendation(diagnosis)
    summary: dict[str, Any] = {
        "headline": headline(results), "metric": key, "reference": REFERENCE_METHOD if reference else None,
        "best_peft": best["method"] if best else None,
        "best_peft_score": best["metrics"][key] if best else None,
        "reference_score": reference["metrics"][key] if reference else None,
        "gap_points": (100 * (best["metrics"][key] - reference["metrics"][key]) if best and reference else None),
        "recommendation": advice[0] if advice else None, "reasons": advice[1] if advice else [],
    }
    if isinstance(results.get("verdict"), dict):  # the study's verdict (peftlab.study.verdict), with the advisor's call
        return {**results["verdict"], "headline": summary["headline"], "recommendation": summary["recommendation"],
                "advisor_reasons": summary["reasons"]}
    return summary


def load_study(folder: str | Path) -> Results:
    """A study folder (the ``--out`` of `peftlab compare`), finished or still running, as :class:`Results`."""
    folder = Path(folder)
    store_path = folder / STORE_FILE
    store = StudyStore(store_path) if store_path.is_file() else None
    in_progress = [{"method": row["method"], "seed": row["seed"], "phase": row["phase"],
                    "started_at": row["started_at"]} for row in (store.runs() if store else [])
                   if row["status"] == "running"]
    if (folder / RESULTS_FILE).is_file() or store is None:
        return Results(read_results(folder), folder, in_progress=in_progress)
    header = store.get("header")
    if not isinstance(header, dict):
        raise PeftlabError(f"{folder} is not a study folder: its {STORE_FILE} has no study header yet")
    return Results({"study": header, "runs": []}, folder, in_progress=in_progress)
