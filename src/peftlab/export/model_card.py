"""The README.md model card of an export: what it is, how to load it, and the study's numbers for the method."""

from __future__ import annotations

from typing import Any

from torch import nn
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
    MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES,
)

from peftlab.export.source import RunSource

PEFT_LIBRARY = "peft"
HEADS = ("SequenceClassification", "CausalLM", "Seq2SeqLM")  # AutoModelFor<head>, AutoPeftModelFor<head>


def auto_head(model: nn.Module) -> str:
    """Which Auto class loads this model back (one of HEADS), from transformers' own mappings of its class."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    name = type(base).__name__
    if name in MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES.values():
        return "Seq2SeqLM"
    if name in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values() or name.endswith("ForCausalLM"):
        return "CausalLM"
    return "SequenceClassification"


def load_snippet(kind: str, peft_format: bool, num_labels: int, head: str = "SequenceClassification") -> str:
    """Python that loads the folder (the placeholder `FOLDER` is its path) with the Auto class of its `head`."""
    if kind == "merged":
        return (f'from transformers import AutoModelFor{head}, AutoTokenizer\n'
                f'model = AutoModelFor{head}.from_pretrained("FOLDER")\n'
                'tokenizer = AutoTokenizer.from_pretrained("FOLDER")')
    if peft_format:
        labels = "" if num_labels == 2 or head != "SequenceClassification" else f", num_labels={num_labels}"
        return (f'from peft import AutoPeftModelFor{head}\n'
                'from transformers import AutoTokenizer\n'
                f'model = AutoPeftModelFor{head}.from_pretrained("FOLDER"{labels})\n'
                'tokenizer = AutoTokenizer.from_pretrained("FOLDER")')
    return ('import peftlab\n'
            'from transformers import AutoTokenizer\n'
            'model = peftlab.load_adapter("FOLDER")  # the base from the path in peftlab_run.json + this adapter\n'
            'tokenizer = AutoTokenizer.from_pretrained("FOLDER")')


def render_model_card(source: RunSource, kind: str, peft_format: bool, base_path: str, folder: str,
                      extra: dict[str, Any] | None = None, head: str = "SequenceClassification") -> str:
    """Markdown with YAML front matter. `kind`: adapter, merged or compressed; `folder`: where the export lands;
    `extra`: rows about this export."""
    study, method = source.study, source.method
    task = study.get("task", {})
    library = PEFT_LIBRARY if peft_format and kind != "merged" else "transformers" if kind == "merged" else "peftlab"
    what = {"adapter": f"the `{method}` adapter", "merged": f"the base model with the `{method}` update merged in",
            "compressed": f"the `{method}` adapter, compressed"}[kind]
    lines = [
        "---",
        f"base_model: {base_path}",
        f"library_name: {library}",
        "pipeline_tag: text-classification",
        "tags:",
        "- peftlab",
        f"- {method}",
        "---",
        "",
        f"# {method}: {study.get('model')} on {study.get('data')}",
        "",
        f"This folder holds {what}, exported by `peftlab export` from the study in `{source.study_dir}`.",
        f"Labels: {', '.join(source.info.get('label_names', []))}.",
        "",
        "## Load",
        "",
        "```python",
        load_snippet(kind, peft_format, len(source.info.get("label_names", [])), head).replace("FOLDER", folder),
        "```",
        "",
    ]
    if extra:
        lines += ["## This export", "", "| | |", "|---|---|"]
        lines += [f"| {key} | {value} |" for key, value in extra.items()]
        lines.append("")
    lines += ["## Study numbers for this method (test split)", "", "| | |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in _study_rows(source).items()]
    lines += ["", "## Study", "", "| | |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in _setup_rows(study, task).items()]
    lines.append("")
    return "\n".join(lines)


def _study_rows(source: RunSource) -> dict[str, str]:
    metrics, cost = source.record.get("metrics", {}), source.record.get("cost", {})
    rows = {
        "accuracy": _number(metrics.get("accuracy"), ".4f"),
        "macro-F1": _number(metrics.get("macro_f1"), ".4f"),
    }
    if source.reference is not None:
        for key, label in (("accuracy", "accuracy vs full fine-tuning"), ("macro_f1", "macro-F1 vs full fine-tuning")):
            ours, theirs = metrics.get(key), source.reference.get("metrics", {}).get(key)
            if ours is not None and theirs is not None:
                rows[label] = f"{100 * (ours - theirs):+.1f} points"
    rows.update({
        "trainable parameters": _number(cost.get("trainable_params"), ","),
        "total parameters": _number(cost.get("total_params"), ","),
        "checkpoint bytes": _number(cost.get("checkpoint_bytes"), ","),
        "train seconds": _number(cost.get("train_seconds"), ".1f"),
        "train steps": _number(cost.get("train_steps"), ""),
        "peak memory bytes": _number(cost.get("peak_memory_bytes"), ","),
        "inference ms/example": _number(cost.get("inference_ms_per_example"), ".2f"),
        "settings": ", ".join(f"{k}={v}" for k, v in source.record.get("config", {}).items()),
    })
    return rows


def _setup_rows(study: dict, task: dict) -> dict[str, str]:
    versions = study.get("versions", {})
    return {
        "model": f"{study.get('model')} (`{study.get('model_path')}`)",
        "data": str(study.get("data")),
        "dataset sha256": str(study.get("dataset_sha256")),
        "split sizes": ", ".join(f"{k} {v}" for k, v in task.get("sizes", {}).items()),
        "budget": ", ".join(f"{k}={v}" for k, v in study.get("budget", {}).items()),
        "seed": str(study.get("seed")),
        "hardware": str(study.get("hardware", {}).get("device")),
        "versions": ", ".join(f"{k} {v}" for k, v in versions.items()),
    }


def _number(value: Any, spec: str) -> str:
    if value is None:
        return "-"
    try:
        return format(value, spec)
    except (TypeError, ValueError):
        return str(value)
