"""Controlled probes: the same task with one factor turned up, so that a difference between methods that grows with
the factor is caused by it (the built-in suite `peft-probes-cpu`; issue "the built-in suite reaches conclusions").

A probe is a data spec, ``--data probe:<name>`` or ``probe:<name>=<argument>``, read like any other source
(:func:`peftlab.tasks.sources.read_source` reads the raw data and calls the builders here, which are pure functions
of it: no file, no network, the same rows for the same spec on every machine). The sentiment probes all start from
one fixed, balanced sample of the Rotten Tomatoes reviews (:func:`sentiment_splits`: 50% positive in every split,
the same rows in the same splits whatever the rendering), so that their scores are comparable row for row:

- ``probe:cipher=S`` — the reviews with a share ``S`` (0 to 1) of their word types written through a fixed letter
  substitution cipher (a derangement of a–z; which words, by a stable hash of the word; a word here is a
  space-separated token, its punctuation included, so ``movie`` and ``movie,`` are drawn apart): the meaning and the
  labels are kept (the map is one-to-one), the tokenizer's fit is not (ciphered words fall apart into pieces).
  ``cipher=0`` is the original text: the in-domain reference of every sentiment probe.
- ``probe:cyrillic=S`` — the same with the letters transliterated one by one into Cyrillic (another script; only
  letters that no tokenizer normalisation folds into another: no й, no ё).
- ``probe:drift=FILE`` — trained and validated on the movie reviews, tested on another domain with the same labels:
  FILE is a BIG-bench multiemo file (product reviews), its positive and negative sentences, balanced.
- ``probe:random-labels=N`` — N reviews with random, balanced labels, and the same rows as validation and test:
  the test score is how much of the training set a method can fit (capacity).
- ``probe:depth=D`` — a synthetic reasoning task whose difficulty is D (1 to 6): a chain of D comparisons stated in
  words, in shuffled order and mixed directions ("Ann is taller than Bob. Cal is shorter than Bob."), and a
  question about the chain's two ends; yes and no balanced.

Written here rather than taken from a library: these are a few lines of string rendering each, specific to the
claims they test; what matters is that they are deterministic and checked (tests/test_controlled_probes.py).
"""

from __future__ import annotations

import hashlib
import random
import string

import numpy as np
import pandas as pd

from peftlab.errors import DataError

PREFIX = "probe:"
SENTIMENT_LABELS = ("negative", "positive")
SENTIMENT_TEST, SENTIMENT_VALIDATION = 1000, 1000  # rows per held-out split of the sentiment sample (balanced)
DEPTH_SPLITS = {"train": 2000, "validation": 500, "test": 500}
MAX_DEPTH = 6
CYRILLIC = dict(zip(string.ascii_lowercase, "абцдефгхижклмнопюрстувшщыз"))
NAMES = ("Ann", "Bob", "Cal", "Dee", "Eve", "Fay", "Gus", "Hal", "Ida", "Jon", "Kim", "Lou", "Max", "Ned", "Oli",
         "Pam", "Ray", "Sue", "Tom", "Una", "Vic", "Wes", "Yan", "Zoe")
RELATIONS = (("taller", "shorter"), ("older", "younger"), ("heavier", "lighter"), ("faster", "slower"))
PROBES = {
    "cipher": "share of word types through a fixed letter cipher (0 to 1)",
    "cyrillic": "share of word types transliterated into Cyrillic (0 to 1)",
    "drift": "a BIG-bench multiemo file: test on its product reviews",
    "random-labels": "training examples with random labels (validation and test: the same rows)",
    "depth": f"comparisons chained per example (1 to {MAX_DEPTH})",
}


def is_probe(data: str) -> bool:
    return data.startswith(PREFIX)


def parse_probe(data: str) -> tuple[str, str | None]:
    """``probe:name=argument`` -> (name, argument); DataError naming the probes for anything else."""
    name, _, argument = data[len(PREFIX):].partition("=")
    if name not in PROBES:
        known = "; ".join(f"{PREFIX}{probe}=<{what}>" for probe, what in PROBES.items())
        raise DataError(f"unknown probe {data!r}; the probes are {known}")
    if not argument:
        raise DataError(f"{data}: give the probe its argument, {PREFIX}{name}=<{PROBES[name]}>")
    return name, argument


