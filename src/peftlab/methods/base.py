"""What a fine-tuning method is: a recipe that turns a pretrained model into a trainable one.

A method has a name, a documented default learning rate, a settings class (a dataclass: a peft config for
the methods peft has, a small dataclass of our own otherwise) and four operations: default settings for a
model, apply, save, load. The training loop knows nothing else about methods.

For export (`peftlab.export`) a method also says what can be done with its trained model: `merge` folds the
update into the base weights (methods that cannot say why in `merge_blocker`), `export_adapter` writes the
adapter on its own (refused with `adapter_blocker`), and `update_tensors` names the saved tensors that are a
weight update, which adapter compression may sparsify and quantize.

For the analytic estimate (`peftlab.estimate`) and the memory options (`peftlab.models.memory`) a method says
declaratively what it is: `estimate_plan` names which of the estimate's plans models it (the plans themselves live
in `estimate/plans.py`, a higher floor, keyed by these names), `trains_base_weights` whether it trains tensors of the
base itself (which a 4/8-bit quantized base cannot), `head_copy` whether a classifier's head trains as a copy beside
the frozen original (peft's `modules_to_save`), and `added_parameters_fp32` whether the parameters it adds stay in
fp32 on a 16-bit base (peft's `autocast_adapter_dtype`). Registering a method (`methods.registry.register_method`)
is then all compare, estimate, the memory options, export and the report need.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from peftlab.errors import MethodError, MethodNotApplicable
from peftlab.files import error_line

# Keys a --method-config entry may hold besides the settings class's own fields.
TRAINING_KEYS = ("learning_rate", "head_learning_rate")  # the loop's, not the method's settings

# The plans peftlab.estimate has (estimate/plans.py builds each); a method names one of them in `estimate_plan`.
ESTIMATE_PLANS = ("full", "head", "bitfit", "lora", "ia3", "adapter", "prompt", "prefix")


@dataclass(frozen=True)
class SettingRange:
    """The values a numeric setting may take: ``low``/``high`` bounds, inclusive unless ``low_open``; ``kind``, when
    given, is the type checked instead of the settings class's annotation (peft annotates ``lora_alpha: int``, yet
    any positive number works)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    kind: type | None = None

    def admits(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or value <= self.high

    def describe(self) -> str:
        if self.high is None:
            return f"{'greater than' if self.low_open else 'at least'} {self.low:g}"
        return f"between {self.low:g} and {self.high:g}"


def at_least(low: float) -> SettingRange:
    return SettingRange(low)


def positive(kind: type | None = None) -> SettingRange:
    return SettingRange(0, low_open=True, kind=kind)


def between(low: float, high: float) -> SettingRange:
    return SettingRange(low, high)


@dataclass
class Method:
    name: str
    summary: str
    learning_rate: float  # the default a careful practitioner would pick for this method
    settings_class: type  # dataclass whose fields are the method's settings
    defaults: dict[str, Any] = field(default_factory=dict)  # our defaults for those fields
    mergeable: bool = False  # can the trained update be folded into the base weights?
    merge_blocker: str = "it has no merge operation"  # why not, when it cannot (said to the user)
    adapter_blocker: str = ""  # non-empty: exporting an adapter on its own is refused, for this reason
    # saved tensors that are a weight update, by name component -> the value they start from (the update is
    # tensor - start); empty: the method's files cannot be compressed as an update
    update_tensors: dict[str, float] = field(default_factory=dict)
    # which plan of the estimate models it (one of ESTIMATE_PLANS: every base weight trains, the head, biases, LoRA
    # factors (DoRA: with use_dora), IA3 vectors, bottleneck adapters, a soft prompt, key/value prefixes); None: the
    # estimate does not model this method and says so
    estimate_plan: str | None = None
    trains_base_weights: bool = False  # it trains tensors of the base itself (refused on a 4/8-bit base)
    head_copy: bool = False  # a classifier's head trains as a copy beside the frozen original (peft's modules_to_save)
    added_parameters_fp32: bool = False  # added parameters stay fp32 on a 16-bit base (peft's autocast_adapter_dtype)
    # the ranges of the settings whose type alone does not say what works (r >= 1, a dropout in [0, 1]); the type
    # of every setting is checked against the settings class's annotations (check_settings)
    setting_ranges: dict[str, SettingRange] = field(default_factory=dict)
    trains: bool = True  # False: nothing trains (zero-shot), the run evaluates the model as it is, once
    source: str = "peftlab"  # whose implementation trains: "peft" (HF peft's) or "peftlab" (its own)
    # the task kinds (tasks/kinds.py names) it runs on; empty: none (it is refused everywhere)
    task_kinds: tuple[str, ...] = ("classification", "regression", "multiple-choice", "generation")
    # the rate of a freshly initialised task head (classification, regression), when it is not learning_rate
    head_learning_rate: float | None = None

    def setting_names(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self.settings_class) if f.init]

    def listing(self) -> dict[str, str]:
        """The method's row in `peftlab methods` and docs/METHODS.md: its source, default rate ("-" when nothing
        trains), default settings, task kinds (or why it is refused) and whether it merges."""
        refused = getattr(self, "refused", "")
        return {"source": self.source,
                "default lr": f"{self.learning_rate:g}" if self.trains else "-",
                "key settings": ", ".join(f"{k}={v}" for k, v in self.defaults.items()) or "-",
                "task kinds": ", ".join(self.task_kinds) or f"refused: {refused}",
                "mergeable": "yes" if self.mergeable else "no"}

    def check_overrides(self, overrides: dict[str, Any]) -> None:
        """MethodError naming the first key that neither the settings class nor training accepts."""
        allowed = set(self.setting_names()) | set(TRAINING_KEYS)
        for key in overrides:
            if key not in allowed:
                raise MethodError(
                    f"method '{self.name}' has no setting '{key}' ({self.settings_class.__name__} fields: "
                    f"{', '.join(sorted(allowed))})"
                )
        for key in TRAINING_KEYS:
            if key in overrides:
                parse_learning_rate(self.name, overrides[key], key)
        self.check_settings({**self.defaults, **{k: v for k, v in overrides.items() if k not in TRAINING_KEYS}})

    def check_settings(self, settings: dict[str, Any]) -> None:
        """MethodError for a setting of the wrong type (against the settings class's annotations) or outside its
        range (``setting_ranges``), or that the settings class itself refuses once built (its ``__post_init__``,
        or a ``validate()`` it has): everything training would trip over later, said before anything runs."""
        hints = _type_hints(self.settings_class)
        for key, value in settings.items():
            bounds = self.setting_ranges.get(key)
            hint = bounds.kind if bounds is not None and bounds.kind is not None else hints.get(key)
            if hint is not None and not value_fits(value, hint):
                raise MethodError(f"method '{self.name}': setting '{key}' must be {describe_type(hint)}, got "
                                  f"{value!r}{_yaml_hint(value, hint)}")
            if bounds is not None and not bounds.admits(value):
                raise MethodError(f"method '{self.name}': setting '{key}' must be {bounds.describe()}, got {value!r}")
        required = [f.name for f in dataclasses.fields(self.settings_class) if f.init and f.name not in settings
                    and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING] \
            if dataclasses.is_dataclass(self.settings_class) else []
        if required:  # filled in from the model (default_settings): the class is built when the run applies it
            return
        built = settings_object(self, settings)
        if callable(getattr(built, "validate", None)):
            built.validate()

    def default_settings(self, model: nn.Module) -> dict[str, Any]:
        """Settings for this model before user overrides (model-aware methods override this)."""
        return dict(self.defaults)

    def resolve(self, model: nn.Module, overrides: dict[str, Any]) -> tuple[dict[str, Any], float]:
        """(settings, learning_rate) after applying the user's overrides to the defaults."""
        self.check_overrides(overrides)
        settings = self.default_settings(model)
        settings.update({k: v for k, v in overrides.items() if k not in TRAINING_KEYS})
        learning_rate = parse_learning_rate(self.name, overrides.get("learning_rate", self.learning_rate))
        return settings, learning_rate

    def head_rate(self, overrides: dict[str, Any]) -> float | None:
        """The learning rate of a freshly initialised task head (a classifier's), when it differs from the method's:
        the override ``head_learning_rate``, else the method's ``head_learning_rate`` default (None: the same)."""
        rate = overrides.get("head_learning_rate", self.head_learning_rate)
        return None if rate is None else parse_learning_rate(self.name, rate, "head_learning_rate")

    def refusal(self, model: nn.Module, settings: dict[str, Any]) -> str | None:
        """Why this method cannot apply to `model` with these settings (one line), or None when it can. Asked before
        anything trains: a refused run is recorded as ``refused`` with the reason and the study goes on."""
        return None

    def check_applies(self, model: nn.Module, settings: dict[str, Any]) -> None:
        """MethodNotApplicable with :meth:`refusal`'s reason, if there is one."""
        reason = self.refusal(model, settings)
        if reason:
            raise MethodNotApplicable(f"method '{self.name}' does not apply to this model: {reason}")

    def run_settings(self, settings: dict[str, Any], total_steps: int, overrides: dict[str, Any]) -> dict[str, Any]:
        """The settings of one run whose length is ``total_steps`` optimizer steps (AdaLoRA's ``total_step``); the
        keys in ``overrides`` were set by the user and stay. Most methods do not depend on the run's length."""
        return settings

    def after_step(self, model: nn.Module, step: int) -> None:
        """Called by the training loop after every optimizer step (``step`` from 1), before the gradients are cleared,
        with the unwrapped model: a method that adapts itself while training (AdaLoRA's rank allocation) does it
        here; most do nothing."""

    def bind_task(self, model: nn.Module, settings: dict[str, Any], label_names: list[str] | None, tokenizer,
                  max_length: int) -> nn.Module:
        """The applied model (on its device) made ready for the task's labels, for a method that reads them itself
        (zero-shot embeds each label's text); most methods return it unchanged."""
        return model

    def apply(self, model: nn.Module, settings: dict[str, Any]) -> nn.Module:
        """Return the trainable model: parameters to train have requires_grad=True, all others False."""
        raise NotImplementedError

    def save(self, model: nn.Module, directory: Path) -> None:
        """Write what this method needs to restore the trained model on top of the base."""
        raise NotImplementedError

    def load(self, base_model: nn.Module, directory: Path) -> nn.Module:
        """Restore the trained model from `save`'s files on top of a freshly loaded base."""
        raise NotImplementedError

    def merge(self, model: nn.Module) -> nn.Module:
        """The trained model as a plain transformers model, the update folded into the base weights."""
        raise self.merge_error()

    def export_adapter(self, model: nn.Module, directory: Path) -> None:
        """Write the trained update on its own, loadable on top of the base (the method's saved format)."""
        if self.adapter_blocker:
            raise self.adapter_error()
        self.save(model, directory)

    def merge_error(self) -> MethodError:
        return MethodError(f"method '{self.name}' cannot be merged into the base weights: {self.merge_blocker}; "
                           "export it with --adapter instead")

    def adapter_error(self) -> MethodError:
        return MethodError(f"method '{self.name}' has no adapter to export: {self.adapter_blocker}")


