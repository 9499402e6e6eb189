"""Save and load only the trained tensors of a model whose other weights are the unchanged base.

Used by the methods that train a subset of the base's own parameters (head, bitfit): their checkpoint is
the trained tensors in one safetensors file, named as in the base model's state dict.
"""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import nn

from peftlab.methods.base import Method

STATE_FILE = "trained_state.safetensors"


def save_trainable_tensors(model: nn.Module, directory: Path) -> None:
    tensors = {name: p.detach().contiguous().cpu() for name, p in model.named_parameters() if p.requires_grad}
    save_file(tensors, str(Path(directory) / STATE_FILE))


def load_trainable_tensors(model: nn.Module, directory: Path) -> nn.Module:
    tensors = load_file(str(Path(directory) / STATE_FILE))
    own = dict(model.named_parameters())
    unknown = sorted(set(tensors) - set(own))
    if unknown:
        raise ValueError(f"{directory}: tensors not in the base model: {unknown[:3]}")
    model.load_state_dict(tensors, strict=False)
    return model


class PartialStateMethod(Method):
    """A method that trains some of the base's own tensors: saved as those tensors, merged by loading them."""

    def save(self, model: nn.Module, directory: Path) -> None:
        save_trainable_tensors(model, directory)

    def load(self, base_model: nn.Module, directory: Path) -> nn.Module:
        return load_trainable_tensors(self.apply(base_model, {}), directory)

    def merge(self, model: nn.Module) -> nn.Module:
        return model  # the trained tensors are the base's own: loaded, they are the merged model
