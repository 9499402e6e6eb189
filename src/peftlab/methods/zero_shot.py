"""Zero-shot: nothing trains; the base model is evaluated as it is. The floor every method is read against.

- **Prompted tasks** (multiple choice by likelihood, generation) on a causal or seq2seq LM: the task is scored by
  the kind's own evaluation before any training, so the row is "what the pretrained model already knows".
- **Classification**: a classifier's head is random until it trains, so zero-shot reads the base instead: the
  text's sentence embedding (the mean of the base's last hidden states over its non-padding tokens, the mean
  pooling sentence-transformers models such as MiniLM were trained with) against each label's embedding, the
  embedding of the label's text (its name, or its description from ``label_descriptions``: the method's setting,
  or ``--label-descriptions FILE``). The logits are the cosine similarities times 20 (a temperature of 0.05, as in
  sentence-transformers' contrastive losses); the scale changes only the loss, not the predictions.
  Refused on an encoder-decoder classifier (its base's last state is the decoder's, not a sentence embedding) and
  on regression (there is no label to compare with).

Nothing is saved but the label embeddings (``label_embeddings.safetensors``, classification only): the rest is the
base. There is nothing to export or merge. The wrapper is written here rather than taken from a library because the
zero-shot reading has to run through the same evaluation, robustness and latency code as every trained run, which
call the model as a transformers sequence classifier.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from peftlab.errors import MethodError
from peftlab.methods.base import Method, freeze_all_but
from peftlab.models.load import is_encoder_decoder

LABEL_EMBEDDINGS_FILE = "label_embeddings.safetensors"
SIMILARITY_SCALE = 20.0  # logits = cosine similarity / 0.05
CLASSIFICATION = "classification"  # the task kind whose zero-shot reading is by similarity (tasks/kinds.py name)


@dataclass
class ZeroShotConfig:
    """Label -> the text whose embedding stands for it (classification); labels not named use their own name."""

    label_descriptions: dict | None = None


def mean_pooled(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    if attention_mask is None:
        return hidden.mean(dim=1)
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


class ZeroShotClassifier(nn.Module):
    """A sequence classifier whose logits are the similarities of the text's embedding to the labels'."""

    def __init__(self, classifier: nn.Module, label_embeddings: torch.Tensor | None = None):
        super().__init__()
        self.classifier = classifier  # its base embeds; its head is never used
        self.config = classifier.config
        hidden = label_embeddings if label_embeddings is not None else torch.zeros(classifier.config.num_labels, 1)
        self.register_buffer("label_embeddings", hidden)

    def get_input_embeddings(self):
        return self.classifier.get_input_embeddings()

    def embed(self, input_ids=None, attention_mask=None, **inputs) -> tuple[torch.Tensor, tuple]:
        output = self.classifier.base_model(input_ids=input_ids, attention_mask=attention_mask,
                                            output_hidden_states=True, **inputs)
        return mean_pooled(output.last_hidden_state.float(), attention_mask), output.hidden_states

    def forward(self, input_ids=None, attention_mask=None, labels=None, output_hidden_states=False, **inputs):
        inputs.pop("return_dict", None)
        sentence, hidden_states = self.embed(input_ids, attention_mask, **inputs)
        logits = SIMILARITY_SCALE * F.normalize(sentence, dim=-1) @ F.normalize(self.label_embeddings, dim=-1).T
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits,
                                        hidden_states=hidden_states if output_hidden_states else None)


class ZeroShot(Method):
    def refusal(self, model: nn.Module, settings: dict) -> str | None:
        if _is_sequence_classifier(model) and getattr(model.config, "problem_type", None) == "regression":
            return ("a regression head has no zero-shot reading (no label to compare the text with); the verdict's "
                    "floor for regression is predicting the training mean")
        if _is_sequence_classifier(model) and is_encoder_decoder(model.config):
            return ("zero-shot classification compares sentence embeddings, and an encoder-decoder classifier's base "
                    "ends in its decoder; use a multiple-choice task to score its labels by likelihood")
        return None

    def apply(self, model: nn.Module, settings: dict) -> nn.Module:
        self.check_applies(model, settings)
        freeze_all_but(model, lambda name: False)
        return ZeroShotClassifier(model) if _is_sequence_classifier(model) else model

    def bind_task(self, model: nn.Module, settings: dict, label_names: list[str] | None, tokenizer,
                  max_length: int) -> nn.Module:
        """Embed each label's text with the base (classification); a language model is used as it is."""
        if not isinstance(model, ZeroShotClassifier):
            return model
        texts = label_texts(label_names or [], settings.get("label_descriptions"))
        device = next(model.parameters()).device
        batch = tokenizer(texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt").to(device)
        model.eval()
        with torch.no_grad():
            embeddings, _ = model.embed(**batch)
        model.label_embeddings = embeddings.detach()
        return model

    def save(self, model: nn.Module, directory: Path) -> None:
        if isinstance(model, ZeroShotClassifier):
            save_file({"label_embeddings": model.label_embeddings.contiguous().cpu()}, str(directory / LABEL_EMBEDDINGS_FILE))

    def load(self, base_model: nn.Module, directory: Path) -> nn.Module:
        freeze_all_but(base_model, lambda name: False)
        if not _is_sequence_classifier(base_model):
            return base_model
        return ZeroShotClassifier(base_model, load_file(str(directory / LABEL_EMBEDDINGS_FILE))["label_embeddings"])


def label_texts(label_names: list[str], descriptions: dict | None) -> list[str]:
    """Each label's text: its description where one is given, else its name (underscores read as spaces)."""
    descriptions = descriptions or {}
    unknown = [str(key) for key in descriptions if str(key) not in label_names]
    if unknown:
        raise MethodError(f"label descriptions name labels the task does not have: {', '.join(unknown)} (labels: "
                          f"{', '.join(label_names)})")
    named = {str(key): str(value) for key, value in descriptions.items()}
    return [named.get(name, name.replace("_", " ")) for name in label_names]


def _is_sequence_classifier(model: nn.Module) -> bool:
    return type(model).__name__.endswith("ForSequenceClassification")


ZERO_SHOT = ZeroShot(
    name="zero-shot",
    summary="zero-shot: nothing trains; the base as it is (classification: similarity to each label's embedding)",
    learning_rate=1e-3,  # unused: nothing trains
    trains=False,
    task_kinds=("classification", "multiple-choice", "generation"),
    settings_class=ZeroShotConfig,
    merge_blocker="zero-shot trains nothing, so there is no update to merge; use the base model itself",
    adapter_blocker="zero-shot trains nothing, so there is no adapter; use the base model itself",
)
