"""Shared-base concurrent training: K LoRA runs (different ranks, learning rates or seeds) in one pass over
one frozen base model — the technique of mLoRA / ASPEN.

HF peft holds several named adapters on one model, and its `adapter_names` mixed-batch forward routes each row
of a batch to its own adapter (`LoraLayer._mixed_batch_forward`, `ModulesToSaveWrapper._mixed_batch_forward`).
peft offers that for inference only (`PeftModel` refuses `adapter_names` in training mode). The layers' routed
forward is differentiable, so training needs only what this module adds: forward pre-hooks that hand each
layer the row-to-adapter routing while the model trains, one concatenated batch per step built from every run's
own sub-batch, each run's loss on its own rows, and per run its own AdamW, schedule and gradient clipping.

Every run equals the same run trained alone by `peftlab.train.train` (same seed, settings, data order,
initial adapter and head) within float tolerance when training is deterministic — no dropout in the base and
`lora_dropout=0`: with dropout, runs draw their masks from one stream, so they see other (equally distributed)
masks than alone. The base's weights are read once per step for all runs; forward and backward FLOPs are the
same as K separate runs (every run's activations differ), so the gain is in larger matrix products, one pass
of per-operator overhead, one model in memory, and one tokenization and validation loop.

Limits: LoRA without DoRA (peft refuses mixed batches with DoRA); every run shares the batch size, epochs and
max steps; sequence classification (each run's loss is cross-entropy on its rows, as the model's own loss).
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from accelerate.utils import set_seed
from peft.tuners.lora import LoraLayer
from peft.utils.other import AuxiliaryTrainingWrapper
from transformers import get_linear_schedule_with_warmup

from peftlab.errors import MethodError
from peftlab.evaluate import evaluate_split
from peftlab.measure import optimizer_state_bytes
from peftlab.methods import get_method
from peftlab.tasks.encode import train_loader
from peftlab.train.trainer import TrainConfig, TrainingDiverged, TrainOutcome, parameter_groups

SINGLE_ADAPTER = "default"  # the adapter name of a run trained alone (peft's default)


@dataclass
class RunSpec:
    """One run of a shared-base group: its adapter name, method overrides (e.g. {"r": 16}), learning rate, seed."""

    name: str
    overrides: dict[str, Any]
    seed: int = 0
    learning_rate: float | None = None  # None: the method's default (or overrides["learning_rate"])


def _single_run_model(load_base, method_name: str, spec: RunSpec):
    """The run as `compare` would build it alone: seed, fresh base, method applied. (model, settings, lr)."""
    method = get_method(method_name)
    set_seed(spec.seed)
    base = load_base()
    settings, learning_rate = method.resolve(base, spec.overrides)
    if settings.get("use_dora"):
        raise MethodError("shared-base training does not support DoRA (peft has no mixed-batch DoRA forward)")
    return method.apply(base, settings), settings, spec.learning_rate or learning_rate


def build_shared_model(load_base, specs: list[RunSpec], method_name: str = "lora"):
    """One base with one adapter (and head copy) per run, each initialised exactly as the run alone would be.

    `load_base()` returns a fresh pretrained classifier. Returns (model, learning rates by run name).
    """
    if len({spec.name for spec in specs}) != len(specs) or not specs:
        raise MethodError("shared-base runs need distinct, non-empty names")
    from peft import get_peft_model

    base_names = [name for name, _ in load_base().named_parameters()]
    for spec in specs:
        if spec.name == SINGLE_ADAPTER or any(f".{spec.name}." in name for name in base_names):
            raise MethodError(f"shared-base run name '{spec.name}' clashes with a module or adapter name; "
                              "pick another (e.g. 'run1')")
    shared, learning_rates = None, {}
    for spec in specs:
        single, settings, learning_rates[spec.name] = _single_run_model(load_base, method_name, spec)
        config = get_method(method_name).settings_class(**settings)
        if shared is None:
            set_seed(specs[0].seed)
            shared = get_peft_model(load_base(), config, adapter_name=spec.name)
        else:
            shared.add_adapter(spec.name, config)
        targets = dict(shared.named_parameters())
        with torch.no_grad():
            for name, tensor in single.named_parameters():
                if tensor.requires_grad:
                    targets[name.replace(f".{SINGLE_ADAPTER}.", f".{spec.name}.")].copy_(tensor)
        del single
    for name, parameter in shared.named_parameters():
        parameter.requires_grad_(any(f".{spec.name}." in name for spec in specs))
    return shared, learning_rates


def run_parameters(model, name: str) -> list[torch.nn.Parameter]:
    return [p for n, p in model.named_parameters() if f".{name}." in n]


def adapter_state(model, name: str) -> dict[str, torch.Tensor]:
    """A run's trainable tensors under the names they have when the run trains alone (adapter `default`)."""
    return {n.replace(f".{name}.", f".{SINGLE_ADAPTER}."): p.detach().clone()
            for n, p in model.named_parameters() if f".{name}." in n}


@contextlib.contextmanager
def routed(model, routing):
    """While inside: every LoRA layer and head copy sends row i to adapter routing[i] (a list), or every row to
    `routing` (a str). The list can be replaced between steps through the yielded dict's "names"."""
    state = {"names": routing}

    def hook(module, args, kwargs):
        names = state["names"]
        rows = (args[0] if args else next(iter(kwargs.values()))).shape[0]
        kwargs["adapter_names"] = [names] * rows if isinstance(names, str) else names
        return args, kwargs

    handles = [module.register_forward_pre_hook(hook, with_kwargs=True) for module in model.modules()
               if isinstance(module, (LoraLayer, AuxiliaryTrainingWrapper))]
    try:
        yield state
    finally:
        for handle in handles:
            handle.remove()


