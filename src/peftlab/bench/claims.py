"""A suite's claims, tested: each published claim about PEFT against full fine-tuning as a statistic over the
suite's tasks, with a bootstrap interval and p-value, and an outcome per method (docs/PROBES.md).

A suite may list ``claims:``, each naming its tasks:

```yaml
claims:
  - {name: vocabulary, kind: interaction, reference: cipher-0, shifted: [cipher-0.5, cipher-1, cyrillic-1],
     claim: "PEFT loses more than full fine-tuning when the vocabulary shifts"}
  - {name: depth, kind: slope, tasks: [depth-1, depth-2, depth-3, depth-4], levels: [1, 2, 3, 4]}
  - {name: capacity, kind: fit, task: random-labels}
```

Everything is built from the runs' per-example test hits (``test_correct``). A method's **gap** on a task is its
test accuracy minus full fine-tuning's, in points, paired over the test examples within each seed and averaged
over the seeds that have both runs. The statistics, per PEFT method:

- ``interaction``: gap(shifted task) − gap(reference task), one per shifted task; negative = the method loses more
  than full fine-tuning when going from the reference to the shifted task (the claim);
- ``slope``: the least-squares slope of the gap over the tasks' ``levels`` (points per level); negative = the gap
  widens as the level rises (the claim);
- ``fit``: the gap itself, on a task whose test split is its training set (random labels): negative = the method
  fits less of the training set than full fine-tuning (the claim); for variants of a method (``lora[r=4]``), the
  smallest rank whose gap is within the tolerance is reported too.

Intervals and p-values come from one seeded two-level percentile bootstrap (2,000 resamples): each task's seeds
are resampled with replacement, and within each seed its test examples (paired between the method and full
fine-tuning, which saw the same examples), so the interval covers seed-to-seed variation as well as the test
sample; tasks are resampled independently even where their rows align (conservative). With one seed the interval
covers the test sample only (the record's ``seeds`` says how many there were). The p-value is two-sided: twice the
share of resampled statistics on the far side of 0 (at least 1/2,000).

An outcome per method and statistic: **reproduced** (the claim's sign, p < 0.05), **contrary** (the other sign,
p < 0.05), **no effect** (the whole interval within ± the tolerance, 1 point unless the claim says otherwise), else
**inconclusive**. A claim whose reference did not learn (full fine-tuning's test accuracy on the reference task not
above the majority share with its 95% Wilson interval) is **inconclusive** with that reason, whatever its numbers:
a gap between methods that learned nothing is not evidence. Written here rather than taken from a library: the
statistic is a few lines of NumPy over the runs' hits, and what matters is that it is one documented rule.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from peftlab.errors import ConfigError
from peftlab.evaluate.stats import bootstrap_p_value, wilson_interval

REFERENCE = "full"
KINDS = {"interaction": ("reference", "shifted"), "slope": ("tasks", "levels"), "fit": ("task",)}
CLAIM_KEYS = {"name", "kind", "claim", "tolerance", "reference", "shifted", "tasks", "levels", "task"}
RESAMPLES = 2000


def parse_claims(raw: Any, task_names: list[str], where: str) -> list[dict[str, Any]]:
    """The suite's ``claims:`` checked against its tasks; ConfigError with one line."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: 'claims' must be a list")
    claims = []
    for entry in raw:
        if not isinstance(entry, dict) or entry.get("kind") not in KINDS or not entry.get("name"):
            raise ConfigError(f"{where}: every claim needs a name and a kind ({', '.join(KINDS)})")
        unknown = sorted(set(entry) - CLAIM_KEYS)
        if unknown:
            raise ConfigError(f"{where}, claim {entry['name']!r}: unknown key {', '.join(unknown)}")
        for key in KINDS[entry["kind"]]:
            if key not in entry:
                raise ConfigError(f"{where}, claim {entry['name']!r}: a {entry['kind']} claim needs '{key}'")
        named = [entry[key] for key in ("reference", "task") if key in entry]
        named += list(entry.get("shifted") or []) + list(entry.get("tasks") or [])
        missing = [name for name in named if name not in task_names]
        if missing:
            raise ConfigError(f"{where}, claim {entry['name']!r}: no task {', '.join(map(repr, missing))}")
        if entry["kind"] == "slope" and len(entry["levels"]) != len(entry["tasks"]) or \
                entry["kind"] == "slope" and len(entry["tasks"]) < 2:
            raise ConfigError(f"{where}, claim {entry['name']!r}: 'levels' needs one number per task, 2 tasks or more")
        claims.append(dict(entry))
    return claims


