"""Multiple choice scored by likelihood, the way BIG-bench and lm-eval score causal LMs.

For every example and every choice, the log-likelihood of the choice's tokens after the prompt,
``sum_t log p(choice_t | prompt, choice_<t)``. The prediction is the choice with the highest *length-normalised*
log-likelihood (the mean over the choice's tokens), so long choices are not penalised for their length;
``accuracy_unnormalized`` uses the plain sum. The loss is the mean negative log-likelihood per token of the
correct choices (the training loss on the same rows), and perplexity its exponential.

A causal LM scores prompt + choice as one sequence (:func:`choice_log_likelihoods`); an encoder-decoder reads the
prompt with its encoder and scores the choice as the decoder's target (:func:`seq2seq_choice_log_likelihoods`),
both the same sum of log-probabilities of the choice's tokens. The task kind's variant picks which
(:mod:`peftlab.evaluate.kinds`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from tqdm.auto import tqdm

from peftlab.evaluate.metrics import accuracy, correctness, macro_f1

SCORING_BATCH = 16  # sequences per forward pass: logits are batch x length x vocabulary floats


def _sequences(dataset) -> list[tuple[int, int, list[int], int]]:
    """(example, choice, prompt + choice tokens, prompt length) for every choice of every example."""
    rows = []
    for example, (prompt, choices) in enumerate(zip(dataset["prompt_ids"], dataset["choice_ids"])):
        for choice, tokens in enumerate(choices):
            rows.append((example, choice, list(prompt) + list(tokens), len(prompt)))
    return rows


@torch.no_grad()
def choice_log_likelihoods(model, dataset, pad_token_id: int, device, batch_size: int = SCORING_BATCH,
                           desc: str = "score") -> list[list[tuple[float, int]]]:
    """Per example, per choice: (summed log-likelihood of the choice's tokens, number of those tokens)."""
    model.eval()
    rows = sorted(_sequences(dataset), key=lambda r: len(r[2]))
    scores: list[list[tuple[float, int]]] = [[(0.0, 0)] * len(c) for c in dataset["choice_ids"]]
    for start in tqdm(range(0, len(rows), batch_size), desc=desc, leave=False, mininterval=1.0, disable=None):
        chunk = rows[start:start + batch_size]
        width = max(len(r[2]) for r in chunk)
        input_ids = torch.full((len(chunk), width), pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for i, (_, _, tokens, _) in enumerate(chunk):
            input_ids[i, :len(tokens)] = torch.tensor(tokens)
            attention_mask[i, :len(tokens)] = 1
        logits = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits
        logits = logits[:, -width:]  # prompt tuning prepends virtual tokens to the outputs
        for i, (example, choice, tokens, prompt_length) in enumerate(chunk):
            # position t predicts token t + 1: the choice's tokens are predicted from prompt_length - 1 on
            predicted = logits[i, prompt_length - 1:len(tokens) - 1].float().log_softmax(-1)
            targets = torch.tensor(tokens[prompt_length:], device=predicted.device)
            log_likelihood = predicted.gather(-1, targets[:, None]).sum().item()
            scores[example][choice] = (log_likelihood, len(targets))
    return scores


@torch.no_grad()
def seq2seq_choice_log_likelihoods(model, dataset, pad_token_id: int, device, batch_size: int = SCORING_BATCH,
                                   desc: str = "score") -> list[list[tuple[float, int]]]:
    """Per example, per choice: (summed log-likelihood of the choice as the decoder's target given the prompt as the
    encoder's input, number of its tokens)."""
    model.eval()
    rows = [(example, choice, list(prompt), list(tokens))
            for example, (prompt, choices) in enumerate(zip(dataset["prompt_ids"], dataset["choice_ids"]))
            for choice, tokens in enumerate(choices)]
    rows.sort(key=lambda r: (len(r[2]), len(r[3])))
    scores: list[list[tuple[float, int]]] = [[(0.0, 0)] * len(c) for c in dataset["choice_ids"]]
    for start in tqdm(range(0, len(rows), batch_size), desc=desc, leave=False, mininterval=1.0, disable=None):
        chunk = rows[start:start + batch_size]
        width, target_width = max(len(r[2]) for r in chunk), max(len(r[3]) for r in chunk)
        input_ids = torch.full((len(chunk), width), pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(chunk), width), dtype=torch.long)
        labels = torch.full((len(chunk), target_width), -100, dtype=torch.long)
        for i, (_, _, prompt, tokens) in enumerate(chunk):
            input_ids[i, :len(prompt)] = torch.tensor(prompt)
            attention_mask[i, :len(prompt)] = 1
            labels[i, :len(tokens)] = torch.tensor(tokens)
        labels = labels.to(device)  # the model shifts them right into its decoder's inputs
        logits = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device), labels=labels).logits
        log_probs = logits[:, -target_width:].float().log_softmax(-1)  # position t predicts label t
        picked = log_probs.gather(-1, labels.clamp(min=0)[..., None])[..., 0] * (labels != -100)
        for i, (example, choice, _, tokens) in enumerate(chunk):
            scores[example][choice] = (picked[i].sum().item(), len(tokens))
    return scores


def choice_metrics(scores: list[list[tuple[float, int]]], answers: list[int]) -> dict[str, float]:
    normalised = np.array([int(np.argmax([ll / max(n, 1) for ll, n in s])) for s in scores])
    summed = np.array([int(np.argmax([ll for ll, _ in s])) for s in scores])
    true = np.asarray(answers)
    num_choices = max(len(s) for s in scores) if scores else 0
    correct_ll = sum(s[a][0] for s, a in zip(scores, answers))
    correct_tokens = sum(s[a][1] for s, a in zip(scores, answers))
    loss = -correct_ll / correct_tokens if correct_tokens else float("nan")
    return {"accuracy": accuracy(normalised, true), "accuracy_unnormalized": accuracy(summed, true),
            "macro_f1": macro_f1(normalised, true, num_choices), "loss": loss,
            "perplexity": math.exp(loss) if loss < 50 else float("inf"), "correct": correctness(normalised == true)}


def evaluate_choices(model, dataset, tokenizer, batch_size: int, device, num_labels: int = 0,
                     desc: str = "eval") -> dict[str, float]:
    """The multiple-choice scores of a split encoded by :mod:`peftlab.tasks.causal` (evaluate_split's signature)."""
    scores = choice_log_likelihoods(model, dataset, tokenizer.pad_token_id, device, min(batch_size, SCORING_BATCH), desc)
    return choice_metrics(scores, dataset["answer"])


def evaluate_seq2seq_choices(model, dataset, tokenizer, batch_size: int, device, num_labels: int = 0,
                             desc: str = "eval") -> dict[str, float]:
    """The multiple-choice scores of a split encoded by :mod:`peftlab.tasks.seq2seq` (evaluate_split's signature)."""
    scores = seq2seq_choice_log_likelihoods(model, dataset, tokenizer.pad_token_id, device,
                                            min(batch_size, SCORING_BATCH), desc)
    return choice_metrics(scores, dataset["answer"])
