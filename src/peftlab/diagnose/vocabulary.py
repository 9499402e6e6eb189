"""Vocabulary fit: how well the model's tokenizer covers the task's text.

Four numbers, each on the task's text and on the same-sized reference English sample (so the contrast shows):

- ``fertility``: subword tokens per word (a word is a run of letters/digits, ``\\w+``, tokenized alone);
- ``unknown_rate``: share of those tokens that are the tokenizer's unknown token;
- ``split3_rate``: share of words split into 3 or more tokens;
- ``uncovered_char_rate``: share of the word characters that the tokenizer does not "know well": a character
  is well covered when it occurs in some vocabulary entry of 3 or more characters (so the tokenizer has
  learned merges for its script). An English WordPiece vocabulary holds Cyrillic letters only as single
  characters, so Russian text scores near 1 here; English text scores near 0.

High values mean the embeddings (or new tokens) would have to change for the model to read the task well.
"""

from __future__ import annotations

import re
from collections import Counter

WORD = re.compile(r"\w+", re.UNICODE)
MIN_ENTRY_CHARS = 3  # a character in a vocabulary entry this long counts as well covered
SUBWORD_MARKERS = ("##", "Ġ", "▁", "Ċ")


def words_of(texts: list[str]) -> Counter:
    """Word counts over the texts (case kept: the tokenizer decides about case)."""
    counts: Counter = Counter()
    for text in texts:
        counts.update(WORD.findall(text))
    return counts


def covered_characters(tokenizer) -> frozenset[str]:
    """Characters that occur in a vocabulary entry of at least MIN_ENTRY_CHARS characters (cached on the tokenizer)."""
    cached = getattr(tokenizer, "_peftlab_covered_characters", None)
    if cached is not None:
        return cached
    byte_level = _looks_byte_level(tokenizer)
    special = set(tokenizer.all_special_tokens)
    characters: set[str] = set()
    for token, index in tokenizer.get_vocab().items():
        if token in special:
            continue
        text = _entry_text(tokenizer, token, index, byte_level)
        if len(text) >= MIN_ENTRY_CHARS:
            characters.update(text)
    covered = frozenset(characters)
    tokenizer._peftlab_covered_characters = covered
    return covered


def _entry_text(tokenizer, token: str, index: int, byte_level: bool) -> str:
    """A vocabulary entry as the characters it stands for (byte-level entries decoded, markers dropped)."""
    if byte_level:
        text = tokenizer.decode([index], clean_up_tokenization_spaces=False)
        return "" if "\ufffd" in text else text.strip()
    for marker in SUBWORD_MARKERS:
        token = token.replace(marker, "")
    return token.strip()


def _normalizer(tokenizer):
    """The tokenizer's own text normalisation (lower-casing, accent stripping), else identity."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    normalizer = getattr(backend, "normalizer", None)
    return normalizer.normalize_str if normalizer is not None else (lambda text: text)


def _looks_byte_level(tokenizer) -> bool:
    """Byte-level BPE (GPT-2, Llama 3, SmolLM) stores non-ASCII text as byte symbols such as 'Ð'."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    return backend is not None and "ByteLevel" in str(backend.pre_tokenizer)


def vocabulary_fit(texts: list[str], tokenizer, max_words: int = 20000) -> dict:
    """The four vocabulary numbers over the texts' words (the most frequent ``max_words`` distinct words,
    weighted by their counts)."""
    counts = words_of(texts)
    if not counts:
        return {"words": 0, "fertility": None, "unknown_rate": None, "split3_rate": None, "uncovered_char_rate": None}
    distinct = [word for word, _ in counts.most_common(max_words)]
    pieces = tokenizer(distinct, add_special_tokens=False)["input_ids"]
    unk = tokenizer.unk_token_id
    covered = covered_characters(tokenizer)
    normalize = _normalizer(tokenizer)
    words = tokens = unknown = split3 = characters = uncovered = 0
    for word, ids in zip(distinct, pieces):
        n = counts[word]
        words += n
        tokens += n * len(ids)
        unknown += n * sum(1 for i in ids if unk is not None and i == unk)
        split3 += n * (len(ids) >= 3)
        characters += n * len(word)
        uncovered += n * sum(1 for c in normalize(word) if c not in covered and not c.isdigit())
    return {
        "words": words,
        "distinct_words": len(distinct),
        "fertility": tokens / words,
        "unknown_rate": unknown / tokens if tokens else 0.0,
        "split3_rate": split3 / words,
        "uncovered_char_rate": uncovered / characters,
    }
