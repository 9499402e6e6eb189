"""Benchmark 1 — step overhead: peftlab's training loop versus a minimal hand-written PyTorch + peft loop.

Both train a fresh copy of the same model (same seed, same method, same length-grouped batches with dynamic
padding) for the same number of steps: AdamW over the trainable parameters, linear warm-up/decay, gradient
clipping at 1.0. peftlab's time is its own `train_seconds` (the training loop, without the per-epoch
validation); the hand loop is timed around its loop. Target: peftlab / hand ≤ 1.05 for every method.

    python benchmarks/step_overhead.py --quick          # minutes on 2 cores: full and lora, 8 steps, 3 repeats
    python benchmarks/step_overhead.py                  # the seven default methods, 30 steps, 5 repeats
"""

from __future__ import annotations

import argparse

import _common  # noqa: F401  (sets the offline environment first)
import torch
from _common import (build, interleaved, load_data, machine, quiet_transformers, ratios, set_threads, spread,
                     table, timed)


def hand_loop(model, learning_rate: float, loader, steps: int) -> None:
    """What a user writes by hand: the same optimizer, schedule and clipping, nothing else."""
    from transformers import get_linear_schedule_with_warmup

    from peftlab.train.trainer import parameter_groups

    optimizer = torch.optim.AdamW(parameter_groups(model, 0.01), lr=learning_rate)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(0.06 * steps), steps)
    trainable = [p for p in model.parameters() if p.requires_grad]
    model.train()
    for step, batch in enumerate(loader):
        if step == steps:
            break
        model(**batch).loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="full and lora, 8 steps, 3 repeats")
    parser.add_argument("--methods", default=None, help="comma-separated (default: the seven default methods)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: physical cores)")
    args = parser.parse_args()
    set_threads(args.threads)
    quiet_transformers()
    from accelerate import Accelerator

    from peftlab.methods import DEFAULT_METHODS
    from peftlab.tasks.encode import train_loader
    from peftlab.train import TrainConfig, train

    methods = args.methods.split(",") if args.methods else (["full", "lora"] if args.quick else list(DEFAULT_METHODS))
    steps = args.steps or (8 if args.quick else 30)
    repeats = args.repeats or (3 if args.quick else 5)
    print(f"machine: {machine()}")
    print(f"model {args.model}, batch {args.batch_size}, {steps} steps per repeat, {repeats} repeats (interleaved)")
    ref, tokenizer, task, encoded = load_data(args.model, max(steps * args.batch_size, 256), 128)
    accelerator = Accelerator()

    rows = []
    for method in methods:
        def peftlab_run() -> float:
            model, learning_rate = build(ref, task, tokenizer, method)
            config = TrainConfig(learning_rate=learning_rate, max_steps=steps, batch_size=args.batch_size)
            return train(model, encoded, tokenizer, config, accelerator, task.num_labels).train_seconds

        def hand_run() -> float:
            model, learning_rate = build(ref, task, tokenizer, method)
            loader = train_loader(encoded["train"], tokenizer, args.batch_size, 0)
            return timed(lambda: hand_loop(model, learning_rate, loader, steps))

        print(f"{method}:", flush=True)
        seconds = interleaved({"peftlab": peftlab_run, "hand": hand_run}, repeats)
        per_step = {name: [s / steps for s in values] for name, values in seconds.items()}
        rows.append([method, spread(per_step["peftlab"]), spread(per_step["hand"]),
                     spread(ratios(seconds["peftlab"], seconds["hand"]))])
    print()
    print(table(["method", "peftlab s/step min/med/max", "hand loop s/step", "ratio peftlab/hand"], rows))


if __name__ == "__main__":
    main()
