"""Activation memory: the bytes autograd keeps from the forward pass for the backward pass.

This follows Korthikanti et al. (2022), "Reducing Activation Recomputation in Large Transformer Models"
(arXiv:2205.05198), which counts, per layer and token, every tensor a backward op needs (34·h bytes per token
and layer for GPT in 16-bit, plus 5·a·s for the attention scores). Here the count is redone for the transformers
implementations of BERT and Llama, and made to depend on what trains, because autograd saves a tensor only when
a backward op needs it:

- a linear layer saves its input only if its weight trains (the input gradient needs the weight, not the input);
- an elementwise op (norm, activation, product) saves its inputs only if a gradient flows through it, i.e. if
  some parameter below it trains. Under a frozen base (LoRA, IA3, adapters...) the bottom layer's ops before the
  first trainable parameter save nothing, and a linear probe saves almost nothing.

Conventions: ``e`` is the activation dtype's size (2 for bf16/fp16, 4 for fp32); Llama's RMSNorm upcasts to
fp32 (4 bytes) and saves that copy; LayerNorm keeps mean and 1/std in fp32. Dropout keeps a mask, 1 byte per
element on CUDA (on CPU PyTorch keeps a float mask of the input's size). peft runs LoRA and IA3 in fp32 on a
16-bit base (``autocast_adapter_dtype``), so their inputs are saved as fp32 copies.

Attention: with ``flash`` (SDPA's flash or memory-efficient kernels, the default on GPU) the saved tensors are
q, k, v, the output and a log-sum-exp per head and token; the s x s score matrix is never stored. With ``math``
(what SDPA falls back to on CPU when attention dropout is on, or eager attention) the probabilities are saved
(a·s per token), with dropout also the mask and the dropped probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from peftlab.estimate.architecture import ModelFacts
from peftlab.estimate.plans import LayerPlan, MethodPlan

FP32 = 4
INDEX_BYTES = 8  # int64 token ids kept by an embedding whose weight trains


@dataclass(frozen=True)
class ActivationContext:
    """What, besides the plan, decides how many bytes an activation takes."""

    e: int  # bytes per activation element
    cuda: bool  # dropout masks: 1 byte per element on CUDA, the input's element size on CPU
    attention: str  # "flash" or "math"
    adapter_bytes: int  # bytes per element of LoRA/IA3 parameters (and of the inputs peft casts to them)
    seq_len: int  # query positions per sequence of the stack computed (virtual prompt tokens included; an
    # encoder-decoder's decoder: the target's length)
    dropout: bool  # model dropout is active (training mode with p > 0)
    kv_repeated: bool = False  # an attention mask reaches the kernel: transformers repeats GQA keys/values per head

    def mask_bytes(self, input_bytes: int) -> int:
        return 1 if self.cuda else input_bytes

    @property
    def attention_bytes(self) -> int:
        """The CPU math kernel computes 16-bit attention in fp32 and keeps those copies."""
        return FP32 if (self.attention == "math" and not self.cuda) else self.e


def _lora_inputs(width: int, roles: set[str], plan: MethodPlan, ctx: ActivationContext, grad_in: bool) -> float:
    """Bytes per token LoRA branches on `roles` save besides the shared input: their own input copies and A x.

    peft casts the input to the adapter's dtype (a new tensor when it differs) and applies its own dropout
    (a new tensor, and a mask when a gradient flows into the input) per wrapped linear; lora_B keeps lora_A's
    output (rank wide).
    """
    if not roles:
        return 0.0
    per_target = plan.lora_rank * ctx.adapter_bytes
    if plan.lora_dropout > 0:
        per_target += width * ctx.adapter_bytes
        per_target += width * ctx.mask_bytes(ctx.adapter_bytes) if grad_in else 0.0
    elif ctx.adapter_bytes != ctx.e:
        per_target += width * ctx.adapter_bytes
    if plan.dora:  # DoRA keeps the base output and the scaled LoRA output to rescale by the magnitude (approximate)
        per_target += 2 * width * ctx.adapter_bytes
    return len(roles) * per_target


def _shares_input(roles: set[str], lp: LayerPlan, plan: MethodPlan, ctx: ActivationContext) -> bool:
    """Is the input of the linears in `roles` itself saved (by a trainable weight, or LoRA/IA3 without a copy)?"""
    copies = plan.lora_dropout > 0 or ctx.adapter_bytes != ctx.e
    return bool(roles & lp.trains_weights) or (bool(roles & lp.lora) and not copies) or (
        bool(roles & lp.ia3_in) and ctx.adapter_bytes == ctx.e)


def _ia3_input_copies(width: int, roles: set[str], lp: LayerPlan, ctx: ActivationContext) -> float:
    """IA3 on an input casts it to the vector's dtype first; that copy is what the product saves."""
    return width * ctx.adapter_bytes * len(roles & lp.ia3_in) if ctx.adapter_bytes != ctx.e else 0.0


