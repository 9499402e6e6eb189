"""Every registered method applies to a tiny BERT classifier and trains exactly what it claims; settings,
overrides and --method-config files are validated."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn
from transformers import LlamaConfig, LlamaForSequenceClassification

from conftest import TINY_LABELS
from peftlab.errors import ConfigError, MethodError
from peftlab.measure import parameter_counts
from peftlab.methods import DEFAULT_METHODS, METHODS, PEFTLAB_METHODS, get_method, parse_methods, read_method_config

CLASSIFIER = {"classifier.weight", "classifier.bias"}
PEFT_LIKE = ["lora", "dora", "ia3", "prompt", "prefix", "adapter"]
# names a trainable parameter may have, per parameter-efficient method (anything else would be a base weight)
TRAINABLE_NAME = {
    "lora": r"\.lora_[AB]\.default\.weight$|classifier\.modules_to_save\.default\.(weight|bias)$",
    "dora": r"\.lora_([AB]|magnitude_vector)\.default\.weight$|classifier\.modules_to_save\.default\.(weight|bias)$",
    "ia3": r"\.ia3_l\.default$|classifier\.modules_to_save\.default\.(weight|bias)$",
    "prompt": r"^prompt_encoder\.default\.embedding\.weight$|classifier\.modules_to_save\.default\.(weight|bias)$",
    "prefix": r"^prompt_encoder\.default\.embedding\.weight$|classifier\.modules_to_save\.default\.(weight|bias)$",
    "adapter": r"\.adapter\.(down|up)\.(weight|bias)$|^classifier\.(weight|bias)$",
}


def trainable_names(model: nn.Module) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


def applied(method_name: str, base: nn.Module, overrides: dict | None = None) -> nn.Module:
    method = get_method(method_name)
    settings, _ = method.resolve(base, overrides or {})
    return method.apply(base, settings)


def token_batch(n: int = 4, length: int = 12, seed: int = 1) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1000, 30000, (n, length), generator=generator)
    input_ids[:, 0] = 101  # [CLS]
    attention_mask = torch.ones_like(input_ids)
    attention_mask[0, length // 2:] = 0  # one padded row
    labels = torch.arange(n) % len(TINY_LABELS)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def expected_lora_parameters(base: nn.Module, r: int) -> int:
    """LoRA on every nn.Linear of the base except the head (which trains in full): r * (in + out) each,
    plus the head's own parameters (its trainable copy in modules_to_save)."""
    lora = sum(
        r * (module.in_features + module.out_features)
        for name, module in base.named_modules()
        if isinstance(module, nn.Linear) and not name.startswith("classifier")
    )
    head = sum(p.numel() for p in base.classifier.parameters())
    return lora + head


def test_registry_has_every_documented_method():
    assert set(PEFTLAB_METHODS) == {"full", "head", "bitfit", "lora", "dora", "ia3", "prompt", "prefix", "adapter"}
    assert set(PEFTLAB_METHODS) < set(METHODS)  # and the tuners generated from peft (tests/test_peft_tuners.py)
    assert set(DEFAULT_METHODS) <= set(METHODS)
    for name, method in METHODS.items():
        assert method.name == name
        assert method.learning_rate > 0


def test_full_trains_every_parameter(load_tiny_bert):
    base = load_tiny_bert()
    total = sum(p.numel() for p in base.parameters())
    model = applied("full", base)
    assert trainable_names(model) == {name for name, _ in model.named_parameters()}
    assert parameter_counts(model) == (total, total)


def test_head_trains_exactly_the_classifier(load_tiny_bert):
    model = applied("head", load_tiny_bert())
    assert trainable_names(model) == CLASSIFIER
    trainable, total = parameter_counts(model)
    assert trainable == 32 * 2 + 2
    assert total == sum(p.numel() for p in model.parameters())


def test_bitfit_trains_every_bias_and_the_classifier_only(load_tiny_bert):
    model = applied("bitfit", load_tiny_bert())
    biases = {name for name, _ in model.named_parameters() if name.endswith(".bias")}
    # per layer: q, k, v, attention output, its LayerNorm, intermediate, output, its LayerNorm;
    # then the embeddings' LayerNorm, the pooler and the classifier
    assert len(biases) == 2 * 8 + 3
    assert trainable_names(model) == biases | CLASSIFIER
    trainable, _ = parameter_counts(model)
    assert trainable == sum(p.numel() for name, p in model.named_parameters() if name in biases | CLASSIFIER)


