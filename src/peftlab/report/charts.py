"""The report's charts, drawn with matplotlib from a study's results.json (and its diagnosis.json).

Each chart function returns a matplotlib Figure, or None when the study has nothing to draw for it. Figures are
built with the object API (no pyplot state), so building a report never opens a window or touches other figures.
`svg()` renders one for inline HTML: text is drawn as paths (no font is fetched, no data string becomes markup),
and every line and label drawn in the FOREGROUND colour becomes ``currentColor``, so one chart reads on a light
and on a dark page. `png()` renders one for the Markdown report (on white).
"""

from __future__ import annotations

import io
import math
import re
from typing import Any, Iterable

import matplotlib

matplotlib.use("Agg", force=False)
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from peftlab.methods import split_variant, trains  # noqa: E402
from peftlab.report.cells import human_bytes, human_count  # noqa: E402
from peftlab.report.tables import REFERENCE_METHOD, headline_metric  # noqa: E402

CHART_TITLES = {  # every chart's name and title, in the HTML and Markdown reports
    "pareto_params": "Test quality vs trainable parameters",
    "pareto_memory": "Test quality vs peak memory",
    "pareto_time": "Test quality vs train time",
    "pareto_checkpoint": "Test quality vs checkpoint size",
    "train_loss": "Train loss per step",
    "validation": "Validation accuracy per epoch",
    "overfitting": "Train vs test quality, and the representation's similarity to the base",
    "robustness_accuracy": "Clean vs perturbed accuracy",
    "attacks": "Attack success rates",
    "spectrum": "Singular-value spectra of the full update, per layer type",
    "rank": "Quality and trainable parameters against rank (method variants)",
    "train_sizes": "Test quality vs training-set size",
}

OPTIONAL_CHARTS = frozenset({"rank"})  # shown only when the study ran what they need (no "nothing to draw" note)

FOREGROUND = "#010203"  # a colour no palette uses: replaced by currentColor in the SVG
PALETTE = ("#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#8F8F8F", "#B07A3B", "#6A9F3A")
MARKERS = ("o", "s", "D", "^", "v", "P", "X", "<", ">")
_foreground = [FOREGROUND]  # the colour charts draw axes, text and FFT in: FOREGROUND for SVG, black for PNG


def fg() -> str:
    return _foreground[-1]


def rc() -> dict[str, Any]:
    colour = fg()
    return {
        "svg.fonttype": "path", "font.size": 9, "axes.edgecolor": colour, "axes.labelcolor": colour,
        "xtick.color": colour, "ytick.color": colour, "text.color": colour, "axes.facecolor": "none",
        "figure.facecolor": "none", "savefig.facecolor": "none", "legend.frameon": False, "axes.grid": True,
        "grid.color": colour, "grid.alpha": 0.15, "axes.spines.top": False, "axes.spines.right": False,
    }


def method_styles(results: dict[str, Any]) -> dict[str, dict[str, str]]:
    """One colour and marker per method, the same in every chart; FFT, the reference, in the foreground colour."""
    styles, i = {}, 0
    for run in results["runs"]:
        if run["method"] in styles:
            continue
        if run["method"] == REFERENCE_METHOD:
            styles[run["method"]] = {"color": fg(), "marker": "*"}
        else:
            styles[run["method"]] = {"color": PALETTE[i % len(PALETTE)], "marker": MARKERS[i % len(MARKERS)]}
            i += 1
    return styles


def ok_runs(results: dict[str, Any]) -> list[dict[str, Any]]:
    return [run for run in results["runs"] if run.get("status") == "ok" and run.get("metrics")]


def _figure(width: float = 6.0, height: float = 3.8, columns: int = 1) -> tuple[Figure, Any]:
    with matplotlib.rc_context(rc()):
        figure = Figure(figsize=(width, height), layout="constrained")
        axes = figure.subplots(1, columns)
    return figure, axes


def _styled(function):
    """Run a chart function under the report's matplotlib settings (they apply when artists are created)."""
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(rc()):
            return function(*args, **kwargs)
    wrapper.__name__, wrapper.__doc__ = function.__name__, function.__doc__
    return wrapper


# --- Pareto charts ------------------------------------------------------------------------------------------------