def parse_learning_rate(method_name: str, value: Any, key: str = "learning_rate") -> float:
    """A positive float; YAML reads `1e-3` (no dot) as a string, so numeric strings are accepted."""
    try:
        learning_rate = float(value) if not isinstance(value, bool) else float("nan")
    except (TypeError, ValueError):
        learning_rate = float("nan")
    if not learning_rate > 0:
        raise MethodError(f"method '{method_name}': {key} must be a positive number, got {value!r}")
    return learning_rate


def freeze_all_but(model: nn.Module, is_trainable) -> nn.Module:
    """Set requires_grad on every parameter from a predicate over its name."""
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(bool(is_trainable(name)))
    return model


def settings_object(method: Method, settings: dict[str, Any]):
    """Instantiate the settings class; a bad value is the user's MethodError, not a traceback."""
    try:
        return method.settings_class(**copy.deepcopy(settings))
    except (TypeError, ValueError, KeyError, AttributeError) as error:
        reason = error_line(error)
        raise MethodError(f"bad settings for method '{method.name}': {reason}") from None


# --- setting types, from the settings class's annotations -----------------------------------------------------------

def _type_hints(cls: type) -> dict[str, Any]:
    """The annotations of the settings class's fields; {} when they cannot be resolved (nothing is checked)."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - unresolvable annotations of a user's class: check nothing rather than fail
        return {}
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.name in hints} \
        if dataclasses.is_dataclass(cls) else hints


def value_fits(value: Any, hint: Any) -> bool:
    """Does a YAML value fit a type annotation? int is not bool, float takes ints; unknown annotations fit all."""
    origin, arguments = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or isinstance(hint, (str, typing.TypeVar)):
        return True
    if hint is type(None):
        return value is None
    if origin is typing.Union or (origin is not None and type(origin).__name__ == "UnionType") or \
            type(hint).__name__ == "UnionType":
        enums = [a for a in arguments if isinstance(a, type) and issubclass(a, enum.Enum)]
        if enums and str in arguments and isinstance(value, str):  # peft's `Union[TaskType, str]`: a member's name
            return any(value_fits(value, e) for e in enums)
        return any(value_fits(value, argument) for argument in arguments)
    if origin is typing.Literal:
        return value in arguments or (isinstance(value, enum.Enum) and value.value in arguments)
    if origin in (list, tuple, set, frozenset) or hint in (list, tuple, set, frozenset):
        if not isinstance(value, (list, tuple, set, frozenset)):
            return False
        item = arguments[0] if arguments and origin is not tuple else None
        return item is None or all(value_fits(v, item) for v in value)
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return isinstance(value, hint) or value in {m.value for m in hint} or value in hint.__members__
    return True  # a class of its own (a nested config, a callable): its constructor judges


def describe_type(hint: Any) -> str:
    origin, arguments = typing.get_origin(hint), typing.get_args(hint)
    if hint is type(None):
        return "null"
    if origin is typing.Literal:
        return "one of " + ", ".join(map(repr, arguments))
    if origin is typing.Union or type(hint).__name__ == "UnionType":
        enums = [a for a in arguments if isinstance(a, type) and issubclass(a, enum.Enum)]
        shown = [a for a in arguments if not (enums and a is str)]  # Union[TaskType, str]: the member names say it
        return " or ".join(dict.fromkeys(describe_type(a) for a in shown))
    if origin in (list, tuple, set, frozenset) or hint in (list, tuple, set, frozenset):
        plural = {str: "strings", int: "integers", float: "numbers", bool: "booleans"}
        item = arguments[0] if arguments and origin is not tuple else None
        return f"a list of {plural.get(item) or describe_type(item)}" if item is not None else "a list"
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in hint)
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", dict: "a mapping"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def _yaml_hint(value: Any, hint: Any) -> str:
    """YAML reads `1e-3` (no dot) as text: say how to write the number."""
    if isinstance(value, str) and value_fits(1.0, hint):
        try:
            float(value)
        except ValueError:
            return ""
        return " (YAML reads a number without a dot, like 1e-3, as text: write 1.0e-3)"
    return ""
