"""Benchmark 2 — frozen-base efficiency: LoRA step time / FFT step time, and LoRA peak memory / FFT peak memory.

One training step as peftlab's trainer takes it (forward, backward, clip at 1.0, AdamW, zero_grad) on the same
real batches (Rotten Tomatoes, length-grouped, dynamic padding), for full fine-tuning and LoRA variants, each
built fresh from the same base. Times are interleaved (full, lora, ..., full, lora, ...). Peak memory is the
traced peak of live tensor bytes over a step (peftlab.estimate.trace: parameters, gradients, optimizer state,
activations), split into its parts. The compute bound for the time ratio is about 2/3 (4N versus 6N FLOPs
per token); target ≤ 0.72 on MiniLM.

    python benchmarks/frozen_base.py --quick                  # MiniLM (batch 32) and SmolLM2-135M (batch 8), few steps
    python benchmarks/frozen_base.py                          # both models at batch 32, more steps and repeats
    python benchmarks/frozen_base.py --profile --models minilm   # plus the top operators of one step per variant
    python benchmarks/frozen_base.py --compile --models minilm   # plus full and LoRA under torch.compile

With `--compile` the compiled variants are warmed up on every batch once (compiling for the dynamic lengths) and
that warm-up time is printed: it is what a run pays before the compiled step is any faster.
"""

from __future__ import annotations

import argparse
import json
import time

import _common  # noqa: F401  (sets the offline environment first)
import torch
from _common import (build, interleaved, load_data, machine, quiet_transformers, ratios, set_threads, spread,
                     table, timed)

# LoRA variants measured next to FFT: peftlab's defaults ("lora"), and LoRA with dropout 0.1 on its input
# (peftlab's default before this benchmark: see docs/PERFORMANCE.md).
VARIANTS = {
    "full": ("full", {}),
    "lora": ("lora", {}),
    "lora dropout 0.0": ("lora", {"lora_dropout": 0.0}),
    "lora dropout 0.1": ("lora", {"lora_dropout": 0.1}),
}


def step(model, optimizer, trainable, batch) -> None:
    model(**batch).loss.backward()
    torch.nn.utils.clip_grad_norm_(trainable, 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


# With --compile: the same two recipes under torch.compile (inductor; dynamic shapes, as padding varies per batch).
COMPILED = {
    "full compiled": ("full", {}),
    "lora compiled": ("lora", {}),
}


def prepared(ref, task, tokenizer, method, overrides, compiled: bool = False):
    from peftlab.train.trainer import parameter_groups

    model, learning_rate = build(ref, task, tokenizer, method, overrides)
    model.train()
    optimizer = torch.optim.AdamW(parameter_groups(model, 0.01), lr=learning_rate)
    trainable = [p for p in model.parameters() if p.requires_grad]
    return (torch.compile(model, dynamic=True) if compiled else model), optimizer, trainable


def memory_parts(model, batch) -> dict[str, int]:
    """Traced peak of one step, and its parts: weights, gradients, optimizer state, activations (the rest)."""
    from peftlab.estimate.trace import measure_peak_bytes

    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    gradients = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    traced = measure_peak_bytes(model, batch)
    optimizer_state = 2 * gradients  # AdamW: two fp32 moments per trainable weight
    activations = traced["peak"] - weights - gradients - optimizer_state
    return {"peak": traced["peak"], "weights": weights, "gradients": gradients,
            "optimizer_state": optimizer_state, "activations_and_batch": activations}


def profile_step(name, model, optimizer, trainable, batch, rows: int) -> None:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step(model, optimizer, trainable, batch)
    print(f"\nprofile of one step: {name}")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def run_model(model_name: str, batch_size: int, steps: int, repeats: int, variants: dict, profile: bool,
              compiled: dict | None = None) -> dict:
    from peftlab.tasks.encode import train_loader

    ref, tokenizer, task, encoded = load_data(model_name, max(batch_size * steps * 2, 256), 128)
    loader = train_loader(encoded["train"], tokenizer, batch_size, 0)
    batches = [batch for _, batch in zip(range(steps), loader)]
    print(f"\n{model_name}: batch {batch_size}, {steps} steps per repeat (padded lengths "
          f"{[b['input_ids'].shape[1] for b in batches]}), {repeats} repeats interleaved")
    built = {name: prepared(ref, task, tokenizer, method, overrides) for name, (method, overrides) in variants.items()}
    for name, parts in built.items():
        step(*parts, batches[0])  # warm-up: optimizer state exists, first-call costs paid
    warm_up = {}
    for name, (method, overrides) in (compiled or {}).items():
        built[name] = prepared(ref, task, tokenizer, method, overrides, compiled=True)
        start = time.perf_counter()
        for batch in batches:  # compiles (and recompiles for new lengths until the shapes are marked dynamic)
            step(*built[name], batch)
        warm_up[name] = time.perf_counter() - start
        print(f"  {name}: warm-up over the {steps} batches (compiling) {warm_up[name]:.1f} s")

    def runner(name):
        return lambda: timed(lambda: [step(*built[name], batch) for batch in batches]) / steps

    seconds = interleaved({name: runner(name) for name in built}, repeats)
    memory = {name: memory_parts(built[name][0], batches[0]) for name in built if name not in warm_up}
    if profile:
        for name, parts in built.items():
            profile_step(name, *parts, batches[0], rows=14)
    rows = []
    for name in built:
        if name in warm_up:  # the traced peak is of the eager step; compiled steps are only timed
            rows.append([name, spread(seconds[name]), spread(ratios(seconds[name], seconds["full"])),
                         *["-"] * 6])
            continue
        rows.append([name, spread(seconds[name]), spread(ratios(seconds[name], seconds["full"])),
                     f"{memory[name]['peak'] / 2**20:.0f}", f"{memory[name]['peak'] / memory['full']['peak']:.2f}",
                     *(f"{memory[name][part] / 2**20:.0f}" for part in
                       ("weights", "gradients", "optimizer_state", "activations_and_batch"))])
    print(table(["variant", "s/step min/med/max", "time / full", "peak MiB", "peak / full", "weights",
                 "grads", "optim", "activ.+batch"], rows))
    return {"seconds_per_step": seconds, "memory_bytes": memory, "compile_warm_up_seconds": warm_up}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--models", default="minilm,smollm2-135m")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: physical cores)")
    parser.add_argument("--profile", action="store_true", help="print the top operators of one step per variant")
    parser.add_argument("--compile", action="store_true", help="also time full and LoRA under torch.compile")
    parser.add_argument("--json", default=None, help="also write the raw numbers to this file")
    args = parser.parse_args()
    set_threads(args.threads)
    quiet_transformers()
    print(f"machine: {machine()}")
    results = {}
    for model_name in args.models.split(","):
        small = args.quick and model_name != "minilm"
        batch_size = 8 if small else args.batch_size
        steps = args.steps or (2 if small else 4 if args.quick else 10)
        repeats = args.repeats or (2 if small else 3 if args.quick else 5)
        results[model_name] = run_model(model_name, batch_size, steps, repeats, VARIANTS, args.profile,
                                        COMPILED if args.compile else None)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main()
