"""One :class:`TaskKind` object per task type: everything that differs between task types, in one place.

A kind is data, in the way an lm-evaluation-harness task's ``output_type`` is: its name (results.json's
``task.type``), how its data is loaded and encoded, the model it trains (a sequence classifier, a causal LM or a
seq2seq LM), the validation score that picks the best epoch, the two quality metrics tables show, the probes that
apply to its runs, what its per-example test record is (the verdict's paired comparison) and the task the cost
estimate models. Code asks ``task.kind`` (or :func:`task_kind` when it only has a results header), never a type
string. Adding a task type is one more object here and its evaluation in :mod:`peftlab.evaluate.kinds` (regression
was added so: :data:`REGRESSION`, :mod:`peftlab.tasks.regression`, :mod:`peftlab.evaluate.regression`).

The prompted kinds (multiple choice, generation) have one variant per model *stack*: ``decoder`` (a causal LM,
prompt and answer one sequence, :mod:`peftlab.tasks.causal`) and ``encoder-decoder`` (T5, BART, ...: the prompt
the encoder's input, the answer the decoder's labels, :mod:`peftlab.tasks.seq2seq`). Both variants have the same
name (results.json says ``generation`` either way); :meth:`TaskKind.for_model` picks one from the model's config
(``is_encoder_decoder``), and the variant picks encoder, model loader, evaluation and the estimate's task. Nothing
else asks which stack a model is. Classification has one variant: a sequence-classification head on any model,
encoder-decoders included (transformers' ``T5ForSequenceClassification``, ``BartForSequenceClassification``).

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

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

from peftlab.errors import TaskKindError
from peftlab.models.load import (
    is_encoder_decoder,
    load_causal_lm,
    load_classifier,
    load_config,
    load_regressor,
    load_seq2seq_lm,
)
from peftlab.tasks.causal import encode_choice_task, encode_generation_task
from peftlab.tasks.encode import encode_labelled_task
from peftlab.tasks.labelled import load_labelled_task
from peftlab.tasks.prompted import load_generation_task, load_multiple_choice_task
from peftlab.tasks.regression import encode_regression_task, load_regression_task
from peftlab.tasks.seq2seq import encode_seq2seq_choice_task, encode_seq2seq_generation_task

if TYPE_CHECKING:
    import datasets
    from transformers import PreTrainedModel

    from peftlab.models.load import ModelRef
    from peftlab.tasks.task import Task

ROBUSTNESS = "robustness"  # perturbations (peftlab.evaluate.robustness, peftlab.evaluate.regression)
ATTACKS = "attacks"  # the robustness probe's word-substitution attacks: they flip a predicted class
ROBUST_SET = "robust-set"  # --robust-set: an external file of class labels
DIAGNOSIS = "diagnosis"  # the signals of `peftlab diagnose` (peftlab.diagnose)
PROBES = (ROBUSTNESS, ATTACKS, ROBUST_SET, DIAGNOSIS)  # probes that apply to some kinds only; latency, estimate: all
HITS = "hits"  # a run's per-example test record: right or wrong (test_correct)
PREDICTIONS = "predictions"  # a run's per-example test record: predicted and true values (test_predictions)
DECODER = "decoder"  # stacks of a prompted kind's variants: a causal LM
ENCODER_DECODER = "encoder-decoder"  # a seq2seq LM (the config's is_encoder_decoder)


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
    estimate_task: str  # the task peftlab.estimate models: "classification", "causal-lm" or "seq2seq-lm"
    probes: frozenset[str] = field(default_factory=frozenset)  # of PROBES
    majority_baseline: bool = False  # labels are classes: always answering the commonest one is a baseline
    chance_baseline: bool = False  # answers are choices: guessing without reading the input is a baseline
    fresh_head: bool = False  # the model loader puts a new, randomly initialised head on the base (a classifier)
    baseline_name: str = "zero"  # what a headline score of 0 is, when there is no majority baseline (the verdict)
    per_example: str = HITS  # HITS or PREDICTIONS: what the verdict's paired comparison of two runs reads
    stack: str | None = None  # the model stack this variant trains (DECODER, ENCODER_DECODER); None: any model

    def load(self, data: str, **options) -> Task:
        """``data`` as a Task of this kind; ``options`` as :func:`peftlab.tasks.load_task` takes them."""
        return self.load_data(data, self, **options)

    def applies(self, probe: str) -> bool:
        """Whether the probe (one of :data:`PROBES`) measures runs of this kind."""
        if probe not in PROBES:
            raise ValueError(f"unknown probe {probe!r}; the probes that depend on the task kind: {', '.join(PROBES)}")
        return probe in self.probes

    def for_model(self, model_config) -> TaskKind:
        """This kind's variant for the model whose config this is: the encoder-decoder one for a model whose
        config says ``is_encoder_decoder``, the decoder one otherwise; itself for a kind with one variant."""
        stack = ENCODER_DECODER if is_encoder_decoder(model_config) else DECODER
        return KIND_VARIANTS.get((self.name, stack), self)

    def __reduce__(self):  # a pickled kind (a Task sent to a worker process) comes back as the same object
        return task_kind, (self.name, self.stack)

    def __repr__(self) -> str:
        return f"TaskKind({self.name!r})" if TASK_KINDS.get(self.name) is self else \
            f"TaskKind({self.name!r}, stack={self.stack!r})"


# The model loaders take the label names, not the Task, so that a saved run (its run.json has them) can be loaded.
# A prompted kind's loader looks at the config itself, so that a saved run (whose run.json names the kind, not its
# variant) loads the right class whichever variant loads it.
def _language_model(ref: ModelRef, label_names: list[str], pad_token_id: int | None = None,
                    **load_kwargs) -> PreTrainedModel:
    """The model's own LM head (no labels): a seq2seq LM for an encoder-decoder, else a causal LM."""
    load = load_seq2seq_lm if is_encoder_decoder(load_config(ref)) else load_causal_lm
    return load(ref, pad_token_id, **load_kwargs)


