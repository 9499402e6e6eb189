"""Fine-tuning methods: one registry; peft's methods as configs, the others in their own small modules."""

from peftlab.methods.base import ESTIMATE_PLANS, TRAINING_KEYS, Method
from peftlab.methods.registry import (
    DEFAULT_METHODS,
    METHODS,
    PEFTLAB_METHODS,
    get_method,
    parse_methods,
    read_method_config,
    register_method,
    registered_method,
    split_variant,
    sweep_variants,
    trains,
    unregister_method,
)

__all__ = [
    "DEFAULT_METHODS",
    "ESTIMATE_PLANS",
    "METHODS",
    "PEFTLAB_METHODS",
    "TRAINING_KEYS",
    "Method",
    "get_method",
    "parse_methods",
    "read_method_config",
    "register_method",
    "registered_method",
    "split_variant",
    "sweep_variants",
    "trains",
    "unregister_method",
]
