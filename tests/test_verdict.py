"""The verdict (study/verdict.py): its rules on hand-made records, and on tiny-model studies: early stopping stops
a flat run, an unlearnable task is inconclusive with its reason, --max-seeds adds seeds only to the runs that decide
the verdict and a re-run repeats none of them."""

from __future__ import annotations

import json
import math
import random

import pytest
from accelerate import Accelerator
from rich.console import Console

from conftest import FIXED_RATES, tiny_texts
from report_data import diagnosis_json, results_json

from peftlab import CompareConfig, compare
from peftlab.advise import advisor_check
from peftlab.errors import ConfigError
from peftlab.methods import get_method
from peftlab.models import load_tokenizer, resolve_model
from peftlab.report import print_table
from peftlab.report.summary import verdict_text
from peftlab.report.write import write_report
from peftlab.study.verdict import study_verdict
from peftlab.tasks import load_task
from peftlab.tasks.encode import encode_task
from peftlab.train import TrainConfig, train
from peftlab.train.trainer import evaluation_steps

N = 2000  # test examples of the hand-made records


def header(majority: float = 0.5, tolerance: float = 1.0) -> dict:
    return {"task": {"type": "classification", "test_majority_share": majority, "sizes": {"test": N}},
            "config": {"tolerance": tolerance}}


def test_multiple_choice_must_beat_chance_not_zero():
    """A multiple-choice reference at 30 % on four choices has not learned: its interval is not above the 25 % of a
    guess (task.test_chance_share), though it is far above 0."""
    choice = {"task": {"type": "multiple-choice", "test_majority_share": None, "test_chance_share": 0.25,
                       "sizes": {"test": N}}, "config": {}}
    verdict = study_verdict(choice, [record("full", hits(0.26)), record("lora", hits(0.25, seed=1))])
    assert verdict["decision"] == "inconclusive" and not verdict["learned"]["learned"]
    assert verdict["learned"]["baseline_name"] == "chance" and verdict["learned"]["baseline"] == 0.25
    assert "chance baseline 0.250" in verdict["reasons"][0]
    verdict = study_verdict(choice, [record("full", hits(0.6)), record("lora", hits(0.6, seed=1))])
    assert verdict["learned"]["learned"]


def record(method: str, hits: str, seed: int = 0, curve=(0.6, 0.7, 0.7), stopped=None, params=1000) -> dict:
    accuracy = hits.count("1") / len(hits)
    return {"method": method, "seed": seed, "status": "ok", "test_correct": hits, "stopped": stopped,
            "metrics": {"accuracy": accuracy, "macro_f1": accuracy},
            "curve": {"validation": [{"accuracy": value} for value in curve]},
            "cost": {"trainable_params": params, "peak_memory_bytes": params * 10, "train_seconds": 10.0,
                     "checkpoint_bytes": params * 4, "train_steps": 300}}


def hits(share: float, seed: int = 0, base: str | None = None, flips: int = 0) -> str:
    """N hits at a share, or ``base`` with its first ``flips`` right answers made wrong (paired, nearly equal)."""
    if base is not None:
        out, left = list(base), flips
        for i, hit in enumerate(out):
            if left and hit == "1":
                out[i], left = "0", left - 1
        return "".join(out)
    rng = random.Random(seed)
    return "".join("1" if rng.random() < share else "0" for _ in range(N))


FULL = hits(0.85, seed=1)


def test_lora_that_ties_with_full_is_the_verdict_with_its_cost_ratios():
    runs = [record("full", FULL, params=100_000), record("lora", hits(0, base=FULL, flips=4), params=1000),
            record("bitfit", hits(0.70, seed=3), params=500)]
    verdict = study_verdict(header(), runs)
    assert verdict["decision"] == "lora" and verdict["conclusive"]
    assert verdict["best_peft"] == "lora" and verdict["gap_points"] == pytest.approx(-0.2)
    low, high = verdict["gap_ci95_points"]
    assert -1.0 <= low < -0.2 < high  # paired: 4 discordant examples of 2000 give a narrow interval
    assert verdict["methods"]["lora"]["interval"] == "paired over test examples"
    assert verdict["cost_vs_full"]["trainable_params"] == pytest.approx(0.01)
    assert verdict["methods"]["bitfit"]["ci95_points"][1] < -10
    line, reasons, todo = verdict_text({"verdict": verdict})
    assert line.startswith("Verdict: lora (lora − full -0.2 points") and "trainable parameters ×0.01" in line
    assert any("within the 1-point tolerance" in reason for reason in reasons) and not todo
    assert any("not raced" in reason for reason in reasons)