def share(argument: str, data: str) -> float:
    try:
        value = float(argument)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise DataError(f"{data}: the share must be a number from 0 to 1, got {argument!r}")
    return value


def whole(argument: str, data: str, low: int, high: int) -> int:
    if not argument.isdigit() or not low <= int(argument) <= high:
        raise DataError(f"{data}: expected a whole number from {low} to {high}, got {argument!r}")
    return int(argument)


# --- the sentiment sample and its renderings ---------------------------------------------------------------------

def sentiment_rows(reviews: pd.DataFrame) -> pd.DataFrame:
    """Rotten Tomatoes rows (``category`` fresh/rotten, ``text``) as ``text``/``label`` (positive/negative): texts
    stripped, repeated ones dropped, both classes cut to the smaller one's count, in a fixed shuffled order."""
    frame = pd.DataFrame({"text": reviews["text"].astype(str),
                          "label": reviews["category"].map({"fresh": "positive", "rotten": "negative"})})
    frame = frame[frame["text"].str.strip().astype(bool) & frame["label"].notna()]
    frame = frame.assign(text=frame["text"].str.strip()).drop_duplicates("text", keep=False)  # no text in two splits
    per_class = frame["label"].value_counts().min()
    rng = np.random.default_rng(0)
    kept = [group.iloc[rng.permutation(len(group))[:per_class]] for _, group in frame.groupby("label")]
    order = rng.permutation(2 * per_class)
    return pd.concat(kept).iloc[order].reset_index(drop=True)


