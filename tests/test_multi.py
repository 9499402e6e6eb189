"""Shared-base concurrent training (peftlab.train.multi) on a tiny random BERT: K LoRA runs of different ranks,
learning rates and seeds trained together end exactly where the same runs trained alone by `train` end."""

from __future__ import annotations

import pytest
import torch
from accelerate import Accelerator

from conftest import TINY_LABELS, tiny_bert_config
from peftlab.errors import MethodError
from peftlab.models import load_classifier, load_tokenizer, resolve_model
from peftlab.tasks import load_task
from peftlab.tasks.encode import encode_task
from peftlab.train import TrainConfig, train
from peftlab.train.multi import RunSpec, _single_run_model, adapter_state, build_shared_model, train_shared

SPECS = [
    RunSpec("run_r4", {"r": 4, "lora_dropout": 0.0}, seed=0, learning_rate=2e-2),
    RunSpec("run_r8", {"r": 8, "lora_dropout": 0.0}, seed=1, learning_rate=1e-2),
    RunSpec("run_r2", {"r": 2, "lora_alpha": 8, "lora_dropout": 0.0}, seed=0, learning_rate=3e-2),
]


@pytest.fixture(scope="module")
def deterministic_bert(tmp_path_factory, tiny_bert_dir):
    """The tiny BERT without dropout (training is then deterministic), saved as a model folder."""
    from transformers import BertForSequenceClassification

    directory = tmp_path_factory.mktemp("tiny-bert-no-dropout")
    torch.manual_seed(0)
    config = tiny_bert_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    BertForSequenceClassification(config).save_pretrained(directory, safe_serialization=True)
    load_tokenizer(resolve_model(str(tiny_bert_dir))).save_pretrained(directory)
    ref = resolve_model(str(directory))
    return lambda: load_classifier(ref, TINY_LABELS)


@pytest.fixture(scope="module")
def tiny_data(tiny_bert_dir, tiny_task_csv):
    tokenizer = load_tokenizer(resolve_model(str(tiny_bert_dir)))
    task = load_task(str(tiny_task_csv), seed=0)
    return encode_task(task, tokenizer, max_length=64), tokenizer, task


def test_shared_runs_equal_separate_runs(deterministic_bert, tiny_data):
    encoded, tokenizer, task = tiny_data
    budget = dict(epochs=2, batch_size=16, eval_batch_size=16)

    shared, learning_rates = build_shared_model(deterministic_bert, SPECS)
    initial = {spec.name: adapter_state(shared, spec.name) for spec in SPECS}
    config = TrainConfig(learning_rate=1.0, **budget)  # each run's own learning rate and seed replace these
    outcomes = train_shared(shared, SPECS, learning_rates, encoded, tokenizer, config, task.num_labels)

    for spec in SPECS:
        alone, _, learning_rate = _single_run_model(deterministic_bert, "lora", spec)
        assert learning_rate == learning_rates[spec.name] == spec.learning_rate
        start = {n: p.detach().clone() for n, p in alone.named_parameters() if p.requires_grad}
        assert start.keys() == initial[spec.name].keys()
        for name in start:  # same initial adapter and head as the run alone
            torch.testing.assert_close(initial[spec.name][name], start[name], rtol=0, atol=0)
        single = train(alone, encoded, tokenizer, TrainConfig(learning_rate=learning_rate, seed=spec.seed, **budget),
                       Accelerator(cpu=True), task.num_labels)
        together = outcomes[spec.name]
        assert together.steps == single.steps == 12  # 96 examples / 16, two epochs
        assert together.train_tokens == single.train_tokens
        torch.testing.assert_close(torch.tensor(together.train_loss), torch.tensor(single.train_loss),
                                   rtol=1e-4, atol=1e-5)
        assert together.best_epoch == single.best_epoch
        assert [v["accuracy"] for v in together.validation] == [v["accuracy"] for v in single.validation]
        trained = adapter_state(shared, spec.name)
        moved = max((trained[n] - initial[spec.name][n]).abs().max().item() for n in trained)
        assert moved > 1e-3  # the adapters really trained
        for name, tensor in alone.named_parameters():
            if tensor.requires_grad:
                torch.testing.assert_close(trained[name], tensor.detach(), rtol=1e-4, atol=1e-5)


def test_runs_differ_from_each_other(deterministic_bert):
    shared, _ = build_shared_model(deterministic_bert, SPECS[:2])
    ranks = {spec.name: shared.peft_config[spec.name].r for spec in SPECS[:2]}
    assert ranks == {"run_r4": 4, "run_r8": 8}
    trainable = {n for n, p in shared.named_parameters() if p.requires_grad}
    assert any(".run_r4." in n for n in trainable) and any(".run_r8." in n for n in trainable)
    assert all(".run_r4." in n or ".run_r8." in n for n in trainable)  # the base stays frozen


def test_refuses_dora_and_clashing_names(deterministic_bert):
    with pytest.raises(MethodError, match="DoRA"):
        build_shared_model(deterministic_bert, [RunSpec("run_a", {"use_dora": True})])
    with pytest.raises(MethodError, match="clashes"):
        build_shared_model(deterministic_bert, [RunSpec("dense", {})])
    with pytest.raises(MethodError, match="distinct"):
        build_shared_model(deterministic_bert, [RunSpec("run_a", {}), RunSpec("run_a", {})])
