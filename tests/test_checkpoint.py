"""Epoch checkpoints without pickle: a round trip restores every state exactly (parameters, AdamW, scheduler, the
RNGs' next numbers), loading never unpickles, no module of peftlab can unpickle, and a damaged, foreign or old
(``last.pt``) checkpoint makes the run start over and finish as a fresh one."""

from __future__ import annotations

import ast
import copy
import json
import logging
import pickle
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from transformers import get_linear_schedule_with_warmup

import peftlab
from peftlab import CompareConfig, compare
from peftlab.errors import ModelError
from peftlab.methods import get_method
from peftlab.models import load_classifier, load_tokenizer, resolve_model
from peftlab.study.runs import RunSpec
from peftlab.tasks import load_task
from peftlab.tasks.encode import encode_task
from peftlab.train import TrainConfig, TrainOutcome, train
from peftlab.train.checkpoint import (STATE_FILE, TENSORS_FILE, checkpoint_epoch, load_checkpoint,
                                      restore_rng_states, save_checkpoint)
from peftlab.train.trainer import parameter_groups, restore_trainable_state, trainable_state
from conftest import FIXED_RATES

PACKAGE = Path(peftlab.__file__).parent


# --- the round trip ---------------------------------------------------------------------------------------------

def _setup(seed: int):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3), torch.nn.Linear(3, 2))
    model[0].weight.requires_grad_(False)  # a frozen tensor: not part of the trainable state
    optimizer = torch.optim.AdamW(parameter_groups(model, 0.01), lr=1e-2)
    scheduler = get_linear_schedule_with_warmup(optimizer, 2, 20)
    generator = torch.Generator().manual_seed(seed)
    return model, optimizer, scheduler, generator


def _step(model, optimizer, scheduler, generator, steps: int) -> list[float]:
    losses = []
    for _ in range(steps):
        x = torch.randn(5, 4, generator=generator) + torch.rand(1)  # the sampler's and the global torch RNG
        loss = model(torch.nn.functional.dropout(x, 0.2)).pow(2).mean()
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses


def _draws(generator) -> tuple:
    return (torch.rand(3).tolist(), torch.randint(0, 10**6, (3,), generator=generator).tolist(),
            random.random(), random.getrandbits(64), np.random.rand(3).tolist(), np.random.randn())


def _equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


