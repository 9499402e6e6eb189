"""Low-rank structure of a full fine-tuning update: singular values of W_after - W_before per weight matrix.

For every 2-D weight of the base model (the task head is new, so it is left out) the update's singular values
give ``effective_rank_90`` (the fewest singular directions that hold 90% of the update's energy, the sum of
squared singular values) and ``energy_at_rank`` (the share of energy the top 4/8/16/64 directions hold: what a
LoRA of that rank could represent at best). Matrices are grouped by layer type (query, key, value, attention
output, FFN in, FFN out, embeddings); per type the summary is the median effective rank and the mean energies.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from statistics import median

import torch

RANKS = (4, 8, 16, 64)
ENERGY_TARGET = 0.9
# layer type -> name patterns (BERT-like encoders, Llama/Mistral/Qwen decoders, GPT-2, T5-ish)
LAYER_TYPES: dict[str, tuple[str, ...]] = {
    "query": (r"\.query$", r"\.q_proj$", r"\.q$"),
    "key": (r"\.key$", r"\.k_proj$", r"\.k$"),
    "value": (r"\.value$", r"\.v_proj$", r"\.v$"),
    "attention_output": (r"attention\.output\.dense$", r"\.o_proj$", r"\.out_proj$", r"attn\.c_proj$", r"\.o$"),
    "ffn_in": (r"intermediate\.dense$", r"\.gate_proj$", r"\.up_proj$", r"mlp\.c_fc$", r"\.fc1$", r"\.wi(_\d)?$",
               r"\.lin1$"),
    "ffn_out": (r"\.output\.dense$", r"\.down_proj$", r"mlp\.c_proj$", r"\.fc2$", r"\.wo$", r"\.lin2$"),
    "embeddings": (r"word_embeddings$", r"embed_tokens$", r"\.wte$", r"\.shared$"),
}


def layer_type(module_name: str) -> str | None:
    """The layer type of a weight's module (name without '.weight'); first match wins, None if unknown."""
    for kind, patterns in LAYER_TYPES.items():
        if any(re.search(pattern, module_name) for pattern in patterns):
            return kind
    return None


@contextmanager
def _one_thread():
    """LAPACK on one thread: on a busy 2-core machine a 1536x384 SVD took 9 s with the default threads and
    0.06 s with one (measured with other jobs running); the matrices here are small enough for one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def matrix_spectrum(delta: torch.Tensor, before: torch.Tensor | None = None) -> dict:
    """Effective rank at 90% energy and energy at ranks 4/8/16/64 of one update matrix."""
    with _one_thread():
        singular = torch.linalg.svdvals(delta.detach().double().cpu())
    energy = singular.pow(2)
    total = float(energy.sum())
    full_rank = min(delta.shape)
    if total == 0.0:
        return {"shape": list(delta.shape), "full_rank": full_rank, "effective_rank_90": 0,
                "energy_at_rank": {str(r): 1.0 for r in RANKS}, "update_norm": 0.0, "relative_update_norm": 0.0}
    cumulative = torch.cumsum(energy, 0) / total
    effective = int(torch.searchsorted(cumulative, torch.tensor(ENERGY_TARGET, dtype=cumulative.dtype) - 1e-12)) + 1
    norm = total ** 0.5
    return {
        "shape": list(delta.shape), "full_rank": full_rank, "effective_rank_90": min(effective, full_rank),
        "energy_at_rank": {str(r): float(cumulative[min(r, full_rank) - 1]) for r in RANKS},
        "update_norm": norm,
        "relative_update_norm": norm / float(before.double().norm()) if before is not None and before.abs().sum() > 0 else None,
    }


def update_spectra(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor],
                   skip_prefixes: tuple[str, ...] = (), roles: dict[str, str] | None = None) -> dict[str, dict]:
    """Per 2-D weight present in both states (not under skip_prefixes, e.g. the head): its layer type (from `roles`,
    the module structure's, where given; else from its name) and spectrum."""
    spectra = {}
    for name, weight in before.items():
        if weight.ndim != 2 or name not in after or name.startswith(skip_prefixes) or not name.endswith("weight"):
            continue
        module = name[: -len(".weight")]
        kind = (roles or {}).get(module) or layer_type(module)  # the module structure's role, else the name
        if kind is None:
            continue
        spectra[module] = {"layer_type": kind, **matrix_spectrum(after[name].float() - weight.float(), weight.float())}
    return spectra


def summarise_by_type(spectra: dict[str, dict]) -> dict[str, dict]:
    """Per layer type: median effective rank (and relative to the full rank), mean energy at each rank."""
    groups: dict[str, list[dict]] = {}
    for entry in spectra.values():
        groups.setdefault(entry["layer_type"], []).append(entry)
    summary = {}
    for kind in LAYER_TYPES:
        entries = groups.get(kind)
        if not entries:
            continue
        relative = [e["relative_update_norm"] for e in entries if e["relative_update_norm"] is not None]
        summary[kind] = {
            "effective_rank_90": median(e["effective_rank_90"] for e in entries),
            "relative_effective_rank_90": median(e["effective_rank_90"] / e["full_rank"] for e in entries),
            "energy_at_rank": {str(r): sum(e["energy_at_rank"][str(r)] for e in entries) / len(entries) for r in RANKS},
            "relative_update_norm": sum(relative) / len(relative) if relative else None,
            "matrices": len(entries),
            "full_rank": median(e["full_rank"] for e in entries),
        }
    return summary
