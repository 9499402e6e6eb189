"""GPU check — what full fine-tuning and each PEFT method cost on real model shapes, measured next to the estimate.

One prepared command for a GPU machine (an H100 or H200, bf16). It needs no downloaded weights: each model is
built with random weights from its config, directly on the device, from the built-in config facts of `peftlab
estimate` (src/peftlab/estimate/builtin.py: Llama-3.2-1B, Llama-3.2-3B, BERT-base; Qwen2.5-0.5B, which the
estimate has no entry for, is written out below from its public config.json). Each row is trained through
peftlab's own code: the method registry (``get_method(name)``: resolve, check_applies, apply, bind_task, as
``study/run.py build_run`` does), the memory preparation (``MemoryOptions.prepare``, and for the quantized rows
``MemoryOptions.load_kwargs`` with the task kind's own loader) and the one training loop (``peftlab.train.train``
with a ``TrainConfig``), on synthetic batches of random token ids of realistic lengths: a causal-LM objective for
the decoders, sequence classification for BERT. Quality is not measured, cost is.

    python benchmarks/gpu_check.py --json $OUT/gpu_check.json     # on the GPU machine: the whole check, < 8 min
    python benchmarks/gpu_check.py --tiny --json /tmp/gpu_check.json   # the same path, tiny shapes, CPU, < 1 min
    python benchmarks/gpu_check.py --plan                          # rows, FLOPs, predicted time; runs nothing

Per row (a shape and a method: full, lora, dora, ia3, prompt, qlora = LoRA on a 4-bit NF4 base, lora-8bit = LoRA
on an 8-bit base): ``--warmup`` steps, then ``--steps`` timed steps. It reports tokens/s over the timed steps, the
median step time, the peak memory, and next to it the estimate's peak for the same shape, batch, sequence length,
dtype and method (``peftlab.estimate.estimate_method``), with the ratio measured / estimated. A row that fails
(out of memory, anything) is recorded as ``failed`` with its reason and the traceback in the JSON; the other rows
go on. The quantized rows say ``skipped: needs CUDA`` or ``skipped: bitsandbytes not installed`` where they
cannot run.

The anchor: HF peft's method comparison (``method_comparison/MetaMathQA``) trains Llama-3.2-3B in bf16, batch 4,
sequences up to 768 tokens, torch AdamW, no AMP, no checkpointing. Issue 25 quotes its figures as full fine-tuning
36.2 GiB peak and 2,147 s, LoRA r=32 (alpha 64, q_proj and v_proj, dropout 0) 20.8 GiB and 941 s (941 / 2147 =
0.44). The results files read for docs/ESTIMATE.md give ``accelerator_memory_max`` 37,241,225,216 B (34.7 GiB) and
``train_time`` 3,111 s for full fine-tuning, 22,273,851,392 B (20.7 GiB) and 1,796 s for LoRA r32 (0.58; their
per-250-step "train time" entries, without evaluation, are about 90.5 s and 30.9 s: 0.34); both sets are printed.
The check runs full and LoRA r32 on that shape (every sequence 768 tokens long, so it is the run's longest batch)
and prints two goals as PASS/FAIL lines: each peak within ±10 % of the estimate, and LoRA / full step time ≤ 0.5.

Measurement, selected by device in one code path:
- CUDA: weights in bf16 (the estimate's ``bf16``: pure 16-bit weights, gradients and AdamW states; peft keeps its
  adapters fp32), peak = ``torch.cuda.max_memory_allocated`` after ``torch.cuda.reset_peak_memory_stats``
  (``peftlab.measure.PeakMemory``), read at the end of the last timed step (before the loop's validation pass and
  its copy of the best state), step times between ``torch.cuda.synchronize`` calls, bitsandbytes 4-bit / 8-bit
  bases where bitsandbytes imports. **None of these branches is exercised on CPU** (no GPU was lent when this was
  written): ``--tiny`` on CPU runs the same functions with fp32 weights, PeakMemory's CPU measure (the peak of the
  process's resident set above its level when the row started, which is higher than the tensor bytes the estimate
  models, so the CPU ratio is not a check of the estimate) and the quantized rows skipped.
- Our own measurement code is small and here on purpose: the step clock is the training loop's ``on_step``
  callback (the loop records only its whole training time, and a median per step needs each step), and the peak is
  read with ``PeakMemory.so_far()`` at the last step's callback. The build follows ``build_run``'s steps (seed, base,
  ``MemoryOptions.prepare``, ``Method.resolve`` / ``check_applies`` / ``apply`` / ``bind_task``, ``TrainConfig``)
  in a few lines instead of calling it: ``build_run`` takes a ``Study`` and loads its base with ``from_pretrained``
  (there are no weights here), and importing ``peftlab.study.run`` brings in the trackers (mlflow, wandb), which the
  GPU machines do not have. The synthetic data, the two-token stand-in tokenizer the loop pads with, and the
  validation pass's causal loss wrapper are the rest; everything else is peftlab's.

Time budget (how the default was sized). ``--plan`` prints each row's FLOPs per step from the estimate and its step
time on an H200 at 40 % of the 989 TFLOP/s dense bf16 peak (about half of the ~790 TFLOP/s a bf16 matrix product
reaches there). The anchor's full fine-tuning step is the largest, 62.1 TFLOP (157 ms at 40 %), its LoRA step
42.4 TFLOP; the default's 23 rows x 13 steps add up to 4.73 PFLOP: 12 s of compute at 40 %, 32 s at 15 %. The
rest is fixed cost per row: building the model on the device (random init of up to 3.2 B parameters), applying
the method, the synthetic data, one short validation pass, freeing memory, and for a quantized row saving the
random weights and loading them back (a 1.2 B model, 2.5 GB in bf16) — budgeted at <= 10 s a row, 230 s for 23
rows, plus ~30 s of imports: about 5 min in all on one H200 (on CPU, ``--tiny`` takes ~1-2 s a row).
``--budget-seconds`` (default 450) guards the 8 minutes: a row not started by then is recorded as ``skipped: time
budget`` and the run ends with its table and JSON. The anchor rows run first.

On the lent GPU machines (docs/PERFORMANCE.md, "GPU check") PyTorch, transformers, peft and accelerate are
installed but ``datasets`` (with ``dill`` and ``multiprocess``) and ``bitsandbytes`` are not: carry the first three
as wheels; without bitsandbytes the quantized rows are skipped, and the check still runs.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import os
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _common, also when imported by a test

import _common  # noqa: E402,F401  (sets the offline environment first)
import torch  # noqa: E402
from _common import table  # noqa: E402

from peftlab.estimate import EstimateSettings, ModelFacts, estimate_method, facts_from_config  # noqa: E402
from peftlab.estimate.builtin import builtin_facts  # noqa: E402
from peftlab.files import short_reason  # noqa: E402
from peftlab.measure import PeakMemory, release_free_memory  # noqa: E402
from peftlab.methods import get_method  # noqa: E402
from peftlab.models import ModelRef  # noqa: E402
from peftlab.models.memory import MemoryOptions  # noqa: E402
from peftlab.train import TrainConfig, train  # noqa: E402

GIB = 2**30
MIB = 2**20

# Qwen2.5-0.5B's public config.json (Qwen/Qwen2.5-0.5B), in the form of the estimate's built-in facts; the estimate
# itself has no entry for it.
QWEN25_05B = ModelFacts(
    name="Qwen2.5-0.5B", model_type="qwen2", family="decoder", hidden_size=896, num_layers=24, num_heads=14,
    num_kv_heads=2, head_dim=64, intermediate_size=4864, vocab_size=151936, max_positions=32768,
    tie_word_embeddings=True, qkv_bias=True)

LABELS = ["0", "1"]  # the classifier's two classes


@dataclass(frozen=True)
class Shape:
    key: str
    facts: ModelFacts
    task: str  # causal-lm or classification
    batch_size: int
    seq_len: int


@dataclass(frozen=True)
class Row:
    shape: str  # a Shape's key
    label: str  # the row's name in the table
    method: str  # the registry's method
    overrides: dict = field(default_factory=dict)
    quantize: str | None = None  # None, "4bit", "8bit"
    estimate: str | None = "same"  # the estimate's method ("same": the method's own); None: not modelled


def shapes(tiny: bool) -> dict[str, Shape]:
    real = {
        "llama-3.2-3b": Shape("llama-3.2-3b", builtin_facts("Llama-3.2-3B"), "causal-lm", 4, 768),  # the anchor
        "llama-3.2-1b": Shape("llama-3.2-1b", builtin_facts("Llama-3.2-1B"), "causal-lm", 4, 1024),
        "qwen2.5-0.5b": Shape("qwen2.5-0.5b", QWEN25_05B, "causal-lm", 4, 1024),
        "bert-base": Shape("bert-base", builtin_facts("BERT-base"), "classification", 32, 256),
    }
    if not tiny:
        return real
    return {key: replace(shape, facts=shrunk(shape.facts), batch_size=2, seq_len=32) for key, shape in real.items()}


def shrunk(facts: ModelFacts) -> ModelFacts:
    """The same architecture at toy size: 2 layers, hidden 64, vocabulary 1,000 (``--tiny``)."""
    return replace(facts, name=f"{facts.name} (tiny)", hidden_size=64, num_layers=2, num_heads=4,
                   num_kv_heads=min(facts.num_kv_heads, 2) if facts.family == "decoder" else 4, head_dim=16,
                   intermediate_size=128, vocab_size=1000, max_positions=128)


ANCHOR_LORA = {"r": 32, "lora_alpha": 64, "lora_dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
METHOD_SHAPES = ("llama-3.2-1b", "qwen2.5-0.5b", "bert-base")


def rows() -> list[Row]:
    anchor = [Row("llama-3.2-3b", "full", "full"), Row("llama-3.2-3b", "lora r32", "lora", dict(ANCHOR_LORA))]
    methods = [Row(shape, name, name) for shape in METHOD_SHAPES for name in ("full", "lora", "dora", "ia3", "prompt")]
    methods += [Row(shape, "qlora", "lora", quantize="4bit", estimate="qlora") for shape in METHOD_SHAPES]
    methods += [Row(shape, "lora-8bit", "lora", quantize="8bit", estimate=None) for shape in METHOD_SHAPES]
    order = {shape: index for index, shape in enumerate(METHOD_SHAPES)}
    return anchor + sorted(methods, key=lambda row: order[row.shape])


# Published figures of the anchor (see the module docstring).
ANCHOR_PUBLISHED = {
    "issue": {"full_peak_gib": 36.2, "full_seconds": 2147, "lora_peak_gib": 20.8, "lora_seconds": 941},
    "results_files": {"full_peak_gib": 37_241_225_216 / GIB, "full_seconds": 3111.4,
                      "lora_peak_gib": 22_273_851_392 / GIB, "lora_seconds": 1796.2},
}


def transformers_config(facts: ModelFacts, task: str):
    """A transformers config of these facts (the values the estimate reads), for a model built with random weights."""
    from transformers import BertConfig, LlamaConfig, Qwen2Config

    labels = {"num_labels": len(LABELS)} if task == "classification" else {}
    if facts.model_type == "bert":
        return BertConfig(vocab_size=facts.vocab_size, hidden_size=facts.hidden_size,
                          num_hidden_layers=facts.num_layers, num_attention_heads=facts.num_heads,
                          intermediate_size=facts.intermediate_size, max_position_embeddings=facts.max_positions,
                          type_vocab_size=facts.type_vocab_size, hidden_dropout_prob=facts.hidden_dropout,
                          attention_probs_dropout_prob=facts.attention_dropout, pad_token_id=0, **labels)
    common = dict(vocab_size=facts.vocab_size, hidden_size=facts.hidden_size, intermediate_size=facts.intermediate_size,
                  num_hidden_layers=facts.num_layers, num_attention_heads=facts.num_heads,
                  num_key_value_heads=facts.num_kv_heads, max_position_embeddings=facts.max_positions,
                  tie_word_embeddings=facts.tie_word_embeddings, pad_token_id=0, **labels)
    if facts.model_type == "qwen2":  # its head size is hidden / heads
        return Qwen2Config(**common)
    if facts.model_type == "llama":
        return LlamaConfig(head_dim=facts.head_dim, **common)
    raise ValueError(f"no config builder for model type {facts.model_type!r}")


def stand_in_tokenizer():
    """A two-token tokenizer: the training loop pads through one (here every row has the same length, so it never
    adds padding); the batches are random token ids, never text."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer(WordLevel({"[PAD]": 0, "[UNK]": 1}, unk_token="[UNK]")),
                                   pad_token="[PAD]", unk_token="[UNK]")


