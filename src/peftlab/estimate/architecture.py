"""The facts about a model's architecture that its cost depends on, read from a transformers config.

Two families are modelled, each after its transformers implementation:

- ``encoder``: BERT-style post-LayerNorm encoders (``bert``, ``roberta``, ``xlm-roberta``, ``camembert``): learned
  absolute position and token-type embeddings, biased q/k/v/o projections, a GELU MLP of two matrices,
  LayerNorm with bias, dropout after the embeddings, attention probabilities and each sub-layer.
- ``decoder``: Llama-style pre-RMSNorm decoders (``llama``, ``mistral``, ``qwen2``): rotary positions, grouped-query
  attention, a SwiGLU MLP of three matrices (gate, up, down), RMSNorm without bias.

Every other architecture transformers can build is modelled generically (``family`` is then the nearer of the two
for the activation formulas, ``generic`` is true): a config.json dict is first made the transformers config object
(``AutoConfig.for_model``, which applies each config class's ``attribute_map``: GPT-2's ``n_embd`` reads as
``hidden_size``, DistilBERT's ``dim``, T5's ``d_model``), the facts are read under the standard names with the
few other spellings in use (the MLP width as ``intermediate_size``, ``n_inner`` (None: 4h, as GPT-2 builds it),
``hidden_dim``, ``d_ff``, ``encoder_ffn_dim``), and the base model instantiated on the meta device (meta.py, no
weights) says what the config does not: a gated or plain MLP, the attention implementation. The parameter count
the config's shapes imply is checked against the instantiated model's and both are kept (``config_params``,
``instantiated_params``), with what the generic model approximates (``approximated``). A model type transformers
does not know, or cannot build, is a one-line :class:`ModelError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from transformers import AutoConfig
from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                    MODEL_FOR_MASKED_LM_MAPPING_NAMES)

from peftlab.errors import ModelError
from peftlab.estimate.meta import meta_tensors, relative_positions
from peftlab.estimate.tensors import ATTENTION_IN
from peftlab.files import error_line

ENCODER_TYPES = ("bert", "roberta", "xlm-roberta", "camembert")
DECODER_TYPES = ("llama", "mistral", "qwen2")
SUPPORTED_TYPES = ENCODER_TYPES + DECODER_TYPES


@dataclass(frozen=True)
class ModelFacts:
    """Shapes of one transformer; every cost formula reads only these."""

    name: str
    model_type: str
    family: str  # "encoder" or "decoder"
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    max_positions: int
    tie_word_embeddings: bool = False
    type_vocab_size: int = 0  # encoders: token-type (segment) embeddings
    qkv_bias: bool = False  # decoders: Qwen2 has biases on q, k, v (Llama with attention_bias on o too)
    o_bias: bool = False
    mlp_bias: bool = False
    hidden_dropout: float = 0.0
    attention_dropout: float = 0.0
    num_labels: int = 2  # classification head size
    stack: str = ""  # "encoder", "decoder" or "encoder-decoder" ("" : the family's)
    generic: bool = False  # not one of the detailed families: tensors from the meta model, memory approximate
    decoder_layers: int = 0  # an encoder-decoder's decoder layers (num_layers counts the encoder's)
    gated_mlp: bool = False
    prefix_kv_heads: bool = False  # the config names num_key_value_heads: peft's prefix is key/value wide
    attention_impl: str = ""  # the instantiated model's attention ("eager" computes it as plain matrix products)
    relative_positions: int = 0  # DeBERTa: relative positions each query attends (c2p / p2c scores)
    relative_terms: int = 0  # DeBERTa: how many of c2p, p2c
    embedding_size: int = 0  # the input embeddings' width when it is not hidden_size (ALBERT)
    config_params: int = 0  # generic: the base model's parameters as the config's shapes imply them
    instantiated_params: int = 0  # generic: the base model's parameters on the meta device
    approximated: tuple[str, ...] = ()  # what the estimate of this model approximates
    config: Any = field(default=None, compare=False, hash=False, repr=False)  # generic: the transformers config

    def __post_init__(self) -> None:
        if not self.stack:
            object.__setattr__(self, "stack", self.family)
        if self.family == "decoder" and not self.generic:
            object.__setattr__(self, "gated_mlp", True)
            object.__setattr__(self, "prefix_kv_heads", True)

    @property
    def embedding_width(self) -> int:
        """Width of a token's input embedding (and so of a prompt-tuning virtual token)."""
        return self.embedding_size or self.hidden_size

    @property
    def prefix_token_dim(self) -> int:
        """Width of one prefix-tuning key (or value) vector: peft makes it key/value wide when the config names
        num_key_value_heads, else hidden_size wide."""
        return self.kv_dim if self.prefix_kv_heads else self.hidden_size

    @property
    def q_dim(self) -> int:
        """Width of the query projection's output (all heads)."""
        return self.num_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        """Width of the key (and of the value) projection's output: fewer heads under grouped-query attention."""
        return self.num_kv_heads * self.head_dim

    def with_labels(self, num_labels: int) -> "ModelFacts":
        return replace(self, num_labels=num_labels)


