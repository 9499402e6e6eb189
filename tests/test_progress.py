"""The study's progress: one line per finished run (method, metric, time, runs done, time left) also when stdout
is not a terminal, and on a terminal a live display fed by the training loop's steps."""

from __future__ import annotations

import io
import re

from rich.console import Console
from typer.testing import CliRunner

from peftlab import CompareConfig, compare
from peftlab.cli import app
from peftlab.progress import StudyProgress
from peftlab.report.progress import ProgressDisplay, duration, run_line
from conftest import FIXED_RATES, FIXED_RATES_CLI


class Recorder(StudyProgress):
    shows_steps = True

    def __init__(self):
        self.events = []

    def study_planned(self, pending, finished):
        self.events.append(("planned", tuple(pending), finished))

    def run_started(self, label):
        self.events.append(("started", label))

    def step(self, steps, total_steps, epoch, epochs):
        self.events.append(("step", steps, total_steps, epoch, epochs))

    def run_finished(self, record):
        self.events.append(("finished", record["method"], record["status"]))

    def close(self):
        self.events.append(("closed",))


def test_compare_reports_plan_starts_steps_and_ends(tmp_path, tiny_bert_dir, tiny_task_csv):
    recorder = Recorder()
    config = CompareConfig(**FIXED_RATES, model=str(tiny_bert_dir), data=str(tiny_task_csv), methods=["full", "lora"], max_steps=3,
                           batch_size=8, out=str(tmp_path / "out"), robustness=False, diagnose=False)
    compare(config, progress=recorder)
    names = [event[0] for event in recorder.events]
    assert recorder.events[0] == ("planned", ("full", "lora"), 0) and names[-1] == "closed"
    for method in ("full", "lora"):
        start = recorder.events.index(("started", method))
        end = recorder.events.index(("finished", method, "ok"))
        steps = [event for event in recorder.events[start:end] if event[0] == "step"]
        assert [event[1] for event in steps] == [1, 2, 3] and all(event[2] == 3 for event in steps)
    again = Recorder()
    compare(config, progress=again)  # everything finished: nothing pending, nothing started
    assert again.events == [("planned", (), 2), ("closed",)]


def test_cli_prints_one_line_per_finished_run_when_not_a_terminal(tmp_path, tiny_bert_dir, tiny_task_csv):
    result = CliRunner().invoke(app, ["compare", "--model", str(tiny_bert_dir), "--data", str(tiny_task_csv),
                                      "--methods", "full,lora,prefix", "--max-steps", "2", "--batch-size", "8",
                                      "--no-robustness", "--no-diagnose", *FIXED_RATES_CLI,
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if re.match(r"^(full|lora|prefix): ", line)]
    assert len(lines) == 3, result.stdout
    assert re.match(r"^full: ok, test accuracy \d\.\d{3}, \d+ s \(1 of 3 runs done, about \d+ s left\)$", lines[0])
    assert re.match(r"^lora: ok, test accuracy \d\.\d{3}, \d+ s \(2 of 3 runs done, about \d+ s left\)$", lines[1])
    assert lines[2].startswith("prefix: ") and lines[2].endswith("(3 of 3 runs done)")
    assert "\x1b[" not in result.stdout  # no live display, no escape codes


def test_live_display_on_a_terminal_and_time_left():
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120)
    display = ProgressDisplay(console)
    assert display.live and display.shows_steps
    display.study_planned(["full", "lora", "ia3"], 0)
    display.run_started("full")
    assert display.seconds_left() is None  # nothing measured yet
    for step in range(1, 5):
        display.step(step, 10, 1, 2)
    left = display.seconds_left()
    assert left is not None and left >= 0
    display.run_finished({"method": "full", "seed": 0, "status": "ok", "metrics": {"accuracy": 0.5},
                          "timing": {"wall_seconds": 60.0}})
    assert display.seconds_left() == 120.0  # two runs to go at the mean of the finished one
    display.run_started("lora")
    display.run_finished({"method": "lora", "seed": 0, "status": "failed", "reason": "boom", "metrics": {},
                          "timing": {"wall_seconds": 30.0}})
    assert display.seconds_left() == 45.0
    display.close()
    text = screen.getvalue()
    assert "full: ok, test accuracy 0.500, 60 s (1 of 3 runs done, about 2 min left)" in text
    assert "lora: failed (boom), 30 s (2 of 3 runs done, about 45 s left)" in text
    assert "\x1b[" in text  # the live display drew on the terminal


def test_words():
    assert duration(42) == "42 s" and duration(600) == "10 min" and duration(7200) == "2.0 h"
    assert run_line({"status": "refused", "reason": "no cache", "metrics": {}}, "prefix") == "prefix: refused (no cache)"
    assert run_line({"status": "ok", "metrics": {"exact_match": 0.25}}, "lora s1") == "lora s1: ok, test exact match 0.250"
