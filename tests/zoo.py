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

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import transformers  # noqa: E402

from peftlab import CompareConfig, compare  # noqa: E402

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


# --- the generated table of docs/ARCHITECTURES.md -----------------------------------------------------------------

TABLE_METHODS = ("full", "head", "bitfit", "lora", "dora", "ia3", "prompt", "prefix", "adapter")


def _cell(run: dict) -> str:
    if run["status"] != "ok":
        reason = run.get("reason", "").split(": ", 1)[-1] if run["status"] == "refused" else run.get("reason", "")
        return f"{run['status']}: {reason}".replace("|", "/")
    estimate = run.get("estimate") or {}
    if estimate.get("status") != "ok":
        return f"ok (estimate {estimate.get('status', 'absent')}: {estimate.get('reason', '')})".replace("|", "/")
    flops = estimate["flops_per_step_estimated"] / estimate["flops_per_step_counted"]
    params = estimate["trainable_params_estimated"] / run["cost"]["trainable_params"]
    return f"ok · params {params:.2f} · FLOPs {flops:.2f}"


def architecture_table(out: Path, tokenizer, jobs: dict[str, list[tuple[str, Path]]]) -> str:
    """Run `compare` with every method in TABLE_METHODS on each architecture and each (task, data) of its stack in
    `jobs`, and return the markdown table."""
    lines = ["| architecture | stack | task | " + " | ".join(TABLE_METHODS) + " |",
             "|---|---|---|" + "---|" * len(TABLE_METHODS)]
    for arch in ARCHITECTURES:
        if not arch.available():
            lines.append(f"| {arch.name} | {arch.stack} | - | " + " | ".join(["not in this transformers"] * len(TABLE_METHODS)) + " |")
            continue
        folder = save_tiny_model(arch, out / arch.name, tokenizer)
        for task_name, task_data in jobs[arch.stack]:
            results = compare(CompareConfig(model=str(folder), data=str(task_data), methods=list(TABLE_METHODS),
                                            max_steps=1, batch_size=4, max_train_examples=16, max_eval_examples=8,
                                            robustness=False, out=str(out / f"{arch.name}-{task_name}")))
            cells = {run["method"]: _cell(run) for run in results["runs"]}
            lines.append(f"| {arch.name} | {arch.stack} | {results['study']['task']['type']} | "
                         + " | ".join(cells.get(m, "-") for m in TABLE_METHODS) + " |")
            print(lines[-1], flush=True)
    return "\n".join(lines)


if __name__ == "__main__":  # python tests/zoo.py docs/ARCHITECTURES.md
    import sys
    import tempfile
    import warnings

    import json

    from conftest import COLOURS, tiny_texts
    from peftlab.models import load_tokenizer, resolve_model

    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    tok = load_tokenizer(resolve_model("minilm"))
    tok.eos_token = "[SEP]"
    with tempfile.TemporaryDirectory() as tmp:
        csv, jsonl = Path(tmp) / "tiny_task.csv", Path(tmp) / "colours.jsonl"
        tiny_texts().to_csv(csv, index=False)
        jsonl.write_text("\n".join(json.dumps({"prompt": f"What colour is {thing}?", "completion": colour})
                                   for _ in range(10) for thing, colour in COLOURS.items()))
        both = [("classification", csv), ("generation", jsonl)]
        table = architecture_table(Path(tmp), tok, {"encoder": both[:1], "decoder": both, "encoder-decoder": both})
    if target is not None:
        text = target.read_text(encoding="utf-8")
        begin, end = "<!-- zoo table: begin -->", "<!-- zoo table: end -->"
        head, rest = text.split(begin, 1)
        target.write_text(head + begin + "\n" + table + "\n" + end + rest.split(end, 1)[1], encoding="utf-8")
    else:
        print(table)