ACCURACY = QualityMetric("accuracy", "accuracy")
SPEARMAN = QualityMetric("spearman", "Spearman")  # rank correlation of predictions with targets
PEARSON = QualityMetric("pearson", "Pearson")
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
    probes=frozenset({ROBUSTNESS, ATTACKS, ROBUST_SET, DIAGNOSIS}),
    majority_baseline=True,
    fresh_head=True,
)

MULTIPLE_CHOICE = TaskKind(
    name="multiple-choice",
    load_data=load_multiple_choice_task,
    encode=encode_choice_task,
    load_model=_language_model,
    selection_metric="accuracy",  # of the choice with the highest mean log-likelihood per token
    quality_metrics=(ACCURACY, MACRO_F1),
    estimate_task="causal-lm",  # the LM head over every position
    chance_baseline=True,
    stack=DECODER,
)

GENERATION = TaskKind(
    name="generation",
    load_data=load_generation_task,
    encode=encode_generation_task,
    load_model=_language_model,
    selection_metric="neg_loss",  # exact match on a small validation split is often tied (0 early in training)
    quality_metrics=(EXACT_MATCH, NORMALIZED_MATCH),
    estimate_task="causal-lm",
    stack=DECODER,
)

REGRESSION = TaskKind(
    name="regression",
    load_data=load_regression_task,  # a float target per text; standardised for training (tasks/regression.py)
    encode=encode_regression_task,
    load_model=load_regressor,  # a one-output head, MSE loss
    selection_metric="spearman",
    quality_metrics=(SPEARMAN, PEARSON),  # MSE and MAE are in the run's metrics too
    estimate_task="classification",  # the same sequence-classification model, one output
    probes=frozenset({ROBUSTNESS, DIAGNOSIS}),  # perturbations as the change in MAE (no attacks, no robust set);
    # the diagnosis with a ridge probe
    baseline_name="training mean",  # predicting the training mean everywhere: Spearman 0
    per_example=PREDICTIONS,
    fresh_head=True,
)

# The encoder-decoder variants: the same task types, encoded as encoder input + decoder labels
SEQ2SEQ_MULTIPLE_CHOICE = dataclasses.replace(MULTIPLE_CHOICE, encode=encode_seq2seq_choice_task,
                                              estimate_task="seq2seq-lm", stack=ENCODER_DECODER)
SEQ2SEQ_GENERATION = dataclasses.replace(GENERATION, encode=encode_seq2seq_generation_task,
                                         estimate_task="seq2seq-lm", stack=ENCODER_DECODER)

TASK_KINDS: dict[str, TaskKind] = {kind.name: kind for kind in (CLASSIFICATION, REGRESSION, MULTIPLE_CHOICE,
                                                                  GENERATION)}
# every variant of every kind, by (name, stack); a kind's default variant (TASK_KINDS) is the decoder one
KIND_VARIANTS: dict[tuple[str, str | None], TaskKind] = {
    (kind.name, kind.stack): kind
    for kind in (CLASSIFICATION, REGRESSION, MULTIPLE_CHOICE, SEQ2SEQ_MULTIPLE_CHOICE, GENERATION,
                 SEQ2SEQ_GENERATION)
}


def task_kind(name: str, stack: str | None = None) -> TaskKind:
    """The kind called ``name`` (``task.type`` in results.json), its variant for ``stack`` when given (a
    pickled kind names it); TaskKindError for an unknown name."""
    if name not in TASK_KINDS:
        raise TaskKindError(f"unknown task type {name!r}; known task types: {', '.join(TASK_KINDS)}")
    return KIND_VARIANTS.get((name, stack), TASK_KINDS[name])


def task_kind_of(description: dict | None) -> TaskKind:
    """The kind of a results header's ``task`` (:meth:`Task.describe`); one without a ``type`` (written before there
    were task types, or a hand-made header) is classification."""
    return task_kind((description or {}).get("type") or CLASSIFICATION.name)
