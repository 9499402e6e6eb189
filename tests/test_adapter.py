"""Bottleneck adapters (peftlab.methods.adapter) on tiny randomly initialised models; no downloads."""

from __future__ import annotations

import copy
import json
import re

import pytest
import torch
from torch import nn
from safetensors.torch import load_file
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
)

from peftlab.errors import MethodError, MethodNotApplicable
from peftlab.methods.adapter import (
    ADAPTER_CONFIG_NAME,
    ADAPTER_WEIGHTS_NAME,
    PEFT_TYPE,
    AdapterWrappedLinear,
    BottleneckAdapter,
    BottleneckAdapterConfig,
    add_bottleneck_adapters,
    bottleneck_adapter_state_dict,
    is_bottleneck_adapter_dir,
    load_bottleneck_adapter,
    save_bottleneck_adapter,
)

D, B, LAYERS, LABELS, VOCAB = 32, 8, 2, 3, 100


def bert_config() -> BertConfig:
    return BertConfig(
        vocab_size=VOCAB,
        hidden_size=D,
        num_hidden_layers=LAYERS,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=LABELS,
        max_position_embeddings=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )


def llama_config(**kw) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=D,
        intermediate_size=64,
        num_hidden_layers=LAYERS,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
        **kw,
    )


def make_bert(seed: int = 0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    return BertForSequenceClassification(bert_config()).eval()


def batch(n: int = 4, length: int = 10, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (n, length), generator=g)
    labels = torch.randint(0, LABELS, (n,), generator=g)
    return ids, labels


def trainable(model) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def adapter_params_per_layer(d: int = D, b: int = B) -> int:
    return 2 * (d * b + b + b * d + d)


def test_bert_adapter_placement_and_trainable_params():
    model = make_bert()
    out = add_bottleneck_adapters(model, BottleneckAdapterConfig(bottleneck_size=B, modules_to_save=["classifier"]))
    assert out is model

    wrapped = [n for n, m in model.named_modules() if isinstance(m, AdapterWrappedLinear)]
    assert len(wrapped) == 2 * LAYERS
    assert all(re.search(r"layer\.\d+\.(attention\.)?output\.dense$", n) for n in wrapped), wrapped
    assert sum(n.endswith("attention.output.dense") for n in wrapped) == LAYERS
    assert not any("intermediate" in n or "pooler" in n for n in wrapped)
    assert sum(isinstance(m, BottleneckAdapter) for m in model.modules()) == 2 * LAYERS

    params = trainable(model)
    assert all(".adapter." in n or n.startswith("classifier.") for n in params), sorted(params)
    assert {"classifier.weight", "classifier.bias"} <= set(params)
    expected = LAYERS * adapter_params_per_layer() + D * LABELS + LABELS
    assert sum(p.numel() for p in params.values()) == expected

    # the wrapper still exposes the wrapped layer's attributes
    dense = model.bert.encoder.layer[0].output.dense
    assert dense.weight is dense.base_layer.weight and dense.out_features == D


def test_llama_causal_lm_and_classification_defaults():
    torch.manual_seed(0)
    lm = LlamaForCausalLM(llama_config())
    add_bottleneck_adapters(lm, BottleneckAdapterConfig(bottleneck_size=B))
    wrapped = [n for n, m in lm.named_modules() if isinstance(m, AdapterWrappedLinear)]
    assert len(wrapped) == 2 * LAYERS
    assert {n.rsplit(".", 2)[-2] + "." + n.rsplit(".", 1)[-1] for n in wrapped} == {"self_attn.o_proj", "mlp.down_proj"}
    assert sum(p.numel() for p in trainable(lm).values()) == LAYERS * adapter_params_per_layer()

    torch.manual_seed(0)
    clf = LlamaForSequenceClassification(llama_config(pad_token_id=0, num_labels=LABELS))
    add_bottleneck_adapters(clf, BottleneckAdapterConfig(bottleneck_size=B, modules_to_save=["score"]))
    params = trainable(clf)
    assert "score.weight" in params
    assert sum(p.numel() for p in params.values()) == LAYERS * adapter_params_per_layer() + D * LABELS  # score has no bias


def test_gpt2_conv1d_targets():
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_embd=D, n_layer=LAYERS, n_head=2, n_positions=64,
                                       bos_token_id=0, eos_token_id=0)).eval()
    ids, _ = batch()
    with torch.no_grad():
        before = model(input_ids=ids).logits
    add_bottleneck_adapters(model, BottleneckAdapterConfig(bottleneck_size=B, init_scale=0.0))
    wrapped = [n for n, m in model.named_modules() if isinstance(m, AdapterWrappedLinear)]
    assert len(wrapped) == 2 * LAYERS and all(n.endswith("c_proj") for n in wrapped)
    assert sum(p.numel() for p in trainable(model).values()) == LAYERS * adapter_params_per_layer()
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, before)


def test_near_identity_at_init():
    ids, _ = batch()
    base = make_bert()
    with torch.no_grad():
        base_logits = base(input_ids=ids).logits

    near = add_bottleneck_adapters(make_bert(), BottleneckAdapterConfig(bottleneck_size=B, init_scale=1e-3))
    exact = add_bottleneck_adapters(make_bert(), BottleneckAdapterConfig(bottleneck_size=B, init_scale=0.0))
    with torch.no_grad():
        near_logits = near(input_ids=ids).logits
        exact_logits = exact(input_ids=ids).logits
    assert torch.allclose(near_logits, base_logits, atol=1e-2)
    assert not torch.equal(near_logits, base_logits)  # the adapters do take part
    assert torch.equal(exact_logits, base_logits)


