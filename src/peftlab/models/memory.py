"""Memory options for large models: gradient checkpointing, bf16 autocast, 4-bit/8-bit base loading (QLoRA).

- gradient checkpointing: transformers' ``gradient_checkpointing_enable`` (non-reentrant, so a frozen embedding
  layer needs no ``enable_input_require_grads`` trick); the KV cache is switched off while training;
- bf16: accelerate's ``mixed_precision="bf16"`` (autocast; on CPU where torch supports bf16 autocast, on CUDA
  where the GPU supports bf16); weights and optimizer states stay fp32;
- 4-bit / 8-bit: the base is loaded through bitsandbytes (``BitsAndBytesConfig``, NF4 with bf16 compute for
  4-bit) and prepared with peft's ``prepare_model_for_kbit_training``. bitsandbytes quantized training needs CUDA,
  so these are refused on a machine without it, before anything is loaded. A method that trains the base's own
  weights (``Method.trains_base_weights``: full, head, bitfit) is refused on a quantized base when it is prepared.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from peft import prepare_model_for_kbit_training
from transformers import BitsAndBytesConfig

from peftlab.errors import ConfigError, MethodError

if TYPE_CHECKING:  # methods/ is on this floor too: the method is read, never imported
    from peftlab.methods.base import Method


@dataclass(frozen=True)
class MemoryOptions:
    gradient_checkpointing: bool = False
    bf16: bool = False
    load_in_4bit: bool = False
    load_in_8bit: bool = False

    @property
    def quantized(self) -> bool:
        return self.load_in_4bit or self.load_in_8bit

    def check(self) -> None:
        """ConfigError (one line) for options this machine or these libraries cannot honour."""
        if self.load_in_4bit and self.load_in_8bit:
            raise ConfigError("--load-in-4bit and --load-in-8bit exclude each other; pick one")
        if self.quantized:
            flag = "--load-in-4bit" if self.load_in_4bit else "--load-in-8bit"
            if not torch.cuda.is_available():
                raise ConfigError(f"{flag} (QLoRA-style quantized base) needs a CUDA GPU with bitsandbytes; this "
                                  "machine has no CUDA device. Drop the flag (train in fp32, or with --bf16)")
            if importlib.util.find_spec("bitsandbytes") is None:
                raise ConfigError(f"{flag} needs the bitsandbytes package: pip install bitsandbytes")
        if self.bf16:
            if torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
                raise ConfigError("--bf16: this GPU does not support bfloat16; drop the flag")

    def mixed_precision(self) -> str:
        return "bf16" if self.bf16 else "no"

    def accelerator(self, cpu: bool = False):
        """An Accelerator with this precision (``cpu``: on the CPU even where CUDA is present). accelerate keeps one process-wide state and refuses a second
        precision in the same process (a Python session running two studies): its state is reset first then."""
        if AcceleratorState._shared_state and AcceleratorState().mixed_precision != self.mixed_precision():
            AcceleratorState._reset_state()
        return Accelerator(cpu=cpu, mixed_precision=self.mixed_precision())

    def load_kwargs(self) -> dict:
        """Extra from_pretrained arguments: the bitsandbytes quantization config when asked for."""
        if not self.quantized:
            return {}
        if self.load_in_4bit:
            config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                        bnb_4bit_compute_dtype=torch.bfloat16)
        else:
            config = BitsAndBytesConfig(load_in_8bit=True)
        return {"quantization_config": config, "device_map": {"": torch.cuda.current_device()}}

    def prepare(self, model, method: Method):
        """The loaded base, ready for `method`: quantized bases prepared by peft, checkpointing switched on."""
        if self.quantized:
            if method.trains_base_weights:
                raise MethodError(f"method '{method.name}' trains the base's own weights, which a 4/8-bit base "
                                  "cannot; use an adapter method (lora, dora, ia3, prompt, prefix) with quantization")
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=self.gradient_checkpointing)
        if self.gradient_checkpointing:
            if not getattr(model, "supports_gradient_checkpointing", False):
                raise MethodError(f"--gradient-checkpointing: {type(model).__name__} does not support it")
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.config.use_cache = False
        return model

    def describe(self) -> dict:
        return {"gradient_checkpointing": self.gradient_checkpointing, "bf16": self.bf16,
                "load_in_4bit": self.load_in_4bit, "load_in_8bit": self.load_in_8bit}
