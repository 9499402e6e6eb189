"""Robustness of a fine-tuned classifier: accuracy on perturbed test texts, adversarial attacks, external sets.

A :class:`RobustnessSuite` is built once per study (:func:`build_suite`): a seeded sample of the test split, each
perturbation of :mod:`peftlab.evaluate.perturb` applied to it, the examples to attack and their embedding
neighbours (from the *base* model, :mod:`peftlab.evaluate.attacks`), and optionally an external labelled set
(``--robust-set``). Every method is then evaluated on exactly these texts (:func:`evaluate_robustness`).

For pairs (a ``text_pair`` column), only the first text is perturbed and attacked; the second stays as it is.
Test examples with fewer than two words, or longer than the study's max length in tokens (the model would not
see all of an edit), are skipped and counted in ``skipped``; so are robust-set rows with an empty text or a label
the study does not know.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from peftlab.errors import ConfigError, DataError
from peftlab.evaluate.attacks import ATTACKS, AttackSettings, attack_words, neighbour_table, run_attacks, summarise
from peftlab.evaluate.attacks import whole_word_vocabulary
from peftlab.evaluate.perturb import FAMILIES, PERTURBATIONS, perturb, word_count
from peftlab.evaluate.stats import bootstrap_mean_interval, rate, wilson_interval
from peftlab.models import load_classifier
from peftlab.tasks.labelled import is_int, is_missing, label_str, resolve_columns, to_frame
from peftlab.tasks.sources import read_source

log = logging.getLogger(__name__)


@dataclass
class RobustnessSettings:
    perturb_examples: int = 500  # test examples perturbed (by each perturbation); the same for every method
    severity: float = 0.2  # share of words each perturbation touches
    perturbations: list[str] = field(default_factory=lambda: list(PERTURBATIONS))
    attack_examples: int = 50  # of those, attacked; the same for every method
    attack: AttackSettings = field(default_factory=AttackSettings)
    robust_set: str | None = None
    batch_size: int = 128
    seed: int = 0

    def check(self) -> None:
        if self.perturb_examples < 1 or self.attack_examples < 0:
            raise ConfigError("--perturb-examples must be at least 1 and --attack-examples at least 0, got "
                              f"{self.perturb_examples} and {self.attack_examples}")
        if not 0 < self.severity <= 1:
            raise ConfigError(f"--perturb-severity is a share of words, above 0 and at most 1; got {self.severity}")
        if self.attack.query_budget < 1:
            raise ConfigError(f"--attack-query-budget must be at least 1, got {self.attack.query_budget}")
        unknown = [name for name in self.perturbations if name not in PERTURBATIONS]
        if unknown:
            raise ConfigError(f"unknown perturbation {unknown[0]!r}; known: {', '.join(PERTURBATIONS)}")

    def describe(self) -> dict:
        return asdict(self)


@dataclass
class Examples:
    texts: list[str]
    pairs: list[str] | None
    labels: list[int]

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: list[int]) -> Examples:
        return Examples([self.texts[i] for i in indices], [self.pairs[i] for i in indices] if self.pairs else None,
                        [self.labels[i] for i in indices])


@dataclass
class RobustnessSuite:
    """Everything every method is evaluated on; built once per study."""

    settings: RobustnessSettings
    max_length: int
    clean: Examples
    perturbed: dict[str, list[str]]  # name -> the clean texts, perturbed (same order, same labels)
    attack: Examples
    neighbours: dict[str, list[str]]
    skipped: dict[str, int]
    robust_set: Examples | None = None
    robust_set_info: dict = field(default_factory=dict)
    build_seconds: float | None = None  # wall time to build the suite (base embeddings included), once per study

    def describe(self) -> dict:
        """For the study header: the settings, what the suite holds, and what it cost to build."""
        return {"settings": self.settings.describe(), "examples": len(self.clean), "attack_examples": len(self.attack),
                "words_with_neighbours": len(self.neighbours), "skipped": dict(self.skipped),
                "robust_set": self.robust_set_info or None, "build_seconds": self.build_seconds}


# --- building the suite -----------------------------------------------------------------------------------------

def build_suite(task, tokenizer, embeddings: torch.Tensor, max_length: int,
                settings: RobustnessSettings, robust_set: tuple[Examples, dict] | None = None) -> RobustnessSuite:
    """Sample, perturb and prepare the attacks on the task's test split; read the robust set (DataError if it
    cannot be used), unless ``robust_set`` is what :func:`load_robust_set` already read from it. ``embeddings``: the
    base model's input embeddings, for the word-substitution neighbours."""
    settings.check()
    test = task.splits["test"]
    examples = Examples(list(test["text"]), list(test["text_pair"]) if task.has_text_pair else None,
                        list(test["label"]))
    kept, skipped = usable_examples(examples, tokenizer, max_length)
    _warn_skipped(skipped, len(examples), "test examples")
    rng = random.Random(f"{settings.seed}|robustness")
    clean = examples.subset(sorted(rng.sample(kept, min(len(kept), settings.perturb_examples))))
    perturbed = {name: [perturb(text, name, settings.severity, settings.seed) for text in clean.texts]
                 for name in settings.perturbations}
    attack = clean.subset(sorted(rng.sample(range(len(clean)), min(len(clean), settings.attack_examples))))
    neighbours = {}
    if len(attack):
        vocabulary = whole_word_vocabulary(tokenizer, embeddings.shape[0])
        neighbours = neighbour_table(attack_words(attack.texts), vocabulary, embeddings, settings.attack)
    suite = RobustnessSuite(settings, max_length, clean, perturbed, attack, neighbours, skipped)
    if settings.robust_set:
        suite.robust_set, suite.robust_set_info = robust_set or load_robust_set(settings.robust_set, task, tokenizer,
                                                                                max_length)
    return suite


