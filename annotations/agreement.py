"""Agreement statistics: judge vs people, people vs people, judge vs judge, ranking vs ranking.

- `judge_agreement`: Cohen's kappa, accuracy, sensitivity, specificity and the confusion matrix of
  a judge's 0/1 verdicts against human labels, each with a bootstrap CI over prompts.
- `krippendorff_alpha`: agreement among several annotators with missing labels (the ceiling a
  judge's kappa is read against), with a bootstrap CI over units.
- `judge_vs_judge`: Cohen's kappa of two judges; `ranking_agreement`: Kendall's tau of the
  checkpoint rankings two judges (or a judge and people) produce.

Point estimates come from scikit-learn, the `krippendorff` package and scipy; only the bootstrap
recomputes the statistics by hand, from resampled totals, because calling the libraries once per
resample would be a thousand times slower.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import krippendorff
import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.stats import kendalltau
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import cohen_kappa_score, confusion_matrix

from annotations.bootstrap import (Estimate, Seed, as_binary, cluster_totals, estimate, make_rng,
                                   resample_totals, safe_divide)

LEVELS = ("nominal", "ordinal", "interval", "ratio")


@dataclass(frozen=True)
class AgreementResult:
    """Judge vs human agreement on 0/1 labels (1 = complies). Confusion rows: human, cols: judge."""

    n: int
    n_clusters: int
    kappa: Estimate
    accuracy: Estimate
    sensitivity: Estimate
    specificity: Estimate
    confusion: tuple[tuple[int, int], tuple[int, int]]
    level: float

    def to_dict(self) -> dict[str, object]:
        flat: dict[str, object] = {"n": self.n, "n_clusters": self.n_clusters, "level": self.level}
        for name in ("kappa", "accuracy", "sensitivity", "specificity"):
            part = getattr(self, name)
            flat.update({name: part.value, f"{name}_ci_low": part.ci_low,
                         f"{name}_ci_high": part.ci_high})
        flat["confusion"] = [list(row) for row in self.confusion]
        return flat


@dataclass(frozen=True)
class AlphaResult:
    """Krippendorff's alpha with a bootstrap CI over units; nan when undefined (see `note`)."""

    alpha: float
    ci_low: float
    ci_high: float
    units: int
    annotators: int
    pairable_values: int
    level: str
    note: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class RankingAgreement:
    """Kendall's tau-b between two score vectors over the same checkpoints."""

    tau: float
    p_value: float
    n: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


# --- judge vs people -------------------------------------------------------------------------


def _kappa(a: np.ndarray, b: np.ndarray) -> float:
    """sklearn's Cohen's kappa; nan, without a warning, where it is undefined (no variation)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)  # scikit-learn >= 1.6 returns nan
        warnings.simplefilter("ignore", RuntimeWarning)  # older versions divide 0 by 0: also nan
        return float(cohen_kappa_score(a, b, labels=[0, 1]))


def _binary_metrics(tn: np.ndarray, fp: np.ndarray, fn: np.ndarray,
                    tp: np.ndarray) -> dict[str, np.ndarray]:
    """Kappa, accuracy, sensitivity, specificity from confusion counts (vectorised)."""
    n = tn + fp + fn + tp
    observed = safe_divide(tn + tp, n)
    chance = safe_divide((tn + fp) * (tn + fn) + (fn + tp) * (fp + tp), n * n)
    return {"kappa": safe_divide(observed - chance, 1 - chance), "accuracy": observed,
            "sensitivity": safe_divide(tp, tp + fn), "specificity": safe_divide(tn, tn + fp)}


def judge_agreement(judge: npt.ArrayLike, human: npt.ArrayLike,
                    clusters: npt.ArrayLike | None = None, n_boot: int = 1000, level: float = 0.95,
                    seed: Seed = 0) -> AgreementResult:
    """Agreement of a judge's 0/1 verdicts with human 0/1 labels (1 = complies), with bootstrap CIs.

    Pass each item's prompt as `clusters` when a prompt contributes several items: the bootstrap
    then resamples prompts. Sensitivity is the judge's hit rate on items people call complying;
    specificity on refusals. A metric undefined on the data (no positives, kappa with no variation)
    is nan. Drop unparseable verdicts and incoherent labels before calling: they are not 0 or 1.
    """
    j, h = as_binary(judge, "judge"), as_binary(human, "human")
    if len(j) != len(h):
        raise ValueError(f"judge has {len(j)} labels but human has {len(h)}")
    if len(j) == 0:
        raise ValueError("judge_agreement needs at least one labelled item")
    (tn, fp), (fn, tp) = confusion_matrix(h, j, labels=[0, 1])
    point = _binary_metrics(*(np.array(float(c)) for c in (tn, fp, fn, tp)))
    point["kappa"] = _kappa(h, j)
    totals = cluster_totals(np.eye(4)[2 * h + j], clusters)  # columns: tn, fp, fn, tp
    boot = _binary_metrics(*resample_totals(totals, n_boot, make_rng(seed)).T)
    parts = {name: estimate(point[name], boot[name], level) for name in boot}
    return AgreementResult(len(j), len(totals), confusion=((int(tn), int(fp)), (int(fn), int(tp))),
                           level=level, **parts)


def judge_vs_judge(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    """Cohen's kappa between two judges' 0/1 verdicts on the same items (nan if undefined)."""
    first, second = as_binary(a, "a"), as_binary(b, "b")
    if len(first) != len(second) or len(first) == 0:
        raise ValueError("need two equally long, non-empty verdict arrays, "
                         f"got {len(first)} and {len(second)}")
    return _kappa(first, second)


def ranking_agreement(scores_a: npt.ArrayLike | pd.Series,
                      scores_b: npt.ArrayLike | pd.Series) -> RankingAgreement:
    """Kendall's tau of two scorings of the same checkpoints (Series are aligned on their index)."""
    if isinstance(scores_a, pd.Series) and isinstance(scores_b, pd.Series):
        scores_a, scores_b = scores_a.align(scores_b, join="inner")
    a, b = np.asarray(scores_a, dtype=float), np.asarray(scores_b, dtype=float)
    if len(a) != len(b) or len(a) < 2:
        raise ValueError("need two score vectors over the same >= 2 checkpoints, "
                         f"got {len(a)} and {len(b)}")
    result = kendalltau(a, b)
    return RankingAgreement(float(result.statistic), float(result.pvalue), len(a))


