"""Load a dataset as a :class:`~peftlab.tasks.task.Task` of the kind asked for, or of the kind its data shows."""

from __future__ import annotations

import logging

from peftlab.errors import ConfigError, TaskKindError
from peftlab.tasks.kinds import CLASSIFICATION, GENERATION, REGRESSION, TASK_KINDS, TaskKind, task_kind
from peftlab.tasks.labelled import NumericLabels
from peftlab.tasks.prompted import looks_like_generation
from peftlab.tasks.regression import MIN_DISTINCT_TARGETS
from peftlab.tasks.task import Task

log = logging.getLogger(__name__)


def load_task(data: str, *, subset: str | None = None, split: str | None = None,
              text_column: str | None = None, text_pair_column: str | None = None, label_column: str | None = None,
              max_train_examples: int | None = None, max_eval_examples: int | None = None,
              seed: int = 0, task_type: str | None = None, model_config=None) -> Task:
    """Load ``data`` (an alias, a local file or folder, or an HF dataset name) as a :class:`Task`.

    ``task_type`` names the kind (:data:`peftlab.tasks.kinds.TASK_KINDS`); None infers it from the data (see
    :func:`infer_kind`). ``model_config``, the config of the model the task will train, picks the kind's variant for
    it (:meth:`TaskKind.for_model`: an encoder-decoder's); None keeps the kind's default (decoder) variant. The kind's
    loader does the rest (:mod:`peftlab.tasks.labelled`, :mod:`peftlab.tasks.prompted`).
    """
    for flag, cap in (("--max-train-examples", max_train_examples), ("--max-eval-examples", max_eval_examples)):
        if cap is not None and cap < 0:
            raise ConfigError(f"{flag} must be 0 (no cap) or a positive number, not {cap}")
    kind = chosen_kind(task_type) if task_type is not None else infer_kind(data)
    if model_config is not None:
        kind = kind.for_model(model_config)
    options = dict(subset=subset, split=split, text_column=text_column, text_pair_column=text_pair_column,
                   label_column=label_column, max_train_examples=max_train_examples,
                   max_eval_examples=max_eval_examples, seed=seed)
    try:
        return kind.load(data, **options)
    except NumericLabels as numbers:
        if task_type is not None or numbers.distinct < MIN_DISTINCT_TARGETS:
            raise
    log.info("the label column of %s holds fractional numbers: loading it as a regression task", data)
    return REGRESSION.load(data, **options)


def chosen_kind(name: str) -> TaskKind:
    """The kind ``--task`` names; TaskKindError saying which names --task takes."""
    try:
        return task_kind(name)
    except TaskKindError:
        raise TaskKindError(f"--task must be one of {', '.join(TASK_KINDS)}, got {name!r}") from None


def infer_kind(data: str) -> TaskKind:
    """generation when a local JSON/JSONL file obviously holds prompts and answers; else classification (which
    :func:`load_task` turns into regression when the label column holds fractional numbers with at least
    :data:`~peftlab.tasks.regression.MIN_DISTINCT_TARGETS` distinct values)."""
    return GENERATION if looks_like_generation(data) else CLASSIFICATION
