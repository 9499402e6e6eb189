"""`export`: take one method of a finished study to production, as an adapter folder and/or a merged model.

The recipe: find the run and check every request (nothing is written before that), load the trained model
from its run folder, then, in hidden staging folders, write the adapter (the method's own format, the base path
re-pointed to where the base was loaded from, tokenizer, model card), its compressed variants (each measured on
the study's test split), and the merged model; finally rename them all into place.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from peftlab.errors import ConfigError, MethodError
from peftlab.tasks.kinds import PREDICTIONS, task_kind_of
from peftlab.export.compress import COMPACT_FILE, check_quantizer, compress_file, parse_densities
from peftlab.export.evaluation import evaluate_folder, study_test_task
from peftlab.export.merge import write_merged
from peftlab.export.model_card import auto_head, render_model_card
from peftlab.export.source import RunSource, find_run
from peftlab.export.staging import EXPORT_FILE, Staging, check_destination
from peftlab.methods import METHODS, get_method
from peftlab.files import RUN_FILE, write_json_atomic
from peftlab.study.artifacts import load_run
from peftlab.study.run import TOKENIZER_FILES

ADAPTER_CONFIG = "adapter_config.json"
CARD = "README.md"
COMPRESSED_FOLDER = "compressed"
NOT_WEIGHTS = TOKENIZER_FILES | {RUN_FILE, CARD, EXPORT_FILE}


@dataclass
class ExportConfig:
    """What to export: the method of the study at `run_dir`, as an adapter and/or merged, optionally compressed."""

    run_dir: str
    method: str
    adapter: str | None = None  # output folder for the adapter
    merged: str | None = None  # output folder for the merged model
    compress: list[float] = field(default_factory=list)  # densities; compressed adapters go under ADAPTER/compressed
    quantize: str = "int8"  # int8 or sign

    def check(self) -> None:
        if not self.adapter and not self.merged:
            raise ConfigError("nothing to export: pass --adapter OUT and/or --merged OUT")
        if self.compress and not self.adapter:
            raise ConfigError("--compress writes compressed adapters under the --adapter folder: pass --adapter OUT too")
        if self.adapter and self.merged and Path(self.adapter).absolute() == Path(self.merged).absolute():
            raise ConfigError("--adapter and --merged need two different folders")
        self.compress = parse_densities(self.compress) if self.compress else []
        check_quantizer(self.quantize)


def prepare_export(config: ExportConfig):
    """(source, method): every check that can fail on the user's input, before anything is loaded or written."""
    config.check()
    method = get_method(config.method)
    source = find_run(config.run_dir, config.method)
    if config.adapter and method.adapter_blocker:
        raise method.adapter_error()
    if config.merged and not method.mergeable:
        raise method.merge_error()
    if config.compress and not method.update_tensors:
        compressible = ", ".join(m.name for m in METHODS.values() if m.update_tensors)
        raise MethodError(f"method '{method.name}' cannot be compressed: compression sparsifies a saved weight "
                          f"update, which only these methods' files are ({compressible})")
    kind = task_kind_of(source.study.get("task"))
    if config.compress and kind.per_example == PREDICTIONS:  # regression: no accuracy to compare compressions by
        raise ConfigError(f"--compress measures the compressed adapter's test accuracy, which a {kind.name} study "
                          "does not have; export it without --compress")
    for flag, path in (("--adapter", config.adapter), ("--merged", config.merged)):
        if path:
            check_destination(Path(path), flag)
    return source, method


def export(config: ExportConfig) -> dict:
    """Run the export; returns a summary (paths, sizes, merge check, compression table)."""
    source, method = prepare_export(config)
    task = study_test_task(source.study_dir, source.study) if config.compress else None  # fails early when it cannot be rebuilt
    model, tokenizer, _ = load_run(source.run_folder)
    head = auto_head(model)
    summary: dict = {"method": method.name, "source": str(source.run_folder)}
    with Staging() as staging:
        if config.adapter:
            final = Path(config.adapter).absolute()
            folder = staging.folder(final)
            summary["adapter"] = {"path": str(final), **write_adapter(source, model, tokenizer, folder, final, head)}
            if config.compress:
                summary["compression"] = write_compressed(source, folder, final, task, config, head)
            _write_export_file(folder, source, summary, "adapter")
        if config.merged:
            final = Path(config.merged).absolute()
            folder = staging.folder(final)
            merged = write_merged(method, model, tokenizer, folder, source.info["max_length"])
            summary["merged"] = {"path": str(final), **merged}
            extra = {"weights bytes": f"{merged['bytes']:,}",
                     "max abs logit difference to the adapter model": f"{merged['max_abs_logit_difference']:.1e}"}
            (folder / CARD).write_text(render_model_card(source, "merged", False, source.info["model_path"],
                                                         str(final), extra, head))
            _write_export_file(folder, source, summary, "merged")
        staging.publish()
    return summary