def _adapter(roles: set[str], width: int, lp: LayerPlan, plan: MethodPlan, ctx: ActivationContext) -> float:
    """A bottleneck adapter after a linear keeps the linear's output, the down projection and the activation."""
    return len(roles & lp.adapters) * (width + 2 * plan.bottleneck) * ctx.e


def _trains(roles: set[str], lp: LayerPlan) -> bool:
    return bool(roles & (lp.trains_weights | lp.trains_biases | lp.lora | lp.ia3_out | lp.ia3_in | lp.adapters))


def prefixed_keys(plan: MethodPlan, lp: LayerPlan, ctx: ActivationContext) -> float:
    """Keys per query position in this layer's self-attention: 1, plus prefix tuning's virtual keys where the
    prefix joins this layer."""
    return 1 + (plan.prefix_tokens / ctx.seq_len if lp.prefix else 0.0)


def _attention_core(facts: ModelFacts, kv_tokens: float, ctx: ActivationContext, keeps_output: bool) -> float:
    """Bytes per query token the attention kernel keeps: q, k, v (keys over kv_tokens per query token), output,
    and either the log-sum-exp (flash) or the probabilities (math)."""
    kv_width = facts.q_dim if ctx.kv_repeated else facts.kv_dim
    nbytes = ctx.attention_bytes
    qkv = (facts.q_dim + 2 * kv_width * kv_tokens) * nbytes
    if ctx.attention == "flash":
        return qkv + facts.q_dim * ctx.e + facts.num_heads * FP32
    scores = facts.num_heads * ctx.seq_len * kv_tokens  # a x s_kv probabilities per query token
    kept = scores * nbytes
    if ctx.dropout and facts.attention_dropout > 0:
        kept += scores * (ctx.mask_bytes(nbytes) + nbytes)  # the dropout mask and the dropped probabilities
    return qkv + kept + (facts.q_dim * ctx.e if keeps_output else 0.0)


def decoder_layer_bytes(facts: ModelFacts, lp: LayerPlan, plan: MethodPlan, ctx: ActivationContext,
                        grad_in: bool) -> tuple[float, bool]:
    """Bytes per token one Llama-style layer keeps, and whether a gradient flows out of its top.

    norm -> q,k,v -> rotary -> attention -> o -> residual -> norm -> gate, up -> silu(gate)*up -> down -> residual
    """
    h, f, e = facts.hidden_size, facts.intermediate_size, ctx.e
    qkv, mlp_in = {"q", "k", "v"}, {"gate", "up"}
    kept = 0.0
    # input RMSNorm: its fp32 input copy and 1/rms when a gradient flows in; x_hat when its weight trains
    kept += (h * FP32 + FP32) if grad_in else 0.0
    kept += h * e if lp.trains_norms else 0.0
    # the norm output, kept by q/k/v when they train; LoRA's own copies and rank-wide intermediates
    kept += h * e if _shares_input(qkv, lp, plan, ctx) else 0.0
    kept += _lora_inputs(h, qkv & lp.lora, plan, ctx, grad_in or lp.trains_norms)
    # IA3 rescaling of a projection's output keeps that output
    widths = {"q": facts.q_dim, "k": facts.kv_dim, "v": facts.kv_dim}
    kept += sum(widths[role] * e for role in qkv & lp.ia3_out)
    flows = grad_in or lp.trains_norms or _trains(qkv, lp) or lp.prefix
    # attention kernel: q, k, v (keys and values longer by the prefix), output, softmax statistics
    kv_tokens = prefixed_keys(plan, lp, ctx)
    keeps_output = _shares_input({"o"}, lp, plan, ctx)
    kept += _attention_core(facts, kv_tokens, ctx, keeps_output) if flows else 0.0
    if not flows and keeps_output:
        kept += facts.q_dim * e  # o trains but nothing below it does: o keeps the attention output itself
    kept += _lora_inputs(facts.q_dim, {"o"} & lp.lora, plan, ctx, flows)
    kept += _ia3_input_copies(facts.q_dim, {"o"}, lp, ctx)
    kept += _adapter({"o"}, h, lp, plan, ctx)
    flows = flows or _trains({"o"}, lp)
    # post-attention RMSNorm, then the SwiGLU MLP
    kept += (h * FP32 + FP32) if flows else 0.0
    kept += h * e if lp.trains_norms else 0.0
    kept += h * e if _shares_input(mlp_in, lp, plan, ctx) else 0.0
    kept += _lora_inputs(h, mlp_in & lp.lora, plan, ctx, flows or lp.trains_norms)
    kept += f * e * len(mlp_in & lp.ia3_out)
    flows = flows or lp.trains_norms or _trains(mlp_in, lp)
    kept += 3 * f * e if flows else 0.0  # silu keeps gate's output; the product keeps silu(gate) and up's output
    kept += f * e if _shares_input({"down"}, lp, plan, ctx) else 0.0  # the product, kept by down
    kept += _lora_inputs(f, {"down"} & lp.lora, plan, ctx, flows) + _ia3_input_copies(f, {"down"}, lp, ctx)
    kept += _adapter({"down"}, h, lp, plan, ctx)
    return kept, flows or _trains({"down"}, lp)


