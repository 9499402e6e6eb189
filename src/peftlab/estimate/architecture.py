"""The facts about a model's architecture that its cost depends on, read from a transformers config.

Two families are modelled, each after its transformers implementation:

- ``encoder``: BERT-style post-LayerNorm encoders (``bert``, ``roberta``, ``xlm-roberta``, ``camembert``): learned
  absolute position and token-type embeddings, biased q/k/v/o projections, a GELU MLP of two matrices,
  LayerNorm with bias, dropout after the embeddings, attention probabilities and each sub-layer.
- ``decoder``: Llama-style pre-RMSNorm decoders (``llama``, ``mistral``, ``qwen2``): rotary positions, grouped-query
  attention, a SwiGLU MLP of three matrices (gate, up, down), RMSNorm without bias.

Anything else is refused with a one-line :class:`ModelError` naming what is supported, rather than estimated
wrongly.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from peftlab.errors import ModelError

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
        raise ModelError(f"cannot estimate model '{source}': model_type {model_type!r} is not modelled "
                         f"(supported: {', '.join(SUPPORTED_TYPES)})")
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
