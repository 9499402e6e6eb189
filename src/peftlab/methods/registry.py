"""The one registry of fine-tuning methods, and reading per-method overrides from YAML.

A **variant** is a method with settings in its name, ``lora[r=1]`` or ``lora[r=64,target_modules=q_proj+v_proj]``
(values are numbers, true/false, null or text; ``+`` joins the items of a list): a row of its own, named by the
variant, whose settings are the method's with these on top (after the method's ``--method-config`` entry, before
the variant's own entry, if the YAML has one). ``get_method`` returns the method a variant is of, so everything keyed
by a run's method name (save, load, export, estimate) works on variants unchanged. ``sweep_variants("lora.r=1,4")``
expands ``--sweep`` into variants.

``register_method(method)`` adds a method in one place: ``METHODS`` (so compare, estimate, export, the report and
``peftlab methods``) sees it from then on, in this process. ``registered_method(method)`` does the same for the
duration of a ``with`` block (tests); ``unregister_method(name)`` removes one added that way.
"""

from __future__ import annotations

import math
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import yaml

from peftlab.errors import ConfigError, MethodError
from peftlab.methods.adapter import ADAPTER
from peftlab.methods.base import ESTIMATE_PLANS, Method
from peftlab.methods.bitfit import BITFIT
from peftlab.methods.full import FULL
from peftlab.methods.head import HEAD
from peftlab.methods.peft_methods import DORA, IA3, LORA, PREFIX, PROMPT
from peftlab.methods.peft_tuners import PEFT_TUNER_METHODS
from peftlab.methods.zero_shot import ZERO_SHOT
from peftlab.options import split_list

BUILTIN_METHODS: tuple[Method, ...] = (FULL, HEAD, BITFIT, LORA, DORA, IA3, PROMPT, PREFIX, ADAPTER)
# methods that train nothing: the floor of a comparison (methods/zero_shot.py)
BASELINE_METHODS: tuple[Method, ...] = (ZERO_SHOT,)

# Changed only by register_method / unregister_method, in place: modules that imported it see every change.
METHODS: dict[str, Method] = {m.name: m for m in BUILTIN_METHODS + BASELINE_METHODS + PEFT_TUNER_METHODS}

# peftlab's own nine methods (the others are generated from peft's registry, methods/peft_tuners.py)
PEFTLAB_METHODS: tuple[str, ...] = tuple(m.name for m in BUILTIN_METHODS)

# zero-shot first: the floor every trained method is read against (it trains nothing, so it costs one evaluation)
# The default study answers the question a user brings (should I use PEFT?) in about 6 minutes on 2 CPU cores: the
# untrained floor, the full fine-tuning ceiling and LoRA, each at a raced rate (docs/DEFAULT_STUDY.md). Every other
# method is one --methods away.
DEFAULT_METHODS = ("zero-shot", "full", "lora")

# a name is a folder (OUT/runs/<name>), a --methods item (comma-separated) and a YAML key
METHOD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
VARIANT = re.compile(r"(?P<method>[A-Za-z0-9][A-Za-z0-9._-]*)\[(?P<settings>[^\[\]]*)\]")
SWEEP = re.compile(r"(?P<method>[A-Za-z0-9][A-Za-z0-9._-]*)\.(?P<setting>[A-Za-z_][A-Za-z0-9_]*)=(?P<values>.+)")


def register_method(method: Method) -> Method:
    """Add `method` to the registry; MethodError for a name already registered, a name that cannot be a folder or
    a --methods item, or an `estimate_plan` the estimate does not have. Returns the method."""
    if not isinstance(method, Method):
        raise TypeError(f"register_method takes a peftlab.methods.Method, got {type(method).__name__}")
    if not isinstance(method.name, str) or not METHOD_NAME.fullmatch(method.name):
        raise MethodError(f"method name {method.name!r} must be letters, digits, '.', '_' or '-' (it names a folder "
                          "and a --methods item)")
    if method.name in METHODS:
        raise MethodError(f"method '{method.name}' is already registered; pick another name")
    if method.estimate_plan is not None and method.estimate_plan not in ESTIMATE_PLANS:
        raise MethodError(f"method '{method.name}': unknown estimate_plan {method.estimate_plan!r}; use one of "
                          f"{', '.join(ESTIMATE_PLANS)}, or None when the estimate does not model it")
    METHODS[method.name] = method
    return method


def unregister_method(name: str) -> Method:
    """Remove a method added with register_method and return it; the built-in methods cannot be removed."""
    if name in {m.name for m in BUILTIN_METHODS + BASELINE_METHODS + PEFT_TUNER_METHODS}:
        raise MethodError(f"method '{name}' is built in and cannot be unregistered")
    if name not in METHODS:
        raise MethodError(f"method '{name}' is not registered")
    return METHODS.pop(name)


