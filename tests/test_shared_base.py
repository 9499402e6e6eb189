"""Shared-base training (peftlab.train.stacked): K LoRA runs trained stacked by the one loop give what the same
runs give trained one after another — per-step losses, validation scores, best states, test logits — on a tiny
BERT without dropout (the base's own dropout masks cannot match: one mask over the stacked batch)."""

from __future__ import annotations

import pytest
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from conftest import FIXED_RATES, TINY_LABELS, tiny_bert_config
from peftlab import CompareConfig, compare
from peftlab.errors import ConfigError
from peftlab.files import STORE_FILE
from peftlab.methods import get_method
from peftlab.models import load_classifier, load_tokenizer, resolve_model
from peftlab.study.artifacts import load_run
from peftlab.study.store import StudyStore
from peftlab.tasks import load_task
from peftlab.tasks.encode import encode_task, eval_loader
from peftlab.train import NotStackable, RunStack, TrainConfig, train

RUNS = [({"r": 8}, 1e-3, 0), ({"r": 4, "lora_alpha": 4}, 3e-3, 1), ({"r": 8}, 1e-3, 2)]  # (settings, lr, seed)


@pytest.fixture(scope="module")
def no_dropout_bert_dir(tmp_path_factory):
    from transformers import BertForSequenceClassification

    directory = tmp_path_factory.mktemp("tiny-bert-no-dropout")
    torch.manual_seed(0)
    BertForSequenceClassification(tiny_bert_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                                                   classifier_dropout=0.0)).save_pretrained(directory)
    load_tokenizer(resolve_model("minilm")).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def data(no_dropout_bert_dir, tiny_task_csv):
    tokenizer = load_tokenizer(resolve_model(str(no_dropout_bert_dir)))
    task = load_task(str(tiny_task_csv), seed=0)
    return encode_task(task, tokenizer, max_length=64), tokenizer, task


def build(directory, settings, seed, method="lora"):
    set_seed(seed)
    base = load_classifier(resolve_model(str(directory)), TINY_LABELS)
    method = get_method(method)
    resolved, _ = method.resolve(base, settings)
    return method.apply(base, resolved)


def config(learning_rate, seed, **budget):
    return TrainConfig(learning_rate=learning_rate, seed=seed, batch_size=16, **{"epochs": 3, **budget})


def logits(model, batch):
    model.eval()
    with torch.no_grad():
        return model(**{key: value for key, value in batch.items() if key != "labels"}).logits


def test_stacked_runs_equal_the_same_runs_one_after_another(no_dropout_bert_dir, data):
    encoded, tokenizer, task = data
    alone = []
    for settings, rate, seed in RUNS:
        model = build(no_dropout_bert_dir, settings, seed)
        alone.append((model, train(model, encoded, tokenizer, config(rate, seed), Accelerator(cpu=True),
                                   task.num_labels)))
    models = [build(no_dropout_bert_dir, settings, seed) for settings, _, seed in RUNS]
    outcomes = train(RunStack(models, tokenizer.pad_token_id), encoded, tokenizer,
                     [config(rate, seed) for _, rate, seed in RUNS], Accelerator(cpu=True), task.num_labels)
    batch = next(iter(eval_loader(encoded["test"], tokenizer, 12)[0]))
    for (model_alone, outcome_alone), model, outcome in zip(alone, models, outcomes):
        assert outcome.steps == outcome_alone.steps == 18
        assert outcome.train_loss == pytest.approx(outcome_alone.train_loss, rel=1e-4, abs=1e-5)
        assert [row["accuracy"] for row in outcome.validation] == [row["accuracy"] for row in outcome_alone.validation]
        assert ([row["loss"] for row in outcome.validation]
                == pytest.approx([row["loss"] for row in outcome_alone.validation], rel=1e-4, abs=1e-5))
        assert outcome.best_epoch == outcome_alone.best_epoch
        assert torch.allclose(logits(model, batch), logits(model_alone, batch), rtol=1e-4, atol=1e-5)
    assert outcomes[0].train_loss != pytest.approx(outcomes[2].train_loss)  # each run its own data order