def test_full_that_clearly_wins_is_the_verdict():
    runs = [record("full", FULL), record("lora", hits(0.70, seed=2)), record("prompt_tuning", hits(0.6, seed=4))]
    verdict = study_verdict(header(), runs, tuned=True)
    assert verdict["decision"] == "full" and verdict["conclusive"] and verdict["best_peft"] == "lora"
    assert verdict["gap_ci95_points"][1] < -1.0
    assert verdict["learning_rates"] == "tuned" and not any("not raced" in r for r in verdict["reasons"])


def test_a_gap_whose_interval_straddles_the_tolerance_is_inconclusive_and_asks_for_seeds():
    runs = [record("full", FULL), record("lora", hits(0, base=FULL, flips=40))]  # -2 points, interval about ±0.6
    assert study_verdict(header(tolerance=1.0), runs)["decision"] == "full"  # [-2.6, -1.4]: worse by > 1 point
    assert study_verdict(header(tolerance=3.0), runs)["decision"] == "lora"  # within 3 points
    wide = study_verdict(header(tolerance=2.0), runs)
    assert wide["decision"] == "inconclusive" and wide["next"] == {"add_seeds": ["full", "lora"]}
    assert any("straddles" in reason for reason in wide["reasons"])
    assert any("--max-seeds" in item for item in wide["advice"])


def test_a_reference_that_did_not_learn_makes_the_verdict_inconclusive():
    chance = hits(0.5, seed=7)
    runs = [record("full", chance), record("lora", hits(0.49, seed=8))]
    verdict = study_verdict(header(majority=0.5), runs)
    assert verdict["decision"] == "inconclusive" and not verdict["conclusive"]
    assert not verdict["learned"]["learned"] and verdict["learned"]["baseline_name"] == "majority class"
    assert "did not learn the task" in verdict["reasons"][0]
    assert any("--max-train-examples" in item for item in verdict["advice"])
    assert verdict["next"] == {"budget_steps": 600}  # --until-conclusive: twice the 300-step budget


def test_a_reference_still_improving_at_the_end_is_inconclusive_with_a_budget():
    runs = [record("full", FULL, curve=(0.55, 0.70, 0.78)), record("lora", hits(0.84, seed=2))]
    verdict = study_verdict(header(), runs)
    assert verdict["decision"] == "inconclusive" and verdict["flattened"]["flat"] is False
    assert verdict["flattened"]["budget_factor"] > 1 and "--max-steps" in verdict["advice"][0]
    assert verdict["next"] == {"budget_steps": verdict["flattened"]["budget_steps"]}
    assert verdict["flattened"]["budget_steps"] == math.ceil(300 * verdict["flattened"]["budget_factor"])
    stopped = [record("full", FULL, curve=(0.55, 0.70, 0.78), stopped={"reason": "early_stopping"}),
               record("lora", hits(0, base=FULL))]
    assert study_verdict(header(), stopped)["flattened"]["flat"] is True  # early stopping ended it


def test_without_full_the_best_method_is_the_verdict_and_nothing_finished_is_inconclusive():
    verdict = study_verdict(header(), [record("lora", FULL), record("ia3", hits(0.7, seed=2))])
    assert verdict["decision"] == "lora" and verdict["reference"] == "lora"
    assert any("no full fine-tuning run finished" in reason for reason in verdict["reasons"])
    nothing = study_verdict(header(), [{"method": "full", "status": "failed", "metrics": {}}])
    assert nothing["decision"] == "inconclusive" and "no run finished" in nothing["reasons"][0]


