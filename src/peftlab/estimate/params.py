"""The parameter tensors of a model, named as transformers names them, computed from ModelFacts alone.

A model is a list of :class:`Linear` layers (the matrices methods attach to) and other tensors (embeddings,
norms, biases). Names follow the transformers classes, so that a peft ``target_modules`` pattern selects here
the same layers it would select in the real model (``model.layers.3.self_attn.q_proj``,
``bert.encoder.layer.3.attention.self.query``). Every linear also has a ``role`` (q, k, v, o, gate, up, down)
that the activation and FLOP formulas read.

The task decides the top: ``causal-lm`` ends in ``lm_head`` (vocabulary x hidden, absent when tied to the input
embeddings), ``classification`` in the sequence-classification head of the transformers class (BERT: pooler +
``classifier``; RoBERTa: ``classifier.dense`` + ``classifier.out_proj``; decoders: ``score``, no bias).

Every other architecture (``facts.generic``) has its tensors read off its transformers class for the task,
instantiated on the meta device (meta.py): ``classification`` AutoModelForSequenceClassification, ``causal-lm``
AutoModelForCausalLM, ``seq2seq-lm`` AutoModelForSeq2SeqLM (T5, BART).
"""

from __future__ import annotations

from peftlab.errors import ModelError
from peftlab.estimate.architecture import ModelFacts
from peftlab.estimate.meta import meta_tensors
from peftlab.estimate.tensors import Linear, ModelTensors, Tensor

__all__ = ["Linear", "ModelTensors", "Tensor", "TASKS", "model_tensors"]

TASKS = ("causal-lm", "classification", "seq2seq-lm")


# module-name suffix of each role, per family
ENCODER_ROLES = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
                 "o": "attention.output.dense", "up": "intermediate.dense", "down": "output.dense"}
DECODER_ROLES = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.o_proj",
                 "gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj"}


def model_tensors(facts: ModelFacts, task: str) -> ModelTensors:
    if facts.generic:
        return _generic_tensors(facts, task)
    if task == "seq2seq-lm":
        raise ModelError(f"model type '{facts.model_type}' is not an encoder-decoder: it has no seq2seq-lm head")
    if facts.family == "encoder":
        return _encoder_tensors(facts)
    return _decoder_tensors(facts, task)


def _encoder_tensors(facts: ModelFacts) -> ModelTensors:
    """BertForSequenceClassification / RobertaForSequenceClassification (encoders are estimated as classifiers)."""
    h, f, prefix = facts.hidden_size, facts.intermediate_size, "bert" if facts.model_type == "bert" else "roberta"
    shapes = {"q": (h, h), "k": (h, h), "v": (h, h), "o": (h, h), "up": (h, f), "down": (f, h)}
    linears = [Linear(f"{prefix}.encoder.layer.{i}.{suffix}", *shapes[role], True, i, role)
               for i in range(facts.num_layers) for role, suffix in ENCODER_ROLES.items()]
    norms = []
    for i in range(facts.num_layers):
        for where in ("attention.output.LayerNorm", "output.LayerNorm"):
            norms += [Tensor(f"{prefix}.encoder.layer.{i}.{where}.weight", h, "norm"),
                      Tensor(f"{prefix}.encoder.layer.{i}.{where}.bias", h, "norm_bias")]
    embeddings = [Tensor(f"{prefix}.embeddings.word_embeddings.weight", facts.vocab_size * h, "embedding"),
                  Tensor(f"{prefix}.embeddings.position_embeddings.weight", facts.max_positions * h, "embedding")]
    if facts.type_vocab_size:
        embeddings.append(Tensor(f"{prefix}.embeddings.token_type_embeddings.weight", facts.type_vocab_size * h,
                                 "embedding"))
    norms += [Tensor(f"{prefix}.embeddings.LayerNorm.weight", h, "norm"),
              Tensor(f"{prefix}.embeddings.LayerNorm.bias", h, "norm_bias")]
    if prefix == "bert":  # BERT classifies the pooled [CLS] token: pooler (in the base) + classifier
        linears.append(Linear("bert.pooler.dense", h, h, True, None, "pooler"))
        linears.append(Linear("classifier", h, facts.num_labels, True, None, "head"))
    else:  # RoBERTa's classification head has its own dense layer and no pooler
        linears.append(Linear("classifier.dense", h, h, True, None, "head_dense"))
        linears.append(Linear("classifier.out_proj", h, facts.num_labels, True, None, "head"))
    return ModelTensors(linears, embeddings, norms, prefix)


def _decoder_tensors(facts: ModelFacts, task: str) -> ModelTensors:
    """LlamaForCausalLM / LlamaForSequenceClassification and their Mistral and Qwen2 siblings."""
    h, f = facts.hidden_size, facts.intermediate_size
    shapes = {"q": (h, facts.q_dim, facts.qkv_bias), "k": (h, facts.kv_dim, facts.qkv_bias),
              "v": (h, facts.kv_dim, facts.qkv_bias), "o": (facts.q_dim, h, facts.o_bias),
              "gate": (h, f, facts.mlp_bias), "up": (h, f, facts.mlp_bias), "down": (f, h, facts.mlp_bias)}
    linears = [Linear(f"model.layers.{i}.{suffix}", *shapes[role], i, role)
               for i in range(facts.num_layers) for role, suffix in DECODER_ROLES.items()]
    norms = [Tensor(f"model.layers.{i}.{where}.weight", h, "norm")
             for i in range(facts.num_layers) for where in ("input_layernorm", "post_attention_layernorm")]
    norms.append(Tensor("model.norm.weight", h, "norm"))
    embeddings = [Tensor("model.embed_tokens.weight", facts.vocab_size * h, "embedding")]
    if task == "classification":
        linears.append(Linear("score", h, facts.num_labels, False, None, "head"))
    elif not facts.tie_word_embeddings:  # a tied lm_head is the embedding matrix itself: no tensor of its own
        linears.append(Linear("lm_head", h, facts.vocab_size, False, None, "head"))
    return ModelTensors(linears, embeddings, norms, "model")


def _generic_tensors(facts: ModelFacts, task: str) -> ModelTensors:
    """The tensors of the transformers class for `task`, from the model instantiated on the meta device."""
    if facts.config is None:
        raise ModelError(f"model type '{facts.model_type}' has no config to instantiate; cannot list its tensors")
    tensors, _ = meta_tensors(facts.config, task, facts.num_labels, facts.stack == "encoder-decoder", facts.num_layers,
                              facts.intermediate_size)
    return tensors
