"""What each method trains and adds, worked out from ModelFacts and the method's settings (no model built).

A :class:`MethodPlan` says, for every transformer layer, which base weights and biases train and where LoRA
factors, IA3 vectors, bottleneck adapters or prefixes sit, plus what trains outside the layers (embeddings,
norms, head) and the parameters the method adds. Parameter counts, activation memory and FLOPs are all read
from it, so the three agree on what the method is.

Which plan models a method is the method's own declaration (``Method.estimate_plan``, one of
``methods.base.ESTIMATE_PLANS``); the builders here are keyed by those plan names, never by method names, so a
registered method is estimated without a change here. What else the plan needs from the method is declared on it
too: whether a classifier's head trains as peft's copy (``head_copy``) and whether its added parameters stay fp32
(``added_parameters_fp32``).

Settings are the registry's defaults with the user's overrides (the same YAML keys as ``--method-config``).
Besides the registry's methods the estimate has variants (:data:`ESTIMATE_VARIANTS`): ``qlora`` is LoRA (same
settings, same plan) on a base whose layer linears are stored in 4-bit NF4; it exists only here (compare trains
it as ``lora`` with ``--load-in-4bit``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from peft.utils.constants import TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING as IA3_FEEDFORWARD_MODULES
from peft.utils.constants import TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING as IA3_TARGET_MODULES

from peftlab.errors import MethodError
from peftlab.estimate.architecture import ModelFacts
from peftlab.estimate.params import Linear, ModelTensors, model_tensors
from peftlab.methods import METHODS, TRAINING_KEYS, Method, get_method


@dataclass(frozen=True)
class EstimateVariant:
    """A registered method on a base stored differently, named for the estimate only (``--methods qlora``)."""

    method: str  # the registered method whose settings, overrides and plan it takes
    summary: str
    quantized_base: bool = False  # the layer linears are stored in 4-bit NF4 (QLoRA)


ESTIMATE_VARIANTS: dict[str, EstimateVariant] = {
    "qlora": EstimateVariant("lora", "LoRA on a base whose layer linears are stored in 4-bit NF4 (QLoRA)",
                             quantized_base=True),
}


@dataclass(frozen=True)
class LayerPlan:
    """What trains or is added in one transformer layer; sets hold linear roles (q, k, v, o, gate, up, down)."""

    trains_weights: frozenset[str] = frozenset()  # base weights that train (full fine-tuning)
    trains_biases: frozenset[str] = frozenset()  # base biases that train (full, BitFit)
    trains_norms: bool = False  # norm weights/biases train (full, BitFit's LayerNorm biases)
    lora: frozenset[str] = frozenset()  # linears with a LoRA branch beside them
    ia3_out: frozenset[str] = frozenset()  # linears whose output is rescaled by an IA3 vector
    ia3_in: frozenset[str] = frozenset()  # linears whose input is rescaled (IA3 "feedforward" modules)
    adapters: frozenset[str] = frozenset()  # linears followed by a bottleneck adapter
    prefix: bool = False  # trainable key/value prefixes join this layer's attention

    @property
    def trains_anything(self) -> bool:
        return bool(self.trains_weights or self.trains_biases or self.trains_norms or self.lora or self.ia3_out
                    or self.ia3_in or self.adapters or self.prefix)


@dataclass
class MethodPlan:
    method: str  # the name estimated (a registered method or an estimate variant)
    settings: dict[str, Any]
    task: str
    tensors: ModelTensors
    layers: list[LayerPlan]
    trains_all_weights: bool = False  # every base tensor trains (full fine-tuning): the checkpoint is the whole model
    embeddings_train: bool = False
    embedding_norm_trains: bool = False  # encoders: the LayerNorm after the embeddings
    final_norm_trains: bool = False  # decoders: model.norm
    pooler_trains: bool = False  # BERT's pooler.dense weight
    head_trains: bool = False
    head_copy: bool = False  # peft's modules_to_save: a trainable copy of the head beside the frozen original
    prompt_tokens: int = 0  # prompt tuning: virtual tokens prepended to every input (an encoder-decoder's encoder
    # input only: peft's PROMPT_TUNING leaves the decoder's input alone under SEQ_2_SEQ_LM)
    prefix_tokens: int = 0  # prefix tuning: virtual key/value positions in the self-attention of each layer whose
    # LayerPlan says prefix (every layer of a decoder or encoder; an encoder-decoder's decoder layers)
    lora_rank: int = 0
    lora_dropout: float = 0.0
    dora: bool = False
    bottleneck: int = 0
    quantized_base: bool = False  # QLoRA: layer linears stored in 4-bit NF4
    quantized_head: bool = False  # ... and the LM head too (torchtune's QLoRA; bitsandbytes skips the head)
    added_parameters_fp32: bool = False  # the method keeps what it adds in fp32 (peft's autocast_adapter_dtype)
    adapters_in_model_dtype: bool = False  # torchtune keeps LoRA in the model's dtype whatever the method does
    added: list[tuple[str, int]] = field(default_factory=list)  # (name, numel) of the parameters the method adds
    trainable: list[tuple[str, int]] = field(default_factory=list)  # (name, numel) of every trainable tensor

    def is_quantized(self, linear: Linear) -> bool:
        return self.quantized_base and (linear.layer is not None or (self.quantized_head and linear.role == "head"))


def estimated_method(name: str) -> tuple[Method, EstimateVariant | None]:
    """The registered method `name` stands for (for a variant, the method it varies) and the variant, if any."""
    variant = ESTIMATE_VARIANTS.get(name)
    if variant is None and name not in METHODS:
        known = ", ".join([*METHODS, *ESTIMATE_VARIANTS])
        raise MethodError(f"unknown method '{name}'; known methods: {known}")
    return get_method(variant.method if variant else name), variant


def modelled_methods() -> list[str]:
    """The registered methods the estimate models (those naming one of its plans), in registry order."""
    return [name for name, method in METHODS.items() if method.estimate_plan in PLAN_BUILDERS]


def is_modelled(name: str) -> bool:
    """Does the estimate model `name` (a registered method naming a plan, or a variant)? False for unknown names."""
    if name in ESTIMATE_VARIANTS:
        return True
    return name in METHODS and METHODS[name].estimate_plan in PLAN_BUILDERS


def resolve_settings(method_name: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The registry's defaults for the method with the user's overrides; MethodError for unknown names or keys."""
    overrides = dict(overrides or {})
    method, _ = estimated_method(method_name)
    method.check_overrides(overrides)
    settings = {**method.defaults, **{k: v for k, v in overrides.items() if k not in TRAINING_KEYS}}
    return settings