def test_seeds_widen_the_interval_by_their_spread():
    one = study_verdict(header(), [record("full", FULL), record("lora", hits(0, base=FULL, flips=4))])
    runs = [record("full", FULL, 0), record("full", hits(0, base=FULL, flips=60), 1),
            record("lora", hits(0, base=FULL, flips=4), 0), record("lora", hits(0, base=FULL, flips=4), 1)]
    two = study_verdict(header(), runs)
    assert two["methods"]["lora"]["interval"] == "paired over test examples and seeds"
    width = lambda v: v["gap_ci95_points"][1] - v["gap_ci95_points"][0]  # noqa: E731
    assert width(two) > width(one) and two["seeds"] == {"full": 2, "lora": 2}


def test_evaluation_steps_are_evenly_spaced_and_end_each_epoch():
    assert evaluation_steps(10, 30, 1) == {10, 20, 30}
    assert evaluation_steps(10, 30, 2) == {5, 10, 15, 20, 25, 30}
    assert evaluation_steps(10, 25, 2) == {5, 10, 15, 20, 25}  # --max-steps inside the third epoch
    assert evaluation_steps(3, 6, 4) == {1, 2, 3, 4, 5, 6}  # more passes than steps: one after each step


def scripted(accuracies: list[float]):
    """A validation 'evaluation' that returns these accuracies in turn (then the last one again)."""
    calls = []

    def evaluate(model, dataset, tokenizer, batch_size, device, num_labels, desc):
        calls.append(desc)
        value = accuracies[min(len(calls), len(accuracies)) - 1]
        return {"accuracy": value, "macro_f1": value, "loss": 1 - value}

    return evaluate


def test_early_stopping_stops_a_run_that_stopped_improving_and_keeps_its_best_state(load_tiny_bert, tiny_bert_dir,
                                                                                     tiny_task_csv):
    """Validation 0.5, 0.6, then flat: patience 2 stops the run at its fourth pass (of 8) with the second pass's
    state. A run still on its first score (0.5 throughout: the starting plateau) is never stopped."""
    tokenizer = load_tokenizer(resolve_model(str(tiny_bert_dir)))
    task = load_task(str(tiny_task_csv), seed=0)
    encoded = encode_task(task, tokenizer, max_length=64)
    config = TrainConfig(learning_rate=1e-3, epochs=4, batch_size=16, evaluations_per_epoch=2, patience=2,
                         evaluate=scripted([0.5, 0.6, 0.6]))
    outcome = train(get_method("head").apply(load_tiny_bert(), {}), encoded, tokenizer, config,
                    Accelerator(cpu=True), task.num_labels)
    assert outcome.stopped == {"reason": "early_stopping", "step": outcome.steps, "evaluation": 4, "patience": 2,
                               "best_evaluation": 2}
    assert len(outcome.validation) == 4 and outcome.steps < outcome.total_steps and outcome.best_evaluation == 2
    steps_per_epoch = math.ceil(len(encoded["train"]) / 16)
    assert [row["step"] for row in outcome.validation] == sorted(evaluation_steps(steps_per_epoch,
                                                                                   outcome.total_steps, 2))[:4]
    config.evaluate = scripted([0.5])
    plateau = train(get_method("head").apply(load_tiny_bert(), {}), encoded, tokenizer, config,
                    Accelerator(cpu=True), task.num_labels)
    assert plateau.stopped is None and plateau.steps == plateau.total_steps and len(plateau.validation) == 8


def _random_label_csv(folder):
    """The tiny task's texts with labels drawn at random: nothing to learn."""
    frame = tiny_texts(160, seed=3)
    rng = random.Random(11)
    frame["label"] = [rng.choice(["pos", "neg"]) for _ in range(len(frame))]
    path = folder / "random_labels.csv"
    frame.to_csv(path, index=False)
    return path


def test_an_unlearnable_task_yields_an_inconclusive_verdict(tiny_bert_dir, tmp_path):
    data = _random_label_csv(tmp_path)
    config = CompareConfig(model=str(tiny_bert_dir), data=str(data), methods=["full", "lora"], epochs=2,
                           batch_size=16, out=str(tmp_path / "study"), robustness=False, diagnose=False)
    results = compare(config)
    verdict = results["verdict"]
    assert verdict["decision"] == "inconclusive" and "did not learn the task" in verdict["reasons"][0]
    assert json.loads((tmp_path / "study" / "results.json").read_text())["verdict"]["decision"] == "inconclusive"
    assert results.verdict["decision"] == "inconclusive"
    console = Console(record=True, width=200)
    print_table(results, console)
    assert console.export_text().startswith("Verdict: inconclusive")


