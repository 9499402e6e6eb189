"""A study's configuration, stated once: option groups as dataclasses, composed into `CompareConfig`.

Each field carries its command-line help in its metadata, so the CLI derives its options from these classes
(`peftlab.cli`), `--config study.yaml` is read against the same fields (:func:`config_from_sources`), and
results.json's header records the whole configuration (``study.config``), from which a study reloads in one call
(:func:`config_from_mapping`). The groups are shared: `DiagnoseConfig` reuses the model and data groups.

Fields are declared with :func:`peftlab.options.option` (their help text and command-line spelling).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peftlab.errors import ConfigError
from peftlab.evaluate.attacks import AttackSettings
from peftlab.evaluate.robustness import RobustnessSettings
from peftlab.methods import DEFAULT_METHODS
from peftlab.models.memory import MemoryOptions
from peftlab.options import option
from peftlab.tasks.kinds import TASK_KINDS
from peftlab.trackers import TRACKERS, check_trackers

BACKENDS = ("local", "ray")
ONE_TIME_ACTIONS = ("restart", "wait")  # what one invocation does, not what defines the study
TUNABLE = ("lr",)


@dataclass
class ModelOptions:
    model: str = option("minilm", "HF model id, local folder, or offline alias (minilm, smollm2-135m).")
    trust_remote_code: bool = option(False, "Allow model code from the model's repository.")
    tokenizer: str | None = option(None, "Load the tokenizer from this folder, HF id or alias instead of the model's "
                                   "(for a model folder without tokenizer files).")


@dataclass
class DataOptions:
    data: str = option("rotten_tomatoes", "HF dataset name, local CSV/JSONL/Parquet file or folder, BIG-bench "
                       "task.json, alias, or a controlled probe (probe:cipher=0.5, probe:depth=3; docs/PROBES.md).")
    subset: str | None = option(None, "HF dataset configuration name.")
    split: str | None = option(None, "Use only this split of the source (then split 80/10/10).")
    text_column: str | None = option(None, "Column holding the text (auto: text, sentence, input...).")
    text_pair_column: str | None = option(None, "Column holding the second text of a pair.")
    label_column: str | None = option(None, "Column holding the label (auto: label, category...).")
    task: str | None = option(None, f"{', '.join(TASK_KINDS)} (default: inferred from the data; see "
                              "docs/DECODERS.md).")
    max_train_examples: int | None = option(600, "Cap on training examples (0 = all).", cli="zero_none")
    max_eval_examples: int | None = option(500, "Cap on validation and on test examples, each (0 = all).",
                                           cli="zero_none")
    max_length: int = option(128, "Truncate inputs to this many tokens.")
    seed: int = option(0, "Seed for splits, initialisation and data order.")
    train_sizes: list[str | int] = option(help="Data-size regime: run the comparison at each of these training-set sizes, "
                                    "e.g. 100,300,1000,all (nested subsets of the training split, shuffled once with "
                                    "--seed; `all` = the whole capped split; the same validation and test sets).",
                                    cli="list", factory=list)


@dataclass
class BudgetOptions:
    epochs: int = option(3, "Training epochs per method.")
    max_steps: int | None = option(None, "Training steps per method (overrides --epochs).")
    batch_size: int = option(32, "Training batch size.")
    evaluations_per_epoch: int = option(3, "Validation passes per epoch (evenly spaced): the points where the best "
                                        "state is kept, early stopping decides and the learning-rate race prunes.")
    patience: int | None = option(3, "Early stopping: stop a run after this many validation passes without a "
                                  "better score, keeping its best state (0 = never).", cli="zero_none")
    until_conclusive: bool = option(False, "While the verdict is inconclusive because the reference did not learn or "
                                    "was still improving, continue every run from its checkpoint to the budget the "
                                    "verdict estimates, up to --max-budget.", flag="--until-conclusive")
    max_budget: int | None = option(None, "--until-conclusive: the most steps a run may reach (default: 4x the "
                                    "first budget).")


@dataclass
class RobustnessOptions:
    robustness: bool = option(True, "After each run: accuracy on perturbed test texts and attack success rates.",
                              flag="--robustness/--no-robustness")
    robust_set: str | None = option(None, "Labelled file (any --data file format) every method is also evaluated "
                                    "on, e.g. AdvGLUE or contrast sets.")
    perturb_examples: int = option(500, "Test examples perturbed by each perturbation (the same for every method).")
    perturb_severity: float = option(0.2, "Share of the words each perturbation touches.")
    attack_examples: int = option(50, "Test examples attacked per method (the same for every method).")
    attack_query_budget: int = option(100, "Model queries per attacked example and attack.")


@dataclass
class ExecutionOptions:
    seeds: int = option(1, "Run every configuration with this many seeds (seed, seed+1, ...); tables show mean ± "
                        "std and 95% CI.")
    max_seeds: int | None = option(None, "Sequential seeds: while the verdict's interval of the gap between the best "
                                   "PEFT method and full fine-tuning straddles --tolerance, add a seed to those two "
                                   "runs, up to this many seeds each (default: no extra seeds).")
    tolerance: float = option(1.0, "Points of the headline metric within which a PEFT method counts as matching "
                              "full fine-tuning (the verdict's tolerance).")
    tune: list[str] | None = option(None, "`lr`: race a few learning rates per method on validation first (Optuna, "
                                    "successive halving; docs/VERDICT.md). Default: on, except with --train-sizes.",
                                    cli="list")
    no_tune: bool = option(False, "Train every method at its fixed default learning rate (no rate race).",
                           flag="--no-tune")
    tune_points: int = option(3, "Learning rates raced per method (log grid around the default).")
    backend: str = option("local", "Where runs execute: local (in-process or --workers processes) or ray.")
    workers: int = option(1, "Local worker processes running runs in parallel.")
    shared_base: int = option(1, "Train up to this many runs of the same LoRA method (e.g. its --seeds) together "
                              "on one frozen base, their batches stacked (docs/PERFORMANCE.md); runs that do not "
                              "stack (DoRA, lora_dropout, not a classifier) train alone. Local backend, one worker.")
    ray_address: str | None = option(None, "Address of an existing Ray cluster (default: start a local one).")
    retry_failed: bool = option(False, "On resume, run again the runs stored as failed.", flag="--retry-failed")
    restart: bool = option(False, "Start the study in --out again: its store and results.json are moved aside "
                           "(study.sqlite.<time>.bak), run folders are kept until replaced.", flag="--restart")
    wait: bool = option(False, "When another peftlab process is writing the study in --out, wait for it to finish "
                        "instead of exiting.", flag="--wait")
    report_to: list[str] = option(help=f"Log every run to these experiment trackers ({', '.join(TRACKERS)}; "
                                  "stores under --out: OUT/tensorboard/, OUT/mlruns/, OUT/wandb/). Not part of the "
                                  "study's identity.", cli="list", factory=list)


@dataclass
class MemoryFlags:
    gradient_checkpointing: bool = option(False, "Recompute activations in backward (less memory, slower).",
                                          flag="--gradient-checkpointing")
    bf16: bool = option(False, "bf16 autocast (weights and optimizer stay fp32).", flag="--bf16")
    load_in_4bit: bool = option(False, "Load the base in 4-bit (QLoRA; CUDA + bitsandbytes only).",
                                flag="--load-in-4bit")
    load_in_8bit: bool = option(False, "Load the base in 8-bit (CUDA + bitsandbytes only).", flag="--load-in-8bit")

    def memory_options(self) -> MemoryOptions:
        return MemoryOptions(self.gradient_checkpointing, self.bf16, self.load_in_4bit, self.load_in_8bit)


@dataclass
class StudyOptions:
    methods: list[str] = option(help="Comma-separated method names (see `peftlab methods`), variants included: "
                                "`lora[r=1]`, `lora[r=64,target_modules=q_proj+v_proj]` (quote them in a shell).",
                                cli="list", factory=lambda: list(DEFAULT_METHODS))
    sweep: str | None = option(None, "One setting of one method at several values, each a variant run after "
                               "--methods: `lora.r=1,4,16,64` runs lora[r=1], lora[r=4], ...")
    method_config: str | None = option(None, "YAML of per-method overrides, e.g. `lora: {r: 16, learning_rate: "
                                       "1e-4}`.")
    out: str = option("runs/compare", "Output folder: results.json and one folder per trained method.")
    label_descriptions: str | None = option(None, "YAML or JSON file mapping label -> a description, the text whose "
                                            "embedding stands for the label in zero-shot classification (default: "
                                            "the label's name).")
    diagnose: bool = option(True, "After the runs: diagnosis signals and the advisor's call, checked against the "
                            "runs (OUT/diagnosis.json).", flag="--diagnose/--no-diagnose")


# Fields come in the reverse order of the bases: model, data, study, budget, robustness, execution, memory.
@dataclass
class CompareConfig(MemoryFlags, ExecutionOptions, RobustnessOptions, BudgetOptions, StudyOptions, DataOptions,
                    ModelOptions):
    """Everything that defines a comparison. The defaults are the embedded offline study."""

    def check(self) -> None:
        for name in ("epochs", "batch_size", "max_length"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not 1 <= self.evaluations_per_epoch <= 100:
            raise ConfigError(f"--evaluations-per-epoch must be between 1 and 100, got {self.evaluations_per_epoch}")
        if self.patience is not None and self.patience < 0:
            raise ConfigError(f"--patience must be 0 (never stop early) or more, got {self.patience}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"--max-steps must be at least 1, got {self.max_steps}")
        if self.max_budget is not None and not self.until_conclusive:
            raise ConfigError("--max-budget bounds --until-conclusive; add --until-conclusive or drop --max-budget")
        if self.max_budget is not None and self.max_budget < 1:
            raise ConfigError(f"--max-budget is a number of steps, at least 1; got {self.max_budget}")
        if self.until_conclusive and self.train_sizes:
            raise ConfigError("--until-conclusive with --train-sizes is not supported: drop one of them")
        if Path(self.out).exists() and not Path(self.out).is_dir():
            raise ConfigError(f"--out {self.out} is a file; pass a folder (it is created if missing)")
        if self.robust_set and not self.robustness:
            raise ConfigError("--robust-set needs the robustness evaluation; drop --no-robustness")
        if self.robustness:
            self.robustness_settings().check()
        self.check_execution()
        self.requested_train_sizes()
        self.memory_options().check()

    def check_execution(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"--backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {self.workers}")
        if self.workers > 1 and self.backend != "local":
            raise ConfigError("--workers is for --backend local; Ray places runs on the cluster's CPUs/GPUs itself")
        if self.shared_base < 1:
            raise ConfigError(f"--shared-base must be at least 1, got {self.shared_base}")
        if self.shared_base > 1 and (self.backend != "local" or self.workers > 1):
            raise ConfigError("--shared-base trains runs together in one process: use it with --backend local and "
                              "--workers 1")
        if self.ray_address and self.backend != "ray":
            raise ConfigError("--ray-address needs --backend ray")
        if self.seeds < 1:
            raise ConfigError(f"--seeds must be at least 1, got {self.seeds}")
        if self.max_seeds is not None and self.max_seeds < self.seeds:
            raise ConfigError(f"--max-seeds must be at least --seeds ({self.seeds}), got {self.max_seeds}")
        if not 0 <= self.tolerance <= 100:
            raise ConfigError(f"--tolerance is in points of the metric, between 0 and 100; got {self.tolerance:g}")
        if self.no_tune and self.tune:
            raise ConfigError("--no-tune and --tune contradict each other; give one")
        if self.tune is None:  # the default: rates are raced, unless --no-tune, or --train-sizes (one rate per size)
            self.tune = [] if self.no_tune or self.train_sizes else list(TUNABLE)
        unknown = [name for name in self.tune if name not in TUNABLE]
        if unknown:
            raise ConfigError(f"--tune supports {', '.join(TUNABLE)} only, got {', '.join(unknown)}")
        if not 2 <= self.tune_points <= 7:
            raise ConfigError(f"--tune-points must be between 2 and 7, got {self.tune_points}")
        check_trackers(self.report_to)

    def requested_train_sizes(self) -> list[int | None]:
        """--train-sizes as numbers (None: `all`), in the order given; [] when not given. ConfigError (one line)
        for an entry that is neither a positive whole number nor `all`, a repeated one, or --tune with it."""
        sizes: list[int | None] = []
        for text in self.train_sizes:
            word = str(text).strip().lower()
            if word == "all":
                size = None
            elif word.isdigit() and int(word) >= 1:
                size = int(word)
            else:
                raise ConfigError(f"--train-sizes takes positive whole numbers and `all` (e.g. 100,300,all), got "
                                  f"{text!r}")
            if size in sizes:
                raise ConfigError(f"--train-sizes lists {text} twice")
            sizes.append(size)
        if sizes and self.tune:
            raise ConfigError("--train-sizes with --tune is not supported: the learning rate would be tuned at one "
                              "size only; drop one of them")
        return sizes

    def robustness_settings(self) -> RobustnessSettings | None:
        if not self.robustness:
            return None
        return RobustnessSettings(
            perturb_examples=self.perturb_examples, severity=self.perturb_severity,
            attack_examples=self.attack_examples, attack=AttackSettings(query_budget=self.attack_query_budget),
            robust_set=self.robust_set, seed=self.seed,
        )

    def budget(self) -> dict[str, Any]:
        keys = ("epochs", "max_steps", "batch_size", "max_length", "max_train_examples", "max_eval_examples",
                "evaluations_per_epoch", "patience")
        return {key: getattr(self, key) for key in keys}

    def describe(self) -> dict[str, Any]:
        """The whole configuration as plain values (results.json's ``study.config``; `--print-config`), without the
        one-time actions of an invocation (--restart, --wait): a study reloaded or re-run from it does not repeat them."""
        return {key: value for key, value in dataclasses.asdict(self).items() if key not in ONE_TIME_ACTIONS}