def synthetic_splits(shape: Shape, vocab_size: int, steps: int, seed: int = 0) -> dict:
    """Random token ids: ``steps`` full batches for training (every row ``seq_len`` long), and a short validation
    split (4 rows of 8 tokens) for the loop's one validation pass."""
    import datasets

    generator = torch.Generator().manual_seed(seed)

    def split(rows: int, length: int):
        ids = torch.randint(3, vocab_size, (rows, length), generator=generator).tolist()
        if shape.task == "causal-lm":
            labels = [list(row) for row in ids]  # a causal LM's labels are its inputs
        else:
            labels = torch.randint(0, len(LABELS), (rows,), generator=generator).tolist()
        return datasets.Dataset.from_dict({"input_ids": ids, "attention_mask": [[1] * length] * rows,
                                           "labels": labels, "length": [length] * rows})

    return {"train": split(shape.batch_size * steps, shape.seq_len), "validation": split(4, 8)}


def validation(task: str):
    """The loop's validation pass: peftlab's classifier evaluation, or the causal LM's teacher-forced loss."""
    if task == "classification":
        from peftlab.evaluate.predict import evaluate_split

        return evaluate_split, "accuracy"
    from peftlab.evaluate.generation import target_loss

    def causal_loss(model, dataset, tokenizer, batch_size, device, num_labels=0, desc="eval"):
        loss = target_loss(model, dataset, tokenizer, batch_size, device, desc)
        return {"loss": loss, "neg_loss": -loss}

    return causal_loss, "neg_loss"


