"""The Task: one labelled text-classification dataset, validated, label-encoded, split and fingerprinted.

:func:`load_task` reads the rows (:mod:`peftlab.tasks.sources`), picks the text / text-pair / label columns,
checks them, encodes the labels, fixes the train/validation/test splits, applies the caps and hashes the result.

Splitting and sampling are stratified and deterministic. Rows are ordered by class, randomly within each
class (``numpy.random.default_rng``); that order is then dealt out in stripes of ten: position ``i % 10 == 9``
goes to the first held-out split (validation), ``== 8`` to the second (test), the rest stays. So every class
gives about 10% to each held-out split, and a class with one example stays in train. Caps take evenly spaced
positions of the same class-major order, which keeps the class proportions. Kept rows stay in source order.
"""

from __future__ import annotations

from collections import Counter
import hashlib
import json
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from peftlab.errors import ConfigError, DataError
from peftlab.tasks.sources import Table, read_source

if TYPE_CHECKING:
    import datasets

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
VALIDATION_NAMES = ("validation", "valid", "dev", "val")
TEXT_CANDIDATES = ("text", "sentence", "input", "review", "content", "question", "premise", "sentence1", "question1")
PAIR_PARTNERS = {"text": "text_pair", "sentence1": "sentence2", "premise": "hypothesis",
                 "question1": "question2", "question": "question2"}
# target_scores: the label column of BIG-bench files (the choice scored 1, see sources._bigbench_frame)
LABEL_CANDIDATES = ("label", "labels", "category", "class", "target", "sentiment", "target_scores")
HOLDOUT_STRIPES = 10  # one stripe in ten per held-out split: 10% each


@dataclass
class Task:
    """A labelled text-classification dataset, ready for training and evaluation."""

    name: str
    source: str
    label_names: list[str]
    splits: dict[str, datasets.Dataset]
    columns: dict[str, str | None]
    sha256: str
    task_type: str = "classification"  # or "multiple-choice" / "generation" (peftlab.tasks.prompted)

    @property
    def selection_metric(self) -> str:
        """The validation score the trainer keeps the best epoch by."""
        return "neg_loss" if self.task_type == "generation" else "accuracy"  # exact match ties too often

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def has_text_pair(self) -> bool:
        return self.columns.get("text_pair") is not None

    def describe(self) -> dict:
        """A JSON-able summary of the task."""
        return {"name": self.name, "source": self.source, "type": self.task_type, "num_labels": self.num_labels,
                "label_names": list(self.label_names), "sizes": {s: len(d) for s, d in self.splits.items()},
                "columns": dict(self.columns), "sha256": self.sha256,
                "test_majority_share": self.test_majority_share()}

    def test_majority_share(self) -> float | None:
        """The share of the test split's most common label: the accuracy of always answering it (classification)."""
        test = self.splits.get("test")
        if self.task_type != "classification" or test is None or len(test) == 0 or "label" not in test.column_names:
            return None
        return Counter(test["label"]).most_common(1)[0][1] / len(test)


