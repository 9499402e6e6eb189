"""The estimate on every architecture of the zoo (tests/zoo.py), modelled generically from the config and the
model instantiated on the meta device: parameter counts (total and trainable) and the FLOPs of one training step
within 0.8-1.25 of the real tiny model's, for each task the architecture has and each method the registry
applies to it. A method the installed peft/transformers cannot apply or run on an architecture is skipped with
its reason (those are limits of the method or the model class, not of the estimate)."""

from __future__ import annotations

import json

import pytest

from peftlab.errors import ModelError
from peftlab.estimate import EstimateSettings, facts_from_config, load_facts
from peftlab.estimate.estimate import estimate_plan
from peftlab.estimate.plans import build_plan, resolve_settings
from peftlab.estimate.validate import apply_method, build_model, make_batch
from peftlab.estimate.trace import count_step_flops
from peftlab.measure import parameter_counts
from peftlab.methods import get_method
from zoo import ARCHITECTURES, BY_NAME, save_tiny_model

METHODS = ("full", "lora", "ia3", "prompt", "prefix")
LOW, HIGH = 0.8, 1.25
BATCH, SEQ = 2, 16


def _tasks(stack: str) -> tuple[str, ...]:
    return {"encoder": ("classification",), "decoder": ("classification", "causal-lm"),
            "encoder-decoder": ("seq2seq-lm", "classification")}[stack]


CASES = [(arch.name, task, method) for arch in ARCHITECTURES for task in _tasks(arch.stack) for method in METHODS]


@pytest.fixture(scope="module")
def configs(smollm_tokenizer):
    return {arch.name: arch.config(len(smollm_tokenizer), smollm_tokenizer) for arch in ARCHITECTURES
            if arch.available()}


def _within(ratio: float) -> bool:
    return LOW <= ratio <= HIGH


@pytest.mark.parametrize("arch, task, method", CASES, ids=[f"{a}-{t}-{m}" for a, t, m in CASES])
def test_parameters_and_flops_within_a_quarter(configs, arch, task, method):
    if arch not in configs:
        pytest.skip(f"transformers {BY_NAME[arch].model_class} is not installed")
    config = configs[arch]
    try:
        model = apply_method(build_model(config, task), method)
    except Exception as error:  # noqa: BLE001 - a method's defaults that do not fit this architecture
        pytest.skip(f"{method} does not apply to {arch}: {str(error).splitlines()[0][:150]}")
    # the estimate gets the settings the method resolved on the real model (as compare records them)
    settings, _ = get_method(method).resolve(build_model(config, task), {})
    facts = facts_from_config(config)
    plan = build_plan(facts, method, resolve_settings(method, settings), task)
    predicted = estimate_plan(facts, plan, EstimateSettings(batch_size=BATCH, seq_len=SEQ, dtype="fp32", task=task,
                                                            device="cpu"))
    trainable, total = parameter_counts(model)
    assert _within(predicted["total_params"] / total), (predicted["total_params"], total)
    assert _within(predicted["trainable_params"] / trainable), (predicted["trainable_params"], trainable)
    try:
        counted = count_step_flops(model, make_batch(config, task, BATCH, SEQ))
    except Exception as error:  # noqa: BLE001 - the model class cannot run the method (e.g. no prefix support)
        pytest.skip(f"{arch} cannot train with {method}: {str(error).splitlines()[0][:150]}")
    assert _within(predicted["flops_per_step"] / counted), (predicted["flops_per_step"], counted)
    assert predicted["architecture"]["modelled"] in ("detailed", "generic")


@pytest.mark.parametrize("arch", ["t5", "bart"])
@pytest.mark.parametrize("method", ["full", "prompt", "prefix"])
def test_an_encoder_decoder_target_shorter_or_longer_than_its_input(configs, arch, method):
    """The decoder runs over the target (target_len), the encoder over the input; peft's SEQ_2_SEQ_LM prompt
    tuning prepends to the encoder only, prefix tuning's keys join the decoder's self-attention only."""
    if arch not in configs:
        pytest.skip(f"transformers {BY_NAME[arch].model_class} is not installed")
    config = configs[arch]
    model = apply_method(build_model(config, "seq2seq-lm"), method)
    settings, _ = get_method(method).resolve(build_model(config, "seq2seq-lm"), {})
    facts = facts_from_config(config)
    plan = build_plan(facts, method, resolve_settings(method, settings), "seq2seq-lm")
    for target in (5, 40):
        predicted = estimate_plan(facts, plan, EstimateSettings(batch_size=BATCH, seq_len=SEQ, target_len=target,
                                                                dtype="fp32", task="seq2seq-lm", device="cpu"))
        counted = count_step_flops(model, make_batch(config, "seq2seq-lm", BATCH, SEQ, target_len=target))
        assert _within(predicted["flops_per_step"] / counted), (target, predicted["flops_per_step"], counted)


