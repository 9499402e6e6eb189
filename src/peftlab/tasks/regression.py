"""Regression: text (and text pair) with a numeric target, predicted by a one-output head trained with MSE.

:func:`load_regression_task` reads and checks the rows as classification does (:mod:`peftlab.tasks.labelled`:
the same sources, column detection and splits), but keeps the label as a float. The task's single "label name" is
the target column's name, so the model loader builds a one-output head (``num_labels=1``).

Targets are standardised for training: :func:`encode_regression_task` gives the model ``(y - mean) / std`` with
the mean and standard deviation of the (capped) training split, ``Task.target_scale``; predictions are mapped back
before scoring, so every metric (Pearson, Spearman, MSE, MAE) is in the target's own units. Only the model's
``loss`` (the MSE it minimised) is in standardised units. The scale is recorded in results.json
(``study.task.target_mean``, ``target_std``) and in each saved run's ``peftlab_run.json``: a saved model's output
``z`` means ``z * target_std + target_mean``.

A label column is read as regression when ``--task regression`` says so, or, with no ``--task``, when it holds
fractional numbers with at least :data:`MIN_DISTINCT_TARGETS` distinct values (:func:`peftlab.tasks.load_task`);
fewer fractional values (0.5 steps on a 1–5 scale) are refused with a one-line error naming both ways out.
"""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pandas as pd

from peftlab.errors import DataError
from peftlab.tasks.labelled import columns_of, extract_frames, is_missing, is_number, resolve_columns
from peftlab.tasks.sources import read_source
from peftlab.tasks.splits import SPLITS, cap_splits, complete_splits, pick_splits
from peftlab.tasks.task import Task

MIN_DISTINCT_TARGETS = 10  # fractional labels with at least this many distinct values are read as regression


def load_regression_task(data: str, kind, *, subset: str | None = None, split: str | None = None,
                         text_column: str | None = None, text_pair_column: str | None = None,
                         label_column: str | None = None, max_train_examples: int | None = None,
                         max_eval_examples: int | None = None, seed: int = 0) -> Task:
    """``data`` as a regression Task of ``kind`` (see the module docstring)."""
    name, raw = read_source(data, subset)
    tables = pick_splits(raw, split, data)
    columns = resolve_columns(columns_of(tables["train"]), text_column, text_pair_column, label_column, data)
    frames, _ = extract_frames(tables, columns, data, check_labels=check_targets)
    for frame in frames.values():
        frame["label"] = frame["label"].astype(np.float64)
    frames = complete_splits(frames, np.random.default_rng(seed), data)
    frames = cap_splits(frames, max_train_examples, max_eval_examples, seed)
    scale = target_scale(frames["train"]["label"].to_numpy(), columns["label"], data)
    has_pair = columns["text_pair"] is not None
    return Task(name=name, source=data, label_names=[columns["label"]],
                splits={s: _to_dataset(frames[s], has_pair) for s in SPLITS}, columns=columns,
                sha256=_fingerprint(frames, columns["label"], has_pair), kind=kind, target_scale=scale)


def check_targets(values: list, column: str, where: str) -> None:
    """Every target a finite number (DataError naming the first bad row otherwise)."""
    for i, value in enumerate(values):
        if is_missing(value):
            missing = sum(is_missing(v) for v in values)
            raise DataError(f"column {column!r} in {where} has {missing} missing targets, first at row index {i}; "
                            "fix or remove those rows")
        if not is_number(value) or not math.isfinite(float(value)):
            raise DataError(f"column {column!r} in {where} holds {str(value)[:40]!r} at row index {i}; regression "
                            "needs a number per example. Pass --label-column, or --task classification for classes.")


def target_scale(train_targets: np.ndarray, column: str, data: str) -> tuple[float, float]:
    """(mean, standard deviation) of the training targets; DataError when they are all the same."""
    mean, std = float(np.mean(train_targets)), float(np.std(train_targets))
    if not std > 0:
        raise DataError(f"the training targets of {data} (column {column!r}) are all {mean:g}; regression needs "
                        "targets that vary. Pass --label-column if it is the wrong column.")
    return mean, std


def encode_regression_task(task: Task, tokenizer, max_length: int):
    """Texts (and pairs) as token ids, truncated to ``max_length``; the standardised target as a float ``labels``
    and the original one as ``target``; ``target_mean`` and ``target_std`` on every row, so that an evaluation of
    the split alone maps predictions back (:mod:`peftlab.evaluate.regression`)."""
    mean, std = task.target_scale

    def encode(batch):
        pair = batch["text_pair"] if task.has_text_pair else None
        encoded = tokenizer(batch["text"], pair, truncation=True, max_length=max_length)
        encoded["labels"] = [(y - mean) / std for y in batch["label"]]
        encoded["target"] = batch["label"]
        encoded["target_mean"], encoded["target_std"] = [mean] * len(batch["label"]), [std] * len(batch["label"])
        encoded["length"] = [len(ids) for ids in encoded["input_ids"]]
        return encoded

    return {split: dataset.map(encode, batched=True, remove_columns=dataset.column_names, desc=f"tokenize {split}",
                               load_from_cache_file=False)
            for split, dataset in task.splits.items()}


def _to_dataset(frame: pd.DataFrame, has_pair: bool):
    import datasets

    features = {"text": datasets.Value("string")}
    if has_pair:
        features["text_pair"] = datasets.Value("string")
    features["label"] = datasets.Value("float64")
    return datasets.Dataset.from_dict({k: frame[k].tolist() for k in features}, features=datasets.Features(features))


def _fingerprint(frames: dict[str, pd.DataFrame], column: str, has_pair: bool) -> str:
    """sha256 over the target column's name, then every example used: [split, text, pair, target] as JSON lines."""
    digest = hashlib.sha256(json.dumps(["regression", column], ensure_ascii=False).encode())
    for split in SPLITS:
        frame = frames[split]
        pairs = frame["text_pair"].tolist() if has_pair else [None] * len(frame)
        for text, pair, target in zip(frame["text"].tolist(), pairs, frame["label"].tolist()):
            digest.update(json.dumps([split, text, pair, float(target)], ensure_ascii=False).encode() + b"\n")
    return digest.hexdigest()
