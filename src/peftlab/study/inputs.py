"""A study's inputs: check every input and load what all its runs share, before anything is written.

`prepare_study` checks the configuration, the methods and their overrides, the model reference and config, the
data (loaded, split, capped) and the tokenizer; a problem is a PeftlabError raised before the study folder is
touched. `run_context` then tokenizes the task once, builds the robustness suite once (the same perturbed texts
for every method) and picks the accelerator: the :class:`RunContext` every run of the study executes on, in this
process, a worker process or a Ray task alike. The study's header and identity (what must not change for a
store's finished runs to be reused) are stated here too, from the same inputs.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import yaml
from accelerate import Accelerator

from peftlab.errors import ConfigError, MethodError, ModelError
from peftlab.evaluate.robustness import RobustnessSuite, base_input_embeddings, build_suite, load_robust_set
from peftlab.files import check_writable_folder, error_line
from peftlab.methods import get_method, parse_methods, read_method_config, sweep_variants
from peftlab.methods.zero_shot import label_texts
from peftlab.progress import StudyProgress
from peftlab.models import check_weights, load_config, load_tokenizer, max_positions, resolve_model
from peftlab.study.config import CompareConfig
from peftlab.study.environment import command_line, hardware, package_versions
from peftlab.tasks import load_task
from peftlab.tasks.encode import encode_task
from peftlab.tasks.kinds import ATTACKS, ROBUST_SET, ROBUSTNESS


@dataclass
class Study:
    """A checked comparison, ready to run: inputs loaded, nothing written yet."""

    config: CompareConfig
    model_ref: Any
    task: Any
    tokenizer: Any
    methods: list[str]
    overrides: dict[str, dict[str, Any]]
    robustness: RobustnessSuite | None = None  # built once by run_context(), used by every run
    robust_set: tuple[Any, dict] | None = None  # --robust-set, read and checked by prepare_study
    train_sizes: list[int] | None = None  # --train-sizes as numbers, ascending (`all` resolved); None: not given


def prepare_study(config: CompareConfig, writes_out: bool = True) -> Study:
    """Check every input and load what all runs share. Raises PeftlabError before anything is written.

    In order: the options, the methods and their settings (each built into its settings object), the model (its
    config, its safetensors headers, its positions against --max-length), the data, the tokenizer (a real
    vocabulary that fits the model's embeddings), the --robust-set file, and last (``writes_out``) that --out can be
    created and written: the one thing this creates is that folder, and only once every input is good."""
    config.check()
    methods = parse_methods([*config.methods, *sweep_variants(config.sweep)])  # --sweep: variants, after --methods
    overrides = read_method_config(config.method_config, methods)
    model_ref = resolve_model(config.model, config.trust_remote_code, config.tokenizer)
    model_config = load_config(model_ref)
    check_weights(model_ref)
    check_budget(config, model_config)
    task = load_task(
        config.data, subset=config.subset, split=config.split, text_column=config.text_column,
        text_pair_column=config.text_pair_column, label_column=config.label_column,
        max_train_examples=config.max_train_examples, max_eval_examples=config.max_eval_examples, seed=config.seed,
        task_type=config.task, model_config=model_config,
    )
    overrides = with_label_descriptions(config, methods, overrides, task.label_names)
    train_sizes = resolve_train_sizes(config, len(task.splits["train"]))
    tokenizer = load_tokenizer(model_ref)
    check_vocabulary(config, model_config, tokenizer)
    robust_set = None
    if config.robustness and config.robust_set and not task.kind.applies(ROBUST_SET):
        raise ConfigError(f"--robust-set is a file of class labels; it does not apply to a {task.kind.name} task. "
                          "Drop --robust-set.")
    if config.robustness and config.robust_set and task.kind.applies(ROBUSTNESS):
        robust_set = load_robust_set(config.robust_set, task, tokenizer, config.max_length)
    if writes_out:
        check_writable_folder(config.out)
    return Study(config, model_ref, task, tokenizer, methods, overrides, robust_set=robust_set,
                 train_sizes=train_sizes)


def resolve_train_sizes(config: CompareConfig, available: int) -> list[int] | None:
    """--train-sizes as example counts, ascending and without repeats (`all` is the whole training split, after
    --max-train-examples); None when not given. A size larger than the split is a ConfigError (one line): a
    clipped size would silently repeat another."""
    requested = config.requested_train_sizes()
    if not requested:
        return None
    too_large = [size for size in requested if size is not None and size > available]
    if too_large:
        cap = f" (--max-train-examples {config.max_train_examples})" if config.max_train_examples else ""
        raise ConfigError(f"--train-sizes {too_large[0]} is more than the {available} training examples of this "
                          f"study{cap}; pass sizes up to {available}, or `all`")
    return sorted({available if size is None else size for size in requested})


def train_subset(dataset, size: int, seed: int):
    """The first ``size`` examples of the training split shuffled once with ``seed``: the subsets of one study are
    nested (the 100 examples are among the 300), whatever sizes it runs."""
    order = list(range(len(dataset)))
    random.Random(seed).shuffle(order)
    return dataset.select(order[:size])


def run_inputs(context: RunContext, train_size: int | None) -> Any:
    """The encoded splits one run trains and is evaluated on: the study's, with the training split cut to
    ``train_size`` (--train-sizes; None: the whole split). Validation and test are the same for every size."""
    if train_size is None:
        return context.encoded
    return {**context.encoded, "train": train_subset(context.encoded["train"], train_size, context.config.seed)}


def with_label_descriptions(config: CompareConfig, methods: list[str], overrides: dict[str, dict[str, Any]],
                            label_names: list[str] | None) -> dict[str, dict[str, Any]]:
    """--label-descriptions given to every method with a ``label_descriptions`` setting (zero-shot), unless its
    --method-config entry sets its own; every method's descriptions checked against the task's labels."""
    described = read_label_descriptions(config.label_descriptions) if config.label_descriptions else None
    merged = {name: dict(values) for name, values in overrides.items()}
    for name in methods:
        if "label_descriptions" not in get_method(name).setting_names():
            continue
        if described is not None:
            merged.setdefault(name, {}).setdefault("label_descriptions", described)
        descriptions = merged.get(name, {}).get("label_descriptions")
        if descriptions is not None:
            if not label_names:
                raise ConfigError(f"label descriptions ({name}) are for class labels, and this task has none")
            try:
                label_texts(label_names, descriptions)
            except MethodError as error:
                raise ConfigError(str(error)) from None
    return merged


def read_label_descriptions(path: str) -> dict[str, str]:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))  # YAML reads JSON too
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise ConfigError(f"cannot read --label-descriptions {path}: {error_line(error)}") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ConfigError(f"--label-descriptions {path} must map each label to a text, e.g. `pos: a positive review`")
    return {str(key): value for key, value in data.items()}


def check_budget(config: CompareConfig, model_config) -> None:
    """--max-length within the positions the model embeds (a longer input fails every run)."""
    positions = max_positions(model_config)
    if positions is not None and config.max_length > positions:
        raise ConfigError(f"--max-length {config.max_length} is longer than model '{config.model}' takes ({positions} "
                          f"positions); pass --max-length {positions} or less")


def check_vocabulary(config: CompareConfig, model_config, tokenizer) -> None:
    """The tokenizer's ids index the model's embeddings: a larger vocabulary (another model's --tokenizer) would
    give ids past the embedding table."""
    text = model_config.get_text_config() if hasattr(model_config, "get_text_config") else model_config
    size = getattr(text, "vocab_size", None)
    if isinstance(size, int) and size > 0 and len(tokenizer) > size:
        source = f"--tokenizer '{config.tokenizer}'" if config.tokenizer else "its tokenizer"
        raise ModelError(f"model '{config.model}' embeds {size} tokens but {source} has {len(tokenizer)}; ids past "
                         f"{size - 1} would fail: pass the tokenizer the model was trained with")


def build_robustness_suite(study: Study) -> RobustnessSuite | None:
    """The perturbed sets, attack examples and embedding neighbours every run is evaluated on (None when off, or
    when the task kind has no robustness evaluation: its runs record why)."""
    settings = study.config.robustness_settings()
    if settings is None or not study.task.kind.applies(ROBUSTNESS):
        return None
    start = time.perf_counter()
    if not study.task.kind.applies(ATTACKS):  # its robustness record says why there are no attacks
        settings = replace(settings, attack_examples=0)
    embeddings = base_input_embeddings(study.model_ref, study.task.label_names, study.task.kind.load_model)
    suite = build_suite(study.task, study.tokenizer, embeddings, study.config.max_length, settings, study.robust_set)
    suite.build_seconds = time.perf_counter() - start
    return suite


@dataclass
class RunContext:
    """What every run of a study shares, built once per process from the CompareConfig."""

    config: CompareConfig
    study: Study
    encoded: Any
    accelerator: Accelerator
    progress: StudyProgress = field(default_factory=StudyProgress)  # who watches (the CLI's display); no-op

    @property
    def out(self) -> Path:
        return Path(self.config.out)


def default_accelerator(config: CompareConfig) -> Accelerator:
    """accelerate's default with the study's precision (--bf16), except that a multi-process launch (torchrun,
    accelerate launch) without CUDA must ask for the CPU explicitly to get a gloo process group: Accelerator() alone
    leaves each process on its own."""
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1
    return config.memory_options().accelerator(cpu=launched and not torch.cuda.is_available())


def run_context(config: CompareConfig, accelerator: Accelerator | None = None) -> RunContext:
    study = prepare_study(config)
    accelerator = accelerator or default_accelerator(config)
    encoded = encode_task(study.task, study.tokenizer, config.max_length)
    study.robustness = build_robustness_suite(study)
    return RunContext(config, study, encoded, accelerator)


def study_header(study: Study, accelerator: Accelerator) -> dict[str, Any]:
    """results.json's ``study``: what was compared, on what, with which budget and software; ``config`` holds the
    whole configuration (a study reloads from it, :func:`peftlab.study.reload.config_from_header`)."""
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
        **({"train_sizes": study.train_sizes} if study.train_sizes else {}),  # absent without --train-sizes
        "config": config.describe(),
        "versions": package_versions(),
        "hardware": hardware(accelerator.device),
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command_line(),
    }


def study_identity(context: RunContext) -> dict[str, Any]:
    """What must not change for a store's finished runs to be reused (methods and seeds may be added; output
    choices such as --report-to are no part of it)."""
    config, study = context.config, context.study
    return {
        "model": config.model, "model_path": study.model_ref.path, "data": config.data, "subset": config.subset,
        "split": config.split, "columns": study.task.describe().get("columns"), "dataset_sha256": study.task.sha256,
        "budget": config.budget(), "seed": config.seed, "method_overrides": study.overrides,
        "robustness": study.robustness.describe()["settings"] if study.robustness else None,
        "task_type": study.task.kind.name, "memory": asdict(config.memory_options()),
        **({"tokenizer": config.tokenizer} if config.tokenizer else {}),  # absent when unset: older stores resume
    }
