"""Black-box adversarial attacks on a text classifier, bounded by a query budget per example.

Both attacks share one importance ranking per example (in the style of TextFooler / PWWS / DeepWordBug): each word
is scored by how much the probability of the true label falls when the word is removed (drop-one). Then, word by
word in that order, a few edited versions of the current text are scored in one batch; the attack stops at the
first label flip, or when the budget, the words, or the allowed share of changed words run out. When no
candidate flips the label, the one that lowers the true label's probability most is kept (if it lowers it).

- ``word_substitution``: a word is replaced by its nearest neighbours in the *base* model's input-embedding space
  (cosine above a threshold), among vocabulary tokens that are whole words. Stopwords are never replaced, and a
  small built-in list of antonyms (and un-/in-/dis- negations) is excluded, since raw embedding neighbours often
  include opposites ("good" ~ "bad"), which change the meaning rather than attack the model.
- ``char_edit`` (DeepWordBug): a word gets one character swapped, replaced by a neighbouring key, deleted, or
  inserted.

Queries are counted as texts scored by the model: the clean text (1), the ranking (one per ranked word; at most
half the budget, the rest of the words follow in text order), then the attack's candidates. The clean query and
the ranking are shared by the two attacks and counted in each, as each would need them on its own.

Attacks are generators that yield the texts they want scored and receive the class probabilities; ``run_attacks``
drives all examples together, so every round of queries of every example is one batched pass over the model.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Generator

import numpy as np
import torch

from peftlab.evaluate.perturb import (STOPWORDS, delete_char, has_keyboard_letter, insert_char, keyboard_char,
                                      remove_word, split_words, swap_chars, swappable_positions)
from peftlab.evaluate.stats import rate, wilson_interval

ATTACKS = ("word_substitution", "char_edit")

ANTONYMS = {frozenset(pair.split("/")) for pair in """
good/bad best/worst better/worse great/terrible great/awful love/hate loved/hated loves/hates like/dislike
happy/sad beautiful/ugly interesting/boring funny/unfunny strong/weak smart/stupid success/failure
positive/negative win/lose won/lost right/wrong true/false always/never more/less many/few easy/hard
fresh/stale rich/poor hot/cold old/new old/young brilliant/dull exciting/dull exciting/boring clever/dumb
wonderful/horrible wonderful/awful awesome/awful excellent/poor excellent/terrible fun/boring fun/dull
entertaining/tedious masterpiece/mess superb/awful best/bad good/worse good/poor good/terrible good/awful
light/dark first/last top/bottom high/low rise/fall pass/fail fast/slow fast/boring big/small large/small
""".split()}
NEGATION_PREFIXES = ("un", "in", "im", "dis", "non", "ir", "il")

Query = Generator[list[str], np.ndarray, "AttackOutcome"]


@dataclass
class AttackSettings:
    query_budget: int = 100  # texts scored per example and attack, the clean text and the ranking included
    max_words_changed: float = 0.2  # at most this share of the words (at least one word)
    neighbours: int = 8  # candidates per word for the word substitution
    min_cosine: float = 0.5  # neighbours closer than this in the base model's input embeddings are not used


@dataclass
class AttackOutcome:
    correct: bool  # the clean text was classified right; only those are attacked
    success: bool = False
    words_changed: int = 0
    words: int = 0
    queries: int = 0
    text: str | None = None  # the adversarial text, when the attack succeeded


# --- the embedding-neighbour table ------------------------------------------------------------------------------

def whole_word_vocabulary(tokenizer, rows: int) -> dict[str, int]:
    """Lower-cased word -> token id, for vocabulary tokens that are one alphabetic whole word (no word pieces,
    no stopwords): a token counts when `` word`` tokenizes back to exactly that token."""
    items = sorted((i, t) for t, i in tokenizer.get_vocab().items() if i < rows)
    strings = tokenizer.batch_decode([[i] for i, _ in items])
    candidates = [(s.strip(), i) for s, (i, _) in zip(strings, items)]
    candidates = [(s, i) for s, i in candidates if len(s) >= 2 and s.isalpha() and s.lower() not in STOPWORDS]
    encoded = tokenizer([" " + s for s, _ in candidates], add_special_tokens=False)["input_ids"]
    vocabulary: dict[str, int] = {}
    for (word, token), ids in zip(candidates, encoded):
        if list(ids) == [token]:
            vocabulary.setdefault(word.lower(), token)
    return vocabulary


def _related(word: str, other: str) -> bool:
    """Antonyms (from the built-in list) or one word the negation of the other (un-/in-/dis-...)."""
    if frozenset((word, other)) in ANTONYMS:
        return True
    return any(other == p + word or word == p + other for p in NEGATION_PREFIXES)


@torch.no_grad()
def neighbour_table(words: set[str], vocabulary: dict[str, int], embeddings: torch.Tensor,
                    settings: AttackSettings) -> dict[str, list[str]]:
    """For each (lower-cased) word that is a whole-word token: its nearest whole-word tokens by cosine of input
    embeddings, closest first, above ``settings.min_cosine``, at most ``settings.neighbours``."""
    queries = sorted(w for w in words if w in vocabulary)
    if not queries or settings.neighbours < 1:
        return {}
    names = list(vocabulary)
    matrix = torch.nn.functional.normalize(embeddings[[vocabulary[n] for n in names]].float(), dim=1)
    position = {name: k for k, name in enumerate(names)}
    similarity = matrix[[position[w] for w in queries]] @ matrix.T
    scores, indices = similarity.topk(min(len(names), settings.neighbours + 16), dim=1)
    table = {}
    for word, row_scores, row_indices in zip(queries, scores.tolist(), indices.tolist()):
        found = [names[k] for s, k in zip(row_scores, row_indices)
                 if s >= settings.min_cosine and names[k] != word and not _related(word, names[k])]
        if found:
            table[word] = found[:settings.neighbours]
    return table


def attack_words(texts: list[str]) -> set[str]:
    """The lower-cased words of these texts that the word substitution may replace."""
    return {w.lower() for text in texts for w in split_words(text)[1::2] if w.lower() not in STOPWORDS}


# --- one example ------------------------------------------------------------------------------------------------

def _match_case(candidate: str, word: str) -> str:
    if word.isupper() and len(word) > 1:
        return candidate.upper()
    return candidate.capitalize() if word[:1].isupper() else candidate


def word_candidates(neighbours: dict[str, list[str]]) -> Callable[[str, random.Random], list[str]]:
    def candidates(word: str, rng: random.Random) -> list[str]:
        key = word.lower()
        return [] if key in STOPWORDS else [_match_case(n, word) for n in neighbours.get(key, [])]
    return candidates


def char_candidates(word: str, rng: random.Random) -> list[str]:
    """One of each DeepWordBug edit that applies to the word: swap, keyboard neighbour, delete, insert."""
    if not any(c.isalpha() for c in word):
        return []
    edits = [swap_chars] if swappable_positions(word) else []
    edits += [keyboard_char] if has_keyboard_letter(word) else []
    edits += [delete_char] if len(word) >= 2 else []
    found = []
    for edit in [*edits, insert_char]:
        edited = edit(word, rng)
        if edited != word and edited not in found:
            found.append(edited)
    return found


def attack_example(text: str, label: int, attacks: dict[str, Callable], settings: AttackSettings,
                   seed: int = 0) -> Generator[list[str], np.ndarray, dict[str, AttackOutcome]]:
    """Score the clean text, rank its words, then run each attack; returns attack name -> outcome."""
    parts = split_words(text)
    probabilities = yield [text]
    if int(probabilities[0].argmax()) != label:
        return {name: AttackOutcome(correct=False) for name in attacks}
    clean = float(probabilities[0, label])
    positions = list(range(1, len(parts), 2))
    ranked = positions[:max(0, min(len(positions), settings.query_budget // 2))]
    importance = [0.0] * len(ranked)
    if ranked:
        probabilities = yield [_without(parts, j) for j in ranked]
        importance = list(clean - probabilities[:, label])
    order = [j for _, j in sorted(zip(importance, ranked), key=lambda pair: -pair[0])] + positions[len(ranked):]
    outcomes = {}
    for name, candidates in attacks.items():
        rng = random.Random(f"{seed}|{name}|{text}")
        outcomes[name] = yield from _greedy(parts, order, label, clean, 1 + len(ranked), candidates, rng, settings)
    return outcomes


def _without(parts: list[str], j: int) -> str:
    edited = list(parts)
    remove_word(edited, j)
    return "".join(edited)


def _greedy(parts: list[str], order: list[int], label: int, true_probability: float, queries: int,
            candidates: Callable, rng: random.Random, settings: AttackSettings) -> Query:
    """Edit words in ``order`` until the label flips; keep an edit only when it lowers the true label's probability."""
    parts, changed = list(parts), 0
    max_changes = max(1, int(settings.max_words_changed * len(order)))
    for j in order:
        remaining = settings.query_budget - queries
        if remaining <= 0 or changed >= max_changes:
            break
        options = candidates(parts[j], rng)[:remaining]
        if not options:
            continue
        probabilities = yield ["".join(parts[:j] + [option] + parts[j + 1:]) for option in options]
        queries += len(options)
        scores = probabilities[:, label]
        flipped = np.flatnonzero(probabilities.argmax(axis=1) != label)
        if flipped.size:
            parts[j] = options[int(flipped[np.argmin(scores[flipped])])]
            return AttackOutcome(True, True, changed + 1, len(order), queries, "".join(parts))
        best = int(np.argmin(scores))
        if scores[best] < true_probability:
            parts[j], true_probability, changed = options[best], float(scores[best]), changed + 1
    return AttackOutcome(True, False, changed, len(order), queries)


