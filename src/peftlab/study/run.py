"""One run of a study: build → train → test → save, then the probes (:mod:`peftlab.study.probes`).

`run_method` returns the run's record, the unit the store keeps and results.json lists: ``method``, ``seed``,
``run_key``, ``config`` (the method's settings and learning rate), ``status`` (``ok``; ``refused`` with its
``reason`` when the method does not apply to the model, decided before training; or ``failed`` with its ``reason``,
the traceback in OUT/logs/<run>.log), ``metrics`` (test, and the best validation epoch), ``cost``,
``curve``, ``train_size`` (with --train-sizes only), ``test_correct`` (per test example, right or wrong), ``stopped`` (early stopping's where and why, or None), ``artifact``, ``timing`` and one sub-record per probe (``latency``, ``estimate``, ``robustness``).
Only building, training, testing and saving can fail a run; a probe's failure stays in its own record.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from accelerate import Accelerator
from accelerate.utils import set_seed

from peftlab.errors import MethodNotApplicable
from peftlab.evaluate.kinds import kind_evaluation
from peftlab.files import RUN_FILE, RUNS_DIR, short_reason, write_json_atomic, write_log
from peftlab.measure import PeakMemory, Phases, directory_bytes, parameter_counts, release_free_memory
from peftlab.methods import get_method
from peftlab.models import head_module_names
from peftlab.study.inputs import Study
from peftlab.study.probes import TrainedRun, run_probes
from peftlab.study.runs import RunSpec
from peftlab.train import RunStack, TrainConfig, train
from peftlab.train.checkpoint import checkpoint_epoch

log = logging.getLogger(__name__)

TOKENIZER_FILES = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
                   "merges.txt", "vocab.json", "chat_template.jinja", "added_tokens.json", "tokenizer.model"}


def run_method(study: Study, name: str, encoded, accelerator: Accelerator, out: Path,
               run: RunSpec | None = None, on_step: Callable[[int, int, int, int], None] | None = None) -> dict[str, Any]:
    """Train, evaluate, save and probe one run of a method; a failure becomes a `failed` record with its reason.
    ``on_step`` is the training loop's step callback (:func:`peftlab.train.train`)."""
    run = run or RunSpec(name, study.config.seed)
    record = new_record(run)
    start, phases = time.perf_counter(), Phases()
    resumed = checkpoint_epoch(run.checkpoint(out))
    try:
        with PeakMemory(accelerator.device) as peak:
            with phases("build"):
                model, record["config"], train_config = build_run(study, name, run, accelerator,
                                                                  len(encoded["train"]))
                counts = parameter_counts(model)
            with phases("train"):  # includes the validation pass after every epoch
                outcome = train(model, encoded, study.tokenizer, train_config, accelerator, study.task.num_labels,
                                run.checkpoint(out), on_step=on_step, memory=peak)
        _measure_trained(study, accelerator.unwrap_model(model), train_config, outcome, counts, peak.peak_bytes,
                         encoded, accelerator, out, record, run, phases)
    except MethodNotApplicable as error:  # decided before training: the method does not fit this model
        record["status"] = "refused"
        record["reason"] = str(error)
    except Exception as error:  # noqa: BLE001 - one run's failure must not stop the study
        _record_failure(record, error, out, run)
    finally:
        accelerator.free_memory()
        release_free_memory()
    record["timing"] = {"wall_seconds": time.perf_counter() - start, "resumed_from_epoch": resumed,
                        "phases": phases.seconds}
    return record


def total_steps(config, train_size: int, processes: int = 1, run: RunSpec | None = None) -> int:
    """The optimizer steps of a run, as the training loop counts them: its extended budget (--until-conclusive),
    --max-steps, or epochs x batches per process."""
    return ((run.max_steps if run is not None else None) or config.max_steps
            or config.epochs * max(1, math.ceil(train_size / (config.batch_size * processes))))


