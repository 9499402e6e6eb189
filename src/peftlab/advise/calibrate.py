"""Fitting the advisor's thresholds to measured verdicts, with leave-one-task-out agreement (issue "the built-in
suite reaches conclusions"; docs/DIAGNOSE.md, "Calibration").

The data: finished studies that have both a diagnosis (diagnosis.json: the signals the rules read) and a verdict
(results.json). Only a **conclusive** verdict is a label — "full" when it chose full fine-tuning, "peft" when it
chose a PEFT method; a study whose verdict is inconclusive (the reference did not learn, the interval straddles the
tolerance) says nothing about which call was right, and is left out with its reason.

The fit: coordinate descent on the thresholds of :data:`FITTED`, maximising the number of studies where
:func:`peftlab.advise.rules.recommend` makes the verdict's call. Each threshold in turn tries the midpoints between
the studies' values of its signal (and its current value), each together with every decision margin from -2 to 4
(a signal's vote changes a call only where the margin lets it, so one coordinate alone would stall); the best
agreement wins, ties keep the current values (so a threshold no study decides stays where it was); rounds repeat
until nothing changes. The vote weights stay
as they are: with a dozen studies, fitting weights as well would fit noise.

The score that is not the training fit: leave-one-task-out — for each study, the thresholds fitted on all the
others make its call. Written here rather than with scikit-learn: the model is the advisor's own rule set (a
weighted vote of thresholded signals), which no library estimator is; the search is a few lines.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from peftlab.advise.rules import THRESHOLDS, derived_inputs, recommend
from peftlab.files import DIAGNOSIS_FILE, RESULTS_FILE

# threshold -> the derived input it is compared with (rules.derived_inputs); decision_margin: the vote balance
FITTED: dict[str, str] = {
    "uncovered_char_rate": "uncovered_char_rate", "fertility_ratio": "fertility_ratio", "unknown_rate": "unknown_rate",
    "probe_headroom_low": "probe_headroom", "probe_headroom_high": "probe_headroom",
    "representation_mmd": "representation_mmd", "energy_at_rank_16": "energy_at_rank_16",
    "few_examples": "train_examples", "decision_margin": "margin",
}
MARGINS = [k / 2 for k in range(-4, 9)]  # vote balances the decision margin may take: -2 to 4 by 0.5
MAX_ROUNDS = 5


def labelled_studies(folders: list[Path]) -> tuple[list[dict], list[dict]]:
    """(studies with a diagnosis and a conclusive verdict: {name, diagnosis, label, verdict}, the others: {name,
    reason}). ``folders``: study folders (a suite's OUT/tasks/<task>)."""
    usable, left_out = [], []
    for folder in folders:
        name = folder.name
        if not (folder / DIAGNOSIS_FILE).is_file() or not (folder / RESULTS_FILE).is_file():
            left_out.append({"name": name, "reason": "no diagnosis.json and results.json"})
            continue
        diagnosis = json.loads((folder / DIAGNOSIS_FILE).read_text())
        verdict = json.loads((folder / RESULTS_FILE).read_text()).get("verdict") or {}
        if verdict.get("decision") in (None, "inconclusive"):
            reason = (verdict.get("reasons") or ["no verdict"])[0]
            left_out.append({"name": name, "reason": f"verdict inconclusive: {reason}"})
            continue
        usable.append({"name": name, "diagnosis": diagnosis, "label": "full" if verdict["decision"] == "full" else "peft",
                       "verdict": verdict["decision"]})
    return usable, left_out


def agreement(studies: list[dict], thresholds: dict[str, float]) -> int:
    return sum(recommend(study["diagnosis"], thresholds)["decision"] == study["label"] for study in studies)


def candidates(studies: list[dict], name: str, current: dict[str, float]) -> list[float]:
    """The values threshold ``name`` tries: midpoints between the studies' values of its signal, and its current
    value; the probe thresholds keep low <= high."""
    if name == "decision_margin":
        return sorted(set(MARGINS) | {current[name]})
    values = sorted({value for value in (_signal(study["diagnosis"], FITTED[name]) for study in studies)
                     if value is not None})
    points = {current[name]} | {(a + b) / 2 for a, b in zip(values, values[1:])}
    if values:  # below and above every study: the rule fires for all of them, or for none
        points |= {values[0] - abs(values[0]) * 0.5 - 1e-9, values[-1] * 1.5 + 1e-9}
    if name == "probe_headroom_low":
        points = {p for p in points if p <= current["probe_headroom_high"]}
    if name == "probe_headroom_high":
        points = {p for p in points if p >= current["probe_headroom_low"]}
    return sorted(points)


def _signal(diagnosis: dict, key: str) -> float | None:
    inputs = derived_inputs(diagnosis)
    if key == "energy_at_rank_16":
        return (inputs["energy_at_rank"] or {}).get("16")
    return inputs.get(key)


def fit(studies: list[dict], start: dict[str, float] | None = None) -> dict[str, float]:
    """Thresholds maximising agreement with the studies' labels: coordinate descent where each threshold is searched
    together with the decision margin (a signal's vote only changes a call when the margin lets it); ties keep the
    current values."""
    thresholds = {**THRESHOLDS, **(start or {})}
    for _ in range(MAX_ROUNDS):
        changed = False
        for name in FITTED:
            if name == "decision_margin":
                continue
            best, best_score = (thresholds[name], thresholds["decision_margin"]), agreement(studies, thresholds)
            for value in candidates(studies, name, thresholds):
                for margin in candidates(studies, "decision_margin", thresholds):
                    score = agreement(studies, {**thresholds, name: value, "decision_margin": margin})
                    if score > best_score:
                        best, best_score = (value, margin), score
            if best != (thresholds[name], thresholds["decision_margin"]):
                thresholds[name], thresholds["decision_margin"] = best
                changed = True
        if not changed:
            break
    return thresholds


def calibrate(studies: list[dict]) -> dict[str, Any]:
    """In-sample agreement of the current and of the fitted thresholds, the fitted thresholds, and the
    leave-one-task-out agreement (each study called by the thresholds fitted on the others)."""
    fitted = fit(studies)
    held_out = []
    for index, study in enumerate(studies):
        others = studies[:index] + studies[index + 1:]
        call = recommend(study["diagnosis"], fit(others))["decision"] if others else None
        held_out.append({"name": study["name"], "label": study["label"], "call": call, "agrees": call == study["label"]})
    return {"studies": len(studies), "labels": {label: sum(s["label"] == label for s in studies) for label in ("full", "peft")},
            "current": {"agree": agreement(studies, THRESHOLDS), "of": len(studies)},
            "in_sample": {"agree": agreement(studies, fitted), "of": len(studies)},
            "leave_one_out": {"agree": sum(entry["agrees"] for entry in held_out), "of": len(studies),
                              "studies": held_out},
            "thresholds": fitted,
            "changed": {name: {"from": THRESHOLDS[name], "to": value} for name, value in fitted.items()
                        if value != THRESHOLDS[name]}}
