"""Memory of a training step: weights, gradients, optimizer state, activations, and the peak they add up to.

Precision (``dtype``):

- ``fp32``: everything in 4 bytes.
- ``bf16`` / ``fp16``: "pure" 16-bit training as torchtune and peft's examples run it: weights, gradients, AdamW
  states and activations in 2 bytes; no fp32 master copy. peft keeps LoRA/DoRA/IA3 factors and prompt/prefix
  embeddings in fp32 (its ``autocast_adapter_dtype``), with fp32 gradients and states.
- ``mixed``: automatic mixed precision as the HF Trainer's ``--bf16`` runs it: fp32 weights (the master copy),
  fp32 gradients and AdamW states, bf16 activations; autocast keeps a bf16 copy of every linear weight a backward
  op needs (2 bytes per such weight).

QLoRA stores the layer linears in 4-bit NF4 with double-quantized block constants (QLoRA paper: blocks of 64,
fp8 constants with an fp32 constant per 256 blocks): 0.5 + 1/64 + 4/(64·256) bytes per weight; embeddings and
norms stay in the compute dtype, and so does the LM head under bitsandbytes (torchtune quantizes it too).

The peak is not the sum of the parts: gradients appear while activations are being freed. For a step that is not
the first (optimizer state allocated), the peak is W + O + max(activations at the start of backward,
all gradients + the optimizer step's temporaries).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from peftlab.errors import ConfigError
from peftlab.estimate.plans import MethodPlan

DTYPES = ("fp32", "bf16", "fp16", "mixed")
OPTIMIZERS = ("adamw", "adamw8bit", "sgd")
NF4_BYTES_PER_WEIGHT = 0.5 + 1 / 64 + 4 / (64 * 256)
BNB_8BIT_MIN_NUMEL = 4096  # bitsandbytes keeps 32-bit states for tensors smaller than this
BNB_8BIT_BLOCK = 256  # one fp32 absmax per block of 256 state values


def weight_dtype_bytes(dtype: str) -> int:
    """Bytes of a base weight as stored during training."""
    if dtype not in DTYPES:
        raise ConfigError(f"unknown --dtype '{dtype}'; use one of {', '.join(DTYPES)}")
    return 2 if dtype in ("bf16", "fp16") else 4


def activation_dtype_bytes(dtype: str) -> int:
    return 4 if dtype == "fp32" else 2


def adapter_dtype_bytes(plan: MethodPlan, dtype: str) -> int:
    """peft runs its adapters (LoRA, IA3, prompt and prefix embeddings) in fp32; ours and torchtune's follow
    the base."""
    return 4 if plan.added_parameters_fp32 and not plan.adapters_in_model_dtype else weight_dtype_bytes(dtype)


def _added_bytes(plan: MethodPlan, dtype: str) -> dict[str, int]:
    """Bytes per element of every added tensor: peft's head copy follows the base, its adapters are fp32."""
    base, adapter = weight_dtype_bytes(dtype), adapter_dtype_bytes(plan, dtype)
    return {name: (base if name.endswith(".modules_to_save") else adapter) for name, _ in plan.added}


def tensor_bytes(plan: MethodPlan, dtype: str) -> dict[str, float]:
    """Bytes per element of every parameter tensor the plan names (base and added)."""
    base = weight_dtype_bytes(dtype)
    sizes: dict[str, float] = {name: float(b) for name, b in _added_bytes(plan, dtype).items()}
    for lin in plan.tensors.linears:
        sizes[lin.name] = NF4_BYTES_PER_WEIGHT if plan.is_quantized(lin) else base
        sizes[f"{lin.name}.bias"] = base
    for tensor in plan.tensors.embeddings + plan.tensors.norms:
        sizes[tensor.name] = base
    return sizes


