"""The study's progress as the command line shows it: one line per finished run, and a live display on a terminal.

Every finished run prints one line, also when stdout is a file or a pipe (CI logs, ``nohup``)::

    lora: ok, test accuracy 0.812, 34 s (3 of 7 runs done, about 2 min left)

The time left is the runs still to go times the mean wall time of the runs finished in this invocation (before
the first finishes: the run in progress's steps so far, extrapolated). On a terminal a rich progress display
(:class:`rich.progress.Progress`, transient) shows the study's runs and the run in progress with its epoch and
step above the lines; it is rich's, not drawn here.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from peftlab.progress import StudyProgress

SCORE_KEYS = ("accuracy", "exact_match", "spearman")  # the first a record has is its line's score


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def run_line(record: dict[str, Any], label: str) -> str:
    """"lora: ok, test accuracy 0.812" or "prefix: refused (<reason>)"."""
    status = "ok" if record["status"] == "ok" else f"{record['status']} ({record.get('reason', '')})"
    metrics = record.get("metrics") or {}
    score = next(((key, metrics[key]) for key in SCORE_KEYS if isinstance(metrics.get(key), (int, float))), None)
    return f"{label}: {status}" + (f", test {score[0].replace('_', ' ')} {score[1]:.3f}" if score else "")


class ProgressDisplay(StudyProgress):
    """Prints to ``console``; ``live`` (default: the console is a terminal) adds the rich progress display."""

    def __init__(self, console: Console, live: bool | None = None, seeds: int = 1):
        self.console, self.seeds = console, seeds
        self.live = console.is_terminal if live is None else live
        self.shows_steps = self.live
        self.total = self.done = 0
        self.seconds: list[float] = []  # wall time of the runs finished in this invocation
        self.current: str | None = None
        self.run_start = self.step_start = time.perf_counter()
        self.steps = self.total_steps = self.first_step = 0
        self.bar: Progress | None = None
        self.study_task = self.run_task = None

    # --- events --------------------------------------------------------------------------------------------------

    def study_planned(self, pending: list[str], finished: int) -> None:
        self.total, self.done = len(pending) + finished, finished
        if finished:
            self.console.print(f"{finished} of {self.total} runs already finished in this study folder; "
                               f"{len(pending)} to go", highlight=False)
        if self.live and pending:
            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), TextColumn("{task.fields[left]}"), console=self.console,
                                transient=True)
            self.study_task = self.bar.add_task("study", total=self.total, completed=finished, left="")
            self.run_task = self.bar.add_task("", total=None, visible=False, left="")
            self.bar.start()

    def run_started(self, label: str) -> None:
        self.current, self.steps, self.total_steps = label, 0, 0
        self.run_start = time.perf_counter()
        if self.bar is not None:
            self.bar.update(self.run_task, description=f"{label}: building", completed=0, total=None, visible=True)

    def step(self, steps: int, total_steps: int, epoch: int, epochs: int) -> None:
        if self.steps == 0 or steps < self.steps:  # the run's first step here (it may resume mid-way)
            self.step_start, self.first_step = time.perf_counter(), steps
        self.steps, self.total_steps = steps, total_steps
        if self.bar is not None:
            self.bar.update(self.run_task, description=f"{self.current}: epoch {epoch}/{epochs}, step",
                            completed=steps, total=total_steps)
            self.bar.update(self.study_task, left=self._left_words())

    def run_finished(self, record: dict[str, Any]) -> None:
        self.done += 1
        seconds = (record.get("timing") or {}).get("wall_seconds") or time.perf_counter() - self.run_start
        self.seconds.append(seconds)
        self.steps = self.total_steps = 0
        label = record["method"] + (f" s{record['seed']}" if self.seeds > 1 and record.get("seed") is not None else "")
        left = self._left_words()
        self.console.print(f"{run_line(record, label)}, {duration(seconds)} ({self.done} of {self.total} runs done"
                           + (f", {left}" if left else "") + ")", highlight=False, markup=False, soft_wrap=True)
        if self.bar is not None:
            self.bar.update(self.study_task, completed=self.done, left=left)
            self.bar.update(self.run_task, visible=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None

    # --- time left -----------------------------------------------------------------------------------------------

    def seconds_left(self) -> float | None:
        """The study's time left: the run in progress's rest plus the runs not started times the mean run."""
        remaining = self.total - self.done
        if remaining <= 0:
            return 0.0 if self.total else None
        current_left = current_total = None
        trained = self.steps - self.first_step
        if self.total_steps and trained > 0:
            per_step = (time.perf_counter() - self.step_start) / trained
            current_left = per_step * (self.total_steps - self.steps)
            current_total = per_step * self.total_steps
        mean = sum(self.seconds) / len(self.seconds) if self.seconds else current_total
        if mean is None:
            return None
        if self.current is not None and current_left is not None:
            return current_left + (remaining - 1) * mean
        return remaining * mean

    def _left_words(self) -> str:
        left = self.seconds_left()
        return "" if left is None or self.done >= self.total else f"about {duration(left)} left"
