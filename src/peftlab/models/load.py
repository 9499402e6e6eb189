"""Load a tokenizer and a sequence-classification, causal-LM or seq2seq-LM model by HF id, local folder or alias.

Which language-model class a prompted task loads (a decoder's ``AutoModelForCausalLM`` or an encoder-decoder's
``AutoModelForSeq2SeqLM``) is the task kind's choice (:mod:`peftlab.tasks.kinds`), made from
:func:`is_encoder_decoder` on the model's config.

Safetensors only; remote code only when the user asks for it. Every loading failure a user can cause
becomes a one-line :class:`ModelError`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
)

from peftlab.errors import ModelError
from peftlab.files import error_line
from peftlab.models.aliases import MODEL_ALIASES, alias_folder


@dataclass(frozen=True)
class ModelRef:
    """Where a model comes from: what the user named, and what transformers loads."""

    name: str  # what the user passed (alias, HF id or path)
    path: str  # HF id or local folder given to from_pretrained
    gguf_file: str | None = None
    trust_remote_code: bool = False
    tokenizer: ModelRef | None = None  # where the tokenizer comes from when not from the model (--tokenizer)

    @property
    def is_local(self) -> bool:
        return Path(self.path).exists()

    def from_pretrained_kwargs(self) -> dict:
        kwargs: dict = {"trust_remote_code": self.trust_remote_code}
        if self.gguf_file:
            kwargs["gguf_file"] = self.gguf_file
        return kwargs


def resolve_model(name: str, trust_remote_code: bool = False, tokenizer: str | None = None) -> ModelRef:
    """Turn an alias, local folder or HF id into a ModelRef (no weights loaded); ``tokenizer`` names another alias,
    folder or id to load the tokenizer from."""
    ref = _resolve(name, trust_remote_code)
    if tokenizer:
        ref = ModelRef(ref.name, ref.path, ref.gguf_file, ref.trust_remote_code,
                       _resolve(tokenizer, trust_remote_code, "--tokenizer"))
    return ref


def _resolve(name: str, trust_remote_code: bool, what: str = "model") -> ModelRef:
    if name in MODEL_ALIASES:
        alias = MODEL_ALIASES[name]
        return ModelRef(name, str(alias_folder(name)), alias.gguf_file, trust_remote_code)
    looks_like_path = name.startswith(("/", "./", "../", "~")) or Path(name).suffix == ".json"
    if looks_like_path and not Path(name).expanduser().exists():
        raise ModelError(f"cannot load {what} '{name}': no such folder (pass a local model folder, an HF id, or an "
                         f"alias: {', '.join(MODEL_ALIASES)})")
    return ModelRef(name, str(Path(name).expanduser()) if looks_like_path else name, None, trust_remote_code)


def _model_error(ref: ModelRef, error: Exception) -> ModelError:
    reason = error_line(error)
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


# Files a tokenizer is read from; a folder with none of them gets a tokenizer transformers builds from nothing
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.txt", "vocab.json", "spiece.model",
                   "sentencepiece.bpe.model", "spm.model", "tokenizer_config.json")
MIN_ORDINARY_TOKENS = 16  # fewer tokens besides the special ones: not a tokenizer of any language


def load_tokenizer(ref: ModelRef):
    """The model's tokenizer (or the one ``ref.tokenizer`` names), with a pad token (decoders often lack one: their
    EOS is used). ModelError when none loads, or when what loads has no vocabulary: a folder without tokenizer
    files gets one transformers builds from its special tokens alone, which would turn every text into [UNK]."""
    source = ref.tokenizer or ref
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.path, **source.from_pretrained_kwargs())
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise _tokenizer_error(ref, source, error_line(error)) from None
    ordinary = len(tokenizer) - len(set(tokenizer.all_special_tokens))
    if ordinary < MIN_ORDINARY_TOKENS:
        folder = Path(source.path)
        found = folder.is_dir() and any((folder / name).is_file() for name in TOKENIZER_FILES)
        reason = (f"it has {len(tokenizer)} tokens, {max(ordinary, 0)} besides the special ones"
                  + ("" if found or not folder.is_dir() else f"; {folder} has no tokenizer files "
                     f"({', '.join(TOKENIZER_FILES[:4])}...)"))
        raise _tokenizer_error(ref, source, reason)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def _tokenizer_error(ref: ModelRef, source: ModelRef, reason: str) -> ModelError:
    where = f"--tokenizer '{source.name}'" if ref.tokenizer else f"model '{ref.name}'"
    fix = "pass --tokenizer with a folder or HF id holding the right one" if not ref.tokenizer else \
        "pass a --tokenizer folder with tokenizer files"
    return ModelError(f"cannot load a tokenizer from {where}: {reason}; {fix}")


# --- what the folder's weights are, before a run loads them ----------------------------------------------------------

SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".h5", ".msgpack")  # torch/TF/flax checkpoints


def check_weights(ref: ModelRef) -> None:
    """ModelError unless a local model folder holds safetensors weights whose headers read (every shard of an
    index): a folder with only pickle checkpoints (``pytorch_model.bin``), none at all, or a damaged
    ``model.safetensors`` would fail every run of a study. Reads headers, never tensors; HF ids and GGUF aliases are
    loaded as they are (their files are not here to look at)."""
    folder = Path(ref.path)
    if ref.gguf_file or not folder.is_dir():
        return
    if (folder / SAFETENSORS_FILE).is_file():
        shards = [folder / SAFETENSORS_FILE]
    elif (folder / SAFETENSORS_INDEX).is_file():
        shards = _indexed_shards(folder / SAFETENSORS_INDEX)
    else:
        pickled = PICKLE_SUFFIXES + tuple(f"{suffix}.index.json" for suffix in PICKLE_SUFFIXES)
        others = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name.endswith(pickled))
        if others:
            raise ModelError(f"model folder {folder} has no {SAFETENSORS_FILE}, only {', '.join(others[:3])}: peftlab "
                             "loads safetensors weights only (pickle checkpoints can run code); convert it with "
                             "`model.save_pretrained(folder, safe_serialization=True)`")
        raise ModelError(f"model folder {folder} has no weights ({SAFETENSORS_FILE}); pass a folder written by "
                         "save_pretrained, an HF id, or an alias")
    for shard in shards:
        try:
            with safe_open(str(shard), "pt"):
                pass
        except (SafetensorError, OSError, ValueError) as error:
            reason = error_line(error)
            raise ModelError(f"{shard} is not a readable safetensors file ({reason}); re-save or re-download the "
                             "model") from None


def _indexed_shards(index: Path) -> list[Path]:
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        names = sorted(set(weight_map.values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise ModelError(f"{index} is not a safetensors index (JSON with a weight_map); re-save the model") from None
    missing = [name for name in names if not (index.parent / name).is_file()]
    if missing:
        raise ModelError(f"{index} names {missing[0]}, which is not in {index.parent}; download every shard")
    return [index.parent / name for name in names]


# config fields holding how many positions the model embeds, by naming convention
POSITION_FIELDS = ("max_position_embeddings", "n_positions", "max_sequence_length", "n_ctx", "seq_length")
# RoBERTa-style position ids start after the padding index: padding_idx + 1 of the table are never inputs
OFFSET_POSITIONS = ("roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "longformer", "data2vec-text", "ibert",
                    "markuplm")


def max_positions(config) -> int | None:
    """The longest input the model's position embeddings take, from its config; None when it does not say."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    for name in POSITION_FIELDS:
        value = getattr(text, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            if getattr(text, "model_type", None) in OFFSET_POSITIONS and name == "max_position_embeddings":
                value -= (getattr(text, "pad_token_id", None) or 0) + 1
            return value
    return None


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


def load_regressor(ref: ModelRef, label_names: list[str], pad_token_id: int | None = None,
                   **load_kwargs) -> PreTrainedModel:
    """A fresh sequence-classification model with a one-output head trained with MSE (transformers'
    ``problem_type="regression"``); ``label_names`` is the target's name. A checkpoint that already has a
    classification head of another size gets a new one (``ignore_mismatched_sizes``)."""
    kwargs = ref.from_pretrained_kwargs()
    if not ref.gguf_file:
        kwargs["use_safetensors"] = True
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            ref.path, num_labels=1, problem_type="regression", id2label={0: label_names[0]},
            label2id={label_names[0]: 0}, ignore_mismatched_sizes=True, dtype=torch.float32, **kwargs,
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
    return _load_lm(AutoModelForCausalLM, ref, pad_token_id, load_kwargs)


def load_seq2seq_lm(ref: ModelRef, pad_token_id: int | None = None, **load_kwargs) -> PreTrainedModel:
    """The pretrained encoder-decoder (T5, BART, ...) with its language-model head, fp32; ``load_kwargs`` go to
    ``from_pretrained``."""
    return _load_lm(AutoModelForSeq2SeqLM, ref, pad_token_id, load_kwargs)


def _load_lm(auto, ref: ModelRef, pad_token_id: int | None, load_kwargs: dict) -> PreTrainedModel:
    kwargs = ref.from_pretrained_kwargs()
    if not ref.gguf_file:
        kwargs["use_safetensors"] = True
    try:
        model = auto.from_pretrained(ref.path, dtype=torch.float32, **kwargs, **load_kwargs)
    except (OSError, ValueError, KeyError) as error:
        raise _model_error(ref, error) from None
    if model.config.pad_token_id is None and pad_token_id is not None:
        model.config.pad_token_id = pad_token_id
    return _plain_if_dequantized(model)


def is_encoder_decoder(config) -> bool:
    """Whether the model's config says it is an encoder-decoder (T5, BART, ...): its text is read by an encoder and
    its answers written by a decoder, so a prompted task trains it as seq2seq rather than as a causal LM."""
    return bool(getattr(config, "is_encoder_decoder", False))


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


def new_head_names(model: PreTrainedModel) -> list[str]:
    """The heads a fine-tuning run adds (a classifier's), not a language model's pretrained output layer."""
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return [name for name in head_module_names(model) if output is None or model.get_submodule(name) is not output]


def head_module_names(model: PreTrainedModel) -> list[str]:
    """Names of the top-level modules outside the pretrained base: the task head (e.g. `classifier`, `score`).

    Generic over architectures: everything that is not under ``model.base_model_prefix``.
    """
    prefix = getattr(model, "base_model_prefix", None)
    if not prefix:  # not a transformers model: no base/head split to read
        return []
    children = dict(model.named_children())
    if prefix not in children:  # the model is its own base (T5ForConditionalGeneration): the head is its output layer
        output = model.get_output_embeddings()
        return [name for name, module in children.items() if module is output and any(True for _ in module.parameters())]
    return [name for name, module in model.named_children() if name != prefix and any(True for _ in module.parameters())]
