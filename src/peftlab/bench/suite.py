"""A benchmark suite: what it runs, read from YAML and checked before anything trains.

A suite is data, not code (the torchtune "recipe config" idea): a name, the model, the methods, the seeds, a shared
budget (`compare:` — any `CompareConfig` field), and a list of tasks. Each task has a `name`, a `family` (the
aggregate it counts in, e.g. "simple classification", "shifted vocabulary", "reasoning"), a `data` spec exactly as
`peftlab compare --data` takes it, and optional per-task `compare:` overrides (columns, task type, sizes).
A relative `data` path is looked up in `--data-dir` (default: the suite file's folder); a name that is no file
there stays as it is (an alias like `rotten_tomatoes`, or an HF dataset name).

```yaml
name: my-suite
model: minilm
methods: [full, lora]
seeds: 3
compare: {epochs: 2, max_train_examples: 1000}
tasks:
  - {name: rt, family: simple classification, data: rotten_tomatoes}
  - {name: winowhy, family: reasoning, data: winowhy.json}
```
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from peftlab.bench.claims import parse_claims
from peftlab.errors import ConfigError, DataError
from peftlab.options import config_from_mapping, split_list
from peftlab.study.config import CompareConfig
from peftlab.tasks.controlled import is_probe

SUITE_KEYS = {"name", "description", "model", "methods", "seeds", "compare", "tasks", "claims"}
TASK_KEYS = {"name", "family", "data", "compare"}
# Set by the suite itself (model, methods, seeds) or by `peftlab bench` (out): not overridable under `compare:`.
RESERVED_COMPARE_KEYS = {"model", "methods", "seeds", "out", "data"}
DATA_SUFFIXES = (".json", ".jsonl", ".csv", ".tsv", ".parquet", ".txt")


def _builtin_suites() -> dict[str, Path]:
    folder = resources.files("peftlab.bench") / "suites"
    return {Path(entry.name).stem: Path(str(entry)) for entry in folder.iterdir() if entry.name.endswith(".yaml")}


BUILTIN_SUITES = _builtin_suites()


@dataclass
class SuiteTask:
    name: str
    family: str
    data: str
    compare: dict[str, Any] = field(default_factory=dict)


@dataclass
class Suite:
    name: str
    model: str
    methods: list[str]
    tasks: list[SuiteTask]
    seeds: int = 1
    compare: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    source: str = ""  # the file it was read from
    claims: list[dict[str, Any]] = field(default_factory=list)  # the claims tested over its tasks (bench.claims)

    def families(self) -> list[str]:
        return list(dict.fromkeys(task.family for task in self.tasks))

    def compare_settings(self, task: SuiteTask) -> dict[str, Any]:
        """The CompareConfig fields of one task (without `out`): the suite's, then the task's overrides."""
        return {"model": self.model, "methods": list(self.methods), "seeds": self.seeds, "data": task.data,
                **self.compare, **task.compare}

    def describe(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_suite(spec: str, data_dir: str | None = None, only_tasks: list[str] | None = None,
               seeds: int | None = None) -> Suite:
    """Read a suite from a built-in name (BUILTIN_SUITES) or a YAML file and check its shape; raises ConfigError
    or DataError with one line. `only_tasks` keeps those tasks (by name), in the suite's order; `seeds` replaces
    the suite's seed count (a first pass with 1 seed, resumed later with all of them, repeats nothing)."""
    path = BUILTIN_SUITES.get(spec) or Path(spec)
    if not path.is_file():
        names = ", ".join(sorted(BUILTIN_SUITES)) or "none"
        raise ConfigError(f"suite {spec!r} is neither a built-in suite ({names}) nor a YAML file")
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise ConfigError(f"cannot read suite {path}: {str(error).splitlines()[0]}") from None
    suite = _parse(raw, str(path))
    if seeds is not None:
        if seeds < 1:
            raise ConfigError(f"--seeds must be at least 1, got {seeds}")
        suite.seeds = seeds
    if only_tasks:
        unknown = [name for name in only_tasks if name not in {task.name for task in suite.tasks}]
        if unknown:
            raise ConfigError(f"--tasks: suite {suite.name} has no task {', '.join(map(repr, unknown))}; "
                              f"it has {', '.join(task.name for task in suite.tasks)}")
        suite.tasks = [task for task in suite.tasks if task.name in only_tasks]
    folder = Path(data_dir) if data_dir else path.parent
    if data_dir and not folder.is_dir():
        raise ConfigError(f"--data-dir {data_dir} is not a folder")
    for task in suite.tasks:
        task.data = _resolve_data(task, folder, data_dir is not None)
    return suite


