"""The advisor: from measured signals to "full fine-tuning or which PEFT method", with reasons.

Every rule reads one signal, compares it with one threshold from THRESHOLDS, and either votes (toward full
fine-tuning or toward PEFT, with a weight) or sets a detail of the recommendation (rank, target modules,
trainable embeddings). Each vote becomes a reason that cites the signal and its value. The decision is
``full`` when the votes for full outweigh the votes for PEFT by at least ``decision_margin``; the confidence
grows with the size of that difference.

How the thresholds are to be set: on the calibration table in docs/DIAGNOSE.md (the 7 BIG-bench tasks +
rotten_tomatoes, MiniLM, `benchmarks/calibrate_advisor.sh`, table by `benchmarks/advisor_table.py`), each
threshold between the values of the tasks where PEFT stayed within 2 points of full fine-tuning and those where
it did not, one threshold for every task. STATUS: that table is not complete yet (docs/DIAGNOSE.md says which
rows exist); the values below are provisional: the vocabulary ones sit between the English tasks and the Russian
one as measured by `peftlab diagnose` (docs/DIAGNOSE.md), the others are round starting values, not fitted.

The rules:
1. Vocabulary (embeddings must change): the task's characters outside the tokenizer's well-covered scripts,
   its fertility relative to the reference English sample, its unknown-token rate. Any one above its threshold:
   ``train_embeddings`` (peft: ``modules_to_save`` on the input embeddings, or ``trainable_token_indices`` for
   new tokens) and a vote for full fine-tuning.
2. Knowledge present: the linear probe's share of the headroom above the majority class. Low: the features the
   task needs are not in the frozen model (vote full). High: they are (vote PEFT).
3. Representation shift: MMD of task vs reference features above its threshold: vote full.
4. Low rank: the energy a rank-16 update holds in a full fine-tuning update. High: a LoRA can represent the
   update (vote PEFT). The rank named is the smallest of 4/8/16/64 holding ``rank_energy`` of it.
5. Task size: few training examples favour PEFT (fewer trainable parameters overfit less).
"""

from __future__ import annotations

from typing import Any

from peftlab.methods import trains

THRESHOLDS: dict[str, float] = {
    "uncovered_char_rate": 0.2,  # share of word characters outside well-covered scripts
    "fertility_ratio": 1.6,  # task tokens per word / reference tokens per word
    "unknown_rate": 0.01,  # share of tokens that are [UNK]
    "probe_headroom_low": 0.15,  # probe reaches less than this share of the headroom: knowledge missing
    "probe_headroom_high": 0.5,  # at least this share: knowledge present
    "representation_mmd": 0.5,  # squared MMD between task and reference features
    "energy_at_rank_16": 0.5,  # mean energy a rank-16 update holds, across layer types
    "rank_energy": 0.5,  # the named rank holds at least this share of the update's energy
    "few_examples": 1000,  # training examples below this: PEFT
    "decision_margin": 1.0,  # votes for full minus votes for PEFT needed to recommend full
}
WEIGHTS = {"vocabulary": 1.5, "probe": 1.0, "shift": 0.5, "low_rank": 1.0, "size": 0.5}
RANKS = (4, 8, 16, 64)
# layer type -> module-name suffixes peft's target_modules accepts, per naming family
TARGET_NAMES = {
    "query": ("query", "q_proj"), "key": ("key", "k_proj"), "value": ("value", "v_proj"),
    "attention_output": ("attention.output.dense", "o_proj"), "ffn_in": ("intermediate.dense", "up_proj"),
    "ffn_out": ("output.dense", "down_proj"),
}


def derived_inputs(diagnosis: dict[str, Any]) -> dict[str, Any]:
    """The few numbers the rules read, from a diagnosis dict (None where a signal is missing)."""
    vocabulary, reference = diagnosis.get("vocabulary") or {}, (diagnosis.get("vocabulary") or {}).get("reference") or {}
    spectrum = {k: v for k, v in (diagnosis.get("spectrum") or {}).items() if k != "embeddings"}
    probe = diagnosis.get("probe") or {}
    fertility, reference_fertility = vocabulary.get("fertility"), reference.get("fertility")
    return {
        "uncovered_char_rate": vocabulary.get("uncovered_char_rate"),
        "fertility_ratio": fertility / reference_fertility if fertility and reference_fertility else None,
        "unknown_rate": vocabulary.get("unknown_rate"),
        "split3_rate": vocabulary.get("split3_rate"),  # cited in the user's units, not thresholded
        "reference_split3_rate": reference.get("split3_rate"),
        "probe_headroom": probe.get("headroom_reached"),
        "representation_mmd": (diagnosis.get("shift") or {}).get("representation_mmd"),
        "energy_at_rank": {str(r): _mean([s["energy_at_rank"][str(r)] for s in spectrum.values()]) for r in RANKS}
        if spectrum else None,
        "train_examples": ((diagnosis.get("task_shape") or {}).get("examples") or {}).get("train"),
        "spectrum": spectrum,
    }