def test_max_seeds_adds_seeds_to_the_deciding_runs_only_and_a_rerun_repeats_nothing(tiny_bert_dir, tiny_task_csv,
                                                                                    tmp_path):
    """On 12 test examples a tolerance of 0 leaves the interval straddling it: a seed is added to full and to the
    best PEFT method (never to the third method) up to --max-seeds; the same command again trains nothing and
    gives the same verdict."""
    rates = tmp_path / "rates.yaml"
    rates.write_text("full: {learning_rate: 0.001}\nlora: {learning_rate: 0.005}\n")
    config = CompareConfig(model=str(tiny_bert_dir), data=str(tiny_task_csv), methods=["full", "lora", "head"],
                           max_steps=60, batch_size=16, out=str(tmp_path / "study"), robustness=False, diagnose=False,
                           method_config=str(rates), tolerance=0.0, max_seeds=2, seed=3, **FIXED_RATES)
    results = compare(config)
    verdict = results["verdict"]
    assert verdict["learned"]["learned"] and verdict["best_peft"] == "lora"
    assert [(run["method"], run["seed"]) for run in results["runs"]] == [
        ("full", 3), ("lora", 3), ("head", 3), ("full", 4), ("lora", 4)]
    assert verdict["seeds"] == {"full": 2, "lora": 2, "head": 1} and verdict["decision"] == "inconclusive"
    assert verdict["methods"]["lora"]["interval"] == "paired over test examples and seeds"
    assert set(results["aggregates"]) == {"full", "lora", "head"}
    trained = []
    again = compare(config, on_run_done=trained.append)
    assert trained == [] and again["verdict"] == json.loads(json.dumps(verdict))
    assert [run["run_key"] for run in again["runs"]] == [run["run_key"] for run in results["runs"]]


def test_verdict_options_are_checked(tiny_bert_dir, tiny_task_csv, tmp_path):
    base = dict(model=str(tiny_bert_dir), data=str(tiny_task_csv), out=str(tmp_path), robustness=False)
    for overrides, message in [({"max_seeds": 1, "seeds": 2}, "--max-seeds"), ({"tolerance": -1}, "--tolerance"),
                               ({"patience": -1}, "--patience"), ({"evaluations_per_epoch": 0}, "--evaluations")]:
        with pytest.raises(ConfigError, match=message):
            compare(CompareConfig(**base, **overrides))


def test_the_reports_lead_with_the_verdict_and_the_advisor_is_checked_against_it(tmp_path):
    results = results_json()
    results["verdict"] = study_verdict(results["study"], results["runs"])
    decision = results["verdict"]["decision"]
    (tmp_path / "results.json").write_text(json.dumps(results))
    (tmp_path / "diagnosis.json").write_text(json.dumps(diagnosis_json()))
    html_text = write_report(tmp_path).read_text()
    assert html_text.index("Verdict: ") < html_text.index("Advisor's prediction: Parameter-efficient")
    markdown = write_report(tmp_path, "md").read_text()
    assert markdown.index("**Verdict: ") < markdown.index("**Advisor's prediction: ")
    assert decision == "inconclusive"  # the hand-made full run was still gaining 8 points at its last pass
    assert advisor_check({"decision": "peft"}, results["runs"], verdict=results["verdict"])["status"] == "not_checked"
    lora = advisor_check({"decision": "peft"}, results["runs"], verdict={"decision": "lora", "tolerance_points": 1})
    assert lora["against"] == "verdict" and lora["agrees"] and lora["within_tolerance"]
    inconclusive = advisor_check({"decision": "peft"}, results["runs"], verdict={"decision": "inconclusive",
                                                                                  "reasons": ["x"]})
    assert inconclusive == {"status": "not_checked", "reason": "the verdict is inconclusive: x"}
    full = advisor_check({"decision": "full"}, results["runs"], verdict={"decision": "full", "tolerance_points": 1})
    assert full["agrees"] and not full["within_tolerance"]


