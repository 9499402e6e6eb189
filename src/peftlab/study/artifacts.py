"""Load a trained run back from its folder (OUT/runs/<method>), whatever the method."""

from __future__ import annotations

from pathlib import Path

from peftlab.files import read_run_file
from peftlab.methods import get_method
from peftlab.models import ModelRef, load_tokenizer
from peftlab.tasks.kinds import task_kind


def load_run(directory: str | Path):
    """(model, tokenizer, run info): the trained model rebuilt from the base it was trained on, with the head its
    task kind needs (runs saved before the kind was recorded are classifiers)."""
    directory = Path(directory)
    info = read_run_file(directory)
    ref = ModelRef(info["model"], info["model_path"], info.get("gguf_file"))
    tokenizer = load_tokenizer(ModelRef(info["model"], str(directory)))
    kind = task_kind(info.get("task_type", "classification"))
    base = kind.load_model(ref, info["label_names"], tokenizer.pad_token_id)
    model = get_method(info["method"]).load(base, directory)
    model.eval()
    return model, tokenizer, info
