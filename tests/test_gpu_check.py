"""benchmarks/gpu_check.py --tiny on CPU: the GPU check's own code path (peftlab's registry, memory preparation and
training loop on random-weight models built from the estimate's config facts), at toy size. The CUDA branches
(bf16 weights, bitsandbytes, torch.cuda peaks and synchronisation) are not exercised here."""

from __future__ import annotations

import importlib.util
import json
import math
import statistics
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
METHOD_ROWS = ("full", "lora", "dora", "ia3", "prompt")
QUANTIZED_ROWS = ("qlora", "lora-8bit")


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("gpu_check", None)


def cells(line: str) -> list[str]:
    """A printed table line's cells (an empty last cell when the line ends with its separator)."""
    return [cell.strip() for cell in line.split("|")]


def test_tiny_mode_on_cpu(gpu_check, tmp_path, capsys):
    path = tmp_path / "out" / "gpu_check.json"
    returned = gpu_check.main(["--tiny", "--device", "cpu", "--json", str(path)])
    printed = capsys.readouterr().out
    result = json.loads(path.read_text())

    # the JSON equals what main returned and what it printed
    assert result == json.loads(json.dumps(returned, default=str))
    assert result["table"] in printed
    assert result["tiny"] is True and result["warmup_steps"] == 1 and result["timed_steps"] == 2
    assert gpu_check.format_table(result["rows"]) == result["table"]
    for line in result["anchor_lines"]:
        assert line in printed

    rows = {(row["shape"], row["row"]): row for row in result["rows"]}
    expected = [("llama-3.2-3b", "full"), ("llama-3.2-3b", "lora r32")]
    expected += [(shape, name) for shape in gpu_check.METHOD_SHAPES for name in METHOD_ROWS + QUANTIZED_ROWS]
    assert sorted(rows) == sorted(expected)

    table_lines = result["table"].splitlines()
    assert cells(table_lines[0]) == gpu_check.TABLE_HEADER
    printed_rows = {(c[0], c[1]): c for c in map(cells, table_lines[2:])}
    assert sorted(printed_rows) == sorted(expected)

    for key, row in rows.items():
        shape = result["shapes"][row["shape"]]
        assert shape["facts"]["num_layers"] == 2 and shape["facts"]["hidden_size"] == 64
        assert shape["facts"]["vocab_size"] == 1000 and shape["seq_len"] == 32 and shape["batch_size"] == 2
        line = printed_rows[key]
        if key[1] in QUANTIZED_ROWS:  # no CUDA here: skipped, with the reason, in the JSON and in the table
            assert row["status"] == "skipped" and row["reason"] == "skipped: needs CUDA"
            assert line[2] == "skipped" and line[-1] == "skipped: needs CUDA"
            continue
        assert row["status"] == "ok", row.get("reason")
        assert row["dtype"] == "fp32" and row["timed_steps"] == 2 and len(row["step_seconds"]) == 2
        assert all(seconds > 0 for seconds in row["step_seconds"])
        assert row["median_step_seconds"] == pytest.approx(statistics.median(row["step_seconds"]))
        assert math.isfinite(row["tokens_per_second"]) and row["tokens_per_second"] > 0
        assert row["tokens_per_second"] == pytest.approx(row["tokens_per_step"] * 2 / sum(row["step_seconds"]))
        assert row["tokens_per_step"] == 2 * 32
        assert row["peak_memory_bytes"] > 0 and math.isfinite(row["final_loss"])
        assert 0 < row["trainable_params"]
        estimated = row["estimate"]["peak_memory_bytes"]
        assert estimated > 0
        assert row["memory_ratio"] == pytest.approx(row["peak_memory_bytes"] / estimated)
        # the printed cells are the JSON's numbers
        assert line[2] == "ok"
        assert line[3] == f"{row['tokens_per_second']:,.0f}"
        assert line[4] == f"{row['median_step_seconds'] * 1000:,.1f}"
        assert line[5] == f"{row['peak_memory_bytes'] / 2**20:,.1f}"
        assert line[6] == f"{estimated / 2**20:,.1f}"
        assert line[7] == f"{row['memory_ratio']:.2f}"

    # the estimate's trainable parameters agree with the model's: the same config, the same method settings
    for key, row in rows.items():
        if row["status"] == "ok":
            assert row["estimate"]["trainable_params"] == row["trainable_params"], key
    # the anchor's LoRA is peft's comparison's: r 32 on q_proj and v_proj (2 layers x (64x32 + 32x64 + 64x32 + 32x32))
    assert rows[("llama-3.2-3b", "lora r32")]["trainable_params"] == 2 * (64 * 32 + 32 * 64 + 64 * 32 + 32 * 32)
    goals = {goal["goal"]: goal for goal in result["anchor"]["goals"]}
    ratio = rows[("llama-3.2-3b", "lora r32")]["median_step_seconds"] / rows[("llama-3.2-3b", "full")][
        "median_step_seconds"]
    assert goals["LoRA/full step time <= 0.5"]["value"] == pytest.approx(ratio)
    assert goals["LoRA/full step time <= 0.5"]["pass"] == (ratio <= 0.5)


def test_a_failing_row_is_recorded_and_the_others_go_on(gpu_check, monkeypatch, capsys):
    real = gpu_check.get_method

    def broken(name):
        if name == "ia3":
            raise torch_oom("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(name)

    monkeypatch.setattr(gpu_check, "get_method", broken)
    result = gpu_check.main(["--tiny", "--device", "cpu", "--only", "llama-3.2-1b:ia3,llama-3.2-1b:lora"])
    capsys.readouterr()
    rows = {row["row"]: row for row in result["rows"]}
    assert rows["ia3"]["status"] == "failed"
    assert rows["ia3"]["reason"].startswith("OutOfMemoryError: CUDA out of memory")
    assert "Traceback" in rows["ia3"]["traceback"]
    assert rows["lora"]["status"] == "ok"
    assert "failed" in result["table"]


def torch_oom(message: str) -> Exception:
    import torch

    return torch.OutOfMemoryError(message)