def usable_examples(examples: Examples, tokenizer, max_length: int) -> tuple[list[int], dict[str, int]]:
    """Indices of the examples with at least two words that fit in ``max_length`` tokens; counts of the others."""
    skipped = {"fewer_than_2_words": 0, "longer_than_max_length": 0}
    lengths = [len(ids) for ids in tokenizer(examples.texts, examples.pairs, truncation=False)["input_ids"]] \
        if len(examples) else []
    kept = []
    for i, (text, length) in enumerate(zip(examples.texts, lengths)):
        if word_count(text) < 2:
            skipped["fewer_than_2_words"] += 1
        elif length > max_length:
            skipped["longer_than_max_length"] += 1
        else:
            kept.append(i)
    return kept, skipped


def _warn_skipped(skipped: dict[str, int], total: int, what: str) -> None:
    if any(skipped.values()):
        reasons = ", ".join(f"{count} {reason.replace('_', ' ')}" for reason, count in skipped.items() if count)
        log.warning("robustness: skipped %d of %d %s (%s)", sum(skipped.values()), total, what, reasons)


@torch.no_grad()
def base_input_embeddings(model_ref, label_names: list[str], load=load_classifier) -> torch.Tensor:
    """The input-embedding matrix of the pretrained base (vocabulary rows x hidden size), on the CPU; ``load`` is
    the task kind's model loader (a regression task's one-output head)."""
    model = load(model_ref, label_names)
    embeddings = model.get_input_embeddings().weight.detach().float().cpu().clone()
    del model
    return embeddings


# --- the external robust set ------------------------------------------------------------------------------------

def load_robust_set(path: str, task, tokenizer, max_length: int) -> tuple[Examples, dict]:
    """Read a labelled file (any local format ``--data`` accepts, one split), with the study's columns when the
    file has them (else detected), labels mapped onto the study's labels.

    Rows with an empty or non-text text, a missing or unknown label, fewer than two words, or more tokens than
    ``max_length`` are skipped and counted. Integer labels that are not among the study's label names are read as
    indices into them when the study's labels are not numbers (AdvGLUE files code sst2 as 0/1); the mapping is
    logged. DataError when the file is missing or unreadable, or when no row is usable.
    """
    if not Path(path).expanduser().exists():
        raise DataError(f"--robust-set {path}: no such file")
    try:
        _, raw = read_source(str(Path(path).expanduser()))
    except DataError as error:
        raise DataError(f"--robust-set {path}: {error}") from None
    if len(raw) > 1 and "test" not in raw:
        raise DataError(f"--robust-set {path} has several splits ({', '.join(raw)}) and none is called test; "
                        "pass one file")
    table = raw["test"] if len(raw) > 1 else next(iter(raw.values()))
    available = [str(c) for c in (table.columns if isinstance(table, pd.DataFrame) else table.column_names)]
    known = {role: (name if name in available else None) for role, name in task.columns.items()}
    columns = resolve_columns(available, known["text"], known["text_pair"], known["label"], f"--robust-set {path}")
    if task.has_text_pair and columns["text_pair"] is None:
        raise DataError(f"--robust-set {path} has no second-text column ({task.columns['text_pair']!r}); "
                        "the study classifies pairs")
    wanted = {role: name for role, name in columns.items() if name and (role != "text_pair" or task.has_text_pair)}
    frame, _ = to_frame(table, wanted)
    labels, mapping, skipped = _map_labels(frame["label"].tolist(), task.label_names, path)
    texts = frame["text"].tolist()
    pairs = frame["text_pair"].tolist() if task.has_text_pair else None
    labelled = [i for i in range(len(frame)) if labels[i] is not None]
    rows = [i for i in labelled if _is_text(texts[i]) and (pairs is None or _is_text(pairs[i]))]
    skipped["empty_or_not_text"] = len(labelled) - len(rows)
    examples = Examples(texts, pairs, [label if label is not None else -1 for label in labels]).subset(rows)
    kept, too_short_or_long = usable_examples(examples, tokenizer, max_length)
    skipped.update(too_short_or_long)
    _warn_skipped(skipped, len(frame), f"rows of --robust-set {path}")
    if not kept:
        raise DataError(f"--robust-set {path}: none of its {len(frame)} rows is usable ({_reasons(skipped)}); "
                        f"the study's labels are {', '.join(map(repr, task.label_names))}")
    info = {"file": str(path), "rows": len(frame), "columns": wanted, "label_mapping": mapping, "skipped": skipped}
    return examples.subset(kept), info


