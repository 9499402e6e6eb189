"""Houlsby-style bottleneck adapters.

HF ``peft`` has no bottleneck adapter (the method of Houlsby et al., 2019, "Parameter-Efficient Transfer
Learning for NLP", ICML 2019, arXiv:1902.00751), and peft 0.21's ``register_peft_method`` only accepts
members of its ``PeftType`` enum, so a new method cannot be registered there cleanly. This module implements
the method in the project and mirrors peft's on-disk layout instead: a folder with ``adapter_config.json``
and ``adapter_model.safetensors``.

An adapter is a small residual MLP ``h + up(act(down(h)))`` inserted after a sub-layer's output projection,
before that sub-layer's residual connection and LayerNorm (Houlsby et al. put one after the attention block
and one after the feed-forward block of every layer). The up-projection starts near zero and all biases
at zero, so a freshly adapted model computes (almost) the same function as the base model.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from peftlab.errors import MethodError, MethodNotApplicable
from peftlab.methods.base import Method, at_least, settings_object
from peftlab.methods.targets import attach_points, projection_names, suffixes
from peftlab.models import head_module_names, new_head_names

__all__ = [
    "ADAPTER",
    "ADAPTER_CONFIG_NAME",
    "ADAPTER_WEIGHTS_NAME",
    "default_targets",
    "NONLINEARITIES",
    "PEFT_TYPE",
    "AdapterWrappedLinear",
    "BottleneckAdapter",
    "BottleneckAdapterConfig",
    "add_bottleneck_adapters",
    "bottleneck_adapter_state_dict",
    "is_bottleneck_adapter_dir",
    "load_bottleneck_adapter",
    "save_bottleneck_adapter",
]

ADAPTER_CONFIG_NAME = "adapter_config.json"
ADAPTER_WEIGHTS_NAME = "adapter_model.safetensors"
PEFT_TYPE = "PEFTLAB_BOTTLENECK_ADAPTER"
METHOD_NAME = "adapter"

NONLINEARITIES: dict[str, type[nn.Module]] = {
    "gelu": nn.GELU,
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
}

@dataclass
class BottleneckAdapterConfig:
    """Settings of a bottleneck-adapter run; saved as ``adapter_config.json``.

    ``target_modules``: a list of module-name suffixes (``"output.dense"`` matches ``...layer.0.output.dense``),
    or one string taken as a regular expression searched in each full module name. ``None`` uses
    every attention-output and feed-forward-output projection, found from the model's structure
    (:func:`default_targets`).
    ``modules_to_save``: module-name suffixes of extra modules trained and saved in full (e.g. a classifier head).
    """

    bottleneck_size: int = 64
    nonlinearity: str = "gelu"
    init_scale: float = 1e-3
    target_modules: list[str] | str | None = None
    modules_to_save: list[str] | None = None
    base_model_name_or_path: str | None = None

    def validate(self) -> None:
        if self.nonlinearity not in NONLINEARITIES:
            raise MethodError(
                f"Unknown adapter nonlinearity {self.nonlinearity!r}; use one of {', '.join(NONLINEARITIES)}."
            )
        if isinstance(self.bottleneck_size, bool) or not isinstance(self.bottleneck_size, int) or self.bottleneck_size < 1:
            raise MethodError(f"Adapter bottleneck_size must be a positive integer, got {self.bottleneck_size!r}.")
        if not isinstance(self.init_scale, (int, float)) or self.init_scale < 0:
            raise MethodError(f"Adapter init_scale must be a number >= 0, got {self.init_scale!r}.")
        if isinstance(self.target_modules, (list, tuple)) and not self.target_modules:
            raise MethodError("Adapter target_modules is an empty list; leave it unset for the defaults or name modules.")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> BottleneckAdapterConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


class BottleneckAdapter(nn.Module):
    """``h + up(act(down(h)))`` with ``down: Linear(d, b)`` and ``up: Linear(b, d)``.

    ``down`` keeps PyTorch's default Linear initialisation; ``up`` weights are drawn from N(0, init_scale)
    and both biases are zero, so the adapter starts as (nearly) the identity; with ``init_scale=0`` exactly.
    """

    def __init__(self, hidden_size: int, bottleneck_size: int, nonlinearity: str = "gelu", init_scale: float = 1e-3):
        super().__init__()
        if nonlinearity not in NONLINEARITIES:
            raise MethodError(
                f"Unknown adapter nonlinearity {nonlinearity!r}; use one of {', '.join(NONLINEARITIES)}."
            )
        self.hidden_size = hidden_size
        self.bottleneck_size = bottleneck_size
        self.down = nn.Linear(hidden_size, bottleneck_size)
        self.act = NONLINEARITIES[nonlinearity]()
        self.up = nn.Linear(bottleneck_size, hidden_size)
        with torch.no_grad():
            nn.init.zeros_(self.down.bias)
            if init_scale > 0:
                nn.init.normal_(self.up.weight, mean=0.0, std=init_scale)
            else:
                nn.init.zeros_(self.up.weight)
            nn.init.zeros_(self.up.bias)

    def forward(self, h: Tensor) -> Tensor:
        x = h.to(self.down.weight.dtype)
        return h + self.up(self.act(self.down(x))).to(h.dtype)


class AdapterWrappedLinear(nn.Module):
    """Wraps a projection (``nn.Linear``, transformers' ``Conv1D``...): ``forward(x) = adapter(base_layer(x))``.

    Attributes the wrapper does not have (``weight``, ``in_features``...) are read from ``base_layer``.
    """

    def __init__(self, base_layer: nn.Module, adapter: BottleneckAdapter):
        super().__init__()
        self.base_layer = base_layer
        self.adapter = adapter

    def forward(self, x: Tensor, *args, **kwargs) -> Tensor:
        return self.adapter(self.base_layer(x, *args, **kwargs))

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in ("base_layer", "adapter"):
                raise
            return getattr(self.base_layer, name)


# ---------------------------------------------------------------------------------------------------------------
# Injection
# ---------------------------------------------------------------------------------------------------------------

_MODULES_TO_SAVE_ATTR = "_peftlab_adapter_modules_to_save"
_CONFIG_ATTR = "peftlab_adapter_config"


def _model_type(model: nn.Module) -> str | None:
    return getattr(getattr(model, "config", None), "model_type", None)


def _suffix_match(name: str, suffixes) -> bool:
    return any(name == s or name.endswith("." + s) for s in suffixes)


def _resolve_targets(model: nn.Module, config: BottleneckAdapterConfig) -> list[str] | str:
    if config.target_modules is not None:
        return config.target_modules
    found = default_targets(model)
    if not found:
        raise MethodNotApplicable(f"method 'adapter' does not apply to this model: {_no_targets(model)}")
    return found


def default_targets(model: nn.Module) -> list[str]:
    """Name suffixes of every attention-output and feed-forward-output projection of `model`'s blocks, found from
    the module structure (:mod:`peftlab.methods.targets`); empty when none are found."""
    points = attach_points(model, head_module_names(model))
    return suffixes(points.sublayer_outputs, projection_names(model))


def _no_targets(model: nn.Module) -> str:
    return (f"no attention-output and feed-forward-output projections were found in the blocks of model type "
            f"{_model_type(model)!r}; set target_modules (in --method-config) to the projections whose output "
            "should get an adapter")


def _matches_target(name: str, targets: list[str] | str) -> bool:
    if isinstance(targets, str):
        return re.search(targets, name) is not None
    return _suffix_match(name, targets)


def _output_dim(module: nn.Module) -> int | None:
    if isinstance(module, nn.Linear):
        return module.out_features
    if type(module).__name__ == "Conv1D" and hasattr(module, "weight"):  # transformers' GPT-2 Conv1D
        return int(module.weight.shape[1])
    out = getattr(module, "out_features", None)  # e.g. quantized Linear layers
    return out if isinstance(out, int) else None


def _adapter_dtype_device(module: nn.Module) -> tuple[torch.dtype, torch.device]:
    weight = getattr(module, "weight", None)
    if isinstance(weight, Tensor):
        dtype = weight.dtype if weight.dtype.is_floating_point else torch.float32
        return dtype, weight.device
    return torch.float32, torch.device("cpu")


def _inside_wrapper(name: str, wrapper_names: list[str]) -> bool:
    return any(name == w or name.startswith(w + ".") for w in wrapper_names)


def add_bottleneck_adapters(model: nn.Module, config: BottleneckAdapterConfig) -> nn.Module:
    """Freeze ``model``, put a bottleneck adapter after each target module, make adapters and
    ``modules_to_save`` trainable. Changes ``model`` in place and returns it."""
    config.validate()
    modules = list(model.named_modules())
    existing = [n for n, m in modules if isinstance(m, AdapterWrappedLinear)]
    if existing:
        raise MethodError(f"The model already has bottleneck adapters (e.g. at {existing[0]!r}); start from a base model.")
    targets = _resolve_targets(model, config)
    model_type = _model_type(model)

    matched = [(n, m) for n, m in modules if n and _matches_target(n, targets)]
    if not matched:
        raise MethodError(
            f"No module of model type {model_type!r} matches the bottleneck-adapter target_modules {targets!r}; "
            "set target_modules to names of modules in this model."
        )
    for name, module in matched:
        if _output_dim(module) is None:
            raise MethodError(
                f"Adapter target {name!r} is a {type(module).__name__}, not a linear projection; "
                "set target_modules to projection layers (Linear/Conv1D)."
            )

    save_names: list[str] = []
    if config.modules_to_save:
        save_names = [n for n, _ in modules if n and _suffix_match(n, config.modules_to_save)]
        # keep only outermost matches
        save_names = [n for n in save_names if not any(n != o and n.startswith(o + ".") for o in save_names)]
        missing = [s for s in config.modules_to_save if not any(_suffix_match(n, [s]) for n in save_names)]
        if missing:
            raise MethodError(
                f"modules_to_save {missing!r} match no module of model type {model_type!r}; "
                "name modules in this model (e.g. 'classifier' or 'score')."
            )

    for p in model.parameters():
        p.requires_grad_(False)

    for name, module in matched:
        dtype, device = _adapter_dtype_device(module)
        adapter = BottleneckAdapter(
            _output_dim(module), config.bottleneck_size, config.nonlinearity, config.init_scale
        ).to(device=device, dtype=dtype)
        parent_name, _, child_name = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child_name, AdapterWrappedLinear(module, adapter))

    for name in save_names:
        for p in model.get_submodule(name).parameters():
            p.requires_grad_(True)
    for module in model.modules():
        if isinstance(module, BottleneckAdapter):
            for p in module.parameters():
                p.requires_grad_(True)

    resolved = dataclasses.replace(config, target_modules=targets)
    if resolved.base_model_name_or_path is None:
        name_or_path = getattr(getattr(model, "config", None), "_name_or_path", None)
        resolved.base_model_name_or_path = name_or_path or None
    # plain attributes (not submodules): the resolved config and the full-save module names
    object.__setattr__(model, _CONFIG_ATTR, resolved)
    object.__setattr__(model, _MODULES_TO_SAVE_ATTR, save_names)
    return model


# ---------------------------------------------------------------------------------------------------------------
# State dict, save, load
# ---------------------------------------------------------------------------------------------------------------


def bottleneck_adapter_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """The adapter parameters and the full parameters of ``modules_to_save``, keyed as in ``model.state_dict()``."""
    prefixes = [n + ".adapter." for n, m in model.named_modules() if isinstance(m, AdapterWrappedLinear)]
    prefixes += [n + "." for n in getattr(model, _MODULES_TO_SAVE_ATTR, [])]
    if not prefixes:
        return {}
    param_names = {n for n, _ in model.named_parameters(remove_duplicate=False)}
    return {
        k: v
        for k, v in model.state_dict().items()
        if k in param_names and any(k.startswith(p) for p in prefixes)
    }


def save_bottleneck_adapter(model: nn.Module, directory: str | Path, config: BottleneckAdapterConfig | None = None) -> None:
    """Write ``adapter_config.json`` and ``adapter_model.safetensors`` into ``directory``.

    The saved config has the resolved ``target_modules`` (the model type's defaults written out), so loading
    does not depend on the defaults of a later version.
    """
    resolved = getattr(model, _CONFIG_ATTR, None)
    if config is None:
        config = resolved
    if config is None:
        raise MethodError("The model has no bottleneck adapters to save; call add_bottleneck_adapters first.")
    if resolved is not None:
        config = dataclasses.replace(
            config,
            target_modules=resolved.target_modules if config.target_modules is None else config.target_modules,
            base_model_name_or_path=config.base_model_name_or_path or resolved.base_model_name_or_path,
        )
    state = bottleneck_adapter_state_dict(model)
    if not state:
        raise MethodError("The model has no bottleneck adapters to save; call add_bottleneck_adapters first.")

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    data = config.to_dict()
    data["peft_type"] = PEFT_TYPE
    data["peftlab_method"] = METHOD_NAME
    (directory / ADAPTER_CONFIG_NAME).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    # clone: safetensors refuses tensors sharing storage (e.g. tied weights)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    save_file(tensors, str(directory / ADAPTER_WEIGHTS_NAME), metadata={"format": "pt", "peft_type": PEFT_TYPE})


def _read_config(directory: Path) -> dict | None:
    try:
        data = json.loads((directory / ADAPTER_CONFIG_NAME).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_bottleneck_adapter_dir(directory: str | Path) -> bool:
    """True when ``directory`` holds a bottleneck adapter saved by :func:`save_bottleneck_adapter`."""
    directory = Path(directory)
    data = _read_config(directory)
    return (
        data is not None
        and (data.get("peft_type") == PEFT_TYPE or data.get("peftlab_method") == METHOD_NAME)
        and (directory / ADAPTER_WEIGHTS_NAME).is_file()
    )


def load_bottleneck_adapter(base_model: nn.Module, directory: str | Path) -> nn.Module:
    """Add the saved adapters to ``base_model`` (in place) and load their weights and ``modules_to_save``."""
    directory = Path(directory)
    if not is_bottleneck_adapter_dir(directory):
        raise MethodError(
            f"{directory} is not a bottleneck-adapter folder (it needs {ADAPTER_CONFIG_NAME} with "
            f"peft_type {PEFT_TYPE!r} and {ADAPTER_WEIGHTS_NAME})."
        )
    config = BottleneckAdapterConfig.from_dict(_read_config(directory))
    model = add_bottleneck_adapters(base_model, config)
    state = load_file(str(directory / ADAPTER_WEIGHTS_NAME))

    expected = bottleneck_adapter_state_dict(model)
    unknown = sorted(set(state) - set(expected))
    if unknown:
        raise MethodError(
            f"The adapter in {directory} has {len(unknown)} tensors this model does not have (e.g. {unknown[0]!r}); "
            "load it into the base model it was trained on."
        )
    absent = sorted(set(expected) - set(state))
    if absent:
        raise MethodError(
            f"The adapter in {directory} lacks {len(absent)} tensors this model needs (e.g. {absent[0]!r}); "
            "the file is incomplete or was saved from another model."
        )
    wrong = [k for k in state if tuple(state[k].shape) != tuple(expected[k].shape)]
    if wrong:
        raise MethodError(
            f"The adapter tensor {wrong[0]!r} in {directory} has shape {tuple(state[wrong[0]].shape)}, "
            f"the model expects {tuple(expected[wrong[0]].shape)}; load it into the base model it was trained on."
        )
    model.load_state_dict(state, strict=False)
    return model


class BottleneckAdapterMethod(Method):
    """The registry's `adapter`: bottleneck adapters after attention and FFN outputs, plus the task head."""

    def default_settings(self, model: nn.Module) -> dict:
        # a classifier's new head trains with the adapters; a language model's output layer (often tied to the input
        # embeddings) stays frozen
        return {**self.defaults, "modules_to_save": new_head_names(model) or None}

    def refusal(self, model: nn.Module, settings: dict) -> str | None:
        if settings.get("target_modules") is None and not default_targets(model):
            return _no_targets(model)
        return None

    def apply(self, model: nn.Module, settings: dict) -> nn.Module:
        self.check_applies(model, settings)
        return add_bottleneck_adapters(model, settings_object(self, settings))

    def save(self, model: nn.Module, directory: Path) -> None:
        save_bottleneck_adapter(model, directory)

    def load(self, base_model: nn.Module, directory: Path) -> nn.Module:
        return load_bottleneck_adapter(base_model, directory)


ADAPTER = BottleneckAdapterMethod(
    name=METHOD_NAME,
    summary="bottleneck adapters (Houlsby): down-project, GELU, up-project, residual; after attention and FFN",
    learning_rate=1e-3,
    settings_class=BottleneckAdapterConfig,
    defaults={"bottleneck_size": 64, "nonlinearity": "gelu", "init_scale": 1e-3},
    estimate_plan="adapter",  # the head trains in place (no copy); adapters follow the base's dtype
    setting_ranges={"bottleneck_size": at_least(1), "init_scale": at_least(0)},
    merge_blocker="bottleneck adapters add new layers (down-projection, nonlinearity, up-projection) after "
    "each projection; a nonlinear layer cannot be folded into the existing linear weights",
)
