"""Epoch checkpoints: what a run needs to continue after an interruption as if it had never stopped.

Saved at the end of every epoch (after validation): the trainable parameters (only those: the frozen base is
reloaded from the model files, identical on every load), the optimizer and scheduler states, the RNG states
(torch, CUDA, Python, NumPy, and the training sampler's generator, which fixes the next epochs' data order), and
the run's record so far (steps, losses, validation curve, best epoch and its trainable state). Resuming at an epoch
boundary puts the data position at the start of the next epoch. Written with ``torch.save`` to a temporary file
and renamed, so a checkpoint is either complete or absent. accelerate's ``save_state`` would also save the frozen
base weights of every PEFT run; this keeps a checkpoint as small as the trainable state.
"""

from __future__ import annotations

import os
import random
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch


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


def save_checkpoint(path: Path, epoch: int, trainable: dict[str, torch.Tensor], optimizer, scheduler,
                    generator: torch.Generator, outcome, best_score: float, best_state) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    torch.save({
        "epoch": epoch, "trainable": trainable, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "rng": rng_states(generator), "outcome": asdict(outcome), "best_score": best_score, "best_state": best_state,
    }, temporary)
    os.replace(temporary, path)


def load_checkpoint(path: Path | None) -> dict[str, Any] | None:
    """The checkpoint at ``path``, or None when there is none (a fresh run)."""
    if path is None or not Path(path).is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)


def checkpoint_epoch(path: Path | None) -> int | None:
    """The epoch a checkpoint was saved after, or None when there is none."""
    saved = load_checkpoint(path)
    return None if saved is None else saved["epoch"]
