"""peftlab.tasks.kinds and peftlab.evaluate.kinds: one TaskKind per task type owns what differs between types.

Each kind's attributes; the lookup by name and its error; a loaded task's kind; the kind's encoder, model loader and
evaluation on a tiny BERT (classification) and a tiny random Llama (multiple choice, generation), with the run
metrics the record kept before the kinds existed.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from peftlab.errors import ConfigError, PeftlabError, TaskKindError
from peftlab.estimate.params import TASKS as ESTIMATE_TASKS
from peftlab.evaluate.kinds import KIND_EVALUATIONS, kind_evaluation
from peftlab.models import load_tokenizer, resolve_model
from peftlab.tasks import (
    CLASSIFICATION,
    GENERATION,
    MULTIPLE_CHOICE,
    REGRESSION,
    TASK_KINDS,
    TaskKind,
    load_task,
    task_kind,
    task_kind_of,
)
from peftlab.tasks.encode import encode_task
from peftlab.tasks.kinds import DIAGNOSIS, KIND_VARIANTS, ROBUSTNESS

SRC = Path(__file__).resolve().parents[1] / "src" / "peftlab"

# name -> (selection metric, quality metrics (key, title), robustness applies, diagnosis applies, estimate task)
EXPECTED = {
    "classification": ("accuracy", [("accuracy", "accuracy"), ("macro_f1", "macro F1")], True, True,
                       "classification"),
    "regression": ("spearman", [("spearman", "Spearman"), ("pearson", "Pearson")], True, True, "classification"),
    "multiple-choice": ("accuracy", [("accuracy", "accuracy"), ("macro_f1", "macro F1")], False, False, "causal-lm"),
    "generation": ("neg_loss", [("exact_match", "exact match"), ("normalized_match", "normalised match")], False,
                   False, "causal-lm"),
}


# --- the kinds ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(EXPECTED))
def test_each_kind_owns_its_metrics_probes_and_estimate_task(name):
    selection, quality, robustness, diagnosis, estimate_task = EXPECTED[name]
    kind = task_kind(name)
    assert isinstance(kind, TaskKind) and kind.name == name and TASK_KINDS[name] is kind
    assert kind.selection_metric == selection
    assert [tuple(metric) for metric in kind.quality_metrics] == quality
    assert [(metric.key, metric.title) for metric in kind.quality_metrics] == quality
    assert kind.applies(ROBUSTNESS) is robustness and kind.applies(DIAGNOSIS) is diagnosis
    assert kind.estimate_task == estimate_task and kind.estimate_task in ESTIMATE_TASKS
    assert kind.majority_baseline is (name == "classification")


def test_the_four_kinds_and_their_names():
    assert list(TASK_KINDS) == ["classification", "regression", "multiple-choice", "generation"]
    assert (task_kind("classification"), task_kind("regression"), task_kind("multiple-choice"),
            task_kind("generation")) == (CLASSIFICATION, REGRESSION, MULTIPLE_CHOICE, GENERATION)
    assert repr(GENERATION) == "TaskKind('generation')"
    assert len({CLASSIFICATION, REGRESSION, MULTIPLE_CHOICE, GENERATION}) == 4  # hashable, compared by identity


def test_an_unknown_name_is_one_clear_error():
    with pytest.raises(TaskKindError, match=r"unknown task type 'ranking'; known task types: classification, "
                                            r"regression, multiple-choice, generation"):
        task_kind("ranking")
    assert issubclass(TaskKindError, ConfigError) and issubclass(TaskKindError, PeftlabError)
    with pytest.raises(ValueError, match="unknown probe 'latency'"):
        CLASSIFICATION.applies("latency")  # a typo in a probe name is a bug, not a "no"


def test_the_kind_of_a_results_header():
    assert task_kind_of({"name": "x", "type": "generation"}) is GENERATION
    assert task_kind_of({"name": "x"}) is CLASSIFICATION  # headers written before there were task types
    assert task_kind_of(None) is CLASSIFICATION
    with pytest.raises(TaskKindError):
        task_kind_of({"type": "ranking"})


def test_a_kind_survives_pickling_as_the_same_object():
    assert pickle.loads(pickle.dumps(MULTIPLE_CHOICE)) is MULTIPLE_CHOICE


def test_every_kind_has_an_evaluation():
    assert set(KIND_EVALUATIONS) == set(KIND_VARIANTS.values()) >= set(TASK_KINDS.values())  # every variant too
    for kind in KIND_VARIANTS.values():
        assert kind_evaluation(kind).kind is kind
    for name, kind in TASK_KINDS.items():
        assert kind_evaluation(kind) is kind_evaluation(name) and kind_evaluation(kind).kind is kind
    with pytest.raises(TaskKindError):
        kind_evaluation("ranking")


# --- a loaded task's kind ------------------------------------------------------------------------------------------

def test_a_loaded_task_knows_its_kind(tiny_task_csv, colour_bigbench, colour_jsonl):
    classification = load_task(str(tiny_task_csv))
    assert classification.kind is CLASSIFICATION and classification.task_type == "classification"
    assert classification.describe()["type"] == "classification" and classification.test_majority_share() is not None
    assert load_task(str(colour_bigbench)).kind is CLASSIFICATION  # target_scores without --task, as before
    choice = load_task(str(colour_bigbench), task_type="multiple-choice")
    assert choice.kind is MULTIPLE_CHOICE and choice.selection_metric == "accuracy"
    assert choice.describe()["type"] == "multiple-choice" and choice.test_majority_share() is None
    test = choice.splits["test"]  # chance: the better of a uniform guess and always the commonest correct choice
    uniform = sum(1 / len(c) for c in test["choices"]) / len(test)
    commonest = max(list(test["label"]).count(label) for label in set(test["label"])) / len(test)
    assert choice.describe()["test_chance_share"] == pytest.approx(max(uniform, commonest)) and uniform > 0
    assert classification.describe()["test_chance_share"] is None
    generation = load_task(str(colour_jsonl))  # inferred from the prompt/completion records
    assert generation.kind is GENERATION and generation.selection_metric == "neg_loss"
    assert load_task(str(colour_bigbench), task_type="generation").kind is GENERATION
    assert MULTIPLE_CHOICE.load(str(colour_bigbench)).sha256 == choice.sha256  # what load_task calls
    with pytest.raises(TaskKindError, match="--task must be one of classification, regression, multiple-choice, "
                                            "generation"):
        load_task(str(colour_jsonl), task_type="ranking")


# --- encoding, model and evaluation of each kind, on tiny models ------------------------------------------------------

def _old_run_metrics(task_type: str, test: dict, best_validation: dict, best_epoch: int) -> dict:
    """evaluate/by_task.py run_metrics as it was before the kinds (commit 8d04f24), verbatim."""
    if task_type == "generation":
        return {"exact_match": test["exact_match"], "normalized_match": test["normalized_match"],
                "test_loss": test["loss"], "test_perplexity": test["perplexity"],
                "validation_exact_match": best_validation["exact_match"], "best_epoch": best_epoch}
    metrics = {"accuracy": test["accuracy"], "macro_f1": test["macro_f1"], "test_loss": test["loss"],
               "validation_accuracy": best_validation["accuracy"], "best_epoch": best_epoch}
    if task_type == "multiple-choice":
        metrics.update(accuracy_unnormalized=test["accuracy_unnormalized"], test_perplexity=test["perplexity"])
    return metrics


def _evaluate_as_the_kind(task, model_dir, tokenizer, model_class: str) -> None:
    kind = task.kind
    encoded = kind.encode(task, tokenizer, 64)
    assert encoded["test"][0] == encode_task(task, tokenizer, 64)["test"][0]
    torch.manual_seed(0)
    model = kind.load_model(resolve_model(str(model_dir)), task.label_names, tokenizer.pad_token_id)
    assert type(model).__name__ == model_class
    evaluation = kind_evaluation(kind)
    test = evaluation.evaluate(model, encoded["test"], tokenizer, 16, "cpu", task.num_labels, "test")
    validation = evaluation.evaluate(model, encoded["validation"], tokenizer, 16, "cpu", task.num_labels, "validate")
    assert kind.selection_metric in validation and {"loss"} <= set(test)
    metrics = evaluation.run_metrics(test, validation, 2)
    expected = _old_run_metrics(kind.name, test, validation, 2)
    assert metrics == expected and list(metrics) == list(expected)  # same keys, values and order in results.json
    assert all(metric.key in metrics for metric in kind.quality_metrics)


def test_classification_kind_on_a_tiny_bert(tiny_bert_dir, tiny_task_csv):
    task = load_task(str(tiny_task_csv), max_eval_examples=8)
    tokenizer = load_tokenizer(resolve_model(str(tiny_bert_dir)))
    _evaluate_as_the_kind(task, tiny_bert_dir, tokenizer, "BertForSequenceClassification")


def test_multiple_choice_kind_on_a_tiny_llama(tiny_llama_dir, colour_bigbench, smollm_tokenizer):
    task = load_task(str(colour_bigbench), task_type="multiple-choice", max_eval_examples=4)
    _evaluate_as_the_kind(task, tiny_llama_dir, smollm_tokenizer, "LlamaForCausalLM")


def test_generation_kind_on_a_tiny_llama(tiny_llama_dir, colour_jsonl, smollm_tokenizer):
    task = load_task(str(colour_jsonl), max_eval_examples=4)
    _evaluate_as_the_kind(task, tiny_llama_dir, smollm_tokenizer, "LlamaForCausalLM")