@pytest.mark.parametrize("arch", [a.name for a in ARCHITECTURES])
def test_meta_count_checks_the_config_facts(configs, arch):
    """The parameters the config's shapes imply (embeddings, attention and MLP matrices) are within a quarter of
    the instantiated base model's, and the generic record says what it approximates."""
    if arch not in configs:
        pytest.skip(f"transformers {BY_NAME[arch].model_class} is not installed")
    facts = facts_from_config(configs[arch].to_dict())  # a config.json dict: its attribute_map applies
    assert facts.stack == BY_NAME[arch].stack
    if facts.generic:
        assert _within(facts.config_params / facts.instantiated_params), (facts.config_params,
                                                                          facts.instantiated_params)
        assert facts.approximated and "activation memory" in facts.approximated[0]


@pytest.mark.parametrize("arch", ["gpt2", "t5", "modernbert"])
def test_cli_estimates_a_local_folder(arch, tmp_path, smollm_tokenizer, monkeypatch, capsys):
    import sys

    from peftlab.cli import main

    if not BY_NAME[arch].available():
        pytest.skip(f"transformers {BY_NAME[arch].model_class} is not installed")
    folder = save_tiny_model(BY_NAME[arch], tmp_path / arch, smollm_tokenizer)
    monkeypatch.setattr(sys, "argv", ["peftlab", "estimate", "--model", str(folder), "--methods",
                                      "full,lora,qlora,prompt", "--seq-len", "64", "--batch-size", "2", "--json"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    results = json.loads(capsys.readouterr().out)
    assert (exit_info.value.code or 0) == 0 and [r["method"] for r in results] == ["full", "lora", "qlora", "prompt"]
    expected_task = {"decoder": "causal-lm", "encoder-decoder": "seq2seq-lm"}.get(BY_NAME[arch].stack,
                                                                                 "classification")
    assert {r["task"] for r in results} == {expected_task}
    assert all(r["architecture"]["modelled"] == "generic" and r["architecture"]["approximated"] for r in results)
    if expected_task == "seq2seq-lm":  # a target shorter than the input: the decoder's side costs less
        monkeypatch.setattr(sys, "argv", [*sys.argv, "--target-len", "8"])
        with pytest.raises(SystemExit):
            main()
        shorter = json.loads(capsys.readouterr().out)
        assert all(s["flops_per_step"] < r["flops_per_step"] and s["memory_bytes"]["activations"]
                   < r["memory_bytes"]["activations"] for s, r in zip(shorter, results))


def test_a_model_transformers_cannot_build_is_one_model_error():
    with pytest.raises(ModelError, match="no-such-architecture"):
        facts_from_config({"model_type": "no-such-architecture", "hidden_size": 8})


def test_an_encoder_decoder_has_no_causal_lm_estimate(configs):
    from peftlab.errors import ConfigError

    facts = facts_from_config(configs["t5"])
    with pytest.raises(ConfigError, match="encoder-decoder"):
        EstimateSettings(task="causal-lm").task_for(facts)
    with pytest.raises(ModelError, match="seq2seq"):
        build_plan(load_facts("bert-base"), "full", resolve_settings("full"), "seq2seq-lm")


def test_shared_layers_run_as_often_as_the_config_says(configs):
    """ALBERT holds one layer and runs it num_hidden_layers times: counted once, computed each time."""
    facts = facts_from_config(configs["albert"])
    plan = build_plan(facts, "full", resolve_settings("full"), "classification")
    assert plan.tensors.num_layers == 1 and plan.tensors.layer_calls == (configs["albert"].num_hidden_layers,)
