"""A suite's claims (peftlab.bench.claims) on runs whose per-example hits are made up, so that every statistic's
value is known: an interaction, a slope and a fit with LoRA ranks, a reference that did not learn, a claim still
pending, and the claims' shape checked when the suite is read."""

from __future__ import annotations

import numpy as np
import pytest

from peftlab.bench.claims import evaluate_claims, parse_claims, smallest_matching_rank
from peftlab.bench.table import claims_markdown
from peftlab.errors import ConfigError

N = 200


def hits(share: float, offset: int = 0) -> str:
    """N examples, the first ``share`` of them (rotated by ``offset``) right."""
    right = np.zeros(N, dtype=bool)
    right[: int(share * N)] = True
    return "".join("1" if hit else "0" for hit in np.roll(right, offset))


def task(accuracies: dict[str, float], seeds=(0, 1), majority: float = 0.5) -> dict:
    runs = [{"method": method, "seed": seed, "status": "ok", "test_correct": hits(share, seed)}
            for method, share in accuracies.items() for seed in seeds]
    return {"results": {"study": {"task": {"test_majority_share": majority}}, "runs": runs}}


CLAIMS = [
    {"name": "vocabulary", "kind": "interaction", "reference": "plain", "shifted": ["shifted"]},
    {"name": "depth", "kind": "slope", "tasks": ["d1", "d2", "d3"], "levels": [1, 2, 3]},
    {"name": "capacity", "kind": "fit", "task": "random"},
]
TASKS = ["plain", "shifted", "d1", "d2", "d3", "random", "unlearned"]


def test_interaction_slope_and_fit_have_the_values_they_were_built_with():
    finished = {
        "plain": task({"full": 0.9, "lora": 0.9, "bitfit": 0.9}),
        "shifted": task({"full": 0.9, "lora": 0.6, "bitfit": 0.9}),  # lora loses 30 points more when shifted
        "d1": task({"full": 0.9, "lora": 0.9, "bitfit": 0.9}),
        "d2": task({"full": 0.9, "lora": 0.8, "bitfit": 0.9}),
        "d3": task({"full": 0.9, "lora": 0.7, "bitfit": 0.9}),  # lora: 10 points further behind per level
        "random": task({"full": 0.95, "lora": 0.6, "lora[r=1]": 0.55, "lora[r=4]": 0.945, "lora[r=16]": 0.95}),
    }
    claims = evaluate_claims(parse_claims(CLAIMS, TASKS, "suite"), finished, ["full", "lora", "bitfit"])
    vocabulary, depth, capacity = claims
    assert vocabulary["status"] == "tested" and "majority share 50.0%" in vocabulary["reference"]
    lora = vocabulary["methods"]["lora"]["shifted"]
    assert lora["statistic"] == pytest.approx(-30.0) and lora["outcome"] == "reproduced" and lora["p_value"] < 0.01
    assert lora["ci95"][0] < -30 < lora["ci95"][1] and lora["gap_points"] == pytest.approx(-30.0)
    bitfit = vocabulary["methods"]["bitfit"]["shifted"]  # the same hits as full everywhere: no effect, p = 1
    assert bitfit["statistic"] == 0 and bitfit["p_value"] == 1.0 and bitfit["outcome"] == "no effect"
    slope = depth["methods"]["lora"]["slope"]
    assert slope["statistic"] == pytest.approx(-10.0) and slope["outcome"] == "reproduced"
    assert depth["methods"]["bitfit"]["slope"]["outcome"] == "no effect"
    assert capacity["methods"]["lora"]["fit"]["statistic"] == pytest.approx(-35.0)
    assert capacity["methods"]["lora"]["fit"]["outcome"] == "reproduced"
    assert "bitfit" not in capacity["methods"]  # no bitfit run on that task
    rank = smallest_matching_rank(capacity)
    assert rank["smallest_rank_within_tolerance"] == 4 and list(rank["gaps_by_rank"]) == ["1", "4", "16"]
    again = evaluate_claims(parse_claims(CLAIMS, TASKS, "suite"), finished, ["full", "lora", "bitfit"])
    assert again == claims  # seeded
    text = "\n".join(claims_markdown(claims))
    assert "| vocabulary | lora | shifted | -30.0 |" in text and "reproduced" in text and "no effect" in text