def test_early_stopping_and_the_rest_of_the_stack(no_dropout_bert_dir, data):
    """With patience, a run that stops leaves the others training; each stops where it stops alone."""
    encoded, tokenizer, task = data
    budget = {"epochs": 8, "evaluations_per_epoch": 2, "patience": 1}
    runs = [(settings, rate * 20, seed) for settings, rate, seed in RUNS]
    alone = [train(build(no_dropout_bert_dir, settings, seed), encoded, tokenizer, config(rate, seed, **budget),
                   Accelerator(cpu=True), task.num_labels) for settings, rate, seed in runs]
    outcomes = train(RunStack([build(no_dropout_bert_dir, settings, seed) for settings, _, seed in runs],
                              tokenizer.pad_token_id), encoded, tokenizer,
                     [config(rate, seed, **budget) for _, rate, seed in runs], Accelerator(cpu=True),
                     task.num_labels)
    for outcome, outcome_alone in zip(outcomes, alone):
        assert outcome.stopped == outcome_alone.stopped and outcome.steps == outcome_alone.steps
        assert outcome.train_loss == pytest.approx(outcome_alone.train_loss, rel=1e-4, abs=1e-5)
    assert len({outcome.steps for outcome in outcomes}) > 1  # one stopped while another trained on


def test_what_does_not_stack_says_why(no_dropout_bert_dir):
    with pytest.raises(NotStackable, match="DoRA"):
        RunStack([build(no_dropout_bert_dir, {"use_dora": True}, seed) for seed in (0, 1)])
    with pytest.raises(NotStackable, match="other than LoRA"):
        RunStack([build(no_dropout_bert_dir, {}, seed, "bitfit") for seed in (0, 1)])


def test_a_study_with_shared_base_gives_the_records_of_one_without(no_dropout_bert_dir, tiny_task_csv, tmp_path):
    """--seeds 3 --shared-base 3: the three LoRA runs train together (head alone), every record is the one the
    study gives without the option, the saved adapters load back with the same logits, and re-running repeats
    nothing."""
    base = dict(model=str(no_dropout_bert_dir), data=str(tiny_task_csv), methods=["lora", "head"], epochs=2,
                batch_size=16, robustness=False, diagnose=False, seeds=3, **FIXED_RATES)
    alone = compare(CompareConfig(**base, out=str(tmp_path / "alone")))
    shared = compare(CompareConfig(**base, out=str(tmp_path / "shared"), shared_base=3))
    assert [run["run_key"] for run in shared["runs"]] == [run["run_key"] for run in alone["runs"]]
    for run, run_alone in zip(shared["runs"], alone["runs"]):
        assert run["status"] == run_alone["status"] == "ok"
        assert run["timing"].get("shared_base") == (3 if run["method"] == "lora" else None)
        assert run["config"] == run_alone["config"] and run["test_correct"] == run_alone["test_correct"]
        assert run["metrics"] == pytest.approx(run_alone["metrics"], rel=1e-4, abs=1e-5)
        assert run["curve"]["train_loss"] == pytest.approx(run_alone["curve"]["train_loss"], rel=1e-4, abs=1e-5)
        assert ([row["accuracy"] for row in run["curve"]["validation"]]
                == [row["accuracy"] for row in run_alone["curve"]["validation"]])
        model, tokenizer, _ = load_run(tmp_path / "shared" / run["artifact"])
        model_alone, _, _ = load_run(tmp_path / "alone" / run_alone["artifact"])
        batch = next(iter(eval_loader(data_of(tokenizer, tiny_task_csv), tokenizer, 12)[0]))
        assert torch.allclose(logits(model, batch), logits(model_alone, batch), rtol=1e-4, atol=1e-5)
    assert shared["verdict"] == alone["verdict"]
    again = compare(CompareConfig(**base, out=str(tmp_path / "shared"), shared_base=3))
    assert again["runs"] == shared["runs"]
    assert {row["attempts"] for row in StudyStore(tmp_path / "shared" / STORE_FILE).runs()} == {1}


def data_of(tokenizer, csv):
    return encode_task(load_task(str(csv), seed=0), tokenizer, max_length=64)["test"]


@pytest.mark.parametrize("overrides", [{"shared_base": 0}, {"shared_base": 2, "workers": 2},
                                       {"shared_base": 2, "backend": "ray"}])
def test_shared_base_options_are_checked(overrides):
    with pytest.raises(ConfigError, match="--shared-base"):
        CompareConfig(**overrides).check_execution()
