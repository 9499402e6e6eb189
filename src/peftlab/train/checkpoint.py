"""Epoch checkpoints: what a run needs to continue after an interruption as if it had never stopped.

Saved at the end of every epoch (after validation): the trainable parameters (only those: the frozen base is
reloaded from the model files, identical on every load), the optimizer and scheduler states, the RNG states
(torch, CUDA, Python, NumPy, and the training sampler's generator, which fixes the next epochs' data order), and
the run's record so far (steps, losses, validation curve, best epoch and its trainable state). Resuming at an epoch
boundary puts the data position at the start of the next epoch. accelerate's ``save_state`` would also save the
frozen base weights of every PEFT run; this keeps a checkpoint as small as the trainable state.

No pickle: a study folder may be shared (a cluster's ``--out``), and whoever can write into it must not be able to
run code at the next resume. A checkpoint is a folder (``OUT/checkpoints/<run key>/last/``) of two files:

- ``state.safetensors``: every tensor — the trainable state, the best epoch's, the optimizer's moments and step
  counts, the torch, CUDA and sampler RNG states (uint8 tensors);
- ``state.json``: everything else — epoch, steps, losses, validation curve, best epoch and score, the scheduler's
  state, the optimizer's param groups, Python's and NumPy's RNG states — with ``{"$tensor": name}`` where a tensor
  of the safetensors file goes, ``{"$tuple": [...]}`` for tuples (``random.setstate`` needs them),
  ``{"$ndarray": [...], "dtype": ...}`` for NumPy arrays and ``{"$items": [[key, value], ...]}`` for dicts whose keys
  are not strings (the optimizer's state, keyed by parameter index).

Both are read with ``safetensors.torch.load_file`` and ``json``. The folder is written as ``.last.partial`` and
renamed into place (the previous one is moved aside first and removed after), so a checkpoint is complete or absent.
A checkpoint that cannot be read (damaged, another format, an older peftlab's ``last.pt``) is ignored with a
logged warning: the run trains from its start.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

log = logging.getLogger(__name__)

FORMAT = "peftlab-epoch-checkpoint"
VERSION = 1
TENSORS_FILE = "state.safetensors"
STATE_FILE = "state.json"
LEGACY_FILE = "last.pt"  # peftlab before this format: a torch.save pickle, never read
_NUMPY_KINDS = "biuf"  # the NumPy dtypes a checkpoint may hold (bool, ints, floats): never object arrays


class DamagedCheckpoint(ValueError):
    """A checkpoint folder that is not a complete checkpoint of this format."""


def rng_states(generator: torch.Generator) -> dict[str, Any]:
    states = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state(),
              "sampler": generator.get_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(states["torch"])
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    generator.set_state(states["sampler"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


# --- a nested state as JSON plus named tensors ------------------------------------------------------------------

def encode(value: Any, name: str, tensors: dict[str, torch.Tensor]) -> Any:
    """``value`` as plain JSON, its tensors moved into ``tensors`` under names derived from ``name``."""
    if isinstance(value, torch.Tensor):
        key = name if name not in tensors else f"{name}#{len(tensors)}"
        tensors[key] = value.detach().cpu().contiguous()
        return {"$tensor": key}
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in _NUMPY_KINDS:
            raise TypeError(f"a checkpoint holds no NumPy arrays of dtype {value.dtype}")
        return {"$ndarray": value.tolist(), "dtype": value.dtype.str}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return {"$tuple": [encode(item, _join(name, index), tensors) for index, item in enumerate(value)]}
    if isinstance(value, list):
        return [encode(item, _join(name, index), tensors) for index, item in enumerate(value)]
    if isinstance(value, dict):
        if all(isinstance(key, str) and not key.startswith("$") for key in value):
            return {key: encode(item, _join(name, key), tensors) for key, item in value.items()}
        return {"$items": [[encode(key, _join(name, "key"), tensors), encode(item, _join(name, key), tensors)]
                           for key, item in value.items()]}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"a checkpoint cannot hold a {type(value).__name__} ({name})")


def _join(name: str, part: Any) -> str:
    return f"{name}/{part}" if name else str(part)


def decode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """The inverse of :func:`encode`; a reference to a missing tensor or a malformed marker is DamagedCheckpoint."""
    if isinstance(value, list):
        return [decode(item, tensors) for item in value]
    if not isinstance(value, dict):
        return value
    if "$tensor" in value:
        if value["$tensor"] not in tensors:
            raise DamagedCheckpoint(f"{STATE_FILE} names a tensor {value['$tensor']!r} that {TENSORS_FILE} lacks")
        return tensors[value["$tensor"]]
    if "$ndarray" in value:
        dtype = np.dtype(str(value.get("dtype")))
        if dtype.kind not in _NUMPY_KINDS:
            raise DamagedCheckpoint(f"a NumPy array of dtype {dtype}")
        return np.array(value["$ndarray"], dtype=dtype)
    if "$tuple" in value:
        return tuple(decode(item, tensors) for item in _list(value["$tuple"]))
    if "$items" in value:
        items = [_list(item) for item in _list(value["$items"])]
        if any(len(item) != 2 for item in items):
            raise DamagedCheckpoint("a dict entry that is not a [key, value] pair")
        return {decode(key, tensors): decode(item, tensors) for key, item in items}
    return {key: decode(item, tensors) for key, item in value.items()}


def _list(value: Any) -> list:
    if not isinstance(value, list):
        raise DamagedCheckpoint(f"a list was expected, not {type(value).__name__}")
    return value


# --- saving and loading -----------------------------------------------------------------------------------------

def save_checkpoint(path: Path, epoch: int, trainable: dict[str, torch.Tensor], optimizer, scheduler,
                    generator: torch.Generator, outcome, best_score: float, best_state, in_epoch: int = 0,
                    epoch_start: torch.Tensor | None = None) -> None:
    """Write the checkpoint folder ``path`` (``.../last``): complete or absent, never half written. Saved mid-epoch
    (``in_epoch`` batches of ``epoch`` trained), the data order's state is the one the epoch started with
    (``epoch_start``), so that the run that continues draws the same order and skips those batches."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = rng_states(generator)
    if in_epoch:
        rng["sampler"] = epoch_start
    state = {"epoch": epoch, "trainable": trainable, "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "rng": rng, "outcome": asdict(outcome),
             "best_score": best_score, "best_state": best_state, "in_epoch": in_epoch}
    tensors: dict[str, torch.Tensor] = {}
    document = {"format": FORMAT, "version": VERSION, "state": encode(state, "", tensors)}
    document["tensors"] = sorted(tensors)

    staging, previous = _sibling(path, "partial"), _sibling(path, "previous")
    _remove(staging)
    staging.mkdir()
    save_file(tensors, str(staging / TENSORS_FILE), metadata={"format": FORMAT})
    _write_synced(staging / STATE_FILE, json.dumps(document, allow_nan=True).encode("utf-8"))
    _fsync(staging / TENSORS_FILE)
    _remove(previous)
    if path.exists() or path.is_symlink():
        os.replace(path, previous)  # from here until the next rename, load_checkpoint reads the previous one
    os.replace(staging, path)
    _remove(previous)
    _remove(path.parent / LEGACY_FILE)


