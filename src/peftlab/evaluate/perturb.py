"""Seeded text perturbations: character typos, casing, punctuation noise, word edits and a distractor clause.

Pure Python and deterministic: the random choices for a text depend only on the seed, the perturbation's name
and the text itself (``random.Random`` seeded with a string is stable across processes), never on the order in
which texts are perturbed. Nothing is downloaded; the keyboard map, the stopwords and the distractor clauses are
small lists in this module. Written here rather than taken from nlpaug/TextAttack: those pull in large
dependencies (and some download word lists) for what is a few lines of string editing each.

A text is split into words (``\\w+``, keeping inner apostrophes: ``isn't``, ``n't``) and the separators between
them, which are kept as they are, so an edit changes only what it claims. ``severity`` is the fraction of the
text's words that a perturbation touches (at least one): a character-level perturbation edits one character in
each touched word, casing re-cases each touched word, punctuation noise puts a mark after each, word drop /
repeat remove / double each, word swap exchanges neighbours pairwise (each pair touches two words). The
distractor appends one irrelevant clause whatever the severity.
"""

from __future__ import annotations

import random
import re
from typing import Callable

WORD = re.compile(r"(\w+(?:['’]\w+)*)")

KEYBOARD_NEIGHBOURS = {  # QWERTY: the keys around each letter
    "q": "wa", "w": "qeas", "e": "wrsd", "r": "etdf", "t": "ryfg", "y": "tugh", "u": "yihj", "i": "uojk", "o": "ipkl",
    "p": "ol", "a": "qwsz", "s": "weadzx", "d": "erfsxc", "f": "rtgdcv", "g": "tyhfvb", "h": "yujgbn", "j": "uikhnm",
    "k": "iojlm", "l": "opk", "z": "asx", "x": "sdzc", "c": "dfxv", "v": "fgcb", "b": "ghvn", "n": "hjbm", "m": "jkn",
}

STOPWORDS = frozenset("""
a about above after again against all am an and any are aren't as at be because been before being below between
both but by can could did didn't do does doesn't doing don't down during each few for from further had has have
having he her here hers herself him himself his how i if in into is isn't it it's its itself just me more most my
myself no nor not now n't of off on once only or other our ours ourselves out over own same she should so some such
than that that's the their theirs them themselves then there these they this those through to too under until up
very was wasn't we were weren't what when where which while who whom why will with would you your yours yourself
yourselves 's 're 've 'll 'd s t ll ve re d m
""".split())

PUNCTUATION_MARKS = [",", ".", "!", "?", ";", ":", "-", "..."]

DISTRACTORS = [
    "and the weather was nice that day.",
    "and true is true.",
    "and I had a sandwich before it started.",
    "and the building across the street has a blue door.",
    "and it was shown on a Tuesday.",
    "and the tickets were printed on paper.",
    "and there were chairs in the room.",
    "and the clock on the wall said half past seven.",
]

Perturbation = Callable[[list[str], random.Random, float], None]


def split_words(text: str) -> list[str]:
    """[separator, word, separator, word, ..., separator]: words at odd positions; ''.join gives the text back."""
    return WORD.split(text)


def word_count(text: str) -> int:
    return len(WORD.findall(text))


def touch_count(words: int, severity: float, eligible: int) -> int:
    """How many words a perturbation touches: severity x words, at least one, at most the eligible ones."""
    return min(eligible, max(1, round(severity * words))) if eligible else 0