def quantization_skip(row: Row, device: torch.device) -> str | None:
    if row.quantize is None:
        return None
    if device.type != "cuda":
        return "skipped: needs CUDA"
    if importlib.util.find_spec("bitsandbytes") is None:
        return "skipped: bitsandbytes not installed"
    try:
        import bitsandbytes  # noqa: F401
    except Exception as error:  # noqa: BLE001 - installed but broken (no CUDA build): say why
        return f"skipped: bitsandbytes does not import ({short_reason(error)})"
    return None


def build_base(shape: Shape, config, device: torch.device, memory: MemoryOptions, tokenizer, folder: str | None):
    """The base model with random weights, on the device: built there directly in the run's dtype, or, for a
    quantized row, loaded from ``folder`` (:func:`random_weights_folder`) through the task kind's own loader with
    bitsandbytes, as ``compare --load-in-4bit/8bit`` loads a base (CUDA only)."""
    if not memory.quantized:
        with torch.device(device):
            return auto_class(shape).from_config(config, dtype=run_dtype(device))
    from peftlab.tasks.kinds import CLASSIFICATION, GENERATION

    kind = GENERATION if shape.task == "causal-lm" else CLASSIFICATION
    return kind.load_model(ModelRef(folder, folder), LABELS, tokenizer.pad_token_id, **memory.load_kwargs())


