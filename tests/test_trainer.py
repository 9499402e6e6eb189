"""The training loop on the tiny BERT and the tiny word-sentiment task: it learns, counts its steps, is
reproducible, stops on divergence, leaves frozen weights alone; and `compare` records a diverged run as
failed while the others go on."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from accelerate import Accelerator

from conftest import FIXED_RATES, TINY_LABELS
from peftlab.errors import MethodError
from peftlab.measure import PeakMemory
from peftlab.methods import get_method
from peftlab.models import load_tokenizer, resolve_model
from peftlab import CompareConfig, compare
from peftlab.tasks import load_task
from peftlab.tasks.encode import encode_task
from peftlab.train import TrainConfig, train
from peftlab.train.trainer import TrainingDiverged, parameter_groups

BATCH = 16


@pytest.fixture(scope="module")
def tiny_data(tiny_bert_dir, tiny_task_csv):
    """(encoded splits, tokenizer, task) of the tiny task, tokenized with the tiny model's tokenizer."""
    tokenizer = load_tokenizer(resolve_model(str(tiny_bert_dir)))
    task = load_task(str(tiny_task_csv), seed=0)
    assert task.label_names == TINY_LABELS
    assert task.describe()["sizes"] == {"train": 96, "validation": 12, "test": 12}
    return encode_task(task, tokenizer, max_length=64), tokenizer, task


def run_training(load_tiny_bert, tiny_data, method_name="full", **config):
    encoded, tokenizer, task = tiny_data
    method = get_method(method_name)
    base = load_tiny_bert()
    settings, _ = method.resolve(base, {})
    model = method.apply(base, settings)
    config.setdefault("batch_size", BATCH)
    outcome = train(model, encoded, tokenizer, TrainConfig(**config), Accelerator(cpu=True), task.num_labels)
    return model, outcome


def test_full_fine_tuning_learns_the_task(load_tiny_bert, tiny_data):
    model, outcome = run_training(load_tiny_bert, tiny_data, learning_rate=1e-3, max_steps=60)
    losses = outcome.train_loss
    assert len(losses) == 60 and all(math.isfinite(x) for x in losses)
    assert np.mean(losses[-10:]) < np.mean(losses[:10]) - 0.02
    best = max(v["accuracy"] for v in outcome.validation)
    assert best >= 0.9  # 12 validation examples, 2 balanced classes: chance is 0.5
    assert outcome.validation[outcome.best_epoch - 1]["accuracy"] == best
    # validation ran once per epoch: 60 steps over 96/16 = 6 batches per epoch
    assert [v["epoch"] for v in outcome.validation] == list(range(1, 11))
    assert outcome.train_tokens > 96 * 3  # every example has at least [CLS], a word, [SEP]
    assert outcome.train_seconds > 0 and outcome.tokens_per_second > 0


def test_best_epoch_state_is_restored(load_tiny_bert, tiny_data):
    """After training, the model's trainable state is the best epoch's: re-evaluating gives its score."""
    from peftlab.evaluate import evaluate_split

    encoded, tokenizer, task = tiny_data
    model, outcome = run_training(load_tiny_bert, tiny_data, learning_rate=1e-3, max_steps=24)
    scores = evaluate_split(model, encoded["validation"], tokenizer, 64, "cpu", task.num_labels)
    kept = outcome.validation[outcome.best_epoch - 1]
    assert scores["accuracy"] == kept["accuracy"]
    assert scores["loss"] == pytest.approx(kept["loss"], rel=1e-6)


@pytest.mark.parametrize(("epochs", "max_steps", "batch_size", "expected"), [
    (2, 5, BATCH, 5),  # max_steps wins over epochs
    (1, 8, BATCH, 8),  # max_steps beyond one epoch runs into a second
    (2, None, BATCH, 2 * math.ceil(96 / BATCH)),
    (1, None, 20, math.ceil(96 / 20)),  # the last, smaller batch is kept
])
def test_step_count(load_tiny_bert, tiny_data, epochs, max_steps, batch_size, expected):
    _, outcome = run_training(load_tiny_bert, tiny_data, "head", learning_rate=1e-3, epochs=epochs,
                              max_steps=max_steps, batch_size=batch_size)
    assert outcome.steps == expected
    assert len(outcome.train_loss) == expected
    assert len(outcome.validation) == math.ceil(expected / math.ceil(96 / batch_size))


def test_same_seed_same_run(load_tiny_bert, tiny_data):
    model_a, a = run_training(load_tiny_bert, tiny_data, learning_rate=1e-3, max_steps=8, seed=3)
    model_b, b = run_training(load_tiny_bert, tiny_data, learning_rate=1e-3, max_steps=8, seed=3)
    assert a.train_loss == b.train_loss
    assert a.validation == b.validation
    assert a.optimizer_state_bytes == b.optimizer_state_bytes
    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    _, c = run_training(load_tiny_bert, tiny_data, learning_rate=1e-3, max_steps=8, seed=4)
    assert c.train_loss != a.train_loss  # the seed does drive shuffling and dropout


