"""What the reports say in words: the headline comparison, the recommendation, and the study's inputs.

Shared by the HTML and Markdown reports. Everything here returns plain (unescaped) text; each report format
escapes it for its own syntax. Every number comes from results.json or diagnosis.json.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peftlab.files import DIAGNOSIS_FILE, read_results
from peftlab.methods import trains
from peftlab.report.cells import human_bytes, human_count, percent
from peftlab.report.tables import REFERENCE_METHOD, headline_metric, reference_run
from peftlab.tasks.kinds import PREDICTIONS, task_kind_of


@dataclass
class ReportInputs:
    """A study's results, its diagnosis when there is one, and why there is none (or why it was unreadable)."""

    results: dict[str, Any]
    diagnosis: dict[str, Any] | None = None
    diagnosis_note: str = ""
    notes: list[str] = field(default_factory=list)


def read_inputs(run_dir: Path, results: dict[str, Any] | None = None) -> ReportInputs:
    """results.json of ``run_dir`` (or the given dict) and the diagnosis it links to (``"diagnosis"``: a file
    name in the folder, or the diagnosis itself), else OUT/diagnosis.json when present. A missing or unreadable
    diagnosis is a note in the report, never an error: the results are what the report is for."""
    if results is None:
        results = read_results(run_dir)
    link = results.get("diagnosis")
    if isinstance(link, dict):
        return ReportInputs(results, link)
    path = Path(run_dir) / (link if isinstance(link, str) and link else DIAGNOSIS_FILE)
    if not path.is_file():
        reason = results.get("diagnosis_skipped") or results.get("diagnosis_failed")
        note = (f"results.json links {link!r} but that file is missing" if isinstance(link, str) and link else
                f"not run ({reason})" if reason else
                f"no {DIAGNOSIS_FILE} in this study: run `peftlab diagnose` for the vocabulary, shift and "
                "spectrum signals and a recommendation")
        return ReportInputs(results, None, note)
    try:
        diagnosis = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return ReportInputs(results, None, f"{path.name} is unreadable ({type(error).__name__}: {error})")
    if not isinstance(diagnosis, dict):
        return ReportInputs(results, None, f"{path.name} is not a JSON object")
    return ReportInputs(results, diagnosis)


def ok_runs(results: dict[str, Any]) -> list[dict[str, Any]]:
    return [run for run in results["runs"] if run.get("status") == "ok" and run.get("metrics")]


def best_peft_run(results: dict[str, Any]) -> dict[str, Any] | None:
    """The best-scoring run other than FFT and the zero-shot floor (ties: fewer trainable parameters)."""
    key, _ = headline_metric(results)
    candidates = [run for run in ok_runs(results) if run["method"] != REFERENCE_METHOD and trains(run["method"])
                  and isinstance(run["metrics"].get(key), (int, float))]
    return max(candidates, key=lambda run: (run["metrics"][key], -run["cost"].get("trainable_params", 0)),
               default=None)


def headline(results: dict[str, Any]) -> str:
    """The comparison in one sentence, with its numbers (a regression study's Spearman as a correlation)."""
    key, words = headline_metric(results)
    pct = _correlation if task_kind_of(results["study"].get("task")).per_example == PREDICTIONS else _pct
    reference, best = reference_run(results["runs"]), best_peft_run(results)
    failed = [run["method"] for run in results["runs"] if run.get("status") not in ("ok", "refused")]
    refused = list(dict.fromkeys(run["method"] for run in results["runs"] if run.get("status") == "refused"))
    tail = f" Failed: {', '.join(failed)}." if failed else ""
    tail += f" Refused (they do not apply to this model): {', '.join(refused)}." if refused else ""
    if reference is None and best is None:
        return "No run finished, so there is nothing to compare." + tail
    if best is None:
        return (f"Only full fine-tuning finished: {pct(reference['metrics'][key])} test {words}." + tail)
    cost, metrics = best["cost"], best["metrics"]
    share = cost["trainable_params"] / cost["total_params"] if cost.get("total_params") else 0
    if reference is None:
        return (f"Full fine-tuning did not finish; the best method, {best['method']}, reached "
                f"{pct(metrics[key])} test {words} training {percent(share)} of the parameters." + tail)
    ref_cost, ref_score = reference["cost"], reference["metrics"][key]
    return (
        f"The best parameter-efficient method, {best['method']}, reached {pct(metrics[key])} test "
        f"{words} against {pct(ref_score)} for full fine-tuning ({100 * (metrics[key] - ref_score):+.1f} "
        f"points), training {human_count(cost['trainable_params'])} parameters ({percent(share)}) instead of "
        f"{human_count(ref_cost['trainable_params'])}, with peak memory {human_bytes(cost['peak_memory_bytes'])} vs "
        f"{human_bytes(ref_cost['peak_memory_bytes'])}, train time {cost['train_seconds']:.0f} s vs "
        f"{ref_cost['train_seconds']:.0f} s and a checkpoint of {human_bytes(cost.get('checkpoint_bytes'))} vs "
        f"{human_bytes(ref_cost.get('checkpoint_bytes'))}." + tail
    )