# --- people vs people: Krippendorff's alpha ---------------------------------------------------


def _codes(values: pd.Series, level: str) -> np.ndarray:
    """Labels as floats (nan = missing): numbers as they are, ordered categories by their order,
    anything else (strings) as arbitrary codes, which only nominal alpha may use."""
    if isinstance(values.dtype, pd.CategoricalDtype) and values.cat.ordered:
        codes = values.cat.codes.to_numpy(dtype=float)
        return np.where(codes < 0, np.nan, codes)
    if not isinstance(values.dtype, pd.CategoricalDtype):
        numeric = pd.to_numeric(values, errors="coerce")
        if numeric.notna().sum() == values.notna().sum():
            return numeric.to_numpy(dtype=float)
    if level != "nominal":
        raise ValueError(f"{level} alpha needs numeric labels or an ordered Categorical, "
                         f"got {values.dtype}")
    codes = pd.factorize(values)[0].astype(float)
    return np.where(codes < 0, np.nan, codes)


def _long_to_matrix(frame: pd.DataFrame, level: str) -> np.ndarray:
    """Annotators x units matrix (nan = no label) from a long frame of unit, annotator, value."""
    missing = {"unit", "annotator", "value"} - set(frame.columns)
    if missing:
        raise ValueError(f"long frame lacks columns {sorted(missing)}")
    frame = frame.dropna(subset=["value"])
    if frame.duplicated(["unit", "annotator"]).any():
        raise ValueError("an annotator labelled the same unit twice: "
                         "keep one label per (unit, annotator)")
    units, annotators = pd.factorize(frame["unit"])[0], pd.factorize(frame["annotator"])[0]
    matrix = np.full((annotators.max(initial=-1) + 1, units.max(initial=-1) + 1), np.nan)
    matrix[annotators, units] = _codes(frame["value"], level)
    return matrix


def _as_matrix(data: npt.ArrayLike | pd.DataFrame, level: str) -> np.ndarray:
    """The reliability matrix (annotators x units, nan missing) from either accepted input."""
    if isinstance(data, pd.DataFrame):
        return _long_to_matrix(data, level)
    array = np.asarray(data)
    if array.ndim != 2:
        raise ValueError(f"reliability data must be 2-D (annotators x units), got {array.shape}")
    if array.dtype.kind in "fiub":
        return array.astype(float)
    # np.asarray turns nan into the string "nan" in a string array
    flat = pd.Series(array.ravel(), dtype=object).replace({"nan": np.nan, "": np.nan})
    return _codes(flat, level).reshape(array.shape)