def _matches(name: str, targets: Any) -> bool:
    """peft's rule: a string is a regular expression matched against the full name; a list holds name suffixes."""
    if isinstance(targets, str):
        return re.fullmatch(targets, name) is not None
    return any(name == target or name.endswith("." + target) for target in targets)


def _lora_targets(tensors: ModelTensors, targets: Any) -> list[Linear]:
    """The linears peft's LoRA wraps: "all-linear" is every linear but the output head."""
    candidates = [lin for lin in tensors.linears if lin.role not in ("head", "head_dense")]
    if isinstance(targets, str) and targets.lower() == "all-linear":
        return candidates
    if not targets:
        raise MethodError("LoRA target_modules is empty; leave it unset for all-linear or name modules")
    chosen = [lin for lin in candidates if _matches(lin.name, targets)]
    if not chosen:
        raise MethodError(f"LoRA target_modules {targets!r} match no linear layer of this model")
    return chosen


# where the methods attach when their settings do not say, in the estimate's roles (peftlab.methods.targets finds the
# same projections in a real model): IA3 on keys, values and the FFN output (rescaled on its input); adapters after
# every attention output and FFN output
IA3_ROLES = frozenset({"k", "v", "qkv", "xk", "xv", "down"})
IA3_FEEDFORWARD_ROLES = frozenset({"down"})
ADAPTER_ROLES = frozenset({"o", "xo", "down"})


