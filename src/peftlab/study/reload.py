"""Rebuild a finished study from its results.json: the CompareConfig its header records, and its task.

Used by the commands that work on a saved study (`peftlab robustness`, `peftlab export --compress`): the task is
rebuilt from the recorded data, columns, caps and seed, and must give the recorded dataset fingerprint.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from peftlab.errors import DataError
from peftlab.options import config_from_mapping
from peftlab.study.config import CompareConfig
from peftlab.study.inputs import Study, prepare_study


def config_from_header(header: dict[str, Any], out: Path, robustness: bool = True, **overrides: Any) -> CompareConfig:
    """The CompareConfig that rebuilds the study's task (and robustness suite); ``overrides`` (not None) win.

    A header written since the configuration is recorded whole (``config``) gives it back in one call; an older
    header is inverted field by field."""
    if isinstance(header.get("config"), dict):
        config = replace(config_from_mapping(CompareConfig, header["config"], "results.json's study.config"),
                         out=str(out), robustness=robustness)
        if not robustness:
            config = replace(config, robust_set=None)
        config = replace(config, task=config.task or (header.get("task") or {}).get("type"))
        return replace(config, **{key: value for key, value in overrides.items() if value is not None})
    budget, columns = header["budget"], header["task"]["columns"]
    recorded = (header.get("robustness") or {}).get("settings") or {}
    config = CompareConfig(
        model=header["model"], data=header["data"], methods=list(header["methods"]), subset=header.get("subset"),
        split=header.get("split"), text_column=columns["text"], text_pair_column=columns["text_pair"],
        label_column=columns["label"], max_train_examples=budget["max_train_examples"],
        max_eval_examples=budget["max_eval_examples"], epochs=budget["epochs"], max_steps=budget["max_steps"],
        batch_size=budget["batch_size"], max_length=budget["max_length"], seed=header["seed"], out=str(out),
        robustness=robustness, robust_set=recorded.get("robust_set") if robustness else None,
        task=header["task"].get("type"),
    )
    for key, setting in (("perturb_examples", "perturb_examples"), ("perturb_severity", "severity"),
                         ("attack_examples", "attack_examples")):
        if setting in recorded:
            config = replace(config, **{key: recorded[setting]})
    if "query_budget" in recorded.get("attack", {}):
        config = replace(config, attack_query_budget=recorded["attack"]["query_budget"])
    return replace(config, **{key: value for key, value in overrides.items() if value is not None})


def reload_study(header: dict[str, Any], out: Path, robustness: bool = True, writes_out: bool = True,
                 **overrides: Any) -> Study:
    """The checked Study (task, tokenizer, model reference) of a saved study; DataError if its data changed.
    ``writes_out``: the caller writes into the study folder (checked writable first)."""
    study = prepare_study(config_from_header(header, out, robustness, **overrides), writes_out=writes_out)
    if study.task.sha256 != header.get("dataset_sha256"):
        raise DataError(f"the data of {out} ({header['data']}) is not what the study was trained on (its "
                        "fingerprint changed); run this where the study's data is unchanged")
    return study