def recommend(diagnosis: dict[str, Any], thresholds: dict[str, float] | None = None) -> dict[str, Any]:
    """The recommendation: decision (full|peft), method, rank, target_modules, train_embeddings, reasons,
    confidence (0.5-0.95), and the votes behind it."""
    t = {**THRESHOLDS, **(thresholds or {})}
    x = derived_inputs(diagnosis)
    votes: list[tuple[str, float, str]] = []  # (side, weight, reason)

    vocabulary_hits = [
        f"{name.replace('_', ' ')} {x[name]:.3g} > {t[name]:g}" for name in ("uncovered_char_rate", "fertility_ratio",
                                                                           "unknown_rate")
        if x[name] is not None and x[name] > t[name]
    ]
    train_embeddings = bool(vocabulary_hits)
    if vocabulary_hits:
        votes.append(("full", WEIGHTS["vocabulary"], "vocabulary: the tokenizer covers the task's text poorly ("
                      + "; ".join(vocabulary_hits) + ")" + _split_words(x) + ", so the embeddings must change"))
    elif x["fertility_ratio"] is not None:
        votes.append(("peft", 0.0, f"vocabulary: fertility {x['fertility_ratio']:.2f}x the reference English sample, "
                      f"uncovered characters {x['uncovered_char_rate']:.3f}: the tokenizer fits the text"))

    if x["probe_headroom"] is not None:
        headroom = x["probe_headroom"]
        probe = diagnosis["probe"]
        cite = (f"ridge probe on frozen features: MSE {probe['mse']:.3g} vs the training mean's {probe['mean_mse']:.3g} "
                f"(removes {headroom:.0%} of it)" if probe.get("model") == "ridge" else
                f"linear probe on frozen features {probe['accuracy']:.3f} vs majority {probe['majority_accuracy']:.3f} "
                f"(reaches {headroom:.0%} of the headroom)")
        if headroom < t["probe_headroom_low"]:
            votes.append(("full", WEIGHTS["probe"], f"knowledge: {cite} < {t['probe_headroom_low']:.0%}: the frozen "
                          "model barely knows the task"))
        elif headroom >= t["probe_headroom_high"]:
            votes.append(("peft", WEIGHTS["probe"], f"knowledge: {cite} >= {t['probe_headroom_high']:.0%}: the "
                          "frozen model already separates the classes"))

    if x["representation_mmd"] is not None and x["representation_mmd"] > t["representation_mmd"]:
        votes.append(("full", WEIGHTS["shift"], f"shift: representation MMD to reference English "
                      f"{x['representation_mmd']:.3f} > {t['representation_mmd']:g}"))

    rank = _rank(x["energy_at_rank"], t["rank_energy"])
    if x["energy_at_rank"] is not None:
        energy16 = x["energy_at_rank"]["16"]
        side = "peft" if energy16 >= t["energy_at_rank_16"] else "full"
        relation = ">=" if side == "peft" else "<"
        votes.append((side, WEIGHTS["low_rank"], f"low rank: a rank-16 update holds {energy16:.0%} of the full "
                      f"fine-tuning update's energy (mean over layer types) {relation} {t['energy_at_rank_16']:.0%}"))

    if x["train_examples"] is not None and x["train_examples"] < t["few_examples"]:
        votes.append(("peft", WEIGHTS["size"], f"size: {x['train_examples']} training examples < "
                      f"{t['few_examples']:g}: fewer trainable parameters overfit less"))

    score = sum(w for side, w, _ in votes if side == "full") - sum(w for side, w, _ in votes if side == "peft")
    decision = "full" if score >= t["decision_margin"] else "peft"
    margin = abs(score - t["decision_margin"])  # distance from the decision boundary, in vote weight
    return {
        "decision": decision,
        "method": "full" if decision == "full" else "lora",
        "rank": None if decision == "full" else rank,
        "target_modules": None if decision == "full" else _targets(x["spectrum"]),
        "train_embeddings": train_embeddings,
        "reasons": [reason for _, _, reason in votes],
        "confidence": round(min(0.95, 0.5 + 0.15 * margin), 2),
        "votes": {"full": sum(w for s, w, _ in votes if s == "full"), "peft": sum(w for s, w, _ in votes if s == "peft"),
                  "margin_needed_for_full": t["decision_margin"]},
        "inputs": {k: v for k, v in x.items() if k != "spectrum"},
    }


