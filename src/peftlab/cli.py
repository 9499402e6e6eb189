"""The `peftlab` command line: parses options, calls the Python API, prints. No logic of its own."""

from __future__ import annotations

import os
import sys
import time
import warnings
from typing import Optional

import typer
from rich.console import Console

from peftlab.errors import PeftlabError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Compare full fine-tuning and parameter-efficient methods on your model and data.")
console = Console(width=None if sys.stdout.isatty() else 200)
errors = Console(stderr=True)


def _quiet_libraries() -> None:
    """Keep the libraries' own logging and progress bars out of the way of peftlab's output."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=FutureWarning)
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()


@app.command()
def compare(
    model: str = typer.Option("minilm", help="HF model id, local folder, or offline alias (minilm, smollm2-135m)."),
    data: str = typer.Option("rotten_tomatoes", help="HF dataset name, local CSV/JSONL/Parquet file or folder, BIG-bench task.json, or alias."),
    methods: str = typer.Option(",".join(__import__("peftlab.methods", fromlist=["x"]).DEFAULT_METHODS), help="Comma-separated method names (see `peftlab methods`)."),
    method_config: Optional[str] = typer.Option(None, help="YAML of per-method overrides, e.g. `lora: {r: 16, learning_rate: 1e-4}`."),
    subset: Optional[str] = typer.Option(None, help="HF dataset configuration name."),
    split: Optional[str] = typer.Option(None, help="Use only this split of the source (then split 80/10/10)."),
    text_column: Optional[str] = typer.Option(None, help="Column holding the text (auto: text, sentence, input...)."),
    text_pair_column: Optional[str] = typer.Option(None, help="Column holding the second text of a pair."),
    label_column: Optional[str] = typer.Option(None, help="Column holding the label (auto: label, category...)."),
    max_train_examples: int = typer.Option(2000, help="Cap on training examples (0 = all)."),
    max_eval_examples: int = typer.Option(1000, help="Cap on validation and on test examples, each (0 = all)."),
    epochs: int = typer.Option(3, help="Training epochs per method."),
    max_steps: Optional[int] = typer.Option(None, help="Training steps per method (overrides --epochs)."),
    batch_size: int = typer.Option(32, help="Training batch size."),
    max_length: int = typer.Option(128, help="Truncate inputs to this many tokens."),
    seed: int = typer.Option(0, help="Seed for splits, initialisation and data order."),
    out: str = typer.Option("runs/compare", help="Output folder: results.json and one folder per trained method."),
    trust_remote_code: bool = typer.Option(False, help="Allow model code from the model's repository."),
) -> None:
    """Train full fine-tuning and PEFT methods side by side under one budget; print quality and cost."""
    _quiet_libraries()
    from peftlab.report import print_table
    from peftlab.study import CompareConfig, compare as run_compare

    config = CompareConfig(
        model=model, data=data, methods=methods.split(","), method_config=method_config, subset=subset, split=split,
        text_column=text_column, text_pair_column=text_pair_column, label_column=label_column,
        max_train_examples=max_train_examples or None, max_eval_examples=max_eval_examples or None,
        epochs=epochs, max_steps=max_steps, batch_size=batch_size, max_length=max_length, seed=seed, out=out,
        trust_remote_code=trust_remote_code,
    )
    start = time.perf_counter()

    def done(record: dict) -> None:
        status = "ok" if record["status"] == "ok" else f"failed ({record.get('reason', '')})"
        accuracy = record["metrics"].get("accuracy")
        console.print(f"[bold]{record['method']}[/bold]: {status}" + (f", test accuracy {accuracy:.3f}" if accuracy is not None else ""))

    try:
        results = run_compare(config, on_run_done=done)
    except KeyboardInterrupt:
        errors.print(f"interrupted; the runs that finished are in {out}/results.json")
        raise typer.Exit(130) from None
    print_table(results, console)
    console.print(f"results: {out}/results.json  (wall time {time.perf_counter() - start:.0f} s)")


@app.command("methods")
def list_methods() -> None:
    """List the registered methods with their default learning rate and settings."""
    from rich.table import Table

    from peftlab.methods import METHODS

    table = Table("method", "default lr", "defaults", "what it trains")
    for method in METHODS.values():
        defaults = ", ".join(f"{k}={v}" for k, v in method.defaults.items()) or "-"
        table.add_row(method.name, f"{method.learning_rate:g}", defaults, method.summary)
    console.print(table)


def main() -> None:
    try:
        app()
    except PeftlabError as error:
        errors.print(f"error: {error}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
