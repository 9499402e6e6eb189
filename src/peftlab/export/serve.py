"""Serving several exported LoRA adapters from one base model, in one mixed batch.

peft's mixed-batch inference: load the adapters side by side on one base (``PeftModel.from_pretrained(base,
first, adapter_name=...)``, then ``model.load_adapter(other, adapter_name=...)``) and pass
``adapter_names=[name of the adapter for each row]`` to ``forward``; each row goes through its own adapter,
trained head included (peft routes ``modules_to_save`` the same way). peft 0.21 supports this for LoRA but
not for DoRA (``use_dora``) or other adapter types.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch
from peft import PeftModel

from peftlab.errors import PeftlabError
from peftlab.methods.peft_methods import require_safetensors_adapter
from peftlab.models import ModelRef, load_classifier
from peftlab.files import read_run_file


def load_adapters_on_one_base(adapter_dirs: Sequence[str | Path], names: Sequence[str] | None = None):
    """(PeftModel with every adapter loaded under its name, tokenizer of the first, names)."""
    from transformers import AutoTokenizer

    dirs = [Path(d) for d in adapter_dirs]
    names = list(names) if names is not None else [f"adapter{i}" for i in range(len(dirs))]
    if not dirs or len(names) != len(dirs) or len(set(names)) != len(names):
        raise PeftlabError("pass one or more adapter folders and as many distinct names")
    infos = [read_run_file(d) for d in dirs]
    for directory, info in zip(dirs, infos):
        config_file = directory / "adapter_config.json"
        peft_type = json.loads(config_file.read_text()).get("peft_type") if config_file.is_file() else info["method"]
        if peft_type != "LORA" or info["config"].get("use_dora"):
            raise PeftlabError(f"{directory}: mixed-batch serving needs plain LoRA adapters (peft 0.21), not {peft_type}"
                               + (" with DoRA" if info["config"].get("use_dora") else ""))
        if (info["model_path"], info["label_names"]) != (infos[0]["model_path"], infos[0]["label_names"]):
            raise PeftlabError(f"{directory} was trained on another base or label set than {dirs[0]}")
    tokenizer = AutoTokenizer.from_pretrained(dirs[0])
    base = load_classifier(ModelRef(infos[0]["model"], infos[0]["model_path"]), infos[0]["label_names"],
                           tokenizer.pad_token_id)
    model = PeftModel.from_pretrained(base, str(require_safetensors_adapter(dirs[0])), adapter_name=names[0])
    for directory, name in zip(dirs[1:], names[1:]):
        model.load_adapter(str(require_safetensors_adapter(directory)), adapter_name=name)
    model.eval()
    return model, tokenizer, names


@torch.no_grad()
def mixed_batch_check(adapter_dirs: Sequence[str | Path], texts: Sequence[str], max_length: int = 128) -> dict:
    """Run `texts` as one batch, row i through adapter i mod n, and compare with each adapter alone.

    Returns the per-row adapter names, the mixed-batch logits and the largest |difference| to single-adapter runs.
    """
    model, tokenizer, names = load_adapters_on_one_base(adapter_dirs)
    batch = dict(tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt"))
    assignment = [names[i % len(names)] for i in range(len(texts))]
    mixed = model(**batch, adapter_names=assignment).logits
    difference = 0.0
    for name in names:
        model.set_adapter(name)
        alone = model(**batch).logits
        rows = [i for i, assigned in enumerate(assignment) if assigned == name]
        difference = max(difference, float((mixed[rows] - alone[rows]).abs().max()))
    return {"adapter_names": assignment, "logits": mixed, "max_abs_difference": difference}
