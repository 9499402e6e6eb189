"""The methods HF peft implements, as peft configs with our defaults. Nothing here re-implements a method.

Defaults are what a careful practitioner would start from on a small-to-mid model (sources in docs/METHODS.md):
LoRA/DoRA r=8, alpha=16 on every linear layer; IA3 on peft's per-architecture targets, or on the keys, values and
feed-forward outputs found from the module structure where peft has none; prompt tuning with
20 virtual tokens initialised from sampled vocabulary embeddings; prefix tuning with 20 virtual tokens.
The task head is always in ``modules_to_save``: it trains and is saved with the adapter.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peft import IA3Config, LoraConfig, PeftModel, PrefixTuningConfig, PromptTuningConfig, TaskType, get_peft_model
from peft.utils import SAFETENSORS_WEIGHTS_NAME, WEIGHTS_NAME, ModulesToSaveWrapper
from peft.utils.constants import TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING as PEFT_IA3_TARGETS
from torch import nn
from transformers import PreTrainedModel
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
    MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES,
    MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
)

from peftlab.errors import ModelError
from peftlab.methods.base import Method, at_least, between, positive, settings_object
from peftlab.methods.targets import attach_points, projection_names, suffixes
from peftlab.models import head_module_names


def require_safetensors_adapter(directory: str | Path) -> Path:
    """``directory``, checked to hold peft's ``adapter_model.safetensors``: without it peft would fall back to a
    pickled ``adapter_model.bin``, and peftlab loads no pickle (it saves adapters as safetensors)."""
    directory = Path(directory)
    if not (directory / SAFETENSORS_WEIGHTS_NAME).is_file():
        raise ModelError(f"{directory} has no {SAFETENSORS_WEIGHTS_NAME}: peftlab loads adapters saved as safetensors "
                         f"only, never a pickled {WEIGHTS_NAME}")
    return directory


def _class_names(mapping: dict) -> frozenset[str]:
    names = set()
    for value in mapping.values():
        names.update(value if isinstance(value, (list, tuple)) else [value])
    return frozenset(names)


# the classes transformers' Auto classes build, by head: GPT-2's causal LM is GPT2LMHeadModel, not ...ForCausalLM
CAUSAL_LM_CLASSES = _class_names(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)
SEQ_CLS_CLASSES = _class_names(MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES)
SEQ_2_SEQ_CLASSES = _class_names(MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES)  # T5/BART ...ForConditionalGeneration


def peft_task_type(model: nn.Module) -> TaskType:
    """The peft task type matching the model's head, from the class transformers' Auto classes map it to."""
    name = type(model).__name__
    if name in SEQ_CLS_CLASSES or name.endswith("ForSequenceClassification"):
        return TaskType.SEQ_CLS
    if name in SEQ_2_SEQ_CLASSES:
        return TaskType.SEQ_2_SEQ_LM
    if name in CAUSAL_LM_CLASSES or name.endswith("ForCausalLM"):
        return TaskType.CAUSAL_LM
    return TaskType.FEATURE_EXTRACTION


@dataclass
class PeftLibraryMethod(Method):
    """A method whose implementation is HF peft's; we only choose the config (and name the estimate's plan).

    peft trains a classifier's head as a copy in ``modules_to_save`` and keeps the parameters it adds in fp32 on a
    16-bit base (``autocast_adapter_dtype``): both are true of every method here.
    """

    head_copy: bool = True
    added_parameters_fp32: bool = True
    source: str = "peft"

    def default_settings(self, model: nn.Module) -> dict[str, Any]:
        settings = dict(self.defaults)
        settings["task_type"] = peft_task_type(model)
        heads = head_module_names(model)
        if heads and settings["task_type"] == TaskType.SEQ_CLS:
            settings["modules_to_save"] = heads
        return settings

    def apply(self, model: nn.Module, settings: dict[str, Any]) -> nn.Module:
        self.check_applies(model, settings)
        return get_peft_model(model, settings_object(self, settings))

    def save(self, model: nn.Module, directory: Path) -> None:
        model.save_pretrained(directory, safe_serialization=True)

    def load(self, base_model: nn.Module, directory: Path) -> nn.Module:
        return PeftModel.from_pretrained(base_model, str(require_safetensors_adapter(directory)))

    def merge(self, model: nn.Module) -> nn.Module:
        if not self.mergeable:
            return super().merge(model)
        _unwrap_trained_heads(model)
        return model.merge_and_unload()  # peft folds the update in and unwraps the trained head


def _unwrap_trained_heads(model: nn.Module) -> None:
    """Put each trained head copy (peft's ``modules_to_save``) in place of its wrapper, before merging: peft 0.21's
    LoRA merge does this itself, its IA3 merge does not, and fails on a head that is not a single layer (T5's,
    BART's and RoBERTa's classification heads: "'T5ClassificationHead' object has no attribute 'weight'")."""
    for name, module in list(model.named_modules()):
        if isinstance(module, ModulesToSaveWrapper) and module.active_adapters:
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, module.modules_to_save[module.active_adapters[0]])


def _model_type(model: nn.Module) -> str:
    return getattr(getattr(model, "config", None), "model_type", None) or type(model).__name__


@dataclass
class IA3Method(PeftLibraryMethod):
    """IA3 on peft's targets for the model type where peft has them (its per-architecture mapping); elsewhere on the
    attention keys and values and the feed-forward output found from the module structure
    (:mod:`peftlab.methods.targets`), the feed-forward output rescaled on its input as peft does."""

    def default_settings(self, model: nn.Module) -> dict[str, Any]:
        settings = super().default_settings(model)
        if _model_type(model) in PEFT_IA3_TARGETS:
            return settings
        points = attach_points(model, head_module_names(model))
        targets, feedforward = points.keys_values, points.ffn_outputs
        if targets and feedforward:
            names = projection_names(model)
            settings["target_modules"] = suffixes(targets + feedforward, names)
            settings["feedforward_modules"] = suffixes(feedforward, names)
        return settings

    def refusal(self, model: nn.Module, settings: dict[str, Any]) -> str | None:
        if settings.get("target_modules") or _model_type(model) in PEFT_IA3_TARGETS:
            return None
        return ("peft has no IA3 targets for model type '{}', and no attention key/value and feed-forward output "
                "projections were found in its blocks; set target_modules and feedforward_modules in "
                "--method-config").format(_model_type(model))


@dataclass
class PromptLearningMethod(PeftLibraryMethod):
    """Prompt and prefix tuning: peft reads the embedding width, layers and heads from config keys some
    architectures name otherwise (DistilBERT's ``dim``, ``n_layers``, ``n_heads``); they are filled in from the model
    where peft would not find them, and a soft prompt is as wide as the input embeddings (ALBERT's are narrower
    than its hidden size). Refused where they cannot run: prefix tuning needs attention that takes a
    key/value cache; neither runs on an encoder-decoder's sequence-classification head (transformers' classes take
    no input embeddings there)."""

    needs_cache: bool = False

    def default_settings(self, model: nn.Module) -> dict[str, Any]:
        settings = super().default_settings(model)
        config = getattr(model, "config", None)
        if config is None:
            return settings
        text = config.get_text_config() if hasattr(config, "get_text_config") else config
        keys = text.to_dict()
        width = model.get_input_embeddings().embedding_dim
        peft_width = next((keys[key] for key in ("hidden_size", "n_embd", "d_model") if key in keys), None)
        if peft_width is None or (not self.needs_cache and peft_width != width):
            # prompt tuning's virtual tokens are input embeddings: ALBERT's are narrower than its hidden size
            settings.setdefault("token_dim", width if not self.needs_cache else getattr(text, "hidden_size", width))
        if not {"num_hidden_layers", "num_layers", "n_layer"} & keys.keys() and not hasattr(text, "num_hidden_layers"):
            settings.setdefault("num_layers", len(attach_points(model, head_module_names(model)).blocks))
        heads = getattr(text, "num_attention_heads", None)
        if not {"num_attention_heads", "n_head", "num_heads", "encoder_attention_heads"} & keys.keys() and heads:
            settings.setdefault("num_attention_heads", heads)
        return settings

    def refusal(self, model: nn.Module, settings: dict[str, Any]) -> str | None:
        config = getattr(model, "config", None)
        if getattr(config, "is_encoder_decoder", False) and settings.get("task_type") == TaskType.SEQ_CLS:
            return (f"transformers' {type(model).__name__} takes no input embeddings or key/value prefixes; run "
                    "the labels as generation instead (--task generation --label-column LABEL)")
        if self.needs_cache and not _takes_cache(model):
            return (f"prefix tuning adds keys and values through the attention cache, and {type(model).__name__}'s "
                    "attention takes none (no past_key_values)")
        return None


def _takes_cache(model: nn.Module) -> bool:
    """peft's own test for prefix tuning: the model's forward, or its transformer backbone's, has
    ``past_key_values``."""
    if "past_key_values" in inspect.signature(model.forward).parameters:
        return True
    backbone = next((child for _, child in model.named_children() if isinstance(child, PreTrainedModel)), None)
    return backbone is not None and "past_key_values" in inspect.signature(backbone.forward).parameters


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

IA3 = IA3Method(
    name="ia3",
    summary="IA3: learned rescaling vectors on keys, values and FFN activations (peft)",
    learning_rate=5e-3,
    settings_class=IA3Config,
    defaults={},
    mergeable=True,
    update_tensors={"ia3_l": 1.0},  # rescaling vectors start at 1
    estimate_plan="ia3",
)

PROMPT = PromptLearningMethod(
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

PREFIX = PromptLearningMethod(
    name="prefix",
    summary="prefix tuning: 20 trainable key/value prefixes in every layer (peft)",
    learning_rate=1e-2,
    settings_class=PrefixTuningConfig,
    defaults={"num_virtual_tokens": 20},
    estimate_plan="prefix",
    needs_cache=True,
    setting_ranges=dict(VIRTUAL_TOKEN_RANGES),
    merge_blocker="prefix tuning adds learned key/value prefixes to the attention of every layer; they are "
    "extra tokens, not a change of any weight, so they cannot be folded into the weights",
)