@contextlib.contextmanager
def random_weights_folder(shape: Shape, config, device: torch.device, memory: MemoryOptions):
    """For a quantized row: the random-weight model saved to a temporary folder (built on the device, then freed),
    before the row's peak is measured; None for the others."""
    if not memory.quantized:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as folder:
        with torch.device(device):
            auto_class(shape).from_config(config, dtype=run_dtype(device)).save_pretrained(folder)
        release_free_memory()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        yield folder


def auto_class(shape: Shape):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    return AutoModelForCausalLM if shape.task == "causal-lm" else AutoModelForSequenceClassification


def run_dtype(device: torch.device) -> torch.dtype:
    """bf16 weights on CUDA (as peft's comparison trains), fp32 on CPU."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def estimate_row(row: Row, shape: Shape, config, device: torch.device) -> dict[str, Any] | None:
    """The estimate's figures for this row's shape, batch, sequence length, dtype and method (None: not modelled)."""
    if row.estimate is None:
        return None
    cuda = device.type == "cuda"
    settings = EstimateSettings(batch_size=shape.batch_size, seq_len=shape.seq_len, dtype="bf16" if cuda else "fp32",
                                task=shape.task, device="cuda" if cuda else "cpu",
                                adamw_kernel="foreach" if cuda else "single",  # torch AdamW's default there
                                gpu="H200-141GB", utilisation=0.4)
    name = row.method if row.estimate == "same" else row.estimate
    return estimate_method(facts_from_config(config), name, settings, row.overrides)


def measure_row(row: Row, shape: Shape, device: torch.device, warmup: int, steps: int) -> dict[str, Any]:
    """Build, train ``warmup + steps`` steps through peftlab's loop, and measure; the row's record."""
    from accelerate.utils import set_seed

    config = transformers_config(shape.facts, shape.task)
    record: dict[str, Any] = {"shape": shape.key, "model": shape.facts.name, "row": row.label, "method": row.method,
                              "settings": row.overrides, "quantize": row.quantize, "task": shape.task,
                              "batch_size": shape.batch_size, "seq_len": shape.seq_len,
                              "dtype": "bf16" if device.type == "cuda" else "fp32", "status": "ok"}
    estimated = estimate_row(row, shape, config, device)
    record["estimate"] = None if estimated is None else {
        "peak_memory_bytes": estimated["memory_bytes"]["total"], "memory_bytes": estimated["memory_bytes"],
        "flops_per_step": estimated["flops_per_step"], "step_seconds_h200_40pct": estimated["step_seconds"],
        "trainable_params": estimated["trainable_params"]}
    if estimated is None:
        record["estimate_note"] = "not modelled: the estimate has no 8-bit base"
    skip = quantization_skip(row, device)
    if skip:
        record.update(status="skipped", reason=skip)
        return record
    clock: list[float] = []
    peak_at_last_step = [0]
    accelerator = None
    try:
        memory = MemoryOptions(load_in_4bit=row.quantize == "4bit", load_in_8bit=row.quantize == "8bit")
        memory.check()
        tokenizer = stand_in_tokenizer()
        encoded = synthetic_splits(shape, config.vocab_size, warmup + steps)
        evaluate, selection = validation(shape.task)
        accelerator = memory.accelerator(cpu=device.type != "cuda")
        with contextlib.ExitStack() as stack:
            folder = stack.enter_context(random_weights_folder(shape, config, device, memory))
            if device.type == "cuda":
                torch.cuda.empty_cache()
                record["allocated_before_bytes"] = int(torch.cuda.memory_allocated(device))
            peak = stack.enter_context(PeakMemory(device))
            set_seed(0)  # build_run's order: seed, load, prepare, resolve, check, apply, bind
            method = get_method(row.method)
            base = memory.prepare(build_base(shape, config, device, memory, tokenizer, folder), method)
            settings, learning_rate = method.resolve(base, dict(row.overrides))
            method.check_applies(base, settings)
            model = method.apply(base, settings).to(device)
            model = method.bind_task(model, settings, LABELS, tokenizer, shape.seq_len)
            record["trainable_params"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
            train_config = TrainConfig(learning_rate=learning_rate, max_steps=warmup + steps,
                                       batch_size=shape.batch_size, eval_batch_size=4, seed=0,
                                       selection_metric=selection, evaluate=evaluate, trains=method.trains,
                                       after_step=method.after_step)

            def on_step(done: int, total: int, epoch: int, epochs: int) -> None:
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                clock.append(time.perf_counter())
                if done == total:  # before the loop's validation pass and its copy of the best state
                    peak_at_last_step[0] = peak.so_far()

            outcome = train(model, encoded, tokenizer, train_config, accelerator,
                            len(LABELS) if shape.task == "classification" else 0, on_step=on_step)
        if device.type == "cuda":
            record["reserved_peak_bytes"] = int(torch.cuda.max_memory_reserved(device))
        durations = [later - earlier for earlier, later in zip(clock[warmup - 1:], clock[warmup:])]
        if outcome.steps != warmup + steps or len(durations) != steps:
            raise RuntimeError(f"the loop ran {outcome.steps} steps, {warmup + steps} were asked for")
        tokens_per_step = shape.batch_size * shape.seq_len  # every row is full length: no padding
        record.update(
            warmup_steps=warmup, timed_steps=steps, tokens_per_step=tokens_per_step,
            step_seconds=durations, median_step_seconds=statistics.median(durations),
            tokens_per_second=tokens_per_step * len(durations) / sum(durations),
            peak_memory_bytes=int(peak_at_last_step[0]), peak_memory_bytes_with_validation=int(peak.peak_bytes),
            final_loss=outcome.train_loss[-1],
        )
        if record["estimate"] is not None:
            record["memory_ratio"] = record["peak_memory_bytes"] / record["estimate"]["peak_memory_bytes"]
    except Exception as error:  # noqa: BLE001 - one row's failure (OOM included) must not stop the others
        record.update(status="failed", reason=short_reason(error, limit=400),
                      traceback=traceback.format_exc()[-4000:])
    finally:
        model = base = outcome = None  # noqa: F841 - drop the references before freeing
        if accelerator is not None:
            accelerator.free_memory()
        release_free_memory()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return record


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:,.{digits}f}"


TABLE_HEADER = ["shape", "method", "status", "tokens/s", "median step ms", "peak MiB", "estimate MiB",
                "measured/estimate", "note"]


def table_row(record: dict) -> list[str]:
    estimate = record.get("estimate")
    estimated = estimate["peak_memory_bytes"] / MIB if estimate else None
    ok = record["status"] == "ok"
    note = record.get("reason") or ("" if estimate else record.get("estimate_note", ""))
    return [record["shape"], record["row"], record["status"],
            _number(record["tokens_per_second"], 0) if ok else "-",
            _number(record["median_step_seconds"] * 1000, 1) if ok else "-",
            _number(record["peak_memory_bytes"] / MIB, 1) if ok else "-",
            _number(estimated, 1),
            _number(record.get("memory_ratio"), 2) if ok else "-",
            note]


def format_table(records: list[dict]) -> str:
    text = table(TABLE_HEADER, [table_row(record) for record in records])
    return "\n".join(line.rstrip() for line in text.splitlines())


def size(nbytes: float) -> str:
    """GiB, like the published figures; MiB below 1 GiB (--tiny)."""
    return f"{nbytes / GIB:.2f} GiB" if nbytes >= GIB else f"{nbytes / MIB:.2f} MiB"


def anchor_summary(records: list[dict]) -> tuple[dict, list[str]]:
    """The anchor's figures next to the published ones, and the goals as PASS/FAIL lines."""
    found = {record["row"]: record for record in records if record["shape"] == "llama-3.2-3b"}
    full, lora = found.get("full"), found.get("lora r32")
    issue, files = ANCHOR_PUBLISHED["issue"], ANCHOR_PUBLISHED["results_files"]
    summary: dict[str, Any] = {"published": ANCHOR_PUBLISHED,
                               "published_step_ratio": issue["lora_seconds"] / issue["full_seconds"]}
    lines = []
    goals = []
    for name, record, published in (("full", full, "full"), ("lora r32", lora, "lora")):
        if record is None or record["status"] != "ok":
            why = "not run" if record is None else f"{record['status']}: {record.get('reason', '')}"
            lines.append(f"  {name}: {why}")
            goals.append({"goal": f"peak memory within ±10% of the estimate ({name})", "pass": None, "value": None})
            continue
        ratio = record.get("memory_ratio")
        lines.append(f"  {name}: peak {size(record['peak_memory_bytes'])} measured, "
                     f"{size(record['estimate']['peak_memory_bytes'])} estimated (ratio {ratio:.3f}); "
                     f"published {issue[published + '_peak_gib']:.1f} GiB (issue 25), "
                     f"{files[published + '_peak_gib']:.1f} GiB (results file); "
                     f"median step {record['median_step_seconds'] * 1000:.1f} ms")
        goals.append({"goal": f"peak memory within ±10% of the estimate ({name})",
                      "pass": abs(ratio - 1) <= 0.10, "value": ratio})
    if full and lora and full["status"] == lora["status"] == "ok":
        step_ratio = lora["median_step_seconds"] / full["median_step_seconds"]
        summary["step_ratio"] = step_ratio
        lines.append(f"  LoRA/full step time: {step_ratio:.3f} measured; published "
                     f"{issue['lora_seconds']}/{issue['full_seconds']} = {summary['published_step_ratio']:.2f} "
                     f"(issue 25), {files['lora_seconds']:.0f}/{files['full_seconds']:.0f} = "
                     f"{files['lora_seconds'] / files['full_seconds']:.2f} (results files)")
        goals.append({"goal": "LoRA/full step time <= 0.5", "pass": step_ratio <= 0.5, "value": step_ratio})
    else:
        goals.append({"goal": "LoRA/full step time <= 0.5", "pass": None, "value": None})
    summary["goals"] = goals
    for goal in goals:
        verdict = "not measured" if goal["pass"] is None else ("PASS" if goal["pass"] else "FAIL")
        value = "" if goal["value"] is None else f" ({goal['value']:.3f})"
        lines.append(f"GOAL {goal['goal']}: {verdict}{value}")
    return summary, lines


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}, CUDA {torch.version.cuda}"
    return f"CPU ({os.cpu_count()} logical cores, {torch.get_num_threads()} torch threads), torch {torch.__version__}"