@contextmanager
def registered_method(method: Method) -> Iterator[Method]:
    """`with registered_method(m):` the registry has `m` inside the block and not after it (even on an error)."""
    register_method(method)
    try:
        yield method
    finally:
        unregister_method(method.name)


def trains(name: str) -> bool:
    """Whether the method called ``name`` trains anything; an unknown name (a method registered only in another
    process) is taken to train."""
    return METHODS[name].trains if name in METHODS else True


def get_method(name: str) -> Method:
    """The method called ``name``; for a variant (``lora[r=1]``), the method it is a variant of."""
    base = split_variant(name)[0]
    if base not in METHODS:
        raise MethodError(f"unknown method '{base}'; known methods: {', '.join(METHODS)}")
    return METHODS[base]


def split_variant(name: str) -> tuple[str, dict[str, Any]]:
    """(method, settings) of a variant name, (name, {}) of a plain one; MethodError for a malformed variant."""
    match = VARIANT.fullmatch(name.strip())
    if match is None:
        if "[" in name or "]" in name:
            raise MethodError(f"method variant {name!r} is not of the form method[setting=value,...], e.g. lora[r=4]")
        return name.strip(), {}
    settings: dict[str, Any] = {}
    for item in split_list(match["settings"]):
        key, equals, value = item.partition("=")
        if not equals or not key.strip() or not value.strip():
            raise MethodError(f"method variant {name!r}: {item!r} is not setting=value (e.g. lora[r=4,lora_alpha=8])")
        values = [_variant_value(part.strip()) for part in value.split("+")]
        settings[key.strip()] = values if "+" in value else values[0]
    if not settings:
        raise MethodError(f"method variant {name!r} names no setting; e.g. {match['method']}[r=4]")
    return match["method"], settings


def variant_name(name: str) -> str:
    """A variant's name as peftlab writes it (no spaces): the name of its row, run key and --method-config key."""
    base, settings = split_variant(name)
    if not settings:
        return base
    inside = ",".join(f"{key}={'+'.join(map(_variant_text, value)) if isinstance(value, list) else _variant_text(value)}"
                      for key, value in settings.items())
    return f"{base}[{inside}]"


def _variant_value(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "none"):
        return None
    for cast in (int, float):
        try:
            value = cast(text)
        except ValueError:
            continue
        return value if not (isinstance(value, float) and math.isnan(value)) else text
    return text


def _variant_text(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    return f"{value:g}" if isinstance(value, float) else str(value)


def sweep_variants(sweep: str | None) -> list[str]:
    """``--sweep lora.r=1,4,16`` as the variants ``lora[r=1]``, ``lora[r=4]``, ``lora[r=16]``; MethodError for
    another form or an unknown method."""
    if not sweep:
        return []
    match = SWEEP.fullmatch(sweep.strip())
    values = split_list(match["values"]) if match else []
    if match is None or not values:
        raise MethodError(f"--sweep {sweep!r} is not of the form method.setting=value,value,... (e.g. lora.r=1,4,16)")
    get_method(match["method"])
    return [variant_name(f"{match['method']}[{match['setting']}={value}]") for value in values]


def parse_methods(text: str | list[str] | tuple[str, ...]) -> list[str]:
    """Comma-separated names (variants included) -> validated, de-duplicated list, in the given order."""
    names = split_list(text) if isinstance(text, str) else [n.strip() for n in text]
    names = [n for n in dict.fromkeys(variant_name(n) for n in names if n) if n]
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
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError as error:
        raise ConfigError(f"cannot read --method-config {path}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"--method-config {path} is not UTF-8 text ({error.reason} at byte {error.start}); "
                          "save it as UTF-8 YAML") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"--method-config {path} is not valid YAML: {str(error).splitlines()[0]}") from None
    if isinstance(data, dict):
        data = {name: overrides if overrides is not None else {} for name, overrides in data.items()}
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ConfigError(f"--method-config {path} must map method names to settings, e.g. `lora: {{r: 16}}`")
    return data


def read_method_config(path: str | Path | None, methods: list[str]) -> dict[str, dict[str, Any]]:
    """Per-method overrides from YAML, validated against each method's settings class: every entry of the file, and
    the settings each of ``methods`` will run with (its defaults and overrides, built into its settings object)."""
    data = read_overrides_file(path) if path is not None else {}
    data = {variant_name(str(name)): overrides for name, overrides in data.items()}
    for name, overrides in data.items():
        get_method(name).check_overrides(overrides)
    chosen = {}
    for name in methods:
        base, settings = split_variant(name)
        overrides = {**data.get(base, {}), **settings, **data.get(name, {})} if settings else data.get(name, {})
        try:
            get_method(name).check_overrides(overrides)
        except MethodError as error:
            raise MethodError(f"{name}: {error}") if settings else error from None
        if overrides or name in data:
            chosen[name] = overrides
    return chosen
