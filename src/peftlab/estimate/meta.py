"""The parameter tensors of any architecture, read off the model instantiated on the meta device.

For the families modelled in detail (params.py) the tensors are written out by hand from the config's shapes.
For every other architecture they come from the transformers class itself, built under ``torch.device("meta")``:
no memory is allocated and no weight is read, but every module exists with its real name and shape, so a peft
``target_modules`` pattern (``all-linear``, IA3's per-architecture targets, an adapter's suffixes) selects here
exactly the layers it selects in the real model, and nothing about an architecture has to be re-implemented.

What the module tree does not say is each linear's role in the cost formulas (tensors.py); it is inferred from
its name and place (the rules below, after the naming of the transformers implementations): its transformer
layer (the first numbered entry of a module list on its path, numbered uniquely across an encoder-decoder's two
stacks), whether it sits in a cross-attention block, and its leaf name. Fused projections (GPT-2's ``c_attn``,
Phi-3's ``qkv_proj`` and ``gate_up_proj``, ModernBERT's ``Wqkv`` and ``Wi``) keep their fused shape; GPT-2's
``Conv1D`` stores its weight transposed (in, out). A linear tied to the input embeddings (a tied LM head) is not
counted twice, as ``named_parameters`` does not count it twice.
"""

from __future__ import annotations

import copy
import re
from functools import lru_cache
from typing import Any

import torch
from torch import nn
from transformers import (AutoModel, AutoModelForCausalLM, AutoModelForSeq2SeqLM,
                          AutoModelForSequenceClassification)
from transformers.pytorch_utils import Conv1D

from peftlab.errors import ModelError
from peftlab.estimate.tensors import Linear, ModelTensors, Tensor
from peftlab.files import error_line
from peftlab.methods.targets import projection_roles

AUTO_CLASSES = {"classification": AutoModelForSequenceClassification, "causal-lm": AutoModelForCausalLM,
                "seq2seq-lm": AutoModelForSeq2SeqLM, "base": AutoModel}

# leaf name (lower case) -> role; "dense", "wo", "c_proj" and "out_proj" depend on where they sit (see _role)
LEAF_ROLES = {
    **dict.fromkeys(("query", "q_proj", "q", "q_lin", "query_proj", "wq"), "q"),
    **dict.fromkeys(("key", "k_proj", "k", "k_lin", "key_proj", "wk"), "k"),
    **dict.fromkeys(("value", "v_proj", "v", "v_lin", "value_proj", "wv"), "v"),
    **dict.fromkeys(("c_attn", "qkv_proj", "wqkv", "query_key_value", "qkv"), "qkv"),
    **dict.fromkeys(("o_proj", "o", "out_lin"), "o"),
    **dict.fromkeys(("pos_key_proj", "pos_query_proj", "pos_proj", "pos_q_proj"), "pos"),
    **dict.fromkeys(("gate_proj", "wi_0", "w1"), "gate"),
    **dict.fromkeys(("up_proj", "fc1", "lin1", "c_fc", "wi", "wi_1", "w3", "ffn", "fc_in"), "up"),
    **dict.fromkeys(("gate_up_proj",), "gate_up"),
    **dict.fromkeys(("down_proj", "fc2", "lin2", "ffn_output", "w2", "fc_out"), "down"),
}
CROSS_BLOCKS = ("encdecattention", "encoder_attn", "crossattention", "cross_attn", "cross_attention")
CROSS_ROLES = {"q": "xq", "k": "xk", "v": "xv", "o": "xo"}


def instantiate(config: Any, task: str) -> nn.Module:
    """The transformers model of `config` for `task`, on the meta device; ModelError when transformers has none."""
    auto = AUTO_CLASSES[task]
    try:
        with torch.device("meta"):
            return auto.from_config(config)
    except Exception as error:  # an unmapped config class (ValueError) or a model that cannot be built from it
        raise ModelError(f"cannot estimate model type '{getattr(config, 'model_type', '?')}' as {task}: transformers "
                         f"cannot build {auto.__name__} for it ({error_line(error)})") from None


