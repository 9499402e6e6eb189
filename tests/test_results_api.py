"""The notebook API: `compare` returns a Results object, `load_study` reads a study folder back (finished or
running); its DataFrame equals results.json, every chart kind draws, the verdict and the HTML display hold the
numbers, and a run loads back from its artifact."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from matplotlib.figure import Figure
from report_data import diagnosis_json, results_json

from peftlab import CompareConfig, Results, compare, load_study
from peftlab.errors import ConfigError, PeftlabError
from peftlab.files import RESULTS_FILE, STORE_FILE, STUDY_CONFIG_FILE, write_results
from peftlab.options import config_from_sources
from peftlab.report.results import PLOT_ALIASES, PLOT_KINDS
from peftlab.report.tables import COST_TITLES
from peftlab.study.store import StudyStore
from conftest import FIXED_RATES


def _study_folder(tmp_path, diagnosis: bool = True):
    results = results_json()
    write_results(tmp_path, results)
    if diagnosis:
        (tmp_path / "diagnosis.json").write_text(json.dumps(diagnosis_json()))
    return results


def test_table_has_the_terminal_columns_and_the_values_of_results_json(tmp_path):
    results = _study_folder(tmp_path)
    loaded = load_study(tmp_path)
    assert isinstance(loaded, Results) and isinstance(loaded, dict) and loaded.to_dict() == results
    frame = loaded.table()
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == ["method", "seed", "status", "accuracy", "macro_f1", *COST_TITLES]
    assert list(frame.index) == [run["method"] for run in results["runs"]]
    for run, (_, row) in zip(results["runs"], frame.iterrows()):
        assert row["status"] == run["status"]
        if run["status"] != "ok":
            assert pd.isna(row["accuracy"]) and pd.isna(row["trainable_params"])
            continue
        for key in ("accuracy", "macro_f1"):
            assert row[key] == run["metrics"][key]
        for key in COST_TITLES:
            assert row[key] == run["cost"][key]
    raw = loaded.table(raw=True)
    assert {"reason", "test_loss", "total_params", "train_steps"} <= set(raw.columns)
    assert loaded.table("robustness").loc["lora", "robust_drop_points"] == results["runs"][1]["robustness"]["drop_points"]
    with pytest.raises(ConfigError, match="no table 'nope'"):
        loaded.table("nope")


def test_every_plot_kind_is_a_figure(tmp_path):
    _study_folder(tmp_path)
    loaded = load_study(tmp_path)
    for kind in (*PLOT_KINDS, *PLOT_ALIASES):
        if kind in ("train_sizes", "rank"):  # a --train-sizes study's chart, the rank chart of variants
            # (tests/test_train_sizes.py and tests/test_variants.py draw them)
            with pytest.raises(PeftlabError, match="nothing to draw"):
                loaded.plot(kind)
            continue
        assert isinstance(loaded.plot(kind), Figure), kind
    with pytest.raises(ConfigError, match="no chart 'pie'"):
        loaded.plot("pie")
    without = load_study(_empty_diagnosis(tmp_path / "b"))
    with pytest.raises(PeftlabError, match="nothing to draw"):
        without.plot("spectrum")


def _empty_diagnosis(folder):
    folder.mkdir()
    write_results(folder, results_json())
    return folder


def test_verdict_runs_and_display(tmp_path):
    results = _study_folder(tmp_path)
    loaded = load_study(tmp_path)
    verdict = loaded.verdict
    full, lora = results["runs"][0]["metrics"]["accuracy"], results["runs"][1]["metrics"]["accuracy"]
    best = max((run for run in results["runs"][1:] if run["status"] == "ok"), key=lambda r: r["metrics"]["accuracy"])
    assert verdict["best_peft"] == best["method"] and verdict["reference_score"] == full
    assert verdict["gap_points"] == pytest.approx(100 * (best["metrics"]["accuracy"] - full))
    assert verdict["recommendation"] and verdict["reasons"] == diagnosis_json()["recommendation"]["reasons"]
    assert loaded.runs["lora"].metrics["accuracy"] == lora and loaded.runs[1].method == "lora"
    assert loaded.runs["ia3"].status == "failed" and "failed" in repr(loaded.runs["ia3"])
    assert str(loaded.runs["lora"].artifact) == str(tmp_path / "runs" / "lora")
    with pytest.raises(KeyError, match="the runs are full, lora"):
        loaded.runs["dora"]
    with pytest.raises(PeftlabError, match="has no saved model"):
        loaded.runs["ia3"].load()
    page = loaded._repr_html_()
    assert "<table" in page and verdict["headline"].split(",")[0] in page and "Recommendation" in page
    assert "4 runs" not in repr(loaded) and "3 ok, 1 failed" in repr(loaded)


def test_load_study_of_a_running_study(tmp_path):
    """Before the first run finishes there is no results.json: the store's header and the run in progress."""
    header = results_json()["study"]
    store = StudyStore(tmp_path / STORE_FILE)
    store.put("header", header)
    store.start("full/s0", "run", "full", 0, None)
    running = load_study(tmp_path)
    assert running["runs"] == [] and running["study"] == header
    assert [run["method"] for run in running.in_progress] == ["full"] and "1 running" in repr(running)
    assert "nothing to compare" in running.verdict["headline"]
    with pytest.raises(PeftlabError, match="is not a study folder"):
        load_study(tmp_path / "missing")


def test_compare_returns_results_whose_run_loads_back(tmp_path, tiny_bert_dir, tiny_task_csv):
    out = tmp_path / "out"
    config = CompareConfig(**FIXED_RATES, model=str(tiny_bert_dir), data=str(tiny_task_csv), methods=["full", "lora"], max_steps=2,
                           batch_size=8, out=str(out), robustness=False, diagnose=False)
    results = compare(config)
    assert isinstance(results, Results) and results.folder == out
    # OUT/study.yaml is the effective configuration: `peftlab compare --config OUT/study.yaml` is this study again
    assert config_from_sources(CompareConfig, out / STUDY_CONFIG_FILE, {}) == config
    assert results["study"]["config"] == config.describe()
    assert results.to_dict() == json.loads((out / RESULTS_FILE).read_text())
    assert list(load_study(out).table()["accuracy"]) == [run["metrics"]["accuracy"] for run in results["runs"]]
    model, tokenizer, info = results.runs["lora"].load()
    assert info["method"] == "lora" and tokenizer is not None and not model.training
    assert isinstance(results.plot("pareto"), Figure) and isinstance(results.plot("curves"), Figure)
