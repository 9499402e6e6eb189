"""Benchmark 3 — end to end: a study run by `peftlab compare` versus the same study written by hand with HF
`Trainer` + peft, one after the other, in one process.

The baseline is a well-configured Trainer loop per method: dynamic padding (DataCollatorWithPadding),
`group_by_length`, the same learning rate, epochs, batch size, weight decay, warm-up and clipping as peftlab,
evaluation every epoch with the best epoch restored (`load_best_model_at_end`, which needs a checkpoint per
epoch), then test accuracy. It tokenizes inside its per-method loop, as a loop per method does. The models are
built by peftlab's method recipes (fresh base, same seed), so both sides train the same thing; what differs is
the machinery. peftlab's side runs without robustness (the baseline has none) but keeps its own measurements
(inference latency, saved artifacts, the estimate check). Target: peftlab ≤ 0.6× the baseline's wall time with
every method's test accuracy within 1 point.

    python benchmarks/end_to_end.py --quick      # full, head, lora on 256 training examples, 1 epoch
    python benchmarks/end_to_end.py              # the default study: seven methods, 2,000 examples, 3 epochs
    python benchmarks/end_to_end.py --methods bitfit --seeds 3   # one method, training seeds 0-2 on both sides

With `--seeds N` both sides train every method with seeds 0..N-1 on the same data split (peftlab's `--seeds`),
and the table shows each side's mean and its per-seed accuracies.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import _common  # noqa: F401  (sets the offline environment first)
import numpy as np
from _common import machine, quiet_transformers, set_threads, table


def peftlab_study(args, out: str) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Test accuracy per method and seed, and the seconds of each phase of peftlab's runs summed over the runs."""
    from peftlab import CompareConfig, compare

    config = CompareConfig(methods=args.methods, max_train_examples=args.train_examples,
                           max_eval_examples=args.eval_examples, epochs=args.epochs, robustness=False, diagnose=False,
                           seeds=args.seeds, out=out)
    results = compare(config)
    phases: dict[str, float] = {}
    for run in results["runs"]:
        for phase, seconds in run["timing"].get("phases", {}).items():
            phases[phase] = phases.get(phase, 0.0) + seconds
    accuracy: dict[str, list[float]] = {}
    for run in sorted((run for run in results["runs"] if run["status"] == "ok"), key=lambda run: run["seed"]):
        accuracy.setdefault(run["method"], []).append(100 * run["metrics"]["accuracy"])
    return accuracy, phases


def trainer_study(args, out: str) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Test accuracy per method and seed, and the seconds of build (tokenize, model), train (with its per-epoch
    evaluation and checkpoints) and test, summed over the runs."""
    from accelerate.utils import set_seed
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    from peftlab.methods import get_method
    from peftlab.models import load_classifier, load_tokenizer, resolve_model
    from peftlab.tasks import load_task

    ref = resolve_model("minilm")
    accuracy, phases = {}, {"build": 0.0, "train": 0.0, "test": 0.0}
    for name, seed in ((name, seed) for name in args.methods for seed in range(args.seeds)):
        start = time.perf_counter()
        tokenizer = load_tokenizer(ref)
        task = load_task("rotten_tomatoes", max_train_examples=args.train_examples,
                         max_eval_examples=args.eval_examples, seed=0)
        splits = {split: data.map(lambda b: tokenizer(b["text"], truncation=True, max_length=128), batched=True)
                  .rename_column("label", "labels").remove_columns(["text"]) for split, data in task.splits.items()}
        set_seed(seed)
        base = load_classifier(ref, task.label_names, tokenizer.pad_token_id)
        method = get_method(name)
        settings, learning_rate = method.resolve(base, {})
        model = method.apply(base, settings)
        training = TrainingArguments(
            output_dir=f"{out}/{name}-{seed}", num_train_epochs=args.epochs, per_device_train_batch_size=32,
            per_device_eval_batch_size=64, learning_rate=learning_rate, weight_decay=0.01, warmup_steps=0.06,
            max_grad_norm=1.0, lr_scheduler_type="linear", eval_strategy="epoch", save_strategy="epoch",
            save_total_limit=1, load_best_model_at_end=True, metric_for_best_model="accuracy",
            train_sampling_strategy="group_by_length", seed=seed, report_to="none", disable_tqdm=True, use_cpu=True,
        )

        def metrics(prediction):
            return {"accuracy": float((np.argmax(prediction.predictions, -1) == prediction.label_ids).mean())}

        trainer = Trainer(model=model, args=training, train_dataset=splits["train"], eval_dataset=splits["validation"],
                          data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=metrics)
        phases["build"] += time.perf_counter() - start
        start = time.perf_counter()
        trainer.train()
        phases["train"] += time.perf_counter() - start
        start = time.perf_counter()
        accuracy.setdefault(name, []).append(100 * trainer.evaluate(splits["test"])["eval_accuracy"])
        phases["test"] += time.perf_counter() - start
    return accuracy, phases


def _accuracies(values: list[float]) -> str:
    """`81.6`, or with several seeds `80.9 (81.6, 80.2, 80.9)`: the mean, then each seed's."""
    mean = f"{np.mean(values):.1f}"
    return mean if len(values) == 1 else f"{mean} ({', '.join(f'{v:.1f}' for v in values)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--methods", default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: physical cores)")
    parser.add_argument("--seeds", type=int, default=1, help="training seeds 0..N-1 per method, on both sides")
    args = parser.parse_args()
    set_threads(args.threads)
    quiet_transformers()
    from peftlab.methods import DEFAULT_METHODS

    args.methods = args.methods.split(",") if args.methods else (["full", "head", "lora"] if args.quick
                                                                  else list(DEFAULT_METHODS))
    args.train_examples, args.eval_examples, args.epochs = (256, 128, 1) if args.quick else (2000, 1000, 3)
    print(f"machine: {machine()}")
    print(f"methods {args.methods}; {args.train_examples} train / {args.eval_examples} validation and test examples; "
          f"{args.epochs} epochs, batch 32; training seeds 0..{args.seeds - 1}")
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        ours, our_phases = peftlab_study(args, f"{out}/peftlab")
        peftlab_seconds = time.perf_counter() - start
        start = time.perf_counter()
        theirs, their_phases = trainer_study(args, f"{out}/trainer")
        trainer_seconds = time.perf_counter() - start
    nan = [float("nan")]
    rows = [[name, _accuracies(ours.get(name, nan)), _accuracies(theirs[name]),
             f"{np.mean(ours.get(name, nan)) - np.mean(theirs[name]):+.1f}"] for name in args.methods]
    print(table(["method", "peftlab test acc %", "Trainer test acc %", "difference pts"], rows))
    print(f"wall time: peftlab {peftlab_seconds:.1f} s, Trainer + peft {trainer_seconds:.1f} s, "
          f"ratio {peftlab_seconds / trainer_seconds:.2f}")
    # where the time went: peftlab's per-run phases (timing.phases of its records) and the rest of its wall time
    # (loading and tokenizing the study once, results.json, the report) next to the baseline's
    our_phases["study set-up, results, report, rest"] = peftlab_seconds - sum(our_phases.values())
    their_phases["other"] = trainer_seconds - sum(their_phases.values())
    names = list(dict.fromkeys([*our_phases, *their_phases]))
    print(table(["phase (summed over methods)", "peftlab s", "Trainer s"],
                [[name, f"{our_phases[name]:.1f}" if name in our_phases else "-",
                  f"{their_phases[name]:.1f}" if name in their_phases else "-"] for name in names]))


if __name__ == "__main__":
    main()
