"""The training loop under DDP: two gloo processes on CPU (torchrun) train one run, each on half of every global
batch of 16 (accelerate's split_batches), and match a single process training on the same global batches of 16,
within float tolerance."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

from conftest import tiny_bert_config

SCRIPT = textwrap.dedent("""
    import json, sys, torch
    torch.set_num_threads(1)
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration
    from peftlab.methods import get_method
    from peftlab.models import load_classifier, load_tokenizer, resolve_model
    from peftlab.tasks import load_task
    from peftlab.tasks.encode import encode_task
    from peftlab.train import TrainConfig, train

    model_dir, data, batch_size, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    # split_batches: batch_size is the global batch, each process takes its share of every batch
    accelerator = Accelerator(cpu=True, dataloader_config=DataLoaderConfiguration(split_batches=True))
    ref = resolve_model(model_dir)
    tokenizer = load_tokenizer(ref)
    task = load_task(data, seed=0)
    encoded = encode_task(task, tokenizer, 64)
    torch.manual_seed(0)
    model = get_method("full").apply(load_classifier(ref, task.label_names), {})
    outcome = train(model, encoded, tokenizer, TrainConfig(learning_rate=1e-3, epochs=2, batch_size=batch_size, seed=0),
                    accelerator, task.num_labels)
    if accelerator.is_main_process:
        state = {k: v.detach().clone() for k, v in accelerator.unwrap_model(model).named_parameters()}
        torch.save({"state": state, "steps": outcome.steps, "processes": accelerator.num_processes,
                    "validation": outcome.validation}, out)
""")


@pytest.fixture(scope="module")
def no_dropout_model(tiny_bert_dir, tmp_path_factory):
    """The tiny BERT without dropout: with dropout the two layouts draw different masks by design."""
    from transformers import BertForSequenceClassification

    directory = tmp_path_factory.mktemp("tiny-bert-no-dropout")
    torch.manual_seed(0)
    BertForSequenceClassification(tiny_bert_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)).save_pretrained(directory)
    for name in os.listdir(tiny_bert_dir):
        if "token" in name or name == "vocab.txt":
            shutil.copy(tiny_bert_dir / name, directory / name)
    return directory


def run(command, tmp_path):
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr[-3000:]


def test_two_gloo_processes_match_one_process_with_the_same_global_batch(no_dropout_model, tiny_task_csv, tmp_path):
    script = tmp_path / "train_one.py"
    script.write_text(SCRIPT)
    run([sys.executable, str(script), str(no_dropout_model), str(tiny_task_csv), "16", str(tmp_path / "single.pt")], tmp_path)
    run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
         str(no_dropout_model), str(tiny_task_csv), "16", str(tmp_path / "ddp.pt")], tmp_path)
    single, ddp = torch.load(tmp_path / "single.pt"), torch.load(tmp_path / "ddp.pt")
    assert single["processes"] == 1 and ddp["processes"] == 2
    assert single["steps"] == ddp["steps"] == 2 * 96 // 16  # the same optimizer steps over the same global batches
    initial = tiny_bert_dir_state(no_dropout_model)
    moved = max((single["state"][k] - initial[k]).abs().max().item() for k in initial)
    difference = max((single["state"][k] - ddp["state"][k]).abs().max().item() for k in single["state"])
    assert moved > 1e-3  # training did change the weights
    assert difference < 1e-4 * max(1.0, moved), (difference, moved)
    for a, b in zip(single["validation"], ddp["validation"]):
        assert a["accuracy"] == b["accuracy"] and a["loss"] == pytest.approx(b["loss"], rel=1e-4)


def tiny_bert_dir_state(directory):
    from peftlab.models import load_classifier, resolve_model

    model = load_classifier(resolve_model(str(directory)), ["neg", "pos"])
    return {k: v.detach() for k, v in model.named_parameters()}
