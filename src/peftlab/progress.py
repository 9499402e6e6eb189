"""What a running study tells whoever watches it: the runs planned, each run's start, its training steps, its end.

:class:`StudyProgress` is the listener every layer can call without knowing who listens: the driver
(:mod:`peftlab.study.driver`) reports the plan and each run's start and record, the training loop
(:mod:`peftlab.train.trainer`) reports its steps for runs in this process. Every method is a no-op here; the
command line's display (:mod:`peftlab.report.progress`) prints one line per finished run and, on a terminal, a
live progress display. Runs in worker processes or Ray tasks report their start and end only.
"""

from __future__ import annotations

from typing import Any


class StudyProgress:
    """A study's events; subclass and override what you watch."""

    shows_steps = False  # True: the training loop reports every step here (and its own tqdm bar stays off)

    def study_planned(self, pending: list[str], finished: int) -> None:
        """The runs about to execute (their labels: method, and seed when several), and how many the store had
        already finished."""

    def run_started(self, label: str) -> None:
        """A run (or a learning-rate trial) starts."""

    def step(self, steps: int, total_steps: int, epoch: int, epochs: int) -> None:
        """A training step of the run in progress finished (runs in this process only)."""

    def run_finished(self, record: dict[str, Any]) -> None:
        """A run finished with this record (status ok, failed or refused)."""

    def close(self) -> None:
        """The study is over (or interrupted): stop any live display."""
