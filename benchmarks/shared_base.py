"""Benchmark 4 — shared-base concurrent training: K LoRA runs trained together over one frozen base
(peftlab.train.multi) versus the same K runs one after another with peftlab's `train`.

Both sides build their runs (fresh base, LoRA applied, same seeds), train for the same budget and validate after
every epoch; each side's wall time covers all of that. Runs differ in rank, learning rate and seed. Target on CPU:
together / one-after-another ≤ 0.8 for K = 4.

    python benchmarks/shared_base.py --quick     # K=4, 6 steps, 2 repeats (minutes on 2 cores)
    python benchmarks/shared_base.py             # K=4, one epoch of 2,000 examples, 3 repeats
    python benchmarks/shared_base.py --quick --profile   # plus the top operators of each side (torch.profiler)
"""

from __future__ import annotations

import argparse

import _common  # noqa: F401  (sets the offline environment first)
from _common import interleaved, load_data, machine, quiet_transformers, ratios, set_threads, spread, table, timed

RANKS = (4, 8, 8, 16)
LEARNING_RATES = (5e-4, 5e-4, 1e-3, 5e-4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int, default=4, help="K, the number of LoRA runs")
    parser.add_argument("--same-seed", action="store_true", help="every run uses seed 0 (same batches)")
    parser.add_argument("--steps", type=int, default=None, help="max steps (default: quick 6, full one epoch)")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: physical cores)")
    parser.add_argument("--profile", action="store_true", help="then profile one pass of each side")
    args = parser.parse_args()
    set_threads(args.threads)
    quiet_transformers()
    from accelerate import Accelerator

    from peftlab.models import load_classifier
    from peftlab.train import TrainConfig, train
    from peftlab.train.multi import RunSpec, _single_run_model, build_shared_model, train_shared

    steps = args.steps or (6 if args.quick else None)
    repeats = args.repeats or (2 if args.quick else 3)
    ref, tokenizer, task, encoded = load_data(args.model, 256 if args.quick else 2000, 128)
    specs = [RunSpec(f"run{k}", {"r": RANKS[k % len(RANKS)], "lora_alpha": 2 * RANKS[k % len(RANKS)]},
                     seed=0 if args.same_seed else k, learning_rate=LEARNING_RATES[k % len(LEARNING_RATES)])
             for k in range(args.runs)]
    print(f"machine: {machine()}")
    print(f"{args.model}: K={len(specs)} LoRA runs {[(s.overrides['r'], s.learning_rate, s.seed) for s in specs]} "
          f"(rank, lr, seed); {len(encoded['train'])} train examples, batch {args.batch_size}, "
          f"{steps or 'one epoch of'} steps; {repeats} repeats interleaved")

    def load_base():
        return load_classifier(ref, task.label_names, tokenizer.pad_token_id)

    def config():  # the shared budget; each run's learning rate and seed replace these two
        return TrainConfig(learning_rate=1.0, epochs=1, max_steps=steps, batch_size=args.batch_size)

    def one_after_another():
        accelerator = Accelerator()
        for spec in specs:
            model, _, learning_rate = _single_run_model(load_base, "lora", spec)
            run_config = TrainConfig(learning_rate=learning_rate, epochs=1, max_steps=steps,
                                     batch_size=args.batch_size, seed=spec.seed)
            train(model, encoded, tokenizer, run_config, accelerator, task.num_labels)

    def together():
        model, learning_rates = build_shared_model(load_base, specs)
        train_shared(model, specs, learning_rates, encoded, tokenizer, config(), task.num_labels)

    seconds = interleaved({"one after another": lambda: timed(one_after_another),
                           "together": lambda: timed(together)}, repeats)
    print()
    print(table(["K", "one after another s (min/med/max)", "together s", "together / one after another"],
                [[str(len(specs)), spread(seconds["one after another"]), spread(seconds["together"]),
                  spread(ratios(seconds["together"], seconds["one after another"]))]]))
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        for name, run in (("one after another", one_after_another), ("together", together)):
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                run()
            print(f"\nprofile of one pass: {name}")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