def plan(args, chosen: list[Row], all_shapes: dict[str, Shape], device: torch.device) -> None:
    """Each row's estimated FLOPs per step and step time on an H200 at 40 %: how the time budget was sized."""
    total_flops = 0.0
    lines = []
    for row in chosen:
        shape = all_shapes[row.shape]
        estimated = estimate_row(row if row.estimate else replace(row, estimate="qlora"), shape,
                                 transformers_config(shape.facts, shape.task), torch.device("cuda"))
        flops = estimated["flops_per_step"] * (args.warmup + args.steps)
        total_flops += flops
        lines.append([shape.key, row.label, f"{estimated['flops_per_step'] / 1e12:.1f}",
                      f"{estimated['step_seconds'] * 1000:.0f}", f"{flops / 1e15:.3f}"])
    print(table(["shape", "method", "TFLOP/step", "step ms (H200, 40%)", "PFLOP (all steps)"], lines))
    print(f"{len(chosen)} rows x {args.warmup + args.steps} steps: {total_flops / 1e15:.2f} PFLOP; at 40% of an H200's "
          f"989 TFLOP/s {total_flops / (0.4 * 989.4e12):.0f} s, at 15% {total_flops / (0.15 * 989.4e12):.0f} s of "
          "compute, plus the fixed cost of each row (build, apply, free)")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write every row, the anchor and the goals here")
    parser.add_argument("--tiny", action="store_true",
                        help="tiny shapes (2 layers, hidden 64, vocab 1000, seq 32, batch 2, 3 steps): the same path")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda where available)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 3; --tiny 1)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 10; --tiny 2)")
    parser.add_argument("--only", default="", help="comma-separated shapes or shape:method rows to run "
                        "(e.g. llama-3.2-3b or bert-base:lora)")
    parser.add_argument("--budget-seconds", type=float, default=450.0,
                        help="rows not started by then are skipped (default 450: the 8-minute limit, with margin)")
    parser.add_argument("--plan", action="store_true", help="print the rows' FLOPs and predicted time; run nothing")
    args = parser.parse_args(argv)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.tiny else 3)
    args.steps = args.steps if args.steps is not None else (2 if args.tiny else 10)
    if args.warmup < 1 or args.steps < 1:
        parser.error("--warmup and --steps must be at least 1 (the first step's clock starts at the end of step 1)")
    return args


