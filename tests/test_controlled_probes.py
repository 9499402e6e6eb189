"""The controlled probes (peftlab.tasks.controlled): each builder is deterministic and balanced as specified, the shifted
renderings really shift (the tokenizer's fertility goes up, the meaning stays: a bag-of-characters classifier scores
the same on both renderings), the reasoning task's labels are right, bad specs are one clear error, and the built-in
probes suite runs end to end at a tiny size."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression

from peftlab.bench import BUILTIN_SUITES, load_suite, run_suite
from peftlab.errors import DataError
from peftlab.models import load_tokenizer, resolve_model
from peftlab.tasks import load_task
from peftlab.tasks import controlled as probes
from peftlab.tasks.sources import read_source

from conftest import FIXED_RATES

BIGBENCH = Path(__file__).resolve().parents[2] / "shared" / "data" / "bigbench"
MULTIEMO = BIGBENCH / "multiemo_products_sentence_en.json"


@pytest.fixture(scope="module")
def renderings():
    return {spec: read_source(f"probe:{spec}")[1] for spec in ("cipher=0", "cipher=0.5", "cipher=1", "cyrillic=1")}


def test_every_builder_is_deterministic():
    for spec in ("cipher=0.5", "cyrillic=1", "random-labels=40", "depth=3", f"drift={MULTIEMO}"):
        first, second = read_source(f"probe:{spec}")[1], read_source(f"probe:{spec}")[1]
        for split in ("train", "validation", "test"):
            pd.testing.assert_frame_equal(first[split], second[split])


def test_sentiment_renderings_keep_rows_labels_and_balance(renderings):
    original = renderings["cipher=0"]
    assert {split: len(frame) for split, frame in original.items()} == {"train": 8726, "validation": 1000, "test": 1000}
    for frames in renderings.values():
        for split, frame in frames.items():
            assert (frame["label"].value_counts() == len(frame) // 2).all()  # exactly half positive
            assert frame["label"].tolist() == original[split]["label"].tolist()  # the same rows, row for row
            assert [len(t.split(" ")) for t in frame["text"][:200]] == [len(t.split(" ")) for t in original[split]["text"][:200]]
    assert not set(original["test"]["text"]) & set(original["train"]["text"])


def test_the_cipher_is_one_to_one_and_stronger_renders_a_superset():
    table = probes.letter_cipher()
    assert sorted(table.values()) == sorted(table) and all(a != b for a, b in table.items())
    assert sorted(probes.CYRILLIC.values()) == sorted(set(probes.CYRILLIC.values()))
    words = [f"word{k}" for k in range(400)]
    half = {w for w in words if probes._chosen(w, 0.5)}
    assert 150 < len(half) < 250 and half <= {w for w in words if probes._chosen(w, 0.8)}
    assert probes.render("Good Movie, bad end.", table, 1.0) == "".join(
        table.get(c, table[c.lower()].upper() if c.lower() in table else c) for c in "Good Movie, bad end.")


def fertility(tokenizer, texts) -> float:
    words = [word for text in texts for word in text.split()]
    return sum(len(tokenizer.tokenize(word)) for word in words) / len(words)


def test_shifted_renderings_split_into_more_pieces(renderings):
    tokenizer = load_tokenizer(resolve_model("minilm"))
    texts = {spec: frames["test"]["text"][:300] for spec, frames in renderings.items()}
    f = {spec: fertility(tokenizer, t) for spec, t in texts.items()}
    assert f["cipher=0"] < 1.4 < f["cipher=0.5"] < f["cipher=1"]
    assert f["cyrillic=1"] > 2 * f["cipher=0"]


def bag_accuracy(frames, analyzer) -> float:
    """Test accuracy of a logistic regression on counts of the texts' characters ("char") or space-separated words."""
    vectorizer = CountVectorizer(analyzer=analyzer, lowercase=False)
    train = frames["train"].iloc[:3000]
    model = LogisticRegression(max_iter=2000).fit(vectorizer.fit_transform(train["text"]), train["label"])
    return float((model.predict(vectorizer.transform(frames["test"]["text"])) == frames["test"]["label"]).mean())


def test_the_meaning_is_kept_bag_classifiers_score_the_same(renderings):
    """A full rendering maps every letter one to one, so a bag of characters has the same features, permuted; any
    rendering maps every word one to one (a word is rendered everywhere or nowhere), so a bag of words has too. (A
    half rendering mixes two alphabets: its bag of characters is not the original's, permuted.)"""
    characters = {spec: bag_accuracy(frames, "char") for spec, frames in renderings.items()}
    assert characters["cipher=0"] > 0.55  # characters carry some of the sentiment
    assert characters["cipher=1"] == pytest.approx(characters["cipher=0"], abs=0.005)
    assert characters["cyrillic=1"] == pytest.approx(characters["cipher=0"], abs=0.005)
    words = {spec: bag_accuracy(frames, lambda text: text.split(" ")) for spec, frames in renderings.items()}
    assert words["cipher=0"] > 0.65
    assert all(score == pytest.approx(words["cipher=0"], abs=0.005) for score in words.values())


