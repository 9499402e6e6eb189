"""peftlab.tasks: every source loads into a Task; every bad input is one DataError line."""

import json
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from peftlab.errors import DataError
from peftlab.tasks import DATA_ALIASES, Task, load_task

BIGBENCH = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bigbench"
# file -> (examples in README, examples loaded, labels); multiemo has 2 examples with an empty input (skipped)
BIGBENCH_FILES = {
    "multiemo_products_sentence_en.json": (7427, 7425, ["ambivalent", "negative", "neutral", "positive"]),
    "multiemo_products_sentence_ru.json": (7427, 7425, ["ambivalent", "negative", "neutral", "positive"]),
    "epistemic_reasoning.json": (2000, 2000, ["entailment", "non-entailment"]),
    "winowhy.json": (2865, 2865, ["correct", "incorrect"]),
    "logical_fallacy_detection.json": (2800, 2800, ["Invalid", "Valid"]),
    "strategyqa.json": (2290, 2290, ["No", "Yes"]),
    "intent_recognition.json": (693, 693, ["add_to_playlist", "book_restaurant", "get_weather", "play_music",
                                           "rate_book", "search_creative_work", "search_screening_event"]),
}


def sizes(task: Task) -> dict[str, int]:
    return task.describe()["sizes"]


def reviews(n: int = 40) -> pd.DataFrame:
    """n labelled rows, 3 classes (ints 0,1,2 cycling), distinct texts."""
    return pd.DataFrame({"review": [f"review number {i}" for i in range(n)], "label": [i % 3 for i in range(n)]})


# --- alias -----------------------------------------------------------------------------------------------------------

def test_rotten_tomatoes_alias():
    task = load_task("rotten_tomatoes")
    assert "rotten_tomatoes" in DATA_ALIASES
    assert task.name == "rotten_tomatoes" and task.label_names == ["fresh", "rotten"] and task.num_labels == 2
    assert sum(sizes(task).values()) == 12_808
    assert sizes(task) == {"train": 10_248, "validation": 1_280, "test": 1_280}
    assert task.columns == {"text": "text", "text_pair": None, "label": "category"}
    assert not task.has_text_pair
    # stratified: fresh is 7403/12808 = 57.8% of every split
    for split in task.splits.values():
        assert Counter(split["label"])[0] / len(split) == pytest.approx(7403 / 12808, abs=0.002)
    assert task.splits["train"].column_names == ["text", "label"]
    assert isinstance(task.splits["train"][0]["text"], str) and isinstance(task.splits["train"][0]["label"], int)
    json.dumps(task.describe())


def test_rotten_tomatoes_caps():
    task = load_task("rotten_tomatoes", max_train_examples=200, max_eval_examples=50, seed=3)
    assert sizes(task) == {"train": 200, "validation": 50, "test": 50}
    assert Counter(task.splits["train"]["label"]) == {0: 116, 1: 84}  # class proportions kept
    uncapped = load_task("rotten_tomatoes", max_train_examples=0, max_eval_examples=0)
    assert sizes(uncapped) == {"train": 10_248, "validation": 1_280, "test": 1_280}


# --- local files -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".json", ".parquet", ".csv.gz", ".jsonl.bz2"])
def test_file_formats(tmp_path, suffix):
    frame, path = reviews(40), tmp_path / f"reviews{suffix}"
    if suffix.startswith(".csv"):
        frame.to_csv(path, index=False)
    elif suffix == ".tsv":
        frame.to_csv(path, sep="\t", index=False)
    elif suffix.startswith(".jsonl"):
        frame.to_json(path, orient="records", lines=True)
    elif suffix == ".json":
        path.write_text(json.dumps(frame.to_dict(orient="records")))
    else:
        frame.to_parquet(path)
    task = load_task(str(path))
    assert task.name == "reviews" and task.source == str(path)
    assert task.label_names == ["0", "1", "2"]
    assert task.columns == {"text": "review", "text_pair": None, "label": "label"}
    assert sizes(task) == {"train": 32, "validation": 4, "test": 4}
    all_texts = sorted(t for split in task.splits.values() for t in split["text"])
    assert all_texts == sorted(frame["review"])


def test_json_extension_holding_json_lines(tmp_path):
    path = tmp_path / "lines.json"
    reviews(20).to_json(path, orient="records", lines=True)
    assert sum(sizes(load_task(str(path))).values()) == 20


