"""`compare`: train full fine-tuning and PEFT methods side by side under one budget, and measure them.

The recipe, top to bottom: check every input (nothing is written before that), load and tokenize the task
once, then for each method load a fresh base, apply the method, train, evaluate on test, time inference,
save the artifact, and rewrite results.json. A run that fails is recorded as failed; the others go on.
"""

from __future__ import annotations

import shutil
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from accelerate import Accelerator
from accelerate.utils import set_seed

from peftlab.errors import ConfigError
from peftlab.evaluate import inference_ms_per_example
from peftlab.evaluate.attacks import AttackSettings
from peftlab.evaluate.robustness import (
    RobustnessSettings,
    RobustnessSuite,
    base_input_embeddings,
    build_suite,
    evaluate_robustness,
)
from peftlab.measure import (
    PeakMemory,
    Phases,
    directory_bytes,
    parameter_counts,
    release_free_memory,
)
from peftlab.methods import (
    DEFAULT_METHODS,
    get_method,
    parse_methods,
    read_method_config,
)
from peftlab.evaluate.by_task import evaluation_for, run_metrics
from peftlab.models import load_base_model, load_config, load_tokenizer, resolve_model
from peftlab.models.memory import MemoryOptions
from peftlab.files import RUN_FILE, write_json_atomic, write_log
from peftlab.study.estimates import estimate_versus_measured
from peftlab.study.runs import RunSpec
from peftlab.study.environment import command_line, hardware, package_versions
from peftlab.tasks import load_task
from peftlab.train import TrainConfig, train
from peftlab.train.checkpoint import checkpoint_epoch

TOKENIZER_FILES = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
                   "merges.txt", "vocab.json", "chat_template.jinja", "added_tokens.json", "tokenizer.model"}



@dataclass
class CompareConfig:
    """Everything that defines a comparison. The defaults are the embedded offline study."""

    model: str = "minilm"
    data: str = "rotten_tomatoes"
    methods: list[str] = field(default_factory=lambda: list(DEFAULT_METHODS))
    method_config: str | None = None
    subset: str | None = None
    split: str | None = None
    text_column: str | None = None
    text_pair_column: str | None = None
    label_column: str | None = None
    max_train_examples: int | None = 2000
    max_eval_examples: int | None = 1000
    epochs: int = 3
    max_steps: int | None = None
    batch_size: int = 32
    max_length: int = 128
    seed: int = 0
    out: str = "runs/compare"
    trust_remote_code: bool = False
    robustness: bool = True  # perturbed test sets and attacks after each run (docs/MEASUREMENT.md)
    robust_set: str | None = None  # a labelled file every method is also evaluated on
    perturb_examples: int = 500
    perturb_severity: float = 0.2
    attack_examples: int = 50
    attack_query_budget: int = 100
    diagnose: bool = True  # after the runs: diagnosis signals + advisor, checked against the runs (docs/DIAGNOSE.md)
    seeds: int = 1  # every configuration runs with seeds seed, seed+1, ... (docs/STUDIES.md)
    tune: list[str] = field(default_factory=list)  # ["lr"]: a learning-rate search per method before the runs
    tune_points: int = 3  # learning rates tried per method, on a log grid around its default
    backend: str = "local"  # local (in-process, or --workers processes) or ray
    workers: int = 1
    ray_address: str | None = None  # an existing Ray cluster; None starts a local one
    retry_failed: bool = False  # re-run the runs the store holds as failed
    task: str | None = None  # classification | multiple-choice | generation; None: inferred from the data
    gradient_checkpointing: bool = False  # memory options (peftlab.models.memory)
    bf16: bool = False
    load_in_4bit: bool = False
    load_in_8bit: bool = False

    def check(self) -> None:
        for name in ("epochs", "batch_size", "max_length"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"--max-steps must be at least 1, got {self.max_steps}")
        if Path(self.out).exists() and not Path(self.out).is_dir():
            raise ConfigError(f"--out {self.out} is a file; pass a folder (it is created if missing)")
        if self.robust_set and not self.robustness:
            raise ConfigError("--robust-set needs the robustness evaluation; drop --no-robustness")
        if self.robustness:
            self.robustness_settings().check()
        from peftlab.study.backends import check_execution  # the study options live with their modules

        check_execution(self)
        self.memory_options().check()

    def memory_options(self) -> MemoryOptions:
        return MemoryOptions(self.gradient_checkpointing, self.bf16, self.load_in_4bit, self.load_in_8bit)

    def robustness_settings(self) -> RobustnessSettings | None:
        if not self.robustness:
            return None
        return RobustnessSettings(
            perturb_examples=self.perturb_examples, severity=self.perturb_severity,
            attack_examples=self.attack_examples, attack=AttackSettings(query_budget=self.attack_query_budget),
            robust_set=self.robust_set, seed=self.seed,
        )

    def budget(self) -> dict[str, Any]:
        keys = ("epochs", "max_steps", "batch_size", "max_length", "max_train_examples", "max_eval_examples")
        return {key: getattr(self, key) for key in keys}