def _is_text(value) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _reasons(skipped: dict[str, int]) -> str:
    return ", ".join(f"{count} {reason.replace('_', ' ')}" for reason, count in skipped.items() if count) or "none"


def _map_labels(values: list, label_names: list[str], path: str) -> tuple[list[int | None], str, dict[str, int]]:
    index = {name: i for i, name in enumerate(label_names)}
    by_index = (all(is_int(v) for v in values if not is_missing(v))
                and not any(label_str(v) in index for v in values if not is_missing(v))
                and not any(_is_int_string(name) for name in label_names))
    labels, unknown, missing = [], set(), 0
    for value in values:
        if is_missing(value):
            labels.append(None)
            missing += 1
        elif by_index:
            labels.append(int(value) if 0 <= int(value) < len(label_names) else None)
            unknown |= set() if labels[-1] is not None else {label_str(value)}
        else:
            labels.append(index.get(label_str(value)))
            unknown |= set() if labels[-1] is not None else {label_str(value)}
    if by_index:
        log.warning("--robust-set %s: integer labels read as indices into the study's labels (%s)", path,
                    ", ".join(f"{i} = {name}" for i, name in enumerate(label_names)))
    if unknown:
        log.warning("--robust-set %s: skipping rows with labels the study does not know: %s (known: %s)", path,
                    ", ".join(sorted(unknown)[:10]), ", ".join(label_names))
    unknown_rows = sum(1 for v, label in zip(values, labels) if label is None and not is_missing(v))
    return labels, "index" if by_index else "name", {"missing_label": missing, "unknown_label": unknown_rows}


def _is_int_string(name: str) -> bool:
    return name.lstrip("-").isdigit()


# --- evaluation -------------------------------------------------------------------------------------------------

@torch.no_grad()
def predict_probabilities(model, tokenizer, texts: list[str], pairs: list[str] | None, max_length: int,
                          batch_size: int, device) -> np.ndarray:
    """Class probabilities for each text (and pair), in order, truncated like training. Texts that tokenize the
    same (e.g. re-cased ones, for an uncased tokenizer) are scored once; batches hold texts of similar length in
    tokens, so there is little padding."""
    model.eval()
    if not texts:
        return np.zeros((0, 0))
    encoded = tokenizer(texts, pairs, truncation=True, max_length=max_length)
    distinct_index: dict[tuple, int] = {}  # token ids -> index among the distinct inputs
    first, inverse = [], []  # first row of each distinct input; each row's distinct input
    for row, ids in enumerate(encoded["input_ids"]):
        if tuple(ids) not in distinct_index:
            distinct_index[tuple(ids)] = len(first)
            first.append(row)
        inverse.append(distinct_index[tuple(ids)])
    lengths = [len(ids) for ids in distinct_index]
    order = sorted(range(len(first)), key=lengths.__getitem__)
    chunks = []
    for start in range(0, len(order), batch_size):
        batch_rows = [first[k] for k in order[start:start + batch_size]]
        batch = tokenizer.pad([{key: encoded[key][i] for key in encoded} for i in batch_rows], return_tensors="pt")
        logits = model(**{key: value.to(device) for key, value in batch.items()}).logits
        chunks.append(torch.softmax(logits.float(), dim=-1).cpu().numpy())
    distinct = np.empty_like(np.concatenate(chunks))
    distinct[np.asarray(order)] = np.concatenate(chunks)
    return distinct[np.asarray(inverse)]


