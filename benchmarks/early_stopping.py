"""Benchmark — early stopping and the verdict: the same study at a fixed budget (one validation pass per epoch, as
peftlab ran before --patience) and with early stopping (--evaluations-per-epoch E --patience P), one after the
other in one process, on the same data.

It prints, per method: test accuracy of each side and new − old (goal: no method worse by more than 0.5 point),
the share of the budget the early-stopped run used, and the train-time ratio; then the study's wall-time ratio
new/old (goal ≤ 1.0) and each side's verdict.

    python benchmarks/early_stopping.py --quick   # full, lora, bitfit on 600 training examples, 3 epochs
    python benchmarks/early_stopping.py           # the default study's seven methods and data, 3 epochs
"""

from __future__ import annotations

import argparse
import tempfile
import time

import _common  # noqa: F401  (sets the offline environment first)
from _common import machine, quiet_transformers, set_threads

from peftlab import CompareConfig, compare
from peftlab.methods import DEFAULT_METHODS


def study(args, out: str, early: bool) -> tuple[dict, float]:
    config = CompareConfig(methods=args.methods, max_train_examples=args.train_examples,
                           max_eval_examples=args.eval_examples, epochs=args.epochs, robustness=False, diagnose=False,
                           evaluations_per_epoch=args.evaluations_per_epoch if early else 1,
                           patience=args.patience if early else None, out=out)
    start = time.perf_counter()
    results = compare(config)
    return results, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="three methods on 600 training examples")
    parser.add_argument("--methods", type=lambda text: text.split(","), default=None)
    parser.add_argument("--train-examples", type=int, default=None)
    parser.add_argument("--eval-examples", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--evaluations-per-epoch", type=int, default=2)
    parser.add_argument("--patience", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    args.methods = args.methods or (["full", "lora", "bitfit"] if args.quick else list(DEFAULT_METHODS))
    args.train_examples = args.train_examples or (600 if args.quick else 2000)
    args.eval_examples = args.eval_examples or (300 if args.quick else 1000)
    set_threads(args.threads)
    quiet_transformers()
    print(machine())
    print(f"{len(args.methods)} methods, {args.train_examples} training examples, {args.epochs} epochs; new: "
          f"{args.evaluations_per_epoch} validation passes per epoch, patience {args.patience}")
    with tempfile.TemporaryDirectory() as folder:
        old, old_seconds = study(args, f"{folder}/old", early=False)
        new, new_seconds = study(args, f"{folder}/new", early=True)
    rows = {run["method"]: run for run in old["runs"] if run["status"] == "ok"}
    print(f"\n{'method':<16}{'acc old':>9}{'acc new':>9}{'new-old':>9}{'budget used':>13}{'train s ratio':>15}")
    for run in new["runs"]:
        before = rows.get(run["method"])
        if run["status"] != "ok" or before is None:
            print(f"{run['method']:<16} {run['status']} (new) / {before['status'] if before else 'missing'} (old): "
                  f"{run.get('reason', '')[:300]}")
            continue
        delta = 100 * (run["metrics"]["accuracy"] - before["metrics"]["accuracy"])
        ratio = run["cost"]["train_seconds"] / before["cost"]["train_seconds"]
        print(f"{run['method']:<16}{before['metrics']['accuracy']:>9.3f}{run['metrics']['accuracy']:>9.3f}"
              f"{delta:>+9.1f}{run['cost']['budget_used']:>13.2f}{ratio:>15.2f}")
    print(f"\nstudy wall time: old {old_seconds:.0f} s, new {new_seconds:.0f} s, ratio new/old "
          f"{new_seconds / old_seconds:.2f}")
    for name, results in (("old", old), ("new", new)):
        verdict = results["verdict"]
        print(f"verdict ({name}): {verdict['decision']}; " + " | ".join(verdict["reasons"][:2]))


if __name__ == "__main__":
    main()
