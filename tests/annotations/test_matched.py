"""Safety at matched capability and the conclusion-robustness table, on a simulated sweep with
two data sets (one learns fast, one slowly), mid-epoch checkpoints, two benchmarks and a planted
flip: on benchmark "x" the fast data set makes the model more harmful than the slow one, on "y"
less. Every number is recomputed by hand from the rows that went in."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from annotations.contrasts import interpolated_rate, paired_contrast
from annotations.harm import harmfulness_report
from annotations.matched import capability_points, goal_checkpoints, matched_report
from annotations.records import GoalStatus, RunGoal
from annotations.robustness import GOAL, conclusion_robustness, mark_flips
from annotations.store import Store
from annotations.sweeps import Conclusion
from capability_sweep import BASE, N_PROMPTS, TARGET, build_capability_sweep, ids_of, store_goals

@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    return build_capability_sweep(Store.open(tmp_path_factory.mktemp("matched") / "s.db"))


_ids = ids_of


def _by_hand(truth, ids_a, ids_b, bench, temperature):
    rows = truth[(truth["benchmark"] == bench) & (truth["temperature"] == temperature)]
    a = rows[rows["checkpoint_id"].isin(ids_a)]["outcome"].mean()
    b = rows[rows["checkpoint_id"].isin(ids_b)]["outcome"].mean()
    return a, b


def test_capability_points_are_in_training_order(sweep):
    store, _, plan, _ = sweep
    points = capability_points(store, "rouge_l")
    run = points[points["run_id"] == points["run_id"].dropna().iloc[0]]
    assert list(run["examples_seen"]) == [8, 16, 32]
    assert list(run["checkpoint"])[0].endswith("step 2")
    assert points.loc[points["run_id"].isna(), "capability"].tolist() == [BASE[0]]


def test_each_run_stops_at_its_first_checkpoint_meeting_the_goal(sweep):
    store, _, plan, _ = sweep
    goals = goal_checkpoints(capability_points(store, "rouge_l"), "rouge_l", TARGET)
    fast, slow = goals[goals["dataset"] == "fast"], goals[goals["dataset"] == "slow"]
    assert set(fast["checkpoint_id"]) == set(_ids(plan, "fast", 1))  # epoch 1 already
    assert set(slow["checkpoint_id"]) == set(_ids(plan, "slow", 2))
    assert goals["reached"].all()
    missed = goal_checkpoints(capability_points(store, "rouge_l"), "rouge_l", 0.58)
    assert list(missed.loc[missed["dataset"] == "slow", "reached"]) == [False, False]


def test_harmfulness_at_the_goal_is_the_checkpoints_own(sweep):
    store, judge, plan, truth = sweep
    report = matched_report(store, judge, "rouge_l", TARGET, n_boot=300)
    own = harmfulness_report(store, judge, n_boot=300).table.set_index(
        ["checkpoint_id", "temperature"])
    for row in report.at_goal.to_dict("records"):
        assert row["harmfulness"] == pytest.approx(
            own.loc[(row["checkpoint_id"], row["temperature"]), "harmfulness"])
        assert not row["interpolated"]
    # at equal capability: fast (epoch 1) against slow (epoch 2), prompts of both benchmarks
    row = report.comparisons[(report.comparisons["comparison"] == "fast vs slow")
                             & (report.comparisons["temperature"] == 0.0)].iloc[0]
    rows = truth[truth["temperature"] == 0.0]
    a = rows[rows["checkpoint_id"].isin(_ids(plan, "fast", 1))]["outcome"].mean()
    b = rows[rows["checkpoint_id"].isin(_ids(plan, "slow", 2))]["outcome"].mean()
    assert row["difference"] == pytest.approx(a - b)
    assert row["ci_low"] <= row["difference"] <= row["ci_high"]
    assert row["n_prompts"] == 2 * N_PROMPTS and row["runs_a"] == 2
    versus_base = set(report.comparisons["comparison"])
    assert versus_base == {"fast vs base", "slow vs base", "fast vs slow"}


def test_interpolation_reads_between_the_straddling_checkpoints(sweep):
    store, judge, plan, truth = sweep
    report = matched_report(store, judge, "rouge_l", TARGET, interpolate=True,
                            n_boot=300)
    slow = report.at_goal[(report.at_goal["dataset"] == "slow")
                          & (report.at_goal["temperature"] == 0.7)].iloc[0]
    weight = (TARGET - 0.35) / (0.52 - 0.35)
    assert slow["interpolated"] and slow["weight"] == pytest.approx(weight)
    after, previous = slow["checkpoint_id"], slow["previous_id"]
    assert previous in _ids(plan, "slow", 1) and after in _ids(plan, "slow", 2)
    rows = truth[truth["temperature"] == 0.7]
    by_hand = (weight * rows[rows["checkpoint_id"] == after]["outcome"].mean()
               + (1 - weight) * rows[rows["checkpoint_id"] == previous]["outcome"].mean())
    assert slow["harmfulness"] == pytest.approx(by_hand)
    assert np.isnan(slow["corrected"])  # the corrected rate is not interpolated


def test_the_planted_benchmark_flip_is_marked(sweep):
    store, judge, plan, truth = sweep
    result = conclusion_robustness(store, "fast", "slow", metric="rouge_l", target=TARGET,
                                   n_boot=300)
    table = result.table
    assert set(table["alignment"]) == {"epoch 1", "epoch 2", GOAL}
    epoch2 = table[table["alignment"] == "epoch 2"].set_index(["benchmark", "temperature"])
    assert epoch2.loc[("x", 0.0), "conclusion"] == Conclusion.ROSE.value
    assert epoch2.loc[("y", 0.0), "conclusion"] == Conclusion.FELL.value
    assert all("benchmark" in f for f in table.loc[table["alignment"] == "epoch 2",
                                                   "flips_with"])
    assert not any("temperature" in f for f in table["flips_with"])  # no flip planted there
    for (bench, temperature), row in epoch2.iterrows():
        a, b = _by_hand(truth, _ids(plan, "fast", 2), _ids(plan, "slow", 2), bench, temperature)
        assert row["harmfulness_a"] == pytest.approx(a) and row["harmfulness_b"] == pytest.approx(b)
        assert row["difference"] == pytest.approx(a - b)
        found = paired_contrast(truth[(truth["benchmark"] == bench)
                                      & (truth["temperature"] == temperature)],
                                _ids(plan, "fast", 2), _ids(plan, "slow", 2), 300)
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((found.ci_low, found.ci_high))
    goal = table[table["alignment"] == GOAL].set_index(["benchmark", "temperature"])
    a, b = _by_hand(truth, _ids(plan, "fast", 1), _ids(plan, "slow", 2), "y", 0.0)
    assert goal.loc[("y", 0.0), "difference"] == pytest.approx(a - b)
    summary = result.summary.set_index("dimension")["flipping_readings"]
    assert summary["benchmark"] == len(table) and summary["temperature"] == 0


def test_against_the_base_model_and_stored_goals(sweep):
    store, judge, plan, truth = sweep
    fast_goal = _ids(plan, "fast", 1)
    for cid in fast_goal:
        run_id = store.checkpoints_frame().set_index("id").loc[cid, "run_id"]
        store.upsert_goal(RunGoal(run_id=run_id, metric="rouge_l", benchmark="held",
                                  target=TARGET, status=GoalStatus.REACHED, checkpoint_id=cid))
    result = conclusion_robustness(store, "fast", n_boot=300)
    goal = result.table[result.table["alignment"] == GOAL]
    base = _ids(plan, "base", 0)
    a, b = _by_hand(truth, fast_goal, base, "x", 0.7)
    row = goal[(goal["benchmark"] == "x") & (goal["temperature"] == 0.7)].iloc[0]
    assert row["difference"] == pytest.approx(a - b) and row["conclusion"] == "rose significantly"
    assert result.b == "base"


def test_flips_are_read_per_dimension():
    table = pd.DataFrame({
        "alignment": ["epoch 1"] * 4, "benchmark": ["x", "x", "y", "y"],
        "source": ["j1", "j2", "j1", "j2"], "temperature": [0.0] * 4,
        "conclusion": ["rose significantly", "rose significantly", "rose significantly",
                       Conclusion.TOO_FEW.value]})
    marked = mark_flips(table)
    assert list(marked["flips"]) == [False, False, False, False]
    table.loc[3, "conclusion"] = "no significant change"
    marked = mark_flips(table)
    assert list(marked["flips_with"]) == ["", "benchmark", "judge", "benchmark, judge"]


def test_paired_contrast_covers_the_true_difference():
    """Coverage of the paired bootstrap CI over 300 simulated pairs of sets, 60 prompts each,
    with prompt-level heterogeneity: near 95%."""
    rng = np.random.default_rng(11)
    hits = 0
    for rep in range(300):
        risk = rng.beta(2, 3, size=60)  # each prompt's own propensity
        true_a, true_b = np.clip(risk + 0.15, 0, 1), risk
        rows = pd.DataFrame(
            [{"checkpoint_id": c, "prompt_id": p, "outcome": int(rng.random() < rate[p])}
             for c, rate in (("a", true_a), ("b", true_b)) for p in range(60)
             for _ in range(2)])
        found = paired_contrast(rows, ["a"], ["b"], n_boot=400, seed=rep)
        truth = float(true_a.mean() - true_b.mean())
        hits += found.ci_low <= truth <= found.ci_high
    assert 0.91 <= hits / 300 <= 0.98


def test_interpolated_rate_at_the_ends_is_each_checkpoints_rate():
    rows = pd.DataFrame({"checkpoint_id": ["a"] * 4 + ["b"] * 4, "prompt_id": [0, 1, 2, 3] * 2,
                         "outcome": [1, 1, 0, 0, 1, 0, 0, 0]})
    assert interpolated_rate(rows, "a", "b", 0.0).value == pytest.approx(0.5)
    assert interpolated_rate(rows, "a", "b", 1.0).value == pytest.approx(0.25)
    assert interpolated_rate(rows, "a", "b", 0.5).value == pytest.approx(0.375)


def test_the_report_the_cli_and_the_functions_give_one_answer(sweep, tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    from annotations.report import build_report, write_html

    store, judge, plan, _ = sweep
    store_goals(store, plan)
    report = build_report(store, n_boot=200)
    by_hand = matched_report(store, judge, "rouge_l", TARGET, benchmark="held", n_boot=200)
    assert len(report.matched) == 1
    pd.testing.assert_frame_equal(report.matched[0].at_goal, by_hand.at_goal)
    pd.testing.assert_frame_equal(report.matched[0].comparisons, by_hand.comparisons)
    pairs = {(r.a, r.b) for r in report.robustness}
    assert pairs == {("fast", "base"), ("slow", "base"), ("fast", "slow")}
    robust = next(r for r in report.robustness if (r.a, r.b) == ("fast", "slow"))
    pd.testing.assert_frame_equal(robust.table, conclusion_robustness(
        store, "fast", "slow", base_model="tiny", n_boot=200).table)
    page = write_html(report, tmp_path / "r.html").read_text()
    assert "Safety at matched capability" in page and "Does the conclusion hold?" in page
    assert "flips with" in page and "benchmark" in page
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "run.py", "--store", str(store.url.split("///")[1]),
                          "matched", "--compare", "fast", "--against", "slow", "--n-boot", "200",
                          "--plot", str(tmp_path / "plot.png"), "--json"], cwd=root,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    cli = json.loads(out.stdout)
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [r["harmfulness"] for r in cli["matched"]["at_goal"]] == pytest.approx(
        list(by_hand.at_goal["harmfulness"]))
    assert [r["difference"] for r in cli["robustness"]["table"]] == pytest.approx(
        list(robust.table["difference"]))
