"""Labelled text (classification): pick the text / text-pair / label columns, check them, encode the labels.

:func:`load_labelled_task` reads the rows (:mod:`peftlab.tasks.sources`), picks the columns, checks texts and
labels, encodes the labels as indices into sorted label names, fixes the train/validation/test splits and the caps
(:mod:`peftlab.tasks.splits`) and hashes the result. The column and label helpers are public: the robustness
suite reads its external labelled set (``--robust-set``) with them (:mod:`peftlab.evaluate.robustness`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from peftlab.errors import DataError
from peftlab.tasks.sources import Table, read_source
from peftlab.tasks.splits import SPLITS, cap_splits, complete_splits, pick_splits
from peftlab.tasks.task import Task

if TYPE_CHECKING:
    import datasets

    from peftlab.tasks.kinds import TaskKind

log = logging.getLogger(__name__)

TEXT_CANDIDATES = ("text", "sentence", "input", "review", "content", "question", "premise", "sentence1", "question1")
PAIR_PARTNERS = {"text": "text_pair", "sentence1": "sentence2", "premise": "hypothesis",
                 "question1": "question2", "question": "question2"}
# target_scores: the label column of BIG-bench files (the choice scored 1, see sources._bigbench_frame)
LABEL_CANDIDATES = ("label", "labels", "category", "class", "target", "sentiment", "target_scores")


def load_labelled_task(data: str, kind: TaskKind, *, subset: str | None = None, split: str | None = None,
                       text_column: str | None = None, text_pair_column: str | None = None,
                       label_column: str | None = None, max_train_examples: int | None = None,
                       max_eval_examples: int | None = None, seed: int = 0) -> Task:
    """``data`` as a text-classification Task of ``kind`` (see the module docstring)."""
    name, raw = read_source(data, subset)
    tables = pick_splits(raw, split, data)
    columns = resolve_columns(columns_of(tables["train"]), text_column, text_pair_column, label_column, data)
    frames, class_names = extract_frames(tables, columns, data)
    label_names = _encode_labels(frames, class_names, columns["label"], data)
    frames = complete_splits(frames, np.random.default_rng(seed), data)
    frames = cap_splits(frames, max_train_examples, max_eval_examples, seed)
    has_pair = columns["text_pair"] is not None
    return Task(name=name, source=data, label_names=label_names,
                splits={s: _to_dataset(frames[s], label_names, has_pair) for s in SPLITS},
                columns=columns, sha256=_fingerprint(frames, label_names, has_pair), kind=kind)


def columns_of(table: Table) -> list[str]:
    return [str(c) for c in table.columns] if isinstance(table, pd.DataFrame) else list(table.column_names)


def resolve_columns(available: list[str], text: str | None, pair: str | None, label: str | None,
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


def extract_frames(tables: dict[str, Table], columns: dict[str, str | None], data: str,
                   check_labels=None) -> tuple[dict[str, pd.DataFrame], list[str] | None]:
    """Per split, a DataFrame with ``text``, optional ``text_pair`` and raw ``label``; texts and labels checked.

    A held-out split without any label (no label column, all missing, or -1 in an HF ClassLabel) is dropped
    and carved from train instead. Returns the frames and the ClassLabel names when the source has them.
    ``check_labels(values, column, where)`` checks a split's labels (default: class labels; regression passes its
    own, :mod:`peftlab.tasks.regression`).
    """
    wanted = {key: col for key, col in columns.items() if col is not None}
    frames, class_names = {}, None
    for split, table in tables.items():
        where = data if len(tables) == 1 else f"split {split!r} of {data}"
        available = columns_of(table)
        missing = [c for c in wanted.values() if c not in available]
        if missing and not (split != "train" and missing == [columns["label"]]):
            raise DataError(f"column {missing[0]!r} not found in {where}; available columns: {', '.join(available)}")
        if len(table) == 0:
            raise DataError(f"{where} has no rows; it needs labelled examples")
        if missing:
            log.warning("%s has no labels; it is ignored and carved from train instead", where)
            continue
        frame, names = to_frame(table, wanted)
        class_names = class_names or names
        if split != "train" and frame["label"].isna().all():
            log.warning("%s has no labels; it is ignored and carved from train instead", where)
            continue
        for key in ("text", "text_pair"):
            if key in frame:
                _check_texts(frame[key].tolist(), wanted[key], where)
        (check_labels or _check_labels)(frame["label"].tolist(), wanted["label"], where)
        frames[split] = frame
    return frames, class_names


def to_frame(table: Table, wanted: dict[str, str]) -> tuple[pd.DataFrame, list[str] | None]:
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
    missing = [i for i, v in enumerate(values) if is_missing(v)]
    if missing:
        raise DataError(f"column {column!r} in {where} has {len(missing)} missing labels, first at row index "
                        f"{missing[0]}; fix or remove those rows")
    for i, v in enumerate(values):
        if isinstance(v, (list, tuple, dict, np.ndarray)):
            raise DataError(f"column {column!r} in {where} holds lists (row index {i}); peftlab needs one label "
                            "per example. Pass --label-column.")
        if isinstance(v, (float, np.floating)) and not float(v).is_integer():
            raise NumericLabels(column, where, v, i, len({float(x) for x in values if is_number(x)}))


class NumericLabels(DataError):
    """A label column of fractional numbers: a regression target, not classes. :func:`peftlab.tasks.load_task`
    reads it as a regression task when the kind was not named and it has many distinct values
    (:data:`peftlab.tasks.regression.MIN_DISTINCT_TARGETS`); otherwise this is the one-line refusal."""

    def __init__(self, column: str, where: str, value: object, row: int, distinct: int):
        super().__init__(f"column {column!r} in {where} holds fractional numbers ({value} at row index {row}, "
                         f"{distinct} distinct values), which looks like regression; pass --task regression to "
                         "predict them as numbers, or --label-column for a column of class labels")
        self.distinct = distinct


def is_number(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)) \
        and not is_missing(value)


def is_missing(value: object) -> bool:
    return value is None or (isinstance(value, (float, np.floating)) and math.isnan(value))


def is_int(value: object) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (float, np.floating)):
        return float(value).is_integer()
    return isinstance(value, (int, np.integer))


def label_str(value: object) -> str:
    return str(int(value)) if is_int(value) else str(value)


def _encode_labels(frames: dict[str, pd.DataFrame], class_names: list[str] | None, column: str,
                   data: str) -> list[str]:
    """Replace raw labels by indices into the returned label names (in place).

    Names are the ClassLabel names of an HF dataset when there are some; otherwise str(label) over all
    splits, sorted numerically when every label is an integer, else sorted as strings.
    """
    values = [v for frame in frames.values() for v in frame["label"].tolist()]
    observed = {label_str(v) for v in values}
    if len(observed) < 2:
        raise DataError(f"label column {column!r} in {data} has a single class ({next(iter(observed))!r}); "
                        "classification needs at least 2 classes. Pass --label-column if it is the wrong column.")
    if class_names is not None:
        names = list(class_names)
    elif all(is_int(v) for v in values):
        names = [str(i) for i in sorted({int(v) for v in values})]
    else:
        names = sorted(observed)
    index = {name: i for i, name in enumerate(names)}
    for frame in frames.values():
        frame["label"] = np.array([index[label_str(v)] for v in frame["label"].tolist()], dtype=np.int64)
    return names


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
