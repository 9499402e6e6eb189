"""Load a trained run back from its folder (OUT/runs/<method>), whatever the method."""

from __future__ import annotations

from pathlib import Path

from peftlab.files import read_run_file
from peftlab.methods import get_method
from peftlab.models import ModelRef, load_classifier, load_tokenizer



def load_run(directory: str | Path):
    """(model, tokenizer, run info): the trained model rebuilt from the base it was trained on."""
    directory = Path(directory)
    info = read_run_file(directory)
    ref = ModelRef(info["model"], info["model_path"], info.get("gguf_file"))
    tokenizer = load_tokenizer(ModelRef(info["model"], str(directory)))
    base = load_classifier(ref, info["label_names"], tokenizer.pad_token_id)
    model = get_method(info["method"]).load(base, directory)
    model.eval()
    return model, tokenizer, info