def test_optimizer_state_is_two_moments_per_trainable_weight(load_tiny_bert, tiny_data):
    model, outcome = run_training(load_tiny_bert, tiny_data, "head", learning_rate=1e-3, max_steps=2)
    trainable = [p for p in model.parameters() if p.requires_grad]
    # AdamW: exp_avg and exp_avg_sq (fp32) per weight, plus a 4-byte step counter per tensor
    assert outcome.optimizer_state_bytes == 2 * 4 * sum(p.numel() for p in trainable) + 4 * len(trainable)


def test_huge_learning_rate_raises_training_diverged(load_tiny_bert, tiny_data):
    with pytest.raises(TrainingDiverged, match="loss"):
        run_training(load_tiny_bert, tiny_data, learning_rate=1e30, max_steps=30)


def test_nan_output_raises_training_diverged_at_the_first_step(load_tiny_bert, tiny_data):
    encoded, tokenizer, task = tiny_data
    model = get_method("full").apply(load_tiny_bert(), {})
    model.classifier.register_forward_hook(lambda module, inputs, output: output * float("nan"))
    with pytest.raises(TrainingDiverged, match=r"loss became nan at step 1"):
        train(model, encoded, tokenizer, TrainConfig(learning_rate=1e-3, max_steps=5, batch_size=BATCH),
              Accelerator(cpu=True), task.num_labels)


def test_frozen_parameters_do_not_change(load_tiny_bert, tiny_data):
    before = load_tiny_bert().state_dict()
    model, outcome = run_training(load_tiny_bert, tiny_data, "head", learning_rate=5e-3, max_steps=12)
    assert outcome.steps == 12
    after = model.state_dict()
    assert after.keys() == before.keys()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"classifier.weight", "classifier.bias"}


def test_bitfit_changes_only_biases_and_the_head(load_tiny_bert, tiny_data):
    before = load_tiny_bert().state_dict()
    model, _ = run_training(load_tiny_bert, tiny_data, "bitfit", learning_rate=1e-3, max_steps=6)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert "classifier.weight" in changed
    assert any(k.startswith("bert.encoder") and k.endswith(".bias") for k in changed)
    assert all(k.endswith(".bias") or k.startswith("classifier.") for k in changed), changed


def test_compare_records_a_diverged_run_as_failed_and_goes_on(tiny_bert_dir, tiny_task_csv, tmp_path):
    method_config = tmp_path / "methods.yaml"
    method_config.write_text("full:\n  learning_rate: 1.0e30\n")
    out = tmp_path / "study"
    done = []
    results = compare(
        CompareConfig(**FIXED_RATES, model=str(tiny_bert_dir), data=str(tiny_task_csv), methods=["full", "head"],
                      method_config=str(method_config), max_steps=6, batch_size=BATCH, out=str(out)),
        on_run_done=done.append,
    )
    assert [r["method"] for r in done] == ["full", "head"]
    on_disk = json.loads((out / "results.json").read_text())
    assert [r["method"] for r in on_disk["runs"]] == ["full", "head"]
    full, head = on_disk["runs"]

    assert full["status"] == "failed"
    assert "loss" in full["reason"] and "TrainingDiverged" in full["reason"]
    assert full["config"]["learning_rate"] == 1e30
    assert not (out / "runs" / "full").exists()
    assert "TrainingDiverged" in (out / "logs" / "full.log").read_text()

    assert head["status"] == "ok"
    assert "reason" not in head
    assert head["cost"]["train_steps"] == 6
    assert head["cost"]["trainable_params"] == 32 * 2 + 2
    assert 0 <= head["metrics"]["accuracy"] <= 1
    assert (out / "runs" / "head" / "peftlab_run.json").is_file()
    assert results["runs"][1]["status"] == "ok"


def test_the_peak_memory_of_checkpointed_training_survives_a_resume(load_tiny_bert, tiny_data, tmp_path):
    """A run that continues a finished checkpoint (a learning-rate trial's) trains nothing itself: the peak it
    reports is the one the checkpointed training measured."""
    encoded, tokenizer, task = tiny_data
    config = TrainConfig(learning_rate=1e-3, epochs=2, batch_size=BATCH)
    checkpoint = tmp_path / "run" / "last"
    with PeakMemory("cpu") as peak:
        first = train(get_method("full").apply(load_tiny_bert(), {}), encoded, tokenizer, config,
                      Accelerator(cpu=True), task.num_labels, checkpoint, memory=peak)
    assert first.peak_memory_bytes > 0 and first.peak_memory_bytes <= peak.peak_bytes
    with PeakMemory("cpu") as again:
        resumed = train(get_method("full").apply(load_tiny_bert(), {}), encoded, tokenizer, config,
                        Accelerator(cpu=True), task.num_labels, checkpoint, memory=again)
    assert resumed.steps == first.steps and resumed.peak_memory_bytes == first.peak_memory_bytes
    assert resumed.validation == first.validation


