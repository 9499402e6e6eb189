"""Linear probe: only the task head trains; the pretrained base is frozen."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from peftlab.methods.base import Method, freeze_all_but
from peftlab.methods.partial_state import load_trainable_tensors, save_trainable_tensors
from peftlab.models import head_module_names


@dataclass
class HeadConfig:
    """The head is whatever sits outside the pretrained base (e.g. BERT's `classifier`, Llama's `score`)."""


class HeadOnly(Method):
    def apply(self, model: nn.Module, settings: dict) -> nn.Module:
        heads = tuple(f"{name}." for name in head_module_names(model))
        return freeze_all_but(model, lambda name: name.startswith(heads))

    def save(self, model: nn.Module, directory: Path) -> None:
        save_trainable_tensors(model, directory)

    def load(self, base_model: nn.Module, directory: Path) -> nn.Module:
        return load_trainable_tensors(self.apply(base_model, {}), directory)

    def merge(self, model: nn.Module) -> nn.Module:
        return model  # the trained tensors are the base's own: loaded, they are the merged model


HEAD = HeadOnly(
    name="head",
    summary="linear probe: only the classifier head trains",
    learning_rate=5e-2,
    settings_class=HeadConfig,
    mergeable=True,
)