def _split_words(x: dict[str, Any]) -> str:
    """The vocabulary evidence in the user's units: ": it splits 64% of your words into 3+ pieces (the reference
    English sample: 9%)", or nothing when the diagnosis did not measure it."""
    if x.get("split3_rate") is None:
        return ""
    reference = x.get("reference_split3_rate")
    return (f": it splits {x['split3_rate']:.0%} of your words into 3+ pieces"
            + (f" (the reference English sample: {reference:.0%})" if reference is not None else ""))


def _rank(energy: dict[str, float] | None, target: float) -> int:
    if energy is None:
        return 16
    return next((r for r in RANKS if energy[str(r)] >= target), RANKS[-1])


def _targets(spectrum: dict[str, dict]) -> list[str] | None:
    """The layer types whose relative update is at least the median across types (where FFT moved most)."""
    norms = {k: v.get("relative_update_norm") for k, v in spectrum.items() if v.get("relative_update_norm") is not None}
    if not norms:
        return None
    cut = sorted(norms.values())[len(norms) // 2] if len(norms) > 1 else 0.0
    return [kind for kind, norm in norms.items() if norm >= cut and kind in TARGET_NAMES]


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def advisor_check(recommendation: dict[str, Any], runs: list[dict], tolerance_points: float = 2.0,
                  verdict: dict[str, Any] | None = None) -> dict[str, Any]:
    """The advisor's call next to what a comparison measured. With the study's verdict
    (:mod:`peftlab.study.verdict`): the advisor agrees when it said peft and the verdict chose a PEFT method, or
    said full and the verdict chose full; an inconclusive verdict checks nothing. Without one (older results): did
    the best PEFT method land within ``tolerance_points`` accuracy points of full fine-tuning (the mean over
    seeds)? The scores compared are the verdict's metric (``metric``: accuracy, or Spearman for regression)."""
    if verdict is not None and verdict.get("decision") == "inconclusive":
        return {"status": "not_checked", "reason": "the verdict is inconclusive: " + "; ".join(verdict.get("reasons") or [])}
    metric = (verdict or {}).get("metric") or "accuracy"  # the verdict's headline: Spearman for regression
    per_method: dict[str, list[float]] = {}
    for r in runs:  # several seeds of a method: their mean
        if r.get("status") == "ok" and isinstance((r.get("metrics") or {}).get(metric), (int, float)):
            per_method.setdefault(r["method"], []).append(r["metrics"][metric])
    ok = {method: sum(values) / len(values) for method, values in per_method.items()}
    if "full" not in ok:
        return {"status": "not_checked", "reason": "no successful full fine-tuning run to compare with"}
    peft = {m: a for m, a in ok.items() if m != "full" and trains(m)}  # not the zero-shot floor
    if not peft:
        return {"status": "not_checked", "reason": "no successful PEFT run to compare with"}
    best = max(peft, key=peft.get)
    gap = 100 * (ok["full"] - peft[best])
    within = gap <= tolerance_points
    if verdict is not None:
        tolerance_points, within = verdict.get("tolerance_points", tolerance_points), verdict["decision"] != "full"
    agrees = (recommendation["decision"] == "peft") == within
    # full_accuracy / best_peft_accuracy: the metric's values (named before there were other metrics)
    return {"status": "checked", "decision": recommendation["decision"], "metric": metric, "full_accuracy": ok["full"],
            "best_peft_method": best, "best_peft_accuracy": peft[best], "gap_points": gap,
            "tolerance_points": tolerance_points, "within_tolerance": within, "agrees": agrees,
            "against": "verdict" if verdict is not None else "gap"}
