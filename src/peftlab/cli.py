"""The `peftlab` command line: parses options, calls the Python API, prints. No logic of its own.

The options of `compare` and `diagnose` are derived from their configuration dataclasses
(:class:`peftlab.study.config.CompareConfig`, :class:`peftlab.diagnose.DiagnoseConfig`): each field is one option,
with the help text its declaration carries (:func:`peftlab.options.option`). `--config study.yaml` supplies any of
them; options given on the command line win over the file.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import sys
import time
import typing
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich.console import Console
from rich.table import Table

from peftlab.bench import load_suite, run_suite
from peftlab.bench.run import SUITE_MARKDOWN
from peftlab.diagnose import DiagnoseConfig, DiagnoseSettings, diagnose as run_diagnose
from peftlab.diagnose.summary import print_advisor_check, print_diagnosis
from peftlab.errors import PeftlabError
from peftlab.estimate import EstimateSettings, estimate
from peftlab.estimate.load import read_method_overrides
from peftlab.estimate.table import print_estimate
from peftlab.export import ExportConfig, export
from peftlab.export.table import print_export
from peftlab.files import RESULTS_FILE, jsonable
from peftlab.methods import METHODS
from peftlab.options import config_from_mapping, config_from_sources, config_yaml, split_list
from peftlab.quiet import quiet_libraries
from peftlab.recipe import compare as run_compare
from peftlab.report import print_table
from peftlab.report.progress import ProgressDisplay
from peftlab.report.table import print_robustness_table
from peftlab.report.write import write_report
from peftlab.study.config import CompareConfig
from peftlab.study.robustness import evaluate_saved_study

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Compare full fine-tuning and parameter-efficient methods on your model and data.")
console = Console(width=None if sys.stdout.isatty() else 200)
errors = Console(stderr=True)


# --- options derived from the configuration dataclasses ------------------------------------------------------------

def _cli_type(hint: Any, kind: str | None) -> Any:
    """The command line's type for a field: lists are comma-separated strings; `X | None` is Optional[X]."""
    if kind == "list":
        return Optional[str]
    if kind == "zero_none":
        return int
    arguments = [a for a in typing.get_args(hint) if a is not type(None)]
    return Optional[arguments[0]] if arguments and type(None) in typing.get_args(hint) else hint


def field_parameters(cls) -> list[inspect.Parameter]:
    """One typer option per field of ``cls`` that declares its help (:func:`peftlab.options.option`)."""
    hints = typing.get_type_hints(cls)
    parameters = []
    for item in dataclasses.fields(cls):
        if not item.init or "help" not in item.metadata:
            continue
        kind = item.metadata.get("cli")
        default = item.default if item.default is not dataclasses.MISSING else item.default_factory()
        if kind == "list":
            default = ",".join(default or []) or None
        flags = [item.metadata["flag"]] if item.metadata.get("flag") else []
        option = typer.Option(default, *flags, help=item.metadata["help"])
        parameters.append(inspect.Parameter(item.name, inspect.Parameter.KEYWORD_ONLY, default=option,
                                            annotation=_cli_type(hints[item.name], kind)))
    return parameters


def command_from(parameters: list[inspect.Parameter], body: Callable[..., None], doc: str) -> Callable[..., None]:
    """A typer command whose options are ``parameters``; ``body(ctx, values)`` receives every value by name."""
    def command(ctx: typer.Context, **values: Any) -> None:
        body(ctx, values)

    context = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
    command.__signature__ = inspect.Signature([context, *parameters])
    command.__annotations__ = {p.name: p.annotation for p in [context, *parameters]}
    command.__doc__ = doc
    return command


def given_on_command_line(ctx: typer.Context, values: dict[str, Any], cls) -> dict[str, Any]:
    """The values of ``cls``'s fields that the user typed (not the defaults). typer vendors its own click, so the
    source is compared by name."""
    names = {item.name for item in dataclasses.fields(cls)}
    return {name: value for name, value in values.items()
            if name in names and getattr(ctx.get_parameter_source(name), "name", None) == "COMMANDLINE"}


def _extra(name: str, default: Any, annotation: Any, *flags: str, help: str) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=typer.Option(default, *flags, help=help),
                             annotation=annotation)


