"""Fitting the advisor's thresholds (peftlab.advise.calibrate) on made-up studies whose verdicts follow one signal:
the fit finds that signal's threshold, agrees in and out of sample, leaves inconclusive studies out with their
reason, and the benchmark script prints the table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from peftlab.advise import recommend
from peftlab.advise.calibrate import calibrate, fit, labelled_studies
from peftlab.advise.rules import THRESHOLDS

ROOT = Path(__file__).resolve().parents[1]


def diagnosis(fertility_ratio: float, train: int = 2000) -> dict:
    """Signals where only the vocabulary differs: the probe in the middle (no vote), low rank (a vote for PEFT)."""
    spectrum = {"query": {"energy_at_rank": {"4": 0.4, "8": 0.5, "16": 0.6, "64": 0.9}, "relative_update_norm": 0.01}}
    return {"vocabulary": {"uncovered_char_rate": 0.0, "fertility": 1.3 * fertility_ratio, "unknown_rate": 0.0,
                           "reference": {"fertility": 1.3}},
            "probe": {"headroom_reached": 0.3, "accuracy": 0.7, "majority_accuracy": 0.5},
            "shift": {"representation_mmd": 0.1}, "spectrum": spectrum, "task_shape": {"examples": {"train": train}}}


# the verdict chose full exactly where the text splits into 2.5+ times the reference's pieces
RATIOS = [1.0, 1.2, 1.7, 1.9, 2.1, 2.3, 2.6, 2.9, 3.3, 4.0]
STUDIES = [{"name": f"t{k}", "diagnosis": diagnosis(ratio), "label": "full" if ratio >= 2.5 else "peft"}
           for k, ratio in enumerate(RATIOS)]


def test_the_fit_finds_the_signal_that_decides_and_scores_out_of_sample():
    assert sum(recommend(s["diagnosis"])["decision"] == s["label"] for s in STUDIES) == 6  # provisional: all "peft"
    result = calibrate(STUDIES)
    assert result["current"] == {"agree": 6, "of": 10} and result["in_sample"] == {"agree": 10, "of": 10}
    assert 2.3 < result["thresholds"]["fertility_ratio"] < 2.6 and "fertility_ratio" in result["changed"]
    assert result["leave_one_out"]["agree"] >= 8 and len(result["leave_one_out"]["studies"]) == 10
    assert result["labels"] == {"full": 4, "peft": 6}
    untouched = fit(STUDIES)  # thresholds no study decides keep their provisional values
    assert untouched["representation_mmd"] == THRESHOLDS["representation_mmd"]
    assert untouched["probe_headroom_low"] <= untouched["probe_headroom_high"]


def write_study(folder: Path, fertility_ratio: float, decision: str) -> None:
    folder.mkdir(parents=True)
    (folder / "diagnosis.json").write_text(json.dumps(diagnosis(fertility_ratio)))
    reasons = ["full fine-tuning did not learn"] if decision == "inconclusive" else ["decided"]
    (folder / "results.json").write_text(json.dumps({"runs": [], "verdict": {"decision": decision, "reasons": reasons}}))


def test_studies_are_read_from_folders_and_inconclusive_ones_left_out(tmp_path):
    for k, (ratio, decision) in enumerate([(1.0, "lora"), (3.0, "full"), (1.1, "inconclusive"), (2.9, "full"),
                                           (1.2, "prompt")]):
        write_study(tmp_path / "tasks" / f"task{k}", ratio, decision)
    (tmp_path / "tasks" / "no-diagnosis").mkdir()
    studies, left_out = labelled_studies(sorted((tmp_path / "tasks").iterdir()))
    assert [s["label"] for s in studies] == ["peft", "full", "full", "peft"]
    assert {entry["name"]: entry["reason"] for entry in left_out} == {
        "task2": "verdict inconclusive: full fine-tuning did not learn", "no-diagnosis": "no diagnosis.json and results.json"}
    script = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "calibrate_advisor.py"), str(tmp_path),
                             "--json", str(tmp_path / "fitted.json")], capture_output=True, text=True, timeout=120)
    assert script.returncode == 0, script.stderr
    assert "in sample: 4 of 4" in script.stdout and "leave one task out:" in script.stdout
    assert "task2" in script.stdout  # left out, with its reason
    assert json.loads((tmp_path / "fitted.json").read_text())["in_sample"]["agree"] == 4


def test_the_vocabulary_reason_is_in_the_users_units():
    signals = diagnosis(3.0)
    signals["vocabulary"].update(split3_rate=0.64)
    signals["vocabulary"]["reference"].update(split3_rate=0.09)
    reason = recommend(signals)["reasons"][0]
    assert reason.startswith("vocabulary: the tokenizer covers the task's text poorly (fertility ratio 3 > 1.6)")
    assert "it splits 64% of your words into 3+ pieces (the reference English sample: 9%)" in reason