def concatenate(batches: list[dict[str, torch.Tensor]], pad_token_id: int, padding_side: str = "right") -> dict:
    """One batch from sub-batches padded to their longest (ids with the pad token, masks and types with 0)."""
    length = max(batch["input_ids"].shape[1] for batch in batches)
    out: dict[str, list[torch.Tensor]] = {}
    for batch in batches:
        for key, value in batch.items():
            if value.ndim == 2:
                missing = length - value.shape[1]
                pad = (missing, 0) if padding_side == "left" else (0, missing)
                value = F.pad(value, pad, value=pad_token_id if key == "input_ids" else 0)
            out.setdefault(key, []).append(value)
    return {key: torch.cat(values) for key, values in out.items()}


def train_shared(model, specs: list[RunSpec], learning_rates: dict[str, float], encoded, tokenizer,
                 config: TrainConfig, num_labels: int) -> dict[str, TrainOutcome]:
    """Train every run's adapter at once, each on its own seeded, length-grouped batches; as `train` per run.

    `config` gives the shared budget (epochs/max_steps, batch sizes, decay, warm-up, clipping); its seed and
    learning rate are replaced by each run's. Every run's best-epoch adapter is restored at the end.
    """
    loaders = {spec.name: train_loader(encoded["train"], tokenizer, config.batch_size, spec.seed) for spec in specs}
    steps_per_epoch = len(next(iter(loaders.values())))
    total_steps = config.max_steps or config.epochs * steps_per_epoch
    epochs = math.ceil(total_steps / steps_per_epoch)
    optimizers, schedulers = {}, {}
    for spec in specs:
        run_model_view = _RunView(run_parameters(model, spec.name))
        optimizers[spec.name] = torch.optim.AdamW(parameter_groups(run_model_view, config.weight_decay),
                                                  lr=learning_rates[spec.name])
        schedulers[spec.name] = get_linear_schedule_with_warmup(
            optimizers[spec.name], int(config.warmup_ratio * total_steps), total_steps)
    outcomes = {spec.name: TrainOutcome() for spec in specs}
    best = {spec.name: (-math.inf, None) for spec in specs}
    torch.manual_seed(specs[0].seed)
    steps = 0
    for epoch in range(1, epochs + 1):
        model.train()
        start = time.perf_counter()
        with routed(model, []) as route:
            for sub_batches in zip(*loaders.values()):
                _shared_step(model, specs, sub_batches, route, optimizers, schedulers, outcomes, config, tokenizer)
                steps += 1
                if steps >= total_steps:
                    break
        seconds = time.perf_counter() - start
        for spec in specs:
            outcome = outcomes[spec.name]
            outcome.train_seconds += seconds  # the shared wall time: every run trained during all of it
            with routed(model, spec.name):
                scores = evaluate_split(model, encoded["validation"], tokenizer, config.eval_batch_size,
                                        torch.device("cpu"), num_labels, f"validate {spec.name}")
            outcome.validation.append({"epoch": epoch, **scores})
            if scores[config.selection_metric] > best[spec.name][0]:
                best[spec.name] = (scores[config.selection_metric], adapter_state(model, spec.name))
                outcome.best_epoch = epoch
    for spec in specs:
        outcomes[spec.name].optimizer_state_bytes = optimizer_state_bytes(optimizers[spec.name])
        _restore(model, spec.name, best[spec.name][1])
    return outcomes


class _RunView:
    """Duck-typed model for `parameter_groups`: one run's parameters."""

    def __init__(self, parameters):
        self._parameters = parameters

    def parameters(self):
        return iter(self._parameters)


def _shared_step(model, specs, sub_batches, route, optimizers, schedulers, outcomes, config, tokenizer) -> None:
    batch = concatenate(list(sub_batches), tokenizer.pad_token_id, tokenizer.padding_side)
    labels = batch.pop("labels")
    rows = [sub["input_ids"].shape[0] for sub in sub_batches]
    route["names"] = [spec.name for spec, count in zip(specs, rows) for _ in range(count)]
    logits = model(**batch).logits
    losses, start = [], 0
    for count in rows:
        losses.append(F.cross_entropy(logits[start:start + count], labels[start:start + count]))
        start += count
    for spec, loss in zip(specs, losses):
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"run {spec.name}: loss became {loss.item()} at step {outcomes[spec.name].steps + 1}")
    torch.stack(losses).sum().backward()  # run k's parameters only see run k's loss
    for spec, loss, sub in zip(specs, losses, sub_batches):
        torch.nn.utils.clip_grad_norm_(run_parameters(model, spec.name), config.max_grad_norm)
        optimizers[spec.name].step()
        schedulers[spec.name].step()
        optimizers[spec.name].zero_grad(set_to_none=True)
        outcome = outcomes[spec.name]
        outcome.train_loss.append(loss.item())
        outcome.train_tokens += int(sub["attention_mask"].sum())
        outcome.steps += 1


@torch.no_grad()
def _restore(model, name: str, state: dict[str, torch.Tensor] | None) -> None:
    if state is None:
        return
    for parameter_name, parameter in model.named_parameters():
        key = parameter_name.replace(f".{name}.", f".{SINGLE_ADAPTER}.")
        if f".{name}." in parameter_name and key in state:
            parameter.copy_(state[key])
