"""The activation side of a step's peak: what the forward keeps (activations.py), the loss, and the transients on
top, without and with gradient checkpointing."""

from __future__ import annotations

from dataclasses import replace

from peftlab.estimate import memory as mem
from peftlab.estimate.activations import ActivationContext, forward_working_bytes, layers_bytes, top_bytes
from peftlab.estimate.architecture import ModelFacts
from peftlab.estimate.plans import MethodPlan
from peftlab.estimate.settings import EstimateSettings


def activation_context(facts: ModelFacts, plan: MethodPlan, settings: EstimateSettings) -> ActivationContext:
    e = mem.activation_dtype_bytes(settings.dtype)
    adapter = e if settings.dtype == "mixed" else mem.adapter_dtype_bytes(plan, settings.dtype)
    return ActivationContext(e=e, cuda=settings.device == "cuda",
                             attention=settings.attention_for(facts), adapter_bytes=adapter,
                             seq_len=settings.seq_len + plan.prompt_tokens, dropout=settings.dropout,
                             kv_repeated=has_attention_mask(plan, settings))


def has_attention_mask(plan: MethodPlan, settings: EstimateSettings) -> bool:
    """Padding, or prefix tuning's extended mask, puts an explicit mask in front of the attention kernel."""
    return settings.padded or plan.prefix_tokens > 0


def loss_bytes(facts: ModelFacts, plan: MethodPlan, tokens: int, settings: EstimateSettings, e: int) -> tuple[int, int]:
    """(kept, transient) bytes of the LM loss; classification logits are negligible.

    hf (transformers' ForCausalLMLoss): the logits are upcast to fp32 and cross-entropy keeps the fp32
    log-probabilities (4·T·V); at the start of backward their gradient and the logits' gradient exist at once
    (8·T·V more). torchtune (CEWithChunkedOutputLoss, compiled as in its published numbers): the logits are kept
    in the activation dtype and upcast one chunk in eight at a time (about 1.5·T·V in fp32 for a chunk's upcast,
    softmax and gradient)."""
    if plan.task not in ("causal-lm", "seq2seq-lm"):
        return 0, 0
    logits = tokens * facts.vocab_size
    if settings.recipe == "torchtune":
        return e * logits, int(1.5 * logits)
    return 4 * logits, 8 * logits


def backward_working_bytes(facts: ModelFacts, plan: MethodPlan, tokens: int, e: int) -> int:
    """Gradients of activations alive at once while backward goes through a layer (a few hidden- and
    MLP-wide tensors), plus per-layer temporaries: QLoRA's dequantized weight, DoRA's weight norm."""
    working = 2 * tokens * max(facts.intermediate_size, facts.q_dim) * e
    layer_weights = [lin.weight_numel for lin in plan.tensors.layer_linears]
    if plan.quantized_base:
        working += max(layer_weights) * e
    if plan.dora:
        working += 2 * max(layer_weights) * 4
    return working


def autocast_copy_bytes(facts: ModelFacts, plan: MethodPlan, dtype: str) -> tuple[int, int]:
    """(all layers, one layer): under autocast ("mixed") each linear keeps the bf16 copy of its fp32 weight that
    its input's gradient needs, from forward until its backward; a frozen-below linear probe keeps none."""
    if dtype != "mixed" or not any(lp.trains_anything for lp in plan.layers) and not plan.embeddings_train:
        return 0, 0
    layer_weights = sum(lin.weight_numel for lin in plan.tensors.layer_linears)
    return 2 * layer_weights, 2 * layer_weights // max(1, len(plan.layers))


def activation_bytes(facts: ModelFacts, plan: MethodPlan, settings: EstimateSettings) -> tuple[int, int]:
    """(without, with gradient checkpointing) activation memory at its peak.

    Without checkpointing the peak is at the start of backward: everything the forward kept, plus the loss's
    gradients (or, if larger, the transients of one layer's backward or of a frozen layer's forward). With
    checkpointing each layer keeps only its input; the peak is either at the start of backward (layer inputs,
    the head's tensors, the loss) or while one layer is recomputed and backpropagated. An encoder-decoder's
    decoder layers, the head and the LM loss are over the target's positions (``settings.decoder_len``)."""
    ctx = activation_context(facts, plan, settings)
    tokens = settings.batch_size * (settings.seq_len + plan.prompt_tokens)
    stacks = plan.tensors.layer_stacks
    seq2seq = "decoder" in stacks and "encoder" in stacks
    decoder_ctx = replace(ctx, seq_len=settings.decoder_len) if seq2seq and plan.task == "seq2seq-lm" else ctx
    decoder_tokens = settings.batch_size * decoder_ctx.seq_len if seq2seq else tokens
    head_tokens = decoder_tokens if stacks and stacks[-1] == "decoder" else tokens
    kept_layers, largest_layer, grad_top = layers_bytes(facts, plan, ctx, tokens, decoder_ctx, decoder_tokens)
    top = top_bytes(facts, plan, ctx, grad_top) * head_tokens
    kept_loss, transient_loss = loss_bytes(facts, plan, head_tokens, settings, ctx.e)
    busiest = max(tokens, decoder_tokens)
    working = backward_working_bytes(facts, plan, busiest, ctx.e)
    copies_all, copies_layer = autocast_copy_bytes(facts, plan, settings.dtype)
    forward_working = max(forward_working_bytes(facts, ctx, 1 + plan.prefix_tokens / ctx.seq_len) * tokens,
                          forward_working_bytes(facts, decoder_ctx, 1 + plan.prefix_tokens / decoder_ctx.seq_len)
                          * decoder_tokens if seq2seq else 0.0)
    mask = 0
    if has_attention_mask(plan, settings):  # one (query x key) mask per sequence and stack
        prefix_enc = plan.prefix_tokens if any(lp.prefix for lp, st in zip(plan.layers, stacks) if st != "decoder") \
            or not seq2seq else 0
        mask = settings.batch_size * ctx.seq_len * (ctx.seq_len + prefix_enc) * ctx.e
        if seq2seq:
            mask += settings.batch_size * decoder_ctx.seq_len * (decoder_ctx.seq_len + plan.prefix_tokens) * ctx.e
    plain = (kept_layers + top + mask + kept_loss + copies_all
             + max(transient_loss, working, forward_working - largest_layer))
    calls = plan.tensors.layer_calls or tuple([1] * len(plan.layers))
    inputs = sum(runs * facts.hidden_size * ctx.e * (decoder_tokens if index < len(stacks) and stacks[index] ==
                                                     "decoder" else tokens) for index, runs in enumerate(calls))
    checkpointed = inputs + mask + max(top + kept_loss + transient_loss,
                                       largest_layer + working + copies_layer, forward_working)
    return int(plain), int(min(plain, checkpointed))