def weights_bytes(plan: MethodPlan, dtype: str) -> tuple[int, int]:
    """(all weights, the method's added parameters) in bytes."""
    base = weight_dtype_bytes(dtype)
    total = 0.0
    for lin in plan.tensors.linears:
        total += lin.weight_numel * (NF4_BYTES_PER_WEIGHT if plan.is_quantized(lin) else base)
        total += (lin.out_features if lin.bias else 0) * base
    total += sum(t.numel for t in plan.tensors.embeddings + plan.tensors.norms) * base
    added_sizes = _added_bytes(plan, dtype)
    added = sum(numel * added_sizes[name] for name, numel in plan.added)
    return int(total + added), int(added)


def _trainable_sizes(plan: MethodPlan, dtype: str) -> list[tuple[int, int]]:
    """(numel, bytes per element) of every trainable tensor (a trained tensor is never stored in 4 bits)."""
    sizes, base = tensor_bytes(plan, dtype), weight_dtype_bytes(dtype)
    return [(numel, int(sizes.get(name, base)) or base) for name, numel in plan.trainable]


def gradient_bytes(plan: MethodPlan, dtype: str, optimizer_in_backward: bool = False) -> int:
    """One gradient per trainable parameter, in the parameter's dtype; with the optimizer step fused into the
    backward pass (torchtune's optimizer_in_bwd) each gradient is freed after its update: the largest one."""
    sizes = [numel * nbytes for numel, nbytes in _trainable_sizes(plan, dtype)]
    if not sizes:
        return 0
    return max(sizes) if optimizer_in_backward else sum(sizes)


def optimizer_bytes(plan: MethodPlan, dtype: str, optimizer: str) -> int:
    """Optimizer state. AdamW: two moments per trainable parameter in its dtype plus a 4-byte step count per
    tensor. AdamW 8-bit (bitsandbytes): two 1-byte moments and an fp32 absmax per 256 values per moment
    (32-bit moments for tensors under 4096 values). SGD (no momentum): none."""
    if optimizer not in OPTIMIZERS:
        raise ConfigError(f"unknown --optimizer '{optimizer}'; use one of {', '.join(OPTIMIZERS)}")
    total = 0
    for numel, nbytes in _trainable_sizes(plan, dtype):
        if optimizer == "adamw":
            total += 2 * numel * nbytes + 4
        elif optimizer == "adamw8bit":
            small = numel < BNB_8BIT_MIN_NUMEL
            total += 2 * numel * 4 if small else 2 * (numel + 4 * math.ceil(numel / BNB_8BIT_BLOCK))
    return total


def optimizer_step_temporary_bytes(plan: MethodPlan, dtype: str, optimizer: str, implementation: str) -> int:
    """Extra memory while the optimizer steps. torch's AdamW computes sqrt(v) into a new tensor: per tensor in the
    single-tensor implementation (CPU; twice the largest tensor), for the whole parameter group at once in the
    foreach implementation (CUDA default); the fused kernel and bitsandbytes need none; SGD updates in place."""
    if optimizer != "adamw" or implementation == "fused":
        return 0
    sizes = [numel * nbytes for numel, nbytes in _trainable_sizes(plan, dtype)]
    if not sizes:
        return 0
    return 2 * max(sizes) if implementation == "single" else sum(sizes)


@dataclass(frozen=True)
class MemoryBreakdown:
    weights: int
    gradients: int
    optimizer: int
    activations: int  # with the chosen gradient-checkpointing setting
    activations_no_checkpointing: int
    activations_checkpointing: int
    peft_params: int  # the method's added parameters (part of weights)
    optimizer_step_temporary: int
    total: int

    def as_dict(self) -> dict[str, int]:
        return {"weights": self.weights, "gradients": self.gradients, "optimizer": self.optimizer,
                "activations": self.activations, "activations_no_checkpointing": self.activations_no_checkpointing,
                "activations_checkpointing": self.activations_checkpointing, "peft_params": self.peft_params,
                "total": self.total}


def peak_bytes(weights: int, gradients: int, optimizer: int, activations: int, step_temporary: int) -> int:
    """Peak of a training step after the first: activations peak at the start of backward, before gradients
    exist (they are set to None after each step); gradients peak at its end, when activations are freed."""
    return weights + optimizer + max(activations, gradients + step_temporary)