def load_checkpoint(path: Path | None, warn: bool = True) -> dict[str, Any] | None:
    """The checkpoint at ``path``, or None when there is none (a fresh run) or it cannot be read (logged)."""
    if path is None:
        return None
    path = Path(path)
    legacy = path.parent / LEGACY_FILE
    if warn and legacy.exists():
        log.warning("ignoring %s: an epoch checkpoint of an older peftlab (a pickle, never loaded); this run "
                    "trains from its start", legacy)
    found = next((folder for folder in (path, _sibling(path, "previous")) if folder.exists() or folder.is_symlink()),
                 None)
    if found is None:
        return None
    try:
        return read_checkpoint(found)
    except Exception as error:  # noqa: BLE001 - any unreadable checkpoint means: start over
        if warn:
            log.warning("ignoring the epoch checkpoint %s, which cannot be read (%s: %s); this run trains from its "
                        "start", found, type(error).__name__, str(error).splitlines()[0][:200] if str(error) else "")
        return None


def read_checkpoint(folder: Path) -> dict[str, Any]:
    """A checkpoint folder's state; DamagedCheckpoint (or the reader's own error) when it is not a whole one."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DamagedCheckpoint(f"{folder} is not a folder")
    document = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise DamagedCheckpoint(f"{STATE_FILE} is not a {FORMAT}")
    if document.get("version") != VERSION:
        raise DamagedCheckpoint(f"{FORMAT} version {document.get('version')!r}, this peftlab reads {VERSION}")
    tensors = load_file(str(folder / TENSORS_FILE))
    if sorted(tensors) != document.get("tensors"):
        raise DamagedCheckpoint(f"{TENSORS_FILE} does not hold the tensors {STATE_FILE} lists")
    state = decode(document.get("state"), tensors)
    _check(state)
    return state


def _check(state: Any) -> None:
    """The shape of a checkpoint's state: what the trainer reads is there, with the right types."""
    if not isinstance(state, dict):
        raise DamagedCheckpoint("the state is not a mapping")
    expected = {"epoch": int, "trainable": dict, "optimizer": dict, "scheduler": dict, "rng": dict, "outcome": dict,
                "best_score": (int, float), "best_state": (dict, type(None))}
    for key, kind in expected.items():
        if not isinstance(state.get(key), kind) or isinstance(state.get(key), bool):
            raise DamagedCheckpoint(f"{key!r} is missing or not a {getattr(kind, '__name__', kind)}")
    if not isinstance(state.get("in_epoch", 0), int) or state.get("in_epoch", 0) < 0:
        raise DamagedCheckpoint(f"'in_epoch' is {state.get('in_epoch')!r}, not a count of batches")
    if state["epoch"] < 1 or math.isnan(state["best_score"]):
        raise DamagedCheckpoint(f"epoch {state['epoch']}, best score {state['best_score']}")
    for key in ("trainable", "best_state"):
        if not all(isinstance(tensor, torch.Tensor) for tensor in (state[key] or {}).values()):
            raise DamagedCheckpoint(f"{key!r} holds something other than tensors")
    rng = state["rng"]
    for key in ("torch", "sampler"):
        if not isinstance(rng.get(key), torch.Tensor) or rng[key].dtype != torch.uint8:
            raise DamagedCheckpoint(f"the {key} RNG state is not a uint8 tensor")
    if not isinstance(rng.get("python"), tuple) or not isinstance(rng.get("numpy"), tuple):
        raise DamagedCheckpoint("the Python or NumPy RNG state is not a tuple")


def checkpoint_epoch(path: Path | None) -> int | None:
    """The epoch a checkpoint was saved after, or None when there is none (or it cannot be read: the trainer
    warns about that when it starts over)."""
    saved = load_checkpoint(path, warn=False)
    return None if saved is None else saved["epoch"]


def _sibling(path: Path, role: str) -> Path:
    return path.with_name(f".{path.name}.{role}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