def test_string_and_int_label_names(tmp_path):
    path = tmp_path / "d.csv"
    pd.DataFrame({"text": [f"t{i}" for i in range(30)], "label": [10, 2, 33] * 10}).to_csv(path, index=False)
    assert load_task(str(path)).label_names == ["2", "10", "33"]  # numeric order
    pd.DataFrame({"text": [f"t{i}" for i in range(30)], "label": ["b", "a", "C"] * 10}).to_csv(path, index=False)
    task = load_task(str(path))
    assert task.label_names == ["C", "a", "b"]
    source = {t: lab for t, lab in zip([f"t{i}" for i in range(30)], ["b", "a", "C"] * 10)}
    for row in task.splits["train"]:
        assert task.label_names[row["label"]] == source[row["text"]]


def test_folder_with_train_and_test(tmp_path):
    reviews(100).to_csv(tmp_path / "train.csv", index=False)
    reviews(30).assign(review=lambda f: "test " + f["review"]).to_csv(tmp_path / "test.csv", index=False)
    task = load_task(str(tmp_path))
    assert sizes(task) == {"train": 90, "validation": 10, "test": 30}
    assert all(t.startswith("test ") for t in task.splits["test"]["text"])
    train_texts = set(task.splits["train"]["text"]) | set(task.splits["validation"]["text"])
    assert train_texts == {f"review number {i}" for i in range(100)}
    assert sorted(Counter(task.splits["validation"]["label"]).values()) == [3, 3, 4]  # stratified carve


def test_majority_share_is_that_of_the_test_split(tmp_path):
    reviews(100).to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame({"review": [f"test review {i}" for i in range(10)], "label": [2] * 7 + [0] * 3}).to_csv(
        tmp_path / "test.csv", index=False)
    assert load_task(str(tmp_path)).describe()["test_majority_share"] == pytest.approx(0.7)


def test_folder_with_three_split_files_and_dev_name(tmp_path):
    reviews(50).to_json(tmp_path / "train.jsonl", orient="records", lines=True)
    reviews(12).to_json(tmp_path / "dev.jsonl", orient="records", lines=True)
    reviews(9).to_json(tmp_path / "test.jsonl", orient="records", lines=True)
    (tmp_path / "README.md").write_text("not data")
    assert sizes(load_task(str(tmp_path))) == {"train": 50, "validation": 12, "test": 9}


def test_folder_with_single_file(tmp_path):
    reviews(20).to_parquet(tmp_path / "everything.parquet")
    assert sum(sizes(load_task(str(tmp_path))).values()) == 20


def test_labels_only_in_eval_splits_are_kept(tmp_path):
    reviews(30).to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame({"review": ["odd one", "another"], "label": [7, 0]}).to_csv(tmp_path / "test.csv", index=False)
    task = load_task(str(tmp_path))
    assert task.label_names == ["0", "1", "2", "7"]
    assert task.splits["test"]["label"] == [3, 0]


# --- BIG-bench -------------------------------------------------------------------------------------------------------

@pytest.mark.skipif(not BIGBENCH.is_dir(), reason="shared BIG-bench data not present")
@pytest.mark.parametrize("file", sorted(BIGBENCH_FILES))
def test_bigbench_files(file):
    readme_examples, loaded, labels = BIGBENCH_FILES[file]
    assert len(json.loads((BIGBENCH / file).read_text())["examples"]) == readme_examples
    task = load_task(str(BIGBENCH / file), max_eval_examples=100)
    assert task.name == file.removesuffix(".json")
    assert task.label_names == labels and task.num_labels == len(labels)
    assert task.columns == {"text": "input", "text_pair": None, "label": "target_scores"}
    full = sizes(load_task(str(BIGBENCH / file)))
    assert sum(full.values()) == loaded
    assert full["validation"] == full["test"] == pytest.approx(loaded / 10, abs=len(labels))
    assert sizes(task)["validation"] == sizes(task)["test"] == min(100, full["test"])


def test_bigbench_with_extra_keys_and_ambiguous_examples(tmp_path):
    examples = [{"input": f"q{i}", "target_scores": {"yes": int(i % 2 == 0), "no": int(i % 2 == 1)},
                 "target": "why", "comment": i} for i in range(40)]
    examples.append({"input": "both", "target_scores": {"yes": 1, "no": 1}})  # ambiguous: skipped
    path = tmp_path / "task.json"
    path.write_text(json.dumps({"canary": "x", "name": "t", "examples": examples}))
    task = load_task(str(path))
    assert task.label_names == ["no", "yes"] and sum(sizes(task).values()) == 40
    examples += [{"input": f"amb{i}", "target_scores": {"yes": 0, "no": 0}} for i in range(10)]
    path.write_text(json.dumps({"examples": examples}))
    with pytest.raises(DataError, match="11 of 51 BIG-bench examples"):
        load_task(str(path))


# --- columns ---------------------------------------------------------------------------------------------------------