def test_depth_examples_are_balanced_and_labelled_right():
    for depth in (1, 2, 4):
        frames = probes.depth_splits(depth)
        for split, frame in frames.items():
            assert len(frame) == probes.DEPTH_SPLITS[split] and (frame["label"] == "yes").sum() == len(frame) // 2
            assert all(probes.depth_answer(text) == (label == "yes") for text, label in zip(frame["text"], frame["label"]))
            assert all(len(re.findall(r" than \w+\.", text)) == depth for text in frame["text"][:50])
        texts = [text for frame in frames.values() for text in frame["text"]]
        assert len(set(texts)) == len(texts)  # no example twice, within or across splits
    assert probes.depth_answer("Ann is taller than Bob. Cal is shorter than Bob. Is Cal taller than Ann?") is False
    assert probes.depth_answer("Ann is taller than Bob. Cal is shorter than Bob. Is Cal shorter than Ann?") is True


def test_random_labels_fit_the_training_rows_and_drift_tests_the_other_domain():
    frames = read_source("probe:random-labels=41")[1]
    assert len(frames["train"]) == 41 and abs((frames["train"]["label"] == "a").sum() - 20.5) == 0.5
    pd.testing.assert_frame_equal(frames["train"], frames["test"])
    reviews = read_source("probe:cipher=0")[1]
    sentiment = pd.concat(reviews.values())
    agreement = (frames["train"]["text"].map(dict(zip(sentiment["text"], sentiment["label"])))
                 .map({"positive": "a", "negative": "b"}) == frames["train"]["label"]).mean()
    assert 0.2 < agreement < 0.8  # the labels are not the sentiment

    name, drift = read_source(f"probe:drift={MULTIEMO}")
    assert name == "drift-multiemo_products_sentence_en"
    assert (drift["test"]["label"].value_counts() == 500).all()
    assert not set(drift["test"]["text"]) & set(reviews["train"]["text"])
    pd.testing.assert_frame_equal(drift["train"], reviews["train"])


@pytest.mark.parametrize("spec, message", [
    ("probe:nothing=1", "unknown probe"), ("probe:cipher", "give the probe its argument"),
    ("probe:cipher=2", "from 0 to 1"), ("probe:depth=9", "from 1 to 6"), ("probe:drift=nowhere.json", "no such file"),
])
def test_bad_probe_specs_are_one_clear_error(spec, message):
    with pytest.raises(DataError, match=message):
        read_source(spec)


def test_a_probe_loads_as_a_classification_task():
    task = load_task("probe:depth=2", max_train_examples=100, max_eval_examples=50)
    assert task.label_names == ["no", "yes"] and len(task.splits["train"]) == 100


def test_the_probes_suite_runs_end_to_end_at_a_tiny_size(tmp_path, tiny_bert_dir):
    assert "peft-probes-cpu" in BUILTIN_SUITES
    builtin = yaml.safe_load(BUILTIN_SUITES["peft-probes-cpu"].read_text())
    assert load_suite("peft-probes-cpu", str(BIGBENCH)).families() == ["vocabulary", "drift", "capacity", "depth"]
    tiny = {**builtin, "model": str(tiny_bert_dir), "methods": ["full", "lora"], "seeds": 1,
            "compare": {"max_steps": 2, "batch_size": 8, "max_length": 32, "max_train_examples": 16,
                        "max_eval_examples": 16, "robustness": False, "diagnose": False, **FIXED_RATES}}
    for task in tiny["tasks"]:
        if "sweep" in task.get("compare", {}):
            task["compare"] = {"sweep": "lora.r=1,2", "max_train_examples": 0, "max_eval_examples": 0}  # all 300 rows
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(tiny))
    suite = load_suite(str(tmp_path / "suite.yaml"), str(BIGBENCH))
    for task in suite.tasks:  # every task's data loads; one task per family trains (the suite's cost is per task)
        assert len(load_task(task.data, max_train_examples=8, max_eval_examples=8).splits["test"]) == 8
    one_per_family = ["cipher-1", "drift-products", "random-labels", "depth-2"]
    results = run_suite(load_suite(str(tmp_path / "suite.yaml"), str(BIGBENCH), only_tasks=one_per_family),
                        tmp_path / "out")
    assert results["pending"] == [] and [task["name"] for task in results["tasks"]] == one_per_family
    capacity = next(task for task in results["tasks"] if task["name"] == "random-labels")
    assert capacity["train_examples"] == 300 and {"full", "lora", "lora[r=1]", "lora[r=2]"} <= set(capacity["methods"])
    assert all(np.isfinite(cell["mean"]) for task in results["tasks"] for cell in task["methods"].values())
    claims = {claim["name"]: claim for claim in results["claims"]}  # tested where their tasks ran, else pending
    assert [claims[name]["status"] for name in ("vocabulary", "drift", "depth")] == ["pending"] * 3
    assert claims["capacity"]["status"] in ("tested", "inconclusive")
    assert {"lora", "lora[r=1]", "lora[r=2]"} <= set(claims["capacity"]["methods"])
    assert "## Claims" in (tmp_path / "out" / "suite.md").read_text()