def load_task(data: str, *, subset: str | None = None, split: str | None = None,
              text_column: str | None = None, text_pair_column: str | None = None, label_column: str | None = None,
              max_train_examples: int | None = None, max_eval_examples: int | None = None,
              seed: int = 0, task_type: str | None = None) -> Task:
    """Load ``data`` (an alias, a local file or folder, or an HF dataset name) as a :class:`Task`.

    ``task_type`` None infers it from the data (see :func:`peftlab.tasks.prompted.infer_task_type`);
    multiple-choice and generation tasks are loaded by :mod:`peftlab.tasks.prompted`.
    """
    for flag, cap in (("--max-train-examples", max_train_examples), ("--max-eval-examples", max_eval_examples)):
        if cap is not None and cap < 0:
            raise ConfigError(f"{flag} must be 0 (no cap) or a positive number, not {cap}")
    from peftlab.tasks import prompted

    task_type = prompted.check_task_type(task_type) or prompted.infer_task_type(data)
    if task_type != "classification":
        return prompted.load_prompted_task(
            data, task_type, subset=subset, split=split, prompt_column=text_column, target_column=label_column,
            max_train_examples=max_train_examples, max_eval_examples=max_eval_examples, seed=seed)
    name, raw = read_source(data, subset)
    tables = _pick_splits(raw, split, data)
    columns = _resolve_columns(_columns_of(tables["train"]), text_column, text_pair_column, label_column, data)
    frames, class_names = _extract(tables, columns, data)
    label_names = _encode_labels(frames, class_names, columns["label"], data)
    frames = _complete_splits(frames, np.random.default_rng(seed), data)
    caps = {"train": max_train_examples, "validation": max_eval_examples, "test": max_eval_examples}
    frames = {s: _cap(frames[s], caps[s], np.random.default_rng([seed, k])) for k, s in enumerate(SPLITS, 1)}
    has_pair = columns["text_pair"] is not None
    return Task(name=name, source=data, label_names=label_names,
                splits={s: _to_dataset(frames[s], label_names, has_pair) for s in SPLITS},
                columns=columns, sha256=_fingerprint(frames, label_names, has_pair))


def _columns_of(table: Table) -> list[str]:
    return [str(c) for c in table.columns] if isinstance(table, pd.DataFrame) else list(table.column_names)


def _pick_splits(raw: dict[str, Table], split: str | None, data: str) -> dict[str, Table]:
    """Map the source's splits onto train/validation/test; ``--split`` or a lone split becomes train."""
    if split is not None:
        if split not in raw:
            raise DataError(f"split {split!r} not found in {data}; available splits: {', '.join(raw)}. Fix --split.")
        return {"train": raw[split]}
    if len(raw) == 1:
        return {"train": next(iter(raw.values()))}
    by_lower = {key.lower(): key for key in raw}
    chosen = {}
    for canonical, names in (("train", ("train",)), ("validation", VALIDATION_NAMES), ("test", ("test",))):
        key = next((by_lower[n] for n in names if n in by_lower), None)
        if key is not None:
            chosen[canonical] = key
    if "train" not in chosen:
        raise DataError(f"{data} has splits {', '.join(raw)} but none is called train; "
                        "pass --split NAME to use one of them (it is then split 80/10/10)")
    ignored = [key for key in raw if key not in chosen.values()]
    if ignored:
        log.warning("%s: ignoring splits %s", data, ", ".join(ignored))
    return {canonical: raw[key] for canonical, key in chosen.items()}


def _resolve_columns(available: list[str], text: str | None, pair: str | None, label: str | None,
                     data: str) -> dict[str, str | None]:
    """Explicit names win; otherwise the first known name present (a pair only next to its partner)."""
    text = _column(text, TEXT_CANDIDATES, available, "--text-column", "text", data)
    if pair is not None:
        pair = _column(pair, (), available, "--text-pair-column", "second text", data)
    elif PAIR_PARTNERS.get(text) in available:
        pair = PAIR_PARTNERS[text]
    label = _column(label, LABEL_CANDIDATES, available, "--label-column", "label", data)
    chosen = [c for c in (text, pair, label) if c is not None]
    if len(set(chosen)) < len(chosen):
        raise DataError(f"the text, text-pair and label columns of {data} must differ, got {', '.join(chosen)}; "
                        "pass --text-column / --text-pair-column / --label-column")
    return {"text": text, "text_pair": pair, "label": label}


def _column(name: str | None, candidates: tuple[str, ...], available: list[str], flag: str, role: str,
            data: str) -> str:
    if name is not None:
        if name not in available:
            raise DataError(f"column {name!r} not found in {data}; available columns: {', '.join(available)}. "
                            f"Pass {flag}.")
        return name
    found = next((c for c in candidates if c in available), None)
    if found is None:
        raise DataError(f"cannot tell which column of {data} holds the {role}; available columns: "
                        f"{', '.join(available)}. Pass {flag}.")
    return found