def test_pair_columns_detected(tmp_path):
    path = tmp_path / "nli.csv"
    pd.DataFrame({"premise": [f"p{i}" for i in range(20)], "hypothesis": [f"h{i}" for i in range(20)],
                  "label": ["entail", "contradict"] * 10}).to_csv(path, index=False)
    task = load_task(str(path))
    assert task.has_text_pair and task.columns == {"text": "premise", "text_pair": "hypothesis", "label": "label"}
    row = task.splits["train"][0]
    assert row["text_pair"] == "h" + row["text"][1:]


def test_pair_only_next_to_its_partner(tmp_path):
    path = tmp_path / "d.csv"
    pd.DataFrame({"text": [f"t{i}" for i in range(20)], "sentence2": ["s"] * 20,
                  "label": [0, 1] * 10}).to_csv(path, index=False)
    assert not load_task(str(path)).has_text_pair  # sentence2 is not text's partner
    task = load_task(str(path), text_pair_column="sentence2")
    assert task.has_text_pair and task.splits["test"]["text_pair"] == ["s", "s"]


def test_explicit_columns(tmp_path):
    path = tmp_path / "d.csv"
    pd.DataFrame({"body": [f"b{i}" for i in range(20)], "text": ["decoy"] * 20, "stars": [1, 5] * 10,
                  "label": [0] * 20}).to_csv(path, index=False)
    task = load_task(str(path), text_column="body", label_column="stars")
    assert task.columns == {"text": "body", "text_pair": None, "label": "stars"}
    assert task.label_names == ["1", "5"] and task.splits["train"][0]["text"].startswith("b")


# --- determinism -----------------------------------------------------------------------------------------------------

def test_same_seed_same_task_other_seed_other_split(tmp_path):
    path = tmp_path / "d.csv"
    reviews(200).to_csv(path, index=False)
    a, b = load_task(str(path), seed=1), load_task(str(path), seed=1)
    assert a.sha256 == b.sha256 and len(a.sha256) == 64
    assert a.splits["test"]["text"] == b.splits["test"]["text"]
    c = load_task(str(path), seed=2)
    assert c.sha256 != a.sha256 and set(c.splits["test"]["text"]) != set(a.splits["test"]["text"])
    capped = load_task(str(path), seed=1, max_train_examples=50)
    assert capped.sha256 != a.sha256 and capped.splits["test"]["text"] == a.splits["test"]["text"]


# --- HF datasets saved to disk ---------------------------------------------------------------------------------------

def test_save_to_disk_dataset_dict(tmp_path):
    import datasets

    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["negative", "positive"])})
    def split(n, prefix, label=None):
        return datasets.Dataset.from_dict({"sentence": [f"{prefix} {i}" for i in range(n)],
                                           "label": [label if label is not None else i % 2 for i in range(n)]},
                                          features=features)
    # GLUE style: the test split is unlabelled (-1) and gets carved from train instead
    datasets.DatasetDict({"train": split(60, "tr"), "validation": split(20, "va"),
                          "test": split(5, "te", -1)}).save_to_disk(tmp_path / "saved")
    task = load_task(str(tmp_path / "saved"))
    assert task.name == "saved" and task.label_names == ["negative", "positive"]
    assert sizes(task) == {"train": 54, "validation": 20, "test": 6}
    assert all(t.startswith("va ") for t in task.splits["validation"]["text"])
    single = load_task(str(tmp_path / "saved"), split="validation")
    assert sizes(single) == {"train": 16, "validation": 2, "test": 2}


def test_save_to_disk_single_dataset(tmp_path):
    import datasets

    datasets.Dataset.from_pandas(reviews(30).rename(columns={"review": "text"})).save_to_disk(tmp_path / "one")
    task = load_task(str(tmp_path / "one"))
    assert sizes(task) == {"train": 24, "validation": 3, "test": 3} and task.label_names == ["0", "1", "2"]


# --- bad inputs ------------------------------------------------------------------------------------------------------

def write(tmp_path, name, frame):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return str(path)


def assert_one_line(excinfo):
    message = str(excinfo.value)
    assert message and "\n" not in message
    return message


def test_missing_named_column(tmp_path):
    path = write(tmp_path, "data.csv", pd.DataFrame({"text": ["a", "b"], "label": [0, 1]}))
    with pytest.raises(DataError) as e:
        load_task(path, text_column="review")
    assert assert_one_line(e) == (f"column 'review' not found in {path}; available columns: text, label. "
                                  "Pass --text-column.")


def test_undetectable_columns(tmp_path):
    path = write(tmp_path, "d.csv", pd.DataFrame({"body": ["a", "b"], "label": [0, 1]}))
    with pytest.raises(DataError, match="--text-column"):
        load_task(path)
    path = write(tmp_path, "d.csv", pd.DataFrame({"text": ["a", "b"], "y": [0, 1]}))
    with pytest.raises(DataError, match="holds the label.*available columns: text, y. Pass --label-column"):
        load_task(path)


