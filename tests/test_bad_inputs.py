"""Every bad input is refused before any work: one `error:` line, exit 2, no traceback, nothing in --out.

A corpus of bad inputs is built here, one group per kind of defect (unreadable compressed data, a data folder
without a train file, a --method-config that is not UTF-8 or holds bad settings, a budget the model cannot take, an
--out that cannot be written, model weights that are pickle or damaged, a model without a tokenizer), and each is run
through every command that reads it, in process, through the CLI's `main()`. The valid-but-odd inputs (a UTF-8 BOM, a
TSV, a class named "None", texts "NA", NUL bytes in a text, a 100k-character text) load and train.
"""

from __future__ import annotations

import gzip
import json
import lzma
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from peftlab.cli import main
from peftlab.files import LOCK_FILE, check_writable_folder
from peftlab.study import CompareConfig, prepare_study
from peftlab.tasks import load_task

from conftest import FIXED_RATES, tiny_bert_config, tiny_texts
from report_data import results_json


# --- running a command as the CLI does ------------------------------------------------------------------------------

def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """(exit code, stderr) of `peftlab ARGS` run in this process; an exception other than SystemExit (a traceback
    for the user) fails the test."""
    monkeypatch.setattr(sys, "argv", ["peftlab", *map(str, args)])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main()
    code = exit_info.value.code
    return (0 if code is None else code), capsys.readouterr().err


def assert_refused(monkeypatch, capsys, args: list, out: Path | None, *needles: str) -> str:
    """The command exits 2 with one `error:` line holding every needle, and creates nothing at ``out``."""
    code, err = run_cli(monkeypatch, capsys, *args)
    lines = err.strip().splitlines()
    assert code == 2, f"{args}: exit {code}\n{err}"
    assert len(lines) == 1 and lines[0].startswith("error: "), f"{args}:\n{err}"
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    if out is not None:
        assert not Path(out).exists(), f"{args} created {out}"
    return lines[0]


def write_suite(folder: Path, model: str, data: str | Path, **compare) -> Path:
    """A one-task suite over DATA (the bench command reads its data, model and compare block)."""
    path = folder / "suite.yaml"
    path.write_text(yaml.safe_dump({
        "name": "bad", "model": str(model), "methods": ["head"], "seeds": 1,
        "compare": {"max_steps": 1, "batch_size": 8, "max_length": 32, "robustness": False, "diagnose": False,
                    **compare},
        "tasks": [{"name": "t", "family": "f", "data": str(Path(data).resolve())}]}))
    return path


def commands_reading_data(tmp_path: Path, model: Path, data: Path, good: Path) -> dict[str, tuple[list, Path]]:
    """Every command that reads a --data file, with its --out: compare, diagnose, bench."""
    return {
        "compare": (["compare", "--model", model, "--data", data, "--methods", "head", "--out", tmp_path / "c"],
                    tmp_path / "c"),
        "diagnose": (["diagnose", "--model", model, "--data", data, "--out", tmp_path / "d"], tmp_path / "d"),
        "bench": (["bench", write_suite(tmp_path, model, data), "--out", tmp_path / "b"], tmp_path / "b"),
    }


