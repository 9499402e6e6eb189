"""FLOPs of a training step, counted the way ``torch.utils.flop_counter.FlopCounterMode`` counts them: 2·m·n·k
per matrix product (linear layers, LoRA and adapter factors, attention's Q·K^T and P·V), nothing for
elementwise ops, norms, softmax or embedding lookups.

Per token and linear layer of shape (in, out): forward 2·in·out; backward 2·in·out for the input's gradient
when a gradient must flow below it, and 2·in·out for the weight's gradient when the weight trains. So full
fine-tuning costs ~6N per token and a frozen base ~4N (Kaplan et al. 2020's 6N rule); a linear probe only ~2N.
Attention adds 4·a·d_head·s_kv per token and layer forward (Q·K^T and P·V over all s_kv keys; causal kernels
skip about half of it, but FlopCounterMode and most published counts do not); backward, the math kernel's four
products cost twice that, the flash kernel's five (it recomputes the scores first) 2.5 times.

Per-step terms (DoRA recomputes B·A for every layer each step) are spread over the step's tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

from peftlab.estimate.architecture import ModelFacts
from peftlab.estimate.params import Linear
from peftlab.estimate.plans import LayerPlan, MethodPlan
from peftlab.estimate.tensors import ATTENTION_IN, CROSS_KV, CROSS_Q, HEAD_ROLES, MLP_IN


@dataclass(frozen=True)
class StepFlops:
    """FLOPs per real (non-virtual) token of one training step."""

    forward: float
    backward_activations: float  # gradients with respect to activations (inputs)
    backward_weights: float  # gradients with respect to trainable weights
    recompute: float  # the forward again, layer by layer, under gradient checkpointing

    @property
    def total(self) -> float:
        return self.forward + self.backward_activations + self.backward_weights + self.recompute


def _linear_flops(lin: Linear, trains: bool, grad_in: bool) -> tuple[float, float, float]:
    """(forward, backward to the input, backward to the weight) per token for one base linear layer."""
    mm = 2.0 * lin.weight_numel
    return mm, (mm if grad_in else 0.0), (mm if trains else 0.0)


def _lora_flops(lin: Linear, rank: int, grad_in: bool) -> tuple[float, float, float]:
    """LoRA's x·A^T·B^T beside the linear: both factors train; B's input gradient is always needed to reach A."""
    a, b = 2.0 * rank * lin.in_features, 2.0 * rank * lin.out_features
    return a + b, b + (a if grad_in else 0.0), a + b


def _dora_flops(lin: Linear, grad_in: bool) -> tuple[float, float, float]:
    """With LoRA dropout on, peft's DoRA recomputes the base product on the dropped input to rescale it by
    magnitude / ||W + B·A||: once more forward, and its input gradient backward. Without dropout it reuses the base
    layer's result (peft passes ``base_result``), so this term is not added then."""
    mm = 2.0 * lin.weight_numel
    return mm, (mm if grad_in else 0.0), 0.0


def _adapter_flops(width: int, bottleneck: int, grad_in: bool) -> tuple[float, float, float]:
    """A bottleneck adapter's down (width -> b) and up (b -> width) projections, both trained."""
    mm = 2.0 * width * bottleneck
    return 2 * mm, mm + (mm if grad_in else 0.0), 2 * mm


def _layer_input_flows(lp: LayerPlan, grad_in: bool, cross_grad: bool = False) -> dict[str, bool]:
    """For each linear role: does a gradient flow into its input (so backward computes the input's gradient)?

    The stages of a layer in order: the attention's input projections (q, k, v or a fused qkv), its output (o),
    an encoder-decoder's cross-attention (its query from below, its keys and values from the encoder's output,
    whose gradient is `cross_grad`), the MLP's input projections (gate, up or a fused gate_up) and its output
    (down). ``_top``: does a gradient flow out of the layer's top?"""
    def trains(roles) -> bool:
        return bool(set(roles) & (lp.trains_weights | lp.trains_biases | lp.lora | lp.ia3_out | lp.ia3_in
                                  | lp.adapters))

    flows = {}
    at_qkv = grad_in or lp.trains_norms
    flows.update(dict.fromkeys(ATTENTION_IN, at_qkv))
    at_o = at_qkv or trains(ATTENTION_IN) or lp.prefix
    flows["o"] = at_o
    at_cross = at_o or trains({"o"}) or lp.trains_norms
    flows["xq"] = at_cross
    flows.update(dict.fromkeys(CROSS_KV, cross_grad))
    flows["xo"] = at_cross or trains(CROSS_Q | CROSS_KV) or cross_grad
    at_mlp = flows["xo"] or trains({"xo"}) or lp.trains_norms
    flows.update(dict.fromkeys(MLP_IN | {"other"}, at_mlp))
    flows["down"] = at_mlp or trains(MLP_IN | {"other"})
    flows["_top"] = flows["down"] or trains({"down"})
    return flows


