"""--seeds N (one record per run, aggregates with std, 95% CI and Welch's test against full) and --tune lr
(a log grid around each default searched with Optuna's successive halving; trials stored and not repeated)."""

from __future__ import annotations

import json
import math
import warnings

import pytest
from rich.console import Console
from scipy import stats as scipy_stats

from peftlab.errors import ConfigError
from peftlab.evaluate.stats import mean_std_interval, welch_test
from peftlab.report import print_table
from peftlab import CompareConfig, compare
from peftlab.files import STORE_FILE
from peftlab.progress import StudyProgress
from peftlab.study.store import StudyStore
from peftlab.study.tuning import learning_rate_grid, pruning_value


def test_mean_std_interval_and_welch_test_on_known_values():
    summary = mean_std_interval([0.80, 0.82, 0.84])
    assert summary["n"] == 3 and summary["mean"] == pytest.approx(0.82)
    assert summary["std"] == pytest.approx(0.02)
    # t(0.975, 2) = 4.302653: half width 4.302653 * 0.02 / sqrt(3)
    assert summary["ci95"] == pytest.approx([0.82 - 0.0496828, 0.82 + 0.0496828], abs=1e-6)
    assert mean_std_interval([0.5]) == {"n": 1, "mean": 0.5, "std": None, "ci95": None}
    far = welch_test([0.60, 0.61, 0.62], [0.80, 0.81, 0.82])
    assert far["difference"] == pytest.approx(-0.2) and far["significant"] and far["p_value"] < 1e-3
    near = welch_test([0.80, 0.84, 0.82], [0.81, 0.83, 0.82])
    assert not near["significant"] and near["p_value"] > 0.5
    assert welch_test([0.8], [0.7, 0.9]) is None
    assert far["p_value"] == pytest.approx(
        scipy_stats.ttest_ind([0.60, 0.61, 0.62], [0.80, 0.81, 0.82], equal_var=False).pvalue)
    with warnings.catch_warnings():  # one side without spread (stuck at the majority class): no scipy warning
        warnings.simplefilter("error")
        stuck = welch_test([139 / 300] * 3, [0.60, 0.62, 0.61])
    assert stuck["significant"] and stuck["p_value"] == pytest.approx(
        scipy_stats.ttest_1samp([0.60, 0.62, 0.61], 139 / 300).pvalue)
    assert welch_test([0.5, 0.5], [0.5, 0.5])["p_value"] == 1.0


def test_learning_rate_grid_is_logarithmic_around_the_default_default_first():
    assert learning_rate_grid(1e-3, 3) == [1e-3, 3.16e-4, 3.16e-3]
    assert learning_rate_grid(2e-5, 5) == [2e-5, 6.32e-6, 6.32e-5, 2e-6, 2e-4]


def test_the_pruner_ranks_trials_tied_on_accuracy_by_validation_loss():
    """Three trials stuck at the same accuracy after epoch 1: the first goes on (alone on its rung), the second
    (higher loss) is pruned, the third (lowest loss) goes on. Raw accuracy would promote all three."""
    import optuna

    study = optuna.create_study(direction="maximize",
                                pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3))
    pruned = []
    for loss in (0.60, 0.70, 0.50):
        trial = study.ask()
        trial.report(pruning_value({"accuracy": 0.58, "loss": loss}, "accuracy"), 1)
        pruned.append(trial.should_prune())
        study.tell(trial, state=optuna.trial.TrialState.PRUNED) if pruned[-1] else study.tell(trial, 0.58)
    assert pruned == [False, True, False]


def test_study_options_are_checked(tiny_bert_dir, tiny_task_csv, tmp_path):
    base = dict(model=str(tiny_bert_dir), data=str(tiny_task_csv), out=str(tmp_path), robustness=False)
    for overrides, message in [({"seeds": 0}, "--seeds"), ({"tune": ["wd"]}, "--tune supports lr"),
                               ({"backend": "slurm"}, "--backend"), ({"workers": 2, "backend": "ray"}, "--workers"),
                               ({"ray_address": "x:1"}, "--ray-address")]:
        with pytest.raises(ConfigError, match=message):
            compare(CompareConfig(**base, **overrides))


