"""Prompted tasks for causal language models: multiple choice scored by likelihood, and generation.

Both are a :class:`~peftlab.tasks.task.Task` whose splits hold a ``messages`` column (the prompt as a JSON list of
chat turns, ``[{"role": "user", "content": ...}]``) and:

- *multiple-choice*: ``choices`` (the candidate answers) and ``label`` (index of the correct one);
- *generation*: ``target`` (the text trained on) and ``references`` (every accepted answer).

Sources:

- BIG-bench ``task.json``: ``target_scores`` examples are multiple choice (with ``--task generation`` their one
  correct choice becomes the target); examples with only ``target`` strings are generation. As BIG-bench does
  unless the task says ``append_choices_to_input: false``, the choices are appended to the input (always when the
  generation target is a choice: the model could not otherwise know the label set).
- Any file or dataset :mod:`peftlab.tasks.sources` reads, with ``prompt``/``completion`` columns (also
  ``input``/``output``, ``question``/``answer``, ``instruction``/``response``), or a ``messages`` column in chat
  format whose last turn is the assistant's answer.

Which loader runs is the task kind's choice (:mod:`peftlab.tasks.kinds`): :func:`load_multiple_choice_task` or
:func:`load_generation_task`. Without ``--task``, :func:`looks_like_generation` decides between generation and
classification (:func:`peftlab.tasks.load_task`): a BIG-bench file without ``target_scores``, or JSON/JSONL records
with ``prompt``+``completion`` or ``messages``, are generation; everything else stays classification (BIG-bench
``target_scores`` included, as before). Splits and caps are the shared ones (:mod:`peftlab.tasks.splits`):
multiple choice is stratified by the correct choice's index.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from peftlab.errors import DataError
from peftlab.tasks.sources import BIGBENCH_MAX_SKIPPED, format_of, read_source, read_text
from peftlab.tasks.splits import SPLITS, cap_splits, complete_splits, pick_splits
from peftlab.tasks.task import Task

if TYPE_CHECKING:
    from peftlab.tasks.kinds import TaskKind

PROMPT_COLUMNS = ("prompt", "input", "question", "instruction", "text")
TARGET_COLUMNS = ("completion", "output", "answer", "response", "target")


def looks_like_generation(data: str) -> bool:
    """True when a local JSON/JSONL file obviously holds prompts and answers (see the module docstring)."""
    path = Path(data).expanduser()
    if not path.is_file() or format_of(path) not in (".json", ".jsonl"):
        return False
    records = peek_records(path)
    if isinstance(records, dict) and isinstance(records.get("examples"), list):
        examples = [e for e in records["examples"] if isinstance(e, dict)]
        return bool(examples) and not any(isinstance(e.get("target_scores"), dict) for e in examples)
    if isinstance(records, list) and records and isinstance(records[0], dict):
        keys = set(records[0])
        return "messages" in keys or {"prompt", "completion"} <= keys
    return False


def peek_records(path: Path):
    """The file's JSON document, or its first JSON line as a one-record list; None if unreadable."""
    try:
        text = read_text(path)
    except DataError:  # unreadable: not sniffed here; reading the data says why, in one line
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        first = next((line for line in text.splitlines() if line.strip()), "")
        try:
            return [json.loads(first)]
        except json.JSONDecodeError:
            return None


def load_multiple_choice_task(data: str, kind: TaskKind, **options) -> Task:
    """``data`` (a BIG-bench task.json with ``target_scores``) as a multiple-choice Task of ``kind``.

    ``options``: those of :func:`peftlab.tasks.load_task` (``text_pair_column`` does not apply and is ignored)."""
    return _load_prompted(data, kind, multiple_choice=True, **options)


def load_generation_task(data: str, kind: TaskKind, **options) -> Task:
    """``data`` (BIG-bench, prompt/completion columns or chat messages) as a generation Task of ``kind``."""
    return _load_prompted(data, kind, multiple_choice=False, **options)