# a role the module structure gives (peftlab.methods.targets, what IA3 and adapters attach by), for a projection whose
# name the table above does not know
STRUCTURAL_ROLES = {"query": "q", "key": "k", "value": "v", "attention_in": "qkv", "attention_output": "o",
                    "ffn_in": "up", "ffn_out": "down"}


def _role(inner: list[str], module: nn.Module, gate_up_width: int, structural: str | None = None) -> str:
    """The role of a linear inside a layer from the names on its path below the layer (`inner`), else from the
    module structure's role (`structural`, a key of STRUCTURAL_ROLES)."""
    leaf, parents = inner[-1].lower(), [part.lower() for part in inner[:-1]]
    in_attention = any("att" in part for part in parents)
    role = LEAF_ROLES.get(leaf)
    if leaf in ("dense", "wo", "c_proj", "out_proj"):
        if in_attention:
            role = "o"
        elif leaf == "dense" and "intermediate" in parents:
            role = "up"
        else:
            role = "down"
    if role == "up" and gate_up_width and _out_features(module) == gate_up_width:
        role = "gate_up"  # a GLU's fused projection (ModernBERT's Wi): twice the MLP width
    if role is None:
        role = STRUCTURAL_ROLES.get(structural or "")
    if role is None:
        return "other"
    if any(part in CROSS_BLOCKS for part in parents) and role in CROSS_ROLES:
        return CROSS_ROLES[role]
    return role


def _out_features(module: nn.Module) -> int:
    return module.weight.shape[1] if isinstance(module, Conv1D) else module.weight.shape[0]


def _in_features(module: nn.Module) -> int:
    return module.weight.shape[0] if isinstance(module, Conv1D) else module.weight.shape[1]


def _layer_key(name: str, model: nn.Module) -> tuple[str, int, list[str]] | None:
    """(module-list path, index, names below the layer) for a module inside a numbered layer, else None."""
    parts = name.split(".")
    for i, part in enumerate(parts):
        if part.isdigit() and i > 0:
            container = model.get_submodule(".".join(parts[:i]))
            if isinstance(container, nn.ModuleList):
                return ".".join(parts[:i]), int(part), parts[i + 1:]
    return None


def read_tensors(model: nn.Module, encoder_decoder: bool, num_hidden_layers: int,
                 intermediate_size: int) -> ModelTensors:
    """The model's tensors with roles (see the module docstring)."""
    embedding_weights = {id(module.weight) for module in model.modules() if isinstance(module, nn.Embedding)}
    layer_index: dict[tuple[str, int], int] = {}
    stacks: list[str] = []
    linears: list[tuple[str, nn.Module, int | None, str]] = []
    owned: set[int] = set()
    base_name = model.base_model_prefix if hasattr(model, model.base_model_prefix) else ""
    structural = projection_roles(model)
    for name, module in model.named_modules():
        if not isinstance(module, (nn.Linear, Conv1D)):
            continue
        if id(module.weight) in embedding_weights:
            continue  # a head tied to the input embeddings: the embedding matrix itself, counted once
        owned.update(id(p) for p in module.parameters(recurse=False))
        key = _layer_key(name, model)
        if key is None:
            linears.append((name, module, None, ""))
            continue
        path, index, inner = key
        if (path, index) not in layer_index:
            layer_index[(path, index)] = len(layer_index)
            parts = path.lower().split(".")
            stacks.append("decoder" if "decoder" in parts else "encoder" if encoder_decoder else "")
        linears.append((name, module, layer_index[(path, index)], _role(inner, module, 2 * intermediate_size,
                                                                          structural.get(name))))
    calls = 1
    if not encoder_decoder and layer_index and num_hidden_layers > len(layer_index) \
            and num_hidden_layers % len(layer_index) == 0:
        calls = num_hidden_layers // len(layer_index)  # layers shared across depth (ALBERT)
    # outside the layers: inside the base a pooler or a projection of the embeddings; outside it the task head
    layered_tops = {name.split(".")[0] for name, _, layer, _ in linears if layer is not None}
    roles: list[str] = []
    for name, _, layer, role in linears:
        if layer is not None:
            roles.append(role)
            continue
        top = name.split(".")[0]
        in_base = top == base_name or top in layered_tops or (not base_name and top in ("encoder", "decoder"))
        if in_base:
            roles.append("pooler" if "pooler" in name.split(".")[-2:] or name.endswith("pooler") else "embed_proj")
        else:
            roles.append("head_dense")
    head_positions = [i for i, role in enumerate(roles) if role == "head_dense"]
    if head_positions:
        roles[head_positions[-1]] = "head"
    result = [Linear(name, _in_features(module), _out_features(module), module.bias is not None, layer, role,
                     stacks[layer] if layer is not None else "", calls if layer is not None else 1)
              for (name, module, layer, _), role in zip(linears, roles)]
    embeddings, norms = [], []
    modules = dict(model.named_modules())
    head_tops = {lin.name.split(".")[0] for lin in result if lin.role in ("head", "head_dense")}
    for name, param in model.named_parameters():
        if id(param) in owned:
            continue
        owner = modules.get(name.rsplit(".", 1)[0]) if "." in name else model
        if isinstance(owner, nn.Embedding):
            embeddings.append(Tensor(name, param.numel(), "embedding"))
        elif name.split(".")[0] in head_tops:  # a norm inside the task head (ModernBERT's head.norm)
            norms.append(Tensor(name, param.numel(), "head_norm"))
        else:
            norms.append(Tensor(name, param.numel(), "norm_bias" if name.endswith("bias") else "norm"))
    return ModelTensors(result, embeddings, norms, base_name, num_layers=len(layer_index),
                        layer_stacks=tuple(stacks), layer_calls=tuple([calls] * len(layer_index)))


