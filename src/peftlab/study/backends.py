"""Where a study's runs execute: in this process, in local worker processes, or as Ray tasks.

With --shared-base K the local backend trains up to K runs of the same LoRA-family method (seeds, sizes apart)
together on one frozen base (`execute_stacked`; each run still gets its own record), and runs them one after
another as below when they do not stack. Every backend executes a run with the same function (`execute_run`) on the same context (task, tokenizer,
encodings, robustness suite built the same way from the CompareConfig, :func:`peftlab.study.inputs.run_context`),
so a run's metrics do not depend on where it ran. Worker processes come from `concurrent.futures` and remote runs
are Ray tasks declaring their CPU/GPU needs: no scheduler is written here. The driver
(:mod:`peftlab.study.driver`) decides which runs to execute and stores what they return.
"""

from __future__ import annotations

import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from typing import Any, Callable, Iterator

import torch
from accelerate import Accelerator

from peftlab.errors import ConfigError
from peftlab.quiet import quiet_libraries
from peftlab.study.inputs import RunContext, run_context, run_inputs
from peftlab.methods import get_method
from peftlab.study.run import run_method, run_stacked
from peftlab.study.runs import RunSpec, shared_base_groups


def execute_run(context: RunContext, spec: RunSpec) -> dict[str, Any]:
    return run_method(context.study, spec.method, run_inputs(context, spec.train_size), context.accelerator,
                      context.out, spec,
                      on_step=context.progress.step if context.progress.shows_steps else None)


def backend_runs(context: RunContext, specs: list[RunSpec], started: Callable[[RunSpec], None]) -> Iterator[tuple[RunSpec, dict]]:
    """(spec, record) for every spec, as the runs finish, on the configured backend."""
    config = context.config
    if not specs:
        return iter(())
    if config.backend == "ray":
        return _ray_runs(config, specs, started)
    if config.workers > 1:
        return _process_runs(config, specs, started)
    return _local_runs(context, specs, started)


def execute_stacked(context: RunContext, specs: list[RunSpec]) -> list[dict[str, Any]] | None:
    """The runs trained together on one base (--shared-base); None when they do not stack (run them alone)."""
    return run_stacked(context.study, specs, run_inputs(context, specs[0].train_size), context.accelerator,
                       context.out, on_step=context.progress.step if context.progress.shows_steps else None)


def may_stack(spec: RunSpec) -> bool:
    """Whether a run is a candidate for shared-base training: a LoRA-family method. Whether its runs really stack
    (no DoRA, no lora_dropout, a classifier) is decided on the built models (peftlab.train.stacked)."""
    return get_method(spec.method).estimate_plan == "lora"


def _local_runs(context: RunContext, specs: list[RunSpec], started) -> Iterator[tuple[RunSpec, dict]]:
    for group in shared_base_groups(specs, context.config.shared_base, may_stack):
        for spec in group:
            started(spec)
        records = execute_stacked(context, group) if len(group) > 1 else None
        if records is not None:
            yield from zip(group, records)
            continue
        for spec in group:
            yield spec, execute_run(context, spec)


_WORKER_CONTEXT: dict[str, RunContext] = {}


def worker_run(config, spec: RunSpec, threads: int) -> dict[str, Any]:
    """A run in a worker process or Ray task: build (once per process) the study's context, then run it."""
    torch.set_num_threads(threads)
    quiet_libraries()
    key = repr(config)
    if key not in _WORKER_CONTEXT:
        _WORKER_CONTEXT.clear()
        _WORKER_CONTEXT[key] = run_context(config, Accelerator(cpu=not torch.cuda.is_available()))
    return execute_run(_WORKER_CONTEXT[key], spec)


def _threads_per_run(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers)


def _process_runs(config, specs: list[RunSpec], started) -> Iterator[tuple[RunSpec, dict]]:
    threads = _threads_per_run(config.workers)
    with ProcessPoolExecutor(max_workers=config.workers, mp_context=get_context("spawn")) as pool:
        futures = {}
        for spec in specs:
            started(spec)
            futures[pool.submit(worker_run, config, spec, threads)] = spec
        while futures:
            done, _ = wait(futures, return_when=FIRST_COMPLETED)
            for future in done:
                yield futures.pop(future), future.result()


def _ray_runs(config, specs: list[RunSpec], started) -> Iterator[tuple[RunSpec, dict]]:
    try:
        import ray
    except ImportError:
        raise ConfigError("--backend ray needs Ray: pip install 'ray[default]'") from None
    if not ray.is_initialized():
        try:
            if config.ray_address:
                ray.init(address=config.ray_address, log_to_driver=False)
            else:
                ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                         runtime_env={"env_vars": _worker_environment()})
        except ConnectionError as error:
            raise ConfigError(f"cannot reach the Ray cluster at {config.ray_address}: {error}") from None
    gpus = 1 if torch.cuda.is_available() else 0
    cpus = max(1, int(ray.available_resources().get("CPU", 1)) // max(1, len(specs))) if not gpus else 1
    remote = ray.remote(num_cpus=cpus, num_gpus=gpus)(worker_run)
    futures = {}
    for spec in specs:
        started(spec)
        futures[remote.remote(config, spec, cpus)] = spec
    while futures:
        done, _ = ray.wait(list(futures), num_returns=1)
        for future in done:
            yield futures.pop(future), ray.get(future)


def _worker_environment() -> dict[str, str]:
    """Environment a local Ray's workers need to import this peftlab and stay offline."""
    keys = ("PYTHONPATH", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME", "TOKENIZERS_PARALLELISM")
    return {key: os.environ[key] for key in keys if key in os.environ}
