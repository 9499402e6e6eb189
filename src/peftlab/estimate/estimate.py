"""The estimate: per method, parameters, memory, FLOPs, step time, checkpoint size and the GPUs it fits on.

``estimate(model, methods, settings)`` is what ``peftlab estimate`` prints; ``estimate_run(...)`` is the same for
one run of ``peftlab compare`` (a sequence classifier on the device it trains on), recorded next to what the run
measured. Everything is computed from the model's config; nothing is loaded or run.
"""

from __future__ import annotations

from typing import Any

from peftlab.errors import MethodError
from peftlab.estimate import memory as mem
from peftlab.estimate.architecture import ModelFacts, facts_from_config, modelled_as
from peftlab.estimate.flops import step_flops
from peftlab.estimate.gpus import fits_on, get_gpu
from peftlab.estimate.load import load_facts
from peftlab.estimate.peak import activation_bytes
from peftlab.estimate.plans import MethodPlan, build_plan, resolve_settings
from peftlab.estimate.settings import EstimateSettings
from peftlab.methods import TRAINING_KEYS

SAFETENSORS_HEADER_BYTES_PER_TENSOR = 100  # the JSON header names each tensor with its dtype, shape, offsets


def checkpoint_bytes(plan: MethodPlan, dtype: str) -> int:
    """What the method saves: the whole model when every weight trains (full fine-tuning), else the trained tensors."""
    sizes = mem.tensor_bytes(plan, dtype)
    base = mem.weight_dtype_bytes(dtype)
    if plan.trains_all_weights:
        names = [(lin.name, lin.weight_numel) for lin in plan.tensors.linears]
        names += [(f"{lin.name}.bias", lin.out_features) for lin in plan.tensors.linears if lin.bias]
        names += [(t.name, t.numel) for t in plan.tensors.embeddings + plan.tensors.norms]
    else:
        names = list(plan.trainable)
    data = sum(numel * sizes.get(name, base) for name, numel in names)
    return int(data + SAFETENSORS_HEADER_BYTES_PER_TENSOR * len(names))


def estimate_plan(facts: ModelFacts, plan: MethodPlan, settings: EstimateSettings) -> dict[str, Any]:
    """Every number of one method's estimate, as the JSON object `peftlab estimate --json` prints."""
    weights, peft_params = mem.weights_bytes(plan, settings.dtype)
    gradients = mem.gradient_bytes(plan, settings.dtype, settings.optimizer_in_backward)
    optimizer = mem.optimizer_bytes(plan, settings.dtype, settings.optimizer)
    temporary = mem.optimizer_step_temporary_bytes(plan, settings.dtype, settings.optimizer,
                                                   settings.optimizer_implementation())
    plain, checkpointed = activation_bytes(facts, plan, settings)
    activations = checkpointed if settings.grad_checkpointing else plain
    total = mem.peak_bytes(weights, gradients, optimizer, activations, temporary)
    flops = step_flops(facts, plan, settings.batch_size, settings.seq_len, settings.grad_checkpointing,
                       settings.attention_for(facts), settings.target_len)
    tokens_per_step = settings.batch_size * settings.seq_len
    gpu = get_gpu(settings.gpu)
    step_seconds = flops.total * tokens_per_step / (gpu.peak_flops(settings.dtype) * settings.utilisation)
    return {
        "method": plan.method,
        "model": facts.name,
        "task": plan.task,
        "total_params": plan.tensors.total_numel() + sum(numel for _, numel in plan.added),
        "trainable_params": sum(numel for _, numel in plan.trainable),
        "memory_bytes": mem.MemoryBreakdown(weights, gradients, optimizer, activations, plain, checkpointed,
                                            peft_params, temporary, total).as_dict(),
        "flops_per_token": {"forward": flops.forward, "backward_activations": flops.backward_activations,
                            "backward_weights": flops.backward_weights, "recompute": flops.recompute,
                            "total": flops.total},
        "flops_per_step": flops.total * tokens_per_step,
        "tokens_per_step": tokens_per_step,
        "step_seconds": step_seconds,
        "gpu": gpu.name,
        "checkpoint_bytes": checkpoint_bytes(plan, settings.dtype),
        "fits_on": fits_on(total),
        "architecture": modelled_as(facts),
    }


def estimate_method(facts: ModelFacts, method: str, settings: EstimateSettings,
                    overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    plan = build_plan(facts, method, resolve_settings(method, overrides), settings.task_for(facts), settings.recipe)
    return estimate_plan(facts, plan, settings)


def estimate(model: str, methods: list[str], settings: EstimateSettings | None = None,
             method_overrides: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """One estimate per method for `model` (a built-in name, config.json, folder, alias or HF id)."""
    settings = settings or EstimateSettings()
    settings.check()
    if not methods:
        raise MethodError("no method given; pass --methods, e.g. full,lora,qlora")
    facts = load_facts(model)
    method_overrides = method_overrides or {}
    return [estimate_method(facts, name, settings, method_overrides.get(name)) for name in methods]


def estimate_run(model_config: Any, method_name: str, settings: dict[str, Any] | None, batch_size: int, seq_len: int,
                 dtype: str = "fp32", device: str = "cpu", task: str = "classification",
                 target_len: int | None = None) -> dict[str, Any]:
    """The estimate for one `peftlab compare` run: a sequence classifier (the config's labels) or, with task
    "causal-lm", a causal LM (multiple-choice and generation runs: the LM head over every position), or with
    "seq2seq-lm" an encoder-decoder's conditional generation (`seq_len` the encoder's input, `target_len` the
    decoder's, the labels' width; None: as long as the input), trained with
    torch AdamW's fused kernel (as peftlab's trainer runs it) on `device` ("cpu" or "cuda") on batches padded to
    `seq_len`, `settings` the run's method
    settings (its record's "config"; learning_rate and keys the estimate does not model are ignored).

    Returns the method's estimate (as `estimate` gives it) plus `peak_memory_bytes` and `flops_per_step`.
    """
    facts = facts_from_config(model_config)
    overrides = {k: v for k, v in (settings or {}).items() if k not in TRAINING_KEYS}
    cuda = str(device).startswith("cuda")
    run = EstimateSettings(batch_size=batch_size, seq_len=seq_len, target_len=target_len, dtype=dtype, task=task,
                           padded=True,
                           device="cuda" if cuda else "cpu", adamw_kernel="fused")  # peftlab.train.trainer.adamw
    run.check()
    plan = build_plan(facts, method_name, resolve_settings(method_name, overrides), task)
    result = estimate_plan(facts, plan, run)
    result["peak_memory_bytes"] = result["memory_bytes"]["total"]
    return result


__all__ = ["EstimateSettings", "estimate", "estimate_method", "estimate_plan", "estimate_run"]
