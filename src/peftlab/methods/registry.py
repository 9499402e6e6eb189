"""The one registry of fine-tuning methods, and reading per-method overrides from YAML.

``register_method(method)`` adds a method in one place: ``METHODS`` (so compare, estimate, export, the report and
``peftlab methods``) sees it from then on, in this process. ``registered_method(method)`` does the same for the
duration of a ``with`` block (tests); ``unregister_method(name)`` removes one added that way.
"""

from __future__ import annotations

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

BUILTIN_METHODS: tuple[Method, ...] = (FULL, HEAD, BITFIT, LORA, DORA, IA3, PROMPT, PREFIX, ADAPTER)
# methods that train nothing: the floor of a comparison (methods/zero_shot.py)
BASELINE_METHODS: tuple[Method, ...] = (ZERO_SHOT,)

# Changed only by register_method / unregister_method, in place: modules that imported it see every change.
METHODS: dict[str, Method] = {m.name: m for m in BUILTIN_METHODS + BASELINE_METHODS + PEFT_TUNER_METHODS}

# peftlab's own nine methods (the others are generated from peft's registry, methods/peft_tuners.py)
PEFTLAB_METHODS: tuple[str, ...] = tuple(m.name for m in BUILTIN_METHODS)

# zero-shot first: the floor every trained method is read against (it trains nothing, so it costs one evaluation)
DEFAULT_METHODS = ("zero-shot", "full", "head", "bitfit", "lora", "adapter", "prompt", "ia3")

# a name is a folder (OUT/runs/<name>), a --methods item (comma-separated) and a YAML key
METHOD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


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
    for name, overrides in data.items():
        get_method(name).check_overrides(overrides)
    for name in methods:
        if name not in data:
            get_method(name).check_overrides({})
    return {name: overrides for name, overrides in data.items() if name in methods}
