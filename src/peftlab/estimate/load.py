"""Turn what the user names (--model) into ModelFacts, reading a config and never weights.

In order: a built-in name (offline), a local ``config.json`` or model folder, a peftlab offline alias
(``minilm``, ``smollm2-135m``), else a Hugging Face id whose ``config.json`` alone is fetched. Every failure is a
one-line :class:`ModelError`.
"""

from __future__ import annotations

import json
from pathlib import Path

from peftlab.errors import ModelError
from peftlab.estimate.architecture import ModelFacts, facts_from_config
from peftlab.estimate.builtin import builtin_facts, builtin_names
from peftlab.estimate.plans import resolve_settings
from peftlab.methods.registry import read_overrides_file
from peftlab.models import load_config, resolve_model


def _read_json_config(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except OSError as error:
        raise ModelError(f"cannot read model config {path}: {error.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelError(f"model config {path} is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise ModelError(f"model config {path} must be a JSON object (a transformers config.json)")
    return data


def _hint() -> str:
    return f"built-in names: {', '.join(builtin_names())}; or pass a local config.json or model folder"


def load_facts(model: str, trust_remote_code: bool = False) -> ModelFacts:
    """ModelFacts for a built-in name, a local config.json / folder, an offline alias or an HF id."""
    facts = builtin_facts(model)
    if facts is not None:
        return facts
    path = Path(model).expanduser()
    if path.is_file():
        return facts_from_config(_read_json_config(path), name=model)
    if path.is_dir() and (path / "config.json").is_file():
        return facts_from_config(_read_json_config(path / "config.json"), name=model)
    if path.suffix == ".json" or model.startswith(("/", "./", "../", "~")):
        raise ModelError(f"cannot estimate model '{model}': no such config file or folder ({_hint()})")
    return facts_from_config(_auto_config(model, trust_remote_code), name=model)


def _auto_config(model: str, trust_remote_code: bool):
    """The config of a peftlab alias, a folder transformers can read (e.g. GGUF), or an HF id (config only)."""
    try:
        return load_config(resolve_model(model, trust_remote_code))
    except ModelError:
        raise ModelError(f"cannot estimate model '{model}': it is not a built-in name, a local config.json or "
                         f"folder, and its config could not be read or fetched; {_hint()}") from None


def read_method_overrides(path: str | Path | None, methods: list[str]) -> dict[str, dict]:
    """Per-method overrides from a YAML file (`lora: {r: 16}`), the format `compare --method-config` reads;
    `qlora` takes LoRA's keys. Unknown methods or keys are errors."""
    if path is None:
        return {}
    data = read_overrides_file(path)
    overrides = {name: dict(values or {}) for name, values in data.items()}
    for name, values in overrides.items():
        resolve_settings(name, values)
    return {name: values for name, values in overrides.items() if name in methods}
