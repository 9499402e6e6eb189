"""Counting what a run holds and writes: parameters, optimizer state, checkpoint files."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; shared tensors are counted once."""
    seen: set[int] = set()
    trainable = total = 0
    for parameter in model.parameters():
        if id(parameter) in seen:
            continue
        seen.add(id(parameter))
        total += parameter.numel()
        if parameter.requires_grad:
            trainable += parameter.numel()
    return trainable, total


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of every tensor the optimizer keeps (e.g. AdamW's two moments and step counters)."""
    return sum(
        value.numel() * value.element_size()
        for state in optimizer.state.values()
        for value in state.values()
        if torch.is_tensor(value)
    )


def directory_bytes(directory: Path, exclude: set[str] | None = None) -> int:
    """Total size of the files under a directory, except those named in `exclude`."""
    exclude = exclude or set()
    return sum(p.stat().st_size for p in Path(directory).rglob("*") if p.is_file() and p.name not in exclude)
