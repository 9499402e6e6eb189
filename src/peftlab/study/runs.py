"""The runs of a study: one per (method, seed, learning rate) and, with --train-sizes, training-set size; each
with a stable key, artifact and checkpoint path.

The key is what the store remembers a run by; re-running the same study plans the same keys, so a finished run
is found and not repeated. The study's first seed keeps the historical artifact folder OUT/runs/<method>; other
seeds save to OUT/runs/<method>-seed<N>. With --train-sizes the key ends in ``/n=<size>`` (without it keys are as
they always were, so older stores resume); the largest size keeps OUT/runs/<method>, a smaller one saves to
OUT/runs/<method>-n<size> (with ``-seed<N>`` after it for other seeds). A run that --until-conclusive extended
to a longer budget ends its key in ``/steps=<N>`` and replaces its shorter run's artifact folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from peftlab.files import CHECKPOINTS_DIR


@dataclass(frozen=True)
class RunSpec:
    method: str
    seed: int
    learning_rate: float | None = None  # None: the method's default or configured learning rate
    phase: str = "run"  # "run": a measured run of the study; "tune": a learning-rate trial
    primary: bool = True  # the study's first seed: artifact in OUT/runs/<method>
    train_size: int | None = None  # --train-sizes: the run trains on this many examples of the training split
    largest: bool = True  # --train-sizes: the run is at the largest size (artifact in OUT/runs/<method>)
    max_steps: int | None = None  # --until-conclusive: the run's extended budget in steps (None: the study's)

    @property
    def key(self) -> str:
        rate = "default" if self.learning_rate is None else f"{self.learning_rate:.6g}"
        size = "" if self.train_size is None else f"/n={self.train_size}"
        steps = "" if self.max_steps is None else f"/steps={self.max_steps}"
        return f"{self.phase}/{self.method}/seed={self.seed}/lr={rate}{size}{steps}"

    @property
    def artifact_name(self) -> str:
        """OUT/runs/<this>: the method (a variant's brackets and commas become dashes: lora[r=4] -> lora-r=4), then
        the training-set size below the largest (-n<size>) and the seed after the study's first (-seed<N>)."""
        folder = re.sub(r"[\[\],]+", "-", self.method).strip("-")
        size = "" if self.train_size is None or self.largest else f"-n{self.train_size}"
        return folder + size + ("" if self.primary else f"-seed{self.seed}")

    def label(self, seeds: int = 1) -> str:
        """How tables and progress lines name the run: the method, with its training-set size under
        --train-sizes and its seed when the study runs several."""
        size = "" if self.train_size is None else f" n{self.train_size}"
        steps = "" if self.max_steps is None else f" to {self.max_steps} steps"
        return self.method + size + (f" s{self.seed}" if seeds > 1 else "") + steps

    def overrides(self) -> dict:
        return {} if self.learning_rate is None else {"learning_rate": self.learning_rate}

    def checkpoint(self, out: Path) -> Path:
        """The run's epoch checkpoint: a folder (state.safetensors + state.json, peftlab.train.checkpoint)."""
        return Path(out) / CHECKPOINTS_DIR / re.sub(r"[^A-Za-z0-9.=-]+", "_", self.key) / "last"


def study_seeds(first_seed: int, count: int) -> list[int]:
    return [first_seed + offset for offset in range(count)]


def plan_runs(methods: list[str], first_seed: int, seeds: int, learning_rates: dict[str, float] | None = None,
              train_sizes: list[int] | None = None) -> list[RunSpec]:
    """Methods × seeds, in that order (every method's first seed before any second seed, so a partial study
    already compares all methods); ``learning_rates`` (tuned) replace the defaults where given. With
    ``train_sizes`` (--train-sizes, resolved to numbers), that for every size, the largest first: the size the
    study's main comparison and verdict are about is complete first."""
    learning_rates = learning_rates or {}
    if not train_sizes:
        return [RunSpec(method, seed, learning_rates.get(method), "run", seed == first_seed)
                for seed in study_seeds(first_seed, seeds) for method in methods]
    largest = max(train_sizes)
    return [RunSpec(method, seed, learning_rates.get(method), "run", seed == first_seed, size, size == largest)
            for size in sorted(train_sizes, reverse=True) for seed in study_seeds(first_seed, seeds)
            for method in methods]


def shared_base_groups(specs: list[RunSpec], size: int, candidate: Callable[[RunSpec], bool]) -> list[list[RunSpec]]:
    """--shared-base: the runs in groups to train together, up to ``size`` runs of the same method, training-set
    size and phase among those ``candidate`` admits, each group where its first run is in ``specs``; every other
    run is a group of one. With ``size`` 1, every run alone, in order."""
    groups: list[list[RunSpec]] = []
    filling: dict[tuple, list[RunSpec]] = {}
    for spec in specs:
        if size > 1 and candidate(spec):
            key = (spec.method, spec.train_size, spec.phase)
            if key not in filling or len(filling[key]) >= size:
                filling[key] = []
                groups.append(filling[key])
            filling[key].append(spec)
        else:
            groups.append([spec])
    return groups