def _edit_words(parts: list[str], rng: random.Random, severity: float, eligible: Callable[[str], bool],
                edit: Callable[[str, random.Random], str]) -> None:
    """Apply ``edit`` to a seeded choice of severity x words among those ``eligible`` (in place)."""
    positions = [j for j in range(1, len(parts), 2) if eligible(parts[j])]
    chosen = rng.sample(positions, touch_count(len(parts) // 2, severity, len(positions)))
    for j in sorted(chosen):
        parts[j] = edit(parts[j], rng)


# --- character level --------------------------------------------------------------------------------------------

def swappable_positions(word: str) -> list[int]:
    return [i for i in range(len(word) - 1) if word[i] != word[i + 1]]


def swap_chars(word: str, rng: random.Random) -> str:
    """Swap two different neighbouring characters ("film" -> "flim")."""
    i = rng.choice(swappable_positions(word))
    return word[:i] + word[i + 1] + word[i] + word[i + 2:]


def delete_char(word: str, rng: random.Random) -> str:
    i = rng.randrange(len(word))
    return word[:i] + word[i + 1:]


def insert_char(word: str, rng: random.Random) -> str:
    i = rng.randrange(len(word) + 1)
    return word[:i] + rng.choice("abcdefghijklmnopqrstuvwxyz") + word[i:]


def keyboard_char(word: str, rng: random.Random) -> str:
    """Replace one letter by a neighbouring key on a QWERTY keyboard, keeping its case."""
    i = rng.choice([k for k, c in enumerate(word) if c.lower() in KEYBOARD_NEIGHBOURS])
    new = rng.choice(KEYBOARD_NEIGHBOURS[word[i].lower()])
    return word[:i] + (new.upper() if word[i].isupper() else new) + word[i + 1:]


def has_keyboard_letter(word: str) -> bool:
    return any(c.lower() in KEYBOARD_NEIGHBOURS for c in word)


def char_swap(parts, rng, severity):
    _edit_words(parts, rng, severity, lambda w: len(w) >= 2 and bool(swappable_positions(w)), swap_chars)


def char_delete(parts, rng, severity):
    _edit_words(parts, rng, severity, lambda w: len(w) >= 2, delete_char)


def char_insert(parts, rng, severity):
    _edit_words(parts, rng, severity, lambda w: True, insert_char)


def char_keyboard(parts, rng, severity):
    _edit_words(parts, rng, severity, has_keyboard_letter, keyboard_char)


# --- casing and punctuation -------------------------------------------------------------------------------------

def _recase(word: str, rng: random.Random) -> str:
    options = [c for c in (word.upper(), word.lower(), word.title(), word.swapcase()) if c != word]
    return rng.choice(sorted(set(options)))


def casing(parts, rng, severity):
    _edit_words(parts, rng, severity, lambda w: w.upper() != w.lower(), _recase)


def punctuation(parts, rng, severity):
    _edit_words(parts, rng, severity, lambda w: True, lambda w, r: w + r.choice(PUNCTUATION_MARKS))


# --- word level -------------------------------------------------------------------------------------------------

def remove_word(parts: list[str], j: int) -> None:
    """Remove the word at ``parts[j]`` and the whitespace on one side of it (in place)."""
    parts[j] = ""
    if parts[j + 1].isspace():
        parts[j + 1] = ""
    elif parts[j - 1].isspace():
        parts[j - 1] = ""


def word_drop(parts, rng, severity):
    """Remove words (never all of them), each with the whitespace on one side."""
    positions = list(range(1, len(parts), 2))
    for j in rng.sample(positions, touch_count(len(positions), severity, len(positions) - 1)):
        remove_word(parts, j)


def word_repeat(parts, rng, severity):
    _edit_words(parts, rng, severity, lambda w: True, lambda w, r: f"{w} {w}")


def word_swap(parts, rng, severity):
    """Exchange severity x words / 2 non-overlapping pairs of different neighbouring words."""
    words = parts[1::2]
    candidates = [i for i in range(len(words) - 1) if words[i] != words[i + 1]]
    rng.shuffle(candidates)
    wanted = max(1, round(severity * len(words) / 2)) if candidates else 0
    used: set[int] = set()
    for i in candidates:
        if len(used) >= 2 * wanted:
            break
        if i in used or i + 1 in used:
            continue
        used |= {i, i + 1}
        a, b = 2 * i + 1, 2 * i + 3
        parts[a], parts[b] = parts[b], parts[a]


def distractor(parts, rng, severity):
    """Append one irrelevant clause from DISTRACTORS (severity does not apply)."""
    parts[-1] = parts[-1].rstrip() + " " + rng.choice(DISTRACTORS)


PERTURBATIONS: dict[str, Perturbation] = {
    "char_swap": char_swap,
    "char_delete": char_delete,
    "char_insert": char_insert,
    "char_keyboard": char_keyboard,
    "casing": casing,
    "punctuation": punctuation,
    "word_drop": word_drop,
    "word_repeat": word_repeat,
    "word_swap": word_swap,
    "distractor": distractor,
}

FAMILIES = {  # for the terminal table: perturbations summarised together
    "char": ("char_swap", "char_delete", "char_insert", "char_keyboard"),
    "word": ("word_drop", "word_repeat", "word_swap"),
    "noise": ("casing", "punctuation"),
    "distractor": ("distractor",),
}


def perturb(text: str, name: str, severity: float, seed: int = 0) -> str:
    """``text`` with the perturbation ``name`` applied at ``severity``; the same inputs always give the same text."""
    parts = split_words(text)
    PERTURBATIONS[name](parts, random.Random(f"{seed}|{name}|{severity}|{text}"), severity)
    return "".join(parts)
