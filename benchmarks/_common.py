"""Shared pieces of the benchmarks: offline set-up, the real data, interleaved timing, min/median/max tables.

Every benchmark measures its ratios side by side in one process, interleaving the candidates (A, B, A, B, ...)
so that a busy machine slows all of them alike; it prints min / median / max over the repeats.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import Callable  # noqa: E402

import torch  # noqa: E402


def set_threads(threads: int | None) -> None:
    """Intra-op threads: the physical cores by default (hyper-threads do not add matmul throughput)."""
    import psutil

    torch.set_num_threads(threads or psutil.cpu_count(logical=False) or 1)


def quiet_transformers() -> None:
    from peftlab.quiet import quiet_libraries  # the CLI's own quieting

    quiet_libraries()


def machine() -> str:
    import psutil

    cores = psutil.cpu_count(logical=False)
    load = os.getloadavg()[0]
    return (f"{platform.machine()}, {cores} physical cores, torch {torch.__version__}, {torch.get_num_threads()} "
            f"threads, load average {load:.1f} at start (above {cores}: the machine is shared)")


def load_data(model: str, train_examples: int, max_length: int, seed: int = 0):
    """(model_ref, tokenizer, task, encoded): the default study's data, tokenized once."""
    from peftlab.models import load_tokenizer, resolve_model
    from peftlab.tasks import load_task
    from peftlab.tasks.encode import encode_task

    ref = resolve_model(model)
    tokenizer = load_tokenizer(ref)
    task = load_task("rotten_tomatoes", max_train_examples=train_examples, max_eval_examples=64, seed=seed)
    return ref, tokenizer, task, encode_task(task, tokenizer, max_length)


def build(ref, task, tokenizer, method: str, overrides: dict | None = None, seed: int = 0):
    """(model, learning_rate): a fresh base with the method applied, exactly as `compare` builds a run."""
    from accelerate.utils import set_seed

    from peftlab.methods import get_method
    from peftlab.models import load_classifier

    set_seed(seed)
    base = load_classifier(ref, task.label_names, tokenizer.pad_token_id)
    recipe = get_method(method)
    settings, learning_rate = recipe.resolve(base, overrides or {})
    return recipe.apply(base, settings), learning_rate


def interleaved(candidates: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Run each candidate once per repeat, in turn (A, B, A, B, ...); each returns its own seconds."""
    seconds: dict[str, list[float]] = {name: [] for name in candidates}
    for repeat in range(repeats):
        for name, run in candidates.items():
            seconds[name].append(run())
            print(f"  repeat {repeat + 1}/{repeats} {name}: {seconds[name][-1]:.3f}", file=sys.stderr, flush=True)
    return seconds


def spread(values: list[float]) -> str:
    return f"{min(values):.3f} / {statistics.median(values):.3f} / {max(values):.3f}"


def ratios(numerator: list[float], denominator: list[float]) -> list[float]:
    """Per-repeat ratios (repeat i of A over repeat i of B: measured next to each other)."""
    return [a / b for a, b in zip(numerator, denominator)]


def timed(run: Callable[[], None]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = [" | ".join(str(cell).ljust(width) for cell, width in zip(row, widths)) for row in [header, *rows]]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    return "\n".join(lines)