PARETO_AXES = {  # chart name -> (cost key, axis label, log scale, formatter)
    "pareto_params": ("trainable_params", "trainable parameters (count, log scale)", True, human_count),
    "pareto_memory": ("peak_memory_bytes", "peak memory (bytes)", False, human_bytes),
    "pareto_time": ("train_seconds", "train time (s)", False, None),
    "pareto_checkpoint": ("checkpoint_bytes", "checkpoint size (bytes, log scale)", True, human_bytes),
}


def pareto_frontier(points: Iterable[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point dominates (cost no higher and quality no lower, one of them strictly),
    ordered by cost: lower cost is better, higher quality is better."""
    points = list(points)
    frontier = []
    for i, (cost, quality) in enumerate(points):
        dominated = any(other_cost <= cost and other_quality >= quality and (other_cost, other_quality) != (cost, quality)
                        for other_cost, other_quality in points)
        if not dominated:
            frontier.append(i)
    return sorted(frontier, key=lambda i: (points[i][0], -points[i][1]))


@_styled
def pareto_chart(results: dict[str, Any], name: str) -> Figure | None:
    key, label, log, formatter = PARETO_AXES[name]
    metric, words = headline_metric(results)
    measured = [run for run in ok_runs(results) if isinstance(run["metrics"].get(metric), (int, float))]
    runs = [run for run in measured if trains(run["method"]) and isinstance(run["cost"].get(key), (int, float))
            and run["cost"][key] > 0]
    floors = [run for run in measured if not trains(run["method"])]  # zero-shot: a line, the floor, not a point
    if not runs:
        return None
    styles = method_styles(results)
    costs = [float(run["cost"][key]) for run in runs]
    qualities = [100 * run["metrics"][metric] for run in runs]
    figure, axes = _figure()
    frontier = pareto_frontier(zip(costs, qualities))
    axes.step([costs[i] for i in frontier], [qualities[i] for i in frontier], where="post", color=fg(),
              linestyle="--", linewidth=1, alpha=0.6, label="Pareto frontier (ringed: on it)", zorder=1)
    for i, run in enumerate(runs):
        style = styles[run["method"]]
        axes.scatter(costs[i], qualities[i], s=90 if i in frontier else 45, color=style["color"],
                     marker=style["marker"], edgecolors=fg() if i in frontier else "none", linewidths=1.2,
                     zorder=3)
        axes.annotate(run["method"], (costs[i], qualities[i]), xytext=(6, 4), textcoords="offset points",
                      fontsize=8, color=fg())
    for run in floors[:1]:
        axes.axhline(100 * run["metrics"][metric], color=fg(), linestyle=":", linewidth=1, alpha=0.7,
                     label=f"{run['method']} (no training)", zorder=1)
    if log:
        axes.set_xscale("log")
    if formatter:  # 1.00K -> 1K, 100.0 MB -> 100 MB on the tick labels
        axes.xaxis.set_major_formatter(FuncFormatter(
            lambda value, _: re.sub(r"\.0+(?=\D|$)", "", formatter(value))))
    _pad_log_axis(axes, costs, log)
    axes.set_xlabel(label)
    axes.set_ylabel(f"test {words} (%)")
    axes.legend(loc="lower right", fontsize=8)
    return figure


def _pad_log_axis(axes, values: list[float], log: bool) -> None:
    low, high = min(values), max(values)
    if log:
        axes.set_xlim(low / 2.5, high * 4)
    else:
        span = (high - low) or abs(high) or 1
        axes.set_xlim(max(0, low - 0.1 * span), high + 0.2 * span)


# --- learning curves ----------------------------------------------------------------------------------------------

def moving_average(values: list[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


@_styled
def train_loss_chart(results: dict[str, Any]) -> Figure | None:
    styles = method_styles(results)
    curves = [(run["method"], [v for v in (run.get("curve") or {}).get("train_loss") or [] if _finite(v)])
              for run in ok_runs(results)]
    curves = [(method, losses) for method, losses in curves if losses]
    if not curves:
        return None
    window = max(1, max(len(losses) for _, losses in curves) // 20)
    figure, axes = _figure(height=4.0)
    for method, losses in curves:
        steps = range(1, len(losses) + 1)
        color = styles[method]["color"]
        axes.plot(steps, losses, color=color, linewidth=0.6, alpha=0.25)
        axes.plot(steps, moving_average(losses, window), color=color, linewidth=1.6, label=method)
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("train loss (cross-entropy, nats)")
    axes.legend(fontsize=8, ncols=2)
    axes.set_title(f"thin: every step; thick: moving average over {window} steps", fontsize=8)
    return figure


@_styled
def validation_chart(results: dict[str, Any]) -> Figure | None:
    styles = method_styles(results)
    figure, axes = _figure(height=4.0)
    drawn = False
    metric, words = headline_metric(results)
    for run in ok_runs(results):
        points = [(row.get("progress", row.get("epoch")), 100 * row[metric])  # progress: epochs done (fractional)
                  for row in (run.get("curve") or {}).get("validation") or []
                  if isinstance(row, dict) and _finite(row.get("progress", row.get("epoch"))) and _finite(row.get(metric))]
        if points:
            style = styles[run["method"]]
            axes.plot(*zip(*points), color=style["color"], marker=style["marker"], linewidth=1.6, label=run["method"])
            drawn = True
    if not drawn:
        return None
    axes.set_xlabel("epochs trained")
    axes.set_ylabel(f"validation {words} (%)")
    axes.legend(fontsize=8, ncols=2)
    return figure


# --- --train-sizes ------------------------------------------------------------------------------------------------

@_styled
def train_sizes_chart(results: dict[str, Any]) -> Figure | None:
    """--train-sizes: the headline test metric against training-set size (log scale), one line per method, with
    its 95% interval over seeds as error bars where there are seeds; None without --train-sizes."""
    regime = results.get("train_sizes")
    if not isinstance(regime, dict) or not regime.get("per_size"):
        return None
    metric, words = headline_metric(results)
    sizes = regime["sizes"]
    methods = list(dict.fromkeys(method for entry in regime["per_size"].values() for method in entry))
    styles = method_styles({"runs": [{"method": method} for method in methods]})
    figure, axes = _figure()
    drawn = False
    for method in methods:
        points = [(size, regime["per_size"][str(size)][method]) for size in sizes
                  if _finite((regime["per_size"].get(str(size), {}).get(method) or {}).get("mean"))]
        if not points:
            continue
        xs = [size for size, _ in points]
        ys = [100 * entry["mean"] for _, entry in points]
        errors = [[100 * (entry["mean"] - entry["ci95"][0]) if entry.get("ci95") else 0 for _, entry in points],
                  [100 * (entry["ci95"][1] - entry["mean"]) if entry.get("ci95") else 0 for _, entry in points]]
        style = styles[method]
        axes.errorbar(xs, ys, yerr=errors if any(map(any, errors)) else None, color=style["color"],
                      marker=style["marker"], linewidth=1.6, capsize=3, label=method)
        drawn = True
    if not drawn:
        return None
    axes.set_xscale("log")
    axes.set_xticks(sizes)
    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes.xaxis.set_minor_formatter(FuncFormatter(lambda value, _: ""))
    axes.set_xlabel("training examples (log scale)")
    axes.set_ylabel(f"test {words} (%)")
    axes.legend(fontsize=8, ncols=2)
    return figure


# --- robustness ---------------------------------------------------------------------------------------------------

def robust_runs(results: dict[str, Any]) -> list[dict[str, Any]]:
    return [run for run in ok_runs(results) if isinstance(run.get("robustness"), dict)
            and run["robustness"].get("status") != "failed" and _finite(run["robustness"].get("clean_accuracy"))]


def _bar_group(axes, labels: list[str], series: list[tuple[str, str, list[float | None], list[Any]]]) -> None:
    """Grouped bars in % with 95% intervals as error bars; series = (name, colour, values, intervals)."""
    width = 0.8 / len(series)
    for k, (name, color, values, intervals) in enumerate(series):
        xs = [i - 0.4 + width * (k + 0.5) for i in range(len(labels))]
        heights = [100 * v if v is not None else 0 for v in values]
        errors = [[max(0, h - 100 * ci[0]) if ci else 0 for h, ci in zip(heights, intervals)],
                  [max(0, 100 * ci[1] - h) if ci else 0 for h, ci in zip(heights, intervals)]]
        axes.bar(xs, heights, width=width * 0.95, color=color, label=name)
        axes.errorbar(xs, heights, yerr=errors, fmt="none", ecolor=fg(), elinewidth=1, capsize=2)
    axes.set_xticks(range(len(labels)), labels, rotation=30 if len(labels) > 5 else 0, ha="right" if len(labels) > 5 else "center")
    axes.grid(axis="x", visible=False)


@_styled
def robustness_accuracy_chart(results: dict[str, Any]) -> Figure | None:
    runs = robust_runs(results)
    if not runs:
        return None
    figure, axes = _figure()
    records = [run["robustness"] for run in runs]
    _bar_group(axes, [run["method"] for run in runs], [
        ("clean", PALETTE[3], [r["clean_accuracy"] for r in records], [r.get("clean_ci95") for r in records]),
        ("perturbed (mean)", PALETTE[4], [r.get("perturbed_accuracy") for r in records],
         [r.get("perturbed_ci95") for r in records]),
    ])
    axes.set_ylabel("accuracy (%), 95% CI")
    axes.set_ylim(0, 100)
    axes.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=2)
    return figure


@_styled
def overfitting_chart(results: dict[str, Any]) -> Figure | None:
    """Left: the headline metric on a sample of each run's training set next to test (the gap is overfitting);
    right: linear CKA of the representation to the base on general text (1 = nothing forgotten)."""
    metric, words = headline_metric(results)
    runs = [run for run in ok_runs(results) if (run.get("generalization") or {}).get("status") == "ok"
            and _finite(run["generalization"]["train"].get(metric))]
    forgetting = [run for run in ok_runs(results) if (run.get("forgetting") or {}).get("status") == "ok"
                  and _finite(run["forgetting"].get("cka"))]
    if not runs and not forgetting:
        return None
    figure, (left, right) = _figure(width=8.0, columns=2)
    if runs:
        _bar_group(left, [run["method"] for run in runs], [
            ("train sample", PALETTE[1], [run["generalization"]["train"][metric] for run in runs], [None] * len(runs)),
            ("test", PALETTE[3], [run["metrics"][metric] for run in runs], [None] * len(runs)),
        ])
        left.set_ylabel(f"{words} (%)")
        left.set_ylim(0, 100)
        left.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=2)
    styles = method_styles(results)
    if forgetting:
        values = [run["forgetting"]["cka"] for run in forgetting]
        right.bar(range(len(forgetting)), values, color=[styles[run["method"]]["color"] for run in forgetting])
        right.set_xticks(range(len(forgetting)), [run["method"] for run in forgetting],
                         rotation=30 if len(forgetting) > 5 else 0, ha="right" if len(forgetting) > 5 else "center")
        right.set_ylabel("linear CKA to the base (1 = unchanged)")
        right.set_ylim(min(0.0, min(values)), 1.05)
        right.grid(axis="x", visible=False)
    return figure


ATTACKS = {"word_substitution": "word substitution", "char_edit": "character edits"}


@_styled
def attack_chart(results: dict[str, Any]) -> Figure | None:
    runs = [run for run in robust_runs(results) if run["robustness"].get("attacks")]
    if not runs:
        return None
    figure, axes = _figure()
    series = []
    for k, (attack, label) in enumerate(ATTACKS.items()):
        rows = [run["robustness"]["attacks"].get(attack) or {} for run in runs]
        series.append((label, PALETTE[k], [row.get("success_rate") for row in rows], [row.get("ci95") for row in rows]))
    _bar_group(axes, [run["method"] for run in runs], series)
    axes.set_ylabel("attack success rate (%), 95% CI")
    axes.set_ylim(0, 100)
    axes.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=2)
    return figure


# --- diagnosis ----------------------------------------------------------------------------------------------------

ENERGY_RANKS = ("4", "8", "16", "64")


@_styled
def spectrum_chart(spectrum: dict[str, Any]) -> Figure | None:
    """Singular values of the full update (W_ft − W_0) per layer type, normalised to the largest; where a layer
    type has no singular values recorded, its captured energy at ranks 4/8/16/64 instead."""
    layers = {name: entry for name, entry in (spectrum or {}).items() if isinstance(entry, dict)}
    with_values = {name: [float(v) for v in entry["singular_values"] if _finite(v)]
                   for name, entry in layers.items() if isinstance(entry.get("singular_values"), list)}
    with_values = {name: values for name, values in with_values.items() if values and max(values) > 0}
    figure, axes = _figure()
    if with_values:
        for k, (name, values) in enumerate(with_values.items()):
            top = max(values)
            axes.plot(range(1, len(values) + 1), [v / top for v in values], color=PALETTE[k % len(PALETTE)],
                      linewidth=1.6, label=str(name))
        axes.set_xscale("log")
        axes.set_yscale("log")
        axes.set_xlabel("singular value index (rank, log scale)")
        axes.set_ylabel("singular value / largest (log scale)")
    else:
        drawn = False
        for k, (name, entry) in enumerate(layers.items()):
            energy = entry.get("energy_at_rank") if isinstance(entry.get("energy_at_rank"), dict) else {}
            points = [(int(rank), 100 * float(energy[rank])) for rank in ENERGY_RANKS if _finite(energy.get(rank))]
            if points:
                axes.plot(*zip(*points), color=PALETTE[k % len(PALETTE)], marker=MARKERS[k % len(MARKERS)],
                          linewidth=1.6, label=str(name))
                drawn = True
        if not drawn:
            return None
        axes.set_xscale("log", base=2)
        axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axes.set_xlabel("rank (log scale)")
        axes.set_ylabel("energy of the update captured (%)")
        axes.set_ylim(0, 100)
    axes.legend(fontsize=8, ncols=2)
    return figure


# --- rank: several ranks of one method (variants, --sweep) ----------------------------------------------------------

RANK_SETTING = "r"  # the rank of LoRA, DoRA, LoHa, LoKr, VeRA...: the setting a rank sweep varies


def rank_series(results: dict[str, Any]) -> dict[str, list[tuple[int, float, float]]]:
    """{method: [(rank, mean test quality in %, trainable parameters)]} for every method (variants counted under
    the method they are of) that ran at two ranks or more, by rank; seeds averaged."""
    metric, _ = headline_metric(results)
    points: dict[str, dict[int, list[tuple[float, float]]]] = {}
    for run in ok_runs(results):
        rank, value = (run.get("config") or {}).get(RANK_SETTING), run["metrics"].get(metric)
        if isinstance(rank, int) and not isinstance(rank, bool) and _finite(value):
            base = split_variant(run["method"])[0]
            points.setdefault(base, {}).setdefault(rank, []).append(
                (100 * value, float(run["cost"].get("trainable_params") or 0)))
    return {base: [(rank, sum(q for q, _ in rows) / len(rows), sum(p for _, p in rows) / len(rows))
                   for rank, rows in sorted(by_rank.items())]
            for base, by_rank in points.items() if len(by_rank) >= 2}


def spectrum_rank(diagnosis: dict[str, Any] | None) -> float | None:
    """The rank that holds 90% of the full update's energy (the median over layer types of the diagnosis's
    spectrum), or None without a spectrum."""
    spectrum = (diagnosis or {}).get("spectrum")
    ranks = sorted(entry["effective_rank_90"] for entry in (spectrum or {}).values()
                   if isinstance(entry, dict) and _finite(entry.get("effective_rank_90")))
    if not ranks:
        return None
    middle = len(ranks) // 2
    return float(ranks[middle]) if len(ranks) % 2 else (ranks[middle - 1] + ranks[middle]) / 2


@_styled
def rank_chart(results: dict[str, Any], diagnosis: dict[str, Any] | None = None) -> Figure | None:
    """Test quality (left) and trainable parameters (right) against rank, per method that ran several ranks; full
    fine-tuning's quality as a dashed line, and the spectrum's 90%-energy rank as a dotted one when the diagnosis ran."""
    series = rank_series(results)
    if not series:
        return None
    metric, words = headline_metric(results)
    figure, (quality, params) = _figure(width=9.0, columns=2)
    styles = method_styles({"runs": [{"method": base} for base in series]})
    for base, rows in series.items():
        ranks = [rank for rank, _, _ in rows]
        quality.plot(ranks, [q for _, q, _ in rows], marker=styles[base]["marker"], color=styles[base]["color"],
                     linewidth=1.6, label=base)
        params.plot(ranks, [p for _, _, p in rows], marker=styles[base]["marker"], color=styles[base]["color"],
                    linewidth=1.6, label=base)
    full = [run["metrics"][metric] for run in ok_runs(results) if run["method"] == REFERENCE_METHOD
            and _finite(run["metrics"].get(metric))]
    if full:
        quality.axhline(100 * sum(full) / len(full), color=fg(), linestyle="--", linewidth=1, label="full fine-tuning")
    energy_rank = spectrum_rank(diagnosis)
    if energy_rank is not None:
        for axes in (quality, params):
            axes.axvline(energy_rank, color=fg(), linestyle=":", linewidth=1,
                         label=f"90% of the full update's energy (rank {energy_rank:g})")
    for axes in (quality, params):
        axes.set_xscale("log", base=2)
        axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axes.set_xlabel("rank r (log scale)")
    params.set_yscale("log")
    params.yaxis.set_major_formatter(FuncFormatter(lambda value, _: human_count(value)))
    quality.set_ylabel(f"test {words} (%)")
    params.set_ylabel("trainable parameters (log scale)")
    quality.legend(fontsize=8)
    return figure


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# --- rendering ----------------------------------------------------------------------------------------------------

def report_charts(results: dict[str, Any], diagnosis: dict[str, Any] | None = None,
                  foreground: str = FOREGROUND) -> dict[str, Figure | None]:
    """Every chart of the report by name (None: nothing to draw), in the order the report shows them; drawn in
    ``foreground`` (FOREGROUND: for svg(), which turns it into currentColor; "black" for png())."""
    _foreground.append(foreground)
    try:
        return _all_charts(results, diagnosis)
    finally:
        _foreground.pop()


def _all_charts(results: dict[str, Any], diagnosis: dict[str, Any] | None) -> dict[str, Figure | None]:
    return {name: _one_chart(results, name, diagnosis) for name in CHART_TITLES}


def draw_chart(results: dict[str, Any], name: str, diagnosis: dict[str, Any] | None = None,
               foreground: str = FOREGROUND) -> Figure | None:
    """One chart of the report by name (a key of CHART_TITLES); None: nothing to draw. For notebooks
    (:meth:`peftlab.report.results.Results.plot`), drawn in ``foreground``."""
    _foreground.append(foreground)
    try:
        return _one_chart(results, name, diagnosis)
    finally:
        _foreground.pop()


def _one_chart(results: dict[str, Any], name: str, diagnosis: dict[str, Any] | None) -> Figure | None:
    if name in PARETO_AXES:
        return pareto_chart(results, name)
    if name == "rank":
        return rank_chart(results, diagnosis)
    if name == "spectrum":
        spectrum = (diagnosis or {}).get("spectrum")
        return spectrum_chart(spectrum) if isinstance(spectrum, dict) else None
    return {"train_loss": train_loss_chart, "validation": validation_chart, "overfitting": overfitting_chart,
            "robustness_accuracy": robustness_accuracy_chart, "attacks": attack_chart,
            "train_sizes": train_sizes_chart}[name](results)


def svg(figure: Figure, name: str) -> str:
    """The figure as an <svg> element for inline HTML: no XML prolog, ids salted by ``name`` so several charts
    on one page never share an id, and the foreground colour as currentColor (the page's text colour)."""
    buffer = io.StringIO()
    with matplotlib.rc_context({**rc(), "svg.hashsalt": name}):
        figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    text = buffer.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)
    ids = set(re.findall(r'\bid="([^"]+)"', text))  # glyphs, clip paths, groups: unique on the page per chart
    text = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{name}-{m.group(1)}"', text)
    text = re.sub(r'(href="#|url\(#)([^")]+)',
                  lambda m: f"{m.group(1)}{name}-{m.group(2)}" if m.group(2) in ids else m.group(0), text)
    return text.replace(FOREGROUND, "currentColor").replace(FOREGROUND.upper(), "currentColor")


def png(figure: Figure, dpi: int = 150) -> bytes:
    """The figure as PNG on white (the Markdown report's figures; draw them with foreground="black")."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, facecolor="white", metadata={"Software": None})
    return buffer.getvalue()