# --- compare ---------------------------------------------------------------------------------------------------------

def interrupted_message(out: str | Path) -> str:
    """What Ctrl-C leaves: results.json only once a run has finished (it is written after each)."""
    if (Path(out) / RESULTS_FILE).is_file():
        return f"interrupted; the runs that finished are in {out}/{RESULTS_FILE}"
    return f"interrupted; no run had finished (re-run the same command to start the study in {out} again)"


def waiting(holder: str) -> None:
    """--wait: say once whom we wait for (stderr, so that --print-config and piped tables stay clean)."""
    errors.print(f"waiting: {holder}", markup=False, highlight=False, soft_wrap=True)


def _compare(ctx: typer.Context, values: dict[str, Any]) -> None:
    config = config_from_sources(CompareConfig, values["config"], given_on_command_line(ctx, values, CompareConfig))
    if values["print_config"]:
        typer.echo(config_yaml(jsonable(config.describe())), nl=False)
        return
    out, start = config.out, time.perf_counter()
    if os.environ.get("RANK", "0") != "0":  # under torchrun / accelerate launch the main process prints
        console.quiet = True

    try:  # one line per finished run; on a terminal also a live display of the run in progress
        results = run_compare(config, on_wait=waiting, progress=ProgressDisplay(console, seeds=config.seeds))
    except KeyboardInterrupt:
        errors.print(interrupted_message(out), markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(130) from None
    print_table(results, console)
    if config.diagnose:
        print_advisor_check(results, console)
    console.print(f"results: {out}/results.json  (wall time {time.perf_counter() - start:.0f} s)")
    if (Path(out) / "report.html").is_file():
        console.print(f"report: {Path(out) / 'report.html'}")


app.command("compare")(command_from(
    [*field_parameters(CompareConfig),
     _extra("config", None, Optional[str], "--config", help="A YAML file of compare options (any option below, by "
            "name); options given on the command line win over it."),
     _extra("print_config", False, bool, "--print-config", help="Print the effective configuration as YAML (the "
            "file --config reads) and exit.")],
    _compare, "Train full fine-tuning and PEFT methods side by side under one budget; print quality, cost and "
              "robustness."))


# --- diagnose --------------------------------------------------------------------------------------------------------

def _diagnose(ctx: typer.Context, values: dict[str, Any]) -> None:
    settings = config_from_mapping(DiagnoseSettings, given_on_command_line(ctx, values, DiagnoseSettings))
    config = config_from_mapping(DiagnoseConfig, {**given_on_command_line(ctx, values, DiagnoseConfig),
                                                  "settings": settings})
    diagnosis = run_diagnose(config)
    if values["as_json"]:
        typer.echo(json.dumps(jsonable(diagnosis), indent=2))
        return
    print_diagnosis(diagnosis, console)
    console.print(f"diagnosis: {config.out}/diagnosis.json")


app.command("diagnose")(command_from(
    [*field_parameters(DiagnoseConfig), *field_parameters(DiagnoseSettings),
     _extra("as_json", False, bool, "--json", help="Print diagnosis.json to stdout instead of the summary.")],
    _diagnose, "Will PEFT work for this task, and which one? Measure the signals and recommend, with reasons."))


@app.command("robustness")
def robustness_command(
    run_dir: str = typer.Argument(..., help="The study folder (the --out of `peftlab compare`)."),
    robust_set: Optional[str] = typer.Option(None, help="Labelled file every method is also evaluated on."),
    perturb_examples: Optional[int] = typer.Option(None, help="Test examples perturbed (default: as the study ran)."),
    perturb_severity: Optional[float] = typer.Option(None, help="Share of the words each perturbation touches."),
    attack_examples: Optional[int] = typer.Option(None, help="Test examples attacked per method."),
    attack_query_budget: Optional[int] = typer.Option(None, help="Model queries per attacked example and attack."),
    wait: bool = typer.Option(False, "--wait", help="When another peftlab process is writing the study, wait for "
                              "it to finish instead of exiting."),
) -> None:
    """Evaluate the robustness of every method a study saved (no training); update its results.json."""

    def done(run: dict) -> None:
        console.print(f"[bold]{run['method']}[/bold]: robustness {run['robustness'].get('status', 'ok')}")

    results = evaluate_saved_study(run_dir, on_run_done=done, wait=wait, on_wait=waiting, robust_set=robust_set,
                                   perturb_examples=perturb_examples,
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

    definition = load_suite(suite, data_dir, tasks.split(",") if tasks else None, seeds)
    folder = out or f"runs/bench/{definition.name}"
    start = time.perf_counter()

    def on_task(task, index: int) -> None:
        console.print(f"[bold]task {index + 1}/{len(definition.tasks)}: {task.name}[/bold] ({task.family}) {task.data}",
                      markup=True, highlight=False)

    def on_run_done(task, record: dict) -> None:
        status = "ok" if record["status"] == "ok" else f"{record['status']} ({record.get('reason', '')})"
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
    table = Table("method", "source", "default lr", "key settings", "task kinds", "mergeable", "what it trains")
    for method in METHODS.values():
        table.add_row(method.name, *method.listing().values(), method.summary)
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

    summary = export(ExportConfig(run_dir=run_dir, method=method, adapter=adapter, merged=merged,
                                  compress=compress.split(",") if compress else [], quantize=quantize))
    print_export(summary, console)


@app.command("estimate")
def estimate_command(
    model: str = typer.Option(..., help="Built-in name (e.g. llama-3.1-8b), config.json, model folder, alias or HF id (config only)."),
    methods: str = typer.Option("full,lora,qlora", help="Comma-separated methods: the registry's, plus qlora."),
    seq_len: int = typer.Option(2048, help="Tokens per sequence (an encoder-decoder's input)."),
    target_len: Optional[int] = typer.Option(None, help="An encoder-decoder's target tokens (the decoder's input; default: as long as --seq-len)."),
    batch_size: int = typer.Option(8, help="Sequences per step (per GPU)."),
    dtype: str = typer.Option("bf16", help="fp32, bf16, fp16 (pure 16-bit) or mixed (fp32 master weights, bf16 autocast)."),
    optimizer: str = typer.Option("adamw", help="adamw, adamw8bit or sgd."),
    grad_checkpointing: bool = typer.Option(False, "--grad-checkpointing", help="Recompute each layer in backward."),
    optimizer_in_backward: bool = typer.Option(False, "--optimizer-in-backward", help="Update each parameter as soon as its gradient exists."),
    gpu: str = typer.Option("H100-80GB", help="GPU for the step time: RTX4090-24GB, L4-24GB, A100-40GB, A6000-48GB, L40S-48GB, A100-80GB, H100-80GB, H200-141GB."),
    utilisation: float = typer.Option(0.4, help="Share of the GPU's peak FLOP/s a step achieves."),
    task: Optional[str] = typer.Option(None, help="causal-lm, seq2seq-lm or classification (default: causal-lm for decoders, seq2seq-lm for encoder-decoders)."),
    recipe: str = typer.Option("hf", help="Software modelled: hf (transformers + peft) or torchtune."),
    padded: bool = typer.Option(False, "--padded", help="Batches are padded (an attention mask reaches attention)."),
    method_config: Optional[str] = typer.Option(None, help="YAML of per-method settings, e.g. `lora: {r: 16}`."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list, one object per method."),
) -> None:
    """Estimate what each method costs at the target scale, from the model's config alone (no weights)."""


    names = split_list(methods)
    settings = EstimateSettings(batch_size=batch_size, seq_len=seq_len, target_len=target_len, dtype=dtype,
                                optimizer=optimizer,
                                grad_checkpointing=grad_checkpointing, optimizer_in_backward=optimizer_in_backward,
                                gpu=gpu, utilisation=utilisation, task=task, recipe=recipe, padded=padded)
    results = estimate(model, names, settings, read_method_overrides(method_config, names))
    if as_json:
        typer.echo(json.dumps(results, indent=2))
        return
    print_estimate(results, dataclasses.asdict(settings), console)


def main() -> None:
    quiet_libraries()
    try:
        app()
    except PeftlabError as error:
        errors.print(f"error: {error}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
