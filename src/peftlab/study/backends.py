"""Where a study's runs execute, and the driver that keeps the store: local in-process, local worker processes, Ray.

The driver (the process that called `compare`) plans the runs, skips those the store holds as finished, hands the
others to a backend, and writes each returned record to the store in one transaction, then rewrites results.json
from it. Every backend executes a run with the same function (`execute_run`) on the same context (task, tokenizer,
encodings, robustness suite built the same way from the CompareConfig), so a run's metrics do not depend on where
it ran. Worker processes come from `concurrent.futures` and remote runs are Ray tasks declaring their CPU/GPU
needs: no scheduler is written here.
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from accelerate import Accelerator

from peftlab.errors import ConfigError
from peftlab.study.runs import RunSpec, plan_runs
from peftlab.study.store import FINISHED, STORE_FILE, StudyStore

BACKENDS = ("local", "ray")


def check_execution(config) -> None:
    if config.backend not in BACKENDS:
        raise ConfigError(f"--backend must be one of {', '.join(BACKENDS)}, got {config.backend!r}")
    if config.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {config.workers}")
    if config.workers > 1 and config.backend != "local":
        raise ConfigError("--workers is for --backend local; Ray places runs on the cluster's CPUs/GPUs itself")
    if config.ray_address and config.backend != "ray":
        raise ConfigError("--ray-address needs --backend ray")
    if config.seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {config.seeds}")
    unknown = [name for name in config.tune if name != "lr"]
    if unknown:
        raise ConfigError(f"--tune supports lr only, got {', '.join(unknown)}")
    if not 2 <= config.tune_points <= 7:
        raise ConfigError(f"--tune-points must be between 2 and 7, got {config.tune_points}")


@dataclass
class RunContext:
    """What every run of a study shares, built once per process from the CompareConfig."""

    config: Any
    study: Any
    encoded: Any
    accelerator: Accelerator

    @property
    def out(self) -> Path:
        return Path(self.config.out)


def default_accelerator(config) -> Accelerator:
    """accelerate's default with the study's precision (--bf16), except that a multi-process launch (torchrun,
    accelerate launch) without CUDA must ask for the CPU explicitly to get a gloo process group: Accelerator() alone
    leaves each process on its own."""
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1
    return config.memory_options().accelerator(cpu=launched and not torch.cuda.is_available())


def run_context(config, accelerator: Accelerator | None = None) -> RunContext:
    from peftlab.study.compare import build_robustness_suite, prepare_study
    from peftlab.tasks.encode import encode_task

    study = prepare_study(config)
    accelerator = accelerator or default_accelerator(config)
    encoded = encode_task(study.task, study.tokenizer, config.max_length)
    study.robustness = build_robustness_suite(study)
    return RunContext(config, study, encoded, accelerator)


def execute_run(context: RunContext, spec: RunSpec) -> dict[str, Any]:
    from peftlab.study.compare import run_method

    return run_method(context.study, spec.method, context.encoded, context.accelerator, context.out, spec)


# --- the driver ---------------------------------------------------------------------------------------------------

def study_identity(context: RunContext) -> dict[str, Any]:
    """What must not change for a store's finished runs to be reused (methods and seeds may be added)."""
    config, study = context.config, context.study
    return {
        "model": config.model, "model_path": study.model_ref.path, "data": config.data, "subset": config.subset,
        "split": config.split, "columns": study.task.describe().get("columns"), "dataset_sha256": study.task.sha256,
        "budget": config.budget(), "seed": config.seed, "method_overrides": study.overrides,
        "robustness": study.robustness.describe()["settings"] if study.robustness else None,
        "task_type": study.task.task_type, "memory": asdict(config.memory_options()),
    }


def run_study(context: RunContext, on_run_done: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Plan, resume and execute the study; returns the results (also written to OUT/results.json)."""
    from peftlab.study.compare import study_header
    from peftlab.study.summary import derive_results, write_results
    from peftlab.study.tuning import tune_learning_rates

    config, accelerator, out = context.config, context.accelerator, context.out
    main = accelerator.is_main_process
    if accelerator.num_processes > 1 and (config.tune or config.backend != "local" or config.workers > 1):
        raise ConfigError("under accelerate launch / torchrun every run uses all processes: drop --tune, --workers "
                          "and --backend ray there")
    store = StudyStore(out / STORE_FILE) if main else None
    header = study_header(context.study, accelerator)
    if main:
        store.check_identity(study_identity(context))
        first = store.get("header")
        header["started_at"] = first["started_at"] if first else header["started_at"]
        header["seeds"] = config.seeds
        store.put("header", header)
    accelerator.wait_for_everyone()

    tuning = tune_learning_rates(context, store) if "lr" in config.tune else None
    chosen = {method: result["chosen_learning_rate"] for method, result in (tuning or {}).items()
              if result.get("chosen_learning_rate") is not None}
    specs = plan_runs(context.study.methods, config.seed, config.seeds, chosen)
    records: dict[str, dict] = {}
    pending = []
    for spec in specs:
        row = store.run(spec.key) if main else None
        if row and row["status"] in FINISHED and not (config.retry_failed and row["status"] == "failed"):
            records[spec.key] = row["record"]
        else:
            pending.append(spec)
    pending = _broadcast(accelerator, pending)

    def started(spec: RunSpec) -> None:
        if main:
            store.start(spec.key, spec.phase, spec.method, spec.seed, spec.learning_rate)

    for spec, record in backend_runs(context, pending, started):
        if main:
            record["timing"]["attempts"] = store.run(spec.key)["attempts"]
            store.finish(spec.key, record, record["timing"]["wall_seconds"])
            shutil.rmtree(spec.checkpoint(out).parent, ignore_errors=True)  # after the record is committed
        records[spec.key] = record
        if main:
            write_results(out, derive_results(header, specs, records, tuning))
        if on_run_done:
            on_run_done(record)
    results = derive_results(header, specs, records, tuning)
    if main:
        write_results(out, results)
    return results


def _broadcast(accelerator: Accelerator, value):
    """The main process's value on every process (the main process alone reads the store)."""
    if accelerator.num_processes == 1:
        return value
    from accelerate.utils import broadcast_object_list

    box = [value]
    broadcast_object_list(box, from_process=0)
    return box[0]


# --- backends -----------------------------------------------------------------------------------------------------

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


def _local_runs(context: RunContext, specs: list[RunSpec], started) -> Iterator[tuple[RunSpec, dict]]:
    for spec in specs:
        started(spec)
        yield spec, execute_run(context, spec)


_WORKER_CONTEXT: dict[str, RunContext] = {}


def worker_run(config, spec: RunSpec, threads: int) -> dict[str, Any]:
    """A run in a worker process or Ray task: build (once per process) the study's context, then run it."""
    from peftlab.quiet import quiet_libraries

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
