"""Shared-base training: K LoRA runs trained together by the one loop (:func:`peftlab.train.train`) on one frozen
base, each run's batch stacked along the batch dimension.

A :class:`RunStack` holds K runs, each built exactly as it is built alone (its seed, its own peft model). For a
training step the first run's model carries the stacked batch: its frozen base runs each matmul once over all K
runs' rows, and in every adapted layer the K adapters' products are two batched matmuls (``torch.bmm`` over a
``[K, r, in]`` stack of the runs' own A matrices and a ``[K, out, r]`` stack of their B matrices, smaller ranks
padded with zeros). A classifier's trainable head copy (peft's ``modules_to_save``) is applied per run to its own
rows. The stacks are built every step from the runs' own parameters (``torch.stack``), so training updates each
run's peft model in place: nothing is copied back, and saving, testing, probes and export see the run as if it had
trained alone. Each run's loss is its own rows' loss (the model's sequence-classification loss); the loop sums them
for one backward — the adapters are disjoint, so each gets exactly its own gradient — and clips and steps each run
with its own optimizer.

Why our own forward and not peft's: peft's mixed-batch routing (``adapter_names``, ``_mixed_batch_forward``) is for
inference and, per adapted layer and per run, gathers the run's rows, runs the adapter and scatters the result
back; trained that way (the removed ``train/multi.py``) K = 4 runs took 1.6x the time of the same runs one after
another on CPU, the difference being that data movement (docs/PERFORMANCE.md). Here each run's rows are a
contiguous block, so the routing is a reshape: no gather, no scatter, no full-size zero buffers.

What stacks (:func:`stack_refusal` says why not, and the caller trains the runs one after another as before):
sequence classification or regression models whose trainable parameters are all plain LoRA linear layers (no
DoRA, no ``lora_dropout``, no LoRA bias) and head copies, with identical frozen base weights. The base's own
dropout draws one mask over the stacked batch, so with dropout in the base the runs see other (equally
distributed) masks than alone; with it off the results equal the runs trained one after another within float
tolerance (tests/test_shared_base.py).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F
from peft.tuners.lora.layer import Linear as LoraLinear
from peft.tuners.lora.layer import LoraLayer
from peft.utils.other import AuxiliaryTrainingWrapper, ModulesToSaveWrapper
from transformers.loss.loss_utils import ForSequenceClassificationLoss


class NotStackable(ValueError):
    """These runs cannot train stacked (the caller trains them one after another)."""


def _base_model(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def stack_refusal(models: list) -> str | None:
    """Why these runs' models cannot train stacked, in one line; None when they can."""
    first = models[0]
    if not type(_base_model(first)).__name__.endswith("ForSequenceClassification"):
        return "only sequence classification and regression models stack"
    modules = [dict(model.named_modules()) for model in models]
    covered: list[set[int]] = [set() for _ in models]
    for name, module in modules[0].items():
        if isinstance(module, LoraLayer):
            if type(module) is not LoraLinear:
                return f"{name} is a {type(module).__name__}, not a plain LoRA linear layer"
        elif isinstance(module, AuxiliaryTrainingWrapper):
            if not isinstance(module, ModulesToSaveWrapper):
                return f"{name} is a {type(module).__name__}"
        else:
            continue
        for index, run_modules in enumerate(modules):
            twin = run_modules.get(name)
            if type(twin) is not type(module) or len(twin.active_adapters) != 1:
                return f"the runs differ at {name}"
            adapter = twin.active_adapters[0]
            if isinstance(twin, LoraLayer):
                if twin.merged or twin.use_dora.get(adapter) or not isinstance(twin.lora_dropout[adapter],
                                                                                torch.nn.Identity):
                    return "DoRA, lora_dropout and merged adapters do not stack"
                if twin.lora_B[adapter].bias is not None or twin.lora_A[adapter].bias is not None:
                    return "LoRA bias does not stack"
                trained = [twin.lora_A[adapter].weight, twin.lora_B[adapter].weight]
            else:
                trained = list(twin.modules_to_save[adapter].parameters())
            covered[index].update(id(parameter) for parameter in trained)
    for index, model in enumerate(models):
        other = [name for name, p in model.named_parameters() if p.requires_grad and id(p) not in covered[index]]
        if other:
            return f"a run trains parameters other than LoRA matrices and head copies ({other[0]})"
    frozen = [{name: p for name, p in model.named_parameters() if not p.requires_grad and ".original_module." not in
               name} for model in models]
    for other in frozen[1:]:
        if other.keys() != frozen[0].keys() or any(not torch.equal(other[n], p) for n, p in frozen[0].items()):
            return "the runs' frozen base weights differ"
    return None


