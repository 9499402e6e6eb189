"""The configuration stated once: option groups as dataclasses, the CLI's options derived from them, `--config`
YAML with command-line overrides, the whole config in results.json's header and a study reloaded from it."""

from __future__ import annotations

import dataclasses
import re
import sys

import pytest
import yaml
from typer.testing import CliRunner

from peftlab.bench.suite import load_suite
from peftlab.cli import app, main
from peftlab.diagnose import DiagnoseConfig
from peftlab.errors import ConfigError
from peftlab.options import config_from_mapping, config_from_sources, field_names
from peftlab.study.config import CompareConfig, DataOptions, ModelOptions
from peftlab.study.reload import config_from_header

runner = CliRunner()


def _flags(command: str) -> set[str]:
    result = runner.invoke(app, [command, "--help"], terminal_width=400, env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    return set(re.findall(r"--[a-z0-9-]+", result.output))


def test_every_field_of_the_config_is_an_option_of_the_command():
    compare_flags = _flags("compare")
    for item in dataclasses.fields(CompareConfig):
        assert f"--{item.name.replace('_', '-')}" in compare_flags, item.name
    assert {"--robustness", "--no-robustness", "--diagnose", "--no-diagnose", "--config", "--print-config"} <= compare_flags
    diagnose_flags = _flags("diagnose")
    for name in field_names(ModelOptions) + field_names(DataOptions) + ["probe_steps", "shift_texts", "out"]:
        assert f"--{name.replace('_', '-')}" in diagnose_flags, name


def test_diagnose_reuses_the_model_and_data_groups():
    assert set(field_names(ModelOptions)) | set(field_names(DataOptions)) <= set(field_names(DiagnoseConfig))
    config = DiagnoseConfig(model="m", data="d", text_column="review", max_length=64, seed=3).compare_config()
    assert (config.model, config.data, config.text_column, config.max_length, config.seed) == ("m", "d", "review", 64, 3)
    assert config.methods == ["full"] and config.robustness is False


def test_a_config_file_with_command_line_overrides(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text("methods: [full, ia3]\nmax-steps: 7\nbf16: true\nmax_train_examples: 0\nout: runs/x\n")
    result = runner.invoke(app, ["compare", "--config", str(path), "--max-steps", "3", "--methods", "full,lora",
                                 "--print-config"])
    assert result.exit_code == 0, result.output
    printed = yaml.safe_load(result.output)
    assert printed["methods"] == ["full", "lora"] and printed["max_steps"] == 3  # the command line wins
    assert printed["bf16"] is True and printed["out"] == "runs/x"  # the file fills in the rest
    assert printed["max_train_examples"] is None  # 0 = all, as on the command line
    assert printed["epochs"] == CompareConfig().epochs  # and the defaults the remainder
    # what --print-config writes is a --config file that gives the same configuration back
    again = tmp_path / "again.yaml"
    again.write_text(result.output)
    assert config_from_sources(CompareConfig, again, {}) == config_from_mapping(CompareConfig, printed)
    assert not (tmp_path / "runs").exists()  # printing the configuration does no work
    # one-time actions are not part of the study: a config printed or recorded with them does not repeat them
    restarted = runner.invoke(app, ["compare", "--restart", "--wait", "--print-config"])
    assert restarted.exit_code == 0 and not {"restart", "wait"} & set(yaml.safe_load(restarted.output))


@pytest.mark.parametrize("text,message", [
    ("foo: 1\n", "unknown option 'foo'"),
    ("epochs: three\n", "epochs must be int, got 'three'"),
    ("methods: [full, 3]\n", "methods must be list"),
    ("- a list\n", "must map option names to values"),
    ("model: [unclosed\n", "is not valid YAML"),
])
def test_a_bad_config_file_is_one_line_and_exit_2(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        config_from_sources(CompareConfig, path, {})


def test_the_cli_says_so_in_one_line(tmp_path, capsys, monkeypatch):
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"model: \xff\xfe\n")
    monkeypatch.setattr(sys, "argv", ["peftlab", "compare", "--config", str(path), "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: --config") and "UTF-8" in error and len(error.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_the_header_holds_the_whole_config_and_gives_it_back(tmp_path):
    config = CompareConfig(model="m", data="d.csv", methods=["full", "lora"], text_column="review", max_steps=5,
                           seeds=2, tune=["lr"], perturb_examples=30, bf16=True, task="classification",
                           out="elsewhere")
    header = {"config": config.describe(), "task": {"type": "classification", "columns": {}}}
    rebuilt = config_from_header(header, tmp_path)
    assert rebuilt == dataclasses.replace(config, out=str(tmp_path))
    without = config_from_header(header, tmp_path, robustness=False)
    assert without.robustness is False and without.robust_set is None


def test_an_old_header_without_the_config_still_reloads(tmp_path):
    header = {"model": "m", "data": "d.json", "methods": ["full"], "seed": 4,
              "budget": {"max_train_examples": 100, "max_eval_examples": 50, "epochs": 2, "max_steps": None,
                         "batch_size": 8, "max_length": 64},
              "task": {"type": "multiple-choice", "columns": {"text": "input", "text_pair": None, "label": "target"}}}
    rebuilt = config_from_header(header, tmp_path)
    assert (rebuilt.model, rebuilt.seed, rebuilt.batch_size, rebuilt.task) == ("m", 4, 8, "multiple-choice")


def test_a_suite_compare_block_is_checked_with_the_same_types(tmp_path):
    suite = tmp_path / "suite.yaml"
    suite.write_text("name: s\nmodel: minilm\nmethods: [full]\ncompare: {max_steps: two}\n"
                     "tasks:\n  - {name: rt, family: x, data: rotten_tomatoes}\n")
    with pytest.raises(ConfigError, match="max_steps must be int or none, got 'two'"):
        load_suite(str(suite))
