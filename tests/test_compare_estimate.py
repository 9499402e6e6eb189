"""Every compare run records the analytic estimate next to what it measured."""

import pytest

from peftlab import CompareConfig, compare
from conftest import FIXED_RATES


@pytest.fixture(scope="module")
def results(tiny_bert_dir, tiny_task_csv, tmp_path_factory):
    config = CompareConfig(**FIXED_RATES, model=str(tiny_bert_dir), data=str(tiny_task_csv), methods=["full", "lora", "prompt"],
                           max_steps=2, batch_size=8, robustness=False, out=str(tmp_path_factory.mktemp("est")))
    return compare(config)


def test_counted_flops_agree_with_the_estimate(results):
    for run in results["runs"]:
        assert run["status"] == "ok", run.get("reason")
        estimate = run["estimate"]
        assert estimate["flops_shape"][0] == 4  # the first rows of a batch of 8
        ratio = estimate["flops_per_step_estimated"] / estimate["flops_per_step_counted"]
        assert 0.8 <= ratio <= 1.2, (run["method"], ratio)


def test_estimated_peak_memory_is_recorded_for_the_longest_batch(results):
    full, lora, _ = results["runs"]
    assert full["estimate"]["peak_memory_shape"][0] == 8
    assert full["estimate"]["peak_memory_bytes"] > 0
    # full fine-tuning keeps gradients and two AdamW moments for every weight: its estimate is the largest
    assert full["estimate"]["peak_memory_bytes"] > lora["estimate"]["peak_memory_bytes"]