def _train(model, steps: int = 8, lr: float = 1e-2) -> list[float]:
    ids, labels = batch()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        loss = model(input_ids=ids, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    return losses


def test_training_reduces_loss_and_keeps_base_weights():
    model = make_bert()
    base_state = {k: v.clone() for k, v in model.state_dict().items()}
    add_bottleneck_adapters(model, BottleneckAdapterConfig(bottleneck_size=B, modules_to_save=["classifier"]))
    adapters_before = {k: v.clone() for k, v in bottleneck_adapter_state_dict(model).items()}

    losses = _train(model)
    assert losses[-1] < losses[0] - 0.05, losses

    after = model.state_dict()
    for key, value in base_state.items():
        if key.startswith("classifier."):
            continue
        new_key = re.sub(r"output\.dense\.", "output.dense.base_layer.", key)
        assert torch.equal(after[new_key], value), key
    changed = [k for k, v in adapters_before.items() if not torch.equal(after[k], v)]
    assert any(".adapter.up." in k for k in changed) and any(k.startswith("classifier.") for k in changed)


def test_save_load_roundtrip(tmp_path):
    model = make_bert(seed=0)
    base_state = copy.deepcopy(model.state_dict())
    config = BottleneckAdapterConfig(bottleneck_size=B, nonlinearity="relu", modules_to_save=["classifier"])
    add_bottleneck_adapters(model, config)
    _train(model, steps=3)
    ids, _ = batch(seed=7)
    with torch.no_grad():
        logits = model(input_ids=ids).logits

    out_dir = tmp_path / "adapter"
    save_bottleneck_adapter(model, out_dir, config)
    assert (out_dir / ADAPTER_CONFIG_NAME).is_file() and (out_dir / ADAPTER_WEIGHTS_NAME).is_file()
    assert is_bottleneck_adapter_dir(out_dir)
    assert not is_bottleneck_adapter_dir(tmp_path)

    saved_config = json.loads((out_dir / ADAPTER_CONFIG_NAME).read_text())
    assert saved_config["peft_type"] == PEFT_TYPE and saved_config["peftlab_method"] == "adapter"
    assert saved_config["bottleneck_size"] == B and saved_config["nonlinearity"] == "relu"
    assert saved_config["modules_to_save"] == ["classifier"]
    assert saved_config["target_modules"]  # defaults written out

    tensors = load_file(str(out_dir / ADAPTER_WEIGHTS_NAME))
    assert all(".adapter." in k or k.startswith("classifier.") for k in tensors), sorted(tensors)
    assert sum(".adapter." in k for k in tensors) == 4 * 2 * LAYERS  # down/up weight+bias per adapter
    assert {"classifier.weight", "classifier.bias"} <= set(tensors)

    fresh = make_bert(seed=123)  # different random init; base weights come from the copied state
    fresh.load_state_dict(base_state)
    loaded = load_bottleneck_adapter(fresh, out_dir)
    assert loaded is fresh
    loaded.eval()
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids).logits, logits)


def test_load_rejects_foreign_tensors(tmp_path):
    model = add_bottleneck_adapters(make_bert(), BottleneckAdapterConfig(bottleneck_size=B, modules_to_save=["classifier"]))
    save_bottleneck_adapter(model, tmp_path, BottleneckAdapterConfig(bottleneck_size=B))  # config without classifier
    with pytest.raises(MethodError, match="does not have"):
        load_bottleneck_adapter(make_bert(), tmp_path)


def test_an_unknown_model_type_gets_adapters_from_its_structure():
    model = make_bert()
    model.config.model_type = "mystery"  # no table names it: the attach points come from the module structure
    add_bottleneck_adapters(model, BottleneckAdapterConfig(bottleneck_size=B))
    wrapped = sorted(n for n, m in model.named_modules() if isinstance(m, AdapterWrappedLinear))
    assert wrapped == sorted([f"bert.encoder.layer.{i}.{where}" for i in range(LAYERS)
                              for where in ("attention.output.dense", "output.dense")])


def test_a_model_without_transformer_blocks_is_refused_with_the_way_out():
    class NoBlocks(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(8, 8)

    with pytest.raises(MethodNotApplicable, match="does not apply.*no attention-output.*set target_modules"):
        add_bottleneck_adapters(NoBlocks(), BottleneckAdapterConfig(bottleneck_size=B))
    # explicit target_modules work for any model
    model = add_bottleneck_adapters(NoBlocks(), BottleneckAdapterConfig(bottleneck_size=B, target_modules=["proj"]))
    assert isinstance(model.proj, AdapterWrappedLinear)


def test_bad_settings_raise_method_error():
    with pytest.raises(MethodError, match="nonlinearity"):
        add_bottleneck_adapters(make_bert(), BottleneckAdapterConfig(nonlinearity="swishy"))
    with pytest.raises(MethodError, match="target_modules"):
        add_bottleneck_adapters(make_bert(), BottleneckAdapterConfig(target_modules=["no_such_module"]))
    with pytest.raises(MethodError, match="modules_to_save"):
        add_bottleneck_adapters(make_bert(), BottleneckAdapterConfig(modules_to_save=["head_that_is_not_there"]))
    with pytest.raises(MethodError, match="not a linear projection"):
        add_bottleneck_adapters(make_bert(), BottleneckAdapterConfig(target_modules=["attention"]))