def _get(config: Any, *names: str, default: Any = None) -> Any:
    """The first attribute of `config` (an object or a dict) among `names` that is set."""
    for name in names:
        value = config.get(name) if isinstance(config, dict) else getattr(config, name, None)
        if value is not None:
            return value
    return default


def _require(config: Any, name: str, source: str) -> int:
    value = _get(config, name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ModelError(f"model config {source} has no valid '{name}' (got {value!r}); cannot estimate its cost")
    return value


def facts_from_config(config: Any, name: str = "") -> ModelFacts:
    """ModelFacts from a transformers config object or a config.json dict; ModelError if unsupported or malformed."""
    source = name or "(config)"
    model_type = _get(config, "model_type")
    if model_type not in SUPPORTED_TYPES:
        return _generic_facts(_config_object(config, source), name, source)
    hidden = _require(config, "hidden_size", source)
    heads = _require(config, "num_attention_heads", source)
    layers = _require(config, "num_hidden_layers", source)
    num_labels = _get(config, "num_labels", default=None)
    if num_labels is None:
        id2label = _get(config, "id2label", default=None)
        num_labels = len(id2label) if id2label else 2
    common = dict(
        name=name or str(_get(config, "_name_or_path", default="") or model_type), model_type=model_type,
        hidden_size=hidden, num_layers=layers, num_heads=heads,
        intermediate_size=_require(config, "intermediate_size", source),
        vocab_size=_require(config, "vocab_size", source),
        max_positions=_require(config, "max_position_embeddings", source),
        num_labels=int(num_labels),
    )
    if hidden % heads:
        raise ModelError(f"model config {source}: hidden_size {hidden} is not a multiple of num_attention_heads {heads}")
    if model_type in ENCODER_TYPES:
        return ModelFacts(
            family="encoder", num_kv_heads=heads, head_dim=hidden // heads, tie_word_embeddings=False,
            type_vocab_size=int(_get(config, "type_vocab_size", default=2)),
            hidden_dropout=float(_get(config, "hidden_dropout_prob", default=0.1)),
            attention_dropout=float(_get(config, "attention_probs_dropout_prob", default=0.1)),
            **common,
        )
    kv_heads = _get(config, "num_key_value_heads", default=heads)
    return ModelFacts(
        family="decoder", num_kv_heads=int(kv_heads),
        head_dim=int(_get(config, "head_dim", default=hidden // heads)),
        tie_word_embeddings=bool(_get(config, "tie_word_embeddings", default=False)),
        qkv_bias=bool(model_type == "qwen2" or _get(config, "attention_bias", default=False)),
        o_bias=bool(model_type != "qwen2" and _get(config, "attention_bias", default=False)),
        mlp_bias=bool(_get(config, "mlp_bias", default=False)),
        attention_dropout=float(_get(config, "attention_dropout", default=0.0)),
        **common,
    )


def _config_object(config: Any, source: str) -> Any:
    """The transformers config of a config.json dict (so that each class's attribute_map applies)."""
    if not isinstance(config, dict):
        return config
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise ModelError(f"model config {source} has no 'model_type'; cannot tell its architecture")
    try:
        return AutoConfig.for_model(model_type, **{k: v for k, v in config.items() if k != "model_type"})
    except Exception as error:  # an unknown model type (ValueError) or values the config class rejects
        raise ModelError(f"cannot estimate model '{source}': transformers cannot read model_type {model_type!r} "
                         f"({error_line(error)})") from None


def _stack(config: Any) -> str:
    if getattr(config, "is_encoder_decoder", False):
        return "encoder-decoder"
    if config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES or config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return "encoder"
    return "decoder"


def _config_params(vocab: int, embedding: int, hidden: int, positions: int, q_dim: int, kv_dim: int, ffn: int,
                   gated: bool, layers: int, decoder_layers: int) -> int:
    """The base model's linear and embedding parameters as the config's shapes imply them (norms and biases left
    out): what the instantiated count is checked against."""
    attention = 2 * hidden * q_dim + 2 * hidden * kv_dim
    layer = attention + (3 if gated else 2) * hidden * ffn
    embeddings = vocab * embedding + positions * embedding + (embedding * hidden if embedding != hidden else 0)
    return embeddings + layers * layer + decoder_layers * (layer + attention)  # + cross-attention


def _generic_facts(config: Any, name: str, source: str) -> ModelFacts:
    model_type = str(config.model_type)
    hidden = _require(config, "hidden_size", source)
    heads = _require(config, "num_attention_heads", source)
    layers = _require(config, "num_hidden_layers", source)
    stack = _stack(config)
    decoder_layers = int(_get(config, "decoder_layers", "num_decoder_layers", default=layers)) \
        if stack == "encoder-decoder" else 0
    ffn = _get(config, "intermediate_size", "n_inner", "hidden_dim", "d_ff", "encoder_ffn_dim", "ffn_dim",
               default=4 * hidden)  # GPT-2 builds n_inner=None as 4h
    kv_heads = int(_get(config, "num_key_value_heads", default=heads))
    head_dim = int(_get(config, "head_dim", "d_kv", default=hidden // heads))
    vocab = _require(config, "vocab_size", source)
    positions = int(_get(config, "max_position_embeddings", "n_positions", default=0) or 0)
    num_labels = _get(config, "num_labels", default=None)
    if num_labels is None:
        id2label = _get(config, "id2label", default=None)
        num_labels = len(id2label) if id2label else 2
    base, info = meta_tensors(config, "base", int(num_labels), stack == "encoder-decoder", layers, int(ffn))
    roles = {lin.role for lin in base.linears}
    gated = bool(roles & {"gate", "gate_up"})
    rel_positions, rel_terms = relative_positions(config)
    learned_positions = any("position" in t.name or "wpe" in t.name for t in base.embeddings)
    approximated = ["activation memory (the formulas of the nearer detailed family, BERT-style or Llama-style, "
                    "for each layer)"]
    if stack == "encoder-decoder":
        approximated.append("encoder-decoder: the decoder's length is the encoder's; cross-attention activations "
                            "as self-attention's")
    if set(base.layer_calls) - {1}:
        approximated.append("layers shared across depth: activations per run of the shared layer")
    if "other" in roles:
        approximated.append("linears of unrecognised role: counted, their gradient flow assumed as the MLP's")
    if not roles & ATTENTION_IN:
        approximated.append("no attention projections recognised: attention FLOPs may be missing")
    embedding = int(_get(config, "embedding_size", default=hidden) or hidden)
    config_count = _config_params(vocab, embedding, hidden,
                                  positions if learned_positions else 0, heads * head_dim, kv_heads * head_dim,
                                  int(ffn), gated, layers, decoder_layers)
    return ModelFacts(
        name=name or str(_get(config, "_name_or_path", default="") or model_type), model_type=model_type,
        family="decoder" if gated else "encoder", hidden_size=hidden, num_layers=layers, num_heads=heads,
        num_kv_heads=kv_heads, head_dim=head_dim, intermediate_size=int(ffn), vocab_size=vocab,
        max_positions=positions, tie_word_embeddings=bool(_get(config, "tie_word_embeddings", default=False)),
        hidden_dropout=float(_get(config, "hidden_dropout_prob", "dropout", "resid_pdrop", "dropout_rate",
                                  default=0.0) or 0.0),
        attention_dropout=float(_get(config, "attention_probs_dropout_prob", "attention_dropout", "attn_pdrop",
                                     "dropout_rate", default=0.0) or 0.0),
        num_labels=int(num_labels), stack=stack, generic=True, decoder_layers=decoder_layers, gated_mlp=gated,
        prefix_kv_heads=_get(config, "num_key_value_heads") is not None, attention_impl=info["attention"],
        relative_positions=rel_positions, relative_terms=rel_terms, config_params=config_count,
        embedding_size=embedding if embedding != hidden else 0,
        instantiated_params=base.total_numel(), approximated=tuple(approximated), config=config)


def modelled_as(facts: ModelFacts) -> dict[str, Any]:
    """How the estimate models this architecture, for its record: in detail (a family after its transformers
    implementation) or generically (tensors from the meta model; the parameter check; what is approximated)."""
    record: dict[str, Any] = {"modelled": "generic" if facts.generic else "detailed", "family": facts.family,
                              "stack": facts.stack, "approximated": list(facts.approximated)}
    if facts.generic:
        record.update(config_params=facts.config_params, instantiated_params=facts.instantiated_params,
                      config_params_ratio=facts.config_params / facts.instantiated_params
                      if facts.instantiated_params else None)
    return record
