"""Model loading: offline aliases, HF ids and local folders."""

from peftlab.models.aliases import MODEL_ALIASES
from peftlab.models.load import (
    ModelRef,
    check_weights,
    head_module_names,
    new_head_names,
    is_encoder_decoder,
    load_causal_lm,
    load_classifier,
    load_regressor,
    load_config,
    load_seq2seq_lm,
    load_tokenizer,
    max_positions,
    resolve_model,
)

__all__ = [
    "MODEL_ALIASES",
    "ModelRef",
    "check_weights",
    "head_module_names",
    "new_head_names",
    "is_encoder_decoder",
    "load_causal_lm",
    "load_classifier",
    "load_regressor",
    "load_config",
    "load_seq2seq_lm",
    "load_tokenizer",
    "max_positions",
    "resolve_model",
]
