"""Measure one training step to check the estimate against: peak bytes of live tensors, and counted FLOPs.

Peak memory (CPU): the process's resident size is too noisy to check an analytic model against (the allocator
caches and fragments; see docs/ESTIMATE.md), so the step is traced instead. A first step runs untraced, so the
optimizer state exists; the second runs under ``torch.profiler`` with ``profile_memory=True``, whose allocation
and free events (read from the Kineto results, in time order) give the peak increase of live tensor bytes over
the step. The peak is that increase plus the bytes live when the step starts: parameters, buffers, optimizer
state and the batch. On CUDA, ``torch.cuda.max_memory_allocated`` over the second step gives the same quantity.

FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` over one forward and backward.

The step is the one peftlab's trainer takes: AdamW over the trainable parameters (decay on matrices only),
gradient clipping at 1.0, then ``zero_grad(set_to_none=True)``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

from peftlab.train.trainer import parameter_groups


def _step(model: nn.Module, batch: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer) -> None:
    loss = model(**batch).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def _storage_bytes(tensors) -> int:
    seen: dict[int, int] = {}
    for tensor in tensors:
        if torch.is_tensor(tensor) and tensor.device.type != "meta":
            storage = tensor.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())


def live_bytes_at_rest(model: nn.Module, optimizer: torch.optim.Optimizer, batch: dict[str, torch.Tensor]) -> int:
    """Bytes of the tensors alive between steps: parameters, buffers, optimizer state, the batch."""
    state = [value for per_param in optimizer.state.values() for value in per_param.values()]
    return _storage_bytes([*model.parameters(), *model.buffers(), *state, *batch.values()])


def make_optimizer(model: nn.Module, sgd: bool = False) -> torch.optim.Optimizer:
    groups = parameter_groups(model, 0.01)
    return torch.optim.SGD(groups, lr=1e-4) if sgd else torch.optim.AdamW(groups, lr=1e-4)


def _peak_increase_cpu(run) -> int:
    """Peak of (allocated - freed) tensor bytes while `run()` executes, from the profiler's memory events."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run()
    events = [event for event in prof.profiler.kineto_results.events() if event.name() == "[memory]"]
    events.sort(key=lambda event: event.start_ns())
    live = peak = 0
    for event in events:
        live += event.nbytes()
        peak = max(peak, live)
    return peak


def measure_peak_bytes(model: nn.Module, batch: dict[str, torch.Tensor], sgd: bool = False) -> dict[str, int]:
    """{"at_rest", "peak"}: live tensor bytes between steps, and at the peak of the second training step."""
    model.train()
    optimizer = make_optimizer(model, sgd)
    _step(model, batch, optimizer)
    at_rest = live_bytes_at_rest(model, optimizer, batch)
    device = next(model.parameters()).device
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        _step(model, batch, optimizer)
        torch.cuda.synchronize(device)
        return {"at_rest": at_rest, "peak": at_rest + torch.cuda.max_memory_allocated(device) - start}
    return {"at_rest": at_rest, "peak": at_rest + _peak_increase_cpu(lambda: _step(model, batch, optimizer))}


def _cpu_attention_formulas() -> dict:
    """FlopCounterMode knows SDPA's CUDA kernels but not the CPU flash kernel; count it with the same formulas."""
    def forward(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
        return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)

    def backward(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
        return flop_counter.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)

    aten = torch.ops.aten
    return {aten._scaled_dot_product_flash_attention_for_cpu: forward,
            aten._scaled_dot_product_flash_attention_for_cpu_backward: backward}


def count_step_flops(model: nn.Module, batch: dict[str, torch.Tensor]) -> int:
    """FLOPs FlopCounterMode counts for one forward and backward pass."""
    model.train()
    counter = FlopCounterMode(display=False, custom_mapping=_cpu_attention_formulas())
    with counter:
        model(**batch).loss.backward()
    model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def measure(model: nn.Module, batch: dict[str, torch.Tensor], sgd: bool = False) -> dict[str, Any]:
    flops = count_step_flops(model, batch)
    return {**measure_peak_bytes(model, batch, sgd), "flops": flops}
