"""Which evaluation a task type uses, and which of its scores a run's record keeps.

The training loop and `compare` call the function :func:`evaluation_for` returns; they never branch on the type.
"""

from __future__ import annotations

from typing import Callable

from peftlab.evaluate.choice import evaluate_choices
from peftlab.evaluate.generation import evaluate_generation
from peftlab.evaluate.predict import evaluate_split

EVALUATIONS: dict[str, Callable] = {
    "classification": evaluate_split,
    "multiple-choice": evaluate_choices,
    "generation": evaluate_generation,
}


def evaluation_for(task_type: str) -> Callable:
    return EVALUATIONS[task_type]


def run_metrics(task_type: str, test: dict, best_validation: dict, best_epoch: int) -> dict:
    """The `metrics` of a run record: test scores, the best epoch's validation score, the best epoch."""
    if task_type == "generation":
        return {"exact_match": test["exact_match"], "normalized_match": test["normalized_match"],
                "test_loss": test["loss"], "test_perplexity": test["perplexity"],
                "validation_exact_match": best_validation["exact_match"], "best_epoch": best_epoch}
    metrics = {"accuracy": test["accuracy"], "macro_f1": test["macro_f1"], "test_loss": test["loss"],
               "validation_accuracy": best_validation["accuracy"], "best_epoch": best_epoch}
    if task_type == "multiple-choice":
        metrics.update(accuracy_unnormalized=test["accuracy_unnormalized"], test_perplexity=test["perplexity"])
    return metrics
