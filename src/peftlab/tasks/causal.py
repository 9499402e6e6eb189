"""Encode prompted tasks (multiple choice, generation) for a causal language model.

Every row becomes ``input_ids`` = prompt tokens + answer tokens, and ``labels`` = -100 on the prompt (and on
padding) and the answer's ids on the answer, so the model's own shifted cross-entropy is the loss on the answer
only. The trained answer is the correct choice (multiple choice) or the target followed by EOS (generation, so the
model learns to stop). Prompts are rendered with the tokenizer's chat template when it has one (a user turn and
the assistant's opening), otherwise as the turns' texts joined by blank lines, the answer after a space.

Extra columns the evaluators use (:mod:`peftlab.evaluate.choice`, :mod:`peftlab.evaluate.generation`); the
collator drops them:

- ``prompt_ids``: the prompt's tokens;
- multiple choice: ``choice_ids`` (each choice's tokens) and ``answer`` (the correct choice's index);
- generation: ``references`` (the accepted answers).

Too long rows keep their answer (cut to half of ``max_length`` at most) and lose the start of the prompt.
"""

from __future__ import annotations

import json

import datasets
import torch

IGNORE_INDEX = -100  # label of tokens outside the loss (transformers' convention)


def render_prompt(tokenizer, messages: list[dict]) -> str:
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return "\n\n".join(turn["content"] for turn in messages)


def _prompt_ids(tokenizer, messages: list[dict]) -> list[int]:
    text = render_prompt(tokenizer, messages)
    templated = bool(getattr(tokenizer, "chat_template", None))
    return tokenizer(text, add_special_tokens=not templated)["input_ids"]


def _answer_ids(tokenizer, answer: str) -> list[int]:
    text = answer if getattr(tokenizer, "chat_template", None) else " " + answer.lstrip()
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _fit(prompt: list[int], answer: list[int], max_length: int) -> tuple[list[int], list[int]]:
    answer = answer[: max(1, max_length // 2)] if len(prompt) + len(answer) > max_length else answer
    room = max_length - len(answer)
    return (prompt[-room:] if len(prompt) > room else prompt), answer


def encode_choice_task(task, tokenizer, max_length: int) -> dict[str, datasets.Dataset]:
    """Each split of a multiple-choice task as causal-LM rows: the correct choice trained, every choice kept."""
    return _encode_prompted(task, tokenizer, max_length, multiple_choice=True)


def encode_generation_task(task, tokenizer, max_length: int) -> dict[str, datasets.Dataset]:
    """Each split of a generation task as causal-LM rows: the target and EOS trained, the references kept."""
    return _encode_prompted(task, tokenizer, max_length, multiple_choice=False)


def _encode_prompted(task, tokenizer, max_length: int, multiple_choice: bool) -> dict[str, datasets.Dataset]:
    """Each split as causal-LM rows (see the module docstring)."""
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []

    def encode(row):
        prompt = _prompt_ids(tokenizer, json.loads(row["messages"]))
        if multiple_choice:
            choices = [_answer_ids(tokenizer, choice) for choice in row["choices"]]
            answer = choices[row["label"]]
        else:
            answer = _answer_ids(tokenizer, row["target"]) + eos
        prompt, answer = _fit(prompt, answer, max_length)
        encoded = {
            "input_ids": prompt + answer,
            "attention_mask": [1] * (len(prompt) + len(answer)),
            "labels": [IGNORE_INDEX] * len(prompt) + answer,
            "length": len(prompt) + len(answer),
            "prompt_ids": prompt,
        }
        if multiple_choice:
            # every choice fits next to the kept prompt
            encoded["choice_ids"] = [c[: max(1, max_length - len(prompt))] for c in choices]
            encoded["answer"] = row["label"]
        else:
            encoded["references"] = row["references"]
        return encoded

    return encode_splits(task, encode)


def encode_splits(task, encode) -> dict[str, datasets.Dataset]:
    """Every split of `task` through the row encoder `encode` (a row of the task's table -> the encoded row)."""
    return {split: dataset.map(encode, remove_columns=dataset.column_names, desc=f"tokenize {split}",
                               load_from_cache_file=False)
            for split, dataset in task.splits.items()}


def pad_token_labels(features: list[dict], pad_token_id: int) -> dict:
    """Right-pad input_ids (pad token) and attention_mask (0) to the batch's longest input, and labels (-100) to its
    longest labels: the same width for a causal LM (its labels are its inputs), the target's own width for an
    encoder-decoder (:mod:`peftlab.tasks.seq2seq`, whose labels are the decoder's side)."""
    width = max(len(f["input_ids"]) for f in features)
    label_width = max(len(f["labels"]) for f in features)
    batch = {"input_ids": [], "attention_mask": [], "labels": []}
    for f in features:
        missing = width - len(f["input_ids"])
        batch["input_ids"].append(list(f["input_ids"]) + [pad_token_id] * missing)
        batch["attention_mask"].append(list(f["attention_mask"]) + [0] * missing)
        batch["labels"].append(list(f["labels"]) + [IGNORE_INDEX] * (label_width - len(f["labels"])))
    return {key: torch.tensor(value, dtype=torch.long) for key, value in batch.items()}