@pytest.mark.parametrize("method_name", PEFT_LIKE)
def test_parameter_efficient_methods_train_a_small_share_including_the_head(method_name, load_tiny_bert):
    base = load_tiny_bert()
    base_total = sum(p.numel() for p in base.parameters())
    model = applied(method_name, base)
    trainable, total = parameter_counts(model)
    assert 0 < trainable < 0.05 * total
    assert total >= base_total  # the base is all still there
    names = trainable_names(model)
    pattern = re.compile(TRAINABLE_NAME[method_name])
    assert [n for n in names if not pattern.search(n)] == []  # no base weight trains
    # the head trains (peft: its copy in modules_to_save; adapter: the head itself), weight and bias
    head_names = [n for n in names if "classifier" in n]
    assert len(head_names) == 2, head_names
    assert sum(p.numel() for n, p in model.named_parameters() if n in head_names) == 32 * 2 + 2


@pytest.mark.parametrize("method_name", list(PEFTLAB_METHODS))
def test_gradients_reach_exactly_the_trainable_parameters(method_name, load_tiny_bert):
    torch.manual_seed(0)
    model = applied(method_name, load_tiny_bert())
    model.train()
    loss = model(**token_batch()).loss
    assert torch.isfinite(loss)
    loss.backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, f"{method_name}: trainable {name} got no gradient"
            assert torch.isfinite(p.grad).all()
        else:
            assert p.grad is None, f"{method_name}: frozen {name} got a gradient"
    # the head's gradient is never all zeros (it sits right under the loss)
    head_grads = [p.grad for n, p in model.named_parameters() if p.requires_grad and "classifier" in n]
    assert head_grads and all(g.abs().sum() > 0 for g in head_grads)


def test_lora_count_matches_the_formula_for_r8_on_all_linear_layers(load_tiny_bert):
    base = load_tiny_bert()
    expected = expected_lora_parameters(base, r=8)
    n_linear = sum(isinstance(m, nn.Linear) for n, m in base.named_modules() if not n.startswith("classifier"))
    assert n_linear == 2 * 6 + 1  # q, k, v, attention output, intermediate, output per layer; the pooler
    model = applied("lora", base)
    trainable, _ = parameter_counts(model)
    assert trainable == expected == 7746
    lora_a = [p for n, p in model.named_parameters() if ".lora_A." in n]
    assert len(lora_a) == n_linear and all(p.shape[0] == 8 for p in lora_a)


def test_dora_adds_one_magnitude_per_output_feature(load_tiny_bert):
    base = load_tiny_bert()
    out_features = sum(
        m.out_features for n, m in base.named_modules() if isinstance(m, nn.Linear) and not n.startswith("classifier")
    )
    model = applied("dora", base)
    trainable, _ = parameter_counts(model)
    assert trainable == expected_lora_parameters(load_tiny_bert(), r=8) + out_features


def test_lora_resolve_applies_overrides(load_tiny_bert):
    base = load_tiny_bert()
    method = get_method("lora")
    settings, learning_rate = method.resolve(base, {"r": 4, "learning_rate": 1e-3})
    assert settings["r"] == 4
    assert learning_rate == 1e-3
    assert "learning_rate" not in settings
    assert settings["lora_alpha"] == 16 and settings["target_modules"] == "all-linear"
    assert settings["modules_to_save"] == ["classifier"]
    # defaults are not mutated by an override
    assert method.resolve(base, {})[0]["r"] == 8
    assert method.resolve(base, {})[1] == method.learning_rate
    model = method.apply(base, settings)
    trainable, _ = parameter_counts(model)
    assert trainable == expected_lora_parameters(load_tiny_bert(), r=4)


def test_learning_rate_given_as_yaml_string_is_a_float(load_tiny_bert):
    # PyYAML reads `1e-3` (no dot) as the string "1e-3"
    _, learning_rate = get_method("full").resolve(load_tiny_bert(), {"learning_rate": "1e-3"})
    assert learning_rate == 1e-3 and isinstance(learning_rate, float)


@pytest.mark.parametrize(("method_name", "key"), [("lora", "rank"), ("full", "r"), ("adapter", "r"), ("ia3", "lr")])
def test_unknown_setting_is_a_method_error(method_name, key, load_tiny_bert):
    with pytest.raises(MethodError, match=key):
        get_method(method_name).resolve(load_tiny_bert(), {key: 4})


