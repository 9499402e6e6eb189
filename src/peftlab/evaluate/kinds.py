"""The evaluation side of each task kind: how a trained model is scored, and which scores a run's record keeps.

A :class:`~peftlab.tasks.kinds.TaskKind` lives at floor 2 with its Task; scoring a model is floor 3, so each kind's
:class:`KindEvaluation` is here (the reason is in :mod:`peftlab.tasks.kinds`). The trainer and ``compare`` call
``kind_evaluation(task.kind).evaluate`` after every epoch and on test, and ``.run_metrics`` for the record; they
never branch on the task type (nor on the model's stack: each variant of a kind, :data:`peftlab.tasks.kinds.KIND_VARIANTS`, has its
own). Every kind must have one (tests/test_task_kinds.py checks it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from peftlab.evaluate.choice import evaluate_choices, evaluate_seq2seq_choices
from peftlab.evaluate.generation import evaluate_generation, evaluate_seq2seq_generation
from peftlab.evaluate.predict import evaluate_split
from peftlab.evaluate.regression import evaluate_regression, evaluate_regression_robustness
from peftlab.evaluate.robustness import evaluate_robustness
from peftlab.tasks.kinds import (
    CLASSIFICATION,
    GENERATION,
    MULTIPLE_CHOICE,
    REGRESSION,
    SEQ2SEQ_GENERATION,
    SEQ2SEQ_MULTIPLE_CHOICE,
    TaskKind,
    task_kind,
)

# (model, encoded split, tokenizer, batch size, device, num_labels, description) -> scores, higher-is-better keys
# among them (the kind's selection_metric) plus "loss"
Evaluate = Callable[..., dict]
# (test scores, best epoch's validation scores, best epoch) -> a run record's "metrics"
RunMetrics = Callable[[dict, dict, int], dict]
# (model, tokenizer, the study's RobustnessSuite, device, task) -> the run's robustness record
Robustness = Callable[..., dict]


@dataclass(frozen=True)
class KindEvaluation:
    """How runs of one task kind are scored (``evaluate``), recorded (``run_metrics``) and, for a kind the
    robustness probe applies to, measured on the perturbed suite (``robustness``)."""

    kind: TaskKind
    evaluate: Evaluate
    run_metrics: RunMetrics
    robustness: Robustness | None = None


def _classification_metrics(test: dict, best_validation: dict, best_epoch: int) -> dict:
    return {"accuracy": test["accuracy"], "macro_f1": test["macro_f1"], "test_loss": test["loss"],
            "validation_accuracy": best_validation["accuracy"], "best_epoch": best_epoch}


def _classification_robustness(model, tokenizer, suite, device, task) -> dict:
    return evaluate_robustness(model, tokenizer, suite, device)


def _regression_metrics(test: dict, best_validation: dict, best_epoch: int) -> dict:
    return {"spearman": test["spearman"], "pearson": test["pearson"], "mse": test["mse"], "mae": test["mae"],
            "test_loss": test["loss"], "validation_spearman": best_validation["spearman"], "best_epoch": best_epoch}


def _choice_metrics(test: dict, best_validation: dict, best_epoch: int) -> dict:
    return {**_classification_metrics(test, best_validation, best_epoch),
            "accuracy_unnormalized": test["accuracy_unnormalized"], "test_perplexity": test["perplexity"]}


def _generation_metrics(test: dict, best_validation: dict, best_epoch: int) -> dict:
    return {"exact_match": test["exact_match"], "normalized_match": test["normalized_match"],
            "test_loss": test["loss"], "test_perplexity": test["perplexity"],
            "validation_exact_match": best_validation["exact_match"], "best_epoch": best_epoch}


KIND_EVALUATIONS: dict[TaskKind, KindEvaluation] = {
    evaluation.kind: evaluation for evaluation in (
        KindEvaluation(CLASSIFICATION, evaluate_split, _classification_metrics, _classification_robustness),
        # one output, scored in the target's units; robustness as the change in MAE (peftlab.evaluate.regression)
        KindEvaluation(REGRESSION, evaluate_regression, _regression_metrics, evaluate_regression_robustness),
        KindEvaluation(MULTIPLE_CHOICE, evaluate_choices, _choice_metrics),  # likelihood of each choice
        KindEvaluation(GENERATION, evaluate_generation, _generation_metrics),  # greedy decoding
        # the encoder-decoder variants: scored and decoded from the encoder's input, the same metrics
        KindEvaluation(SEQ2SEQ_MULTIPLE_CHOICE, evaluate_seq2seq_choices, _choice_metrics),
        KindEvaluation(SEQ2SEQ_GENERATION, evaluate_seq2seq_generation, _generation_metrics),
    )
}


def kind_evaluation(kind: TaskKind | str) -> KindEvaluation:
    """The evaluation of a kind, or of the kind with that name (TaskKindError for an unknown name)."""
    return KIND_EVALUATIONS[task_kind(kind) if isinstance(kind, str) else kind]