def build_run(study: Study, name: str, run: RunSpec, accelerator: Accelerator,
              train_size: int | None = None) -> tuple[Any, dict, TrainConfig]:
    """The model (method applied, on the device), its settings and the training config of one run or tuning
    trial: the study's base model, memory options, method overrides and budget, with the run's seed and rate.
    ``train_size`` (training examples) gives the run's length in steps to a method that needs it (AdaLoRA)."""
    config, task, method = study.config, study.task, get_method(name)
    set_seed(run.seed)
    memory = config.memory_options()
    base = task.kind.load_model(study.model_ref, task.label_names, study.tokenizer.pad_token_id, **memory.load_kwargs())
    base = memory.prepare(base, method)
    overrides = {**study.overrides.get(name, {}), **run.overrides()}
    settings, learning_rate = method.resolve(base, overrides)
    head_rate = method.head_rate(overrides) if task.kind.fresh_head else None
    if train_size is not None:
        settings = method.run_settings(settings, total_steps(config, train_size, accelerator.num_processes, run),
                                       overrides)
    method.check_applies(base, settings)  # MethodNotApplicable: the run is refused, nothing trains
    model = method.apply(base, settings).to(accelerator.device)
    model = method.bind_task(model, settings, task.label_names, study.tokenizer, config.max_length)
    train_config = TrainConfig(
        learning_rate=learning_rate, epochs=config.epochs, max_steps=run.max_steps or config.max_steps,
        batch_size=config.batch_size, seed=run.seed, selection_metric=task.selection_metric,
        evaluations_per_epoch=config.evaluations_per_epoch, patience=config.patience,
        evaluate=kind_evaluation(task.kind).evaluate, trains=method.trains, after_step=method.after_step,
        head_learning_rate=head_rate, head_modules=tuple(head_module_names(base)),
    )
    rates = {"learning_rate": learning_rate, **({"head_learning_rate": head_rate} if head_rate else {})}
    return model, {**settings, **rates}, train_config


def new_record(run: RunSpec) -> dict[str, Any]:
    record: dict[str, Any] = {"method": run.method, "seed": run.seed, "run_key": run.key, "config": {},
                              "status": "ok", "metrics": {}, "cost": {}, "curve": {}}
    if run.train_size is not None:  # --train-sizes: the examples of the training split this run trained on
        record["train_size"] = run.train_size
    if run.max_steps is not None:  # --until-conclusive: the budget this run was extended to
        record["extended_to_steps"] = run.max_steps
    return record


def _record_failure(record: dict, error: Exception, out: Path, run: RunSpec) -> None:
    record["status"] = "failed"
    record["reason"] = short_reason(error, limit=10_000)
    write_log(out, run.artifact_name, traceback.format_exc())


def run_stacked(study: Study, runs: list[RunSpec], encoded, accelerator: Accelerator, out: Path,
                on_step: Callable[[int, int, int, int], None] | None = None) -> list[dict[str, Any]] | None:
    """Train ``runs`` together on one frozen base (--shared-base; :mod:`peftlab.train.stacked`), each built as
    :func:`run_method` builds it, then test, save and probe each as it does; their records. None when they do not
    stack, a run is refused, or the stacked training fails: the caller then runs them one after another with
    :func:`run_method` (a run's epoch checkpoints are the same either way, so it continues from them).

    Each record is the run's own; its ``train`` phase and ``cost.train_seconds`` are the stacked training's wall
    time divided by the runs, and ``timing.shared_base`` says how many runs trained together."""
    start = time.perf_counter()
    records, phases = [new_record(run) for run in runs], [Phases() for _ in runs]
    resumed = [checkpoint_epoch(run.checkpoint(out)) for run in runs]
    built = []
    try:
        with PeakMemory(accelerator.device) as peak:
            for run, record, run_phases in zip(runs, records, phases):
                with run_phases("build"):
                    model, record["config"], train_config = build_run(study, run.method, run, accelerator,
                                                                      len(encoded["train"]))
                    built.append((model, train_config, parameter_counts(model)))
            stack = RunStack([model for model, _, _ in built], study.tokenizer.pad_token_id,
                             study.tokenizer.padding_side)
            train_start = time.perf_counter()
            outcomes = train(stack, encoded, study.tokenizer, [config for _, config, _ in built], accelerator,
                             study.task.num_labels, [run.checkpoint(out) for run in runs], on_step=on_step,
                             memory=peak)
            train_seconds = (time.perf_counter() - train_start) / len(runs)
    except Exception as error:  # noqa: BLE001 - NotStackable, a refusal, a diverged run: one after another instead
        log.info("shared-base training of %s: %s; the runs train one after another", ", ".join(r.key for r in runs),
                 short_reason(error))
        return None
    finally:
        accelerator.free_memory()
        release_free_memory()
    shared = time.perf_counter() - start
    for run, record, run_phases, (model, train_config, counts), outcome, epoch in zip(runs, records, phases, built,
                                                                                      outcomes, resumed):
        run_start = time.perf_counter()
        run_phases.seconds["train"] = train_seconds
        outcome.train_seconds /= len(runs)
        try:
            _measure_trained(study, model, train_config, outcome, counts, peak.peak_bytes, encoded, accelerator,
                             out, record, run, run_phases)
        except Exception as error:  # noqa: BLE001 - one run's failure must not stop the study
            _record_failure(record, error, out, run)
        finally:
            release_free_memory()
        record["timing"] = {"wall_seconds": shared / len(runs) + time.perf_counter() - run_start,
                            "resumed_from_epoch": epoch, "phases": run_phases.seconds, "shared_base": len(runs)}
    return records


