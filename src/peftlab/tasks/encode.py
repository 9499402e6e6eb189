"""Tokenize a task once per study, and batch it with length grouping and dynamic padding."""

from __future__ import annotations

import datasets
import torch
from torch.utils.data import DataLoader
from transformers import DataCollatorWithPadding
from transformers.trainer_pt_utils import LengthGroupedSampler

from peftlab.tasks.causal import pad_token_labels


def encode_task(task, tokenizer, max_length: int) -> dict[str, datasets.Dataset]:
    """Each split as token ids (no padding yet) plus `labels` and `length` (non-padding tokens), the way the task's
    kind encodes it: :func:`encode_labelled_task`, or for a causal LM (:mod:`peftlab.tasks.causal`) or an
    encoder-decoder (:mod:`peftlab.tasks.seq2seq`)."""
    return task.kind.encode(task, tokenizer, max_length)


def encode_labelled_task(task, tokenizer, max_length: int) -> dict[str, datasets.Dataset]:
    """Texts (and pairs) as token ids, truncated to ``max_length``; the label index as `labels`."""

    def encode(batch):
        pair = batch["text_pair"] if task.has_text_pair else None
        encoded = tokenizer(batch["text"], pair, truncation=True, max_length=max_length)
        encoded["labels"] = batch["label"]
        encoded["length"] = [len(ids) for ids in encoded["input_ids"]]
        return encoded

    encoded_splits = {}
    for split, dataset in task.splits.items():
        encoded_splits[split] = dataset.map(
            encode, batched=True, remove_columns=dataset.column_names, desc=f"tokenize {split}",
            load_from_cache_file=False,
        )
    return encoded_splits


MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "labels")


class _Collator:
    """Pads a batch to its own longest example (dynamic padding); keeps only the model's inputs and labels.

    Token labels (causal and seq2seq LMs) are right-padded with -100 by :func:`peftlab.tasks.causal.pad_token_labels`.
    """

    def __init__(self, tokenizer):
        self.pad = DataCollatorWithPadding(tokenizer, return_tensors="pt")
        self.pad_token_id = tokenizer.pad_token_id

    def __call__(self, features):
        features = [{k: v for k, v in f.items() if k in MODEL_INPUTS} for f in features]
        if isinstance(features[0].get("labels"), list):
            return pad_token_labels(features, self.pad_token_id)
        return self.pad(features)


def counted_tokens(batch) -> int:
    """Tokens a training batch counts for tokens/s: the target tokens of token labels, else the non-padding ones."""
    labels = batch.get("labels")
    if labels is not None and labels.ndim == 2:
        return int((labels != -100).sum())
    return int(batch["attention_mask"].sum())


def train_loader(dataset: datasets.Dataset, tokenizer, batch_size: int, seed: int) -> DataLoader:
    """Shuffled, length-grouped batches (similar lengths together, so little padding), seeded."""
    generator = torch.Generator().manual_seed(seed)
    sampler = LengthGroupedSampler(batch_size, lengths=dataset["length"], generator=generator)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=_Collator(tokenizer))


def eval_loader(dataset: datasets.Dataset, tokenizer, batch_size: int) -> tuple[DataLoader, list[int]]:
    """Batches sorted by length (fast) and the order that maps predictions back to the dataset's rows."""
    lengths = dataset["length"]
    order = sorted(range(len(dataset)), key=lambda i: lengths[i])
    loader = DataLoader(dataset.select(order), batch_size=batch_size, shuffle=False, collate_fn=_Collator(tokenizer))
    return loader, order