# --- the corpus -----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("corpus")
    good = folder / "good.csv"
    tiny_texts().to_csv(good, index=False)
    text = good.read_bytes()
    packed = gzip.compress(text)
    files = {
        "good": good,
        "not_xz.csv.xz": text,  # plain text named .xz
        "corrupt_body.csv.gz": packed[:30] + bytes(64) + packed[94:],  # a valid gzip header, a corrupt body
        "truncated.csv.gz": packed[: len(packed) // 2],
        "not_xz.json.xz": json.dumps(tiny_texts(20).to_dict("records")).encode(),
        "not_gzip.jsonl.gz": b'{"text": "a b", "label": "x"}\n',
        "not_bz2.csv.bz2": text,
        "latin1.csv": "text,label\ncaf\xe9 good film,pos\n".encode("latin-1") * 1,
    }
    paths = {"good": good}
    for name, data in files.items():
        if name != "good":
            paths[name] = folder / name
            paths[name].write_bytes(data)
    assert lzma.compress(b"x")  # the real thing would read: these are what xz/gzip/bz2 refuse
    only_validation = folder / "only_validation"
    only_validation.mkdir()
    tiny_texts().to_csv(only_validation / "validation.csv", index=False)
    held_out = folder / "held_out"
    held_out.mkdir()
    tiny_texts(60, seed=1).to_csv(held_out / "validation.csv", index=False)
    tiny_texts(60, seed=2).to_csv(held_out / "test.csv", index=False)
    paths.update(only_validation=only_validation, held_out=held_out)
    return paths


UNREADABLE = ["not_xz.csv.xz", "corrupt_body.csv.gz", "truncated.csv.gz", "not_xz.json.xz", "not_gzip.jsonl.gz",
              "not_bz2.csv.bz2", "latin1.csv"]


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_bert_dir) -> dict[str, Path]:
    """Model folders that look like models but cannot train: pickle weights only, a damaged model.safetensors,
    no weights, no tokenizer, a tokenizer larger than the embeddings."""
    from transformers import BertForSequenceClassification

    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_bert_config())
    tokenizer_files = [p for p in tiny_bert_dir.iterdir() if p.name != "model.safetensors" and p.name != "config.json"]

    def folder(name: str, weights: bool = True, tokenizer: bool = True) -> Path:
        path = root / name
        path.mkdir()
        model.config.save_pretrained(path)
        if weights:
            (path / "model.safetensors").write_bytes((tiny_bert_dir / "model.safetensors").read_bytes())
        if tokenizer:
            for source in tokenizer_files:
                (path / source.name).write_bytes(source.read_bytes())
        return path

    pickle_only = folder("pickle_only", weights=False)
    torch.save(model.state_dict(), pickle_only / "pytorch_model.bin")
    corrupt = folder("corrupt_safetensors")
    weights = (corrupt / "model.safetensors").read_bytes()
    (corrupt / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    garbage = folder("garbage_safetensors")
    (garbage / "model.safetensors").write_bytes(b"\x00" * 100)
    no_weights = folder("no_weights", weights=False)
    no_tokenizer = folder("no_tokenizer", tokenizer=False)
    small_vocab = root / "small_vocab"
    BertForSequenceClassification(tiny_bert_config(vocab_size=1000)).save_pretrained(small_vocab)
    for source in tokenizer_files:  # the MiniLM tokenizer (30522 tokens) on a 1000-row embedding
        (small_vocab / source.name).write_bytes(source.read_bytes())
    return {"pickle_only": pickle_only, "corrupt_safetensors": corrupt, "garbage_safetensors": garbage,
            "no_weights": no_weights, "no_tokenizer": no_tokenizer, "small_vocab": small_vocab}


@pytest.fixture(scope="module")
def saved_study(tmp_path_factory, tiny_bert_dir, corpus) -> Path:
    """A study folder whose header `peftlab robustness` rebuilds (no runs: the robust set is refused first)."""
    folder = tmp_path_factory.mktemp("study")
    config = CompareConfig(**FIXED_RATES, model=str(tiny_bert_dir), data=str(corpus["good"]), methods=["head"], out=str(folder))
    header = {"config": config.describe(), "task": {"type": "classification", "columns": {}}, "dataset_sha256": "-"}
    (folder / "results.json").write_text(json.dumps({"study": header, "runs": []}))
    return folder


# --- 1. unreadable compressed or undecodable data -------------------------------------------------------------------

@pytest.mark.parametrize("name", UNREADABLE)
def test_unreadable_data_is_refused_by_every_command(name, corpus, tiny_bert_dir, saved_study, tmp_path, monkeypatch,
                                                     capsys):
    data = corpus[name]
    for command, (args, out) in commands_reading_data(tmp_path, tiny_bert_dir, data, corpus["good"]).items():
        assert_refused(monkeypatch, capsys, args, out, data.name)
    robust = tmp_path / "r"
    line = assert_refused(monkeypatch, capsys, ["compare", "--model", tiny_bert_dir, "--data", corpus["good"],
                                                "--methods", "head", "--robust-set", data, "--out", robust],
                          robust, "--robust-set", data.name)
    assert "cannot read" in line or "not valid UTF-8" in line
    before = sorted(p.name for p in saved_study.iterdir() if p.name != LOCK_FILE)
    assert_refused(monkeypatch, capsys, ["robustness", saved_study, "--robust-set", data], None, data.name)
    # nothing is written but the study folder's lock file (a study made by compare has it already)
    assert sorted(p.name for p in saved_study.iterdir() if p.name != LOCK_FILE) == before


def test_a_folder_without_a_train_file_is_refused(corpus, tiny_bert_dir, tmp_path, monkeypatch, capsys):
    for name in ("only_validation", "held_out"):  # one held-out file is refused like two
        for command, (args, out) in commands_reading_data(tmp_path, tiny_bert_dir, corpus[name],
                                                          corpus["good"]).items():
            assert_refused(monkeypatch, capsys, args, out, "none is called train", "train.*")


# --- 2, 6, 7. --method-config: undecodable, or settings the method cannot run with ----------------------------------

BAD_METHOD_CONFIGS = {
    "not_utf8.yaml": (b"lora:\n  r: 8\n  target_modules: [\xff\xfe]\n", "not UTF-8"),
    "r_zero.yaml": (b"lora: {r: 0}\n", "'r' must be at least 1, got 0"),
    "r_negative.yaml": (b"lora: {r: -4}\n", "'r' must be at least 1, got -4"),
    "r_text.yaml": (b"lora: {r: sixteen}\n", "'r' must be an integer, got 'sixteen'"),
    "dropout.yaml": (b"lora: {lora_dropout: 1.5}\n", "'lora_dropout' must be between 0 and 1"),
    "dropout_text.yaml": (b"lora: {lora_dropout: 1e-1}\n", "write 1.0e-3"),
    "bias.yaml": (b"lora: {bias: some}\n", "'bias' must be one of"),
    "targets.yaml": (b"lora: {target_modules: [query, 3]}\n", "'target_modules' must be"),
    "prompt.yaml": (b"prompt: {num_virtual_tokens: 0}\n", "'num_virtual_tokens' must be at least 1"),
    "prompt_init.yaml": (b"prompt: {prompt_tuning_init: SOMETHING}\n", "'prompt_tuning_init' must be one of"),
    "adapter.yaml": (b"adapter: {bottleneck_size: 0}\n", "'bottleneck_size' must be at least 1"),
    "dora.yaml": (b"dora: {use_dora: yes please}\n", "'use_dora' must be true or false"),
}


@pytest.mark.parametrize("name", BAD_METHOD_CONFIGS)
def test_a_bad_method_config_is_refused_by_compare_estimate_and_bench(name, corpus, tiny_bert_dir, tmp_path,
                                                                       monkeypatch, capsys):
    content, message = BAD_METHOD_CONFIGS[name]
    path = tmp_path / name
    path.write_bytes(content)
    methods = "lora,prompt,adapter,dora"
    out = tmp_path / "c"
    assert_refused(monkeypatch, capsys, ["compare", "--model", tiny_bert_dir, "--data", corpus["good"], "--methods",
                                         methods, "--method-config", path, "--out", out], out, message)
    for estimated in (methods, "qlora,prompt,adapter,dora"):
        assert_refused(monkeypatch, capsys, ["estimate", "--model", tiny_bert_dir, "--methods", estimated,
                                             "--method-config", path], None, message)
    suite = write_suite(tmp_path, tiny_bert_dir, corpus["good"], method_config=str(path))
    assert_refused(monkeypatch, capsys, ["bench", suite, "--out", tmp_path / "b"], tmp_path / "b", message)


def test_good_settings_still_pass(corpus, tiny_bert_dir, tmp_path):
    path = tmp_path / "good.yaml"
    path.write_text("lora: {r: 4, lora_alpha: 8.5, lora_dropout: 0.1, target_modules: [query, value], "
                    "learning_rate: 1e-3}\nprompt: {num_virtual_tokens: 4, prompt_tuning_init: RANDOM}\n"
                    "adapter: {bottleneck_size: 8}\nia3:\n")
    study = prepare_study(CompareConfig(**FIXED_RATES, model=str(tiny_bert_dir), data=str(corpus["good"]), out=str(tmp_path / "o"),
                                        methods=["lora", "prompt", "adapter", "ia3"], method_config=str(path)))
    assert study.overrides["lora"]["r"] == 4 and study.overrides["ia3"] == {}


def test_a_max_length_past_the_model_positions_is_refused(corpus, tiny_bert_dir, tmp_path, monkeypatch, capsys):
    for length in ("161", "100000"):  # the tiny BERT embeds 160 positions
        for command, (args, out) in commands_reading_data(tmp_path, tiny_bert_dir, corpus["good"],
                                                          corpus["good"]).items():
            if command == "bench":
                args = ["bench", write_suite(tmp_path, tiny_bert_dir, corpus["good"], max_length=int(length)),
                        "--out", out]
            else:
                args = [*args, "--max-length", length]
            assert_refused(monkeypatch, capsys, args, out, f"--max-length {length}", "160 positions")
    prepare_study(CompareConfig(**FIXED_RATES, model=str(tiny_bert_dir), data=str(corpus["good"]), max_length=160,
                                out=str(tmp_path / "ok")))


# --- 3. an --out that cannot be written -----------------------------------------------------------------------------

def test_an_unwritable_out_is_refused_before_any_work(corpus, tiny_bert_dir, tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "sub"  # cannot be created: its parent is a file
    for command, (args, _) in commands_reading_data(tmp_path, tiny_bert_dir, corpus["good"], corpus["good"]).items():
        args = [*args[:-1], out]
        assert_refused(monkeypatch, capsys, args, None, "cannot write to --out", str(out), "Not a directory")
    assert_refused(monkeypatch, capsys, ["compare", "--model", tiny_bert_dir, "--data", corpus["good"],
                                         "--out", blocker], None, "is a file")
    study = tmp_path / "study"
    study.mkdir()
    (study / "results.json").write_text(json.dumps(results_json()))
    assert_refused(monkeypatch, capsys, ["report", study, "--out", out / "report.html"], None,
                   "cannot write to --out", "Not a directory")
    assert sorted(p.name for p in study.iterdir()) == ["results.json"]
    assert blocker.read_text() == "not a folder"


def test_the_out_check_leaves_no_probe_behind(tmp_path):
    folder = check_writable_folder(tmp_path / "new" / "nested")
    assert folder.is_dir() and list(folder.iterdir()) == []


# --- 4, 5. model weights and tokenizer ------------------------------------------------------------------------------

@pytest.mark.parametrize("name,message", [
    ("pickle_only", "only pytorch_model.bin"),
    ("corrupt_safetensors", "model.safetensors is not a readable safetensors file"),
    ("garbage_safetensors", "model.safetensors is not a readable safetensors file"),
    ("no_weights", "has no weights"),
    ("no_tokenizer", "cannot load a tokenizer"),
    ("small_vocab", "embeds 1000 tokens but its tokenizer has 30522"),
])
def test_a_model_that_cannot_train_is_refused_by_every_command(name, message, models, corpus, tmp_path, monkeypatch,
                                                               capsys):
    for command, (args, out) in commands_reading_data(tmp_path, models[name], corpus["good"], corpus["good"]).items():
        assert_refused(monkeypatch, capsys, args, out, message)


def test_a_tokenizer_from_elsewhere(models, corpus, tiny_bert_dir, tmp_path, monkeypatch, capsys):
    no_tokenizer = models["no_tokenizer"]
    line = assert_refused(monkeypatch, capsys, ["compare", "--model", no_tokenizer, "--data", corpus["good"],
                                                "--out", tmp_path / "c"], tmp_path / "c", "no tokenizer files",
                          "--tokenizer")
    assert str(no_tokenizer) in line
    assert_refused(monkeypatch, capsys, ["diagnose", "--model", no_tokenizer, "--tokenizer", models["no_weights"] / "x",
                                         "--data", corpus["good"], "--out", tmp_path / "d"], tmp_path / "d",
                   "cannot load --tokenizer")
    assert_refused(monkeypatch, capsys, ["compare", "--model", tiny_bert_dir, "--tokenizer", no_tokenizer,
                                         "--data", corpus["good"], "--out", tmp_path / "e"], tmp_path / "e",
                   "cannot load a tokenizer from --tokenizer")
    config = CompareConfig(**FIXED_RATES, model=str(no_tokenizer), tokenizer=str(tiny_bert_dir), data=str(corpus["good"]),
                           out=str(tmp_path / "ok"))
    study = prepare_study(config)
    assert len(study.tokenizer) == 30522 and study.model_ref.tokenizer.path == str(tiny_bert_dir)
    assert config.describe()["tokenizer"] == str(tiny_bert_dir)  # recorded: a reloaded study loads the same one


# --- the valid-but-odd inputs ---------------------------------------------------------------------------------------

LONG_TEXT = ("good " * 20_000)[:100_000]


def odd_frame() -> pd.DataFrame:
    """Labels "None" and "pos"; texts "NA", "null", with a NUL byte, and one of 100k characters."""
    frame = tiny_texts(120).replace({"label": {"neg": "None"}})
    frame.loc[0, "text"], frame.loc[1, "text"], frame.loc[2, "text"] = "NA", "null", "good\x00film was great"
    frame.loc[3, "text"] = LONG_TEXT
    return frame


@pytest.fixture(scope="module")
def odd_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("odd")
    frame = odd_frame()
    files = {"bom.csv": folder / "bom.csv", "tab.tsv": folder / "tab.tsv", "odd.csv.gz": folder / "odd.csv.gz",
             "odd.jsonl": folder / "odd.jsonl"}
    files["bom.csv"].write_bytes(frame.to_csv(index=False).encode("utf-8-sig"))
    frame.to_csv(files["tab.tsv"], sep="\t", index=False)
    files["odd.csv.gz"].write_bytes(gzip.compress(frame.to_csv(index=False).encode()))
    files["odd.jsonl"].write_text("\ufeff" + frame.to_json(orient="records", lines=True))
    return files


@pytest.mark.parametrize("name", ["bom.csv", "tab.tsv", "odd.csv.gz", "odd.jsonl"])
def test_odd_but_valid_files_load_as_written(name, odd_files):
    task = load_task(str(odd_files[name]), max_train_examples=None, max_eval_examples=None)
    assert task.label_names == ["None", "pos"]
    assert task.columns["text"] == "text" and task.columns["label"] == "label"
    texts = [text for split in task.splits.values() for text in split["text"]]
    assert len(texts) == 120
    assert {"NA", "null", "good\x00film was great", LONG_TEXT} <= set(texts)


def test_empty_cells_are_still_missing(tmp_path):
    path = tmp_path / "gaps.csv"
    frame = tiny_texts(40)
    frame.loc[5, "label"] = ""
    frame.to_csv(path, index=False)
    with pytest.raises(Exception, match="label"):
        load_task(str(path))


def test_odd_but_valid_data_trains_through_the_cli(odd_files, tiny_bert_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "study"
    code, err = run_cli(monkeypatch, capsys, "compare", "--model", tiny_bert_dir, "--data", odd_files["bom.csv"],
                        "--methods", "head", "--max-steps", "1", "--batch-size", "8", "--max-length", "32",
                        "--no-robustness", "--no-diagnose", "--out", out)
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    assert [run["status"] for run in results["runs"]] == ["ok"]
    assert results["study"]["task"]["label_names"] == ["None", "pos"]
