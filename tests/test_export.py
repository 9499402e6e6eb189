"""Export: every method's adapter reloads in a fresh process with identical logits (peft's own loaders for peft
formats, `peftlab.load_adapter` for ours), merged models equal their adapter models, compressed adapters have
the reported sizes and load, several LoRA adapters serve one mixed batch, and bad requests fail cleanly.

One tiny-BERT study of every method (3 steps each) serves all tests; a second one-method study gives a second,
independently trained LoRA adapter for the serving test.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification

from conftest import FIXED_RATES
from peftlab.errors import PeftlabError
from peftlab.export import ExportConfig, export, load_adapter, mixed_batch_check
from peftlab.export.compress import COMPACT_FILE, compress, decompress, load_compact
from peftlab.export.staging import EXPORT_FILE
from peftlab.methods import PEFTLAB_METHODS
from peftlab.files import RUN_FILE
from peftlab.study.artifacts import load_run
from peftlab import CompareConfig, compare

ALL_METHODS = list(PEFTLAB_METHODS)  # peftlab's nine; the generated peft tuners: tests/test_peft_tuners.py
PEFT_FORMAT = ["lora", "dora", "ia3", "prompt", "prefix"]
OWN_FORMAT = ["adapter", "head", "bitfit"]
MERGEABLE = ["lora", "dora", "ia3", "bitfit", "full", "head"]
NOT_MERGEABLE = ["prompt", "prefix", "adapter"]
DENSITIES = [0.1, 0.3, 1.0]
TEXTS = ["the movie was great and wonderful", "awful boring plot", "it was the film", "superb actors but sad story",
         "terrible", "a really lovely and amazing story, quite happy"]


def budget(tiny_bert_dir, tiny_task_csv, out, methods, seed=0) -> CompareConfig:
    return CompareConfig(**FIXED_RATES, model=str(tiny_bert_dir), data=str(tiny_task_csv), methods=methods, max_steps=3,
                         batch_size=16, seed=seed, out=str(out), robustness=False)


@pytest.fixture(scope="module")
def study(tiny_bert_dir, tiny_task_csv, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export-study")
    results = compare(budget(tiny_bert_dir, tiny_task_csv, out, ALL_METHODS))
    assert [r["status"] for r in results["runs"]] == ["ok"] * len(ALL_METHODS), [r.get("reason") for r in results["runs"]]
    return out


@pytest.fixture(scope="module")
def exports(study, tmp_path_factory) -> dict[str, dict]:
    """Every method exported: adapter (all but full), merged (the mergeable ones); lora also compressed."""
    root = tmp_path_factory.mktemp("exports")
    summaries = {}
    for name in ALL_METHODS:
        summaries[name] = export(ExportConfig(
            run_dir=str(study), method=name,
            adapter=str(root / name / "adapter") if name != "full" else None,
            merged=str(root / name / "merged") if name in MERGEABLE else None,
            compress=DENSITIES if name == "lora" else [],
        ))
    return summaries


def batch_of(folder):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    return dict(tokenizer(TEXTS, padding=True, return_tensors="pt"))


@torch.no_grad()
def logits_of(model, batch) -> torch.Tensor:
    model.eval()
    return model(**batch).logits


def reference_logits(study: Path, name: str, batch) -> torch.Tensor:
    model, _, _ = load_run(study / "runs" / name)
    return logits_of(model, batch)


# --- round trip in a fresh process ------------------------------------------------------------------------------

FRESH_PROCESS = r"""
import json, sys
import torch
torch.set_num_threads(1)
from peft import AutoPeftModelForSequenceClassification
from transformers import AutoModelForSequenceClassification
import peftlab

jobs, batch = json.loads(sys.argv[1]), {k: torch.tensor(v) for k, v in json.loads(sys.argv[2]).items()}
loaders = {"auto_peft": AutoPeftModelForSequenceClassification.from_pretrained, "peftlab": peftlab.load_adapter,
           "transformers": AutoModelForSequenceClassification.from_pretrained}
out = {}
for key, (loader, folder) in jobs.items():
    model = loaders[loader](folder).eval()
    with torch.no_grad():
        out[key] = model(**batch).logits.tolist()