def _ia3_targets(plan: MethodPlan, facts: ModelFacts, settings: dict[str, Any]) -> tuple[Any, Any]:
    """(target_modules, feedforward_modules): the settings', else peft's defaults for the model type, else the
    keys, values and FFN outputs of the layers (what the IA3 method finds from the module structure)."""
    targets = settings.get("target_modules") or IA3_TARGET_MODULES.get(facts.model_type)
    feedforward = settings.get("feedforward_modules") or IA3_FEEDFORWARD_MODULES.get(facts.model_type) or []
    if not targets:
        layers = plan.tensors.layer_linears
        targets = [lin.name for lin in layers if lin.role in IA3_ROLES]
        feedforward = [lin.name for lin in layers if lin.role in IA3_FEEDFORWARD_ROLES]
    if not targets:
        raise MethodError(f"IA3 has no default target modules for model type '{facts.model_type}'; set target_modules")
    return targets, feedforward


def _by_layer(linears: list[Linear], num_layers: int) -> list[set[str]]:
    roles: list[set[str]] = [set() for _ in range(num_layers)]
    for lin in linears:
        if lin.layer is not None:
            roles[lin.layer].add(lin.role)
    return roles


def _head_names(plan: MethodPlan) -> list[tuple[str, int]]:
    return ([(lin.name, lin.numel) for lin in plan.tensors.head_linears]
            + [(t.name, t.numel) for t in plan.tensors.norms if t.kind == "head_norm"])


RECIPES = ("hf", "torchtune")


def _builder(name: str, method: Method):
    """The plan builder the method names; MethodError when it names none, or one the estimate lacks."""
    if method.estimate_plan is None:
        raise MethodError(f"method '{name}' is not modelled by the estimate (it names no estimate_plan); "
                          f"modelled methods: {', '.join([*modelled_methods(), *ESTIMATE_VARIANTS])}")
    if method.estimate_plan not in PLAN_BUILDERS:
        raise MethodError(f"method '{name}' names estimate plan '{method.estimate_plan}', which the estimate does "
                          f"not have (plans: {', '.join(PLAN_BUILDERS)})")
    return PLAN_BUILDERS[method.estimate_plan]


def build_plan(facts: ModelFacts, method_name: str, settings: dict[str, Any], task: str,
               recipe: str = "hf") -> MethodPlan:
    """The plan of `method_name` with resolved `settings` on this model, for this task, as `recipe` runs it:
    ``hf`` (transformers + peft, as peftlab trains) or ``torchtune`` (its single-device recipes)."""
    method, variant = estimated_method(method_name)
    builder = _builder(method_name, method)
    tensors = model_tensors(facts, task)
    plan = MethodPlan(method_name, settings, task, tensors, [LayerPlan() for _ in range(tensors.layer_count())])
    plan.added_parameters_fp32 = method.added_parameters_fp32
    plan.adapters_in_model_dtype = recipe == "torchtune"
    plan.quantized_base = variant is not None and variant.quantized_base
    plan.quantized_head = plan.quantized_base and plan.adapters_in_model_dtype and task == "causal-lm"
    builder(plan, facts, settings)
    if method.head_copy and task == "classification":  # peftlab puts the head in peft's modules_to_save
        plan.head_trains, plan.head_copy = True, True
        plan.added += [(f"{name}.modules_to_save", numel) for name, numel in _head_names(plan)]
        plan.trainable += [(f"{name}.modules_to_save", numel) for name, numel in _head_names(plan)]
    return plan


def _plan_full(plan: MethodPlan, facts: ModelFacts, settings: dict) -> None:
    tensors = plan.tensors
    for i, layer_roles in enumerate(_by_layer(tensors.layer_linears, len(plan.layers))):
        biased = {lin.role for lin in tensors.layer_linears if lin.layer == i and lin.bias}
        plan.layers[i] = LayerPlan(trains_weights=frozenset(layer_roles), trains_biases=frozenset(biased),
                                   trains_norms=True)
    plan.trains_all_weights = True
    plan.embeddings_train = plan.embedding_norm_trains = plan.final_norm_trains = True
    plan.pooler_trains = plan.head_trains = True
    plan.trainable = ([(lin.name, lin.numel) for lin in tensors.linears]
                      + [(t.name, t.numel) for t in tensors.embeddings + tensors.norms])


def _plan_head(plan: MethodPlan, facts: ModelFacts, settings: dict) -> None:
    plan.head_trains = True
    plan.trainable = _head_names(plan)
    if not plan.trainable:  # a causal LM whose lm_head is tied: training the head trains the embedding matrix
        plan.trainable = [(t.name, t.numel) for t in plan.tensors.embeddings[:1]]


