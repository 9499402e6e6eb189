"""Method variants (``lora[r=1]``) and ``--sweep``: the syntax, a study of variants stored and resumed, their
folders and export, and the rank chart."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from peftlab import CompareConfig, compare
from peftlab.errors import ConfigError, MethodError
from peftlab.export import ExportConfig, export
from peftlab.methods import get_method, parse_methods, read_method_config, split_variant, sweep_variants
from peftlab.options import split_list
from peftlab.report.charts import draw_chart, rank_series, spectrum_rank
from peftlab.report.write import write_report
from peftlab.study.store import StudyStore
from conftest import FIXED_RATES


def test_variant_syntax():
    assert split_list("lora, lora[r=64,target_modules=query+value],ia3") == \
        ["lora", "lora[r=64,target_modules=query+value]", "ia3"]
    assert parse_methods("lora,lora[ r=1 ],dora[r=4,use_rslora=true],lora[r=1]") == \
        ["lora", "lora[r=1]", "dora[r=4,use_rslora=true]"]  # spaces dropped, duplicates once
    assert split_variant("lora[r=64,target_modules=query+value,lora_dropout=0.1,lora_alpha=null]") == \
        ("lora", {"r": 64, "target_modules": ["query", "value"], "lora_dropout": 0.1, "lora_alpha": None})
    assert split_variant("lora") == ("lora", {})
    assert get_method("lora[r=1]") is get_method("lora")
    assert sweep_variants("lora.r=1,4,16") == ["lora[r=1]", "lora[r=4]", "lora[r=16]"]
    for bad in ("lora[r]", "lora[]", "lora[r=1", "nosuch[r=1]"):
        with pytest.raises(MethodError):
            parse_methods(bad)
    for bad in ("lora", "lora.r", "lora.r=", "nosuch.r=1"):
        with pytest.raises(MethodError):
            sweep_variants(bad)


def test_variant_settings_layer_over_the_method_config(tmp_path):
    path = tmp_path / "methods.yaml"
    path.write_text("lora: {lora_alpha: 32, learning_rate: 1.0e-3}\n'lora[r=2]': {lora_dropout: 0.2}\n")
    overrides = read_method_config(path, ["lora", "lora[r=2]", "lora[r=4]"])
    assert overrides["lora"] == {"lora_alpha": 32, "learning_rate": 1e-3}
    assert overrides["lora[r=2]"] == {"lora_alpha": 32, "learning_rate": 1e-3, "r": 2, "lora_dropout": 0.2}
    assert overrides["lora[r=4]"] == {"lora_alpha": 32, "learning_rate": 1e-3, "r": 4}
    with pytest.raises(MethodError, match=r"lora\[rank=2\].*no setting 'rank'"):
        read_method_config(None, ["lora[rank=2]"])
    with pytest.raises(MethodError, match="'r' must be at least 1"):
        read_method_config(None, ["lora[r=0]"])


def test_a_study_of_variants_is_stored_resumed_exported_and_charted(tmp_path, tiny_bert_dir, tiny_task_csv):
    config = CompareConfig(**FIXED_RATES, model=str(tiny_bert_dir), data=str(tiny_task_csv), methods=["full", "lora[r=2]"],
                           sweep="lora.r=1,4", max_steps=3, batch_size=16, out=str(tmp_path / "out"),
                           robustness=False, diagnose=False)
    results = compare(config)
    runs = {run["method"]: run for run in results["runs"]}
    assert list(runs) == ["full", "lora[r=2]", "lora[r=1]", "lora[r=4]"]
    assert all(run["status"] == "ok" for run in runs.values()), [run.get("reason") for run in runs.values()]
    assert [runs[f"lora[r={r}]"]["config"]["r"] for r in (1, 2, 4)] == [1, 2, 4]
    params = [runs[f"lora[r={r}]"]["cost"]["trainable_params"] for r in (1, 2, 4)]
    assert params[0] < params[1] < params[2]
    assert runs["lora[r=4]"]["artifact"] == "runs/lora-r=4"
    adapter = json.loads((tmp_path / "out" / "runs" / "lora-r=4" / "adapter_config.json").read_text())
    assert adapter["r"] == 4

    finished = {row["run_key"]: row["finished_at"] for row in StudyStore(tmp_path / "out" / "study.sqlite").runs()}
    assert len(finished) == 4 and "run/lora[r=4]/seed=0/lr=default" in finished
    again = compare(config)  # resumed: every variant is found in the store, nothing trains again
    assert [run["method"] for run in again["runs"]] == list(runs)
    assert {row["run_key"]: row["finished_at"] for row in StudyStore(tmp_path / "out" / "study.sqlite").runs()} \
        == finished

    # a variant added later (here a learning-rate variant, and lora[r=4] dropped) extends the same study: only it trains
    grown = compare(dataclasses.replace(config, methods=["full", "lora[r=2]", "lora[r=2,learning_rate=0.01]"],
                                        sweep="lora.r=1"))
    assert [run["method"] for run in grown["runs"]] == ["full", "lora[r=2]", "lora[r=2,learning_rate=0.01]",
                                                        "lora[r=1]"]
    rows = {row["run_key"]: row["finished_at"] for row in StudyStore(tmp_path / "out" / "study.sqlite").runs()}
    assert {key: rows[key] for key in finished} == finished and len(rows) == 5
    # a plain method's settings are part of the study: changing them is refused, as before
    (tmp_path / "lora.yaml").write_text("lora: {lora_alpha: 8}\n")
    with pytest.raises(ConfigError, match="differs in method_overrides"):
        compare(dataclasses.replace(config, methods=["full", "lora"], sweep=None,
                                    method_config=str(tmp_path / "lora.yaml")))
    compare(config)  # the original command still resumes, adding nothing
    assert len(StudyStore(tmp_path / "out" / "study.sqlite").runs()) == 5

    exported = export(ExportConfig(run_dir=str(tmp_path / "out"), method="lora[r=1]", adapter=str(tmp_path / "ad")))
    assert json.loads((tmp_path / "ad" / "adapter_config.json").read_text())["r"] == 1, exported

    series = rank_series(results)
    assert [rank for rank, _, _ in series["lora"]] == [1, 2, 4]
    assert draw_chart(results, "rank") is not None
    diagnosis = {"spectrum": {"query": {"effective_rank_90": 3}, "value": {"effective_rank_90": 5}}}
    assert spectrum_rank(diagnosis) == 4.0
    assert draw_chart(results, "rank", diagnosis) is not None
    html = write_report(tmp_path / "out", "html").read_text()
    assert 'data-chart="rank"' in html and "lora[r=4]" in html


def test_the_rank_chart_needs_two_ranks(tmp_path):
    one = {"study": {"task": {"type": "classification"}}, "runs": [
        {"method": "lora", "status": "ok", "config": {"r": 8}, "metrics": {"accuracy": 0.8},
         "cost": {"trainable_params": 10}}]}
    assert rank_series(one) == {} and draw_chart(one, "rank") is None


def test_a_bad_variant_on_the_command_line_is_one_line(tmp_path, tiny_bert_dir, tiny_task_csv):
    for methods, sweep, expected in (("lora[rank=2]", None, "no setting 'rank'"), ("lora", "lora.r=", "--sweep")):
        command = [sys.executable, "-m", "peftlab.cli", "compare", "--model", str(tiny_bert_dir), "--data",
                   str(tiny_task_csv), "--methods", methods, "--out", str(tmp_path / "out")]
        done = subprocess.run(command + (["--sweep", sweep] if sweep else []), capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 2 and expected in done.stderr and "Traceback" not in done.stderr, done.stderr
