"""Every table of a study's report, defined once as data: comparison, robustness, seeds, tuning, estimate check.

A :class:`ReportTable` holds its title, its columns, one :class:`Row` per run (per method for seeds and tuning)
with the formatted text of each shown cell and the raw value behind every column, and the notes under it. The
renderers only lay a table out: the terminal (``report.table``, rich), the HTML page (``report.html``), the
Markdown summary (``report.markdown``) and the CSV (``report.flat``, raw values only); none of them formats a
number or decides what a record means.

Runs and probes that did not produce numbers: a failed run (``status: failed``) and a failed robustness or
estimate record are rows whose message ("failed: <reason>") spans the table; a skipped record (``status:
skipped``, e.g. robustness on a generation task, an estimate for a model type that is not modelled) is a note
under the table ("robustness skipped: <reason> (methods)"). A record without ``status`` was measured. Raw values
keep every status and reason, so the CSV says why a cell is empty.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from peftlab.files import trial_objective
from peftlab.report.cells import (
    difference,
    fixed,
    human_bytes,
    human_count,
    percent,
    points,
    with_interval,
)
from peftlab.tasks.kinds import task_kind_of

REFERENCE_METHOD = "full"


@dataclass(frozen=True)
class Column:
    key: str  # the raw value's name: the CSV header and the key of Row.values and Row.cells
    title: str = ""  # the header in the terminal, HTML and Markdown; "" = a raw value for the CSV only
    align: str = "right"


@dataclass
class Row:
    key: Any  # the run's index in results["runs"] (the per-run tables are joined on it in the CSV), or the method
    label: str  # the first cell: the method, its seed when the study has several, "(ref)" for full fine-tuning
    cells: dict[str, str] = field(default_factory=dict)  # shown column key -> text (ok rows)
    values: dict[str, Any] = field(default_factory=dict)  # column key -> raw value (None: no value)
    status: str = "ok"  # "ok", "failed" (its message spans the row) or "skipped" (a note, not a row)
    reason: str = ""
    reference: bool = False

    @property
    def message(self) -> str:
        return f"{self.status}: {self.reason}"


@dataclass
class ReportTable:
    name: str  # comparison, robustness, seeds, tuning, estimate: the HTML id is "<name>-table"
    title: str
    columns: list[Column]  # the first is the row label
    rows: list[Row]
    legend: str = ""  # how to read the cells, under the title in the HTML and Markdown reports
    subject: str = ""  # what a skipped row did not measure ("robustness", "estimate"), for its note
    lines: list[str] = field(default_factory=list)  # notes of the table's own (the crossovers of --train-sizes)

    @property
    def shown_columns(self) -> list[Column]:
        return [column for column in self.columns if column.title]

    @property
    def shown_rows(self) -> list[Row]:
        return [row for row in self.rows if row.status != "skipped"]

    @property
    def notes(self) -> list[str]:
        """One line per reason of the skipped rows, naming them: "robustness skipped: <reason> (lora, ia3)"."""
        labels: dict[str, list[str]] = {}
        for row in self.rows:
            if row.status == "skipped":
                labels.setdefault(row.reason, []).append(row.label)
        return [*self.lines, *(f"{self.subject} skipped: {reason} ({', '.join(names)})"
                               for reason, names in labels.items())]

    @property
    def shown(self) -> bool:
        """Whether there is anything to show: a row or a note."""
        return bool(self.shown_rows or self.notes)


# --- the task's quality metrics -----------------------------------------------------------------------------------

def quality_metrics(results: dict[str, Any]) -> tuple[tuple[str, str], tuple[str, str]]:
    """The two quality columns' (metric key, column name): the study's task kind's quality metrics (accuracy and
    macro F1; exact and normalised match for generation, docs/DECODERS.md)."""
    first, second = task_kind_of(results["study"].get("task")).quality_metrics
    return (first.key, f"{first.title} (Δ pts)"), (second.key, f"{second.title} (Δ pts)")


def headline_metric(results: dict[str, Any]) -> tuple[str, str]:
    """(metrics key, words) of the score runs are ranked by: accuracy, or exact match for generation tasks."""
    (key, _), _ = quality_metrics(results)
    return key, key.replace("_", " ")


def reference_run(runs: list[dict]) -> dict | None:
    return next((r for r in runs if r["method"] == REFERENCE_METHOD and r["status"] == "ok"), None)


def run_label(results: dict[str, Any], run: dict[str, Any]) -> str:
    """The method, and its seed when the study ran several ("full s6")."""
    several = "aggregates" in results and run.get("seed") is not None
    return run["method"] + (f" s{run['seed']}" if several else "")


def table_title(results: dict[str, Any]) -> str:
    study = results["study"]
    sizes = study["task"]["sizes"]
    budget = study["budget"]
    steps = f"{budget['max_steps']} steps" if budget.get("max_steps") else f"{budget['epochs']} epochs"
    return (f"{study['model']} on {study['task']['name']} (train {sizes['train']}, validation {sizes['validation']}, "
            f"test {sizes['test']}; {steps}, batch {budget['batch_size']}, seed {study['seed']}) — test metrics")


# --- comparison: one row per run ----------------------------------------------------------------------------------

METRIC_KEYS = ("accuracy", "macro_f1", "test_loss", "validation_accuracy", "best_epoch", "exact_match",
               "normalized_match", "validation_exact_match", "test_perplexity", "accuracy_unnormalized")
# regression's metrics (spearman, pearson, mse, mae, validation_spearman) come from the runs' records
ERROR_KEYS = ("mse", "mae")  # regression's errors, shown next to its two correlations
COST_KEYS = ("trainable_params", "total_params", "optimizer_state_bytes", "peak_memory_bytes", "train_seconds",
             "train_tokens", "train_tokens_per_second", "train_steps", "budget_steps", "budget_used", "checkpoint_bytes",
             "inference_ms_per_example")
COST_TITLES = {"trainable_params": "trainable", "optimizer_state_bytes": "optimizer state",
               "peak_memory_bytes": "peak memory", "train_seconds": "train s", "train_tokens_per_second": "tokens/s",
               "checkpoint_bytes": "checkpoint", "inference_ms_per_example": "infer ms/ex"}


def comparison(results: dict[str, Any]) -> ReportTable:
    """Per run: the task's two quality metrics (with the difference to full fine-tuning of the same seed, in
    points) and its cost; the raw values add every other metric the run records and the rest of its cost."""
    runs = results["runs"]
    (first, first_title), (second, second_title) = quality_metrics(results)
    metric_keys = list(dict.fromkeys([first, second, *METRIC_KEYS,
                                      *(key for run in runs for key in (run.get("metrics") or {}))]))
    titles = {first: first_title, second: second_title, **COST_TITLES}
    errors = [key for key in ERROR_KEYS if any(key in (run.get("metrics") or {}) for run in runs)]
    titles.update({key: key.upper() for key in errors})  # regression: MSE and MAE in the target's units
    if any(run.get("stopped") for run in runs):  # early stopping ended a run: the share of its budget it trained
        titles["budget_used"] = "budget used"
    columns = [Column("method", "method", "left"), Column("seed"), Column("status"), Column("reason"),
               *(Column(key, titles.get(key, "")) for key in (*metric_keys, *COST_KEYS))]
    rows = [_comparison_row(results, index, run, first, second, metric_keys) for index, run in enumerate(runs)]
    for row in rows:
        if row.status == "ok":
            row.cells.update({key: _error_cell(row.values.get(key), None) for key in errors})
    legend = ("Correlations ×100, in brackets the difference to full fine-tuning (ref) in points; MSE and MAE in "
              "the target's units." if errors else
              "Quality in %, in brackets the difference to full fine-tuning (ref) in points.")
    sizes = results.get("train_sizes")
    at_size = f"; at training-set size {sizes['largest']}" if isinstance(sizes, dict) and sizes.get("largest") else ""
    return ReportTable("comparison", table_title(results) + at_size, columns, rows, legend=legend)


def _comparison_row(results: dict[str, Any], index: int, run: dict[str, Any], first: str, second: str,
                    metric_keys: list[str]) -> Row:
    runs = results["runs"]
    reference = reference_run([r for r in runs if r.get("seed") == run.get("seed")])  # full, the same seed
    row = Row(index, run_label(results, run), status=run["status"], reason=run.get("reason", ""),
              reference=run is reference,
              values={"method": run["method"], "seed": run.get("seed"), "status": run["status"],
                      "reason": run.get("reason", "")})
    if run["status"] != "ok":
        return row
    metrics, cost = run["metrics"], run["cost"]
    row.values.update({key: metrics.get(key) for key in metric_keys})
    row.values.update({key: cost.get(key) for key in COST_KEYS})
    ref_metrics = {} if row.reference or reference is None else reference["metrics"]
    share = cost["trainable_params"] / cost["total_params"] if cost["total_params"] else 0
    row.label += " (ref)" if row.reference else ""
    row.cells = {
        first: points(metrics[first]) + difference(metrics[first], ref_metrics.get(first)),
        second: points(metrics[second]) + difference(metrics[second], ref_metrics.get(second)),
        "trainable_params": f"{human_count(cost['trainable_params'])} ({percent(share)})",
        "optimizer_state_bytes": human_bytes(cost["optimizer_state_bytes"]),
        "peak_memory_bytes": human_bytes(cost["peak_memory_bytes"]),
        "train_seconds": f"{cost['train_seconds']:.1f}",
        "train_tokens_per_second": f"{cost['train_tokens_per_second']:.0f}" if cost.get("train_steps") else "-",
        "checkpoint_bytes": human_bytes(cost["checkpoint_bytes"]),
        "inference_ms_per_example": fixed(cost["inference_ms_per_example"], 2),  # None: latency not measured
    }
    if isinstance(cost.get("budget_used"), (int, float)):
        row.cells["budget_used"] = f"{100 * cost['budget_used']:.0f}%" + (" (stopped)" if run.get("stopped") else "")
    return row


# --- --train-sizes: one comparison per smaller size, and quality against training-set size ----------------------

def size_comparisons(results: dict[str, Any]) -> dict[str, ReportTable]:
    """--train-sizes: the comparison table at each size below the largest (the main comparison is the largest's),
    largest first, by name ``comparison_n<size>``; {} without --train-sizes."""
    regime = results.get("train_sizes")
    if not isinstance(regime, dict):
        return {}
    tables = {}
    for size in sorted(regime["sizes"], reverse=True):
        if size == regime["largest"]:
            continue
        runs = [run for run in regime.get("runs", []) if run.get("train_size") == size]
        table = comparison({**results, "runs": runs})
        table.name = f"comparison_n{size}"
        table.title = f"at training-set size {size}: {table_title(results)}"  # first: a wrapped title keeps it
        tables[table.name] = table
    return tables


def train_sizes(results: dict[str, Any]) -> ReportTable:
    """--train-sizes: per size (rows) and method (columns) the headline test metric over seeds (mean ± std [95%
    CI] with seeds) with the difference to full fine-tuning at that size; the crossovers as its notes."""
    regime = results.get("train_sizes") if isinstance(results.get("train_sizes"), dict) else {}
    _, words = headline_metric(results)
    methods = list(dict.fromkeys(method for entry in (regime.get("per_size") or {}).values() for method in entry))
    columns = [Column("train_size", "training-set size", "left")]
    for method in methods:
        columns += [Column(f"{method}_mean", method), Column(f"{method}_std"), Column(f"{method}_n"),
                    Column(f"{method}_vs_full_points")]
    rows = []
    for size in regime.get("sizes", []):
        entry = regime["per_size"].get(str(size), {})
        row = Row(size, str(size), values={"train_size": size})
        for method in methods:
            summary = entry.get(method) or {}
            gap = summary.get("vs_full_points")
            row.values.update({f"{method}_mean": summary.get("mean"), f"{method}_std": summary.get("std"),
                               f"{method}_n": summary.get("n"), f"{method}_vs_full_points": gap})
            row.cells[f"{method}_mean"] = (_mean_std_interval(summary) if summary else "-") + (
                f" ({gap:+.1f})" if gap is not None else "")
        rows.append(row)
    crossovers = regime.get("crossovers") or {}
    lines = [record["text"] for record in crossovers.values()]
    if regime and not crossovers:
        lines.append("no full fine-tuning run finished at any size: no crossover to report")
    seeds = results["study"].get("seeds", 1)
    return ReportTable("train_sizes", f"test {words} (%) by training-set size"
                       + (f", mean ± std [95% CI] over {seeds} seeds" if seeds > 1 else ""), columns, rows,
                       legend="In brackets the difference to full fine-tuning at that size, in points; then where "
                              "full fine-tuning overtakes each method (or the reverse).", lines=lines)


# --- robustness: one row per finished run with a robustness record ------------------------------------------------

ROBUSTNESS_FAMILIES = ("char", "word", "noise", "distractor")  # see peftlab.evaluate.perturb.FAMILIES
ATTACKS = {"word_substitution": ("word_attack_success_rate", "word attack"),
           "char_edit": ("char_attack_success_rate", "char attack")}


def robustness(results: dict[str, Any]) -> ReportTable:
    """Per run: clean accuracy, accuracy per perturbation family, mean robust drop, attack success rates (with
    95% intervals), and the robust set's accuracy when one was given; for records of errors (regression,
    ``score: mae``), :func:`error_robustness`."""
    runs = [(index, run) for index, run in enumerate(results["runs"])
            if run.get("status") == "ok" and isinstance(run.get("robustness"), dict) and run["robustness"]]
    if any(run["robustness"].get("score") == "mae" for _, run in runs):
        return error_robustness(results, runs)
    has_set = any("robust_set" in run["robustness"] for _, run in runs)
    columns = [Column("method", "method", "left"), Column("robustness_status"), Column("robustness_reason"),
               Column("robust_clean_accuracy", "clean"),
               *(Column(f"robust_{family}_accuracy", family) for family in ROBUSTNESS_FAMILIES),
               Column("robust_perturbed_accuracy"), Column("robust_drop_points", "drop pts"),
               *([Column("robust_drop_vs_full", "drop vs full (paired)")] if results.get("robustness_vs_full") else []),
               *(Column(key, title) for key, title in ATTACKS.values()),
               *([Column("robust_set_accuracy", "robust set")] if has_set else [])]
    rows = [_robustness_row(results, index, run) for index, run in runs]
    first = next((run["robustness"] for _, run in runs if "attacks" in run["robustness"]), {})
    return ReportTable("robustness", robustness_title(first), columns, rows, subject="robustness")


def _robustness_row(results: dict[str, Any], index: int, run: dict[str, Any]) -> Row:
    record = run["robustness"]
    status = record.get("status", "ok")
    row = Row(index, run_label(results, run), status=status, reason=record.get("reason", ""),
              values={"robustness_status": status, "robustness_reason": record.get("reason", "")})
    if status != "ok":
        return row
    families, attacks = record.get("families", {}), record.get("attacks", {})
    scores = {"robust_clean_accuracy": (record["clean_accuracy"], record["clean_ci95"])}
    scores.update({f"robust_{family}_accuracy": (families[family]["accuracy"], families[family]["ci95"])
                   for family in ROBUSTNESS_FAMILIES if family in families})
    scores.update({key: (attacks[attack]["success_rate"], attacks[attack]["ci95"])
                   for attack, (key, _) in ATTACKS.items() if attack in attacks})
    if record.get("robust_set"):
        scores["robust_set_accuracy"] = (record["robust_set"]["accuracy"], record["robust_set"]["ci95"])
    row.values.update({key: value for key, (value, _) in scores.items()})
    row.values.update(robust_perturbed_accuracy=record.get("perturbed_accuracy"),
                      robust_drop_points=record.get("drop_points"))
    row.cells = {key: with_interval(value, ci95) for key, (value, ci95) in scores.items()}
    drop = record.get("drop_points")
    row.cells["robust_drop_points"] = "-" if drop is None else f"{drop:+.1f}"
    test = (results.get("robustness_vs_full") or {}).get(run["method"])
    if test:  # the method's drop minus full's, over all its seeds (the same cell on each of its rows)
        row.values["robust_drop_vs_full"] = test["difference"]
        row.cells["robust_drop_vs_full"] = (f"{test['difference']:+.1f} [{test['ci95'][0]:+.1f}, {test['ci95'][1]:+.1f}]"
                                            f" p={test['p_value']:.3g}")
    elif results.get("robustness_vs_full"):
        row.cells["robust_drop_vs_full"] = "-"
    return row


def error_robustness(results: dict[str, Any], runs: list[tuple[int, dict]]) -> ReportTable:
    """Regression: per run, the mean absolute error on the clean sample, per perturbation family and pooled (with
    95% bootstrap intervals, in the target's units), its increase under perturbation, and the clean Spearman; the
    attacks' reason for not applying is a note."""
    columns = [Column("method", "method", "left"), Column("robustness_status"), Column("robustness_reason"),
               Column("robust_clean_mae", "clean MAE"),
               *(Column(f"robust_{family}_mae", family) for family in ROBUSTNESS_FAMILIES),
               Column("robust_perturbed_mae", "perturbed MAE"), Column("robust_mae_increase", "MAE increase"),
               Column("robust_clean_spearman", "clean Spearman")]
    rows = []
    for index, run in runs:
        record = run["robustness"]
        status = record.get("status", "ok")
        row = Row(index, run_label(results, run), status=status, reason=record.get("reason", ""),
                  values={"robustness_status": status, "robustness_reason": record.get("reason", "")})
        if status == "ok":
            families = record.get("families", {})
            scores = {"robust_clean_mae": (record.get("clean_mae"), record.get("clean_ci95")),
                      "robust_perturbed_mae": (record.get("perturbed_mae"), record.get("perturbed_ci95"))}
            scores.update({f"robust_{family}_mae": (families[family]["mae"], families[family]["ci95"])
                           for family in ROBUSTNESS_FAMILIES if family in families})
            row.values.update({key: value for key, (value, _) in scores.items()})
            row.values.update(robust_mae_increase=record.get("mae_increase"),
                              robust_clean_spearman=record.get("clean_spearman"))
            row.cells = {key: _error_cell(value, ci95) for key, (value, ci95) in scores.items()}
            increase = record.get("mae_increase")
            row.cells["robust_mae_increase"] = "-" if increase is None else f"{increase:+.3g}"
            row.cells["robust_clean_spearman"] = points(record.get("clean_spearman"))
        rows.append(row)
    first = next((run["robustness"] for _, run in runs if "clean_mae" in run["robustness"]), {})
    severity = first.get("severity")
    touched = f"{100 * severity:.0f}%" if isinstance(severity, (int, float)) else "-"
    title = (f"robustness: mean absolute error in the target's units [95% CI] on {first.get('examples', '-')} test "
             f"examples, perturbations touching {touched} of the words; increase = mean perturbed − clean MAE "
             "(positive: worse); clean Spearman ×100")
    table = ReportTable("robustness", title, columns, rows, subject="robustness")
    reason = (first.get("attacks") or {}).get("reason")
    if reason:
        table.legend = f"Attacks not run: {reason}."
    return table


def _error_cell(value: float | None, ci95: list[float] | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" + (f" [{ci95[0]:.3g}–{ci95[1]:.3g}]" if ci95 else "")


def robustness_title(first: dict) -> str:
    attack = first.get("attacks", {}).get("word_substitution", {})
    severity = first.get("severity")
    touched = f"{100 * severity:.0f}%" if isinstance(severity, (int, float)) else "-"
    return (f"robustness: accuracy % [95% CI] on {first.get('examples', '-')} test examples, perturbations touching "
            f"{touched} of the words; drop = clean − mean perturbed, in points; attack success % of the correctly "
            f"classified among {attack.get('examples', '-')} examples, at most {attack.get('query_budget', '-')} "
            "queries each")


# --- estimate check: measured next to estimated, per finished run -------------------------------------------------

def estimate_check(results: dict[str, Any]) -> ReportTable:
    """Per run with an estimate record: peak memory measured and estimated, GFLOP of one step counted and
    estimated, and their ratio."""
    columns = [Column("method", "method", "left"), Column("estimate_status"), Column("estimate_reason"),
               Column("peak_memory_bytes", "peak memory measured"),
               Column("estimated_peak_memory_bytes", "estimated"), Column("flops_per_step_counted", "GFLOP counted"),
               Column("flops_per_step_estimated", "estimated"), Column("flops_ratio", "ratio")]
    rows = [_estimate_row(results, index, run) for index, run in enumerate(results["runs"])
            if run.get("status") == "ok" and isinstance(run.get("estimate"), dict) and run["estimate"]]
    return ReportTable("estimate", "measured vs estimated (peftlab estimate): peak memory over the run (CPU: process "
                       "RSS, which adds allocator overhead to the estimated tensor bytes), FLOPs of one "
                       "forward+backward on the first rows of the first training batch", columns, rows,
                       subject="estimate")


def _estimate_row(results: dict[str, Any], index: int, run: dict[str, Any]) -> Row:
    estimate = run["estimate"]
    status = estimate.get("status", "ok")  # records written before the estimate probe was guarded were measured
    row = Row(index, run_label(results, run), status=status, reason=estimate.get("reason", ""),
              values={"estimate_status": status, "estimate_reason": estimate.get("reason", "")})
    if status != "ok":
        return row
    measured, counted, estimated = (run["cost"]["peak_memory_bytes"], estimate["flops_per_step_counted"],
                                    estimate["flops_per_step_estimated"])
    ratio = estimated / counted if counted else None
    row.values.update(peak_memory_bytes=measured, estimated_peak_memory_bytes=estimate["peak_memory_bytes"],
                      flops_per_step_counted=counted, flops_per_step_estimated=estimated, flops_ratio=ratio)
    row.cells = {"peak_memory_bytes": human_bytes(measured),
                 "estimated_peak_memory_bytes": human_bytes(estimate["peak_memory_bytes"]),
                 "flops_per_step_counted": f"{counted / 1e9:.1f}", "flops_per_step_estimated": f"{estimated / 1e9:.1f}",
                 "flops_ratio": fixed(ratio, 2)}
    return row


# --- overfitting and forgetting, per finished run ------------------------------------------------------------------

def overfitting(results: dict[str, Any]) -> ReportTable:
    """Per run with a generalization or forgetting record: the headline metric on a sample of the run's own
    training set and on test, their gap in points (train − test), the representation's linear CKA to the base on
    general text (1 = unchanged) and, for causal LMs, the change of the language-model loss there."""
    (key, title), _ = quality_metrics(results)
    words = title.replace(" (Δ pts)", "")
    columns = [Column("method", "method", "left"), Column("fit_status"), Column("fit_reason"),
               Column("train_metric", f"train {words}"), Column("test_metric", f"test {words}"),
               Column("gap_points", "gap (pts)"), Column("forgetting_cka", "CKA to base"),
               Column("lm_loss_change", "LM loss Δ")]
    rows = [_overfitting_row(results, index, run, key) for index, run in enumerate(results["runs"])
            if run.get("status") == "ok" and (run.get("generalization") or run.get("forgetting"))]
    return ReportTable("overfitting", "overfitting and forgetting: the metric on a sample of each run's own training "
                       "set (train − test = gap), and on general English sentences the representation's linear CKA "
                       "to the base model (1 = unchanged) and the LM loss change (fine-tuned − base)", columns, rows,
                       subject="overfitting and forgetting")


def _overfitting_row(results: dict[str, Any], index: int, run: dict[str, Any], key: str) -> Row:
    gap, forgetting = run.get("generalization") or {}, run.get("forgetting") or {}
    problems = [f"{name} {record['status']}: {record.get('reason', '')}" for name, record in
                (("generalization", gap), ("forgetting", forgetting)) if record and record.get("status") != "ok"]
    status = "skipped" if problems and all(r.get("status") == "skipped" for r in (gap, forgetting) if r) else "ok"
    row = Row(index, run_label(results, run), status=status, reason="; ".join(problems),
              values={"fit_status": status, "fit_reason": "; ".join(problems)})
    if status != "ok":
        return row
    train = (gap.get("train") or {}).get(key) if gap.get("status") == "ok" else None
    points_gap = (gap.get("gap_points") or {}).get(key) if gap.get("status") == "ok" else None
    cka = forgetting.get("cka") if forgetting.get("status") == "ok" else None
    change = forgetting.get("lm_loss_change") if forgetting.get("status") == "ok" else None
    row.values.update(train_metric=train, test_metric=run["metrics"].get(key), gap_points=points_gap,
                      forgetting_cka=cka, lm_loss_change=change)
    row.cells = {"train_metric": points(train) if train is not None else "-",
                 "test_metric": points(run["metrics"].get(key)),
                 "gap_points": f"{points_gap:+.1f}" if points_gap is not None else "-",
                 "forgetting_cka": fixed(cka, 3) if cka is not None else "-",
                 "lm_loss_change": f"{change:+.3f}" if change is not None else "-"}
    return row


# --- seeds: one row per method, over its seeds ----------------------------------------------------------------------

def seeds(results: dict[str, Any]) -> ReportTable:
    """Per method over the study's seeds: runs that finished, and for the task's two quality metrics the mean ±
    std with its 95% interval and the difference to full fine-tuning with Welch's t-test."""
    metrics = [(key, title.replace(" (Δ pts)", "")) for key, title in quality_metrics(results)]
    columns = [Column("method", "method", "left"), Column("runs"), Column("failed"), Column("runs_ok", "runs ok")]
    for key, words in metrics:
        columns += [Column(f"{key}_mean", f"{words} mean ± std [95% CI]"), Column(f"{key}_std"),
                    Column(f"{key}_vs_full", "vs full (Welch t)"), Column(f"{key}_p_value")]
    rows = []
    for method, entry in (results.get("aggregates") or {}).items():
        row = Row(method, method, cells={"runs_ok": f"{entry['runs'] - entry['failed']}/{entry['runs']}"},
                  values={"method": method, "runs": entry["runs"], "failed": entry["failed"],
                          "runs_ok": entry["runs"] - entry["failed"]})
        for key, _ in metrics:
            summary, test = entry[key] or {}, (entry[key] or {}).get("vs_full") or {}
            row.values.update({f"{key}_mean": summary.get("mean"), f"{key}_std": summary.get("std"),
                               f"{key}_vs_full": test.get("difference"), f"{key}_p_value": test.get("p_value")})
            row.cells.update({f"{key}_mean": _mean_std_interval(summary), f"{key}_vs_full": _versus_full(test)})
        rows.append(row)
    return ReportTable("seeds", f"over {results['study'].get('seeds')} seeds: test metrics in %", columns, rows)


def _mean_std_interval(summary: dict) -> str:
    if summary.get("mean") is None:
        return "-"
    text = points(summary["mean"])
    if summary.get("std") is not None:
        low, high = summary["ci95"]
        text += f" ± {100 * summary['std']:.1f} [{100 * low:.1f}–{100 * high:.1f}]"
    return text


def _versus_full(test: dict) -> str:
    if not test:
        return "-"
    verdict = "significant" if test["significant"] else "not significant"
    return f"{100 * test['difference']:+.1f} pts, p={test['p_value']:.3f} ({verdict})"


# --- tuning: one row per tuned method ---------------------------------------------------------------------------------

def tuning(results: dict[str, Any]) -> ReportTable:
    """Per raced method: the chosen learning rate, every trial (rate → best validation score, validation passes, status:
    a pruned trial's passes say where the race stopped it) and the seconds spent."""
    tuned = results.get("tuning") or {}
    columns = [Column("method", "method", "left"), Column("chosen_learning_rate", "chosen lr"),
               Column("trials", "trials: lr → best validation score (validation passes, status)", "left"),
               Column("tuning_seconds", "tuning s")]
    rows = []
    for method, entry in (tuned.get("methods") or {}).items():
        trials = "; ".join(f"{t['learning_rate']:g} → " + (_trial_score(t) if t.get("best_validation") else "-")
                           + f" ({t.get('evaluations', t.get('epochs_trained'))}, {t['status']})" for t in entry["trials"])
        chosen = entry.get("chosen_learning_rate")
        rows.append(Row(method, method, values={"method": method, "chosen_learning_rate": chosen, "trials": trials,
                                                "tuning_seconds": entry["seconds"]},
                        cells={"chosen_learning_rate": "-" if chosen is None else f"{chosen:g}", "trials": trials,
                               "tuning_seconds": f"{entry['seconds']:.1f}"}))
    return ReportTable("tuning", _tuning_title(tuned), columns, rows)


def _tuning_title(tuned: dict[str, Any]) -> str:
    if not tuned:
        return "learning-rate race"
    ratio = tuned.get("cost_vs_one_pass")
    if ratio and "one_pass_steps" in tuned:  # the chosen trial's training is its run's
        return (f"learning-rate race: {tuned['seconds']:.0f} s of trials; {tuned['steps']} training steps in all = "
                f"{ratio:.2f}× one pass at fixed rates ({tuned['one_pass_steps']} steps)")
    return (f"learning-rate race: {tuned['seconds']:.0f} s of tuning"
            + (f" = {ratio:.2f}× one untuned pass ({tuned['one_pass_seconds']:.0f} s)" if ratio else ""))


def _trial_score(trial: dict) -> str:
    key = trial_objective(trial)
    value = trial["best_validation"][key]
    return points(value) if key == "accuracy" else f"{key} {value:.3g}"


# --- all of them ------------------------------------------------------------------------------------------------------

def report_tables(results: dict[str, Any]) -> dict[str, ReportTable]:
    """Every table of the study by name, in the terminal's order: comparison, with --train-sizes the comparison at
    each smaller size and the sizes table (train_sizes; only then), tuning, seeds, overfitting, robustness, estimate."""
    regime = (train_sizes(results),) if isinstance(results.get("train_sizes"), dict) else ()
    tables = (comparison(results), *size_comparisons(results).values(), *regime, tuning(results), seeds(results),
              overfitting(results), robustness(results), estimate_check(results))
    return {table.name: table for table in tables}