def test_a_reference_that_did_not_learn_makes_the_claim_inconclusive_and_missing_tasks_pending():
    finished = {"plain": task({"full": 0.5, "lora": 0.5}), "shifted": task({"full": 0.5, "lora": 0.1}),
                "random": task({"full": 0.9, "lora": 0.9})}
    vocabulary, depth, capacity = evaluate_claims(parse_claims(CLAIMS, TASKS, "suite"), finished, ["full", "lora"])
    assert vocabulary["status"] == "inconclusive" and "against the majority share" in vocabulary["reference"]
    assert vocabulary["methods"]["lora"]["shifted"]["outcome"] == "inconclusive"  # -40 points, but nothing learned
    assert depth["status"] == "pending" and "d1" in depth["reason"]
    partial = evaluate_claims(parse_claims(CLAIMS, TASKS, "suite"), {**finished, "plain": task({"full": 0.9, "lora": 0.9}),
                                                                      "d1": task({"full": 0.9, "lora": 0.9}),
                                                                      "d3": task({"full": 0.9, "lora": 0.7})}, ["full", "lora"])
    slope = partial[1]  # d2 not run: the slope over levels 1 and 3
    assert slope["status"] == "tested" and slope["not_run"] == ["d2"]
    assert slope["methods"]["lora"]["slope"]["statistic"] == pytest.approx(-10.0)
    assert "tested so far without: d2" in "\n".join(claims_markdown(partial))
    assert capacity["methods"]["lora"]["fit"]["outcome"] == "no effect"
    assert "inconclusive: the reference did not learn" in "\n".join(claims_markdown([vocabulary, depth]))


@pytest.mark.parametrize("claims, message", [
    ({"name": "x"}, "must be a list"),
    ([{"name": "x", "kind": "nope"}], "a name and a kind"),
    ([{"name": "x", "kind": "fit"}], "needs 'task'"),
    ([{"name": "x", "kind": "fit", "task": "elsewhere"}], "no task 'elsewhere'"),
    ([{"name": "x", "kind": "slope", "tasks": ["d1", "d2"], "levels": [1]}], "one number per task"),
    ([{"name": "x", "kind": "fit", "task": "random", "colour": "red"}], "unknown key colour"),
])
def test_bad_claims_are_one_config_error(claims, message):
    with pytest.raises(ConfigError, match=message):
        parse_claims(claims, TASKS, "suite s")


def test_the_interval_covers_seed_to_seed_variation():
    """Two seeds whose gaps disagree (-30 and +30 points): the mean gap is 0, and resampling the seeds makes the
    interval span both, far wider than the test sample alone would give."""
    def fit_task(lora_by_seed: dict[int, float]) -> dict:
        runs = [{"method": "full", "seed": seed, "status": "ok", "test_correct": hits(0.6, seed)} for seed in (0, 1)]
        runs += [{"method": "lora", "seed": seed, "status": "ok", "test_correct": hits(share, seed)}
                 for seed, share in lora_by_seed.items()]
        return {"results": {"study": {"task": {"test_majority_share": 0.5}}, "runs": runs}}

    claim = parse_claims([{"name": "capacity", "kind": "fit", "task": "random"}], TASKS, "suite")
    (record,) = evaluate_claims(claim, {"random": fit_task({0: 0.3, 1: 0.9})}, ["full", "lora"])
    fit = record["methods"]["lora"]["fit"]
    assert record["seeds"] == 2 and fit["statistic"] == pytest.approx(0.0)
    assert fit["ci95"][0] < -20 and fit["ci95"][1] > 20 and fit["outcome"] == "inconclusive"
