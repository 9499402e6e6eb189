"""Train/validation/test splits and caps, shared by every task kind's loader.

The source's splits are mapped onto train/validation/test (:func:`pick_splits`); the missing held-out splits are
carved from train (:func:`complete_splits`) and each split is capped (:func:`cap`). Every loader
(:mod:`peftlab.tasks.labelled`, :mod:`peftlab.tasks.prompted`) hands in DataFrames with an integer ``label``
column: the class (classification) or the correct choice's index (multiple choice); generation rows have label 0.

Splitting and sampling are stratified and deterministic. Rows are ordered by class, randomly within each
class (``numpy.random.default_rng``); that order is then dealt out in stripes of ten: position ``i % 10 == 9``
goes to the first held-out split (validation), ``== 8`` to the second (test), the rest stays. So every class
gives about 10% to each held-out split, and a class with one example stays in train. Caps take evenly spaced
positions of the same class-major order, which keeps the class proportions. Kept rows stay in source order.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from peftlab.errors import DataError
from peftlab.tasks.sources import Table

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
VALIDATION_NAMES = ("validation", "valid", "dev", "val")
HOLDOUT_STRIPES = 10  # one stripe in ten per held-out split: 10% each


def pick_splits(raw: dict[str, Table], split: str | None, data: str) -> dict[str, Table]:
    """Map the source's splits onto train/validation/test; ``--split`` or a lone split becomes train."""
    if split is not None:
        if split not in raw:
            raise DataError(f"split {split!r} not found in {data}; available splits: {', '.join(raw)}. Fix --split.")
        return {"train": raw[split]}
    by_lower = {key.lower(): key for key in raw}
    held_out = [key for key in raw if key.lower() in (*VALIDATION_NAMES, "test")]
    if len(raw) == 1 and not held_out:
        return {"train": next(iter(raw.values()))}  # one unnamed table (a file, a Dataset): it is the training data
    chosen = {}
    for canonical, names in (("train", ("train",)), ("validation", VALIDATION_NAMES), ("test", ("test",))):
        key = next((by_lower[n] for n in names if n in by_lower), None)
        if key is not None:
            chosen[canonical] = key
    if "train" not in chosen:
        raise DataError(f"{data} has {'split' if len(raw) == 1 else 'splits'} {', '.join(raw)} but none is called "
                        "train (in a folder: no train.* file); add one, or pass --split NAME to use one of them "
                        "(it is then split 80/10/10)")
    ignored = [key for key in raw if key not in chosen.values()]
    if ignored:
        log.warning("%s: ignoring splits %s", data, ", ".join(ignored))
    return {canonical: raw[key] for canonical, key in chosen.items()}


def complete_splits(frames: dict[str, pd.DataFrame], rng: np.random.Generator, data: str) -> dict[str, pd.DataFrame]:
    """Carve the missing validation/test splits out of train (10% each)."""
    missing = [s for s in ("validation", "test") if s not in frames]
    if missing:
        size = len(frames["train"])
        parts = _carve(frames["train"], len(missing), rng)
        frames = {**frames, "train": parts[0], **dict(zip(missing, parts[1:]))}
        for split in missing:
            if len(frames[split]) == 0:
                raise DataError(f"{data} has only {size} training examples, too few to carve a {split} split "
                                "(10%) from; provide at least 10 examples or separate split files")
    return {s: frames[s] for s in SPLITS}


def cap_splits(frames: dict[str, pd.DataFrame], max_train_examples: int | None, max_eval_examples: int | None,
               seed: int) -> dict[str, pd.DataFrame]:
    """Every split capped: train at ``max_train_examples``, validation and test at ``max_eval_examples``."""
    caps = {"train": max_train_examples, "validation": max_eval_examples, "test": max_eval_examples}
    return {s: cap(frames[s], caps[s], np.random.default_rng([seed, k])) for k, s in enumerate(SPLITS, 1)}


def cap(frame: pd.DataFrame, limit: int | None, rng: np.random.Generator) -> pd.DataFrame:
    """At most ``limit`` rows (None or 0: all), evenly spread over the class-major order."""
    if not limit or len(frame) <= limit:
        return frame
    order = stratified_order(frame["label"].to_numpy(), rng)
    picked = np.sort(order[(np.arange(limit) * len(frame)) // limit])
    return frame.iloc[picked].reset_index(drop=True)


def stratified_order(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Row indices ordered by label, randomly within each label."""
    return np.lexsort((rng.permutation(len(labels)), labels))


def _carve(frame: pd.DataFrame, holdouts: int, rng: np.random.Generator) -> list[pd.DataFrame]:
    """Split ``frame`` into [rest, holdout 1, ...], each holdout ~10% of every class."""
    stripe = np.empty(len(frame), dtype=np.int64)
    stripe[stratified_order(frame["label"].to_numpy(), rng)] = np.arange(len(frame)) % HOLDOUT_STRIPES
    masks = [stripe < HOLDOUT_STRIPES - holdouts] + [stripe == HOLDOUT_STRIPES - 1 - k for k in range(holdouts)]
    return [frame[mask].reset_index(drop=True) for mask in masks]
