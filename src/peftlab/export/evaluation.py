"""Measure an exported folder on the study's own test split, rebuilt from what results.json recorded."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from peftlab.errors import PeftlabError
from peftlab.evaluate import evaluate_split
from peftlab.study.artifacts import load_run
from peftlab.tasks import load_task
from peftlab.tasks.encode import encode_task

EVAL_BATCH_SIZE = 64


def study_test_task(study: dict):
    """The study's task with only its test split, checked against the recorded dataset fingerprint."""
    columns, budget = study.get("task", {}).get("columns", {}), study.get("budget", {})
    try:
        task = load_task(
            study["data"], subset=study.get("subset"), split=study.get("split"),
            text_column=columns.get("text"), text_pair_column=columns.get("text_pair"),
            label_column=columns.get("label"), max_train_examples=budget.get("max_train_examples"),
            max_eval_examples=budget.get("max_eval_examples"), seed=study.get("seed", 0),
        )
    except PeftlabError as error:
        raise PeftlabError(f"cannot rebuild the study's test split to measure compression: {error}") from None
    if task.sha256 != study.get("dataset_sha256"):
        raise PeftlabError(
            f"cannot rebuild the study's test split to measure compression: the data '{study['data']}' now gives "
            f"dataset_sha256 {task.sha256[:12]}…, the study recorded {str(study.get('dataset_sha256'))[:12]}…"
        )
    return dataclasses.replace(task, splits={"test": task.splits["test"]})


def evaluate_folder(folder: Path, task) -> dict:
    """Accuracy, macro-F1 and loss of the model saved in `folder` (any method's format) on the task's test split."""
    model, tokenizer, info = load_run(folder)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    test = encode_task(task, tokenizer, info["max_length"])["test"]
    return evaluate_split(model.to(device), test, tokenizer, EVAL_BATCH_SIZE, device, task.num_labels, "test")