def _load_prompted(data: str, kind: TaskKind, *, multiple_choice: bool, subset: str | None = None,
                   split: str | None = None, text_column: str | None = None, text_pair_column: str | None = None,
                   label_column: str | None = None, max_train_examples: int | None = None,
                   max_eval_examples: int | None = None, seed: int = 0) -> Task:
    bigbench = _bigbench(data)
    if bigbench is not None:
        rows = _bigbench_rows(bigbench, kind.name, multiple_choice, data)
        name, raw = Path(data).resolve().name.split(".")[0], {"train": rows}
        columns = {"text": "input", "text_pair": None, "label": "target_scores" if multiple_choice else "target"}
    else:
        if multiple_choice:
            raise DataError(f"{data}: multiple choice needs a BIG-bench task.json with 'target_scores' examples; "
                            "use --task generation or classification for other files")
        name, tables = read_source(data, subset)
        tables = pick_splits(tables, split, data)
        raw, columns = _generation_rows(tables, text_column, label_column, data)
    frames = complete_splits(dict(raw), np.random.default_rng(seed), data)
    frames = cap_splits(frames, max_train_examples, max_eval_examples, seed)
    label_names = _label_names(frames) if multiple_choice else []
    return Task(name=name, source=data, label_names=label_names,
                splits={s: _to_dataset(f, multiple_choice) for s, f in frames.items()},
                columns=columns, sha256=_fingerprint(frames, kind.name, multiple_choice), kind=kind)


def _bigbench(data: str) -> dict | None:
    path = Path(data).expanduser()
    if not path.is_file() or format_of(path) != ".json":
        return None
    records = peek_records(path)
    if isinstance(records, dict) and isinstance(records.get("examples"), list):
        return records
    return None


def _user(content: str) -> str:
    return json.dumps([{"role": "user", "content": content}], ensure_ascii=False)


def _bigbench_rows(task: dict, kind_name: str, multiple_choice: bool, data: str) -> pd.DataFrame:
    """One row per usable example: messages, and choices + label (multiple choice) or target + references."""
    append_choices = task.get("append_choices_to_input", True) is not False
    rows, skipped = [], 0
    for example in task["examples"]:
        text = example.get("input") if isinstance(example, dict) else None
        scores = example.get("target_scores") if isinstance(example, dict) else None
        target = example.get("target") if isinstance(example, dict) else None
        if not isinstance(text, str) or not text.strip():
            skipped += 1
            continue
        choices = list(scores) if isinstance(scores, dict) else []
        correct = [i for i, c in enumerate(choices) if scores[c] == 1]
        answer_from_choices = not multiple_choice and not target
        if choices and (append_choices or answer_from_choices):  # a generated answer must know the label set
            text = text.rstrip() + "\n" + "\n".join(f"choice: {c}" for c in choices)
        if multiple_choice:
            if len(correct) != 1 or len(choices) < 2:
                skipped += 1
                continue
            rows.append({"messages": _user(text), "choices": choices, "label": correct[0]})
            continue
        references = [target] if isinstance(target, str) else [t for t in target or [] if isinstance(t, str)]
        if not references and len(correct) == 1:
            references = [choices[correct[0]]]
        references = [r for r in references if r.strip()]
        if not references:
            skipped += 1
            continue
        rows.append({"messages": _user(text), "target": references[0], "references": references, "label": 0})
    if not rows or skipped > BIGBENCH_MAX_SKIPPED * len(task["examples"]):
        need = ("exactly one choice scored 1 in 'target_scores'" if multiple_choice
                else "a 'target' string (or one choice scored 1)")
        raise DataError(f"{Path(data).name}: {skipped} of {len(task['examples'])} BIG-bench examples have an empty "
                        f"input or lack {need}; it cannot be a {kind_name} task")
    return pd.DataFrame(rows)