@dataclass
class Study:
    """A checked comparison, ready to run: inputs loaded, nothing written yet."""

    config: CompareConfig
    model_ref: Any
    task: Any
    tokenizer: Any
    methods: list[str]
    overrides: dict[str, dict[str, Any]]
    robustness: RobustnessSuite | None = None  # built once by compare(), used by every run


def prepare_study(config: CompareConfig) -> Study:
    """Check every input and load what all runs share. Raises PeftlabError before anything is written."""
    config.check()
    methods = parse_methods(config.methods)
    overrides = read_method_config(config.method_config, methods)
    model_ref = resolve_model(config.model, config.trust_remote_code)
    load_config(model_ref)
    task = load_task(
        config.data, subset=config.subset, split=config.split, text_column=config.text_column,
        text_pair_column=config.text_pair_column, label_column=config.label_column,
        max_train_examples=config.max_train_examples, max_eval_examples=config.max_eval_examples, seed=config.seed,
        task_type=config.task,
    )
    tokenizer = load_tokenizer(model_ref)
    return Study(config, model_ref, task, tokenizer, methods, overrides)


def study_header(study: Study, accelerator: Accelerator) -> dict[str, Any]:
    config = study.config
    return {
        "model": config.model,
        "model_path": study.model_ref.path,
        "data": config.data,
        "subset": config.subset,
        "split": config.split,
        "dataset_sha256": study.task.sha256,
        "task": study.task.describe(),
        "seed": config.seed,
        "budget": config.budget(),
        "memory_options": config.memory_options().describe(),
        "robustness": study.robustness.describe() if study.robustness else None,
        "methods": study.methods,
        "versions": package_versions(),
        "hardware": hardware(accelerator.device),
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command_line(),
    }