@pytest.fixture
def no_unpickling(monkeypatch):
    """Any unpickling while the fixture is active fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("a checkpoint was unpickled")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)


def test_a_checkpoint_round_trip_restores_every_state(tmp_path, no_unpickling):
    model, optimizer, scheduler, generator = _setup(3)
    random.seed(5)
    np.random.seed(5)
    _step(model, optimizer, scheduler, generator, 4)
    outcome = TrainOutcome(steps=4, train_seconds=1.25, train_tokens=80, best_epoch=1, train_loss=[0.5, 0.25, 0.1, 0.3],
                           validation=[{"epoch": 1, "accuracy": 0.75, "loss": 0.6931471805599453}])
    best = trainable_state(model)
    path = tmp_path / "checkpoints" / "run_lora" / "last"
    save_checkpoint(path, 1, trainable_state(model), optimizer, scheduler, generator, outcome, 0.75, best)
    assert sorted(p.name for p in path.iterdir()) == [STATE_FILE, TENSORS_FILE]
    assert sorted(p.name for p in path.parent.iterdir()) == ["last"]  # no staging or previous folder left
    json.loads((path / STATE_FILE).read_text())  # plain JSON
    expected_state = copy.deepcopy((trainable_state(model), optimizer.state_dict(), scheduler.state_dict()))
    expected_next = (_step(model, optimizer, scheduler, generator, 3), _draws(generator), trainable_state(model))

    # another process: other weights, other RNG positions, a fresh optimizer and scheduler
    fresh, fresh_optimizer, fresh_scheduler, fresh_generator = _setup(11)
    fresh_frozen = fresh[0].weight.detach().clone()
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    saved = load_checkpoint(path)
    assert saved["epoch"] == checkpoint_epoch(path) == 1
    assert saved["best_score"] == 0.75 and TrainOutcome(**saved["outcome"]) == outcome
    assert _equal(saved["best_state"], best)
    restore_trainable_state(fresh, saved["trainable"])
    fresh_optimizer.load_state_dict(saved["optimizer"])
    fresh_scheduler.load_state_dict(saved["scheduler"])
    restore_rng_states(saved["rng"], fresh_generator)

    assert _equal(trainable_state(fresh), expected_state[0])
    assert _equal(fresh_optimizer.state_dict(), expected_state[1])  # moments, step counts, param groups (betas a tuple)
    assert _equal(fresh_scheduler.state_dict(), expected_state[2])
    assert torch.equal(fresh[0].weight, fresh_frozen)  # the frozen tensor is not in the checkpoint...
    fresh[0].weight.data.copy_(model[0].weight)  # ...but reloaded with the base
    assert _equal((_step(fresh, fresh_optimizer, fresh_scheduler, fresh_generator, 3), _draws(fresh_generator),
                   trainable_state(fresh)), expected_next)


def test_a_newer_checkpoint_replaces_the_last_and_a_crash_between_renames_keeps_the_previous(tmp_path):
    model, optimizer, scheduler, generator = _setup(0)
    path = tmp_path / "last"
    for epoch in (1, 2):
        save_checkpoint(path, epoch, trainable_state(model), optimizer, scheduler, generator, TrainOutcome(), 0.5, None)
    assert checkpoint_epoch(path) == 2 and sorted(p.name for p in tmp_path.iterdir()) == ["last"]
    path.rename(tmp_path / ".last.previous")  # the moment between moving the previous one aside and renaming the new
    assert checkpoint_epoch(path) == 2


# --- no module of peftlab can unpickle --------------------------------------------------------------------------

UNPICKLING_CALLS = {("torch", "load"), ("pickle", "load"), ("pickle", "loads"), ("pickle", "Unpickler"),
                    ("joblib", "load"), ("dill", "load"), ("dill", "loads"), ("cloudpickle", "load"),
                    ("cloudpickle", "loads"), ("pd", "read_pickle"), ("pandas", "read_pickle"), ("shelve", "open"),
                    ("marshal", "loads"), ("marshal", "load"), ("torch.jit", "load")}
UNPICKLING_MODULES = {"pickle", "_pickle", "cPickle", "dill", "joblib", "cloudpickle", "shelve", "marshal"}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return "?"


def unpickling_sites(source: str) -> list[str]:
    """Where a module's source unpickles or allows unpickling: calls of the loaders above (by module and name,
    imported or aliased), `weights_only=False`, `allow_pickle=True`, and imports of pickling modules."""
    tree = ast.parse(source)
    found, aliases = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                aliases[alias.asname or alias.name] = alias.name
                if alias.name.split(".")[0] in UNPICKLING_MODULES:
                    found.append(f"line {node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
                if node.module.split(".")[0] in UNPICKLING_MODULES or (node.module, alias.name) in UNPICKLING_CALLS:
                    found.append(f"line {node.lineno}: from {node.module} import {alias.name}")
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        head, _, rest = name.partition(".")
        name = f"{aliases.get(head, head)}.{rest}" if rest else aliases.get(head, head)
        module, _, function = name.rpartition(".")
        if (module, function) in UNPICKLING_CALLS or (module == "np" and function == "load"):
            if not (module in ("np", "numpy") and not _allows_pickle(node)):
                found.append(f"line {node.lineno}: {name}(...)")
        if _allows_pickle(node):
            found.append(f"line {node.lineno}: {name}(..., weights_only=False / allow_pickle=True)")
    return found


def _allows_pickle(call: ast.Call) -> bool:
    return any((keyword.arg == "weights_only" and not _constant(keyword.value, True))
               or (keyword.arg == "allow_pickle" and not _constant(keyword.value, False)) for keyword in call.keywords)


def _constant(node: ast.AST, value: bool) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def test_the_checker_finds_unpickling():
    assert unpickling_sites("import torch\ntorch.load(p, map_location='cpu')\n") == ["line 2: torch.load(...)"]
    assert len(unpickling_sites("from torch import load as l\nl(p, weights_only=False)\n")) == 3
    assert unpickling_sites("import pickle as p\np.loads(b)\n")[0] == "line 1: import pickle"
    assert unpickling_sites("import numpy as np\nnp.load(f, allow_pickle=True)\n")
    assert unpickling_sites("import numpy as np\nnp.load(f)\nnp.load(f, allow_pickle=False)\n") == []
    assert unpickling_sites("from safetensors.torch import load_file\nload_file(p)\njson.loads(s)\n") == []


def test_no_module_of_peftlab_unpickles():
    found = {str(path.relative_to(PACKAGE.parent)): sites for path in sorted(PACKAGE.rglob("*.py"))
             if (sites := unpickling_sites(path.read_text(encoding="utf-8")))}
    assert found == {}


# --- a damaged, foreign or old checkpoint: start over -----------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_data(tiny_bert_dir, tiny_task_csv):
    tokenizer = load_tokenizer(resolve_model(str(tiny_bert_dir)))
    task = load_task(str(tiny_task_csv), seed=0)
    return encode_task(task, tokenizer, max_length=64), tokenizer, task


CONFIG = TrainConfig(learning_rate=5e-3, epochs=2, batch_size=16, seed=7)


def _lora(load_tiny_bert, rank: int = 8):
    torch.manual_seed(7)
    method = get_method("lora")
    base = load_tiny_bert()
    return method.apply(base, method.resolve(base, {"r": rank})[0])


def _train(load_tiny_bert, tiny_data, checkpoint=None, rank: int = 8, on_epoch=None):
    encoded, tokenizer, task = tiny_data
    model = _lora(load_tiny_bert, rank)
    outcome = train(model, encoded, tokenizer, CONFIG, Accelerator(cpu=True), task.num_labels, checkpoint, on_epoch)
    return outcome, model


def _damage(kind: str, path: Path, valid_from: Path) -> None:
    if kind == "old last.pt":
        torch.save({"epoch": 1, "trainable": {}}, path.parent / "last.pt")
        return
    shutil.copytree(valid_from, path)
    tensors = path / TENSORS_FILE
    if kind == "garbage safetensors":
        tensors.write_bytes(bytes(range(256)) * 40)
    elif kind == "truncated safetensors":
        tensors.write_bytes(tensors.read_bytes()[: tensors.stat().st_size // 2])
    elif kind == "garbage json":
        (path / STATE_FILE).write_bytes(b"\x80\x04\x95 not json at all")
    elif kind == "a tensor missing":
        document = json.loads((path / STATE_FILE).read_text())
        document["tensors"] = document["tensors"][1:]
        (path / STATE_FILE).write_text(json.dumps(document))
    elif kind == "a bad NumPy RNG state":  # readable; fails while resuming, after the weights were restored
        document = json.loads((path / STATE_FILE).read_text())
        document["state"]["rng"]["numpy"] = {"$tuple": ["MT19937", 1]}
        (path / STATE_FILE).write_text(json.dumps(document))
    elif kind == "a file, not a folder":
        shutil.rmtree(path)
        path.write_bytes(b"\x00" * 100)


@pytest.fixture(scope="module")
def fresh_and_saved(tiny_bert_dir, tiny_data, tmp_path_factory):
    """(an uninterrupted 2-epoch LoRA run, a valid epoch-1 checkpoint of a rank-4 LoRA, one of this rank-8 LoRA)."""
    reference = resolve_model(str(tiny_bert_dir))

    def load():
        return load_classifier(reference, tiny_data[2].label_names)

    outcome, _ = _train(load, tiny_data)
    folder = tmp_path_factory.mktemp("saved")

    def stop(epoch, scores):
        raise KeyboardInterrupt

    saved = {}
    for rank in (4, 8):
        with pytest.raises(KeyboardInterrupt):
            _train(load, tiny_data, folder / f"rank{rank}" / "last", rank, stop)
        saved[rank] = folder / f"rank{rank}" / "last"
    return outcome, saved


@pytest.mark.parametrize("kind", ["garbage safetensors", "truncated safetensors", "garbage json", "a tensor missing",
                                  "a file, not a folder", "old last.pt", "another run's checkpoint",
                                  "a bad NumPy RNG state"])
def test_a_checkpoint_that_cannot_be_used_is_ignored_and_the_run_starts_over(
        kind, load_tiny_bert, tiny_data, fresh_and_saved, tmp_path, caplog, no_unpickling):
    reference, saved = fresh_and_saved
    path = tmp_path / "run" / "last"
    path.parent.mkdir()
    if kind == "another run's checkpoint":  # a readable checkpoint of a rank-4 LoRA for this rank-8 one
        shutil.copytree(saved[4], path)
        assert checkpoint_epoch(path) == 1
    else:
        _damage(kind, path, saved[8])
        assert checkpoint_epoch(path) == (1 if kind == "a bad NumPy RNG state" else None)
    with caplog.at_level(logging.WARNING, logger="peftlab.train"):
        outcome, _ = _train(load_tiny_bert, tiny_data, path)
    assert "ignoring" in caplog.text and "trains from its start" in caplog.text
    if kind in ("another run's checkpoint", "a bad NumPy RNG state"):  # read, then refused: everything rolled back
        assert "does not fit this run" in caplog.text
    assert outcome.steps == reference.steps and outcome.train_loss == reference.train_loss
    assert outcome.validation == reference.validation and outcome.best_epoch == reference.best_epoch
    assert checkpoint_epoch(path) == 2  # the run's own checkpoint replaced it
    assert not (path.parent / "last.pt").exists()


def test_a_study_with_an_old_checkpoint_trains_the_run_from_its_start(tiny_bert_dir, tiny_task_csv, tmp_path, caplog):
    def config(out):
        return CompareConfig(**FIXED_RATES, model=str(tiny_bert_dir), data=str(tiny_task_csv), methods=["head"], epochs=1,
                             batch_size=16, out=str(out), robustness=False)

    reference = compare(config(tmp_path / "reference"))["runs"][0]
    out = tmp_path / "study"
    legacy = RunSpec("head", 0).checkpoint(out).parent / "last.pt"
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(pickle.dumps({"epoch": 1}))
    with caplog.at_level(logging.WARNING, logger="peftlab.train"):
        run = compare(config(out))["runs"][0]
    assert "an older peftlab" in caplog.text
    assert run["status"] == "ok" and run["timing"]["resumed_from_epoch"] is None
    assert (run["metrics"], run["curve"]) == (reference["metrics"], reference["curve"])
    assert not legacy.parent.exists()  # removed with the run's checkpoints once its record is stored


def test_a_saved_adapter_without_safetensors_is_refused_not_unpickled(load_tiny_bert, tmp_path, no_unpickling):
    folder = tmp_path / "runs" / "lora"
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8}))
    (folder / "adapter_model.bin").write_bytes(pickle.dumps({"not": "loaded"}))
    with pytest.raises(ModelError, match="no adapter_model.safetensors"):
        get_method("lora").load(load_tiny_bert(), folder)