def test_bad_setting_value_is_a_method_error(load_tiny_bert):
    base = load_tiny_bert()
    with pytest.raises(MethodError, match="swishy"):  # refused when the settings are resolved, before applying
        get_method("adapter").resolve(base, {"nonlinearity": "swishy"})
    settings, _ = get_method("adapter").resolve(base, {})
    with pytest.raises(MethodError, match="swishy"):  # and by apply too, for settings that skipped the check
        get_method("adapter").apply(base, {**settings, "nonlinearity": "swishy"})


def test_parse_methods():
    assert parse_methods("lora, full ,lora") == ["lora", "full"]
    assert parse_methods(["head", "bitfit"]) == ["head", "bitfit"]
    with pytest.raises(MethodError, match="nope"):
        parse_methods("lora,nope")
    with pytest.raises(MethodError):
        parse_methods(" , ")
    with pytest.raises(MethodError, match="nope"):
        get_method("nope")


def test_read_method_config(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("lora:\n  r: 4\n  learning_rate: 1.0e-3\nfull:\n  learning_rate: 2.0e-5\n")
    assert read_method_config(good, ["lora", "full"]) == {"lora": {"r": 4, "learning_rate": 1e-3},
                                                           "full": {"learning_rate": 2e-5}}
    # entries for methods not in the study are checked but dropped
    assert read_method_config(good, ["lora"]) == {"lora": {"r": 4, "learning_rate": 1e-3}}
    assert read_method_config(None, ["lora"]) == {}

    unknown_key = tmp_path / "unknown_key.yaml"
    unknown_key.write_text("lora:\n  rank: 4\n")
    with pytest.raises(MethodError, match="rank"):
        read_method_config(unknown_key, ["lora"])

    unknown_method = tmp_path / "unknown_method.yaml"
    unknown_method.write_text("nope:\n  r: 4\n")
    with pytest.raises(MethodError, match="nope"):
        read_method_config(unknown_method, ["lora"])

    invalid = tmp_path / "invalid.yaml"
    invalid.write_text("lora: {r: 4\n")
    with pytest.raises(ConfigError, match="YAML"):
        read_method_config(invalid, ["lora"])

    not_a_mapping = tmp_path / "list.yaml"
    not_a_mapping.write_text("- lora\n- full\n")
    with pytest.raises(ConfigError):
        read_method_config(not_a_mapping, ["lora"])

    with pytest.raises(ConfigError):
        read_method_config(tmp_path / "missing.yaml", ["lora"])


def tiny_llama(**overrides) -> LlamaForSequenceClassification:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                         num_labels=2, pad_token_id=0, **overrides)
    return LlamaForSequenceClassification(config)


def test_bitfit_on_a_model_without_biases_is_a_method_error():
    model = tiny_llama()
    assert model.config.attention_bias is False and model.config.mlp_bias is False
    assert not any(n.endswith(".bias") for n, _ in model.named_parameters())
    with pytest.raises(MethodError, match="bias"):
        get_method("bitfit").apply(model, {})


def test_bitfit_on_llama_with_attention_biases_trains_them_and_the_score_head():
    model = get_method("bitfit").apply(tiny_llama(attention_bias=True), {})
    biases = {n for n, _ in model.named_parameters() if n.endswith(".bias")}
    assert len(biases) == 2 * 4  # q, k, v, o per layer
    assert trainable_names(model) == biases | {"score.weight"}


def test_head_on_llama_is_the_score_layer():
    model = get_method("head").apply(tiny_llama(), {})
    assert trainable_names(model) == {"score.weight"}


# --- bad values in overrides are the user's errors, found before anything runs ---------------------------------------

def test_non_numeric_learning_rate_is_a_method_error(load_tiny_bert):
    with pytest.raises(MethodError, match="learning_rate"):
        get_method("lora").resolve(load_tiny_bert(), {"learning_rate": "fast"})


def test_read_method_config_rejects_a_non_numeric_learning_rate(tmp_path):
    path = tmp_path / "bad_value.yaml"
    path.write_text("lora:\n  learning_rate: fast\n")
    with pytest.raises(MethodError, match="learning_rate"):
        read_method_config(path, ["lora"])


def test_read_method_config_accepts_an_empty_entry(tmp_path):
    path = tmp_path / "empty_entry.yaml"
    path.write_text("lora:\n")
    assert read_method_config(path, ["lora"]) == {"lora": {}}