def compare(config: CompareConfig, on_run_done: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Run the comparison; returns the results dict also written to OUT/results.json.

    The study's state lives in OUT/study.sqlite: re-running the same call skips the finished runs and continues an
    interrupted one from its last epoch checkpoint (docs/STUDIES.md)."""
    from peftlab.study.backends import run_context, run_study

    context = run_context(config)
    results = run_study(context, on_run_done)
    if config.diagnose and context.accelerator.is_main_process:  # before the report, which shows diagnosis.json
        from peftlab.diagnose import diagnose_after_compare
        from peftlab.study.summary import write_results

        results.update(diagnose_after_compare(context.study, context.encoded, context.accelerator, context.out, results))
        write_results(context.out, results)
    if context.accelerator.is_main_process:
        from peftlab.report.write import write_report_safely  # OUT/report.html; a failure there is one logged line

        write_report_safely(Path(config.out), results)
    return results


def build_robustness_suite(study: Study) -> RobustnessSuite | None:
    """The perturbed sets, attack examples and embedding neighbours every run is evaluated on (None when off)."""
    settings = study.config.robustness_settings()
    if settings is None or study.task.task_type != "classification":
        return None  # the perturbations and attacks are defined on classifiers; runs record why (skipped_robustness)
    start = time.perf_counter()
    embeddings = base_input_embeddings(study.model_ref, study.task.label_names)
    suite = build_suite(study.task, study.tokenizer, embeddings, study.config.max_length, settings)
    suite.build_seconds = time.perf_counter() - start
    return suite


def run_method(study: Study, name: str, encoded, accelerator: Accelerator, out: Path,
               run: RunSpec | None = None) -> dict[str, Any]:
    """Train, evaluate and save one run of a method; a failure becomes a `failed` record with its reason."""
    run = run or RunSpec(name, study.config.seed)
    record: dict[str, Any] = {"method": name, "seed": run.seed, "run_key": run.key, "config": {}, "status": "ok",
                              "metrics": {}, "cost": {}, "curve": {}}
    start, phases = time.perf_counter(), Phases()
    try:
        _train_and_measure(study, name, encoded, accelerator, out, record, run, phases)
    except Exception as error:  # noqa: BLE001 - one run's failure must not stop the study
        record["status"] = "failed"
        record["reason"] = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
        _write_log(out, run.artifact_name, traceback.format_exc())
    finally:
        accelerator.free_memory()
        release_free_memory()
    record["timing"] = {"wall_seconds": time.perf_counter() - start, "resumed_from_epoch": record.pop("_resumed", None),
                        "phases": phases.seconds}
    return record


def build_run(study: Study, name: str, run: RunSpec, accelerator: Accelerator) -> tuple[Any, dict, TrainConfig]:
    """The model (method applied, on the device), its settings and the training config of one run or tuning
    trial: the study's base model, memory options, method overrides and budget, with the run's seed and rate."""
    config, task, method = study.config, study.task, get_method(name)
    set_seed(run.seed)
    memory = config.memory_options()
    base = load_base_model(study.model_ref, task, study.tokenizer.pad_token_id, **memory.load_kwargs())
    base = memory.prepare(base, method)
    settings, learning_rate = method.resolve(base, {**study.overrides.get(name, {}), **run.overrides()})
    model = method.apply(base, settings).to(accelerator.device)
    train_config = TrainConfig(
        learning_rate=learning_rate, epochs=config.epochs, max_steps=config.max_steps,
        batch_size=config.batch_size, seed=run.seed, selection_metric=task.selection_metric,
        evaluate=evaluation_for(task.task_type),
    )
    return model, {**settings, "learning_rate": learning_rate}, train_config


def _train_and_measure(study: Study, name: str, encoded, accelerator: Accelerator, out: Path, record: dict,
                       run: RunSpec, phases: Phases) -> None:
    config, task = study.config, study.task
    checkpoint = run.checkpoint(out)
    record["_resumed"] = checkpoint_epoch(checkpoint)
    with PeakMemory(accelerator.device) as peak:
        with phases("build"):
            model, record["config"], train_config = build_run(study, name, run, accelerator)
            trainable_params, total_params = parameter_counts(model)
        with phases("train"):  # includes the validation pass after every epoch
            outcome = train(model, encoded, study.tokenizer, train_config, accelerator, task.num_labels, checkpoint)
    model = accelerator.unwrap_model(model)
    with phases("test"):
        test = train_config.evaluate(model, encoded["test"], study.tokenizer, train_config.eval_batch_size,
                                     accelerator.device, task.num_labels, "test")
    with phases("latency"):
        latency_ms = inference_ms_per_example(model, encoded["test"], study.tokenizer, accelerator.device)
    with phases("save"):
        artifact = (save_artifact(study, name, record["config"], model, out, run.artifact_name)
                    if accelerator.is_main_process else None)

    record["metrics"] = run_metrics(task.task_type, test, outcome.validation[outcome.best_epoch - 1], outcome.best_epoch)
    record["cost"] = {
        "trainable_params": trainable_params, "total_params": total_params,
        "optimizer_state_bytes": outcome.optimizer_state_bytes, "peak_memory_bytes": peak.peak_bytes,
        "train_seconds": outcome.train_seconds, "train_tokens": outcome.train_tokens,
        "train_tokens_per_second": outcome.tokens_per_second, "train_steps": outcome.steps,
        "checkpoint_bytes": directory_bytes(artifact, exclude=TOKENIZER_FILES | {RUN_FILE}) if artifact else None,
        "inference_ms_per_example": latency_ms,
    }
    record["curve"] = {"train_loss": outcome.train_loss, "validation": outcome.validation}
    with phases("estimate"):  # the FLOP count of one step under FlopCounterMode, against the estimate
        record["estimate"] = estimate_versus_measured(model, encoded["train"], study.tokenizer, name, record["config"],
                                                      config.batch_size, accelerator.device, run.seed, task.task_type)
    record["artifact"] = str(artifact.relative_to(out)) if artifact else None
    if study.robustness is None and config.robustness:
        record["robustness"] = {"status": "skipped", "reason": f"not available for task type {task.task_type}"}
    if study.robustness is not None:
        with phases("robustness"):
            record["robustness"] = measure_robustness(model, study.tokenizer, study.robustness, accelerator.device,
                                                      lambda text: _write_log(out, f"{run.artifact_name}.robustness", text))


def measure_robustness(model, tokenizer, suite: RobustnessSuite, device, write_log: Callable[[str], None]) -> dict:
    """The run's robustness record; a failure here is recorded in it (with a log) and leaves the run ok."""
    try:
        return evaluate_robustness(model, tokenizer, suite, device)
    except Exception as error:  # noqa: BLE001 - the trained run and its other measurements stay valid
        write_log(traceback.format_exc())
        return {"status": "failed", "reason": f"{type(error).__name__}: {str(error).strip()[:200]}"}


def save_artifact(study: Study, name: str, run_config: dict, model, out: Path, folder: str | None = None) -> Path:
    """Save into a temporary folder, then rename: OUT/runs/<folder> (default: the method) is complete or absent."""
    final = out / "runs" / (folder or name)
    staging = out / "runs" / f".{folder or name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    get_method(name).save(model, staging)
    study.tokenizer.save_pretrained(staging)
    write_json_atomic(staging / RUN_FILE, {
        "method": name, "config": run_config, "model": study.config.model, "model_path": study.model_ref.path,
        "gguf_file": study.model_ref.gguf_file, "label_names": study.task.label_names,
        "max_length": study.config.max_length,
    })
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    return final


def _write_log(out: Path, name: str, text: str) -> None:
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    (logs / f"{name}.log").write_text(text)