def _extract(tables: dict[str, Table], columns: dict[str, str | None],
             data: str) -> tuple[dict[str, pd.DataFrame], list[str] | None]:
    """Per split, a DataFrame with ``text``, optional ``text_pair`` and raw ``label``; texts and labels checked.

    A held-out split without any label (no label column, all missing, or -1 in an HF ClassLabel) is dropped
    and carved from train instead. Returns the frames and the ClassLabel names when the source has them.
    """
    wanted = {key: col for key, col in columns.items() if col is not None}
    frames, class_names = {}, None
    for split, table in tables.items():
        where = data if len(tables) == 1 else f"split {split!r} of {data}"
        available = _columns_of(table)
        missing = [c for c in wanted.values() if c not in available]
        if missing and not (split != "train" and missing == [columns["label"]]):
            raise DataError(f"column {missing[0]!r} not found in {where}; available columns: {', '.join(available)}")
        if len(table) == 0:
            raise DataError(f"{where} has no rows; it needs labelled examples")
        if missing:
            log.warning("%s has no labels; it is ignored and carved from train instead", where)
            continue
        frame, names = _to_frame(table, wanted)
        class_names = class_names or names
        if split != "train" and frame["label"].isna().all():
            log.warning("%s has no labels; it is ignored and carved from train instead", where)
            continue
        for key in ("text", "text_pair"):
            if key in frame:
                _check_texts(frame[key].tolist(), wanted[key], where)
        _check_labels(frame["label"].tolist(), wanted["label"], where)
        frames[split] = frame
    return frames, class_names


def _to_frame(table: Table, wanted: dict[str, str]) -> tuple[pd.DataFrame, list[str] | None]:
    """The wanted columns renamed to text/text_pair/label; HF ClassLabel ints become their names."""
    if isinstance(table, pd.DataFrame):
        frame = table[list(wanted.values())]
        names = None
    else:
        import datasets

        feature = table.features[wanted["label"]]
        names = list(feature.names) if isinstance(feature, datasets.ClassLabel) else None
        frame = table.select_columns(list(wanted.values())).to_pandas()
    frame = frame.set_axis(list(wanted), axis=1).reset_index(drop=True)
    if names is not None:
        frame["label"] = [names[i] if 0 <= i < len(names) else None for i in frame["label"]]
    return frame, names


def _check_texts(values: list, column: str, where: str) -> None:
    bad = [i for i, v in enumerate(values) if not isinstance(v, str) or not v.strip()]
    if not bad:
        return
    non_text = sum(not isinstance(values[i], str) for i in bad)
    kind = ("non-text values (numbers or missing)" if non_text == len(bad) else
            "empty or whitespace-only texts" if non_text == 0 else "empty or non-text values")
    raise DataError(f"column {column!r} in {where} has {len(bad)} {kind}, first at row index {bad[0]} "
                    f"({str(values[bad[0]])[:40]!r}); fix or remove those rows")


def _check_labels(values: list, column: str, where: str) -> None:
    missing = [i for i, v in enumerate(values) if _is_missing(v)]
    if missing:
        raise DataError(f"column {column!r} in {where} has {len(missing)} missing labels, first at row index "
                        f"{missing[0]}; fix or remove those rows")
    for i, v in enumerate(values):
        if isinstance(v, (list, tuple, dict, np.ndarray)):
            raise DataError(f"column {column!r} in {where} holds lists (row index {i}); peftlab needs one label "
                            "per example. Pass --label-column.")
        if isinstance(v, (float, np.floating)) and not float(v).is_integer():
            raise DataError(f"column {column!r} in {where} holds fractional numbers ({v} at row index {i}), "
                            "which looks like regression; peftlab needs class labels. Pass --label-column.")


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, (float, np.floating)) and math.isnan(value))