def test_empty_files(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty.csv is empty"):
        load_task(str(tmp_path / "empty.csv"))
    (tmp_path / "header.csv").write_text("text,label\n")
    with pytest.raises(DataError, match="has no rows"):
        load_task(str(tmp_path / "header.csv"))
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataError, match="empty"):
        load_task(str(tmp_path / "empty.jsonl"))


def test_single_class(tmp_path):
    path = write(tmp_path, "d.csv", pd.DataFrame({"text": ["a", "b", "c"], "label": ["pos"] * 3}))
    with pytest.raises(DataError, match="single class \\('pos'\\).*at least 2 classes"):
        load_task(path)


def test_non_string_text(tmp_path):
    path = tmp_path / "d.jsonl"
    rows = [{"text": "ok", "label": 0}, {"text": 5, "label": 1}, {"text": None, "label": 0}, {"text": "x", "label": 1}]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(DataError) as e:
        load_task(str(path))
    assert "has 2 non-text values (numbers or missing), first at row index 1" in assert_one_line(e)
    path = write(tmp_path, "nan.csv", pd.DataFrame({"text": ["a", None, "c"], "label": [0, 1, 0]}))
    with pytest.raises(DataError, match="1 non-text values.*row index 1"):
        load_task(path)


def test_empty_text(tmp_path):
    path = tmp_path / "d.json"
    rows = [{"text": "fine", "label": 0}, {"text": "fine too", "label": 1}, {"text": "   ", "label": 0},
            {"text": "", "label": 1}]
    path.write_text(json.dumps(rows))
    with pytest.raises(DataError, match="2 empty or whitespace-only texts, first at row index 2"):
        load_task(str(path))


def test_missing_labels(tmp_path):
    path = write(tmp_path, "d.csv", pd.DataFrame({"text": ["a", "b", "c"], "label": [0, None, 1]}))
    with pytest.raises(DataError, match="1 missing labels, first at row index 1"):
        load_task(path)


def test_regression_labels(tmp_path):
    path = write(tmp_path, "d.csv", pd.DataFrame({"text": ["a", "b", "c"], "score": [0.5, 1.25, 3.0]}))
    with pytest.raises(DataError, match="regression"):
        load_task(path, label_column="score")


def test_malformed_files(tmp_path):
    (tmp_path / "bad.json").write_text('[{"text": "a", "label": 0},')
    with pytest.raises(DataError, match="bad.json is not valid JSON"):
        load_task(str(tmp_path / "bad.json"))
    (tmp_path / "bad.jsonl").write_text('{"text": "a", "label": 0}\n{"text": oops}\n')
    with pytest.raises(DataError, match="bad.jsonl: line 2 is not valid JSON"):
        load_task(str(tmp_path / "bad.jsonl"))
    (tmp_path / "bad.parquet").write_bytes(b"definitely not parquet")
    with pytest.raises(DataError, match="cannot read bad.parquet"):
        load_task(str(tmp_path / "bad.parquet"))
    (tmp_path / "latin.csv").write_bytes("text,label\ncaf\xe9,0\n".encode("latin-1"))
    with pytest.raises(DataError, match="latin.csv is not valid UTF-8"):
        load_task(str(tmp_path / "latin.csv"))
    (tmp_path / "dict.json").write_text('{"rows": []}')
    with pytest.raises(DataError, match="expected a JSON list of records"):
        load_task(str(tmp_path / "dict.json"))
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="unsupported file type"):
        load_task(str(tmp_path / "notes.txt"))


def test_too_few_rows_to_split(tmp_path):
    path = write(tmp_path, "d.csv", pd.DataFrame({"text": ["a", "b", "c"], "label": [0, 1, 0]}))
    with pytest.raises(DataError, match="only 3 training examples, too few"):
        load_task(path)


def test_bad_split_and_subset(tmp_path):
    path = write(tmp_path, "d.csv", reviews(20))
    with pytest.raises(DataError, match="split 'dev' not found.*available splits: train"):
        load_task(path, split="dev")
    with pytest.raises(DataError, match="--subset"):
        load_task(path, subset="x")


def test_missing_local_path_does_not_reach_the_hub(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        load_task(str(tmp_path / "nope.csv"))


def test_unknown_name_offline(monkeypatch):
    import datasets
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    # both libraries read the variables at import time, so set their flags too
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    with pytest.raises(DataError) as e:
        load_task("no_such_dataset_peftlab_xyz")
    message = assert_one_line(e)
    assert message.startswith("cannot load dataset 'no_such_dataset_peftlab_xyz': not an alias (rotten_tomatoes), "
                              "not a local file, and not reachable on the HF hub (")
