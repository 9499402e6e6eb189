"""Full fine-tuning (FFT): every parameter trains. The reference every other method is compared with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from peftlab.methods.base import Method, freeze_all_but


@dataclass
class FullConfig:
    """Full fine-tuning has no settings of its own (learning rate is a training key)."""


class FullFineTuning(Method):
    def apply(self, model: nn.Module, settings: dict) -> nn.Module:
        return freeze_all_but(model, lambda name: True)

    def save(self, model: nn.Module, directory: Path) -> None:
        model.save_pretrained(directory, safe_serialization=True)

    def load(self, base_model: nn.Module, directory: Path) -> nn.Module:
        return type(base_model).from_pretrained(directory, use_safetensors=True)

    def merge(self, model: nn.Module) -> nn.Module:
        return model  # the trained model is already a complete transformers model


FULL = FullFineTuning(
    name="full",
    summary="full fine-tuning: all weights train (AdamW keeps two moments per weight)",
    learning_rate=5e-5,
    settings_class=FullConfig,
    mergeable=True,
    estimate_plan="full",
    trains_base_weights=True,
    adapter_blocker="full fine-tuning changes every weight, so there is no adapter apart from the base; "
    "export the complete model with --merged OUT",
)