def _is_int(value: object) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (float, np.floating)):
        return float(value).is_integer()
    return isinstance(value, (int, np.integer))


def _label_str(value: object) -> str:
    return str(int(value)) if _is_int(value) else str(value)


def _encode_labels(frames: dict[str, pd.DataFrame], class_names: list[str] | None, column: str,
                   data: str) -> list[str]:
    """Replace raw labels by indices into the returned label names (in place).

    Names are the ClassLabel names of an HF dataset when there are some; otherwise str(label) over all
    splits, sorted numerically when every label is an integer, else sorted as strings.
    """
    values = [v for frame in frames.values() for v in frame["label"].tolist()]
    observed = {_label_str(v) for v in values}
    if len(observed) < 2:
        raise DataError(f"label column {column!r} in {data} has a single class ({next(iter(observed))!r}); "
                        "classification needs at least 2 classes. Pass --label-column if it is the wrong column.")
    if class_names is not None:
        names = list(class_names)
    elif all(_is_int(v) for v in values):
        names = [str(i) for i in sorted({int(v) for v in values})]
    else:
        names = sorted(observed)
    index = {name: i for i, name in enumerate(names)}
    for frame in frames.values():
        frame["label"] = np.array([index[_label_str(v)] for v in frame["label"].tolist()], dtype=np.int64)
    return names


def _complete_splits(frames: dict[str, pd.DataFrame], rng: np.random.Generator, data: str) -> dict[str, pd.DataFrame]:
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


def _stratified_order(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Row indices ordered by label, randomly within each label."""
    return np.lexsort((rng.permutation(len(labels)), labels))


def _carve(frame: pd.DataFrame, holdouts: int, rng: np.random.Generator) -> list[pd.DataFrame]:
    """Split ``frame`` into [rest, holdout 1, ...], each holdout ~10% of every class."""
    stripe = np.empty(len(frame), dtype=np.int64)
    stripe[_stratified_order(frame["label"].to_numpy(), rng)] = np.arange(len(frame)) % HOLDOUT_STRIPES
    masks = [stripe < HOLDOUT_STRIPES - holdouts] + [stripe == HOLDOUT_STRIPES - 1 - k for k in range(holdouts)]
    return [frame[mask].reset_index(drop=True) for mask in masks]


def _cap(frame: pd.DataFrame, cap: int | None, rng: np.random.Generator) -> pd.DataFrame:
    """At most ``cap`` rows (None or 0: all), evenly spread over the class-major order."""
    if not cap or len(frame) <= cap:
        return frame
    order = _stratified_order(frame["label"].to_numpy(), rng)
    picked = np.sort(order[(np.arange(cap) * len(frame)) // cap])
    return frame.iloc[picked].reset_index(drop=True)


def _to_dataset(frame: pd.DataFrame, label_names: list[str], has_pair: bool) -> datasets.Dataset:
    import datasets

    features = {"text": datasets.Value("string")}
    if has_pair:
        features["text_pair"] = datasets.Value("string")
    features["label"] = datasets.ClassLabel(names=label_names)
    return datasets.Dataset.from_dict({k: frame[k].tolist() for k in features}, features=datasets.Features(features))


def _fingerprint(frames: dict[str, pd.DataFrame], label_names: list[str], has_pair: bool) -> str:
    """sha256 over the label names, then every example used: [split, text, pair, label index] as JSON lines."""
    digest = hashlib.sha256(json.dumps(label_names, ensure_ascii=False).encode())
    for split in SPLITS:
        frame = frames[split]
        pairs = frame["text_pair"].tolist() if has_pair else [None] * len(frame)
        for text, pair, label in zip(frame["text"].tolist(), pairs, frame["label"].tolist()):
            digest.update(json.dumps([split, text, pair, int(label)], ensure_ascii=False).encode() + b"\n")
    return digest.hexdigest()