# --- every example together -------------------------------------------------------------------------------------

def run_attacks(score: Callable[[list[str], list[str | None] | None], np.ndarray], texts: list[str],
                pairs: list[str | None] | None, labels: list[int], neighbours: dict[str, list[str]],
                settings: AttackSettings, seed: int = 0,
                names: tuple[str, ...] = ATTACKS) -> list[dict[str, AttackOutcome]]:
    """Run the attacks ``names`` on every example; ``score(texts, pairs)`` returns class probabilities. Each round,
    the queries of all the examples still running are scored in one call."""
    known = {"word_substitution": word_candidates(neighbours), "char_edit": char_candidates}
    attacks = {name: known[name] for name in names}
    generators = [attack_example(t, y, attacks, settings, seed) for t, y in zip(texts, labels)]
    pending = {i: next(g) for i, g in enumerate(generators)}
    outcomes: list = [None] * len(texts)
    while pending:
        ids = list(pending)
        batch = [t for i in ids for t in pending[i]]
        batch_pairs = [pairs[i] for i in ids for _ in pending[i]] if pairs is not None else None
        probabilities = score(batch, batch_pairs)
        start = 0
        for i in ids:
            chunk = probabilities[start:start + len(pending[i])]
            start += len(pending[i])
            try:
                pending[i] = generators[i].send(chunk)
            except StopIteration as stop:
                outcomes[i] = stop.value
                del pending[i]
    return outcomes


def summarise(outcomes: list[AttackOutcome], query_budget: int) -> dict:
    """Success rate (flipped / originally correct) with its 95% Wilson interval, the mean share of words changed
    (over successful attacks), and the mean and largest number of queries (over attacked examples)."""
    attacked = [o for o in outcomes if o.correct]
    succeeded = [o for o in attacked if o.success]
    return {
        "success_rate": rate(len(succeeded), len(attacked)),
        "ci95": wilson_interval(len(succeeded), len(attacked)),
        "mean_words_changed": float(np.mean([o.words_changed / o.words for o in succeeded])) if succeeded else None,
        "mean_queries": float(np.mean([o.queries for o in attacked])) if attacked else None,
        "max_queries": max((o.queries for o in attacked), default=0),
        "query_budget": query_budget,
        "examples": len(outcomes),
        "attacked": len(attacked),
        "succeeded": len(succeeded),
    }