def _plan_bitfit(plan: MethodPlan, facts: ModelFacts, settings: dict) -> None:
    tensors = plan.tensors
    biased = [lin for lin in tensors.linears if lin.bias and lin.role not in ("head", "head_dense")]
    norm_biases = [t for t in tensors.norms if t.kind == "norm_bias"]
    if not biased and not norm_biases:
        raise MethodError(f"method 'bitfit' needs bias terms, and model type '{facts.model_type}' has none; "
                          "pick another method")
    for i, roles in enumerate(_by_layer(biased, len(plan.layers))):
        plan.layers[i] = LayerPlan(trains_biases=frozenset(roles), trains_norms=bool(norm_biases))
    plan.embedding_norm_trains = bool(norm_biases)
    plan.head_trains = plan.task == "classification"  # a new task head trains; a language model's output layer not
    plan.trainable = ([(f"{lin.name}.bias", lin.out_features) for lin in biased]
                      + [(t.name, t.numel) for t in norm_biases] + (_head_names(plan) if plan.head_trains else []))


def _plan_lora(plan: MethodPlan, facts: ModelFacts, settings: dict) -> None:
    rank = int(settings.get("r", 8))
    plan.lora_rank, plan.lora_dropout = rank, float(settings.get("lora_dropout", 0.0) or 0.0)
    plan.dora = bool(settings.get("use_dora", False))  # DoRA: the registry's dora has use_dora=True
    targets = _lora_targets(plan.tensors, settings.get("target_modules", "all-linear"))
    for i, roles in enumerate(_by_layer(targets, len(plan.layers))):
        plan.layers[i] = LayerPlan(lora=frozenset(roles))
    plan.pooler_trains = any(lin.role == "pooler" for lin in targets)  # a LoRA branch on BERT's pooler
    for lin in targets:
        plan.added += [(f"{lin.name}.lora_A", rank * lin.in_features), (f"{lin.name}.lora_B", lin.out_features * rank)]
        if plan.dora:
            plan.added.append((f"{lin.name}.lora_magnitude_vector", lin.out_features))
    plan.trainable = list(plan.added)


def _plan_ia3(plan: MethodPlan, facts: ModelFacts, settings: dict) -> None:
    targets, feedforward = _ia3_targets(plan, facts, settings)
    chosen = [lin for lin in plan.tensors.linears if lin.role not in ("head", "head_dense") and _matches(lin.name, targets)]
    if not chosen:
        raise MethodError(f"IA3 target_modules {targets!r} match no linear layer of this model")

    def scales_input(lin: Linear) -> bool:
        if isinstance(feedforward, str):
            return re.fullmatch(feedforward, lin.name) is not None
        return any(lin.name.endswith(target) for target in feedforward)

    ins = [lin for lin in chosen if scales_input(lin)]
    outs = [lin for lin in chosen if not scales_input(lin)]
    by_in, by_out = _by_layer(ins, len(plan.layers)), _by_layer(outs, len(plan.layers))
    for i in range(len(plan.layers)):
        plan.layers[i] = LayerPlan(ia3_in=frozenset(by_in[i]), ia3_out=frozenset(by_out[i]))
    plan.added = ([(f"{lin.name}.ia3_l", lin.in_features) for lin in ins]
                  + [(f"{lin.name}.ia3_l", lin.out_features) for lin in outs])
    plan.trainable = list(plan.added)


