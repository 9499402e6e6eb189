"""The methods HF peft implements, as peft configs with our defaults. Nothing here re-implements a method.

Defaults are what a careful practitioner would start from on a small-to-mid model (sources in docs/METHODS.md):
LoRA/DoRA r=8, alpha=16 on every linear layer; IA3 on peft's per-architecture targets; prompt tuning with
20 virtual tokens initialised from sampled vocabulary embeddings; prefix tuning with 20 virtual tokens.
The task head is always in ``modules_to_save``: it trains and is saved with the adapter.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peft import IA3Config, LoraConfig, PeftModel, PrefixTuningConfig, PromptTuningConfig, TaskType, get_peft_model
from peft.utils import SAFETENSORS_WEIGHTS_NAME, WEIGHTS_NAME
from torch import nn
from transformers.models.auto.modeling_auto import MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES

from peftlab.errors import ModelError
from peftlab.methods.base import Method, at_least, between, positive, settings_object
from peftlab.models import head_module_names


def require_safetensors_adapter(directory: str | Path) -> Path:
    """``directory``, checked to hold peft's ``adapter_model.safetensors``: without it peft would fall back to a
    pickled ``adapter_model.bin``, and peftlab loads no pickle (it saves adapters as safetensors)."""
    directory = Path(directory)
    if not (directory / SAFETENSORS_WEIGHTS_NAME).is_file():
        raise ModelError(f"{directory} has no {SAFETENSORS_WEIGHTS_NAME}: peftlab loads adapters saved as safetensors "
                         f"only, never a pickled {WEIGHTS_NAME}")
    return directory


def peft_task_type(model: nn.Module) -> TaskType:
    """The peft task type matching the model's head."""
    name = type(model).__name__
    if name.endswith("ForSequenceClassification"):
        return TaskType.SEQ_CLS
    if name.endswith("ForCausalLM"):
        return TaskType.CAUSAL_LM
    if name in MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES.values():  # T5/BART...ForConditionalGeneration, MarianMTModel
        return TaskType.SEQ_2_SEQ_LM
    return TaskType.FEATURE_EXTRACTION


@dataclass
class PeftLibraryMethod(Method):
    """A method whose implementation is HF peft's; we only choose the config (and name the estimate's plan).

    peft trains a classifier's head as a copy in ``modules_to_save`` and keeps the parameters it adds in fp32 on a
    16-bit base (``autocast_adapter_dtype``): both are true of every method here.
    """

    head_copy: bool = True
    added_parameters_fp32: bool = True

    def default_settings(self, model: nn.Module) -> dict[str, Any]:
        settings = dict(self.defaults)
        settings["task_type"] = peft_task_type(model)
        heads = head_module_names(model)
        if heads and settings["task_type"] == TaskType.SEQ_CLS:
            settings["modules_to_save"] = heads
        return settings

    def apply(self, model: nn.Module, settings: dict[str, Any]) -> nn.Module:
        return get_peft_model(model, settings_object(self, settings))

    def save(self, model: nn.Module, directory: Path) -> None:
        model.save_pretrained(directory, safe_serialization=True)

    def load(self, base_model: nn.Module, directory: Path) -> nn.Module:
        return PeftModel.from_pretrained(base_model, str(require_safetensors_adapter(directory)))

    def merge(self, model: nn.Module) -> nn.Module:
        if not self.mergeable:
            return super().merge(model)
        return model.merge_and_unload()  # peft folds the update in and unwraps the trained head


LORA_UPDATE = {"lora_A": 0.0, "lora_B": 0.0}  # DoRA's lora_magnitude_vector is a norm, not an update

# lora_dropout 0 (peft's own default): on the default study 80.0% vs 80.1% test accuracy with 0.1, and LoRA's step
# 0.87x instead of 1.09x full fine-tuning's, peak 0.75x instead of 1.01x (docs/PERFORMANCE.md).
LORA_DEFAULTS = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "target_modules": "all-linear"}
LORA_RANGES = {"r": at_least(1), "lora_alpha": positive(float), "lora_dropout": between(0, 1)}
VIRTUAL_TOKEN_RANGES = {"num_virtual_tokens": at_least(1)}

LORA = PeftLibraryMethod(
    name="lora",
    summary="LoRA: low-rank update B·A on every linear layer (peft)",
    learning_rate=5e-4,
    settings_class=LoraConfig,
    defaults=dict(LORA_DEFAULTS),
    mergeable=True,
    update_tensors=dict(LORA_UPDATE),
    estimate_plan="lora",
    setting_ranges=dict(LORA_RANGES),
)

DORA = PeftLibraryMethod(
    name="dora",
    summary="DoRA: LoRA with a learned per-column magnitude (peft, use_dora)",
    learning_rate=5e-4,
    settings_class=LoraConfig,
    defaults={**LORA_DEFAULTS, "use_dora": True},
    mergeable=True,
    update_tensors=dict(LORA_UPDATE),
    estimate_plan="lora",  # the LoRA plan reads use_dora from the settings
    setting_ranges=dict(LORA_RANGES),
)

IA3 = PeftLibraryMethod(
    name="ia3",
    summary="IA3: learned rescaling vectors on keys, values and FFN activations (peft)",
    learning_rate=5e-3,
    settings_class=IA3Config,
    defaults={},
    mergeable=True,
    update_tensors={"ia3_l": 1.0},  # rescaling vectors start at 1
    estimate_plan="ia3",
)

PROMPT = PeftLibraryMethod(
    name="prompt",
    summary="prompt tuning: 20 trainable soft-prompt embeddings before the input (peft)",
    learning_rate=3e-2,
    settings_class=PromptTuningConfig,
    defaults={"num_virtual_tokens": 20, "prompt_tuning_init": "SAMPLE_VOCAB"},
    estimate_plan="prompt",
    setting_ranges=dict(VIRTUAL_TOKEN_RANGES),
    merge_blocker="prompt tuning prepends learned virtual-token embeddings to every input; they are extra "
    "inputs, not a change of any weight, so there is nothing to fold them into",
)

PREFIX = PeftLibraryMethod(
    name="prefix",
    summary="prefix tuning: 20 trainable key/value prefixes in every layer (peft)",
    learning_rate=1e-2,
    settings_class=PrefixTuningConfig,
    defaults={"num_virtual_tokens": 20},
    estimate_plan="prefix",
    setting_ranges=dict(VIRTUAL_TOKEN_RANGES),
    merge_blocker="prefix tuning adds learned key/value prefixes to the attention of every layer; they are "
    "extra tokens, not a change of any weight, so they cannot be folded into the weights",
)
