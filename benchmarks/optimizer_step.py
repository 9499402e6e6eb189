"""Benchmark — the optimizer step: AdamW's per-tensor loop (torch's default on CPU) against its fused kernel, which
peftlab's trainer uses where the parameters allow it (peftlab.train.trainer.adamw).

For each method, the model is built exactly as `compare` builds a run; every trainable parameter gets a random
gradient, and the two optimizers (same groups, same rate) take their steps in turn (A, B, A, B, ...). It prints
each side's seconds per step (min / median / max), the per-repeat ratio fused / loop, and the largest difference
between the parameters the two reach after the same steps from the same start (the same update, within float
rounding).

    python benchmarks/optimizer_step.py            # full and lora on MiniLM-L6, 10 steps, 5 repeats
"""

from __future__ import annotations

import argparse
import statistics
import time

import _common  # noqa: F401  (sets the offline environment first)
import torch
from _common import build, interleaved, load_data, machine, quiet_transformers, ratios, set_threads, spread, table

from peftlab.train.trainer import adamw, parameter_groups


def stepper(model, learning_rate: float, fused: bool, steps: int):
    """A callable that takes ``steps`` optimizer steps on a copy of ``model``'s trainable parameters; its seconds."""
    parameters = [p.detach().clone().requires_grad_(True) for p in model.parameters() if p.requires_grad]
    generator = torch.Generator().manual_seed(0)  # the same gradients for both sides
    for parameter in parameters:
        parameter.grad = torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype)
    groups = [{"params": [p for p in parameters if p.ndim >= 2], "weight_decay": 0.01},
              {"params": [p for p in parameters if p.ndim < 2], "weight_decay": 0.0}]
    optimizer = adamw(groups, learning_rate) if fused else torch.optim.AdamW(groups, lr=learning_rate)

    def run() -> float:
        start = time.perf_counter()
        for _ in range(steps):
            optimizer.step()
        return (time.perf_counter() - start) / steps
    return run, parameters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="full,lora")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    set_threads(args.threads)
    quiet_transformers()
    print(machine())
    ref, tokenizer, task, _ = load_data("minilm", 64, 64)
    rows = []
    for method in args.methods.split(","):
        model, learning_rate = build(ref, task, tokenizer, method)
        assert parameter_groups(model, 0.01)  # the trainer's groups exist for this method
        loop, loop_parameters = stepper(model, learning_rate, False, args.steps)
        fused, fused_parameters = stepper(model, learning_rate, True, args.steps)
        seconds = interleaved({"loop": loop, "fused": fused}, args.repeats)
        difference = max((a - b).abs().max().item() for a, b in zip(loop_parameters, fused_parameters))
        trainable = sum(p.numel() for p in loop_parameters)
        rows.append([method, f"{trainable / 1e6:.2f} M", spread([s * 1e3 for s in seconds["loop"]]),
                     spread([s * 1e3 for s in seconds["fused"]]),
                     f"{statistics.median(ratios(seconds['fused'], seconds['loop'])):.2f}", f"{difference:.1e}"])
    print(table(["method", "trainable", "loop ms/step min/med/max", "fused ms/step min/med/max",
                 "fused/loop (median)", "max |param diff|"], rows))


if __name__ == "__main__":
    main()