@lru_cache(maxsize=32)
def _cached(config_holder: "_Holder", task: str, num_labels: int, encoder_decoder: bool, num_hidden_layers: int,
            intermediate_size: int) -> tuple[ModelTensors, dict]:
    config = copy.deepcopy(config_holder.config)
    if task == "classification":
        config.num_labels = num_labels
    model = instantiate(config, task)
    tensors = read_tensors(model, encoder_decoder, num_hidden_layers, intermediate_size)
    info = {"class": type(model).__name__,
            "attention": str(getattr(model.config, "_attn_implementation", None) or "eager"),
            "tied": any(id(getattr(m, "weight", None)) in {id(e.weight) for e in model.modules()
                                                           if isinstance(e, nn.Embedding)}
                        for m in model.modules() if isinstance(m, (nn.Linear, Conv1D)))}
    return tensors, info


class _Holder:
    """Carries the config object into the cache, keyed by its JSON (configs are not hashable)."""

    def __init__(self, config: Any, key: str) -> None:
        self.config, self.key = config, key

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Holder) and other.key == self.key


def meta_tensors(config: Any, task: str, num_labels: int, encoder_decoder: bool, num_hidden_layers: int,
                 intermediate_size: int) -> tuple[ModelTensors, dict[str, Any]]:
    """The tensors of `config`'s model for `task` (cached per config), and facts of the class: its name, its
    attention implementation, whether a linear is tied to the embeddings."""
    key = config.to_json_string(use_diff=False)
    return _cached(_Holder(config, key), task, num_labels, encoder_decoder, num_hidden_layers, intermediate_size)


def relative_positions(config: Any) -> tuple[int, int]:
    """DeBERTa's disentangled attention: (relative positions attended, score terms besides content-to-content).

    With relative attention on, each layer projects 2k relative-position embeddings (k = position_buckets, else
    max_relative_positions, else max_position_embeddings) with its pos projections, and adds a c2p and/or p2c score
    of 2k positions per query; (0, 0) for every other architecture."""
    if not getattr(config, "relative_attention", False) or not re.match(r"deberta", str(config.model_type)):
        return 0, 0
    span = getattr(config, "position_buckets", -1) or -1
    if span <= 0:
        span = getattr(config, "max_relative_positions", -1) or -1
    if span <= 0:
        span = config.max_position_embeddings
    terms = [t for t in (getattr(config, "pos_att_type", None) or []) if t in ("c2p", "p2c")]
    return 2 * span, len(terms)
