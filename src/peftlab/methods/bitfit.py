"""BitFit (Ben Zaken et al., 2022): train every bias term of the base, plus the task head.

HF peft has no method that trains the base's existing biases, so it lives here.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from peftlab.errors import MethodError
from peftlab.methods.base import freeze_all_but
from peftlab.methods.partial_state import PartialStateMethod
from peftlab.models import head_module_names


@dataclass
class BitFitConfig:
    """BitFit trains biases by definition; it has no settings besides the learning rate."""


class BitFit(PartialStateMethod):
    def apply(self, model: nn.Module, settings: dict) -> nn.Module:
        heads = tuple(f"{name}." for name in head_module_names(model))
        base_biases = [n for n, _ in model.named_parameters() if n.endswith(".bias") and not n.startswith(heads)]
        if not base_biases:
            model_type = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
            raise MethodError(f"method 'bitfit' needs bias terms, and model type '{model_type}' has none; pick another method")
        return freeze_all_but(model, lambda name: name.endswith(".bias") or name.startswith(heads))


BITFIT = BitFit(
    name="bitfit",
    summary="BitFit: all bias terms and the classifier head train",
    learning_rate=1e-3,
    settings_class=BitFitConfig,
    mergeable=True,
    estimate_plan="bitfit",
    trains_base_weights=True,
)
