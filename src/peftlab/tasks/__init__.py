"""Datasets from many sources, as one :class:`Task` of one :class:`TaskKind`.

``load_task("rotten_tomatoes")``, ``load_task("reviews.csv")``, ``load_task("bigbench/task.json")``,
``load_task("glue", subset="sst2")``, ``load_task("qa.jsonl", task_type="generation")``, ``load_task("scores.csv",
task_type="regression")``: see
:mod:`peftlab.tasks.sources` for the sources, :mod:`peftlab.tasks.kinds` for the task kinds,
:mod:`peftlab.tasks.labelled` (classification), :mod:`peftlab.tasks.regression` and :mod:`peftlab.tasks.prompted` (multiple choice, generation) for
column detection and validation, and :mod:`peftlab.tasks.splits` for splitting and sampling.
"""

from peftlab.tasks.kinds import (
    CLASSIFICATION,
    GENERATION,
    MULTIPLE_CHOICE,
    REGRESSION,
    TASK_KINDS,
    QualityMetric,
    TaskKind,
    task_kind,
    task_kind_of,
)
from peftlab.tasks.load import load_task
from peftlab.tasks.sources import DATA_ALIASES
from peftlab.tasks.task import Task

__all__ = [
    "CLASSIFICATION",
    "DATA_ALIASES",
    "GENERATION",
    "MULTIPLE_CHOICE",
    "QualityMetric",
    "REGRESSION",
    "TASK_KINDS",
    "Task",
    "TaskKind",
    "load_task",
    "task_kind",
    "task_kind_of",
]
