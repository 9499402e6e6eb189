"""Measure an exported folder on the study's own test split, rebuilt from what results.json recorded."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from peftlab.errors import PeftlabError
from peftlab.evaluate import evaluate_split
from peftlab.study.artifacts import load_run
from peftlab.study.reload import reload_study
from peftlab.tasks.encode import encode_task

EVAL_BATCH_SIZE = 64


def study_test_task(study_dir: Path, study: dict):
    """The study's task with only its test split, checked against the recorded dataset fingerprint."""
    try:
        task = reload_study(study, study_dir, robustness=False, writes_out=False).task
    except PeftlabError as error:
        raise PeftlabError(f"cannot rebuild the study's test split to measure compression: {error}") from None
    return dataclasses.replace(task, splits={"test": task.splits["test"]})


def evaluate_folder(folder: Path, task) -> dict:
    """Accuracy, macro-F1 and loss of the model saved in `folder` (any method's format) on the task's test split."""
    model, tokenizer, info = load_run(folder)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    test = encode_task(task, tokenizer, info["max_length"])["test"]
    return evaluate_split(model.to(device), test, tokenizer, EVAL_BATCH_SIZE, device, task.num_labels, "test")
