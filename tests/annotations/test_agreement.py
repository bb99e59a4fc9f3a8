"""Agreement statistics against published and hand-computed values, and their edge cases."""

from __future__ import annotations

import krippendorff
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score

from annotations.agreement import (_alpha_from_coincidences, _unit_coincidences, judge_agreement,
                                   judge_vs_judge, krippendorff_alpha, ranking_agreement)

nan = np.nan

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: 4 coders (rows)
# x 12 units (columns), values 1-5, missing labels as nan.
K2011 = [[1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
         [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
         [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
         [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan]]

# Krippendorff (2011), section A: two coders, ten units, binary values; alpha = 0.095.
K2011_BINARY = [[0, 1, 0, 0, 0, 0, 0, 0, 1, 0],
                [1, 1, 1, 0, 0, 1, 0, 0, 0, 0]]


@pytest.mark.parametrize("level, expected", [("nominal", 0.743), ("ordinal", 0.815),
                                             ("interval", 0.849), ("ratio", 0.797)])
def test_alpha_matches_krippendorff_2011(level, expected):
    result = krippendorff_alpha(K2011, level=level, n_boot=200)
    assert round(result.alpha, 3) == expected
    assert result.units == 12 and result.annotators == 4 and result.pairable_values == 40
    assert result.ci_low <= result.alpha <= result.ci_high


def test_alpha_binary_two_coder_example():
    assert round(krippendorff_alpha(K2011_BINARY).alpha, 3) == 0.095


def test_alpha_hand_computed_four_units_two_coders():
    # Units x coders: (1,0), (0,1), (1,0), (0,1): the coders disagree on every unit.
    # 8 pairable values, four 0s and four 1s. Observed disagreement D_o = 1 (every pair within a
    # unit differs). Expected D_e = 2 * n_0 * n_1 / (n (n - 1)) = 2 * 4 * 4 / (8 * 7) = 4/7.
    # alpha = 1 - D_o / D_e = 1 - 7/4 = -0.75.
    table = np.array([[1, 0], [0, 1], [1, 0], [0, 1]])
    assert krippendorff_alpha(table.T).alpha == pytest.approx(-0.75)


def test_alpha_from_a_long_frame_with_string_labels_equals_codes():
    words = np.where(np.array(K2011_BINARY).T.ravel() == 1, "complies", "refuses")
    frame = pd.DataFrame({"unit": np.repeat(np.arange(10), 2), "annotator": ["ann", "bob"] * 10,
                          "value": words})
    assert krippendorff_alpha(frame).alpha == pytest.approx(krippendorff_alpha(K2011_BINARY).alpha)


def test_alpha_ordinal_strings_need_an_order():
    words = ["low", "mid", "high"]
    frame = pd.DataFrame({"unit": [0, 0, 1, 1, 2, 2], "annotator": ["a", "b"] * 3,
                          "value": ["low", "mid", "high", "high", "low", "low"]})
    with pytest.raises(ValueError, match="ordered Categorical"):
        krippendorff_alpha(frame, level="ordinal")
    frame["value"] = pd.Categorical(frame["value"], categories=words, ordered=True)
    numeric = [[0, 2, 0], [1, 2, 0]]
    assert krippendorff_alpha(frame, level="ordinal").alpha == pytest.approx(
        krippendorff.alpha(numeric, level_of_measurement="ordinal"))


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval", "ratio"])
def test_vectorised_bootstrap_formula_equals_the_package(level):
    # The bootstrap recomputes alpha from resampled coincidences; on the data it is the package.
    rng = np.random.default_rng(0)
    matrix = rng.integers(1, 6, size=(5, 60)).astype(float)
    matrix[rng.random(matrix.shape) < 0.3] = nan
    domain = np.unique(matrix[~np.isnan(matrix)])
    counts = (matrix.T[:, :, None] == domain).sum(axis=1)
    pairable = counts[counts.sum(axis=1) >= 2]
    o = _unit_coincidences(pairable).sum(axis=0).reshape(len(domain), len(domain))
    assert _alpha_from_coincidences(o, domain, level) == pytest.approx(
        krippendorff.alpha(matrix, level_of_measurement=level))


def test_alpha_all_labels_equal_is_undefined_with_a_note():
    result = krippendorff_alpha([[1, 1, 1], [1, 1, nan]])
    assert np.isnan(result.alpha) and np.isnan(result.ci_low) and "undefined" in result.note
    assert result.to_dict()["pairable_values"] == 4


@pytest.mark.parametrize("data", [[[1, 0, 1]], [[1, nan], [nan, 0]]])
def test_alpha_without_a_unit_labelled_twice_raises(data):
    with pytest.raises(ValueError, match="alpha needs at least two labels on some unit"):
        krippendorff_alpha(data)


@pytest.mark.parametrize("data", [np.empty((0, 0)), [[nan, nan]],
                                  pd.DataFrame(columns=["unit", "annotator", "value"])])
def test_alpha_empty_input_raises(data):
    with pytest.raises(ValueError, match="no labels"):
        krippendorff_alpha(data)


def test_alpha_rejects_duplicate_labels_and_unknown_levels():
    frame = pd.DataFrame({"unit": [1, 1], "annotator": ["a", "a"], "value": [0, 1]})
    with pytest.raises(ValueError, match="twice"):
        krippendorff_alpha(frame)
    with pytest.raises(ValueError, match="level"):
        krippendorff_alpha(K2011, level="cardinal")


def test_judge_agreement_hand_counts():
    # human: 1 1 1 1 0 0 0 0 0 0; judge: 1 1 1 0 0 0 0 0 1 1
    # TP 3, FN 1, TN 4, FP 2 -> sensitivity 3/4, specificity 4/6, accuracy 7/10.
    human = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    judge = np.array([1, 1, 1, 0, 0, 0, 0, 0, 1, 1])
    result = judge_agreement(judge, human, n_boot=500)
    assert result.confusion == ((4, 2), (1, 3))
    assert result.sensitivity.value == pytest.approx(0.75)
    assert result.specificity.value == pytest.approx(4 / 6)
    assert result.accuracy.value == pytest.approx(0.7)
    # kappa: p_o = 0.7, p_e = (6*5 + 4*5) / 100 = 0.5, kappa = 0.2 / 0.5 = 0.4
    assert result.kappa.value == pytest.approx(0.4)
    assert result.to_dict()["sensitivity_ci_high"] >= 0.75


@pytest.mark.parametrize("seed", range(5))
def test_judge_agreement_kappa_matches_sklearn_on_random_data(seed):
    rng = np.random.default_rng(seed)
    human = rng.integers(0, 2, 400)
    judge = np.where(rng.random(400) < 0.75, human, 1 - human)
    prompts = rng.integers(0, 100, 400)
    result = judge_agreement(judge, human, clusters=prompts, n_boot=300, seed=seed)
    assert result.kappa.value == pytest.approx(cohen_kappa_score(human, judge))
    assert result.kappa.ci_low < result.kappa.value < result.kappa.ci_high
    assert result.n == 400 and result.n_clusters <= 100


def test_judge_agreement_bootstrap_kappa_formula_matches_sklearn():
    # The resamples use a hand-written kappa from confusion counts; check it on weighted data.
    from annotations.agreement import _binary_metrics
    rng = np.random.default_rng(11)
    human, judge = rng.integers(0, 2, 300), rng.integers(0, 2, 300)
    (tn, fp), (fn, tp) = [[np.sum((human == h) & (judge == j)) for j in (0, 1)] for h in (0, 1)]
    kappa = _binary_metrics(*(np.array(float(c)) for c in (tn, fp, fn, tp)))["kappa"]
    assert kappa == pytest.approx(cohen_kappa_score(human, judge))


def test_judge_agreement_undefined_metrics_are_nan():
    result = judge_agreement([0, 0, 0], [0, 0, 0], n_boot=50)
    assert np.isnan(result.sensitivity.value) and result.specificity.value == 1.0
    assert np.isnan(result.kappa.value)


def test_judge_agreement_rejects_bad_input():
    with pytest.raises(ValueError, match="labels but"):
        judge_agreement([0, 1], [0, 1, 1])
    with pytest.raises(ValueError, match="at least one"):
        judge_agreement([], [])
    with pytest.raises(ValueError, match="0 and 1"):
        judge_agreement([0, 2], [0, 1])


def test_judge_vs_judge_is_cohens_kappa():
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 2, 100), rng.integers(0, 2, 100)
    assert judge_vs_judge(a, b) == pytest.approx(cohen_kappa_score(a, b))
    assert judge_vs_judge(a, a) == 1.0


def test_ranking_agreement_kendall_tau():
    assert ranking_agreement([0.1, 0.2, 0.3, 0.4], [0.2, 0.3, 0.5, 0.9]).tau == pytest.approx(1.0)
    assert ranking_agreement([0.1, 0.2, 0.3], [0.3, 0.2, 0.1]).tau == pytest.approx(-1.0)
    a = pd.Series({"ep1": 0.1, "ep2": 0.5, "ep3": 0.3})
    b = pd.Series({"ep3": 0.2, "ep1": 0.0, "ep2": 0.9, "ep4": 0.4})  # aligned on checkpoint names
    result = ranking_agreement(a, b)
    assert result.tau == pytest.approx(1.0) and result.n == 3
    with pytest.raises(ValueError):
        ranking_agreement([0.1], [0.2])
