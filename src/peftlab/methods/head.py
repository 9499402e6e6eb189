"""Linear probe: only the task head trains; the pretrained base is frozen."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from peftlab.methods.base import freeze_all_but
from peftlab.methods.partial_state import PartialStateMethod
from peftlab.models import head_module_names


@dataclass
class HeadConfig:
    """The head is whatever sits outside the pretrained base (e.g. BERT's `classifier`, Llama's `score`)."""


class HeadOnly(PartialStateMethod):
    def refusal(self, model: nn.Module, settings: dict) -> str | None:
        heads = tuple(f"{name}." for name in head_module_names(model))
        if not any(name.startswith(heads) for name, _ in model.named_parameters()):
            return ("it trains a task head, and this model has none of its own (a causal LM's output layer tied to "
                    "its input embeddings)")
        return None

    def apply(self, model: nn.Module, settings: dict) -> nn.Module:
        self.check_applies(model, settings)
        heads = tuple(f"{name}." for name in head_module_names(model))
        return freeze_all_but(model, lambda name: name.startswith(heads))


HEAD = HeadOnly(
    name="head",
    summary="linear probe: only the classifier head trains",
    learning_rate=5e-2,
    settings_class=HeadConfig,
    mergeable=True,
    estimate_plan="head",
    trains_base_weights=True,
)
