"""Encode prompted tasks (multiple choice, generation) for an encoder-decoder (T5, BART, ...).

The encoder reads the prompt and the decoder writes the answer, so every row is two sequences: ``input_ids`` /
``attention_mask`` = the prompt with the tokenizer's own special tokens (T5's closing ``</s>``, BART's
``<s> ... </s>``), and ``labels`` = the answer's tokens, which the model shifts right into its decoder inputs (its
``decoder_start_token_id`` first). The model's own cross-entropy on ``labels`` is then the loss on the answer, with
nothing to mask on the prompt side; padding is -100 (:func:`peftlab.tasks.causal.pad_token_labels` pads labels to
their own width). The trained answer is, as for a causal LM (:mod:`peftlab.tasks.causal`), the correct choice
(multiple choice: its own tokens, the ones scored) or the target (generation: as the tokenizer encodes a target,
its special tokens included, ending with EOS so that the model learns to stop; a BART checkpoint whose generation
forces ``<s>`` first then decodes the way it was trained). Prompts are rendered the same way as for a causal LM (a
chat template when the tokenizer has one, else the turns' texts).

Extra columns for the evaluators (:mod:`peftlab.evaluate.choice`, :mod:`peftlab.evaluate.generation`), dropped by
the collator: ``prompt_ids`` (the encoder's input, special tokens included), ``choice_ids`` and ``answer`` (multiple
choice), ``references`` (generation). ``length`` is the row's tokens, encoder and decoder together (what a batch
of it costs, for length grouping).

Too long prompts lose their start (their special tokens are kept); answers are cut to ``max_length``.
"""

from __future__ import annotations

import json

import datasets

from peftlab.tasks.causal import encode_splits, render_prompt


def _prompt_ids(tokenizer, messages: list[dict], max_length: int) -> list[int]:
    text = render_prompt(tokenizer, messages)
    plain = tokenizer(text, add_special_tokens=False)["input_ids"]
    if getattr(tokenizer, "chat_template", None):  # the template wrote its own special tokens
        return plain[-max_length:]
    full = tokenizer(text)["input_ids"]  # the tokenizer's own special tokens around the text: prefix + plain + suffix
    if len(full) <= max_length:
        return full
    start = next((k for k in range(len(full) - len(plain) + 1) if full[k:k + len(plain)] == plain), None)
    if start is None:  # not prefix + text + suffix: cut the end, as the tokenizer's own truncation would
        return full[:max_length]
    prefix, suffix = full[:start], full[start + len(plain):]
    room = max(1, max_length - len(prefix) - len(suffix))
    return prefix + plain[-room:] + suffix


def _choice_ids(tokenizer, choice: str) -> list[int]:
    """A choice's own tokens: what is scored (as lm-eval scores a seq2seq continuation) and trained."""
    return tokenizer(choice.strip(), add_special_tokens=False)["input_ids"]


def _target_ids(tokenizer, target: str) -> list[int]:
    """A generation target as the tokenizer writes one (HF's ``text_target`` convention: BART's ``<s> ... </s>``,
    T5's ``... </s>``), ending with EOS so that the model learns to stop."""
    ids = tokenizer(target.strip())["input_ids"]
    if tokenizer.eos_token_id is not None and (not ids or ids[-1] != tokenizer.eos_token_id):
        ids.append(tokenizer.eos_token_id)
    return ids


def encode_seq2seq_choice_task(task, tokenizer, max_length: int) -> dict[str, datasets.Dataset]:
    """Each split of a multiple-choice task as encoder-decoder rows: the correct choice as the target."""
    return _encode(task, tokenizer, max_length, multiple_choice=True)


def encode_seq2seq_generation_task(task, tokenizer, max_length: int) -> dict[str, datasets.Dataset]:
    """Each split of a generation task as encoder-decoder rows: the target and EOS as the decoder's labels."""
    return _encode(task, tokenizer, max_length, multiple_choice=False)


def _encode(task, tokenizer, max_length: int, multiple_choice: bool) -> dict[str, datasets.Dataset]:
    def encode(row):
        prompt = _prompt_ids(tokenizer, json.loads(row["messages"]), max_length)
        if multiple_choice:
            choices = [_choice_ids(tokenizer, choice)[:max_length] for choice in row["choices"]]
            answer = choices[row["label"]]
        else:
            answer = _target_ids(tokenizer, row["target"])[:max_length]
        encoded = {
            "input_ids": prompt,
            "attention_mask": [1] * len(prompt),
            "labels": answer,
            "length": len(prompt) + len(answer),
            "prompt_ids": prompt,
        }
        if multiple_choice:
            encoded["choice_ids"] = choices
            encoded["answer"] = row["label"]
        else:
            encoded["references"] = row["references"]
        return encoded

    return encode_splits(task, encode)
