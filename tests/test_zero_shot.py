"""The zero-shot method: nothing trains, the base is evaluated as it is (classification: similarity to each label's
embedding), and it is the floor of the verdict and the tables."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from transformers import T5Config, T5ForSequenceClassification

from peftlab import CompareConfig, compare
from peftlab.evaluate.kinds import kind_evaluation
from peftlab.methods import get_method, trains
from peftlab.methods.zero_shot import ZeroShotClassifier, label_texts
from peftlab.models import load_classifier, resolve_model
from peftlab.report.write import write_report
from peftlab.study.artifacts import load_run
from peftlab.study.inputs import run_context

from conftest import FIXED_RATES, TINY_LABELS


def _study(tmp_path, model, data, methods, **options):
    return CompareConfig(model=str(model), data=str(data), methods=methods, max_steps=4, batch_size=8,
                         out=str(tmp_path / "out"), diagnose=False, **{"robustness": False, **FIXED_RATES, **options})


def test_zero_shot_classification_is_similarity_to_the_label_texts(tmp_path, tiny_bert_dir, tiny_task_csv):
    descriptions = tmp_path / "labels.yaml"
    descriptions.write_text("pos: great wonderful superb\nneg: awful horrible dreadful\n")
    results = compare(_study(tmp_path, tiny_bert_dir, tiny_task_csv, ["zero-shot", "full"],
                             label_descriptions=str(descriptions), robustness=True, perturb_examples=8,
                             attack_examples=4))
    runs = {run["method"]: run for run in results["runs"]}
    zero = runs["zero-shot"]
    assert zero["status"] == "ok" and runs["full"]["status"] == "ok"
    assert zero["cost"]["train_steps"] == 0 and zero["cost"]["trainable_params"] == 0
    assert zero["cost"]["budget_used"] is None and zero["curve"]["train_loss"] == []
    assert zero["config"]["label_descriptions"] == {"pos": "great wonderful superb", "neg": "awful horrible dreadful"}
    assert zero["robustness"]["status"] == "ok" and zero["latency"]["status"] == "ok"
    assert zero["forgetting"]["cka"] == pytest.approx(1.0, abs=1e-5)  # the base itself

    # the same accuracy from the base's mean-pooled embeddings, computed here independently
    context = run_context(_study(tmp_path, tiny_bert_dir, tiny_task_csv, ["zero-shot"]))
    base = load_classifier(resolve_model(str(tiny_bert_dir)), TINY_LABELS).eval()
    tokenizer, test = context.study.tokenizer, context.study.task.splits["test"]

    def embed(texts):
        batch = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
        with torch.no_grad():
            hidden = base.base_model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        return F.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)

    labels = embed(label_texts(context.study.task.label_names, zero["config"]["label_descriptions"]))
    predicted = (embed(list(test["text"])) @ labels.T).argmax(-1)
    assert zero["metrics"]["accuracy"] == pytest.approx(float((predicted == torch.tensor(test["label"])).float().mean()))

    verdict = results["verdict"]
    assert "zero-shot" not in verdict["methods"] and verdict["reference"] == "full"
    assert verdict["floor"]["method"] == "zero-shot"
    assert verdict["floor"]["value"] == pytest.approx(zero["metrics"]["accuracy"])
    report = write_report(tmp_path / "out", "md").read_text()
    assert report.count("zero-shot") >= 2 and "no training" in report  # its row, and the floor in the verdict

    # the saved run reloads to the same predictions (its label embeddings in safetensors)
    reloaded, _, _ = load_run(tmp_path / "out" / zero["artifact"])
    assert isinstance(reloaded, ZeroShotClassifier)
    again = kind_evaluation("classification").evaluate(reloaded, context.encoded["test"], tokenizer, 16, "cpu", 2)
    assert again["accuracy"] == pytest.approx(zero["metrics"]["accuracy"])


def test_zero_shot_on_a_decoder_scores_the_untrained_model(tmp_path, tiny_llama_dir, colour_bigbench):
    results = compare(_study(tmp_path, tiny_llama_dir, colour_bigbench, ["zero-shot"], task="multiple-choice"))
    run = results["runs"][0]
    assert run["status"] == "ok" and run["cost"]["train_steps"] == 0
    context = run_context(_study(tmp_path, tiny_llama_dir, colour_bigbench, ["zero-shot"], task="multiple-choice"))
    study = context.study
    base = study.task.kind.load_model(study.model_ref, study.task.label_names, study.tokenizer.pad_token_id)
    scores = kind_evaluation(study.task.kind).evaluate(base, context.encoded["test"], study.tokenizer, 16, "cpu",
                                                       study.task.num_labels, "test")
    assert run["metrics"]["accuracy"] == pytest.approx(scores["accuracy"])


def test_zero_shot_is_not_tuned_and_does_not_train():
    assert not trains("zero-shot") and trains("lora") and trains("a-method-of-another-process")
    method = get_method("zero-shot")
    assert "trains nothing" in method.adapter_blocker and not method.mergeable


def test_zero_shot_refuses_an_encoder_decoder_classifier():
    config = T5Config(vocab_size=64, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2, num_labels=2,
                      decoder_start_token_id=0)
    reason = get_method("zero-shot").refusal(T5ForSequenceClassification(config), {})
    assert "encoder-decoder" in reason


def test_label_descriptions_must_name_the_task_labels(tmp_path, tiny_bert_dir, tiny_task_csv):
    bad = tmp_path / "labels.yaml"
    bad.write_text("positive: a good film\n")
    done = subprocess.run([sys.executable, "-m", "peftlab.cli", "compare", "--model", str(tiny_bert_dir), "--data",
                           str(tiny_task_csv), "--methods", "zero-shot", "--label-descriptions", str(bad),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "positive" in done.stderr and "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "results.json").exists()
    (tmp_path / "list.json").write_text(json.dumps(["a", "b"]))
    done = subprocess.run([sys.executable, "-m", "peftlab.cli", "compare", "--model", str(tiny_bert_dir), "--data",
                           str(tiny_task_csv), "--methods", "zero-shot", "--label-descriptions",
                           str(tmp_path / "list.json"), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "must map each label" in done.stderr
