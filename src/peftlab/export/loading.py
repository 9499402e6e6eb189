"""`load_adapter`: the trained model from an exported folder, whatever the method's format.

peft-format folders (lora, dora, ia3, prompt, prefix) also load with plain peft
(``AutoPeftModelForSequenceClassification.from_pretrained(folder)``); the project's own formats (the bottleneck
`adapter`, and `head`/`bitfit`'s trained tensors) need this function, because peft 0.21 cannot register a new
method type. It loads the base from the path recorded in the folder's ``peftlab_run.json`` and puts the
adapter on top.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from peftlab.errors import PeftlabError
from peftlab.files import RUN_FILE
from peftlab.study.artifacts import load_run


def load_adapter(directory: str | Path) -> nn.Module:
    """The trained model (eval mode): base from the recorded base path + the adapter in `directory`.

    The tokenizer is saved in the same folder: ``AutoTokenizer.from_pretrained(directory)``.
    """
    directory = Path(directory)
    if not (directory / RUN_FILE).is_file():
        raise PeftlabError(
            f"{directory} has no {RUN_FILE}: load_adapter reads folders written by `peftlab export --adapter` "
            "(for a plain peft folder use peft's AutoPeftModelForSequenceClassification.from_pretrained)"
        )
    model, _, _ = load_run(directory)
    return model