def verdict_text(results: dict[str, Any]) -> tuple[str, list[str], list[str]] | None:
    """The study's verdict (results.json's ``verdict``, :mod:`peftlab.study.verdict`) as a line, its reasons and
    what to do; None for results written before there was one."""
    verdict = results.get("verdict")
    if not isinstance(verdict, dict) or "decision" not in verdict:
        return None
    decision = verdict["decision"]
    if decision == "inconclusive":
        line = "Verdict: inconclusive"
    elif decision == REFERENCE_METHOD:
        line = "Verdict: full fine-tuning"
    else:
        line = f"Verdict: {decision}"
    gap, interval = verdict.get("gap_points"), verdict.get("gap_ci95_points")
    if isinstance(gap, (int, float)) and interval:
        line += (f" ({verdict.get('best_peft')} − full {gap:+.1f} points, 95% interval [{interval[0]:+.1f}, "
                 f"{interval[1]:+.1f}], tolerance {verdict.get('tolerance_points', 1):g})")
    ratios = verdict.get("cost_vs_full") or {}
    if decision not in ("inconclusive", REFERENCE_METHOD) and any(ratios.values()):
        words = {"peak_memory": "peak memory", "train_time": "train time", "trainable_params": "trainable parameters",
                 "checkpoint_size": "checkpoint"}
        line += "; against full: " + ", ".join(f"{words[key]} ×{value:.3g}" for key, value in ratios.items()
                                               if isinstance(value, (int, float)))
    reasons = [str(reason) for reason in verdict.get("reasons") or []]
    floor = verdict.get("floor")
    if isinstance(floor, dict) and floor.get("said"):  # the zero-shot floor, and how much of it each method closes
        reasons.append(str(floor["said"]))
    return line, reasons, [str(a) for a in verdict.get("advice") or []]


def recommendation(diagnosis: dict[str, Any] | None) -> tuple[str, list[str]] | None:
    """The diagnosis' recommendation as one line and its reasons; None when there is none."""
    advice = (diagnosis or {}).get("recommendation")
    if not isinstance(advice, dict):
        return None
    decision = advice.get("decision")
    if decision == "full":
        line = "Full fine-tuning"
    elif decision == "peft":
        line = "Parameter-efficient fine-tuning"
        if advice.get("method"):
            line += f": {advice['method']}"
        if advice.get("rank") is not None:
            line += f" at rank {advice['rank']}"
    else:
        line = f"Decision: {decision if decision is not None else 'not given'}"
    if advice.get("train_embeddings") is not None:
        line += f"; train the embeddings: {'yes' if advice['train_embeddings'] else 'no'}"
    if advice.get("confidence") is not None:
        line += f" (confidence: {format_value(advice['confidence'])})"
    reasons = advice.get("reasons") if isinstance(advice.get("reasons"), list) else []
    return line, [str(reason) for reason in reasons]


def environment_rows(results: dict[str, Any]) -> list[tuple[str, str]]:
    """What the study ran on and with, as (name, value) rows; the reproduce command is shown separately."""
    study = results["study"]
    task = study.get("task") or {}
    rows = [("model", str(study.get("model"))), ("model path", str(study.get("model_path", "-")))]
    rows.append(("data", ", ".join(f"{key} {study[key]}" if key != "data" else str(study[key])
                                   for key in ("data", "subset", "split") if study.get(key))))
    rows.append(("dataset sha256", str(study.get("dataset_sha256", "-"))))
    if task:
        rows.append(("task", f"{task.get('name', '-')}, {task.get('num_labels', '-')} labels"))
        rows.append(("labels", ", ".join(str(label) for label in task.get("label_names") or [])))
        rows.append(("columns", format_value(task.get("columns"))))
        rows.append(("examples", format_value(task.get("sizes"))))
    rows.append(("seed", str(study.get("seed"))))
    rows.append(("budget", format_value(study.get("budget"))))
    robustness = study.get("robustness")
    rows.append(("robustness", "off" if not robustness else format_value(robustness.get("settings", robustness))))
    rows.append(("methods", ", ".join(str(m) for m in study.get("methods") or [])))
    rows.append(("versions", format_value(study.get("versions"))))
    hardware = dict(study.get("hardware") or {})
    for key in ("memory_bytes", "gpu_memory_bytes"):
        if isinstance(hardware.get(key), (int, float)):
            hardware[key] = human_bytes(hardware[key])
    rows.append(("hardware", format_value(hardware)))
    rows.append(("started", str(study.get("started_at", "-"))))
    return rows


def format_value(value: Any) -> str:
    """A JSON value as short readable text: numbers to 4 significant digits, mappings as key=value."""
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: "-"}[value]
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return ", ".join(f"{key}={format_value(item)}" for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(format_value(item) for item in value)
    return str(value)


def _pct(share: float) -> str:
    return f"{100 * share:.1f}%"


def _correlation(value: float) -> str:
    return f"{value:.3f}"