def _parse(raw: Any, source: str) -> Suite:
    if not isinstance(raw, dict):
        raise ConfigError(f"suite {source}: expected a mapping with {', '.join(sorted(SUITE_KEYS))}")
    _known_keys(raw, SUITE_KEYS, f"suite {source}")
    for key in ("name", "model", "methods", "tasks"):
        if not raw.get(key):
            raise ConfigError(f"suite {source}: '{key}' is missing")
    methods = raw["methods"]
    if isinstance(methods, str):
        methods = split_list(methods)
    if not isinstance(methods, list) or not all(isinstance(name, str) for name in methods):
        raise ConfigError(f"suite {source}: 'methods' must be a list of method names")
    seeds = raw.get("seeds", 1)
    if not isinstance(seeds, int) or seeds < 1:
        raise ConfigError(f"suite {source}: 'seeds' must be a positive integer, got {seeds!r}")
    shared = _compare_overrides(raw.get("compare") or {}, f"suite {source}")
    if not isinstance(raw["tasks"], list):
        raise ConfigError(f"suite {source}: 'tasks' must be a list")
    tasks = [_parse_task(entry, source) for entry in raw["tasks"]]
    duplicates = sorted({task.name for task in tasks if sum(t.name == task.name for t in tasks) > 1})
    if duplicates:
        raise ConfigError(f"suite {source}: task names must be unique, repeated: {', '.join(duplicates)}")
    claims = parse_claims(raw.get("claims"), [task.name for task in tasks], f"suite {source}")
    return Suite(name=str(raw["name"]), model=str(raw["model"]), methods=methods, tasks=tasks, seeds=seeds,
                 compare=shared, description=str(raw.get("description", "")), source=source, claims=claims)


def _parse_task(entry: Any, source: str) -> SuiteTask:
    if not isinstance(entry, dict):
        raise ConfigError(f"suite {source}: every task must be a mapping with name, family, data")
    where = f"suite {source}, task {entry.get('name', '?')!r}"
    _known_keys(entry, TASK_KEYS, where)
    for key in ("name", "family", "data"):
        if not entry.get(key):
            raise ConfigError(f"{where}: '{key}' is missing")
    name = str(entry["name"])
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise ConfigError(f"{where}: a task name is a folder name (letters, digits, '.', '_', '-')")
    return SuiteTask(name, str(entry["family"]), str(entry["data"]), _compare_overrides(entry.get("compare") or {}, where))


def _compare_overrides(values: Any, where: str) -> dict[str, Any]:
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: 'compare' must be a mapping of compare options")
    allowed = {f.name for f in dataclasses.fields(CompareConfig)} - RESERVED_COMPARE_KEYS
    _known_keys(values, allowed, f"{where}, compare")
    config_from_mapping(CompareConfig, values, f"{where}, compare")  # the values' types, as --config checks them
    return dict(values)


def _known_keys(mapping: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(map(str, mapping)) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key {', '.join(map(repr, unknown))} (allowed: {', '.join(sorted(allowed))})")


def _resolve_data(task: SuiteTask, folder: Path, explicit: bool) -> str:
    """The task's data spec with a relative file path made absolute under FOLDER (a probe's file argument too:
    ``probe:drift=multiemo_products_sentence_en.json``); aliases, probes and ids otherwise unchanged."""
    if is_probe(task.data) and Path(task.data.partition("=")[2]).suffix.lower() in DATA_SUFFIXES:
        name, _, argument = task.data.partition("=")
        return f"{name}={_resolve_data(dataclasses.replace(task, data=argument), folder, explicit)}"
    path = Path(task.data).expanduser()
    if path.is_absolute():
        candidate = path
    else:
        candidate = folder / path
    if candidate.exists():
        return str(candidate.resolve())
    if path.suffix.lower() in DATA_SUFFIXES:  # meant as a file, and not there
        hint = "" if explicit else " (pass the folder that holds it with --data-dir)"
        raise DataError(f"task {task.name!r}: data file {task.data} not found in {folder}{hint}")
    return task.data