def sentiment_splits(reviews: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The fixed sample as train/validation/test, every split half positive: test and validation take
    SENTIMENT_TEST and SENTIMENT_VALIDATION rows, train the rest."""
    rows = sentiment_rows(reviews)
    splits = {"train": [], "validation": [], "test": []}
    for _, group in rows.groupby("label", sort=True):
        test, validation = SENTIMENT_TEST // 2, SENTIMENT_VALIDATION // 2
        splits["test"].append(group.iloc[:test])
        splits["validation"].append(group.iloc[test:test + validation])
        splits["train"].append(group.iloc[test + validation:])
    return {name: pd.concat(parts).sort_index().reset_index(drop=True) for name, parts in splits.items()}


def letter_cipher() -> dict[str, str]:
    """A fixed derangement of a–z (no letter maps to itself), the same on every machine."""
    letters = list(string.ascii_lowercase)
    rng = random.Random(0)
    shuffled = letters[:]
    while any(a == b for a, b in zip(letters, shuffled)):
        rng.shuffle(shuffled)
    return dict(zip(letters, shuffled))


def _chosen(word: str, strength: float) -> bool:
    """Whether ``word`` is rendered at ``strength``: a stable hash of the lowercased word below the share, so a word
    is rendered everywhere or nowhere, and a stronger rendering renders a superset of a weaker one's words."""
    digest = hashlib.sha256(word.lower().encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64 < strength


def render(text: str, table: dict[str, str], strength: float) -> str:
    """``text`` with its chosen words' letters mapped through ``table`` (case kept; other characters unchanged)."""
    def word(token: str) -> str:
        if not _chosen(token, strength):
            return token
        return "".join(table[c] if c in table else table[c.lower()].upper() if c.lower() in table else c
                       for c in token)
    return " ".join(word(token) for token in text.split(" "))


def rendered_splits(reviews: pd.DataFrame, table: dict[str, str], strength: float) -> dict[str, pd.DataFrame]:
    return {name: frame.assign(text=[render(text, table, strength) for text in frame["text"]])
            for name, frame in sentiment_splits(reviews).items()}


def drift_splits(reviews: pd.DataFrame, target: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Train and validation from the movie reviews; test: ``target``'s (a BIG-bench multiemo frame: ``input``,
    ``target_scores``) positive and negative sentences, balanced, SENTIMENT_TEST of them at most."""
    splits = sentiment_splits(reviews)
    other = pd.DataFrame({"text": target["input"].astype(str), "label": target["target_scores"]})
    other = other[other["label"].isin(SENTIMENT_LABELS)]
    per_class = min(other["label"].value_counts().reindex(SENTIMENT_LABELS, fill_value=0).min(), SENTIMENT_TEST // 2)
    if per_class == 0:
        raise DataError("probe:drift needs a file with positive and negative examples (a BIG-bench multiemo file)")
    rng = np.random.default_rng(0)
    test = pd.concat(group.iloc[np.sort(rng.permutation(len(group))[:per_class])]
                     for _, group in other.groupby("label", sort=True))
    return {"train": splits["train"], "validation": splits["validation"],
            "test": test.iloc[rng.permutation(len(test))].reset_index(drop=True)}


def random_label_splits(reviews: pd.DataFrame, examples: int) -> dict[str, pd.DataFrame]:
    """``examples`` reviews (an even count) with random labels, half ``a`` and half ``b``; validation and test are
    the training rows themselves."""
    rows = sentiment_rows(reviews).iloc[:examples]
    labels = np.array(["a", "b"] * (len(rows) // 2) + ["a"] * (len(rows) % 2))
    train = pd.DataFrame({"text": rows["text"].to_numpy(), "label": np.random.default_rng(1).permutation(labels)})
    return {"train": train, "validation": train.copy(), "test": train.copy()}


# --- reasoning with a dial -------------------------------------------------------------------------------------

def depth_example(rng: random.Random, depth: int, answer: bool) -> str:
    """One example: ``depth`` adjacent comparisons of a chain of depth + 1 people (shuffled, each in a random
    direction), and a question about the chain's two ends whose answer is ``answer``."""
    people = rng.sample(NAMES, depth + 1)  # people[0] has the most of the quality, people[-1] the least
    more, less = rng.choice(RELATIONS)
    facts = [f"{people[k]} is {more} than {people[k + 1]}." if rng.random() < 0.5 else
             f"{people[k + 1]} is {less} than {people[k]}." for k in range(depth)]
    rng.shuffle(facts)
    first, last = people[0], people[-1]
    asked_more = rng.random() < 0.5  # "Is X taller than Y?" or "Is X shorter than Y?"
    subject_first = asked_more == answer  # the question's subject is the chain's top exactly when yes to "more"
    subject, other = (first, last) if subject_first else (last, first)
    return " ".join(facts) + f" Is {subject} {more if asked_more else less} than {other}?"


def depth_splits(depth: int) -> dict[str, pd.DataFrame]:
    """DEPTH_SPLITS examples per split at ``depth``, exactly half yes, seeded by the depth and the split; no text
    twice (the held-out splits are drawn first, and a drawn text already used is drawn again)."""
    seen: set[str] = set()
    splits = {}
    for name in ("test", "validation", "train"):
        rng = random.Random(f"depth-{depth}-{name}")
        answers = [k % 2 == 0 for k in range(DEPTH_SPLITS[name])]
        rng.shuffle(answers)
        texts = []
        for answer in answers:
            text = depth_example(rng, depth, answer)
            while text in seen:
                text = depth_example(rng, depth, answer)
            seen.add(text)
            texts.append(text)
        splits[name] = pd.DataFrame({"text": texts, "label": ["yes" if answer else "no" for answer in answers]})
    return {name: splits[name] for name in DEPTH_SPLITS}


def depth_answer(text: str) -> bool:
    """The true answer of a depth example, worked out from its words (the check the tests use)."""
    *facts, question = [sentence.strip() for sentence in text.replace("?", ".").split(".") if sentence.strip()]
    relation = next(pair for pair in RELATIONS if any(word in question.split() for word in pair))
    above: dict[str, str] = {}  # person -> the person right below them
    for fact in facts:
        a, _, word, _, b = fact.split()
        top, bottom = (a, b) if word == relation[0] else (b, a)
        above[top] = bottom
    _, subject, word, _, other = question.split()
    below, person = set(), subject
    while person in above:
        person = above[person]
        below.add(person)
    subject_more = other in below
    return subject_more if word == relation[0] else not subject_more
