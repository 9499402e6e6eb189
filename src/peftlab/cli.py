"""The `peftlab` command line: parses options, calls the Python API, prints. No logic of its own."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from peftlab.errors import PeftlabError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Compare full fine-tuning and parameter-efficient methods on your model and data.")
console = Console(width=None if sys.stdout.isatty() else 200)
errors = Console(stderr=True)


def _quiet_libraries() -> None:
    from peftlab.quiet import quiet_libraries

    quiet_libraries()


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
    robustness: bool = typer.Option(True, "--robustness/--no-robustness", help="After each run: accuracy on perturbed test texts and attack success rates."),
    robust_set: Optional[str] = typer.Option(None, help="Labelled file (any --data file format) every method is also evaluated on, e.g. AdvGLUE or contrast sets."),
    perturb_examples: int = typer.Option(500, help="Test examples perturbed by each perturbation (the same for every method)."),
    perturb_severity: float = typer.Option(0.2, help="Share of the words each perturbation touches."),
    attack_examples: int = typer.Option(50, help="Test examples attacked per method (the same for every method)."),
    attack_query_budget: int = typer.Option(100, help="Model queries per attacked example and attack."),
    diagnose: bool = typer.Option(True, "--diagnose/--no-diagnose", help="After the runs: diagnosis signals and the advisor's call, checked against the runs (OUT/diagnosis.json)."),
    seeds: int = typer.Option(1, help="Run every configuration with this many seeds (seed, seed+1, ...); tables show mean ± std and 95% CI."),
    tune: Optional[str] = typer.Option(None, help="`lr`: search each method's learning rate on validation first (Optuna, successive halving)."),
    tune_points: int = typer.Option(3, help="Learning rates tried per method by --tune lr (log grid around the default)."),
    backend: str = typer.Option("local", help="Where runs execute: local (in-process or --workers processes) or ray."),
    workers: int = typer.Option(1, help="Local worker processes running runs in parallel."),
    ray_address: Optional[str] = typer.Option(None, help="Address of an existing Ray cluster (default: start a local one)."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="On resume, run again the runs stored as failed."),
    task: Optional[str] = typer.Option(None, help="classification, multiple-choice or generation (default: inferred from the data; see docs/DECODERS.md)."),
    gradient_checkpointing: bool = typer.Option(False, "--gradient-checkpointing", help="Recompute activations in backward (less memory, slower)."),
    bf16: bool = typer.Option(False, "--bf16", help="bf16 autocast (weights and optimizer stay fp32)."),
    load_in_4bit: bool = typer.Option(False, "--load-in-4bit", help="Load the base in 4-bit (QLoRA; CUDA + bitsandbytes only)."),
    load_in_8bit: bool = typer.Option(False, "--load-in-8bit", help="Load the base in 8-bit (CUDA + bitsandbytes only)."),
) -> None:
    """Train full fine-tuning and PEFT methods side by side under one budget; print quality, cost and robustness."""
    _quiet_libraries()
    from peftlab.report import print_table
    from peftlab.study import CompareConfig, compare as run_compare

    config = CompareConfig(
        model=model, data=data, methods=methods.split(","), method_config=method_config, subset=subset, split=split,
        text_column=text_column, text_pair_column=text_pair_column, label_column=label_column,
        max_train_examples=max_train_examples or None, max_eval_examples=max_eval_examples or None,
        epochs=epochs, max_steps=max_steps, batch_size=batch_size, max_length=max_length, seed=seed, out=out,
        trust_remote_code=trust_remote_code, robustness=robustness, robust_set=robust_set,
        perturb_examples=perturb_examples, perturb_severity=perturb_severity, attack_examples=attack_examples,
        attack_query_budget=attack_query_budget, diagnose=diagnose, seeds=seeds, tune=tune.split(",") if tune else [],
        tune_points=tune_points, backend=backend, workers=workers, ray_address=ray_address, retry_failed=retry_failed,
        task=task, gradient_checkpointing=gradient_checkpointing, bf16=bf16, load_in_4bit=load_in_4bit,
        load_in_8bit=load_in_8bit,
    )
    start = time.perf_counter()

    if os.environ.get("RANK", "0") != "0":  # under torchrun / accelerate launch the main process prints
        console.quiet = True

    def done(record: dict) -> None:
        status = "ok" if record["status"] == "ok" else f"failed ({record.get('reason', '')})"
        score = next(((k, record["metrics"][k]) for k in ("accuracy", "exact_match") if k in record["metrics"]), None)
        seed = f" (seed {record['seed']})" if seeds > 1 else ""
        console.print(f"[bold]{record['method']}[/bold]{seed}: {status}" + (f", test {score[0].replace('_', ' ')} {score[1]:.3f}" if score else ""))

    try:
        results = run_compare(config, on_run_done=done)
    except KeyboardInterrupt:
        errors.print(f"interrupted; the runs that finished are in {out}/results.json")
        raise typer.Exit(130) from None
    print_table(results, console)
    if config.diagnose:
        from peftlab.diagnose.summary import print_advisor_check

        print_advisor_check(results, console)
    console.print(f"results: {out}/results.json  (wall time {time.perf_counter() - start:.0f} s)")
    if (Path(out) / "report.html").is_file():
        console.print(f"report: {Path(out) / 'report.html'}")


@app.command("diagnose")
def diagnose_command(
    model: str = typer.Option("minilm", help="HF model id, local folder, or offline alias (minilm, smollm2-135m)."),
    data: str = typer.Option("rotten_tomatoes", help="HF dataset name, local CSV/JSONL/Parquet file or folder, BIG-bench task.json, or alias."),
    subset: Optional[str] = typer.Option(None, help="HF dataset configuration name."),
    split: Optional[str] = typer.Option(None, help="Use only this split of the source (then split 80/10/10)."),
    text_column: Optional[str] = typer.Option(None, help="Column holding the text (auto: text, sentence, input...)."),
    text_pair_column: Optional[str] = typer.Option(None, help="Column holding the second text of a pair."),
    label_column: Optional[str] = typer.Option(None, help="Column holding the label (auto: label, category...)."),
    max_train_examples: int = typer.Option(2000, help="Cap on training examples (0 = all)."),
    max_eval_examples: int = typer.Option(1000, help="Cap on validation and on test examples, each (0 = all)."),
    batch_size: int = typer.Option(32, help="Batch size of the full fine-tuning probe."),
    max_length: int = typer.Option(128, help="Truncate inputs to this many tokens."),
    seed: int = typer.Option(0, help="Seed for splits, initialisation and data order."),
    probe_steps: int = typer.Option(100, help="Steps of the short full fine-tuning probe whose update spectrum is measured."),
    out: str = typer.Option("runs/diagnose", help="Output folder: diagnosis.json."),
    trust_remote_code: bool = typer.Option(False, help="Allow model code from the model's repository."),
    as_json: bool = typer.Option(False, "--json", help="Print diagnosis.json to stdout instead of the summary."),
) -> None:
    """Will PEFT work for this task, and which one? Measure the signals and recommend, with reasons."""
    import json

    _quiet_libraries()
    from peftlab.diagnose import DiagnoseConfig, DiagnoseSettings, diagnose as run_diagnose
    from peftlab.diagnose.summary import print_diagnosis

    config = DiagnoseConfig(
        model=model, data=data, subset=subset, split=split, text_column=text_column,
        text_pair_column=text_pair_column, label_column=label_column,
        max_train_examples=max_train_examples or None, max_eval_examples=max_eval_examples or None,
        batch_size=batch_size, max_length=max_length, seed=seed, out=out, trust_remote_code=trust_remote_code,
        settings=DiagnoseSettings(probe_steps=probe_steps),
    )
    diagnosis = run_diagnose(config)
    if as_json:
        from peftlab.files import jsonable

        typer.echo(json.dumps(jsonable(diagnosis), indent=2))
        return
    print_diagnosis(diagnosis, console)
    console.print(f"diagnosis: {out}/diagnosis.json")


@app.command("robustness")
def robustness_command(
    run_dir: str = typer.Argument(..., help="The study folder (the --out of `peftlab compare`)."),
    robust_set: Optional[str] = typer.Option(None, help="Labelled file every method is also evaluated on."),
    perturb_examples: Optional[int] = typer.Option(None, help="Test examples perturbed (default: as the study ran)."),
    perturb_severity: Optional[float] = typer.Option(None, help="Share of the words each perturbation touches."),
    attack_examples: Optional[int] = typer.Option(None, help="Test examples attacked per method."),
    attack_query_budget: Optional[int] = typer.Option(None, help="Model queries per attacked example and attack."),
) -> None:
    """Evaluate the robustness of every method a study saved (no training); update its results.json."""
    _quiet_libraries()
    from peftlab.report.table import print_robustness_table
    from peftlab.study.robustness import evaluate_saved_study

    def done(run: dict) -> None:
        console.print(f"[bold]{run['method']}[/bold]: robustness {run['robustness'].get('status', 'ok')}")

    results = evaluate_saved_study(run_dir, on_run_done=done, robust_set=robust_set, perturb_examples=perturb_examples,
                                   perturb_severity=perturb_severity, attack_examples=attack_examples,
                                   attack_query_budget=attack_query_budget)
    print_robustness_table(results, console)
    console.print(f"results: {run_dir}/results.json")


@app.command("report")
def report_command(
    run_dir: str = typer.Argument(..., help="The study folder (the --out of `peftlab compare`)."),
    format: str = typer.Option("html", "--format", help="html (self-contained page), md (Markdown + PNG figures) or csv (flat table)."),
    out: Optional[str] = typer.Option(None, help="File to write (default: RUN_DIR/report.html, report.md or report.csv)."),
) -> None:
    """Build the study's report from its results.json (and diagnosis.json when present)."""
    from peftlab.report.write import write_report

    console.print(f"report: {write_report(run_dir, format, out)}")


