"""Diagnosis signals on constructed cases with known answers, the advisor's rules on fixed inputs, the
`diagnose` command and the compare hook on the tiny model."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import FIXED_RATES
from peftlab.advise import THRESHOLDS, advisor_check, recommend
from peftlab.diagnose.probe import linear_probe
from peftlab.tasks.reference import reference_texts
from peftlab.diagnose.shift import representation_shift
from peftlab.diagnose.spectrum import layer_type, matrix_spectrum, summarise_by_type, update_spectra
from peftlab.diagnose.vocabulary import vocabulary_fit

GEORGIAN = ["საქართველო ლამაზი ქვეყანაა და მისი დედაქალაქი თბილისია",
            "ეს ფილმი ძალიან კარგი იყო და ყველას მოეწონა"] * 5
RUSSIAN = ["Отличный товар, рекомендую всем покупателям этого магазина",
           "Фильм оказался скучным, а актёры играли плохо"] * 5


@pytest.fixture(scope="module")
def minilm_tokenizer():
    from peftlab.models import load_tokenizer, resolve_model

    return load_tokenizer(resolve_model("minilm"))


# --- vocabulary -------------------------------------------------------------------------------------------------

def test_reference_sample_is_varied_english():
    texts = reference_texts()
    assert len(texts) >= 200 and len(set(texts)) == len(texts)


def test_uncovered_script_scores_high_and_english_low(minilm_tokenizer):
    english = vocabulary_fit(reference_texts(), minilm_tokenizer)
    for foreign in (GEORGIAN, RUSSIAN):
        assert vocabulary_fit(foreign, minilm_tokenizer)["uncovered_char_rate"] > 0.5 > 0.02 > english["uncovered_char_rate"]
    # Cyrillic letters are in the English WordPiece vocabulary one by one: words fall apart into letters
    russian = vocabulary_fit(RUSSIAN, minilm_tokenizer)
    assert russian["fertility"] > 2.5 * english["fertility"]
    assert russian["split3_rate"] > 0.8 > 0.1 > english["split3_rate"]
    # Georgian letters are mostly not in it: many of its tokens are [UNK]
    assert vocabulary_fit(GEORGIAN, minilm_tokenizer)["unknown_rate"] > 0.2 > 0.01 > english["unknown_rate"]


# --- representation shift ---------------------------------------------------------------------------------------

def test_mmd_is_near_zero_for_one_distribution_and_large_for_two():
    rng = np.random.default_rng(0)
    same = representation_shift(rng.normal(size=(150, 16)), rng.normal(size=(150, 16)))
    moved = representation_shift(rng.normal(size=(150, 16)) + 3.0, rng.normal(size=(150, 16)))
    assert abs(same["representation_mmd"]) < 0.02
    assert moved["representation_mmd"] > 0.5
    assert moved["texts_each"] == 150


# --- knowledge present: linear probe ----------------------------------------------------------------------------

def test_probe_reaches_near_100_percent_when_the_label_is_linear_in_the_features():
    rng = np.random.default_rng(0)
    weights = rng.normal(size=32)
    features = rng.normal(size=(600, 32))
    labels = (features @ weights > 0).astype(int)
    probe = linear_probe(features[:400], labels[:400], features[400:], labels[400:])
    assert probe["accuracy"] >= 0.95
    assert 0.35 <= probe["majority_accuracy"] <= 0.65
    assert probe["headroom_reached"] > 0.85


def test_probe_stays_near_majority_when_the_label_is_noise():
    rng = np.random.default_rng(1)
    features, labels = rng.normal(size=(600, 32)), rng.integers(0, 2, 600)
    probe = linear_probe(features[:400], labels[:400], features[400:], labels[400:])
    assert probe["accuracy"] < 0.62


# --- low-rank structure -----------------------------------------------------------------------------------------

def test_planted_rank_2_update_has_effective_rank_2(load_tiny_bert):
    model = load_tiny_bert()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    generator = torch.Generator().manual_seed(0)
    target = "bert.encoder.layer.0.attention.self.query.weight"
    u, v = torch.randn(32, 2, generator=generator), torch.randn(32, 2, generator=generator)
    after = dict(before)
    after[target] = before[target] + u @ v.T
    spectra = update_spectra(before, after, skip_prefixes=("classifier.",))
    planted = spectra["bert.encoder.layer.0.attention.self.query"]
    assert planted["layer_type"] == "query"
    assert planted["effective_rank_90"] == 2
    assert planted["energy_at_rank"]["4"] == pytest.approx(1.0)
    assert spectra["bert.encoder.layer.1.attention.self.query"]["effective_rank_90"] == 0  # untouched
    assert not any(name.startswith("classifier") for name in spectra)
    summary = summarise_by_type(spectra)
    assert set(summary) == {"query", "key", "value", "attention_output", "ffn_in", "ffn_out", "embeddings"}


def test_full_rank_noise_needs_most_directions():
    spectrum = matrix_spectrum(torch.randn(64, 64, generator=torch.Generator().manual_seed(0)))
    assert spectrum["effective_rank_90"] > 32
    assert spectrum["energy_at_rank"]["4"] < 0.25


@pytest.mark.parametrize("name, kind", [
    ("bert.encoder.layer.3.attention.self.key", "key"),
    ("bert.encoder.layer.3.attention.output.dense", "attention_output"),
    ("bert.encoder.layer.3.intermediate.dense", "ffn_in"),
    ("bert.encoder.layer.3.output.dense", "ffn_out"),
    ("model.layers.7.self_attn.o_proj", "attention_output"),
    ("model.layers.7.mlp.gate_proj", "ffn_in"),
    ("model.layers.7.mlp.down_proj", "ffn_out"),
    ("model.embed_tokens", "embeddings"),
    ("bert.encoder.layer.3.attention.output.LayerNorm", None),
])
def test_layer_types_for_encoders_and_decoders(name, kind):
    assert layer_type(name) == kind


# --- the rules --------------------------------------------------------------------------------------------------

def _signals(uncovered=0.0, fertility=1.1, probe=0.8, majority=0.5, mmd=0.1, energy16=0.8, train=5000):
    energy = {"4": energy16 * 0.8, "8": energy16 * 0.9, "16": energy16, "64": min(1.0, energy16 * 1.2)}
    layer = {"effective_rank_90": 10, "energy_at_rank": energy, "relative_update_norm": 0.01}
    return {
        "vocabulary": {"fertility": fertility, "unknown_rate": 0.0, "split3_rate": 0.0, "uncovered_char_rate": uncovered,
                       "reference": {"fertility": 1.1, "unknown_rate": 0.0, "split3_rate": 0.0,
                                     "uncovered_char_rate": 0.0}},
        "shift": {"representation_mmd": mmd},
        "probe": {"accuracy": probe, "majority_accuracy": majority,
                  "headroom_reached": (probe - majority) / (1 - majority)},
        "spectrum": {kind: dict(layer) for kind in ("query", "key", "value", "attention_output", "ffn_in", "ffn_out")},
        "task_shape": {"examples": {"train": train}},
    }


def test_rules_recommend_peft_for_a_close_low_rank_task():
    recommendation = recommend(_signals())
    assert recommendation["decision"] == "peft" and recommendation["method"] == "lora"
    assert recommendation["rank"] == 4  # energy at rank 4 is 0.64 >= rank_energy
    assert recommendation["train_embeddings"] is False
    assert any(reason.startswith("knowledge:") and "0.800" in reason for reason in recommendation["reasons"])
    assert 0.5 <= recommendation["confidence"] <= 0.95


def test_rules_recommend_full_with_embeddings_for_a_foreign_script_the_model_does_not_know():
    recommendation = recommend(_signals(uncovered=0.7, fertility=5.0, probe=0.5, mmd=2.0, energy16=0.3))
    assert recommendation["decision"] == "full" and recommendation["rank"] is None
    assert recommendation["train_embeddings"] is True
    assert any("uncovered char rate 0.7" in reason for reason in recommendation["reasons"])
    assert recommendation["confidence"] > 0.8


def test_rules_follow_the_thresholds_they_document():
    near = _signals(probe=0.5 + 0.5 * (THRESHOLDS["probe_headroom_low"] - 0.01), energy16=0.3)
    assert recommend(near)["decision"] == "full"  # knowledge missing and high rank: 2 votes for full
    assert recommend(near, {"decision_margin": 10.0})["decision"] == "peft"


def test_advisor_check_compares_the_call_with_the_measured_gap():
    runs = [{"method": "full", "status": "ok", "metrics": {"accuracy": 0.80}},
            {"method": "lora", "status": "ok", "metrics": {"accuracy": 0.79}},
            {"method": "ia3", "status": "failed", "metrics": {}}]
    check = advisor_check({"decision": "peft"}, runs)
    assert check["best_peft_method"] == "lora" and check["gap_points"] == pytest.approx(1.0)
    assert check["within_tolerance"] and check["agrees"]
    assert advisor_check({"decision": "full"}, runs)["agrees"] is False
    assert advisor_check({"decision": "full"}, runs[1:])["status"] == "not_checked"


# --- the command and the compare hook on the tiny model ---------------------------------------------------------

def test_diagnose_writes_every_documented_key(tiny_bert_dir, tiny_task_csv, tmp_path):
    from peftlab.diagnose import DiagnoseConfig, DiagnoseSettings, diagnose

    out = tmp_path / "diag"
    diagnose(DiagnoseConfig(model=str(tiny_bert_dir), data=str(tiny_task_csv), batch_size=8, out=str(out),
                            settings=DiagnoseSettings(probe_steps=3)))
    diagnosis = json.loads((out / "diagnosis.json").read_text())
    for key in ("fertility", "unknown_rate", "split3_rate"):
        assert diagnosis["vocabulary"][key] > 0 or key != "fertility"
        assert key in diagnosis["vocabulary"]["reference"]
    assert "representation_mmd" in diagnosis["shift"]
    assert diagnosis["shift"]["lm_loss"] is None and "no masked-LM head" in diagnosis["shift"]["lm_note"]
    assert 0 <= diagnosis["probe"]["accuracy"] <= 1 and diagnosis["probe"]["majority_accuracy"] == pytest.approx(0.5)
    for entry in diagnosis["spectrum"].values():
        assert entry["effective_rank_90"] >= 1 and set(entry["energy_at_rank"]) == {"4", "8", "16", "64"}
    assert diagnosis["spectrum_source"] == {**diagnosis["spectrum_source"], "kind": "fft_probe", "steps": 3}
    recommendation = diagnosis["recommendation"]
    assert recommendation["decision"] in ("full", "peft") and recommendation["reasons"]
    assert {"method", "rank", "train_embeddings", "confidence"} <= set(recommendation)


def test_masked_lm_pseudo_loss_on_a_model_with_an_mlm_head(tmp_path, minilm_tokenizer):
    from transformers import BertForMaskedLM

    from conftest import tiny_bert_config
    from peftlab.diagnose.shift import lm_losses
    from peftlab.models import load_config, resolve_model

    torch.manual_seed(0)
    BertForMaskedLM(tiny_bert_config()).save_pretrained(tmp_path, safe_serialization=True)
    minilm_tokenizer.save_pretrained(tmp_path)
    ref = resolve_model(str(tmp_path))
    losses = lm_losses(ref, load_config(ref), minilm_tokenizer, ["the film was good"] * 2, ["a plain sentence"] * 2, 32)
    assert losses["lm_kind"] == "masked"
    # a random model spreads its guesses over the 30,522-word vocabulary: loss near log(30522) = 10.3
    assert 9.0 < losses["lm_loss"] < 11.5 and losses["pseudo_perplexity"] > 1000


def test_compare_runs_the_diagnosis_and_checks_the_advisor(tiny_bert_dir, tiny_task_csv, tmp_path):
    from peftlab import CompareConfig, compare

    out = tmp_path / "cmp"
    rates = tmp_path / "rates.yaml"  # rates at which both learn the tiny task in 60 steps
    rates.write_text("full: {learning_rate: 0.001}\nlora: {learning_rate: 0.005}\n")
    # on 12 test examples the verdict's interval spans 30-60 points: a 50-point tolerance lets it decide, which is
    # what checking the advisor against it needs here
    results = compare(CompareConfig(**FIXED_RATES, model=str(tiny_bert_dir), data=str(tiny_task_csv), methods=["full", "lora"],
                                    max_steps=60, batch_size=16, robustness=False, out=str(out),
                                    method_config=str(rates), tolerance=50.0))
    assert "diagnosis_failed" not in results, results.get("diagnosis_failed")
    assert results["verdict"]["conclusive"], (results["verdict"]["reasons"], [r["metrics"] for r in results["runs"]])
    assert results["diagnosis"] == "diagnosis.json" and results["advisor_check"]["status"] == "checked"
    assert results["advisor_check"]["against"] == "verdict"
    saved = json.loads((out / "results.json").read_text())
    assert saved["advisor_check"] == results["advisor_check"]
    assert saved["recommendation"]["decision"] in ("full", "peft")
    diagnosis = json.loads((out / "diagnosis.json").read_text())
    assert diagnosis["spectrum_source"]["kind"] == "compare_full_run"
    assert diagnosis["advisor_check"]["agrees"] == results["advisor_check"]["agrees"]
    assert diagnosis["advisor_check"]["gap_points"] == pytest.approx(
        100 * (results["runs"][0]["metrics"]["accuracy"] - results["runs"][1]["metrics"]["accuracy"]))


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    done = subprocess.run([sys.executable, "-m", "peftlab.cli", "diagnose", "--data", str(tmp_path / "missing.csv"),
                           "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error: no such file") and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_decoder_perplexity_on_a_tiny_causal_model(tmp_path, minilm_tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    from peftlab.diagnose.shift import lm_losses
    from peftlab.models import load_config, resolve_model

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=30522, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)
    LlamaForCausalLM(config).save_pretrained(tmp_path, safe_serialization=True)
    minilm_tokenizer.save_pretrained(tmp_path)
    ref = resolve_model(str(tmp_path))
    losses = lm_losses(ref, load_config(ref), minilm_tokenizer, ["the film was good"] * 2, ["a plain sentence"] * 2, 32)
    assert losses["lm_kind"] == "causal"
    assert 9.0 < losses["lm_loss"] < 11.5 and losses["perplexity"] == pytest.approx(np.exp(losses["lm_loss"]))


def test_compare_lines_say_skipped_or_failed():
    from rich.console import Console

    from peftlab.diagnose.summary import print_advisor_check

    console = Console(record=True, width=200)
    print_advisor_check({"diagnosis_skipped": "the diagnosis measures classification tasks, this is generation"}, console)
    print_advisor_check({"diagnosis_failed": "ValueError: boom"}, console)
    assert console.export_text().splitlines() == [
        "diagnosis skipped: the diagnosis measures classification tasks, this is generation",
        "diagnosis failed: ValueError: boom"]
