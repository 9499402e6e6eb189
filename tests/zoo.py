"""A zoo of tiny randomly initialised transformers models, one per architecture a user may bring.

Each entry builds a small config of a real architecture (2 layers, hidden 32 or so) and saves the model as a
local folder with a tokenizer, the way a checkpoint from the Hub looks: ``save_pretrained`` (safetensors) of the
class the Hub ships (a masked LM for encoders, a causal LM for decoders, a conditional-generation model for
encoder-decoders). Nothing is downloaded. tests/test_zoo.py runs `compare` on each; run as a script, this module
writes the table of architectures x methods that docs/ARCHITECTURES.md shows::

    python tests/zoo.py docs/ARCHITECTURES.md
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import transformers

os.environ.setdefault("HF_HUB_OFFLINE", "1")

HIDDEN, LAYERS, HEADS, FFN = 32, 2, 2, 64


@dataclass(frozen=True)
class Architecture:
    name: str  # what the table calls it
    stack: str  # encoder, decoder, encoder-decoder
    model_class: str  # the transformers class the checkpoint is saved as
    config: Callable[[int, Any], Any]  # (vocab_size, tokenizer) -> config

    def available(self) -> bool:
        return hasattr(transformers, self.model_class)


def _special(tokenizer) -> dict[str, Any]:
    return dict(pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                bos_token_id=tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id)


def _cfg(class_name: str, **fixed) -> Callable[[int, Any], Any]:
    def build(vocab_size: int, tokenizer) -> Any:
        return getattr(transformers, class_name)(vocab_size=vocab_size, **{**_special(tokenizer), **fixed})
    return build


_ENC = dict(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS, intermediate_size=FFN,
            max_position_embeddings=256)
_DEC = dict(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS, num_key_value_heads=1,
            intermediate_size=FFN, max_position_embeddings=256)

ARCHITECTURES: tuple[Architecture, ...] = (
    Architecture("bert", "encoder", "BertForMaskedLM", _cfg("BertConfig", **_ENC)),
    Architecture("distilbert", "encoder", "DistilBertForMaskedLM",
                 _cfg("DistilBertConfig", dim=HIDDEN, n_layers=LAYERS, n_heads=HEADS, hidden_dim=FFN,
                      max_position_embeddings=256)),
    Architecture("roberta", "encoder", "RobertaForMaskedLM", _cfg("RobertaConfig", **{**_ENC,
                 "max_position_embeddings": 258})),
    Architecture("xlm-roberta", "encoder", "XLMRobertaForMaskedLM", _cfg("XLMRobertaConfig", **{**_ENC,
                 "max_position_embeddings": 258})),
    Architecture("deberta-v2", "encoder", "DebertaV2ForMaskedLM",
                 _cfg("DebertaV2Config", **_ENC, relative_attention=True, position_buckets=32,
                      pos_att_type=["p2c", "c2p"], position_biased_input=False)),
    Architecture("electra", "encoder", "ElectraForMaskedLM", _cfg("ElectraConfig", embedding_size=HIDDEN, **_ENC)),
    Architecture("albert", "encoder", "AlbertForMaskedLM", _cfg("AlbertConfig", embedding_size=16, **_ENC)),
    Architecture("modernbert", "encoder", "ModernBertForMaskedLM",
                 _cfg("ModernBertConfig", hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                      intermediate_size=FFN, max_position_embeddings=256, global_attn_every_n_layers=2,
                      local_attention=16)),
    Architecture("gpt2", "decoder", "GPT2LMHeadModel",
                 _cfg("GPT2Config", n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS, n_inner=FFN, n_positions=256)),
    Architecture("llama", "decoder", "LlamaForCausalLM", _cfg("LlamaConfig", **_DEC, tie_word_embeddings=True)),
    Architecture("mistral", "decoder", "MistralForCausalLM", _cfg("MistralConfig", **_DEC)),
    Architecture("qwen2", "decoder", "Qwen2ForCausalLM", _cfg("Qwen2Config", **_DEC, tie_word_embeddings=True)),
    Architecture("qwen3", "decoder", "Qwen3ForCausalLM", _cfg("Qwen3Config", **_DEC, head_dim=16,
                 tie_word_embeddings=True)),
    Architecture("gemma", "decoder", "GemmaForCausalLM", _cfg("GemmaConfig", **_DEC, head_dim=16)),
    Architecture("phi3", "decoder", "Phi3ForCausalLM", _cfg("Phi3Config", **_DEC)),
    Architecture("t5", "encoder-decoder", "T5ForConditionalGeneration",
                 _cfg("T5Config", d_model=HIDDEN, d_kv=16, d_ff=FFN, num_layers=LAYERS, num_decoder_layers=LAYERS,
                      num_heads=HEADS, decoder_start_token_id=0)),
    Architecture("bart", "encoder-decoder", "BartForConditionalGeneration",
                 _cfg("BartConfig", d_model=HIDDEN, encoder_layers=LAYERS, decoder_layers=LAYERS,
                      encoder_attention_heads=HEADS, decoder_attention_heads=HEADS, encoder_ffn_dim=FFN,
                      decoder_ffn_dim=FFN, max_position_embeddings=256)),
)

BY_NAME = {arch.name: arch for arch in ARCHITECTURES}


def save_tiny_model(arch: Architecture, directory: Path, tokenizer, seed: int = 0) -> Path:
    """Save a random tiny `arch` with `tokenizer` into `directory` (safetensors); returns the folder."""
    config = arch.config(len(tokenizer), tokenizer)
    torch.manual_seed(seed)
    model = getattr(transformers, arch.model_class)(config)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return directory


if __name__ == "__main__":
    import sys
    import tempfile

    from peftlab.models import load_tokenizer, resolve_model

    tok = load_tokenizer(resolve_model("minilm"))
    tok.eos_token = "[SEP]"
    with tempfile.TemporaryDirectory() as tmp:
        for arch in ARCHITECTURES:
            print(arch.name, save_tiny_model(arch, Path(tmp) / arch.name, tok))
