"""The activation side of a step's peak: what the forward keeps (activations.py), the loss, and the transients on
top, without and with gradient checkpointing."""

from __future__ import annotations

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
    the head's tensors, the loss) or while one layer is recomputed and backpropagated."""
    ctx = activation_context(facts, plan, settings)
    tokens = settings.batch_size * (settings.seq_len + plan.prompt_tokens)
    per_token, largest_layer, grad_top = layers_bytes(facts, plan, ctx)
    top = top_bytes(facts, plan, ctx, grad_top) * tokens
    kv_tokens = 1 + plan.prefix_tokens / ctx.seq_len
    kept_loss, transient_loss = loss_bytes(facts, plan, tokens, settings, ctx.e)
    working = backward_working_bytes(facts, plan, tokens, ctx.e)
    copies_all, copies_layer = autocast_copy_bytes(facts, plan, settings.dtype)
    forward_working = forward_working_bytes(facts, ctx, kv_tokens) * tokens
    mask = settings.batch_size * ctx.seq_len ** 2 * kv_tokens * ctx.e if has_attention_mask(plan, settings) else 0
    plain = (per_token * tokens + top + mask + kept_loss + copies_all
             + max(transient_loss, working, forward_working - largest_layer * tokens))
    layer_runs = sum(plan.tensors.layer_calls) if plan.tensors.layer_calls else len(plan.layers)
    inputs = layer_runs * facts.hidden_size * ctx.e * tokens
    checkpointed = inputs + mask + max(top + kept_loss + transient_loss,
                                       largest_layer * tokens + working + copies_layer, forward_working)
    return int(plain), int(min(plain, checkpointed))
