"""Run a classifier over a split: logits, loss, metrics; and per-example inference latency."""

from __future__ import annotations

import time

import numpy as np
import torch
from tqdm.auto import tqdm

from peftlab.evaluate.metrics import classification_metrics
from peftlab.models.load import is_encoder_decoder
from peftlab.tasks.encode import eval_loader


@torch.no_grad()
def predict_logits(model, dataset, tokenizer, batch_size: int, device, desc: str = "eval") -> tuple[np.ndarray, float]:
    """(logits in the dataset's row order, mean cross-entropy loss)."""
    model.eval()
    loader, order = eval_loader(dataset, tokenizer, batch_size)
    chunks, loss_sum = [], 0.0
    for batch in tqdm(loader, desc=desc, leave=False, mininterval=1.0, disable=None):
        batch = {k: v.to(device) for k, v in batch.items()}
        output = model(**batch)
        chunks.append(output.logits.float().cpu())
        loss_sum += float(output.loss) * len(batch["labels"])
    sorted_logits = torch.cat(chunks).numpy()
    logits = np.empty_like(sorted_logits)
    logits[np.asarray(order)] = sorted_logits
    return logits, loss_sum / max(len(dataset), 1)


def evaluate_split(model, dataset, tokenizer, batch_size: int, device, num_labels: int, desc: str = "eval") -> dict:
    logits, loss = predict_logits(model, dataset, tokenizer, batch_size, device, desc)
    metrics = classification_metrics(logits, np.asarray(dataset["labels"]), num_labels)
    return {**metrics, "loss": loss}


@torch.no_grad()
def inference_ms_per_example(model, dataset, tokenizer, device, examples: int = 32, warmup: int = 3) -> float:
    """Mean wall time of a forward pass on one example (batch size 1), after a few warm-up passes. An
    encoder-decoder keeps its token labels (the decoder's side, which it needs for a forward pass: teacher-forced,
    as in training); class labels, and a decoder's, are dropped."""
    model.eval()
    loader, _ = eval_loader(dataset.select(range(min(examples + warmup, len(dataset)))), tokenizer, 1)
    decoder_side = is_encoder_decoder(model.config)
    batches = [{k: v.to(device) for k, v in b.items() if k != "labels" or (decoder_side and v.ndim == 2)}
               for b in loader]
    for batch in batches[:warmup]:
        model(**batch)
    timed = batches[warmup:] or batches
    _synchronize(device)
    start = time.perf_counter()
    for batch in timed:
        model(**batch)
    _synchronize(device)
    return 1000 * (time.perf_counter() - start) / len(timed)


def _synchronize(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