def encoder_layer_bytes(facts: ModelFacts, lp: LayerPlan, plan: MethodPlan, ctx: ActivationContext,
                        grad_in: bool) -> tuple[float, bool]:
    """Bytes per token one BERT-style layer keeps, and whether a gradient flows out of its top.

    q,k,v -> attention -> o -> dropout -> LayerNorm(+x) -> up -> gelu -> down -> dropout -> LayerNorm(+residual)
    """
    h, f, e = facts.hidden_size, facts.intermediate_size, ctx.e
    qkv = {"q", "k", "v"}
    hidden_mask = h * ctx.mask_bytes(e) if ctx.dropout and facts.hidden_dropout > 0 else 0.0
    kept = 0.0
    kept += h * e if _shares_input(qkv, lp, plan, ctx) else 0.0  # the layer input, kept by q/k/v when they train
    kept += _lora_inputs(h, qkv & lp.lora, plan, ctx, grad_in)
    kept += h * e * len(qkv & lp.ia3_out)
    flows = grad_in or _trains(qkv, lp) or lp.prefix
    kv_tokens = prefixed_keys(plan, lp, ctx)
    keeps_context = _shares_input({"o"}, lp, plan, ctx)
    kept += _attention_core(facts, kv_tokens, ctx, keeps_context) if flows else 0.0
    if not flows and keeps_context:
        kept += h * e
    kept += _lora_inputs(h, {"o"} & lp.lora, plan, ctx, flows) + _ia3_input_copies(h, {"o"}, lp, ctx)
    kept += _adapter({"o"}, h, lp, plan, ctx)
    flows = flows or _trains({"o"}, lp)
    # dropout mask, then LayerNorm over (attention output + input): its input and fp32 mean and 1/std
    kept += (hidden_mask + h * e + 2 * FP32) if (flows or lp.trains_norms) else 0.0
    kept += h * e if _shares_input({"up"}, lp, plan, ctx) else 0.0
    kept += _lora_inputs(h, {"up"} & lp.lora, plan, ctx, flows or lp.trains_norms)
    kept += f * e * len({"up"} & lp.ia3_out)
    flows = flows or lp.trains_norms or _trains({"up"}, lp)
    kept += f * e if flows else 0.0  # gelu keeps its input
    kept += f * e if _shares_input({"down"}, lp, plan, ctx) else 0.0  # gelu's output, kept by down
    kept += _lora_inputs(f, {"down"} & lp.lora, plan, ctx, flows) + _ia3_input_copies(f, {"down"}, lp, ctx)
    kept += _adapter({"down"}, h, lp, plan, ctx)
    flows = flows or _trains({"down"}, lp)
    kept += (hidden_mask + h * e + 2 * FP32) if (flows or lp.trains_norms) else 0.0
    return kept, flows or lp.trains_norms


def embedding_bytes(facts: ModelFacts, plan: MethodPlan, ctx: ActivationContext) -> tuple[float, bool]:
    """Bytes per token kept below the first layer, and whether a gradient flows into the first layer."""
    grad = plan.embeddings_train or plan.embedding_norm_trains or plan.prompt_tokens > 0
    kept = INDEX_BYTES if plan.embeddings_train else 0.0
    if facts.family == "encoder" and grad:  # LayerNorm over the summed embeddings, then dropout
        mask = facts.hidden_size * ctx.mask_bytes(ctx.e) if ctx.dropout and facts.hidden_dropout > 0 else 0.0
        kept += facts.hidden_size * ctx.e + 2 * FP32 + mask
    return kept, grad