def selected(all_rows: list[Row], only: str) -> list[Row]:
    wanted = [item.strip() for item in only.split(",") if item.strip()]
    if not wanted:
        return all_rows
    return [row for row in all_rows if row.shape in wanted or f"{row.shape}:{row.label}" in wanted]


def main(argv: list[str] | None = None) -> dict:
    start = time.perf_counter()
    args = parse_args(argv)
    _common.quiet_transformers()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    all_shapes = shapes(args.tiny)
    chosen = selected(rows(), args.only)
    if args.plan:
        plan(args, chosen, all_shapes, device)
        return {}
    print(f"gpu_check{' --tiny' if args.tiny else ''}: {describe_device(device)}; {len(chosen)} rows, "
          f"{args.warmup} warm-up + {args.steps} timed steps each", flush=True)
    records = []
    for row in chosen:
        shape = all_shapes[row.shape]
        if time.perf_counter() - start > args.budget_seconds:
            records.append({"shape": shape.key, "model": shape.facts.name, "row": row.label, "method": row.method,
                            "status": "skipped", "estimate": None,
                            "reason": f"skipped: time budget ({args.budget_seconds:.0f} s) spent"})
        else:
            records.append(measure_row(row, shape, device, args.warmup, args.steps))
        print(f"  {shape.key} {row.label}: {records[-1]['status']} {records[-1].get('reason', '')} "
              f"({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    text = format_table(records)
    summary, anchor_lines = anchor_summary(records)
    print(text)
    print(f"anchor (HF peft's method comparison): Llama-3.2-3B shape, {records[0].get('dtype', '')}, batch "
          f"{all_shapes['llama-3.2-3b'].batch_size} x {all_shapes['llama-3.2-3b'].seq_len}, {args.steps} timed steps"
          + (" — tiny shapes: the goals are not meaningful here" if args.tiny else ""))
    print("\n".join(anchor_lines))
    wall = time.perf_counter() - start
    print(f"wall time {wall:.1f} s")
    result = {"device": describe_device(device), "tiny": args.tiny, "warmup_steps": args.warmup,
              "timed_steps": args.steps, "rows": records, "anchor": summary, "table": text,
              "anchor_lines": anchor_lines, "wall_seconds": wall,
              "shapes": {key: {"facts": {k: v for k, v in asdict(shape.facts).items() if k != "config"},
                               "task": shape.task, "batch_size": shape.batch_size, "seq_len": shape.seq_len}
                         for key, shape in all_shapes.items()}}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1, default=str))
    return result


if __name__ == "__main__":
    main()