def _linear_terms(lin: Linear, lp: LayerPlan, plan: MethodPlan, grad_in: bool) -> list[float]:
    """(forward, backward to the input, backward to the weights) per position of one linear, its LoRA branch,
    DoRA's extra product and its bottleneck adapter included."""
    terms = [_linear_flops(lin, lin.role in lp.trains_weights, grad_in)]
    if lin.role in lp.lora:
        terms.append(_lora_flops(lin, plan.lora_rank, grad_in))
        if plan.dora and plan.lora_dropout > 0:
            terms.append(_dora_flops(lin, grad_in))
    if lin.role in lp.adapters:
        terms.append(_adapter_flops(lin.out_features, plan.bottleneck, True))
    return [sum(parts) for parts in zip(*terms)]


def step_flops(facts: ModelFacts, plan: MethodPlan, batch_size: int, seq_len: int,
               grad_checkpointing: bool = False, attention_kernel: str = "flash",
               target_len: int | None = None) -> StepFlops:
    """FLOPs per real input token of one forward + backward step of `plan` at this batch shape.

    An encoder-decoder runs its encoder over the input (seq_len, after prompt tuning's virtual tokens) and its
    decoder over the target (target_len; None: as long as the input); the decoder's self-attention attends the
    target (and prefix tuning's virtual keys, which join the decoder only), its cross-attention the encoder's
    positions, and the LM head reads every target position. The decoder's first layer gets a gradient from below
    only when the embeddings train (prompt tuning's virtual tokens enter the encoder), its cross-attention keys and
    values from the encoder's top."""
    target = seq_len if target_len is None else target_len
    tokens = batch_size * (seq_len + plan.prompt_tokens)  # every position the encoder computes, virtual ones too
    decoder_tokens = batch_size * target
    real_tokens = batch_size * seq_len
    encoder_len = seq_len + plan.prompt_tokens
    backward_factor = 2.5 if attention_kernel == "flash" else 2.0
    fwd = bwd_act = bwd_w = 0.0
    embeddings_grad = plan.embeddings_train or plan.embedding_norm_trains
    grad = embeddings_grad or plan.prompt_tokens > 0
    for lin in (lin for lin in plan.tensors.linears if lin.role == "embed_proj"):  # ALBERT's embedding projection
        trains = plan.trains_all_weights
        lora = plan.lora_rank > 0 and any(name.startswith(lin.name + ".lora_") for name, _ in plan.added)
        terms = [_linear_flops(lin, trains, grad)] + ([_lora_flops(lin, plan.lora_rank, grad)] if lora else [])
        for f, a, w in terms:
            fwd, bwd_act, bwd_w = fwd + f * tokens, bwd_act + a * tokens, bwd_w + w * tokens
        grad = grad or trains or lora
    stacks, calls = plan.tensors.layer_stacks, plan.tensors.layer_calls
    encoder_top = False
    layers_fwd = 0.0
    for index, lp in enumerate(plan.layers):
        stack = stacks[index] if index < len(stacks) else ""
        decoder = stack == "decoder"
        if decoder and (index == 0 or stacks[index - 1] != "decoder"):  # the decoder's first layer
            encoder_top, grad = grad, embeddings_grad
        positions = decoder_tokens if decoder else tokens
        layer_kv = (target if decoder else encoder_len) + (plan.prefix_tokens if lp.prefix else 0)
        linears = [lin for lin in plan.tensors.layer_linears if lin.layer == index]
        has_cross = any(lin.role in CROSS_Q for lin in linears)
        for _ in range(calls[index] if index < len(calls) else 1):
            flows = _layer_input_flows(lp, grad, encoder_top if has_cross else False)
            layer = [0.0, 0.0, 0.0]
            per_step = [0.0, 0.0, 0.0]
            for lin in linears:
                if lin.role == "pos":  # DeBERTa: the relative-position embeddings, projected once per step
                    terms = _linear_terms(lin, lp, plan, plan.trains_all_weights)
                    per_step = [total + part * facts.relative_positions for total, part in zip(per_step, terms)]
                    continue
                if lin.role in CROSS_KV:  # cross-attention keys and values: over the encoder's positions
                    terms = _linear_terms(lin, lp, plan, flows[lin.role])
                    per_step = [total + part * tokens for total, part in zip(per_step, terms)]
                    continue
                terms = _linear_terms(lin, lp, plan, flows.get(lin.role, flows["down"]))
                layer = [total + part for total, part in zip(layer, terms)]
            # attention: Q·K^T and P·V forward; backward (when a gradient reaches it) 4 products (math) or 5 (flash)
            attention = 4.0 * facts.q_dim * layer_kv
            layer = [layer[0] + attention, layer[1] + (backward_factor * attention if flows["o"] else 0.0), layer[2]]
            if facts.relative_terms:  # DeBERTa's c2p / p2c scores: a query (key) against the projected positions;
                # backward the positions' side too only when their projections train
                relative = 2.0 * facts.q_dim * facts.relative_positions * facts.relative_terms
                pos_train = any(lin.role == "pos" and (lin.role in lp.trains_weights or lin.role in lp.lora)
                                for lin in linears)
                layer = [layer[0] + relative, layer[1] + ((2.0 if pos_train else 1.0) * relative if flows["o"]
                                                          else 0.0), layer[2]]
            if has_cross:  # cross-attention over the encoder's positions
                cross = 4.0 * facts.q_dim * encoder_len
                layer = [layer[0] + cross, layer[1] + (backward_factor * cross if flows["xo"] else 0.0), layer[2]]
            step = [part * positions + extra for part, extra in zip(layer, per_step)]
            fwd, bwd_act, bwd_w = fwd + step[0], bwd_act + step[1], bwd_w + step[2]
            layers_fwd += step[0]
            grad = flows["_top"]
    head_fwd, head_act, head_w = _head_flops(facts, plan, batch_size, decoder_tokens if stacks and stacks[-1] ==
                                             "decoder" else tokens, grad)
    fwd, bwd_act, bwd_w = fwd + head_fwd, bwd_act + head_act, bwd_w + head_w
    per_step = _dora_per_step_flops(plan)
    fwd += per_step
    recompute = layers_fwd if grad_checkpointing else 0.0
    return StepFlops(fwd / real_tokens, bwd_act / real_tokens, bwd_w / real_tokens, recompute / real_tokens)


