"""Generation evaluated by greedy decoding: exact match, normalised match, and validation perplexity.

Each prompt is completed greedily (no sampling) until EOS or ``max_new_tokens`` (the longest reference in the
split plus a margin). *Exact match*: the completion, stripped of surrounding whitespace, equals one of the
references. *Normalised match*: equal after SQuAD's normalisation (lower case, punctuation and English articles
removed, whitespace collapsed). Loss and perplexity are teacher-forced on the target tokens (prompt masked), the
training loss on held-out rows; ``neg_loss`` (its negative) is what the trainer selects the best epoch by, since
exact match on a small validation split is often tied (0 in every epoch early in training).

Two stacks, one evaluation each (the task kind's variant picks, :mod:`peftlab.evaluate.kinds`): a causal LM
(:func:`evaluate_generation`) continues its left-padded prompt, and its loss counts the labels it predicts after
the shift; an encoder-decoder (:func:`evaluate_seq2seq_generation`) encodes the right-padded prompt and writes the
answer from its decoder start token, and its loss counts every label (the decoder predicts each one).
"""

from __future__ import annotations

import math
import re
import string

import torch
from tqdm.auto import tqdm

from peftlab.evaluate.metrics import correctness
from peftlab.tasks.encode import eval_loader

MAX_NEW_TOKENS = 64  # cap on generated tokens per example
GENERATION_BATCH = 16


def normalize_answer(text: str) -> str:
    """SQuAD's answer normalisation: lower case, no punctuation, no a/an/the, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def match_scores(predictions: list[str], references: list[list[str]]) -> dict[str, float]:
    exact = [any(p.strip() == r.strip() for r in refs) for p, refs in zip(predictions, references)]
    normal = [any(normalize_answer(p) == normalize_answer(r) for r in refs) for p, refs in zip(predictions, references)]
    count = max(len(predictions), 1)
    return {"exact_match": sum(exact) / count, "normalized_match": sum(normal) / count, "correct": correctness(exact)}


@torch.no_grad()
def generate_answers(model, dataset, tokenizer, device, max_new_tokens: int, batch_size: int = GENERATION_BATCH,
                     desc: str = "generate", encoder_decoder: bool = False) -> list[str]:
    """Greedy completions of every row's ``prompt_ids``, in the dataset's order. A causal LM continues the prompt
    (left-padded: every prompt ends where generation starts; the echoed prompt is cut off); an encoder-decoder reads
    it as the encoder's input (right-padded) and answers from its decoder (its start token is cut off)."""
    model.eval()
    prompts = dataset["prompt_ids"]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    answers = [""] * len(prompts)
    pad = tokenizer.pad_token_id
    for start in tqdm(range(0, len(order), batch_size), desc=desc, leave=False, mininterval=1.0, disable=None):
        rows = order[start:start + batch_size]
        width = max(len(prompts[i]) for i in rows)
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for k, i in enumerate(rows):
            where = slice(0, len(prompts[i])) if encoder_decoder else slice(width - len(prompts[i]), width)
            input_ids[k, where] = torch.tensor(prompts[i])
            attention_mask[k, where] = 1
        input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
        output = model.generate(input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=max_new_tokens,
                                do_sample=False, num_beams=1, pad_token_id=pad, eos_token_id=tokenizer.eos_token_id)
        if encoder_decoder:
            output = output[:, 1:]  # the decoder's start token is not part of the answer
        elif output.shape[1] >= width and torch.equal(output[:, :width], input_ids):
            output = output[:, width:]  # the prompt is echoed back (unless generation ran from embeddings)
        for k, i in enumerate(rows):
            answers[i] = tokenizer.decode(output[k], skip_special_tokens=True).strip()
    return answers


@torch.no_grad()
def target_loss(model, dataset, tokenizer, batch_size: int, device, desc: str = "loss", shift: int = 1) -> float:
    """Mean cross-entropy per target token (labels != -100), teacher-forced. ``shift``: 1 for a causal LM, which
    predicts token t + 1 from position t (its first label is never predicted), 0 for an encoder-decoder."""
    model.eval()
    loader, _ = eval_loader(dataset, tokenizer, batch_size)
    loss_sum, tokens = 0.0, 0
    for batch in tqdm(loader, desc=desc, leave=False, mininterval=1.0, disable=None):
        batch = {k: v.to(device) for k, v in batch.items()}
        count = int((batch["labels"][:, shift:] != -100).sum())
        loss_sum += float(model(**batch).loss) * count
        tokens += count
    return loss_sum / tokens if tokens else float("nan")


def evaluate_generation(model, dataset, tokenizer, batch_size: int, device, num_labels: int = 0,
                        desc: str = "eval") -> dict[str, float]:
    """The generation scores of a split encoded by :mod:`peftlab.tasks.causal` (evaluate_split's signature)."""
    return _scores(model, dataset, tokenizer, batch_size, device, desc, encoder_decoder=False)


def evaluate_seq2seq_generation(model, dataset, tokenizer, batch_size: int, device, num_labels: int = 0,
                                desc: str = "eval") -> dict[str, float]:
    """The generation scores of a split encoded by :mod:`peftlab.tasks.seq2seq` (evaluate_split's signature)."""
    return _scores(model, dataset, tokenizer, batch_size, device, desc, encoder_decoder=True)


def _scores(model, dataset, tokenizer, batch_size: int, device, desc: str, encoder_decoder: bool) -> dict[str, float]:
    references = dataset["references"]
    longest = max((len(tokenizer(r, add_special_tokens=False)["input_ids"]) for refs in references for r in refs),
                  default=1)
    predictions = generate_answers(model, dataset, tokenizer, device, min(longest + 4, MAX_NEW_TOKENS),
                                   min(batch_size, GENERATION_BATCH), f"{desc} generate", encoder_decoder)
    shift = 0 if encoder_decoder else 1  # a causal LM predicts token t + 1 from position t
    loss = target_loss(model, dataset, tokenizer, min(batch_size, GENERATION_BATCH), device, f"{desc} loss", shift)
    return {**match_scores(predictions, references), "loss": loss, "neg_loss": -loss,
            "perplexity": math.exp(loss) if loss < 50 else float("inf")}
