"""Run a suite: every task is one `compare` study in OUT/tasks/<task>/ (its own SQLite store, so it resumes like
any compare), one after another; after each task the suite table is rewritten (OUT/suite.json, OUT/suite.md).

Every task is checked (data found, columns, methods, options) before the first one trains, so a typo in the last
task costs seconds, not hours. Re-running the same suite resumes: a task whose results are complete is read from
its results.json, an interrupted task continues inside its own store (finished runs are not repeated).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

from peftlab.bench.suite import Suite, SuiteTask
from peftlab.bench.table import suite_markdown, suite_table
from peftlab.errors import ConfigError
from peftlab.files import RESULTS_FILE, check_writable_folder, write_json_atomic, write_text_atomic
from peftlab.recipe import compare
from peftlab.study import CompareConfig, prepare_study

SUITE_FILE = "suite.json"
SUITE_MARKDOWN = "suite.md"
TASKS_DIR = "tasks"


def task_config(suite: Suite, task: SuiteTask, out: Path) -> CompareConfig:
    return CompareConfig(**suite.compare_settings(task), out=str(out / TASKS_DIR / task.name))


def run_suite(suite: Suite, out: str | Path, on_task: Callable[[SuiteTask, int], None] | None = None,
              on_run_done: Callable[[SuiteTask, dict], None] | None = None) -> dict[str, Any]:
    """Run (or resume) every task of the suite; returns the suite results also written to OUT/suite.json."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; pass a folder (it is created if missing)")
    reusable = _finished_before(out, suite)
    configs = {task.name: task_config(suite, task, out) for task in suite.tasks}
    for config in configs.values():
        prepare_study(config, writes_out=False)  # raises the task's input error before anything trains or is written
    check_writable_folder(out)  # once every task's inputs are good: OUT/suite.json and each task's folder go there
    finished: dict[str, dict] = {}
    for index, task in enumerate(suite.tasks):
        if on_task:
            on_task(task, index)
        start = time.perf_counter()
        stored = Path(configs[task.name].out) / RESULTS_FILE
        if task.name in reusable and stored.is_file():
            results = json.loads(stored.read_text())  # the same suite finished this task before: nothing to redo
            seconds = reusable[task.name]
        else:
            results = compare(configs[task.name], on_run_done=(lambda run, t=task: on_run_done(t, run)) if on_run_done else None)
            seconds = time.perf_counter() - start
        finished[task.name] = {"results": results, "wall_seconds": seconds}
        _write(out, suite, finished)
    return _write(out, suite, finished)


def _finished_before(out: Path, suite: Suite) -> dict[str, float | None]:
    """{task: wall seconds} of the tasks an earlier run of this suite in OUT finished with the same definition and
    the same shared settings; a different suite there is refused."""
    path = out / SUITE_FILE
    if not path.is_file():
        return {}
    try:
        earlier = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        raise ConfigError(f"{path} is not readable JSON; move it away or use another --out") from None
    if earlier.get("suite", {}).get("name") != suite.name:
        raise ConfigError(f"{out} holds suite {earlier.get('suite', {}).get('name')!r}, not {suite.name!r}; use another --out")
    current = suite.describe()
    if _identity(earlier["suite"]) != _identity(current):
        return {}  # methods, seeds or budget changed: every task goes through compare, which resumes its runs
    before = {task["name"]: task for task in earlier["suite"].get("tasks", [])}
    now = {task["name"]: task for task in current["tasks"]}
    return {task["name"]: task.get("wall_seconds") for task in earlier.get("tasks", [])
            if before.get(task["name"]) == now.get(task["name"])}


def _identity(description: dict) -> dict:
    return {key: value for key, value in description.items()
            if key not in ("source", "description", "tasks", "claims")}  # claims are read from the results


def _write(out: Path, suite: Suite, finished: dict[str, dict]) -> dict[str, Any]:
    table = suite_table(suite, finished)
    write_json_atomic(out / SUITE_FILE, table)
    write_text_atomic(out / SUITE_MARKDOWN, suite_markdown(table))
    return table