def top_bytes(facts: ModelFacts, plan: MethodPlan, ctx: ActivationContext, grad: bool) -> float:
    """Bytes per token kept above the last layer, before the loss: the final norm (decoders), the head's input."""
    h, e = facts.hidden_size, ctx.e
    kept = 0.0
    if facts.family == "decoder":
        kept += (h * FP32 + FP32) if grad else 0.0
        kept += h * e if plan.final_norm_trains else 0.0
        kept += h * e if plan.head_trains else 0.0  # lm_head / score keeps the normed hidden states
    elif facts.model_type == "bert" and (plan.pooler_trains or plan.trains_all_weights):
        kept += h * e  # the pooler keeps a view of the [CLS] row, which keeps the whole last hidden state alive
    return kept


def forward_working_bytes(facts: ModelFacts, ctx: ActivationContext, kv_tokens: float) -> float:
    """Bytes per token of the transients one layer's forward holds at once, saved or not (what a frozen layer
    costs while it runs): the MLP's intermediate tensors (SwiGLU: gate, up, silu(gate), product; GELU MLP:
    input and output) or the attention's score-sized tensors (math kernel), plus a few hidden-wide tensors."""
    h, f = facts.hidden_size, facts.intermediate_size
    if facts.family == "decoder":
        return (4 * f + 4 * h) * ctx.e
    scores = 0.0
    if ctx.attention == "math":  # scores, probabilities, dropout mask, dropped probabilities (+ upcast q, k, v, out)
        scores = 4 * facts.num_heads * ctx.seq_len * kv_tokens * ctx.attention_bytes
        scores += 4 * h * ctx.attention_bytes if ctx.attention_bytes != ctx.e else 0
    return max(2 * f * ctx.e, scores) + 3 * h * ctx.e


def _canonical(lp: LayerPlan) -> LayerPlan:
    """A generic layer's plan in the detailed families' roles, for their formulas: a fused qkv as q, k and v, a
    fused gate_up as gate and up; cross-attention, DeBERTa's position projections and unrecognised linears are
    left out (an approximation the estimate names)."""
    def mapped(roles: frozenset[str]) -> frozenset[str]:
        out = set(roles)
        if "qkv" in out:
            out |= {"q", "k", "v"}
        if "gate_up" in out:
            out |= {"gate", "up"}
        return frozenset(out - {"qkv", "gate_up"})

    return replace(lp, trains_weights=mapped(lp.trains_weights), trains_biases=mapped(lp.trains_biases),
                   lora=mapped(lp.lora), ia3_out=mapped(lp.ia3_out), ia3_in=mapped(lp.ia3_in),
                   adapters=mapped(lp.adapters))


def layers_bytes(facts: ModelFacts, plan: MethodPlan, ctx: ActivationContext, tokens: int,
                 decoder_ctx: ActivationContext | None = None,
                 decoder_tokens: int | None = None) -> tuple[float, float, bool]:
    """(bytes kept by all layers and the embeddings, by the largest single layer, grad flows at the top), for
    `tokens` positions per step (an encoder-decoder's decoder layers: `decoder_tokens`, under `decoder_ctx`).

    A generic architecture takes the formulas of the nearer family (``facts.family``) for each of its layers, with
    each run of a layer shared across depth counted (ALBERT). An encoder-decoder's decoder layers run over the
    target's positions; cross-attention is not among the formulas, so a decoder layer is taken to get a gradient
    from below when its embeddings train or when the encoder's top has one (which its cross-attention passes on)."""
    layer_fn = encoder_layer_bytes if facts.family == "encoder" else decoder_layer_bytes
    per_token, grad = embedding_bytes(facts, plan, ctx)
    total = per_token * tokens
    stacks, calls = plan.tensors.layer_stacks, plan.tensors.layer_calls
    largest = 0.0
    layer_ctx, positions = ctx, tokens
    for index, lp in enumerate(plan.layers):
        if facts.generic:
            lp = _canonical(lp)
            if index < len(stacks) and stacks[index] == "decoder" and (index == 0 or stacks[index - 1] != "decoder"):
                grad = plan.embeddings_train or plan.embedding_norm_trains or grad
                layer_ctx = decoder_ctx or ctx
                positions = tokens if decoder_tokens is None else decoder_tokens
        for _ in range(calls[index] if index < len(calls) else 1):
            kept, grad = layer_fn(facts, lp, plan, layer_ctx, grad)
            total += kept * positions
            largest = max(largest, kept * positions)
    return total, largest, grad