def _distances(domain: np.ndarray, level: str, n_v: np.ndarray) -> np.ndarray:
    """Squared distances between values; per resample for ordinal, which depends on margins n_v."""
    if level == "nominal":
        return (domain[:, None] != domain[None, :]).astype(float)
    if level == "interval":
        return (domain[:, None] - domain[None, :]) ** 2
    if level == "ratio":
        total = domain[:, None] + domain[None, :]
        return safe_divide(domain[:, None] - domain[None, :], total) ** 2 * (total != 0)
    cum = np.cumsum(n_v, axis=-1)
    idx = np.arange(len(domain))
    lo, hi = np.minimum.outer(idx, idx), np.maximum.outer(idx, idx)
    between = cum[..., hi] - cum[..., lo] + n_v[..., lo]  # sum of n_g, g from lo to hi inclusive
    return (between - (n_v[..., :, None] + n_v[..., None, :]) / 2) ** 2


def _alpha_from_coincidences(o: np.ndarray, domain: np.ndarray, level: str) -> np.ndarray:
    """Alpha from coincidence matrices o (..., V, V): the krippendorff package's formula."""
    n_v = o.sum(axis=-1)
    n = n_v.sum(axis=-1)[..., None, None]
    pairs = n_v[..., :, None] * n_v[..., None, :] - n_v[..., None] * np.eye(len(domain))
    expected = pairs / (n - 1)
    d = _distances(domain, level, n_v)
    return 1 - safe_divide((o * d).sum(axis=(-2, -1)), (expected * d).sum(axis=(-2, -1)))


def _unit_coincidences(counts: np.ndarray) -> np.ndarray:
    """Each pairable unit's contribution to the coincidence matrix, flattened to (units, V*V)."""
    m = counts.sum(axis=1)[:, None, None]
    pairs = counts[:, :, None] * counts[:, None, :] - counts[:, :, None] * np.eye(counts.shape[1])
    return (pairs / (m - 1)).reshape(len(counts), -1)


def krippendorff_alpha(data: npt.ArrayLike | pd.DataFrame, level: str = "nominal",
                       n_boot: int = 1000, level_ci: float = 0.95, seed: Seed = 0) -> AlphaResult:
    """Krippendorff's alpha among annotators, missing labels allowed, with a bootstrap CI.

    `data` is either krippendorff's reliability matrix (a 2-D array, annotators x units, nan for a
    missing label) or a long DataFrame with columns unit, annotator, value. String values are
    mapped to codes (nominal only, unless the column is an ordered Categorical). `level` is the
    level of measurement: nominal, ordinal, interval or ratio.

    Errors and the undefined case:
    - no labels at all: ValueError;
    - no unit with two or more labels (for instance a single annotator): ValueError, since alpha
      compares labels within units;
    - every pairable label equal: alpha = 1 - observed / expected disagreement = 1 - 0/0 is
      undefined. We return alpha = nan (with nan CI) and say so in `note`, rather than 1.0: perfect
      agreement without variation shows nothing about the annotators' reliability.

    The CI resamples pairable units (units with >= 2 labels) with replacement; resamples that happen
    to have no variation are left out of the percentiles. Memory grows with units x values^2: meant
    for labels and rating scales, not for continuous values with thousands of distinct levels.
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    matrix = _as_matrix(data, level)
    labelled = ~np.isnan(matrix)
    if matrix.size == 0 or not labelled.any():
        raise ValueError("krippendorff_alpha got no labels (empty input)")
    domain = np.unique(matrix[labelled])
    counts = (matrix.T[:, :, None] == domain[None, None, :]).sum(axis=1)  # units x values
    pairable = counts[counts.sum(axis=1) >= 2]
    if len(pairable) == 0:
        raise ValueError("alpha needs at least two labels on some unit "
                         f"(got {matrix.shape[0]} annotator(s), no unit labelled twice)")
    shape = dict(units=int(labelled.any(axis=0).sum()), annotators=int(labelled.any(axis=1).sum()),
                 pairable_values=int(pairable.sum()), level=level)
    if (pairable.sum(axis=0) > 0).sum() < 2:
        note = "all pairable labels are equal: no variation, so alpha (0/0) is undefined"
        return AlphaResult(np.nan, np.nan, np.nan, note=note, **shape)
    point = float(krippendorff.alpha(reliability_data=matrix, value_domain=domain,
                                     level_of_measurement=level))
    boot = resample_totals(_unit_coincidences(pairable), n_boot, make_rng(seed))
    o = boot.reshape(n_boot, len(domain), len(domain))
    samples = _alpha_from_coincidences(o, domain, level)
    ci = estimate(point, samples, level_ci)
    return AlphaResult(point, ci.ci_low, ci.ci_high, note="", **shape)