def test_the_comparison_shows_the_budget_used_only_when_early_stopping_ended_a_run():
    results = results_json()
    console = Console(record=True, width=300)
    print_table(results, console)
    assert "budget used" not in console.export_text()
    results["runs"][1]["stopped"] = {"reason": "early_stopping", "step": 30, "evaluation": 3, "patience": 2,
                                     "best_evaluation": 1}
    results["runs"][1]["cost"].update(budget_steps=60, budget_used=0.5)
    console = Console(record=True, width=300)
    print_table(results, console)
    text = console.export_text()
    assert "budget used" in text and "50% (stopped)" in text


def test_a_reference_no_better_than_the_zero_shot_floor_is_said():
    header = {"task": {"type": "classification", "test_majority_share": 0.5, "sizes": {"test": 200}}, "config": {}}

    def run(method, accuracy, steps):
        return {"method": method, "status": "ok", "metrics": {"accuracy": accuracy},
                "cost": {"train_steps": steps, "trainable_params": 10 if steps else 0},
                "curve": {"validation": [{"accuracy": accuracy}]}}

    verdict = study_verdict(header, [run("zero-shot", 0.70, 0), run("head", 0.66, 20)])
    assert verdict["reference"] == "head" and verdict["floor"]["value"] == 0.70
    assert any("no better than zero-shot" in reason for reason in verdict["reasons"])
    assert any("untrained" in advice for advice in verdict["advice"])
    above = study_verdict(header, [run("zero-shot", 0.60, 0), run("head", 0.66, 20)])
    assert not any("no better than" in reason for reason in above["reasons"])


def test_until_conclusive_continues_every_run_to_a_longer_budget_up_to_max_budget(tiny_bert_dir, tmp_path):
    """Random labels: full fine-tuning never learns, so the verdict keeps asking for twice the budget; each run
    continues from its last checkpoint (4 → 8 → 16 steps) and stops at --max-budget, still inconclusive; the same
    command again trains nothing."""
    data = _random_label_csv(tmp_path)
    config = CompareConfig(model=str(tiny_bert_dir), data=str(data), methods=["zero-shot", "full", "lora"],
                           max_steps=4, batch_size=16, out=str(tmp_path / "study"), robustness=False, diagnose=False,
                           no_tune=True, patience=None, until_conclusive=True, max_budget=16)
    trained = []
    results = compare(config, on_run_done=trained.append)
    assert [(run["method"], run.get("extended_to_steps")) for run in trained] == [
        ("zero-shot", None), ("full", None), ("lora", None), ("full", 8), ("lora", 8), ("full", 16), ("lora", 16)]
    latest = {run["method"]: run for run in results["runs"]}
    assert set(latest) == {"zero-shot", "full", "lora"}
    for method in ("full", "lora"):
        run = latest[method]
        assert run["cost"]["budget_steps"] == 16 and run["cost"]["train_steps"] == 16
        assert run["timing"]["resumed_from_epoch"]  # it continued from the 8-step run's checkpoint
    assert results["budget_extension"]["budgets"] == [4, 8, 16]
    assert [run["extended_to_steps"] if "extended_to_steps" in run else 4
            for run in results["budget_extension"]["runs"]] == [4, 4, 8, 8]
    verdict = results["verdict"]
    assert verdict["decision"] == "inconclusive" and any("did not learn" in reason for reason in verdict["reasons"])
    assert not (tmp_path / "study" / "checkpoints").exists()
    again = []
    assert compare(config, on_run_done=again.append)["verdict"]["decision"] == "inconclusive" and again == []


def test_max_budget_needs_until_conclusive(tiny_bert_dir, tiny_task_csv, tmp_path):
    with pytest.raises(ConfigError, match="--max-budget bounds --until-conclusive"):
        compare(CompareConfig(model=str(tiny_bert_dir), data=str(tiny_task_csv), out=str(tmp_path), max_budget=10))
    with pytest.raises(ConfigError, match="--no-tune and --tune"):
        compare(CompareConfig(model=str(tiny_bert_dir), data=str(tiny_task_csv), out=str(tmp_path), no_tune=True,
                              tune=["lr"]))
