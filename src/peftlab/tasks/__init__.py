"""Labelled text-classification datasets from many sources, as one :class:`Task`.

``load_task("rotten_tomatoes")``, ``load_task("reviews.csv")``, ``load_task("bigbench/task.json")``,
``load_task("glue", subset="sst2")``: see :mod:`peftlab.tasks.sources` for the sources and
:mod:`peftlab.tasks.task` for column detection, validation, splitting and sampling.
"""

from peftlab.tasks.sources import DATA_ALIASES
from peftlab.tasks.task import Task, load_task

__all__ = ["DATA_ALIASES", "Task", "load_task"]
