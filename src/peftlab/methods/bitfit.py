"""BitFit (Ben Zaken et al., 2022): train every bias term of the base, plus the task head (a classifier's new head;
a language model's pretrained output layer stays frozen).

HF peft has no method that trains the base's existing biases, so it lives here.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from peftlab.methods.base import freeze_all_but
from peftlab.methods.partial_state import PartialStateMethod
from peftlab.models import head_module_names, new_head_names


@dataclass
class BitFitConfig:
    """BitFit trains biases by definition; it has no settings besides the learning rate."""


class BitFit(PartialStateMethod):
    def refusal(self, model: nn.Module, settings: dict) -> str | None:
        if not _base_biases(model):
            return f"BitFit trains the base's bias terms, and model type '{_model_type(model)}' has none"
        return None

    def apply(self, model: nn.Module, settings: dict) -> nn.Module:
        self.check_applies(model, settings)
        heads = tuple(f"{name}." for name in new_head_names(model))  # a classifier's head; not an LM's output layer
        return freeze_all_but(model, lambda name: name.endswith(".bias") or name.startswith(heads))


def _base_biases(model: nn.Module) -> list[str]:
    heads = tuple(f"{name}." for name in head_module_names(model))
    return [n for n, _ in model.named_parameters() if n.endswith(".bias") and not n.startswith(heads)]


def _model_type(model: nn.Module) -> str:
    return getattr(getattr(model, "config", None), "model_type", None) or type(model).__name__


BITFIT = BitFit(
    name="bitfit",
    summary="BitFit: all bias terms and the classifier head train",
    learning_rate=1e-3,
    settings_class=BitFitConfig,
    mergeable=True,
    estimate_plan="bitfit",
    trains_base_weights=True,
)
