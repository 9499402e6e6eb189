"""Fine-tuning methods: one registry; peft's methods as configs, the others in their own small modules."""

from peftlab.methods.base import Method
from peftlab.methods.registry import DEFAULT_METHODS, METHODS, get_method, parse_methods, read_method_config

__all__ = ["DEFAULT_METHODS", "METHODS", "Method", "get_method", "parse_methods", "read_method_config"]
