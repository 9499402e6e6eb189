"""The parameter tensors of a model as the estimate sees them: linear layers with a role, and other tensors.

A leaf module (it imports nothing of the estimate), so that both the hand-written tensor lists of the detailed
families (params.py) and the lists read off a model instantiated on the meta device (meta.py) build the same
objects, and the architecture facts (architecture.py) can read the latter without an import cycle.

Roles of the linears inside transformer layers: ``q``, ``k``, ``v``, ``o`` (self-attention), ``qkv`` (a fused
query/key/value projection: GPT-2's ``c_attn``, Phi-3's ``qkv_proj``, ModernBERT's ``Wqkv``), ``xq``, ``xk``,
``xv``, ``xo`` (an encoder-decoder's cross-attention; ``xk`` and ``xv`` read the encoder's output), ``gate``,
``up``, ``gate_up`` (a fused gate and up projection: Phi-3's ``gate_up_proj``, ModernBERT's ``Wi``), ``down``,
``pos`` (DeBERTa's projections of its relative-position embeddings, run once per layer, not per token) and
``other`` (a linear the role rules do not recognise). Outside the layers: ``pooler`` (inside the base, e.g.
BERT's), ``head_dense`` and ``head`` (the task head: everything outside the pretrained base, its last linear
``head``), ``embed_proj`` (a projection of the embeddings before the first layer, e.g. ALBERT's).
"""

from __future__ import annotations

from dataclasses import dataclass

ATTENTION_IN = frozenset({"q", "k", "v", "qkv"})
MLP_IN = frozenset({"gate", "up", "gate_up"})
CROSS_Q = frozenset({"xq"})
CROSS_KV = frozenset({"xk", "xv"})
HEAD_ROLES = ("head", "head_dense")


@dataclass(frozen=True)
class Linear:
    """One linear layer: y = x W^T (+ b), W of shape (out_features, in_features)."""

    name: str  # full module name
    in_features: int
    out_features: int
    bias: bool
    layer: int | None  # transformer layer index (unique across an encoder-decoder's stacks); None outside the layers
    role: str  # see the module docstring
    stack: str = ""  # "encoder" or "decoder" for a layer of an encoder-decoder; "" otherwise
    calls: int = 1  # times the layer runs per forward (ALBERT shares one layer across all its layers)

    @property
    def weight_numel(self) -> int:
        return self.in_features * self.out_features

    @property
    def numel(self) -> int:
        return self.weight_numel + (self.out_features if self.bias else 0)


@dataclass(frozen=True)
class Tensor:
    """A parameter that is not a linear layer's weight: embeddings, norm weights and biases."""

    name: str
    numel: int
    kind: str  # embedding, norm, norm_bias, head_norm (a norm inside the task head)


@dataclass(frozen=True)
class ModelTensors:
    """Everything the base model holds, split into the parts methods treat differently."""

    linears: list[Linear]  # every linear in the base and the head
    embeddings: list[Tensor]
    norms: list[Tensor]  # norm weights and biases (LayerNorm) or weights (RMSNorm); other small tensors
    prefix: str  # the base model's attribute name (bert, roberta, model)
    num_layers: int = 0  # distinct transformer layers (both stacks of an encoder-decoder); 0: count the linears'
    layer_stacks: tuple[str, ...] = ()  # per layer: "encoder", "decoder" (encoder-decoders) or ""
    layer_calls: tuple[int, ...] = ()  # per layer: times it runs per forward

    @property
    def head_linears(self) -> list[Linear]:
        return [lin for lin in self.linears if lin.role in HEAD_ROLES]

    @property
    def layer_linears(self) -> list[Linear]:
        return [lin for lin in self.linears if lin.layer is not None]

    def layer_count(self) -> int:
        if self.num_layers:
            return self.num_layers
        return 1 + max((lin.layer for lin in self.layer_linears), default=-1)

    def total_numel(self) -> int:
        return sum(lin.numel for lin in self.linears) + sum(t.numel for t in self.embeddings + self.norms)