def _plan_adapter(plan: MethodPlan, facts: ModelFacts, settings: dict) -> None:
    bottleneck = int(settings.get("bottleneck_size", 64))
    targets = settings.get("target_modules") or [lin.name for lin in plan.tensors.layer_linears
                                                 if lin.role in ADAPTER_ROLES]
    if not targets:
        raise MethodError(f"bottleneck adapters found no attention or FFN output in model type '{facts.model_type}'")
    if isinstance(targets, str):
        chosen = [lin for lin in plan.tensors.linears if re.search(targets, lin.name)]
    else:
        chosen = [lin for lin in plan.tensors.linears if _matches(lin.name, targets)]
    chosen = [lin for lin in chosen if lin.role not in ("head", "head_dense")]
    if not chosen:
        raise MethodError(f"adapter target_modules {targets!r} match no linear layer of this model")
    plan.bottleneck = bottleneck
    for i, roles in enumerate(_by_layer(chosen, len(plan.layers))):
        plan.layers[i] = LayerPlan(adapters=frozenset(roles))
    for lin in chosen:
        width = lin.out_features
        plan.added += [(f"{lin.name}.adapter.down", bottleneck * width + bottleneck),
                       (f"{lin.name}.adapter.up", width * bottleneck + width)]
    plan.trainable = list(plan.added)
    # peftlab's adapter trains the classifier head in place (no copy); a causal LM's head stays frozen
    save = settings.get("modules_to_save")
    if (save is None and plan.task == "classification") or save:
        plan.head_trains = True
        plan.trainable += _head_names(plan)


def _submodules(plan: MethodPlan, settings: dict) -> int:
    """peft's num_transformer_submodules: 2 (a prompt table sized for the encoder and the decoder) when peft runs the
    model as a seq2seq LM: the run's task_type says (peftlab resolves it from the model), else the task does."""
    if settings.get("num_transformer_submodules"):
        return int(settings["num_transformer_submodules"])
    task_type = settings.get("task_type")
    if task_type is not None:
        return 2 if str(getattr(task_type, "value", task_type)) == "SEQ_2_SEQ_LM" else 1
    return 2 if plan.task == "seq2seq-lm" else 1


def _plan_prompt(plan: MethodPlan, facts: ModelFacts, settings: dict) -> None:
    """peft's PromptEmbedding is (num_virtual_tokens * num_transformer_submodules, token_dim); under SEQ_2_SEQ_LM
    (2 submodules) PeftModelForSeq2SeqLM.forward prepends only the first num_virtual_tokens rows, to the encoder's
    input: the decoder's input and the labels stay as they are, and the second half of the table trains without
    ever being read (it gets no gradient)."""
    plan.prompt_tokens = int(settings.get("num_virtual_tokens", 20))
    plan.added = [("prompt_encoder.embedding", plan.prompt_tokens * _submodules(plan, settings) * facts.embedding_width)]
    plan.trainable = list(plan.added)


def _plan_prefix(plan: MethodPlan, facts: ModelFacts, settings: dict) -> None:
    """peft's PrefixEncoder is (num_virtual_tokens, num_layers * 2 * token_dim), whatever num_transformer_submodules
    is (num_layers: the config's num_hidden_layers, an encoder-decoder's encoder layers). Its keys and values go in
    as ``past_key_values``; an encoder-decoder passes those to its decoder only, and under SEQ_2_SEQ_LM peft builds
    an EncoderDecoderCache whose cross-attention cache it empties: the prefix joins the self-attention of the
    decoder's first num_layers layers, the encoder runs untouched."""
    if settings.get("prefix_projection"):
        raise MethodError("prefix tuning with prefix_projection=True is not modelled by the estimate")
    plan.prefix_tokens = int(settings.get("num_virtual_tokens", 20))
    stacks = plan.tensors.layer_stacks
    if "decoder" in stacks and "encoder" in stacks:  # an encoder-decoder: the decoder's first num_layers layers
        decoder = [i for i, stack in enumerate(stacks) if stack == "decoder"][:facts.num_layers]
        plan.layers = [LayerPlan(prefix=i in decoder) for i in range(len(plan.layers))]
    else:
        plan.layers = [LayerPlan(prefix=True) for _ in plan.layers]
    # one key and one value vector per virtual token and layer (of the key/value width under grouped-query attention)
    plan.added = [("prompt_encoder.embedding", plan.prefix_tokens * facts.num_layers * 2 * facts.prefix_token_dim)]
    plan.trainable = list(plan.added)


# plan name (Method.estimate_plan; methods.base.ESTIMATE_PLANS lists the same names) -> the function that fills it in
PLAN_BUILDERS = {"full": _plan_full, "head": _plan_head, "bitfit": _plan_bitfit, "lora": _plan_lora, "ia3": _plan_ia3,
             "adapter": _plan_adapter, "prompt": _plan_prompt, "prefix": _plan_prefix}