def test_seeds_give_one_record_per_run_and_aggregates(tiny_bert_dir, tiny_task_csv, tmp_path):
    out = tmp_path / "study"
    config = CompareConfig(model=str(tiny_bert_dir), data=str(tiny_task_csv), methods=["full", "head"], epochs=1,
                           batch_size=16, out=str(out), robustness=False, seeds=2, seed=5)
    results = compare(config)
    assert [(r["method"], r["seed"]) for r in results["runs"]] == [
        ("full", 5), ("head", 5), ("full", 6), ("head", 6)]
    assert [r["artifact"] for r in results["runs"]] == ["runs/full", "runs/head", "runs/full-seed6", "runs/head-seed6"]
    accuracies = {m: [r["metrics"]["accuracy"] for r in results["runs"] if r["method"] == m] for m in ("full", "head")}
    for method in ("full", "head"):
        entry = results["aggregates"][method]["accuracy"]
        assert entry["n"] == 2 and entry["mean"] == pytest.approx(sum(accuracies[method]) / 2)
        assert entry["ci95"][0] <= entry["mean"] <= entry["ci95"][1]
    versus = results["aggregates"]["head"]["accuracy"]["vs_full"]
    assert versus["difference"] == pytest.approx(results["aggregates"]["head"]["accuracy"]["mean"]
                                                 - results["aggregates"]["full"]["accuracy"]["mean"])
    assert 0 <= versus["p_value"] <= 1 and versus["significant"] == (versus["p_value"] < 0.05)
    assert "vs_full" not in results["aggregates"]["full"]["accuracy"]
    assert json.loads((out / "results.json").read_text())["aggregates"] == json.loads(json.dumps(results["aggregates"]))

    console = Console(record=True, width=250)
    print_table(results, console)
    text = console.export_text()
    assert "over 2 seeds" in text and "full s6" in text and "±" in text


def test_tune_lr_searches_a_grid_with_pruning_and_resumes_without_repeating(tiny_bert_dir, tiny_task_csv, tmp_path):
    out = tmp_path / "study"
    config = CompareConfig(model=str(tiny_bert_dir), data=str(tiny_task_csv), methods=["head"], epochs=3,
                           batch_size=16, out=str(out), robustness=False, tune=["lr"], evaluations_per_epoch=1,
                           patience=None)
    results = compare(config)
    tuning = results["tuning"]["methods"]["head"]
    assert tuning["grid"] == learning_rate_grid(5e-2, 3)
    assert [t["learning_rate"] for t in tuning["trials"]] == tuning["grid"]
    # three passes (one per epoch): one rung, at the first pass; all three trials reach it, the pruner keeps the
    # best of the three (a third) and prunes the others there
    assert tuning["rungs"] == [1]
    assert sorted(t["status"] for t in tuning["trials"]) == ["ok", "pruned", "pruned"]
    assert all(t["evaluations"] == (3 if t["status"] == "ok" else 1) for t in tuning["trials"])
    at_rung = {t["learning_rate"]: pruning_value(t["validation"][0], "accuracy") for t in tuning["trials"]}
    assert tuning["chosen_learning_rate"] == max(at_rung, key=at_rung.get)
    run = results["runs"][0]
    assert run["config"]["learning_rate"] == tuning["chosen_learning_rate"]
    assert results["tuning"]["seconds"] == pytest.approx(sum(t["seconds"] for t in tuning["trials"]))
    # the chosen trial trained the run: the run continued from its checkpoint and trained no step of its own
    assert run["timing"]["resumed_from_epoch"] == 3 and run["cost"]["train_steps"] == run["cost"]["budget_steps"]
    chosen = next(t for t in tuning["trials"] if t["learning_rate"] == tuning["chosen_learning_rate"])
    assert run["curve"]["validation"][-1]["accuracy"] == chosen["validation"][-1]["accuracy"]
    assert results["tuning"]["steps"] == sum(t["steps"] for t in tuning["trials"])
    assert results["tuning"]["cost_vs_one_pass"] == pytest.approx(results["tuning"]["steps"] / run["cost"]["budget_steps"])
    assert results["tuning"]["cost_vs_one_pass"] == pytest.approx(1 + 2 / 3, abs=0.05)  # two trials, a third each
    assert not (out / "checkpoints").exists()  # the other trials' checkpoints are gone, the run's with it

    again = compare(config)  # every trial and the run are in the store: nothing trains again
    assert again["tuning"]["methods"]["head"]["chosen_learning_rate"] == tuning["chosen_learning_rate"]
    assert {row["attempts"] for row in StudyStore(out / STORE_FILE).runs()} == {1}
    assert len(StudyStore(out / STORE_FILE).runs(phase="tune")) == 3