def _head_flops(facts: ModelFacts, plan: MethodPlan, batch_size: int, tokens: int,
                grad_below: bool) -> tuple[float, float, float]:
    """The head: the LM head or a decoder's score over every position; an encoder's pooler (BERT) or
    classifier.dense (RoBERTa) and its output layer over one position per sequence (an encoder-decoder's
    classifier reads one position too)."""
    if plan.task in ("causal-lm", "seq2seq-lm"):  # a tied LM head is the embedding matrix: the same products
        mm = 2.0 * facts.hidden_size * facts.vocab_size * tokens
        return mm, (mm if grad_below else 0.0), (mm if plan.head_trains else 0.0)
    positions = tokens if facts.stack == "decoder" else batch_size
    total = [0.0, 0.0, 0.0]
    grad = grad_below
    for lin in (lin for lin in plan.tensors.linears if lin.layer is None and lin.role != "embed_proj"):
        trains = plan.head_trains if lin.role in HEAD_ROLES else plan.trains_all_weights
        terms = [_linear_flops(lin, trains, grad)]
        lora = lin.role == "pooler" and plan.pooler_trains and plan.lora_rank > 0
        if lora:
            terms.append(_lora_flops(lin, plan.lora_rank, grad))
        for term in terms:
            total = [t + part * positions for t, part in zip(total, term)]
        grad = grad or trains or lora
    return total[0], total[1], total[2]


def _dora_per_step_flops(plan: MethodPlan) -> float:
    """DoRA forms B·A for each wrapped linear on every forward, to normalise the weight; peft passes an identity
    matrix through lora_A then lora_B: 2·r·in·in + 2·r·in·out each."""
    if not plan.dora:
        return 0.0
    return sum(2.0 * plan.lora_rank * lin.in_features * (lin.in_features + lin.out_features)
               for lin in plan.tensors.layer_linears if lin.role in plan.layers[lin.layer].lora)
