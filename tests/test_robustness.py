"""Robustness: perturbations, confidence intervals, attacks on a deliberately weak model, skipped inputs, the suite
through `compare` on the tiny BERT, and one end-to-end CLI study on the real MiniLM."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from peftlab.errors import DataError, PeftlabError
from peftlab.evaluate.attacks import AttackSettings, neighbour_table, run_attacks, summarise, whole_word_vocabulary
from peftlab.evaluate.perturb import (DISTRACTORS, KEYBOARD_NEIGHBOURS, PERTURBATIONS, PUNCTUATION_MARKS, perturb,
                                      split_words)
from peftlab.evaluate.robustness import (Examples, RobustnessSettings, build_suite, evaluate_robustness,
                                         example_drops, load_robust_set, predict_probabilities, usable_examples)
from peftlab.evaluate.stats import bootstrap_mean_interval, paired_bootstrap_test, wilson_interval
from peftlab.report.tables import robustness as robustness_table
from peftlab.study.summary import robustness_vs_full

from conftest import FIXED_RATES
from report_data import results_json

TEXT = ("the quick brown fox jumps over lazy dogs while seven happy children watch from behind tall green garden "
        "walls today")  # 20 words, all different
ROBUSTNESS_KEYS = ["clean_accuracy", "clean_ci95", "perturbations", "perturbed_accuracy", "perturbed_ci95",
                   "drop_points", "families", "attacks", "skipped", "seconds"]
ATTACK_KEYS = ["success_rate", "ci95", "mean_words_changed", "mean_queries", "max_queries", "query_budget",
               "examples", "attacked", "succeeded"]


def words(text: str) -> list[str]:
    return split_words(text)[1::2]


def changed_positions(before: str, after: str) -> list[int]:
    a, b = words(before), words(after)
    assert len(a) == len(b), (before, after)
    return [i for i, (x, y) in enumerate(zip(a, b)) if x != y]


# --- perturbations ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(PERTURBATIONS))
def test_perturbation_is_deterministic_and_changes_the_text(name):
    first = perturb(TEXT, name, 0.2, seed=0)
    assert first == perturb(TEXT, name, 0.2, seed=0)
    assert first != TEXT
    others = {perturb(TEXT, name, 0.2, seed=s) for s in range(1, 6)}
    assert len(others | {first}) > 1, "the seed must matter"


@pytest.mark.parametrize("name", ["char_swap", "char_delete", "char_insert", "char_keyboard", "casing"])
@pytest.mark.parametrize("severity,expected", [(0.2, 4), (0.1, 2), (0.5, 10), (0.01, 1)])
def test_in_place_edits_touch_the_severity_share_of_words(name, severity, expected):
    for seed in range(5):
        assert len(changed_positions(TEXT, perturb(TEXT, name, severity, seed))) == expected, (name, seed)


def test_each_character_edit_is_what_it_claims():
    original = words(TEXT)
    for seed in range(10):
        for name, check in (
            ("char_swap", lambda a, b: sorted(a) == sorted(b) and len(a) == len(b)
             and sum(x != y for x, y in zip(a, b)) == 2),
            ("char_delete", lambda a, b: len(b) == len(a) - 1 and any(a[:i] + a[i + 1:] == b for i in range(len(a)))),
            ("char_insert", lambda a, b: len(b) == len(a) + 1 and any(b[:i] + b[i + 1:] == a for i in range(len(b)))),
            ("char_keyboard", lambda a, b: len(a) == len(b) and [(x, y) for x, y in zip(a, b) if x != y][0][1]
             in KEYBOARD_NEIGHBOURS[[(x, y) for x, y in zip(a, b) if x != y][0][0]]
             and sum(x != y for x, y in zip(a, b)) == 1),
            ("casing", lambda a, b: a.lower() == b.lower() and a != b),
        ):
            edited = words(perturb(TEXT, name, 0.2, seed))
            for i in changed_positions(TEXT, perturb(TEXT, name, 0.2, seed)):
                assert check(original[i], edited[i]), (name, original[i], edited[i])


def test_word_level_perturbations_touch_the_severity_share():
    n = len(words(TEXT))
    for seed in range(5):
        dropped = words(perturb(TEXT, "word_drop", 0.2, seed))
        assert len(dropped) == n - 4 and _is_subsequence(dropped, words(TEXT))
        repeated = words(perturb(TEXT, "word_repeat", 0.2, seed))
        assert len(repeated) == n + 4
        assert [w for i, w in enumerate(repeated) if i == 0 or repeated[i - 1] != w] == words(TEXT)
        swapped = perturb(TEXT, "word_swap", 0.2, seed)
        assert Counter(words(swapped)) == Counter(words(TEXT)) and len(changed_positions(TEXT, swapped)) == 4
        noisy = perturb(TEXT, "punctuation", 0.2, seed)
        marks = re.findall("|".join(re.escape(m) for m in sorted(PUNCTUATION_MARKS, key=len, reverse=True)), noisy)
        assert len(marks) == 4 and words(noisy) == words(TEXT)


def test_distractor_appends_one_clause_and_keeps_the_text():
    for seed in range(5):
        text = perturb(TEXT, "distractor", 0.2, seed)
        assert text.startswith(TEXT) and any(text == f"{TEXT} {clause}" for clause in DISTRACTORS)


def test_perturbations_keep_separators_and_never_empty_a_text():
    text = "It's a well-made film , isn't it ?"
    for name in PERTURBATIONS:
        for seed in range(5):
            assert perturb(text, name, 1.0, seed).strip()
    assert "".join(split_words(text)) == text
    assert words("the film is n't good") == ["the", "film", "is", "n't", "good"]
    assert perturb("wow", "word_drop", 1.0) == "wow"  # the last word is never dropped


def _is_subsequence(short: list[str], long: list[str]) -> bool:
    remaining = iter(long)
    return all(any(w == x for x in remaining) for w in short)


# --- confidence intervals ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("successes,trials,low,high", [
    (8, 10, 0.4902, 0.9433), (0, 10, 0.0, 0.2775), (10, 10, 0.7225, 1.0), (50, 100, 0.4038, 0.5962),
    (1, 1, 0.2065, 1.0), (90, 100, 0.8256, 0.9448),
])
def test_wilson_interval_on_known_counts(successes, trials, low, high):
    interval = wilson_interval(successes, trials)
    assert interval == pytest.approx([low, high], abs=1e-4)
    assert wilson_interval(0, 0) is None


def test_bootstrap_interval_is_seeded_and_brackets_the_mean():
    values = np.random.default_rng(0).random(200)
    interval = bootstrap_mean_interval(values, seed=3)
    assert interval == bootstrap_mean_interval(values, seed=3)
    assert interval[0] < values.mean() < interval[1] and interval[1] - interval[0] < 0.2
    assert bootstrap_mean_interval(np.ones(50)) == [1.0, 1.0] and bootstrap_mean_interval([]) is None


def test_paired_bootstrap_test_finds_a_shift_and_not_noise():
    rng = np.random.default_rng(0)
    shifted = paired_bootstrap_test(rng.normal(0.5, 1.0, 300), seed=1)
    assert shifted["significant"] and shifted["p_value"] < 0.01 and shifted["ci95"][0] > 0
    assert shifted["ci95"][0] < shifted["difference"] < shifted["ci95"][1] and shifted["examples"] == 300
    noise = paired_bootstrap_test(rng.normal(0.0, 1.0, 300), seed=1)
    assert not noise["significant"] and noise["ci95"][0] < 0 < noise["ci95"][1]
    assert paired_bootstrap_test(np.zeros(40))["p_value"] == 1.0 and paired_bootstrap_test([1.0]) is None


def _robust_run(method, seed, clean, perturbed_right, perturbations=2):
    return {"method": method, "seed": seed, "status": "ok", "robustness": {"per_example": {
        "clean": clean, "perturbed_right": perturbed_right, "perturbations": perturbations}}}


def test_robustness_vs_full_pairs_each_seed_with_full_example_by_example():
    # full: right on every clean text and on every perturbed one (drop 0); lora: right clean, loses both
    # perturbations of half the examples (drop 50 points per seed) -> +50 points, significant, over both seeds
    runs = [_robust_run("full", seed, "1" * 40, [2] * 40) for seed in (0, 1)]
    runs += [_robust_run("lora", seed, "1" * 40, [0, 2] * 20) for seed in (0, 1)]
    runs += [_robust_run("head", 0, "1" * 40, [2] * 40), _robust_run("bitfit", 2, "1" * 40, [0] * 40),
             {"method": "ia3", "seed": 0, "status": "ok", "robustness": {"drop_points": 3.0}}]  # no per-example hits
    tests = robustness_vs_full(runs)
    assert set(tests) == {"lora", "head"}  # bitfit has no full run of its seed; ia3 no per-example hits
    assert tests["lora"]["difference"] == pytest.approx(50.0) and tests["lora"]["significant"]
    assert tests["lora"]["examples"] == 80 and tests["lora"]["seeds"] == 2
    assert tests["head"]["difference"] == 0.0 and tests["head"]["p_value"] == 1.0


# --- attacks on a deliberately weak model -----------------------------------------------------------------------

class KeywordModel(torch.nn.Module):
    """Says "pos" (label 1) exactly when the token ``keyword`` is in the input: a classifier that uses one word."""

    def __init__(self, keyword_id: int):
        super().__init__()
        self.keyword_id = keyword_id
        self.calls = 0

    def forward(self, input_ids, attention_mask=None, **kwargs):
        self.calls += len(input_ids)
        present = (input_ids == self.keyword_id).any(dim=1).float()
        return SimpleNamespace(logits=torch.stack([torch.zeros_like(present), 8 * present - 4], dim=1))


@pytest.fixture(scope="module")
def tokenizer():
    from peftlab.models import load_tokenizer, resolve_model

    return load_tokenizer(resolve_model("minilm"))


@pytest.fixture(scope="module")
def embeddings(tokenizer):
    """Random 128-d input embeddings in which "nice" is the only close neighbour of "good"."""
    generator = torch.Generator().manual_seed(0)
    table = torch.randn(len(tokenizer), 128, generator=generator)
    good, nice = tokenizer.convert_tokens_to_ids(["good", "nice"])
    table[nice] = table[good] + 0.01 * torch.randn(128, generator=generator)
    return table


@pytest.fixture(scope="module")
def weak(tokenizer, embeddings):
    model = KeywordModel(tokenizer.convert_tokens_to_ids("good"))
    vocabulary = whole_word_vocabulary(tokenizer, embeddings.shape[0])
    neighbours = neighbour_table({"good", "movie", "actors", "film"}, vocabulary, embeddings, AttackSettings())
    weak = SimpleNamespace(model=model, neighbours=neighbours, vocabulary=vocabulary, asked=0)

    def score(texts, pairs):  # every text asked for is one query (identical texts are scored once underneath)
        weak.asked += len(texts)
        return predict_probabilities(model, tokenizer, texts, pairs, 64, 16, "cpu")

    weak.score = score
    return weak


def test_whole_word_vocabulary_and_neighbours(weak):
    assert "good" in weak.vocabulary and "movie" in weak.vocabulary
    assert not any(w.startswith("#") or not w.isalpha() for w in weak.vocabulary)
    assert "the" not in weak.vocabulary  # stopwords are never substituted
    assert weak.neighbours == {"good": ["nice"]}  # random directions in 128-d are far below cosine 0.5


def test_attacks_flip_the_weak_model_within_budget(weak):
    texts = ["the movie was good and the actors were fine", "a good film with a great cast", "a dull film"]
    labels = [1, 1, 0]
    settings = AttackSettings(query_budget=30)
    outcomes = run_attacks(weak.score, texts, None, labels, weak.neighbours, settings)
    for outcome in outcomes[:2]:
        word, char = outcome["word_substitution"], outcome["char_edit"]
        assert word.correct and word.success and word.words_changed == 1 and "nice" in word.text
        assert "good" not in word.text.split()
        assert char.success and char.words_changed == 1 and "good" not in char.text.split()
        assert word.queries <= 30 and char.queries <= 30
    assert outcomes[0]["word_substitution"].queries == 1 + 9 + 1  # clean, drop-one for 9 words, "nice"
    # "a dull film" has no "good": classified neg, right; no substitution or typo can add "good": never flipped
    assert outcomes[2]["word_substitution"].correct and not outcomes[2]["word_substitution"].success
    assert not outcomes[2]["char_edit"].success
    summary = summarise([o["word_substitution"] for o in outcomes], 30)
    assert summary["success_rate"] == pytest.approx(2 / 3) and summary["attacked"] == 3
    assert summary["ci95"] == pytest.approx(wilson_interval(2, 3))
    assert summary["mean_words_changed"] == pytest.approx(np.mean([1 / 9, 1 / 7]))
    assert summary["max_queries"] <= 30


@pytest.mark.parametrize("name", ["word_substitution", "char_edit"])
@pytest.mark.parametrize("budget", [1, 2, 3, 5, 8, 13, 40])
def test_attack_never_exceeds_its_budget(weak, name, budget):
    """Counted at the scorer: every text asked for is one query, and no attack asks for more than its budget."""
    texts = ["the movie was really quite long and the actors seemed tired of the whole thing", "good",
             "a good film with a great cast", "not a good movie at all, bad acting and a very weak plot"]
    labels = [0, 1, 1, 1]
    for text, label in zip(texts, labels):
        weak.asked = 0
        outcome = run_attacks(weak.score, [text], None, [label], weak.neighbours, AttackSettings(query_budget=budget),
                              names=(name,))[0][name]
        assert weak.asked == (outcome.queries if outcome.correct else 1), (text, outcome)
        assert outcome.queries <= budget, (text, outcome)


def test_attack_budget_is_used_up_on_an_unflippable_model(tokenizer):
    """A model that always answers "neg": the attack spends exactly its budget on a long text, then gives up."""
    model = KeywordModel(-1)
    score = lambda texts, pairs: predict_probabilities(model, tokenizer, texts, pairs, 64, 16, "cpu")  # noqa: E731
    text = "the movie was really quite long and the actors seemed tired of the whole thing"
    outcome = run_attacks(score, [text], None, [0], {}, AttackSettings(query_budget=20), names=("char_edit",))[0]
    assert not outcome["char_edit"].success and outcome["char_edit"].queries == 20 == model.calls


def test_identical_inputs_are_scored_once_and_in_order(tokenizer):
    model = KeywordModel(tokenizer.convert_tokens_to_ids("good"))
    texts = ["a good film", "A GOOD FILM", "a bad film", "a good film", "an awful, long and dull film", "good"]
    probabilities = predict_probabilities(model, tokenizer, texts, None, 32, 2, "cpu")
    assert model.calls == 4  # the uncased tokenizer sees "A GOOD FILM" as "a good film"
    assert probabilities.argmax(axis=1).tolist() == [1, 1, 0, 1, 0, 1]
    pairs = predict_probabilities(model, tokenizer, ["a film"] * 3, ["good", "bad", "good"], 32, 8, "cpu")
    assert pairs.argmax(axis=1).tolist() == [1, 0, 1] and model.calls == 6


# --- skipped inputs and the robust set --------------------------------------------------------------------------

def test_short_and_long_texts_are_skipped_and_counted(tokenizer):
    examples = Examples(["fine movie", "wow", "", " ".join(["long"] * 40), "a good film"], None, [0, 1, 0, 1, 1])
    kept, skipped = usable_examples(examples, tokenizer, max_length=16)
    assert kept == [0, 4]
    assert skipped == {"fewer_than_2_words": 2, "longer_than_max_length": 1}


@pytest.fixture(scope="module")
def tiny_task(tiny_task_csv):
    from peftlab.tasks import load_task

    return load_task(str(tiny_task_csv), seed=0)


def test_robust_set_skips_and_counts_bad_rows(tmp_path, tiny_task, tokenizer, caplog):
    rows = [("a good film", "pos"), ("awful and boring", "neg"), ("great fun", "maybe"), ("", "pos"),
            ("wow", "neg"), (" ".join(["long"] * 40), "pos"), ("bad acting", None)]
    path = tmp_path / "contrast.csv"
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(path, index=False)
    examples, info = load_robust_set(str(path), tiny_task, tokenizer, max_length=16)
    assert examples.texts == ["a good film", "awful and boring"] and examples.labels == [1, 0]
    assert info["skipped"] == {"missing_label": 1, "unknown_label": 1, "empty_or_not_text": 1,
                               "fewer_than_2_words": 1, "longer_than_max_length": 1}
    assert info["rows"] == 7 and info["label_mapping"] == "name"
    assert "'maybe'" in caplog.text or "maybe" in caplog.text


def test_robust_set_integer_labels_are_indices_and_json_records_work(tmp_path, tiny_task, tokenizer):
    path = tmp_path / "adv_sst2.json"  # AdvGLUE style: a JSON list of records with 0/1 labels
    path.write_text(json.dumps([{"idx": 0, "sentence": "a good film", "label": 1},
                                {"idx": 1, "sentence": "a boring film", "label": 0},
                                {"idx": 2, "sentence": "an odd film", "label": 7}]))
    examples, info = load_robust_set(str(path), tiny_task, tokenizer, max_length=32)
    assert examples.labels == [1, 0] and info["label_mapping"] == "index"
    assert info["skipped"]["unknown_label"] == 1 and info["columns"] == {"text": "sentence", "label": "label"}


@pytest.mark.parametrize("content,needle", [(None, "no such file"), ("{not json", "not valid JSON"),
                                            ('[{"text": "a good film", "label": "meh"}]', "none of its 1 rows")])
def test_unusable_robust_set_is_one_data_error(tmp_path, tiny_task, tokenizer, content, needle):
    path = tmp_path / "robust.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataError, match=needle):
        load_robust_set(str(path), tiny_task, tokenizer, max_length=32)


# --- the suite, evaluated -------------------------------------------------------------------------------------

def test_suite_is_deterministic_and_evaluates_the_weak_model(tiny_task, tokenizer, embeddings):
    settings = RobustnessSettings(perturb_examples=10, attack_examples=6, attack=AttackSettings(query_budget=25))
    suite = build_suite(tiny_task, tokenizer, embeddings, 32, settings)
    again = build_suite(tiny_task, tokenizer, embeddings, 32, settings)
    assert suite.perturbed == again.perturbed and suite.attack == again.attack and len(suite.clean) == 10
    assert set(suite.attack.texts) <= set(suite.clean.texts) and len(suite.attack) == 6
    model = KeywordModel(tokenizer.convert_tokens_to_ids("good"))
    result = evaluate_robustness(model, tokenizer, suite, "cpu")
    for key in ROBUSTNESS_KEYS:
        assert key in result, key
    hits = [("good" in text.split()) == bool(label) for text, label in zip(suite.clean.texts, suite.clean.labels)]
    assert result["clean_accuracy"] == pytest.approx(np.mean(hits))
    assert set(result["perturbations"]) == set(PERTURBATIONS)
    for name, scores in result["perturbations"].items():
        assert scores["ci95"][0] <= scores["accuracy"] <= scores["ci95"][1], name
        assert scores["drop_points"] == pytest.approx(100 * (result["clean_accuracy"] - scores["accuracy"]))
    for name, attack in result["attacks"].items():
        assert list(attack) == ATTACK_KEYS and attack["examples"] == 6 and attack["max_queries"] <= 25, name
    assert result["skipped"] == {"fewer_than_2_words": 0, "longer_than_max_length": 0}
    hits = result["per_example"]  # what the paired comparison between methods reads
    assert hits["clean"] == "".join("1" if hit else "0" for hit in hits_clean(suite)) and hits["perturbations"] == len(PERTURBATIONS)
    assert 100 * example_drops(result).mean() == pytest.approx(result["drop_points"])


def hits_clean(suite):
    return [("good" in text.split()) == bool(label) for text, label in zip(suite.clean.texts, suite.clean.labels)]


# --- through compare, on the tiny BERT --------------------------------------------------------------------------

def _tiny_config(tiny_bert_dir, tiny_task_csv, out, **overrides):
    from peftlab.study import CompareConfig

    settings = dict(model=str(tiny_bert_dir), data=str(tiny_task_csv), methods=["head", "lora"], max_steps=2,
                    batch_size=8, max_length=32, out=str(out), perturb_examples=12, attack_examples=4,
                    attack_query_budget=20, **FIXED_RATES)
    settings.update(overrides)
    return CompareConfig(**settings)


@pytest.mark.parametrize("robust_set,needle", [("missing.csv", "no such file"), ("bad.jsonl", "line 1")])
def test_bad_robust_set_fails_before_anything_is_written(tmp_path, tiny_bert_dir, tiny_task_csv, robust_set, needle):
    from peftlab import compare

    (tmp_path / "bad.jsonl").write_text("{broken\n")
    config = _tiny_config(tiny_bert_dir, tiny_task_csv, tmp_path / "out", robust_set=str(tmp_path / robust_set))
    with pytest.raises(PeftlabError, match=needle):
        compare(config)
    assert not (tmp_path / "out").exists()


def test_robustness_options_are_checked(tmp_path, tiny_bert_dir, tiny_task_csv):
    from peftlab.errors import ConfigError

    for bad in ({"perturb_severity": 0.0}, {"attack_query_budget": 0}, {"robustness": False, "robust_set": "x.csv"}):
        with pytest.raises(ConfigError):
            _tiny_config(tiny_bert_dir, tiny_task_csv, tmp_path / "out", **bad).check()


def test_compare_records_robustness_for_every_method_and_rerun_rewrites_it(tmp_path, tiny_bert_dir, tiny_task_csv):
    from peftlab import compare
    from peftlab.study.robustness import evaluate_saved_study

    robust = tmp_path / "contrast.csv"
    pd.DataFrame([("a good film", "pos"), ("an awful film", "neg"), ("fine", "pos"), ("ok film", "meh")],
                 columns=["text", "label"]).to_csv(robust, index=False)
    out = tmp_path / "out"
    results = compare(_tiny_config(tiny_bert_dir, tiny_task_csv, out, robust_set=str(robust)))
    header = results["study"]["robustness"]
    assert header["settings"]["attack"]["query_budget"] == 20 and header["build_seconds"] > 0
    for run in results["runs"]:
        assert run["status"] == "ok", run.get("reason")
        robustness = run["robustness"]
        for key in ROBUSTNESS_KEYS:
            assert key in robustness, (run["method"], key)
        assert robustness["examples"] == 12 and robustness["attacks"]["char_edit"]["examples"] == 4
        assert robustness["robust_set"]["examples"] == 2
        assert robustness["robust_set"]["skipped"]["unknown_label"] == 1
        assert robustness["robust_set"]["skipped"]["fewer_than_2_words"] == 1
        phases = run["timing"]["phases"]  # where the run's time went, each phase timed once
        # the run (build, train, test, save), then its probes (latency, estimate check, overfitting, forgetting, robustness)
        assert list(phases) == ["build", "train", "test", "save", "latency", "estimate", "generalization", "forgetting",
                                "robustness"]
        assert all(seconds > 0 for seconds in phases.values())
        assert sum(phases.values()) <= run["timing"]["wall_seconds"]
    assert json.loads((out / "results.json").read_text())["runs"][0]["robustness"] == results["runs"][0]["robustness"]
    assert not (out / "logs").exists()

    again = evaluate_saved_study(out, attack_examples=2)
    for before, after in zip(results["runs"], again["runs"]):
        assert after["robustness"]["attacks"]["word_substitution"]["examples"] == 2
        assert after["robustness"]["perturbations"] == before["robustness"]["perturbations"]  # same texts, same model
        assert after["metrics"] == before["metrics"]
    assert json.loads((out / "results.json").read_text())["runs"][1]["robustness"]["attacks"] == \
        again["runs"][1]["robustness"]["attacks"]


def test_no_robustness_records_none(tmp_path, tiny_bert_dir, tiny_task_csv):
    from peftlab import compare

    results = compare(_tiny_config(tiny_bert_dir, tiny_task_csv, tmp_path / "out", methods=["head"],
                                   robustness=False))
    assert results["study"]["robustness"] is None and "robustness" not in results["runs"][0]


def test_robustness_table_shows_every_method():
    from rich.console import Console

    from peftlab.report.table import print_robustness_table

    scores = {"accuracy": 0.8, "ci95": [0.7, 0.9], "drop_points": 5.0}
    attack = {"success_rate": 0.5, "ci95": [0.3, 0.7]}
    robustness = {"examples": 100, "severity": 0.2, "clean_accuracy": 0.85, "clean_ci95": [0.77, 0.91],
                  "families": {f: scores for f in ("char", "word", "noise", "distractor")}, "drop_points": 5.0,
                  "attacks": {"word_substitution": attack, "char_edit": attack}}
    results = {"study": {"robustness": None}, "runs": [
        {"method": "full", "status": "ok", "robustness": robustness},
        {"method": "lora", "status": "ok", "robustness": {"status": "failed", "reason": "boom"}},
        {"method": "ia3", "status": "failed"}]}
    console = Console(width=200, record=True)
    print_robustness_table(results, console)
    text = console.export_text()
    assert re.search(r"full +85\.0 \[77–91\] +80\.0 \[70–90\]", text), text
    assert "+5.0" in text and "50.0 [30–70]" in text and "failed: boom" in text and "ia3" not in text


# --- end to end, the real MiniLM through the CLI ----------------------------------------------------------------

E2E_BUDGET = ["--max-steps", "3", "--max-train-examples", "64", "--max-eval-examples", "32", "--batch-size", "16",
              "--no-tune", "--evaluations-per-epoch", "1", "--patience", "0"]
E2E_METHODS = ["head", "lora"]


def _cli(cwd, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    import os

    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false")
    return subprocess.run([sys.executable, "-m", "peftlab.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _describe(done: subprocess.CompletedProcess) -> str:
    return f"exit {done.returncode}\n--- stdout ---\n{done.stdout[-3000:]}\n--- stderr ---\n{done.stderr[-5000:]}"


@pytest.fixture(scope="module")
def minilm_study(tmp_path_factory):
    """head and lora on MiniLM, a few steps, 8 attacked examples, and a small contrast set with bad rows."""
    folder = tmp_path_factory.mktemp("robustness_e2e")
    robust = folder / "contrast.csv"
    pd.DataFrame([("A moving, beautifully acted film.", "fresh"), ("Dull, predictable and far too long.", "rotten"),
                  ("The cast makes a thin plot worth seeing.", "fresh"), ("A story about a family.", "plot"),
                  ("Masterful.", "fresh")], columns=["text", "label"]).to_csv(robust, index=False)
    out = folder / "out"
    done = _cli(folder, "compare", "--model", "minilm", "--data", "rotten_tomatoes", "--methods", ",".join(E2E_METHODS),
                *E2E_BUDGET, "--attack-examples", "8", "--robust-set", str(robust), "--out", str(out))
    assert done.returncode == 0, _describe(done)
    return out, done


@pytest.mark.e2e
def test_e2e_compare_reports_robustness_for_every_method(minilm_study):
    out, done = minilm_study
    results = json.loads((out / "results.json").read_text())
    assert results["study"]["robustness"]["settings"]["attack_examples"] == 8
    for method in E2E_METHODS:
        run = next(r for r in results["runs"] if r["method"] == method)
        assert run["status"] == "ok", run.get("reason")
        robustness = run["robustness"]
        for key in ROBUSTNESS_KEYS:
            assert key in robustness, (method, key)
        assert 0 <= robustness["clean_accuracy"] <= 1 and robustness["examples"] == 32
        assert set(robustness["perturbations"]) == set(PERTURBATIONS)
        for name, scores in robustness["perturbations"].items():
            assert set(scores) == {"accuracy", "ci95", "drop_points"} and 0 <= scores["accuracy"] <= 1, name
            assert scores["ci95"][0] <= scores["accuracy"] <= scores["ci95"][1], name
        for name, attack in robustness["attacks"].items():
            assert attack["examples"] == 8 and attack["max_queries"] <= attack["query_budget"] == 100, name
            if attack["attacked"]:
                assert 0 <= attack["success_rate"] <= 1 and len(attack["ci95"]) == 2 and attack["mean_queries"] >= 1
        assert robustness["robust_set"]["examples"] == 3
        assert robustness["robust_set"]["skipped"]["unknown_label"] == 1
        assert robustness["robust_set"]["skipped"]["fewer_than_2_words"] == 1
        assert re.search(rf"^ *{method} +\d+\.\d \[\d+–\d+\]", done.stdout, re.MULTILINE), done.stdout
    assert "robustness: accuracy %" in done.stdout and "Traceback" not in done.stderr
    lines = done.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("robustness: accuracy %"))
    table = lines[start:start + 8 + len(E2E_METHODS)]
    assert not any(line.startswith("│") for line in table), "no │ rows: the main table's rows stay countable"


@pytest.mark.e2e
def test_e2e_robustness_command_reevaluates_the_saved_study(minilm_study):
    out, first = minilm_study
    before = json.loads((out / "results.json").read_text())
    done = _cli(out.parent, "robustness", str(out), "--attack-examples", "4")
    assert done.returncode == 0, _describe(done)
    after = json.loads((out / "results.json").read_text())
    for old, new in zip(before["runs"], after["runs"]):
        assert new["robustness"]["attacks"]["char_edit"]["examples"] == 4
        assert new["robustness"]["clean_accuracy"] == old["robustness"]["clean_accuracy"]
        assert new["metrics"] == old["metrics"]
    for method in E2E_METHODS:
        assert f"{method}: robustness ok" in done.stdout
    missing = _cli(out.parent, "robustness", str(out.parent / "nowhere"))
    assert missing.returncode == 2 and missing.stderr.startswith("error: ") and "nowhere" in missing.stderr


def test_the_report_shows_the_paired_drop_against_full():
    results = results_json()
    assert "robust_drop_vs_full" not in [c.key for c in robustness_table(results).columns]  # no paired test: no column
    results["robustness_vs_full"] = {"lora": {"difference": 1.5, "ci95": [0.2, 2.9], "p_value": 0.03,
                                              "significant": True, "examples": 100, "test": "paired_bootstrap", "seeds": 1}}
    table = robustness_table(results)
    cells = {row.label.split()[0]: row.cells.get("robust_drop_vs_full") for row in table.rows}
    assert cells["lora"] == "+1.5 [+0.2, +2.9] p=0.03" and cells["head"] == "-"