def write_adapter(source: RunSource, model, tokenizer, folder: Path, final: Path,
                  head: str = "SequenceClassification") -> dict:
    """The method's own saved format, tokenizer, peftlab_run.json and model card; the base path re-pointed."""
    method = get_method(source.method)
    method.export_adapter(model, folder)
    weights = {p.name for p in folder.iterdir() if p.is_file() and p.name not in NOT_WEIGHTS}
    peft_format = _repoint_base(folder, source.info["model_path"])
    tokenizer.save_pretrained(folder)
    write_json_atomic(folder / RUN_FILE, {**source.info, "exported_from": str(source.run_folder)})
    size = sum((folder / name).stat().st_size for name in weights)
    extra = {"adapter bytes": f"{size:,} ({', '.join(sorted(weights))})"}
    (folder / CARD).write_text(render_model_card(source, "adapter", peft_format, source.info["model_path"],
                                                 str(final), extra, head))
    return {"bytes": size, "files": sorted(weights), "peft_format": peft_format}


def _repoint_base(folder: Path, model_path: str) -> bool:
    """Point adapter_config.json's base_model_name_or_path at where the base was loaded from; True for peft's
    own formats (loadable by PeftModel.from_pretrained)."""
    path = folder / ADAPTER_CONFIG
    if not path.is_file():
        return False
    config = json.loads(path.read_text())
    config["base_model_name_or_path"] = model_path
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return "peft_version" in config  # written by peft's save_pretrained (our bottleneck adapter has none)


def write_compressed(source: RunSource, adapter_folder: Path, final: Path, task, config: ExportConfig,
                     head: str = "SequenceClassification") -> list[dict]:
    """ADAPTER/compressed/density-D/ for each density: a loadable adapter plus its compact file, each measured."""
    method = get_method(source.method)
    reference = evaluate_folder(adapter_folder, task)
    rows = []
    for density in config.compress:
        name = f"density-{density:g}"
        folder = adapter_folder / COMPRESSED_FOLDER / name
        folder.mkdir(parents=True)
        for item in adapter_folder.iterdir():
            if item.is_file() and item.name not in {CARD, EXPORT_FILE}:
                (folder / item.name).write_bytes(item.read_bytes())
        row = compress_file(adapter_folder / "adapter_model.safetensors", folder, method.update_tensors, density,
                            config.quantize)
        scores = evaluate_folder(folder, task)
        row.update({"folder": f"{COMPRESSED_FOLDER}/{name}", "accuracy": scores["accuracy"],
                    "macro_f1": scores["macro_f1"], "accuracy_uncompressed": reference["accuracy"],
                    "accuracy_change": scores["accuracy"] - reference["accuracy"]})
        rows.append(row)
        extra = {"density (kept fraction of update entries)": f"{density:g}", "quantization": config.quantize,
                 "compressed bytes": f"{row['compressed_bytes']:,} ({COMPACT_FILE})",
                 "uncompressed adapter bytes": f"{row['adapter_bytes']:,}", "size ratio": f"{row['size_ratio']:.3f}",
                 "test accuracy (compressed / uncompressed)": f"{row['accuracy']:.4f} / {reference['accuracy']:.4f}"}
        (folder / CARD).write_text(render_model_card(source, "compressed", True, source.info["model_path"],
                                                     str(final / row["folder"]), extra, head))
        write_json_atomic(folder / EXPORT_FILE, {"method": source.method, "kind": "compressed", "compression": row})
    return rows


def _write_export_file(folder: Path, source: RunSource, summary: dict, kind: str) -> None:
    write_json_atomic(folder / EXPORT_FILE, {
        **summary, "kind": kind, "study": str(source.study_dir),
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    })