class _InterruptInsideTrial(StudyProgress):
    """Ctrl-C at a step of the race's fourth training segment: the survivor of the first rung, continuing to the
    next one, after its first epoch was checkpointed."""

    shows_steps = True

    def __init__(self, at_step: int):
        self.segments, self.at_step = 0, at_step

    def run_started(self, label: str) -> None:
        self.segments += label.startswith("tune ")

    def step(self, steps: int, total_steps: int, epoch: int, epochs: int) -> None:
        if self.segments == 4 and steps == self.at_step:
            raise KeyboardInterrupt


def test_a_study_killed_inside_the_rate_race_repeats_nothing_finished_and_reaches_the_same_result(
        tiny_bert_dir, tiny_task_csv, tmp_path):
    """Two passes per epoch, three epochs: rungs at passes 1 and 3. Killed while the first rung's survivor trains
    towards pass 3: the two pruned trials are stored and replayed, the survivor continues from its checkpoint, and
    the race, the run and the verdict are those of the uninterrupted study."""
    base = dict(model=str(tiny_bert_dir), data=str(tiny_task_csv), methods=["head"], epochs=3, batch_size=16,
                robustness=False, diagnose=False, tune=["lr"], evaluations_per_epoch=2, patience=None)
    reference = compare(CompareConfig(**base, out=str(tmp_path / "uninterrupted")))
    assert reference["tuning"]["methods"]["head"]["rungs"] == [1, 3]
    out = tmp_path / "killed"
    config = CompareConfig(**base, out=str(out))
    steps_per_epoch = reference["runs"][0]["cost"]["budget_steps"] // 3
    with pytest.raises(KeyboardInterrupt):
        compare(config, progress=_InterruptInsideTrial(at_step=steps_per_epoch + 1))
    rows = {row["run_key"]: row for row in StudyStore(out / STORE_FILE).runs(phase="tune")}
    assert sorted(row["status"] for row in rows.values()) == ["pruned", "pruned", "running"]
    resumed = compare(config)
    rows_after = {row["run_key"]: row for row in StudyStore(out / STORE_FILE).runs(phase="tune")}
    assert all(rows_after[key]["attempts"] == 1 for key, row in rows.items() if row["status"] == "pruned")
    tuned, expected = resumed["tuning"]["methods"]["head"], reference["tuning"]["methods"]["head"]
    assert [(t["learning_rate"], t["status"], t["evaluations"]) for t in tuned["trials"]] == [
        (t["learning_rate"], t["status"], t["evaluations"]) for t in expected["trials"]]
    assert tuned["chosen_learning_rate"] == expected["chosen_learning_rate"]
    assert resumed["runs"][0]["metrics"]["accuracy"] == reference["runs"][0]["metrics"]["accuracy"]
    assert resumed["runs"][0]["curve"]["validation"] == reference["runs"][0]["curve"]["validation"]
    assert resumed["verdict"]["decision"] == reference["verdict"]["decision"]


def test_a_diverging_rate_among_the_candidates_still_ends_ok_with_a_sane_rate(tiny_bert_dir, tiny_task_csv, tmp_path):
    """Full fine-tuning's grid around 30 (×√10 and /√10): the rates of 30 and more blow the loss up (failed or
    pruned trials); the run is ok at a finite-loss rate."""
    rates = tmp_path / "rates.yaml"
    rates.write_text("full: {learning_rate: 30.0}\n")
    config = CompareConfig(model=str(tiny_bert_dir), data=str(tiny_task_csv), methods=["full"], epochs=2,
                           batch_size=16, robustness=False, diagnose=False, tune=["lr"], tune_points=5,
                           method_config=str(rates), out=str(tmp_path / "study"))
    results = compare(config)
    tuning = results["tuning"]["methods"]["full"]
    assert tuning["grid"] == [30.0, 9.49, 94.9, 3.0, 300.0]
    statuses = {t["learning_rate"]: t["status"] for t in tuning["trials"]}
    assert statuses[300.0] in ("failed", "pruned")
    run = results["runs"][0]
    assert run["status"] == "ok" and run["config"]["learning_rate"] == tuning["chosen_learning_rate"]
    assert math.isfinite(run["metrics"]["test_loss"])
