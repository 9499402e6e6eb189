"""Which evaluation a task type uses, and which of its scores a run's record keeps, by type name.

Thin wrappers over :mod:`peftlab.evaluate.kinds` for callers that still pass ``task.task_type``; new code asks
``kind_evaluation(task.kind)``.
"""

from __future__ import annotations

from typing import Callable

from peftlab.evaluate.kinds import kind_evaluation


def evaluation_for(task_type: str) -> Callable:
    return kind_evaluation(task_type).evaluate


def run_metrics(task_type: str, test: dict, best_validation: dict, best_epoch: int) -> dict:
    """The `metrics` of a run record: test scores, the best epoch's validation score, the best epoch."""
    return kind_evaluation(task_type).run_metrics(test, best_validation, best_epoch)
