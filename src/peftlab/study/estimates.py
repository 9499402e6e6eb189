"""Measured next to estimated: every run checks the analytic cost model (`peftlab.estimate`) on itself.

Peak memory: the estimate for the run's shape (batch size, longest training example) sits next to the measured
peak (RSS on CPU, so allocator overhead makes the measurement larger; see docs/ESTIMATE.md). FLOPs: one forward
and backward on the first rows of the run's first training batch, counted by ``FlopCounterMode``, next to the
estimate for that shape. A few rows check the cost model as well as the whole batch (a step's FLOPs grow linearly
with its rows) at a fraction of the time: counting runs every operator through Python (docs/PERFORMANCE.md).
"""

from __future__ import annotations

from typing import Any

import torch

from peftlab.estimate import estimate_run
from peftlab.estimate.trace import count_step_flops
from peftlab.tasks.encode import train_loader

FLOP_COUNT_ROWS = 4  # rows of the first training batch the FLOP count runs on


def estimate_versus_measured(model, train_dataset, tokenizer, method_name: str, run_config: dict[str, Any],
                             batch_size: int, device: torch.device, seed: int, task_type: str = "classification") -> dict[str, Any]:
    """The estimate for a classifier, or for a causal LM (the LM head over every position) when the task is
    multiple-choice or generation."""
    task = "classification" if task_type == "classification" else "causal-lm"
    longest = max(train_dataset["length"])
    peak = estimate_run(model.config, method_name, run_config, batch_size, longest, device=device.type, task=task)
    batch = next(iter(train_loader(train_dataset, tokenizer, batch_size, seed)))
    batch = {key: value[:FLOP_COUNT_ROWS].to(device) for key, value in batch.items()}
    rows, seq_len = batch["input_ids"].shape
    counted = count_step_flops(model, batch)
    model.eval()
    estimated = estimate_run(model.config, method_name, run_config, rows, seq_len, device=device.type, task=task)
    return {
        "peak_memory_bytes": peak["peak_memory_bytes"],
        "peak_memory_shape": [batch_size, longest],
        "flops_per_step_estimated": estimated["flops_per_step"],
        "flops_per_step_counted": counted,
        "flops_shape": [rows, seq_len],
    }
