"""How many more labels: the forecast of `labels_needed` checked by simulation (drawing the
forecast number of labels gives the target half-width), active draws forecast fewer labels
than uniform ones, and the next items come with their inclusion probabilities."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sweep_builder import build_sweep

import run
from annotations.estimates import Calibration, cell_estimates
from annotations.frames import Frames
from annotations.harm import harmfulness_report
from annotations.label_budget import labels_needed

N = 3000


def _cell(rng, n_labels: int) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """One checkpoint x temperature of N answers to N prompts, a calibrated judge that gives
    probabilities (truth 0.30), and `n_labels` answers labelled at random by one annotator."""
    f = rng.beta(0.6, 1.4, N)
    y = rng.binomial(1, f)
    ids = np.array([f"g{i}" for i in range(N)])
    outcomes = pd.DataFrame({
        "generation_id": ids, "judge_id": "j", "judge_name": "llm", "outcome": (f > 0.5) * 1.0,
        "probability": f, "checkpoint_id": "c", "prompt_id": [f"p{i}" for i in range(N)],
        "temperature": 0.0, "sample_index": 0, "degenerate": False, "empty": False,
        "base_model": "m", "run_id": None, "epoch": 0, "checkpoint_kind": "base", "kind": "unsafe",
        "category_id": "1", "category": "c1", "benchmark": "sim"})
    return outcomes, _labels(ids, y, rng.choice(N, n_labels, replace=False), n_labels / N), y


def _labels(ids, y, drawn, pi) -> pd.DataFrame:
    return pd.DataFrame({"generation_id": ids[drawn], "annotator": "a",
                         "label": np.where(y[drawn] == 1, "complies", "refuses"),
                         "chosen_at_random": True, "inclusion_probability": pi})


def test_forecast_labels_reach_the_target_half_width():
    rng = np.random.default_rng(11)
    outcomes, labels, _ = _cell(rng, 100)
    budget = labels_needed(Frames(outcomes, labels), "j", target=0.05)
    row = budget.table.iloc[0]
    assert row["n_own_labels"] == 100 and 0 < row["further_active"] < row["further_uniform"]
    total = int(100 + row["further_uniform"])
    widths = []
    for _ in range(200):  # fresh populations labelled with the forecast number, uniformly
        outcomes, labels, _ = _cell(rng, total)
        frames = Frames(outcomes, labels)
        calibration = Calibration.of(frames.outcomes, frames.labels)
        rate = cell_estimates(frames.outcomes, calibration, calibration.items, 0.95)
        widths.append(rate[next(iter(rate))].half_width)
    print(f"forecast {total} uniform labels (active: {100 + row['further_active']:.0f}); "
          f"mean half-width then {np.mean(widths):.4f}")
    assert np.mean(widths) == pytest.approx(0.05, rel=0.1)


def test_next_items_are_unlabelled_answers_of_short_cells_with_probabilities():
    outcomes, labels, _ = _cell(np.random.default_rng(2), 50)
    budget = labels_needed(Frames(outcomes, labels), "j", target=0.05, n_next=25)
    items = budget.next_items
    assert len(items) == 25 and items["generation_id"].is_unique
    assert not set(items["generation_id"]) & set(labels["generation_id"])
    assert items["inclusion_probability"].between(0, 1, inclusive="right").all()
    unsure = outcomes.set_index("generation_id").loc[items["generation_id"], "probability"]
    assert (unsure * (1 - unsure)).mean() > (outcomes["probability"]
                                              * (1 - outcomes["probability"])).mean()


def test_an_unreachable_target_says_so_and_bad_targets_are_refused():
    outcomes, labels, _ = _cell(np.random.default_rng(3), 20)
    small = Frames(outcomes.iloc[:40], labels[labels["generation_id"].isin(
        outcomes["generation_id"].iloc[:40])])
    row = labels_needed(small, "j", target=0.02).table.iloc[0]
    assert np.isinf(row["further_uniform"])  # 40 answers cannot pin a rate to 2 points
    with pytest.raises(ValueError, match="half-width"):
        labels_needed(small, "j", target=0.7)


def test_run_py_labels_needed_prints_the_same_budget(capsys, tmp_path):
    sweep = build_sweep(tmp_path / "s.db")
    argv = ["--store", str(tmp_path / "s.db"), "labels-needed", "--judge", "noisy",
            "--half-width", "0.2", "--next", "5"]
    assert run.main([*argv, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    budget = labels_needed(sweep.store, sweep.judges["noisy"], target=0.2, n_next=5)
    assert shown["judge"] == "noisy" and shown["judge_id"] == sweep.judges["noisy"]
    assert shown["table"] == json.loads(json.dumps(budget.to_dict()["table"], default=str))
    assert [r["generation_id"] for r in shown["next_items"]] == list(
        budget.next_items["generation_id"])
    assert len(budget.table) == 10  # 5 checkpoints x 2 temperatures, 80 answers each
    assert budget.table["further_uniform"].map(np.isfinite).all()
    assert run.main(argv) == 0
    text = capsys.readouterr().out
    for row in budget.table.itertuples():
        assert f"{row.checkpoint}" in text and f" {int(row.further_uniform)} " in text
    assert run.main(["--store", str(tmp_path / "s.db"), "labels-needed", "--judge", "nope"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: --judge 'nope' names no judge (judges: accurate, noisy)")


def test_the_current_half_width_is_the_reports_own_ppi(tmp_path):
    sweep = build_sweep(tmp_path / "s.db")
    budget = labels_needed(sweep.store, sweep.judges["accurate"]).table
    report = harmfulness_report(sweep.store, sweep.judges["accurate"], n_boot=100).table
    shown = budget.merge(report, on=["checkpoint_id", "temperature"])
    assert len(shown) == len(budget) == len(report)
    has = shown["ppi_own"].notna()
    assert has.any()
    assert np.allclose(shown.loc[has, "half_width"],
                       (shown["ppi_own_ci_high"] - shown["ppi_own_ci_low"])[has] / 2)
    assert shown.loc[~has, "half_width"].isna().all()
    assert (shown["n_own_labels_x"] == shown["n_own_labels_y"]).all()
