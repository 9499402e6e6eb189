"""Measurement: optimizer state bytes, parameter counts with shared tensors, CPU peak memory, file sizes."""

from __future__ import annotations

import torch
from torch import nn

from peftlab.measure import PeakMemory, directory_bytes, optimizer_state_bytes, parameter_counts

MB = 1024 * 1024


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 3), nn.LayerNorm(3))


def one_adamw_step(model: nn.Module, **kwargs) -> torch.optim.Optimizer:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, **kwargs)
    model(torch.randn(4, 10)).sum().backward()
    optimizer.step()
    return optimizer


def test_optimizer_state_bytes_of_adamw():
    model = small_model()
    n = sum(p.numel() for p in model.parameters())
    tensors = len(list(model.parameters()))
    assert (n, tensors) == (10 * 20 + 20 + 20 * 3 + 3 + 3 + 3, 6)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    assert optimizer_state_bytes(optimizer) == 0  # no state before the first step
    model(torch.randn(4, 10)).sum().backward()
    optimizer.step()
    step_bytes = optimizer.state[next(model.parameters())]["step"].element_size()
    assert step_bytes == 4  # a float32 scalar tensor
    # exp_avg and exp_avg_sq: two fp32 tensors the size of the weights; plus a step counter per tensor
    assert optimizer_state_bytes(optimizer) == 2 * 4 * n + tensors * step_bytes == 2 * 4 * 289 + 6 * 4
    # a second step adds nothing
    optimizer.step()
    assert optimizer_state_bytes(optimizer) == 2 * 4 * n + tensors * step_bytes


def test_optimizer_state_bytes_counts_only_trained_tensors():
    model = small_model()
    for p in model[0].parameters():
        p.requires_grad_(False)
    optimizer = one_adamw_step(model)
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert n == 20 * 3 + 3 + 3 + 3
    assert optimizer_state_bytes(optimizer) == 2 * 4 * n + 4 * 4


def test_optimizer_state_bytes_with_amsgrad_has_a_third_moment():
    model = small_model()
    optimizer = one_adamw_step(model, amsgrad=True)
    n = sum(p.numel() for p in model.parameters())
    assert optimizer_state_bytes(optimizer) == 3 * 4 * n + 6 * 4


class TiedModel(nn.Module):
    """An embedding and an output projection sharing one weight, plus an untied bias."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(50, 8)
        self.out = nn.Linear(8, 50)
        self.out.weight = self.embed.weight


def test_parameter_counts_counts_shared_tensors_once():
    model = TiedModel()
    assert model.out.weight is model.embed.weight
    assert parameter_counts(model) == (50 * 8 + 50, 50 * 8 + 50)
    model.out.bias.requires_grad_(False)
    assert parameter_counts(model) == (50 * 8, 50 * 8 + 50)
    model.embed.weight.requires_grad_(False)
    assert parameter_counts(model) == (0, 50 * 8 + 50)


def test_parameter_counts_with_a_module_used_twice():
    shared = nn.Linear(4, 4)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    assert parameter_counts(model) == (20, 20)


def test_parameter_counts_on_a_tied_language_model():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=100, n_positions=16, n_embd=8, n_layer=1, n_head=2))
    assert model.lm_head.weight is model.transformer.wte.weight
    unique = {id(p): p.numel() for _, p in model.named_parameters(remove_duplicate=False)}
    with_duplicates = sum(p.numel() for _, p in model.named_parameters(remove_duplicate=False))
    assert with_duplicates == sum(unique.values()) + 100 * 8  # the lm_head listed again
    assert parameter_counts(model) == (sum(unique.values()), sum(unique.values()))


def test_peak_memory_cpu_sees_a_200mb_tensor():
    with PeakMemory("cpu") as peak:
        tensor = torch.ones(50 * MB, dtype=torch.float32)  # 200 MB, every page written by ones()
    assert tensor.element_size() * tensor.numel() == 200 * MB
    del tensor
    assert 150 * MB <= peak.peak_bytes <= 400 * MB, peak.peak_bytes / MB


def test_peak_memory_cpu_of_nothing_is_small():
    with PeakMemory("cpu") as peak:
        x = sum(range(1000))
    assert x == 499500
    assert 0 <= peak.peak_bytes < 50 * MB


def test_directory_bytes(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"x" * 1000)
    (tmp_path / "tokenizer.json").write_bytes(b"y" * 300)
    nested = tmp_path / "sub" / "deeper"
    nested.mkdir(parents=True)
    (nested / "b.bin").write_bytes(b"z" * 77)
    (nested / "tokenizer.json").write_bytes(b"w" * 5)
    assert directory_bytes(tmp_path) == 1000 + 300 + 77 + 5
    # exclude matches file names at any depth
    assert directory_bytes(tmp_path, exclude={"tokenizer.json"}) == 1000 + 77
    assert directory_bytes(tmp_path, exclude={"tokenizer.json", "a.bin", "b.bin"}) == 0
    assert directory_bytes(tmp_path / "sub") == 77 + 5
    empty = tmp_path / "empty"
    empty.mkdir()
    assert directory_bytes(empty) == 0
