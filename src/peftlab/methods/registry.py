"""The one registry of fine-tuning methods, and reading per-method overrides from YAML."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from peftlab.errors import ConfigError, MethodError
from peftlab.methods.adapter import ADAPTER
from peftlab.methods.base import Method
from peftlab.methods.bitfit import BITFIT
from peftlab.methods.full import FULL
from peftlab.methods.head import HEAD
from peftlab.methods.peft_methods import DORA, IA3, LORA, PREFIX, PROMPT

METHODS: dict[str, Method] = {m.name: m for m in (FULL, HEAD, BITFIT, LORA, DORA, IA3, PROMPT, PREFIX, ADAPTER)}

DEFAULT_METHODS = ("full", "head", "bitfit", "lora", "adapter", "prompt", "ia3")


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise MethodError(f"unknown method '{name}'; known methods: {', '.join(METHODS)}")
    return METHODS[name]


def parse_methods(text: str | list[str] | tuple[str, ...]) -> list[str]:
    """Comma-separated names -> validated, de-duplicated list, in the given order."""
    names = [n.strip() for n in text.split(",")] if isinstance(text, str) else [n.strip() for n in text]
    names = [n for n in dict.fromkeys(names) if n]
    if not names:
        raise MethodError(f"no method given; known methods: {', '.join(METHODS)}")
    for name in names:
        get_method(name)
    return names


def read_overrides_file(path: str | Path) -> dict[str, dict[str, Any]]:
    """The YAML of per-method overrides (`{lora: {r: 16, learning_rate: 1e-4}}`) as a dict of dicts, unvalidated.

    An entry with no settings (`lora:`) means the defaults. Shared by `compare` and `estimate`.
    """
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as error:
        raise ConfigError(f"cannot read --method-config {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"--method-config {path} is not valid YAML: {str(error).splitlines()[0]}") from None
    if isinstance(data, dict):
        data = {name: overrides if overrides is not None else {} for name, overrides in data.items()}
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ConfigError(f"--method-config {path} must map method names to settings, e.g. `lora: {{r: 16}}`")
    return data


def read_method_config(path: str | Path | None, methods: list[str]) -> dict[str, dict[str, Any]]:
    """Per-method overrides from YAML, validated against each method's settings class."""
    if path is None:
        return {}
    data = read_overrides_file(path)
    for name, overrides in data.items():
        get_method(name).check_overrides(overrides)
    return {name: overrides for name, overrides in data.items() if name in methods}
