"""Benchmark 4 — shared-base training: K LoRA runs trained stacked on one frozen base by peftlab's one loop
(`train` with a `RunStack`, peftlab.train.stacked; what `compare --shared-base K` does) versus the same K runs
trained one after another by the same loop.

Both sides build their runs the same way (fresh base, LoRA applied, each run's seed), train for the same budget
and validate at the end; each side's wall time covers all of that. Runs differ in rank, learning rate and seed
(their data orders differ, so the stacked batch is padded to the longest of the K). Target on CPU: stacked /
one after another ≤ 1.0 for K = 4 (not slower).

    python benchmarks/shared_base.py --quick     # K=4, 6 steps, 3 repeats (minutes on 2 cores)
    python benchmarks/shared_base.py             # K=4, one epoch of 1,024 examples, 3 repeats
    python benchmarks/shared_base.py --quick --same-rank --same-seed   # no padding, one rank: the best case
"""

from __future__ import annotations

import argparse

import _common  # noqa: F401  (sets the offline environment first)
from _common import build, interleaved, load_data, machine, quiet_transformers, ratios, set_threads, spread, table

RANKS = (4, 8, 8, 16)
LEARNING_RATES = (5e-4, 5e-4, 1e-3, 5e-4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int, default=4, help="K, the number of LoRA runs")
    parser.add_argument("--same-seed", action="store_true", help="every run uses seed 0 (same batches, no padding)")
    parser.add_argument("--same-rank", action="store_true", help="every run has rank 8")
    parser.add_argument("--steps", type=int, default=None, help="max steps (default: quick 6, full one epoch)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: physical cores)")
    args = parser.parse_args()
    set_threads(args.threads)
    quiet_transformers()
    import time

    from accelerate import Accelerator

    from peftlab.train import RunStack, TrainConfig, train

    steps = args.steps or (6 if args.quick else None)
    ref, tokenizer, task, encoded = load_data(args.model, 256 if args.quick else 1024, 128)
    runs = [(8 if args.same_rank else RANKS[k % len(RANKS)], LEARNING_RATES[k % len(LEARNING_RATES)],
             0 if args.same_seed else k) for k in range(args.runs)]
    print(f"machine: {machine()}")
    print(f"{args.model}: K={len(runs)} LoRA runs {runs} (rank, lr, seed); {len(encoded['train'])} train examples, "
          f"batch {args.batch_size}, {steps or 'one epoch of'} steps, validation on {len(encoded['validation'])}; "
          f"{args.repeats} repeats interleaved")

    def built():
        return [build(ref, task, tokenizer, "lora", {"r": rank, "lora_alpha": 2 * rank}, seed)[0]
                for rank, _, seed in runs]

    def configs():
        return [TrainConfig(learning_rate=rate, epochs=1, max_steps=steps, batch_size=args.batch_size, seed=seed)
                for _, rate, seed in runs]

    loop: dict[str, list[float]] = {"one after another": [], "stacked": []}  # the loop's own train_seconds

    def one_after_another() -> float:
        start = time.perf_counter()
        outcomes = [train(model, encoded, tokenizer, config, Accelerator(), task.num_labels)
                    for model, config in zip(built(), configs())]
        loop["one after another"].append(sum(outcome.train_seconds for outcome in outcomes))
        return time.perf_counter() - start

    def stacked() -> float:
        start = time.perf_counter()
        outcomes = train(RunStack(built(), tokenizer.pad_token_id, tokenizer.padding_side), encoded, tokenizer,
                         configs(), Accelerator(), task.num_labels)
        loop["stacked"].append(outcomes[0].train_seconds)  # every run's record holds the shared training time
        return time.perf_counter() - start

    seconds = interleaved({"one after another": one_after_another, "stacked": stacked}, args.repeats)
    print()
    print(table(["K", "measured", "one after another s (min/med/max)", "stacked s (min/med/max)",
                 "stacked / one after another"],
                [[str(len(runs)), what, spread(values["one after another"]), spread(values["stacked"]),
                  spread(ratios(values["stacked"], values["one after another"]))]
                 for what, values in (("wall (build, train, validate)", seconds),
                                      ("training steps only", loop))]))


if __name__ == "__main__":
    main()