def test_a_fresh_head_trains_at_its_own_rate(load_tiny_bert, tiny_data):
    """With head_learning_rate, the classifier's trainable copy (peft's modules_to_save) is in groups of its own at
    that rate, every other trainable parameter keeps the method's, and each trainable parameter is in one group."""
    model = get_method("lora").apply(load_tiny_bert(), get_method("lora").resolve(load_tiny_bert(), {})[0])
    trainable = {id(p): name for name, p in model.named_parameters() if p.requires_grad}
    groups = parameter_groups(model, 0.01, ("classifier",), 1e-2)
    grouped = [id(p) for group in groups for p in group["params"]]
    assert sorted(grouped) == sorted(trainable) and len(grouped) == len(set(grouped))
    at_head_rate = {trainable[id(p)] for group in groups if group.get("lr") == 1e-2 for p in group["params"]}
    assert at_head_rate == {name for name in trainable.values() if "classifier.modules_to_save" in name} != set()
    assert len(parameter_groups(model, 0.01, ("classifier",), None)) == 2  # no head rate: one rate for all
    # in training: the head's rate is the scheduler's base rate for its groups; the base rate is the others'
    _, outcome = run_training(load_tiny_bert, tiny_data, "lora", learning_rate=1e-4, max_steps=3,
                              head_learning_rate=1e-2, head_modules=("classifier",))
    assert len(outcome.train_loss) == 3


def test_a_study_records_the_head_rate_where_the_task_has_a_fresh_head(tiny_bert_dir, tiny_task_csv, tiny_llama_dir,
                                                                       colour_bigbench, tmp_path):
    runs = compare(CompareConfig(**FIXED_RATES, model=str(tiny_bert_dir), data=str(tiny_task_csv),
                                 methods=["lora", "lora[head_learning_rate=0.01]"], max_steps=4, batch_size=16,
                                 robustness=False, diagnose=False, out=str(tmp_path / "cls")))["runs"]
    by_name = {run["method"]: run for run in runs}
    assert all(run["status"] == "ok" for run in runs), [run.get("reason") for run in runs]
    assert by_name["lora[head_learning_rate=0.01]"]["config"]["head_learning_rate"] == 0.01
    assert "head_learning_rate" not in by_name["lora"]["config"]
    # a causal LM's head is pretrained, not fresh: the rate does not apply and is not recorded
    run, = compare(CompareConfig(**FIXED_RATES, model=str(tiny_llama_dir), data=str(colour_bigbench), task="multiple-choice",
                                 methods=["lora[head_learning_rate=0.01]"], max_steps=2, batch_size=8,
                                 max_train_examples=16, max_eval_examples=6, robustness=False, diagnose=False,
                                 out=str(tmp_path / "mc")))["runs"]
    assert run["status"] == "ok" and "head_learning_rate" not in run["config"]


def test_a_bad_head_rate_is_one_line():
    with pytest.raises(MethodError, match="head_learning_rate must be a positive number"):
        get_method("lora").check_overrides({"head_learning_rate": -1})


def test_a_run_paused_mid_epoch_and_continued_is_the_run_without_a_pause(load_tiny_bert, tiny_data, tmp_path):
    """96 examples, batch 16: 6 steps per epoch, 3 validation passes per epoch (after steps 2, 4, 6). Paused after
    the 1st pass (mid-epoch), then the 4th (mid-epoch 2), then continued to the end: the same losses, passes and
    weights as one uninterrupted run; the rate race (tuning.py) and --until-conclusive rely on this."""
    encoded, tokenizer, task = tiny_data
    config = dict(learning_rate=1e-3, epochs=3, batch_size=BATCH, seed=5, evaluations_per_epoch=3)

    def build():  # as a study builds a run: seeded, so that LoRA's random init is the same every time
        torch.manual_seed(5)
        method = get_method("lora")
        base = load_tiny_bert()
        return method.apply(base, method.resolve(base, {})[0])

    whole_model = build()
    whole = train(whole_model, encoded, tokenizer, TrainConfig(**config), Accelerator(cpu=True), task.num_labels,
                  tmp_path / "whole" / "last")
    checkpoint = tmp_path / "paused" / "last"
    first = train(build(), encoded, tokenizer, TrainConfig(**config), Accelerator(cpu=True), task.num_labels,
                  checkpoint, pause_after=1)
    assert first.steps == 2 and len(first.validation) == 1
    second = train(build(), encoded, tokenizer, TrainConfig(**config), Accelerator(cpu=True), task.num_labels,
                   checkpoint, pause_after=4)
    assert second.steps == 8 and len(second.validation) == 4
    model = build()
    last = train(model, encoded, tokenizer, TrainConfig(**config), Accelerator(cpu=True), task.num_labels,
                 checkpoint)
    assert last.steps == whole.steps == 18 and last.train_loss == whole.train_loss
    assert last.validation == whole.validation
    state, whole_state = model.state_dict(), whole_model.state_dict()
    assert all(torch.equal(state[key], whole_state[key]) for key in state)
