"""Terminal summary of a diagnosis (the CLI prints it; the JSON holds everything)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def print_diagnosis(diagnosis: dict[str, Any], console: Console) -> None:
    vocabulary, reference = diagnosis["vocabulary"], diagnosis["vocabulary"]["reference"]
    table = Table("vocabulary fit", "task", "reference English", title=f"diagnosis: {diagnosis['data']} on {diagnosis['model']}")
    for key in ("fertility", "unknown_rate", "split3_rate", "uncovered_char_rate"):
        table.add_row(key, _fmt(vocabulary.get(key)), _fmt(reference.get(key)))
    console.print(table)
    shift, probe, shape = diagnosis["shift"], diagnosis["probe"], diagnosis["task_shape"]
    console.print(f"shift: representation MMD {_fmt(shift['representation_mmd'])}, centroid cosine distance "
                  f"{_fmt(shift['centroid_cosine_distance'])}; LM loss task {_fmt(shift.get('lm_loss'))} vs reference "
                  f"{_fmt(shift.get('lm_loss_reference'))}" + (f" ({shift['lm_note']})" if shift.get("lm_note") else ""))
    if probe.get("model") == "ridge":  # regression
        console.print(f"probe: ridge on frozen features, MSE {_fmt(probe['mse'])} vs the training mean's "
                      f"{_fmt(probe['mean_mse'])}, Spearman {_fmt(probe['spearman'])}")
        console.print(f"task: {shape['examples']['train']} train examples, target mean {_fmt(shape['target_mean'])}, "
                      f"std {_fmt(shape['target_std'])}, {_fmt(shape['words_mean'])} words per text")
    else:
        console.print(f"probe: linear probe on frozen features {_fmt(probe['accuracy'])} vs majority class "
                      f"{_fmt(probe['majority_accuracy'])}")
        console.print(f"task: {shape['examples']['train']} train examples, {shape['labels']} labels (majority share "
                      f"{_fmt(shape['majority_share'])}), {_fmt(shape['words_mean'])} words per text")
    spectrum = Table("layer type", "eff. rank 90%", "energy r4", "r8", "r16", "r64",
                     title=f"full fine-tuning update spectrum ({diagnosis['spectrum_source']['kind']})")
    for kind, entry in diagnosis["spectrum"].items():
        energy = entry["energy_at_rank"]
        spectrum.add_row(kind, _fmt(entry["effective_rank_90"]), *(_fmt(energy[r], 2) for r in ("4", "8", "16", "64")))
    console.print(spectrum)
    print_recommendation(diagnosis["recommendation"], console)


def print_recommendation(recommendation: dict[str, Any], console: Console) -> None:
    if recommendation["decision"] == "full":
        call = "full fine-tuning"
    else:
        targets = ", ".join(recommendation.get("target_modules") or []) or "default targets"
        call = f"{recommendation['method']} rank {recommendation['rank']} on {targets}"
    if recommendation["train_embeddings"]:
        call += ", with trainable embeddings"
    console.print(f"[bold]recommendation:[/bold] {call} (confidence {recommendation['confidence']:.2f})")
    for reason in recommendation["reasons"]:
        console.print(f"  - {reason}", markup=False, highlight=False)


def print_advisor_check(summary: dict[str, Any], console: Console) -> None:
    """compare's lines (from its results): the advisor's call next to the measured outcome."""
    if "advisor_check" not in summary:
        if "diagnosis_skipped" in summary:
            console.print(f"diagnosis skipped: {summary['diagnosis_skipped']}", markup=False)
        else:
            console.print(f"diagnosis failed: {summary.get('diagnosis_failed', 'not run')}", markup=False)
        return
    print_recommendation(summary["recommendation"], console)
    check = summary["advisor_check"]
    if check.get("status") != "checked":
        console.print(f"advisor check: not checked ({check.get('reason')})")
        return
    if check.get("against") == "verdict":
        chose = "full fine-tuning" if not check["within_tolerance"] else "a PEFT method"
        console.print(f"advisor's prediction: {check['decision']}; the verdict chose {chose}: "
                      f"{'agrees' if check['agrees'] else 'DISAGREES'}")
        return
    console.print(f"advisor check: best PEFT {check['best_peft_method']} {check['best_peft_accuracy']:.3f} vs full "
                  f"{check['full_accuracy']:.3f} (gap {check['gap_points']:+.1f} points, "
                  f"{'within' if check['within_tolerance'] else 'outside'} {check['tolerance_points']:g}); advisor said "
                  f"{check['decision']}: {'agrees' if check['agrees'] else 'DISAGREES'}")