class RunStack:
    """K runs for :func:`peftlab.train.train`; ``models`` as each run is built alone. One model is a stack of one
    (the loop's ordinary case: its own forward and loss). ``pad_token_id`` / ``padding_side``: how to pad the
    runs' batches to the longest (the tokenizer's)."""

    def __init__(self, models: list, pad_token_id: int = 0, padding_side: str = "right"):
        self.models = list(models)
        self.pad_token_id, self.padding_side = pad_token_id or 0, padding_side
        self._replaced: list[tuple[torch.nn.Module, object]] = []
        if len(self.models) > 1:
            reason = stack_refusal(self.models)
            if reason:
                raise NotStackable(reason)
            self._replaced = self._stacked_forwards()

    def __len__(self) -> int:
        return len(self.models)

    def losses(self, carrier, batches: tuple[dict, ...]) -> list[torch.Tensor]:
        """Every run's loss on its own batch; ``carrier``: the first run's model as the loop prepared it."""
        if len(self.models) == 1:
            return [carrier(**batches[0]).loss]
        stacked = stack_batches(batches, self.pad_token_id, self.padding_side)
        labels = stacked.pop("labels")
        with self._stacking():
            logits = carrier(**stacked).logits
        config = _base_model(self.models[0]).config
        return [ForSequenceClassificationLoss(run_labels, run_logits, config)
                for run_labels, run_logits in zip(labels.split(len(batches[0]["labels"])),
                                                  logits.split(len(batches[0]["labels"])))]

    @contextlib.contextmanager
    def _stacking(self) -> Iterator[None]:
        """While inside, the first run's adapted layers and head copies compute every run's rows (instance
        ``forward`` attributes, removed on the way out: outside, the first run's model is its own again)."""
        for module, forward in self._replaced:
            module.forward = forward
        try:
            yield
        finally:
            for module, _ in self._replaced:
                del module.forward

    def _stacked_forwards(self) -> list[tuple[torch.nn.Module, object]]:
        runs = len(self.models)
        modules = [dict(model.named_modules()) for model in self.models]
        replaced = []
        for name, module in modules[0].items():
            twins = [run_modules[name] for run_modules in modules]
            if isinstance(module, LoraLayer):
                replaced.append((module, _stacked_lora_forward(module, twins, runs)))
            elif isinstance(module, ModulesToSaveWrapper):
                heads = [twin.modules_to_save[twin.active_adapters[0]] for twin in twins]
                replaced.append((module, _stacked_head_forward(heads, runs)))
        return replaced


def _stacked_lora_forward(layer, twins: list, runs: int):
    adapters = [twin.active_adapters[0] for twin in twins]
    a_weights = [twin.lora_A[adapter].weight for twin, adapter in zip(twins, adapters)]
    b_weights = [twin.lora_B[adapter].weight for twin, adapter in zip(twins, adapters)]
    rank = max(weight.shape[0] for weight in a_weights)
    scales = torch.tensor([twin.scaling[adapter] for twin, adapter in zip(twins, adapters)])

    def forward(x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        result = layer.base_layer(x, *args, **kwargs)
        a = torch.stack([F.pad(weight, (0, 0, 0, rank - weight.shape[0])) for weight in a_weights])  # [K, r, in]
        b = torch.stack([F.pad(weight, (0, rank - weight.shape[1])) for weight in b_weights])  # [K, out, r]
        rows = x.to(a.dtype).reshape(runs, -1, x.shape[-1])
        delta = torch.bmm(torch.bmm(rows, a.transpose(1, 2)), b.transpose(1, 2))
        delta = delta * scales.to(delta.device, delta.dtype).view(runs, 1, 1)
        return result + delta.reshape(result.shape).to(result.dtype)

    return forward


def _stacked_head_forward(heads: list, runs: int):
    def forward(x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return torch.cat([head(part, *args, **kwargs) for head, part in zip(heads, x.chunk(runs))])

    return forward


def stack_batches(batches: tuple[dict, ...], pad_token_id: int, padding_side: str = "right") -> dict:
    """One batch from the runs' batches (each run's rows a contiguous block, in run order), padded to the longest:
    token ids with the pad token, masks and token types with 0."""
    rows = {len(batch["input_ids"]) for batch in batches}
    if len(rows) != 1:
        raise NotStackable(f"the runs' batches have different numbers of rows ({sorted(rows)})")
    length = max(batch["input_ids"].shape[1] for batch in batches)
    parts: dict[str, list[torch.Tensor]] = {}
    for batch in batches:
        for key, value in batch.items():
            if key != "labels" and value.ndim == 2 and value.shape[1] < length:
                missing = length - value.shape[1]
                value = F.pad(value, (missing, 0) if padding_side == "left" else (0, missing),
                              value=pad_token_id if key == "input_ids" else 0)
            parts.setdefault(key, []).append(value)
    return {key: torch.cat(values) for key, values in parts.items()}
