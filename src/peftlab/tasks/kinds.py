"""One :class:`TaskKind` object per task type: everything that differs between task types, in one place.

A kind is data, in the way an lm-evaluation-harness task's ``output_type`` is: its name (results.json's
``task.type``), how its data is loaded and encoded, the model it trains (a sequence classifier or a causal LM),
the validation score that picks the best epoch, the two quality metrics tables show, the probes that apply to its
runs and the task the cost estimate models. Code asks ``task.kind`` (or :func:`task_kind` when it only has a
results header), never a type string. Adding a task type (regression next) is one more object here and its
evaluation in :mod:`peftlab.evaluate.kinds`.

Why the kind is split across two floors: a :class:`~peftlab.tasks.task.Task` (floor 2) carries its kind, so the
kind must be importable from floor 2, but evaluating a model is floor 3 (:mod:`peftlab.evaluate`, which imports
this package's batching). So the kind here holds everything that needs no evaluation code, and
:mod:`peftlab.evaluate.kinds` maps each kind to its evaluation function and to how a run's metrics are assembled
(a test there checks that every kind has one). The model loaders come from :mod:`peftlab.models`, the bottom of
floor 2: it imports no other floor-2 package (``methods`` imports it too), so ``tasks -> models`` is acyclic.
This module imports the loaders and encoders; none of them imports it (they get their kind as an argument, and
:class:`~peftlab.tasks.task.Task` names it only for type checking), which keeps ``peftlab.tasks`` free of cycles.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

from peftlab.errors import TaskKindError
from peftlab.models.load import load_causal_lm, load_classifier
from peftlab.tasks.causal import encode_choice_task, encode_generation_task
from peftlab.tasks.encode import encode_labelled_task
from peftlab.tasks.labelled import load_labelled_task
from peftlab.tasks.prompted import load_generation_task, load_multiple_choice_task

if TYPE_CHECKING:
    import datasets
    from transformers import PreTrainedModel

    from peftlab.models.load import ModelRef
    from peftlab.tasks.task import Task

ROBUSTNESS = "robustness"  # perturbations, attacks and --robust-set (peftlab.evaluate.robustness)
DIAGNOSIS = "diagnosis"  # the signals of `peftlab diagnose` (peftlab.diagnose)
PROBES = (ROBUSTNESS, DIAGNOSIS)  # probes that apply to some kinds only; latency and the estimate check: all


class QualityMetric(NamedTuple):
    """A test score shown in the tables: its key in a run's ``metrics`` and its name in a column title."""

    key: str
    title: str


@dataclass(frozen=True, eq=False)
class TaskKind:
    """What one task type is and does (see the module docstring). Compared by identity: one object per type."""

    name: str  # results.json task.type, --task
    load_data: Callable[..., Task]  # (data, kind, **load_task options) -> Task
    encode: Callable[[Task, Any, int], dict[str, datasets.Dataset]]  # (task, tokenizer, max_length) -> splits
    load_model: Callable[..., PreTrainedModel]  # (model ref, label names, pad_token_id=None, **from_pretrained kw)
    selection_metric: str  # the validation score the trainer keeps the best epoch by (higher is better)
    quality_metrics: tuple[QualityMetric, QualityMetric]  # the first is the headline score
    estimate_task: str  # the task peftlab.estimate models: "classification" or "causal-lm"
    probes: frozenset[str] = field(default_factory=frozenset)  # of PROBES
    majority_baseline: bool = False  # labels are classes: always answering the commonest one is a baseline

    def load(self, data: str, **options) -> Task:
        """``data`` as a Task of this kind; ``options`` as :func:`peftlab.tasks.load_task` takes them."""
        return self.load_data(data, self, **options)

    def applies(self, probe: str) -> bool:
        """Whether the probe (one of :data:`PROBES`) measures runs of this kind."""
        if probe not in PROBES:
            raise ValueError(f"unknown probe {probe!r}; the probes that depend on the task kind: {', '.join(PROBES)}")
        return probe in self.probes

    def __reduce__(self):  # a pickled kind (a Task sent to a worker process) comes back as the same object
        return task_kind, (self.name,)

    def __repr__(self) -> str:
        return f"TaskKind({self.name!r})"


# The model loaders take the label names, not the Task, so that a saved run (its run.json has them) can be loaded.
def _causal_lm(ref: ModelRef, label_names: list[str], pad_token_id: int | None = None,
               **load_kwargs) -> PreTrainedModel:
    return load_causal_lm(ref, pad_token_id, **load_kwargs)  # the LM head is the model's own: no labels


ACCURACY = QualityMetric("accuracy", "accuracy")
MACRO_F1 = QualityMetric("macro_f1", "macro F1")
EXACT_MATCH = QualityMetric("exact_match", "exact match")  # the stripped completion equals a reference
NORMALIZED_MATCH = QualityMetric("normalized_match", "normalised match")  # equal after SQuAD normalisation

CLASSIFICATION = TaskKind(
    name="classification",
    load_data=load_labelled_task,
    encode=encode_labelled_task,
    load_model=load_classifier,  # a new head on the pretrained base (decoders: on the last non-padding token)
    selection_metric="accuracy",
    quality_metrics=(ACCURACY, MACRO_F1),
    estimate_task="classification",
    probes=frozenset({ROBUSTNESS, DIAGNOSIS}),
    majority_baseline=True,
)

MULTIPLE_CHOICE = TaskKind(
    name="multiple-choice",
    load_data=load_multiple_choice_task,
    encode=encode_choice_task,
    load_model=_causal_lm,
    selection_metric="accuracy",  # of the choice with the highest mean log-likelihood per token
    quality_metrics=(ACCURACY, MACRO_F1),
    estimate_task="causal-lm",  # the LM head over every position
)

GENERATION = TaskKind(
    name="generation",
    load_data=load_generation_task,
    encode=encode_generation_task,
    load_model=_causal_lm,
    selection_metric="neg_loss",  # exact match on a small validation split is often tied (0 early in training)
    quality_metrics=(EXACT_MATCH, NORMALIZED_MATCH),
    estimate_task="causal-lm",
)

TASK_KINDS: dict[str, TaskKind] = {kind.name: kind for kind in (CLASSIFICATION, MULTIPLE_CHOICE, GENERATION)}


def task_kind(name: str) -> TaskKind:
    """The kind called ``name`` (``task.type`` in results.json); TaskKindError for an unknown one."""
    if name not in TASK_KINDS:
        raise TaskKindError(f"unknown task type {name!r}; known task types: {', '.join(TASK_KINDS)}")
    return TASK_KINDS[name]


def task_kind_of(description: dict | None) -> TaskKind:
    """The kind of a results header's ``task`` (:meth:`Task.describe`); one without a ``type`` (written before there
    were task types, or a hand-made header) is classification."""
    return task_kind((description or {}).get("type") or CLASSIFICATION.name)
