"""Configuration as dataclasses: fields that carry their command-line help, read from YAML or a mapping.

peftlab states each configuration once, as dataclasses whose fields are declared with :func:`option`; the CLI
derives its options from those fields (`peftlab.cli`), a `--config` YAML file is read against the same fields
(:func:`config_from_sources`), and results.json records the whole configuration, from which it is rebuilt
(:func:`config_from_mapping`). Written here rather than with a config library (Hydra, OmegaConf) because the
dataclasses already are the schema and typer already parses the command line: this is the few lines between them.

Field metadata: ``help`` (the option's help text), ``flag`` (the option's spelling when it is not the field name,
e.g. ``--robustness/--no-robustness``), ``cli`` (``"list"``: a comma-separated string on the command line;
``"zero_none"``: 0 means no cap).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import field
from pathlib import Path
from typing import Any

import yaml

from peftlab.errors import ConfigError


def option(default: Any = dataclasses.MISSING, help: str = "", *, flag: str | None = None, cli: str | None = None,
           factory: Any = dataclasses.MISSING):
    """A dataclass field with its command-line help (see the module docstring for the metadata)."""
    metadata = {"help": help, "flag": flag, "cli": cli}
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def field_names(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.init]


def split_list(text: str) -> list[str]:
    """A comma-separated string as its stripped, non-empty items; commas inside brackets stay in their item, so
    that a method variant (``lora[r=64,lora_alpha=128]``) is one item of ``--methods``."""
    items, depth, current = [], 0, []
    for character in text:
        depth += {"[": 1, "]": -1}.get(character, 0)
        if character == "," and depth <= 0:
            items.append("".join(current))
            current = []
        else:
            current.append(character)
    items.append("".join(current))
    return [item.strip() for item in items if item.strip()]


def config_from_mapping(cls, values: dict[str, Any], source: str = "the configuration"):
    """``cls`` from a mapping of its field names (dashes or underscores); ConfigError naming an unknown key.
    Lists may be given as YAML lists or comma-separated strings."""
    known = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    fields: dict[str, Any] = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name not in known:
            raise ConfigError(f"{source} has an unknown option {key!r}; options: {', '.join(known)}")
        if known[name].metadata.get("cli") == "list" and isinstance(value, str):
            value = split_list(value)
        if known[name].metadata.get("cli") == "zero_none" and value == 0:
            value = None
        _check_type(value, hints[name], f"{source}: {key}")
        fields[name] = value
    return cls(**fields)


def _check_type(value: Any, hint: Any, where: str) -> None:
    """ConfigError when a plain value (str, int, float, bool, None, list of str) does not fit the field's type."""
    allowed = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    for kind in allowed:
        origin = typing.get_origin(kind) or kind
        if kind is type(None) and value is None:
            return
        if origin is list and isinstance(value, list) and all(_is_item(v, kind) for v in value):
            return
        if origin is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return
        if origin is int and isinstance(value, int) and not isinstance(value, bool):
            return
        if origin in (str, bool) and isinstance(value, origin):
            return
        if not isinstance(origin, type) or origin not in (type(None), list, float, int, str, bool):
            return  # a field of another type (nested settings): its own class checks it
    names = " or ".join("none" if k is type(None) else getattr(k, "__name__", str(k)) for k in allowed)
    raise ConfigError(f"{where} must be {names}, got {value!r}")


def _is_item(value: Any, hint: Any) -> bool:
    """Whether a list item fits the list's item type: str (``list[str]``), or also int (``list[str | int]``, e.g.
    --train-sizes as a YAML list ``[100, 300, all]``)."""
    (item,) = typing.get_args(hint) or (str,)
    kinds = typing.get_args(item) if typing.get_origin(item) in (typing.Union, types.UnionType) else (item,)
    return any(isinstance(value, kind) and not (kind is int and isinstance(value, bool)) for kind in kinds)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping of a `--config` YAML file; ConfigError (one line) when it cannot be read or is not a mapping."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"cannot read --config {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"--config {path} is not UTF-8 text") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"--config {path} is not valid YAML: {str(error).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path} must map option names to values, e.g. `model: minilm`")
    return data


def config_from_sources(cls, path: str | Path | None, command_line: dict[str, Any]):
    """``cls`` from its defaults, then the `--config` file (when given), then the options given on the command
    line (already parsed to field values), each winning over the one before."""
    values = read_config_file(path) if path else {}
    values = {str(key).replace("-", "_"): value for key, value in values.items()}
    return config_from_mapping(cls, {**values, **command_line}, f"--config {path}" if path else "the command line")


def config_yaml(values: dict[str, Any]) -> str:
    """A configuration's plain values (``config.describe()``) as the YAML file ``--config`` reads back."""
    return yaml.safe_dump(values, sort_keys=False)