def _hits(results: dict, method: str) -> dict[int, np.ndarray]:
    """{seed: per-example test hits (0/1)} of the method's ok runs that kept them."""
    return {run["seed"]: np.array([c == "1" for c in run["test_correct"]], dtype=float)
            for run in results.get("runs", []) if run["method"] == method and run["status"] == "ok"
            and isinstance(run.get("test_correct"), str) and run["test_correct"]}


def _gap_samples(results: dict, method: str, rng: np.random.Generator) -> tuple[float, np.ndarray] | None:
    """(the method's gap to full in points, its RESAMPLES bootstrap replicates); None without a seed that has both."""
    ours, full = _hits(results, method), _hits(results, REFERENCE)
    seeds = [seed for seed in ours if seed in full and len(ours[seed]) == len(full[seed])]
    if not seeds:
        return None
    per_seed = []  # per seed: RESAMPLES means of the example-resampled differences
    for seed in seeds:
        differences = 100 * (ours[seed] - full[seed])
        picks = rng.integers(0, len(differences), size=(RESAMPLES, len(differences)))
        per_seed.append(differences[picks].mean(axis=1))
    point = float(np.mean([100 * (ours[seed] - full[seed]).mean() for seed in seeds]))
    stacked = np.stack(per_seed)  # seeds x RESAMPLES
    drawn = rng.integers(0, len(seeds), size=(RESAMPLES, len(seeds)))  # the seeds resampled too (one: itself)
    replicates = stacked[drawn, np.arange(RESAMPLES)[:, None]].mean(axis=1)
    return point, replicates


def reference_learned(results: dict) -> tuple[bool, str]:
    """Whether full fine-tuning's test accuracy (all seeds' hits pooled) is above the majority share with its 95%
    Wilson interval."""
    hits = np.concatenate(list(_hits(results, REFERENCE).values()) or [np.zeros(0)])
    majority = ((results.get("study") or {}).get("task") or {}).get("test_majority_share")
    if not hits.size or majority is None:
        return False, "no full fine-tuning run with per-example hits"
    low = wilson_interval(int(hits.sum()), hits.size)[0]
    return low > majority, (f"full fine-tuning {100 * hits.mean():.1f}% (95% interval from {100 * low:.1f}%) "
                            f"against the majority share {100 * majority:.1f}%")


def outcome(statistic: float, interval: list[float], p_value: float, tolerance: float) -> str:
    if p_value < 0.05:
        return "reproduced" if statistic < 0 else "contrary"
    if -tolerance <= interval[0] and interval[1] <= tolerance:
        return "no effect"
    return "inconclusive"


def _test(point: float, replicates: np.ndarray, tolerance: float) -> dict[str, Any]:
    interval = [float(np.percentile(replicates, 2.5)), float(np.percentile(replicates, 97.5))]
    p_value = 1.0 if not replicates.any() and point == 0 else bootstrap_p_value(replicates)
    return {"statistic": point, "ci95": interval, "p_value": p_value,
            "outcome": outcome(point, interval, p_value, tolerance)}