@app.command("bench")
def bench_command(
    suite: str = typer.Argument(..., help="A suite YAML file, or a built-in suite name (peft-vs-fft-cpu)."),
    data_dir: Optional[str] = typer.Option(None, help="Folder holding the suite's data files (default: the suite file's folder)."),
    out: Optional[str] = typer.Option(None, help="Output folder (default: runs/bench/<suite>): suite.json, suite.md, tasks/<task>/."),
    tasks: Optional[str] = typer.Option(None, help="Comma-separated task names: run only these (same output folder)."),
    seeds: Optional[int] = typer.Option(None, help="Seeds per configuration instead of the suite's (a re-run with more adds seeds)."),
) -> None:
    """Run a suite of tasks × methods × seeds as resumable compares; write the suite table (suite.json, suite.md)."""
    _quiet_libraries()
    from peftlab.bench import load_suite, run_suite
    from peftlab.bench.run import SUITE_MARKDOWN

    definition = load_suite(suite, data_dir, tasks.split(",") if tasks else None, seeds)
    folder = out or f"runs/bench/{definition.name}"
    start = time.perf_counter()

    def on_task(task, index: int) -> None:
        console.print(f"[bold]task {index + 1}/{len(definition.tasks)}: {task.name}[/bold] ({task.family}) {task.data}",
                      markup=True, highlight=False)

    def on_run_done(task, record: dict) -> None:
        status = "ok" if record["status"] == "ok" else f"failed ({record.get('reason', '')})"
        console.print(f"  {task.name} / {record['method']} seed {record['seed']}: {status}", markup=False)

    try:
        run_suite(definition, folder, on_task, on_run_done)
    except KeyboardInterrupt:
        errors.print(f"interrupted; finished tasks and runs are kept: re-run the same command to resume ({folder})")
        raise typer.Exit(130) from None
    console.print((Path(folder) / SUITE_MARKDOWN).read_text(), markup=False, highlight=False)
    console.print(f"suite: {folder}/suite.json, {folder}/suite.md  (wall time {time.perf_counter() - start:.0f} s)")


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


