"""Benchmark — the default study before and after fair rates: the same methods on the same data, run one after the
other in one process, with

- **old**: fixed learning rates (`--no-tune`), one validation pass per epoch, no early stopping (peftlab's default
  before the verdict issue);
- **new**: peftlab's current defaults for tuning, validation passes and early stopping (each can be set here with
  --tune-points / --evaluations-per-epoch / --patience to measure another setting).

It prints, per method: test accuracy of each side and new − old (goal: no method worse by more than 0.5 point;
methods that were mis-tuned should gain), the learning rate each side used, the share of the old budget (steps)
the new side trained in all (its rate race's trials included) and the train-time ratio; then the studies' wall-time
ratio new/old (goal ≤ 1.0, stretch 0.7) and each side's verdict.

    python benchmarks/default_study.py --quick   # full, lora, bitfit, prompt on 1,000 training examples
    python benchmarks/default_study.py           # the default study's methods and data
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time

import _common  # noqa: F401  (sets the offline environment first)
from _common import machine, quiet_transformers, set_threads

from peftlab import CompareConfig, compare


def study(args, out: str, new: bool) -> tuple[dict, float]:
    settings = dict(methods=args.methods, max_train_examples=args.train_examples, max_eval_examples=args.eval_examples,
                    epochs=args.epochs, robustness=False, diagnose=False, out=out)
    if args.max_length:
        settings["max_length"] = args.max_length
    if new:
        for name in ("tune_points", "evaluations_per_epoch", "patience"):
            if getattr(args, name) is not None:
                settings[name] = getattr(args, name)
    else:
        settings.update(no_tune=True, evaluations_per_epoch=1, patience=None)
    config = CompareConfig(**settings)
    start = time.perf_counter()
    results = compare(config)
    return results, time.perf_counter() - start


def trained_steps(results: dict, method: str) -> int:
    """Every optimizer step the study spent on ``method``: its rate trials (the chosen one is its run) or its run."""
    tuned = ((results.get("tuning") or {}).get("methods") or {}).get(method)
    if tuned:
        return tuned["steps"]
    return sum(run["cost"]["train_steps"] for run in results["runs"] if run["method"] == method and run["status"] == "ok")


def stopped_at(run: dict) -> str:
    stopped = (run.get("stopped") or {}).get("step")
    return f"step {stopped} of {run['cost']['budget_steps']}" if stopped else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="four methods on 1,000 training examples")
    parser.add_argument("--methods", type=lambda text: text.split(","), default=None)
    parser.add_argument("--train-examples", type=int, default=None)
    parser.add_argument("--eval-examples", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--max-length", type=int, default=None)
    parser.add_argument("--tune-points", type=int, default=None)
    parser.add_argument("--evaluations-per-epoch", type=int, default=None)
    parser.add_argument("--patience", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=None, help="keep both studies here (OUT/old, OUT/new); default: a temporary "
                        "folder")
    args = parser.parse_args()
    defaults = CompareConfig()
    args.methods = args.methods or (["full", "lora", "bitfit", "prompt"] if args.quick
                                    else [m for m in defaults.methods if m != "zero-shot"])
    args.train_examples = args.train_examples or (1000 if args.quick else defaults.max_train_examples)
    args.eval_examples = args.eval_examples or (500 if args.quick else defaults.max_eval_examples)
    args.epochs = args.epochs or defaults.epochs
    set_threads(args.threads)
    quiet_transformers()
    print(machine())
    new_config = dataclasses.replace(defaults, **{name: getattr(args, name) for name in
                                                  ("tune_points", "evaluations_per_epoch", "patience")
                                                  if getattr(args, name) is not None})
    print(f"{len(args.methods)} methods, {args.train_examples} training examples, {args.epochs} epochs; old: fixed "
          f"rates, 1 validation pass per epoch, no early stopping; new: {new_config.tune_points} rates raced, "
          f"{new_config.evaluations_per_epoch} validation passes per epoch, patience {new_config.patience}")
    with tempfile.TemporaryDirectory() as temporary:
        folder = args.out or temporary
        old, old_seconds = study(args, f"{folder}/old", new=False)
        new, new_seconds = study(args, f"{folder}/new", new=True)
    rows = {run["method"]: run for run in old["runs"] if run["status"] == "ok"}
    print(f"\n{'method':<12}{'acc old':>9}{'acc new':>9}{'new-old':>9}{'lr old':>9}{'lr new':>9}"
          f"{'steps new/old':>15}{'wall s new/old':>16}  stopped")
    worse = []
    for run in new["runs"]:
        before = rows.get(run["method"])
        if run["status"] != "ok" or before is None:
            print(f"{run['method']:<12} {run['status']} (new) / {before['status'] if before else 'missing'} (old): "
                  f"{run.get('reason', '')[:300]}")
            continue
        method = run["method"]
        delta = 100 * (run["metrics"]["accuracy"] - before["metrics"]["accuracy"])
        worse += [method] if delta < -0.5 else []
        steps = trained_steps(new, method) / max(1, trained_steps(old, method))
        tuned = ((new.get("tuning") or {}).get("methods") or {}).get(method) or {}
        seconds = run["timing"]["wall_seconds"] + sum(t["seconds"] for t in tuned.get("trials", []))
        print(f"{method:<12}{before['metrics']['accuracy']:>9.3f}{run['metrics']['accuracy']:>9.3f}{delta:>+9.1f}"
              f"{before['config']['learning_rate']:>9.2g}{run['config']['learning_rate']:>9.2g}{steps:>15.2f}"
              f"{seconds / before['timing']['wall_seconds']:>16.2f}  "
              f"{stopped_at(run)}")
    print(f"\nstudy wall time: old {old_seconds:.0f} s, new {new_seconds:.0f} s, ratio new/old "
          f"{new_seconds / old_seconds:.2f} (goal <= 1.0, stretch 0.7)")
    print(f"methods worse by more than 0.5 point: {', '.join(worse) or 'none'}")
    for name, results in (("old", old), ("new", new)):
        verdict = results["verdict"]
        print(f"verdict ({name}): {verdict['decision']}; " + " | ".join(verdict["reasons"][:3]))


if __name__ == "__main__":
    main()