print(json.dumps(out))
"""


def test_every_export_loads_in_a_fresh_process_with_the_same_logits(study, exports, tmp_path):
    batch = batch_of(study / "runs" / "lora")
    jobs = {}
    for name, summary in exports.items():
        if "adapter" in summary:
            jobs[f"{name}/adapter"] = ("auto_peft" if name in PEFT_FORMAT else "peftlab", summary["adapter"]["path"])
        if "merged" in summary:
            jobs[f"{name}/merged"] = ("transformers", summary["merged"]["path"])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    completed = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, json.dumps(jobs), json.dumps({k: v.tolist() for k, v in batch.items()})],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    loaded = {key: torch.tensor(value) for key, value in json.loads(completed.stdout.strip().splitlines()[-1]).items()}

    assert set(loaded) == {f"{m}/adapter" for m in ALL_METHODS if m != "full"} | {f"{m}/merged" for m in MERGEABLE}
    for name in ALL_METHODS:
        expected = reference_logits(study, name, batch)
        if f"{name}/adapter" in loaded:  # the same computation: identical up to float noise
            torch.testing.assert_close(loaded[f"{name}/adapter"], expected, rtol=0, atol=1e-6, msg=name)
        if f"{name}/merged" in loaded:
            torch.testing.assert_close(loaded[f"{name}/merged"], expected, rtol=0, atol=1e-4, msg=name)


def test_peft_adapters_point_at_the_base_and_carry_the_head_and_the_study_numbers(study, exports):
    results = json.loads((study / "results.json").read_text())
    records = {r["method"]: r for r in results["runs"]}
    for name in PEFT_FORMAT:
        folder = Path(exports[name]["adapter"]["path"])
        config = json.loads((folder / "adapter_config.json").read_text())
        assert config["base_model_name_or_path"] == results["study"]["model_path"]
        assert "classifier" in config["modules_to_save"]
        weights = load_file(str(folder / "adapter_model.safetensors"))
        assert any(".classifier." in key for key in weights), name
        assert exports[name]["adapter"]["files"] == ["adapter_config.json", "adapter_model.safetensors"]
        assert exports[name]["adapter"]["bytes"] == sum((folder / f).stat().st_size for f in exports[name]["adapter"]["files"])
        assert exports[name]["adapter"]["peft_format"]
        assert (folder / "tokenizer_config.json").is_file() and (folder / RUN_FILE).is_file()
        card = (folder / "README.md").read_text()
        assert f"base_model: {results['study']['model_path']}" in card
        assert f"| accuracy | {records[name]['metrics']['accuracy']:.4f} |" in card
        assert "vs full fine-tuning" in card
    for name in OWN_FORMAT:
        assert not exports[name]["adapter"]["peft_format"]
        assert "peftlab.load_adapter" in (Path(exports[name]["adapter"]["path"]) / "README.md").read_text()


def test_an_alias_base_is_written_as_the_local_folder_it_was_loaded_from(study, tmp_path):
    # peft writes what transformers reports as the model's name; whatever it wrote, the export re-points it
    copy = tmp_path / "study"
    shutil.copytree(study, copy)
    config_path = copy / "runs" / "lora" / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = "minilm"
    config_path.write_text(json.dumps(config))
    export(ExportConfig(run_dir=str(copy), method="lora", adapter=str(tmp_path / "out")))
    written = json.loads((tmp_path / "out" / "adapter_config.json").read_text())
    assert written["base_model_name_or_path"] == json.loads((copy / "results.json").read_text())["study"]["model_path"]
    assert Path(written["base_model_name_or_path"]).is_dir()


# --- merged ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", MERGEABLE)
def test_merged_model_equals_the_adapter_model(name, study, exports):
    folder = Path(exports[name]["merged"]["path"])
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
    assert not (folder / "adapter_config.json").exists()
    assert exports[name]["merged"]["max_abs_logit_difference"] <= 1e-4
    batch = batch_of(folder)
    merged = AutoModelForSequenceClassification.from_pretrained(folder)
    assert merged.config.id2label == {0: "neg", 1: "pos"}
    torch.testing.assert_close(logits_of(merged, batch), reference_logits(study, name, batch), rtol=0, atol=1e-4)


@pytest.mark.parametrize("name", NOT_MERGEABLE)
def test_methods_that_add_tokens_or_layers_cannot_be_merged(name, study, tmp_path):
    with pytest.raises(PeftlabError, match=f"method '{name}' cannot be merged into the base weights: .*(token|layer)"):
        export(ExportConfig(run_dir=str(study), method=name, merged=str(tmp_path / "merged"), adapter=str(tmp_path / "a")))
    assert list(tmp_path.iterdir()) == []  # nothing written, not even the adapter


def test_the_cli_refuses_bad_requests_in_one_line_with_exit_code_2(study, tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "peftlab.cli", "export", str(study), "--method", "prompt", "--merged", str(tmp_path / "m")],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=120,
    )
    assert completed.returncode == 2, completed.stderr
    assert completed.stderr.startswith("error: method 'prompt' cannot be merged")
    assert len(completed.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "m").exists()


def test_bad_requests_fail_before_writing_anything(study, tmp_path):
    out = tmp_path / "out"
    failed_study = tmp_path / "failed"
    shutil.copytree(study, failed_study)
    results = json.loads((failed_study / "results.json").read_text())
    results["runs"][3].update(status="failed", reason="ValueError: loss is NaN")
    (failed_study / "results.json").write_text(json.dumps(results))
    not_an_export = tmp_path / "occupied"
    not_an_export.mkdir()
    (not_an_export / "notes.txt").write_text("mine")

    cases = [
        (dict(run_dir=str(tmp_path / "nowhere"), method="lora", adapter=str(out)), "no such study folder"),
        (dict(run_dir=str(tmp_path), method="lora", adapter=str(out)), "has no results.json"),
        (dict(run_dir=str(study), method="lora"), "nothing to export"),
        (dict(run_dir=str(study), method="nope", adapter=str(out)), "unknown method"),
        (dict(run_dir=str(failed_study), method="lora", adapter=str(out)), "failed in the study.*loss is NaN"),
        (dict(run_dir=str(study), method="full", adapter=str(out)), "no adapter to export.*--merged"),
        (dict(run_dir=str(study), method="prompt", adapter=str(out), compress=[0.1]), "cannot be compressed"),
        (dict(run_dir=str(study), method="lora", merged=str(out), compress=[0.1]), "pass --adapter OUT too"),
        (dict(run_dir=str(study), method="lora", adapter=str(out), compress=[0]), "densities in \\(0, 1\\]"),
        (dict(run_dir=str(study), method="lora", adapter=str(out), compress=["x"]), "densities in \\(0, 1\\]"),
        (dict(run_dir=str(study), method="lora", adapter=str(out), quantize="int4"), "--quantize"),
        (dict(run_dir=str(study), method="lora", adapter=str(not_an_export)), "not an earlier peftlab export"),
    ]
    for kwargs, message in cases:
        with pytest.raises(PeftlabError, match=message):
            export(ExportConfig(**kwargs))
    assert not out.exists()
    assert [p.name for p in not_an_export.iterdir()] == ["notes.txt"]
    # the study's run of lora is unchanged, and an exported folder may be exported over again
    export(ExportConfig(run_dir=str(study), method="lora", adapter=str(out)))
    export(ExportConfig(run_dir=str(study / "runs" / "lora"), method="lora", adapter=str(out)))
    assert (out / EXPORT_FILE).is_file() and not any(p.name.startswith(".") for p in tmp_path.iterdir())


# --- compression -------------------------------------------------------------------------------------------------

def test_compression_writes_the_reported_sizes_and_loads_at_every_density(study, exports):
    adapter = Path(exports["lora"]["adapter"]["path"])
    original = load_file(str(adapter / "adapter_model.safetensors"))
    updates = {k: v for k, v in original.items() if ".lora_A." in k or ".lora_B." in k}
    rows = exports["lora"]["compression"]
    assert [row["density"] for row in rows] == DENSITIES
    recorded = {r["method"]: r for r in json.loads((study / "results.json").read_text())["runs"]}["lora"]
    assert all(row["accuracy_uncompressed"] == recorded["metrics"]["accuracy"] for row in rows)  # same test split
    batch = batch_of(adapter)
    uncompressed = logits_of(load_adapter(adapter), batch)
    payloads = []
    for row in rows:
        folder = adapter / row["folder"]
        compact = folder / COMPACT_FILE
        assert row["compressed_bytes"] == compact.stat().st_size
        assert row["adapter_bytes"] == (adapter / "adapter_model.safetensors").stat().st_size
        assert row["size_ratio"] == pytest.approx(row["compressed_bytes"] / row["adapter_bytes"])
        kept = {k: min(v.numel(), max(1, round(row["density"] * v.numel()))) for k, v in updates.items()}
        assert row["kept_entries"] == sum(kept.values())
        # the payload is exactly: per update tensor a bit mask (unless all kept), int8 values, a float32 scale;
        # the other tensors (the head) as they were
        with safe_open(str(compact), framework="pt") as handle:
            payload = sum(handle.get_tensor(k).numel() * handle.get_tensor(k).element_size() for k in handle.keys())
        expected = sum((math.ceil(v.numel() / 8) if kept[k] < v.numel() else 0) + kept[k] + 4 for k, v in updates.items())
        expected += sum(v.numel() * v.element_size() for k, v in original.items() if k not in updates)
        assert payload == expected
        # what loads is exactly what the compact file encodes; the head is untouched; the rest is sparse
        dense = load_file(str(folder / "adapter_model.safetensors"))
        encoded = load_compact(compact)
        assert dense.keys() == original.keys() and all(torch.equal(dense[k], encoded[k]) for k in dense)
        assert all(torch.equal(dense[k], original[k]) for k in original if k not in updates)
        assert sum(int((dense[k] != 0).sum()) for k in updates) <= row["kept_entries"]
        loaded = AutoPeftModelForSequenceClassificationLoader(folder)
        assert 0 <= row["accuracy"] <= 1 and row["accuracy_change"] == pytest.approx(
            row["accuracy"] - row["accuracy_uncompressed"])
        if row["density"] == 1.0:  # int8 only: close to the original
            torch.testing.assert_close(logits_of(loaded, batch), uncompressed, rtol=0, atol=1e-2)
        payloads.append(payload)
    ratios = [row["size_ratio"] for row in rows]
    assert ratios == sorted(ratios) and ratios[-1] < 1
    # on this tiny model the safetensors headers (names, shapes, offsets) weigh as much as the numbers; the
    # numbers alone: int8 of fp32 is a quarter, plus the fp32 head and the scales
    assert payloads[-1] / sum(v.numel() * v.element_size() for v in original.values()) < 0.3


def AutoPeftModelForSequenceClassificationLoader(folder):
    from peft import AutoPeftModelForSequenceClassification

    return AutoPeftModelForSequenceClassification.from_pretrained(folder)


def test_compress_keeps_the_largest_update_entries_and_quantizes_them():
    torch.manual_seed(0)
    tensors = {"m.layer.lora_A.weight": torch.randn(4, 16), "m.layer.ia3_l": 1 + 0.1 * torch.randn(8),
               "m.classifier.weight": torch.randn(2, 4)}
    starts = {"lora_A": 0.0, "ia3_l": 1.0}
    for quantize in ("int8", "sign"):
        compact, metadata = compress(tensors, starts, 0.25, quantize)
        dense = decompress(compact, metadata)
        assert torch.equal(dense["m.classifier.weight"], tensors["m.classifier.weight"])
        for name, start in (("m.layer.lora_A.weight", 0.0), ("m.layer.ia3_l", 1.0)):
            delta, approx = tensors[name] - start, dense[name] - start
            kept = approx != 0
            assert int(kept.sum()) == round(0.25 * delta.numel())
            assert delta.abs()[kept].min() >= delta.abs()[~kept].max()  # top-k by magnitude
            assert torch.equal(torch.sign(approx[kept]), torch.sign(delta[kept]))
            if quantize == "sign":  # one magnitude: the mean of the kept ones
                assert torch.allclose(approx[kept].abs(), delta.abs()[kept].mean().expand(int(kept.sum())))
            else:
                assert (approx[kept] - delta[kept]).abs().max() <= delta.abs().max() / 254 + 1e-7
        # one mask bit per update entry; per kept entry one byte (int8) or one bit (sign); one scale per tensor
        kept_counts = [round(0.25 * 64), round(0.25 * 8)]
        assert compact["updates.masks"].numel() == 64 // 8 + 8 // 8
        assert compact["updates.values"].numel() == (sum(kept_counts) if quantize == "int8"
                                                     else sum(math.ceil(k / 8) for k in kept_counts))
        assert compact["updates.scales"].numel() == 2


# --- serving -----------------------------------------------------------------------------------------------------

def test_several_lora_adapters_serve_one_mixed_batch(study, exports, tiny_bert_dir, tiny_task_csv, tmp_path):
    second_study = tmp_path / "seed1"
    compare(budget(tiny_bert_dir, tiny_task_csv, second_study, ["lora"], seed=1))
    export(ExportConfig(run_dir=str(second_study), method="lora", adapter=str(tmp_path / "lora-seed1")))
    first = Path(exports["lora"]["adapter"]["path"])
    adapters = [first, tmp_path / "lora-seed1", first / "compressed" / "density-0.3"]
    texts = TEXTS * 2
    check = mixed_batch_check(adapters, texts)
    assert check["adapter_names"] == ["adapter0", "adapter1", "adapter2"] * 4
    assert check["max_abs_difference"] <= 1e-5
    # each row equals that adapter loaded alone on its own base
    from transformers import AutoTokenizer

    batch = dict(AutoTokenizer.from_pretrained(first)(texts, padding=True, return_tensors="pt"))
    alone = [logits_of(load_adapter(folder), batch) for folder in adapters]
    for row, name in enumerate(check["adapter_names"]):
        torch.testing.assert_close(check["logits"][row], alone[int(name[-1])][row], rtol=0, atol=1e-5)
    assert (alone[0] - alone[1]).abs().max() > 1e-4  # the adapters really differ


def test_mixed_batches_refuse_adapters_peft_cannot_mix(exports):
    with pytest.raises(PeftlabError, match="plain LoRA"):
        mixed_batch_check([exports["lora"]["adapter"]["path"], exports["dora"]["adapter"]["path"]], TEXTS)
