"""Load a tokenizer and a sequence-classification or causal-LM model by HF id, local folder or offline alias.

Safetensors only; remote code only when the user asks for it. Every loading failure a user can cause
becomes a one-line :class:`ModelError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
)

from peftlab.errors import ModelError
from peftlab.models.aliases import MODEL_ALIASES, alias_folder


@dataclass(frozen=True)
class ModelRef:
    """Where a model comes from: what the user named, and what transformers loads."""

    name: str  # what the user passed (alias, HF id or path)
    path: str  # HF id or local folder given to from_pretrained
    gguf_file: str | None = None
    trust_remote_code: bool = False

    @property
    def is_local(self) -> bool:
        return Path(self.path).exists()

    def from_pretrained_kwargs(self) -> dict:
        kwargs: dict = {"trust_remote_code": self.trust_remote_code}
        if self.gguf_file:
            kwargs["gguf_file"] = self.gguf_file
        return kwargs


def resolve_model(name: str, trust_remote_code: bool = False) -> ModelRef:
    """Turn an alias, local folder or HF id into a ModelRef (no weights loaded)."""
    if name in MODEL_ALIASES:
        alias = MODEL_ALIASES[name]
        return ModelRef(name, str(alias_folder(name)), alias.gguf_file, trust_remote_code)
    looks_like_path = name.startswith(("/", "./", "../", "~")) or Path(name).suffix == ".json"
    if looks_like_path and not Path(name).expanduser().exists():
        raise ModelError(f"cannot load model '{name}': no such folder (pass a local model folder, an HF id, or an alias: {', '.join(MODEL_ALIASES)})")
    return ModelRef(name, str(Path(name).expanduser()) if looks_like_path else name, None, trust_remote_code)


def _model_error(ref: ModelRef, error: Exception) -> ModelError:
    reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
    aliases = ", ".join(MODEL_ALIASES)
    return ModelError(
        f"cannot load model '{ref.name}': {reason} "
        f"(pass an offline alias ({aliases}), a local model folder, or an HF id reachable from here)"
    )


def load_config(ref: ModelRef):
    try:
        return AutoConfig.from_pretrained(ref.path, **ref.from_pretrained_kwargs())
    except (OSError, ValueError, KeyError) as error:
        raise _model_error(ref, error) from None


def load_tokenizer(ref: ModelRef):
    """The model's tokenizer, with a pad token (decoders often lack one: their EOS is used)."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(ref.path, **ref.from_pretrained_kwargs())
    except (OSError, ValueError, KeyError) as error:
        raise _model_error(ref, error) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def load_classifier(ref: ModelRef, label_names: list[str], pad_token_id: int | None = None,
                    **load_kwargs) -> PreTrainedModel:
    """A fresh sequence-classification model on the pretrained base, fp32, with a new head for these labels.

    The head is initialised from torch's global RNG: seed before calling for reproducible runs.
    """
    kwargs = ref.from_pretrained_kwargs()
    if not ref.gguf_file:
        kwargs["use_safetensors"] = True
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            ref.path,
            num_labels=len(label_names),
            id2label=dict(enumerate(label_names)),
            label2id={label: index for index, label in enumerate(label_names)},
            dtype=torch.float32,
            **kwargs,
            **load_kwargs,
        )
    except (OSError, ValueError, KeyError) as error:
        raise _model_error(ref, error) from None
    if model.config.pad_token_id is None and pad_token_id is not None:
        model.config.pad_token_id = pad_token_id
    return _plain_if_dequantized(model)


def load_causal_lm(ref: ModelRef, pad_token_id: int | None = None, **load_kwargs) -> PreTrainedModel:
    """The pretrained decoder with its language-model head, fp32 (a GGUF checkpoint is dequantized).

    ``load_kwargs`` go to ``from_pretrained`` (e.g. a bitsandbytes ``quantization_config``)."""
    kwargs = ref.from_pretrained_kwargs()
    if not ref.gguf_file:
        kwargs["use_safetensors"] = True
    try:
        model = AutoModelForCausalLM.from_pretrained(ref.path, dtype=torch.float32, **kwargs, **load_kwargs)
    except (OSError, ValueError, KeyError) as error:
        raise _model_error(ref, error) from None
    if model.config.pad_token_id is None and pad_token_id is not None:
        model.config.pad_token_id = pad_token_id
    return _plain_if_dequantized(model)


def _plain_if_dequantized(model: PreTrainedModel) -> PreTrainedModel:
    """A GGUF checkpoint loaded as fp32 is a plain model, but transformers keeps its GGUF quantizer attached, and
    that refuses ``save_pretrained`` ("not serializable"). Detach it when every weight is a plain float tensor."""
    if getattr(model, "hf_quantizer", None) is None or not all(p.dtype.is_floating_point for p in model.parameters()):
        return model
    method = getattr(model.hf_quantizer.quantization_config, "quant_method", None)
    if str(getattr(method, "value", method)) != "gguf":
        return model
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model


def load_base_model(ref: ModelRef, task, pad_token_id: int | None = None, **load_kwargs) -> PreTrainedModel:
    """The base a task trains, as its kind loads it (``task.kind.load_model``: a classifier for classification, the
    causal LM for multiple choice and generation). Kept for callers that have not moved to ``task.kind``."""
    return task.kind.load_model(ref, task.label_names, pad_token_id, **load_kwargs)


def head_module_names(model: PreTrainedModel) -> list[str]:
    """Names of the top-level modules outside the pretrained base: the task head (e.g. `classifier`, `score`).

    Generic over architectures: everything that is not under ``model.base_model_prefix``.
    """
    prefix = model.base_model_prefix
    return [name for name, module in model.named_children() if name != prefix and any(True for _ in module.parameters())]
