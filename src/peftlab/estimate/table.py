"""The terminal table of `peftlab estimate`: one row per method."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from peftlab.estimate.gpus import GIB, GPUS


def _gib(nbytes: float) -> str:
    return f"{nbytes / GIB:.1f}" if nbytes >= 0.05 * GIB else f"{nbytes / GIB:.2f}"


def _count(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}" if n < 10 * size else f"{n / size:.1f}{unit}"
    return str(n)


def _bytes(nbytes: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if nbytes >= size:
            return f"{nbytes / size:.1f} {unit}"
    return f"{nbytes:.0f} B"


def _smallest_fit(fits: list[str]) -> str:
    if not fits:
        return "none (>141 GB)"
    smallest = min((GPUS[name] for name in fits), key=lambda gpu: gpu.memory_gib)
    return f"{smallest.name}+" if len(fits) > 1 else smallest.name


def print_estimate(results: list[dict[str, Any]], settings: dict[str, Any], console: Console) -> None:
    """Memory in GiB (2^30 bytes); FLOPs per token in GFLOP; step time on the settings' GPU."""
    if not results:
        return
    first = results[0]
    console.print(
        f"[bold]{first['model']}[/bold] ({first['task']}), batch {settings['batch_size']} x {settings['seq_len']} "
        f"tokens" + (f" -> {settings['target_len']} target tokens" if settings.get("target_len") else "")
        + f", {settings['dtype']}, {settings['optimizer']}"
        + (", gradient checkpointing" if settings["grad_checkpointing"] else "")
        + (", optimizer step in backward" if settings["optimizer_in_backward"] else "")
        + f", recipe {settings['recipe']}; step time on {first['gpu']} at {settings['utilisation']:.0%} utilisation"
    )
    table = Table("method", "trainable / total", "weights", "grads", "optim", "activations\n(no ckpt / ckpt)",
                  "peak GiB", "GFLOP/token\nfwd + bwd(act) + bwd(w)", "step s", "checkpoint", "fits on")
    for result in results:
        memory, flops = result["memory_bytes"], result["flops_per_token"]
        chosen = "ckpt" if settings["grad_checkpointing"] else "no ckpt"
        activations = f"{_gib(memory['activations_no_checkpointing'])} / {_gib(memory['activations_checkpointing'])}"
        flop_text = (f"{flops['forward'] / 1e9:.1f} + {flops['backward_activations'] / 1e9:.1f} + "
                     f"{flops['backward_weights'] / 1e9:.1f}")
        if flops["recompute"]:
            flop_text += f" (+{flops['recompute'] / 1e9:.1f} recompute)"
        table.add_row(
            result["method"], f"{_count(result['trainable_params'])} / {_count(result['total_params'])}",
            _gib(memory["weights"]), _gib(memory["gradients"]), _gib(memory["optimizer"]),
            f"{activations} [{chosen}]", f"[bold]{_gib(memory['total'])}[/bold]", flop_text,
            f"{result['step_seconds']:.2f}", _bytes(result["checkpoint_bytes"]), _smallest_fit(result["fits_on"]),
        )
    console.print(table)
    approximated = first.get("architecture", {}).get("approximated") or []
    if approximated:
        console.print(f"model type modelled generically; approximated: {'; '.join(approximated)}")
    console.print("peak = weights + optimizer + max(activations, gradients + optimizer-step temporaries); "
                  "fits on: GPUs with 10% of their memory to spare (see docs/ESTIMATE.md)")