def evaluate_claims(claims: list[dict], finished: dict[str, dict], methods: list[str], seed: int = 0) -> list[dict]:
    """One record per claim: per PEFT method, its statistics with interval, p-value and outcome (see the module
    docstring). A claim is tested on the tasks that have finished (the others listed in ``not_run``) once it has
    its reference and one shifted task (interaction), its task (fit), or its first level and one more (slope);
    before that it is ``pending``."""
    records = []
    for claim in claims:
        tolerance = float(claim.get("tolerance", 1.0))
        record: dict[str, Any] = {"name": claim["name"], "kind": claim["kind"], "claim": claim.get("claim", ""),
                                  "tolerance_points": tolerance, "methods": {}}
        everything = _tasks(claim)
        pending = [task for task in everything if task not in finished]
        claim = _available(claim, finished)
        if claim is None:
            records.append({**record, "status": "pending", "reason": f"not run yet: {', '.join(pending)}"})
            continue
        tasks = _tasks(claim)
        anchor = claim.get("reference") or claim.get("task") or claim["tasks"][0]
        learned, why = reference_learned(finished[anchor]["results"])
        record.update(status="tested" if learned else "inconclusive", reference_task=anchor, reference=why,
                      seeds=min(len(_hits(finished[task]["results"], REFERENCE)) for task in tasks))
        if pending:  # tested on the tasks that have finished; the others are listed
            record["not_run"] = pending
        rng = np.random.default_rng(seed)
        for method in [m for m in _methods(finished, tasks, methods) if m != REFERENCE]:
            gaps = {task: _gap_samples(finished[task]["results"], method, rng) for task in tasks}
            if any(gap is None for gap in gaps.values()):
                continue
            record["methods"][method] = _method_tests(claim, gaps, tolerance)
        if not learned:
            for tests in record["methods"].values():
                for test in tests.values():
                    if isinstance(test, dict) and "outcome" in test:
                        test["outcome"] = "inconclusive"
        records.append(record)
    return records


def _tasks(claim: dict) -> list[str]:
    return [claim[key] for key in ("reference", "task") if key in claim] + list(claim.get("shifted") or []) \
        + list(claim.get("tasks") or [])


def _available(claim: dict, finished: dict[str, dict]) -> dict | None:
    """The claim restricted to the finished tasks, or None when too little has finished to test it."""
    if claim["kind"] == "interaction":
        shifted = [task for task in claim["shifted"] if task in finished]
        return {**claim, "shifted": shifted} if claim["reference"] in finished and shifted else None
    if claim["kind"] == "slope":
        done = [(task, level) for task, level in zip(claim["tasks"], claim["levels"]) if task in finished]
        if claim["tasks"][0] not in finished or len(done) < 2:
            return None
        return {**claim, "tasks": [task for task, _ in done], "levels": [level for _, level in done]}
    return claim if claim["task"] in finished else None


def _methods(finished: dict[str, dict], tasks: list[str], methods: list[str]) -> list[str]:
    """The suite's methods and the variants the tasks ran (``lora[r=4]`` of a sweep), in order of appearance."""
    seen = list(methods)
    for task in tasks:
        for run in finished[task]["results"].get("runs", []):
            if run["method"] not in seen:
                seen.append(run["method"])
    return seen


def _method_tests(claim: dict, gaps: dict[str, tuple[float, np.ndarray]], tolerance: float) -> dict[str, Any]:
    kind = claim["kind"]
    if kind == "interaction":
        reference = gaps[claim["reference"]]
        return {task: {**_test(gaps[task][0] - reference[0], gaps[task][1] - reference[1], tolerance),
                       "gap_points": gaps[task][0], "reference_gap_points": reference[0]}
                for task in claim["shifted"]}
    if kind == "slope":
        levels = np.asarray(claim["levels"], dtype=float)
        centred = levels - levels.mean()
        weights = centred / (centred ** 2).sum()  # the least-squares slope is weights · gaps
        point = float(weights @ np.array([gaps[task][0] for task in claim["tasks"]]))
        replicates = weights @ np.stack([gaps[task][1] for task in claim["tasks"]])
        return {"slope": {**_test(point, replicates, tolerance),
                          "gap_points": {task: gaps[task][0] for task in claim["tasks"]}}}
    point, replicates = gaps[claim["task"]]
    return {"fit": {**_test(point, replicates, tolerance), "gap_points": point}}


def smallest_matching_rank(record: dict, method: str = "lora") -> dict[str, Any] | None:
    """For a fit claim: the variants ``method[r=K]`` by rank, and the smallest K whose fit gap to full is within
    the tolerance (None when none is)."""
    ranks = {}
    for name, tests in record.get("methods", {}).items():
        if name.startswith(f"{method}[r=") and name.endswith("]") and name[len(method) + 3:-1].isdigit():
            ranks[int(name[len(method) + 3:-1])] = tests["fit"]["gap_points"]
    if not ranks:
        return None
    matching = [rank for rank in sorted(ranks) if ranks[rank] >= -record["tolerance_points"]]
    return {"gaps_by_rank": {str(rank): ranks[rank] for rank in sorted(ranks)},
            "smallest_rank_within_tolerance": matching[0] if matching else None}