def evaluate_robustness(model, tokenizer, suite: RobustnessSuite, device) -> dict:
    """The ``robustness`` record of one run: clean and perturbed accuracy, attacks, the robust set, what was
    skipped, and the seconds it took."""
    start = time.perf_counter()
    settings, clean = suite.settings, suite.clean

    def score(texts: list[str], pairs: list[str] | None) -> np.ndarray:
        return predict_probabilities(model, tokenizer, texts, pairs, suite.max_length, settings.batch_size, device)

    correct = _correct_per_set(score, suite)
    clean_correct = correct.pop("clean")
    result = {"examples": len(clean), "severity": settings.severity, **_accuracy(clean_correct, "clean_")}
    result["perturbations"] = {name: _perturbation(hits, clean_correct) for name, hits in correct.items()}
    pooled = _pooled(correct, clean_correct, settings.seed)
    result.update(perturbed_accuracy=pooled["accuracy"], perturbed_ci95=pooled["ci95"],
                  drop_points=pooled["drop_points"])
    result["per_example"] = per_example(clean_correct, correct)
    result["families"] = {family: _pooled({n: correct[n] for n in members if n in correct}, clean_correct,
                                          settings.seed)
                          for family, members in FAMILIES.items() if any(n in correct for n in members)}
    outcomes = run_attacks(score, suite.attack.texts, suite.attack.pairs, suite.attack.labels, suite.neighbours,
                           settings.attack, settings.seed)
    result["attacks"] = {name: summarise([o[name] for o in outcomes], settings.attack.query_budget)
                         for name in ATTACKS}
    if suite.robust_set is not None:
        hits = _hits(score(suite.robust_set.texts, suite.robust_set.pairs), suite.robust_set.labels)
        result["robust_set"] = {**suite.robust_set_info, "examples": len(hits), **_accuracy(hits, "")}
    result["skipped"] = dict(suite.skipped)
    result["seconds"] = time.perf_counter() - start
    return result


def _correct_per_set(score, suite: RobustnessSuite) -> dict[str, np.ndarray]:
    """Right/wrong per example for the clean texts and every perturbation, all scored in one batched pass."""
    sets = {"clean": suite.clean.texts, **suite.perturbed}
    texts = [text for texts in sets.values() for text in texts]
    pairs = suite.clean.pairs * len(sets) if suite.clean.pairs else None
    hits = _hits(score(texts, pairs), suite.clean.labels * len(sets))
    n = len(suite.clean)
    return {name: hits[k * n:(k + 1) * n] for k, name in enumerate(sets)}


def per_example(clean_hits: np.ndarray, correct: dict[str, np.ndarray]) -> dict:
    """Per clean example, in the suite's order (the same examples for every method of the study): right or wrong
    clean ("1"/"0", as the run's ``test_correct``) and how many of the ``perturbations`` perturbed versions were
    right; from these, :func:`peftlab.study.summary.robustness_vs_full` compares two methods' drops example by
    example."""
    right = np.sum(np.stack(list(correct.values())), axis=0) if correct else np.zeros(len(clean_hits), dtype=int)
    return {"clean": "".join("1" if hit else "0" for hit in clean_hits), "perturbed_right": [int(v) for v in right],
            "perturbations": len(correct)}


def example_drops(record: dict) -> np.ndarray | None:
    """Per example, clean right (1/0) minus the share of its perturbed versions right: the robust drop, example by
    example (its mean is the record's ``drop_points`` / 100); None when the record has no per-example hits."""
    hits = record.get("per_example") if isinstance(record, dict) else None
    if not isinstance(hits, dict) or not hits.get("perturbations"):
        return None
    clean = np.array([character == "1" for character in hits["clean"]], dtype=float)
    return clean - np.asarray(hits["perturbed_right"], dtype=float) / hits["perturbations"]


def _hits(probabilities: np.ndarray, labels: list[int]) -> np.ndarray:
    if not len(labels):
        return np.zeros(0, dtype=bool)
    return probabilities.argmax(axis=1) == np.asarray(labels)


def _accuracy(hits: np.ndarray, prefix: str) -> dict:
    right = int(hits.sum())
    return {f"{prefix}accuracy": rate(right, len(hits)), f"{prefix}ci95": wilson_interval(right, len(hits))}


def _points(accuracy: float | None, reference: float | None) -> float | None:
    return None if accuracy is None or reference is None else 100 * (reference - accuracy)


def _perturbation(hits: np.ndarray, clean_hits: np.ndarray) -> dict:
    accuracy = _accuracy(hits, "")
    return {**accuracy, "drop_points": _points(accuracy["accuracy"], rate(int(clean_hits.sum()), len(clean_hits)))}


def _pooled(correct: dict[str, np.ndarray], clean_hits: np.ndarray, seed: int) -> dict:
    """Mean accuracy over several perturbations of the same examples, with a bootstrap interval over examples
    (the perturbations of one example are not independent, so a Wilson interval on pooled counts would be too
    narrow), and its drop from clean accuracy in points."""
    if not correct or not len(clean_hits):
        return {"accuracy": None, "ci95": None, "drop_points": None}
    per_example = np.mean(np.stack(list(correct.values())), axis=0)
    accuracy = float(per_example.mean())
    return {"accuracy": accuracy, "ci95": bootstrap_mean_interval(per_example, seed=seed),
            "drop_points": _points(accuracy, float(clean_hits.mean()))}