def _measure_trained(study: Study, model, train_config: TrainConfig, outcome, counts: tuple[int, int],
                     peak_bytes: int, encoded, accelerator: Accelerator, out: Path, record: dict, run: RunSpec,
                     phases: Phases) -> None:
    """Test, save and probe a trained run; fill its record."""
    task, name = study.task, run.method
    trainable_params, total_params = counts
    with phases("test"):
        test = train_config.evaluate(model, encoded["test"], study.tokenizer, train_config.eval_batch_size,
                                     accelerator.device, task.num_labels, "test")
    with phases("save"):
        artifact = (save_artifact(study, name, record["config"], model, out, run.artifact_name)
                    if accelerator.is_main_process else None)
    record["metrics"] = kind_evaluation(task.kind).run_metrics(test, outcome.validation[outcome.best_evaluation - 1],
                                                               outcome.best_epoch)
    record["cost"] = {
        "trainable_params": trainable_params, "total_params": total_params,
        "optimizer_state_bytes": outcome.optimizer_state_bytes,
        "peak_memory_bytes": max(peak_bytes, outcome.peak_memory_bytes),  # with the checkpointed training's
        "train_seconds": outcome.train_seconds, "train_tokens": outcome.train_tokens,
        "train_tokens_per_second": outcome.tokens_per_second, "train_steps": outcome.steps,
        "budget_steps": outcome.total_steps,
        "budget_used": outcome.steps / outcome.total_steps if outcome.total_steps else None,  # None: trains nothing
        "checkpoint_bytes": directory_bytes(artifact, exclude=TOKENIZER_FILES | {RUN_FILE}) if artifact else None,
        "inference_ms_per_example": None,  # the latency probe's measurement, below
    }
    record["curve"] = {"train_loss": outcome.train_loss, "validation": outcome.validation}
    record["test_correct"] = test.get("correct")  # per test example, "1"/"0": the verdict's paired comparison
    if "predictions" in test:  # regression: per test example, predicted and true values (the verdict's pairing)
        record["test_predictions"], record["test_targets"] = test["predictions"], test["targets"]
    record["stopped"] = outcome.stopped  # early stopping: where and why; None when the run used its whole budget
    record["artifact"] = str(artifact.relative_to(out)) if artifact else None
    trained = TrainedRun(model, name, record["config"], run.seed, study, encoded, accelerator.device,
                         record["metrics"])
    record.update(run_probes(trained, phases, lambda probe, text: write_log(out, f"{run.artifact_name}.{probe}", text)))
    record["cost"]["inference_ms_per_example"] = record.get("latency", {}).get("inference_ms_per_example")


def save_artifact(study: Study, name: str, run_config: dict, model, out: Path, folder: str | None = None) -> Path:
    """Save into a temporary folder, then rename: OUT/runs/<folder> (default: the method) is complete or absent."""
    final = out / RUNS_DIR / (folder or name)
    staging = out / RUNS_DIR / f".{folder or name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    get_method(name).save(model, staging)
    study.tokenizer.save_pretrained(staging)
    write_json_atomic(staging / RUN_FILE, {
        "method": name, "config": run_config, "model": study.config.model, "model_path": study.model_ref.path,
        "gguf_file": study.model_ref.gguf_file, "label_names": study.task.label_names, "task_type": study.task.kind.name,
        "max_length": study.config.max_length,
        **({"target_scale": list(study.task.target_scale)} if study.task.target_scale is not None else {}),
    })
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    return final
