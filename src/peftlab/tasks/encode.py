"""Tokenize a task once per study, and batch it with length grouping and dynamic padding."""

from __future__ import annotations

import datasets
import torch
from torch.utils.data import DataLoader
from transformers import DataCollatorWithPadding
from transformers.trainer_pt_utils import LengthGroupedSampler


def encode_task(task, tokenizer, max_length: int) -> dict[str, datasets.Dataset]:
    """Each split as token ids (no padding yet) plus `labels` and `length` (non-padding tokens)."""

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


class _Collator:
    """Pads a batch to its own longest example (dynamic padding); drops the `length` column."""

    def __init__(self, tokenizer):
        self.pad = DataCollatorWithPadding(tokenizer, return_tensors="pt")

    def __call__(self, features):
        return self.pad([{k: v for k, v in f.items() if k != "length"} for f in features])


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