@app.command("export")
def export_command(
    run_dir: str = typer.Argument(..., help="The study folder (the --out of `peftlab compare`)."),
    method: str = typer.Option(..., help="The method of the study to export."),
    adapter: Optional[str] = typer.Option(None, help="Write the adapter here (HF peft format where the method is peft's)."),
    merged: Optional[str] = typer.Option(None, help="Write the base with the update merged in here (save_pretrained)."),
    compress: Optional[str] = typer.Option(None, help="Densities, e.g. 0.1,0.3: compressed adapters under ADAPTER/compressed/."),
    quantize: str = typer.Option("int8", help="Quantization of the kept update entries: int8 or sign."),
) -> None:
    """Export a study's method as an adapter and/or a merged model; optionally compress the adapter."""
    _quiet_libraries()
    from peftlab.export import ExportConfig, export
    from peftlab.export.table import print_export

    summary = export(ExportConfig(run_dir=run_dir, method=method, adapter=adapter, merged=merged,
                                  compress=compress.split(",") if compress else [], quantize=quantize))
    print_export(summary, console)


@app.command("estimate")
def estimate_command(
    model: str = typer.Option(..., help="Built-in name (e.g. llama-3.1-8b), config.json, model folder, alias or HF id (config only)."),
    methods: str = typer.Option("full,lora,qlora", help="Comma-separated methods: the registry's, plus qlora."),
    seq_len: int = typer.Option(2048, help="Tokens per sequence."),
    batch_size: int = typer.Option(8, help="Sequences per step (per GPU)."),
    dtype: str = typer.Option("bf16", help="fp32, bf16, fp16 (pure 16-bit) or mixed (fp32 master weights, bf16 autocast)."),
    optimizer: str = typer.Option("adamw", help="adamw, adamw8bit or sgd."),
    grad_checkpointing: bool = typer.Option(False, "--grad-checkpointing", help="Recompute each layer in backward."),
    optimizer_in_backward: bool = typer.Option(False, "--optimizer-in-backward", help="Update each parameter as soon as its gradient exists."),
    gpu: str = typer.Option("H100-80GB", help="GPU for the step time: RTX4090-24GB, L4-24GB, A100-40GB, A6000-48GB, L40S-48GB, A100-80GB, H100-80GB, H200-141GB."),
    utilisation: float = typer.Option(0.4, help="Share of the GPU's peak FLOP/s a step achieves."),
    task: Optional[str] = typer.Option(None, help="causal-lm or classification (default: causal-lm for decoders)."),
    recipe: str = typer.Option("hf", help="Software modelled: hf (transformers + peft) or torchtune."),
    padded: bool = typer.Option(False, "--padded", help="Batches are padded (an attention mask reaches attention)."),
    method_config: Optional[str] = typer.Option(None, help="YAML of per-method settings, e.g. `lora: {r: 16}`."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list, one object per method."),
) -> None:
    """Estimate what each method costs at the target scale, from the model's config alone (no weights)."""
    import json
    from dataclasses import asdict

    from peftlab.estimate import EstimateSettings, estimate
    from peftlab.estimate.load import read_method_overrides
    from peftlab.estimate.table import print_estimate

    names = [name.strip() for name in methods.split(",") if name.strip()]
    settings = EstimateSettings(batch_size=batch_size, seq_len=seq_len, dtype=dtype, optimizer=optimizer,
                                grad_checkpointing=grad_checkpointing, optimizer_in_backward=optimizer_in_backward,
                                gpu=gpu, utilisation=utilisation, task=task, recipe=recipe, padded=padded)
    results = estimate(model, names, settings, read_method_overrides(method_config, names))
    if as_json:
        typer.echo(json.dumps(results, indent=2))
        return
    print_estimate(results, asdict(settings), console)


def main() -> None:
    try:
        app()
    except PeftlabError as error:
        errors.print(f"error: {error}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
