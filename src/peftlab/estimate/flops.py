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


def _layer_input_flows(facts: ModelFacts, lp: LayerPlan, grad_in: bool) -> dict[str, bool]:
    """For each linear role: does a gradient flow into its input (so backward computes the input's gradient)?"""
    def trains(roles: set[str]) -> bool:
        return bool(roles & (lp.trains_weights | lp.trains_biases | lp.lora | lp.ia3_out | lp.ia3_in | lp.adapters))

    flows = {}
    at_qkv = grad_in or lp.trains_norms
    flows.update(q=at_qkv, k=at_qkv, v=at_qkv)
    at_o = at_qkv or trains({"q", "k", "v"}) or lp.prefix
    flows["o"] = at_o
    at_mlp = at_o or trains({"o"}) or lp.trains_norms
    flows.update(gate=at_mlp, up=at_mlp)
    flows["down"] = at_mlp or trains({"gate", "up"})
    flows["_top"] = flows["down"] or trains({"down"})
    return flows


def step_flops(facts: ModelFacts, plan: MethodPlan, batch_size: int, seq_len: int,
               grad_checkpointing: bool = False, attention_kernel: str = "flash") -> StepFlops:
    """FLOPs per real token of one forward + backward step of `plan` at this batch shape."""
    tokens = batch_size * (seq_len + plan.prompt_tokens)  # every position the layers compute, virtual ones too
    real_tokens = batch_size * seq_len
    kv_len = seq_len + plan.prompt_tokens + plan.prefix_tokens
    fwd = bwd_act = bwd_w = 0.0
    grad = plan.embeddings_train or plan.embedding_norm_trains or plan.prompt_tokens > 0
    layers_fwd = 0.0
    for index, lp in enumerate(plan.layers):
        flows = _layer_input_flows(facts, lp, grad)
        layer = [0.0, 0.0, 0.0]
        for lin in (lin for lin in plan.tensors.layer_linears if lin.layer == index):
            terms = [_linear_flops(lin, lin.role in lp.trains_weights, flows[lin.role])]
            if lin.role in lp.lora:
                terms.append(_lora_flops(lin, plan.lora_rank, flows[lin.role]))
                if plan.dora and plan.lora_dropout > 0:
                    terms.append(_dora_flops(lin, flows[lin.role]))
            if lin.role in lp.adapters:
                terms.append(_adapter_flops(lin.out_features, plan.bottleneck, True))
            for term in terms:
                layer = [total + part for total, part in zip(layer, term)]
        # attention: Q·K^T and P·V forward; backward (when a gradient reaches it) 4 products (math) or 5 (flash)
        attention = 4.0 * facts.q_dim * kv_len
        backward = (2.5 if attention_kernel == "flash" else 2.0) * attention
        layer = [layer[0] + attention, layer[1] + (backward if flows["o"] else 0.0), layer[2]]
        fwd, bwd_act, bwd_w = fwd + layer[0] * tokens, bwd_act + layer[1] * tokens, bwd_w + layer[2] * tokens
        layers_fwd += layer[0] * tokens
        grad = flows["_top"]
    head_fwd, head_act, head_w = _head_flops(facts, plan, batch_size, tokens, grad)
    fwd, bwd_act, bwd_w = fwd + head_fwd, bwd_act + head_act, bwd_w + head_w
    per_step = _dora_per_step_flops(plan)
    fwd += per_step
    recompute = layers_fwd if grad_checkpointing else 0.0
    return StepFlops(fwd / real_tokens, bwd_act / real_tokens, bwd_w / real_tokens, recompute / real_tokens)


def _head_flops(facts: ModelFacts, plan: MethodPlan, batch_size: int, tokens: int,
                grad_below: bool) -> tuple[float, float, float]:
    """The head: the LM head or a decoder's score over every position; an encoder's pooler (BERT) or
    classifier.dense (RoBERTa) and its output layer over one position per sequence."""
    if plan.task == "causal-lm":  # a tied LM head is the embedding matrix: the same products
        mm = 2.0 * facts.hidden_size * facts.vocab_size * tokens
        return mm, (mm if grad_below else 0.0), (mm if plan.head_trains else 0.0)
    positions = tokens if facts.family == "decoder" else batch_size
    total = [0.0, 0.0, 0.0]
    grad = grad_below
    for lin in (lin for lin in plan.tensors.linears if lin.layer is None):
        trains = plan.head_trains if lin.role in ("head", "head_dense") else plan.trains_all_weights
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