def _generation_rows(tables: dict, prompt_column: str | None, target_column: str | None,
                     data: str) -> tuple[dict[str, pd.DataFrame], dict]:
    """prompt/completion columns, or a `messages` column whose last turn (the assistant's) is the target."""
    frames, columns = {}, None
    for split, table in tables.items():
        frame = table if isinstance(table, pd.DataFrame) else table.to_pandas()
        available = [str(c) for c in frame.columns]
        where = data if len(tables) == 1 else f"split {split!r} of {data}"
        if prompt_column is None and target_column is None and "messages" in available:
            frames[split] = _messages_frame(frame["messages"].tolist(), where)
            columns = {"text": "messages", "text_pair": None, "label": "messages"}
            continue
        prompt = _pick(prompt_column, PROMPT_COLUMNS, available, "--text-column", "prompt", where)
        target = _pick(target_column, TARGET_COLUMNS, available, "--label-column", "target text", where)
        rows = []
        for i, (p, t) in enumerate(zip(frame[prompt].tolist(), frame[target].tolist())):
            refs = [t] if isinstance(t, str) else [x for x in (t if isinstance(t, (list, tuple, np.ndarray)) else [])
                                                   if isinstance(x, str)]
            if not isinstance(p, str) or not p.strip() or not refs or not refs[0].strip():
                raise DataError(f"row index {i} of {where} has an empty or non-text {prompt!r} or {target!r}; "
                                "fix or remove it")
            rows.append({"messages": _user(p), "target": refs[0], "references": list(refs), "label": 0})
        frames[split] = pd.DataFrame(rows)
        columns = {"text": prompt, "text_pair": None, "label": target}
    return frames, columns


def _pick(name, candidates, available, flag, role, where) -> str:
    if name is not None and name not in available:
        raise DataError(f"column {name!r} not found in {where}; available columns: {', '.join(available)}. Fix {flag}.")
    found = name or next((c for c in candidates if c in available), None)
    if found is None:
        raise DataError(f"cannot tell which column of {where} holds the {role}; available columns: "
                        f"{', '.join(available)}. Pass {flag}.")
    return found


def _messages_frame(values: list, where: str) -> pd.DataFrame:
    rows = []
    for i, messages in enumerate(values):
        turns = list(messages) if isinstance(messages, (list, tuple, np.ndarray)) else None
        ok = turns and all(isinstance(t, dict) and isinstance(t.get("content"), str) and t.get("role") for t in turns)
        if not ok or turns[-1]["role"] != "assistant" or len(turns) < 2 or not turns[-1]["content"].strip():
            raise DataError(f"row index {i} of {where}: 'messages' must be a list of {{role, content}} turns ending "
                            "with the assistant's answer; fix or remove it")
        prompt = [{"role": t["role"], "content": t["content"]} for t in turns[:-1]]
        answer = turns[-1]["content"]
        rows.append({"messages": json.dumps(prompt, ensure_ascii=False), "target": answer, "references": [answer],
                     "label": 0})
    return pd.DataFrame(rows)


def _label_names(frames: dict[str, pd.DataFrame]) -> list[str]:
    """The choice texts of a multiple-choice task when every example offers the same ones (else none)."""
    first = frames["train"]["choices"].iloc[0]
    same = all(list(c) == list(first) for f in frames.values() for c in f["choices"])
    return list(first) if same else []


def _to_dataset(frame: pd.DataFrame, multiple_choice: bool):
    import datasets

    keys = ("messages", "choices", "label") if multiple_choice else ("messages", "target", "references")
    return datasets.Dataset.from_dict({k: [list(v) if isinstance(v, (list, tuple, np.ndarray)) else v
                                           for v in frame[k].tolist()] for k in keys})


def _fingerprint(frames: dict[str, pd.DataFrame], kind_name: str, multiple_choice: bool) -> str:
    """sha256 over the kind's name, then every example used: [split, messages, choices/references, label] as JSON."""
    digest = hashlib.sha256(kind_name.encode())
    for split in SPLITS:
        frame = frames[split]
        answers = frame["choices"] if multiple_choice else frame["references"]
        for messages, answer, label in zip(frame["messages"], answers, frame["label"]):
            digest.update(json.dumps([split, messages, list(answer), int(label)], ensure_ascii=False).encode() + b"\n")
    return digest.hexdigest()
