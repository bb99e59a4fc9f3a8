"""Cluster bootstrap helpers shared by the statistics modules (agreement, correction, variance).

Every statistic the workbench bootstraps is a smooth function of a few totals: counts of 0/1
outcomes, cells of a confusion matrix, cells of a Krippendorff coincidence matrix. Resampling
clusters (prompts) with replacement only changes how often each cluster's row of totals is counted,
so one resample is `weights @ cluster_totals`, and 1,000 resamples are one matrix product.

Clusters whose rows of totals are identical are interchangeable, so they are merged first and the
weights drawn as one multinomial over the distinct rows. This is exact: drawing n clusters
uniformly with replacement and counting how many land in each group of identical rows *is* a
multinomial with probabilities group size / n. With 0/1 data there are few distinct rows, and 1,000
resamples over a million verdicts take milliseconds.

This module is the one piece of the statistics written by hand rather than taken from a library,
for speed: `scipy.stats.bootstrap` calls the statistic once per resample and knows no clusters.
Every function takes a seed or a numpy Generator, so results are reproducible.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

Seed = int | np.random.Generator | None

# Above this share of distinct rows a multinomial over them costs more than drawing indices.
_MULTINOMIAL_MAX_SHARE = 0.3


@dataclass(frozen=True)
class Estimate:
    """A point estimate with a percentile confidence interval (nan where undefined)."""

    value: float
    ci_low: float
    ci_high: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def make_rng(seed: Seed) -> np.random.Generator:
    """A numpy Generator from an int seed, or the Generator itself when one is passed."""
    return np.random.default_rng(seed)


def as_binary(values: npt.ArrayLike, name: str) -> np.ndarray:
    """`values` as an int8 array of 0/1, or a ValueError naming the argument."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.dtype.kind == "f" and np.isnan(array).any():
        raise ValueError(f"{name} has missing values: drop unparseable or unlabelled rows first")
    if not np.isin(array, (0, 1)).all():
        raise ValueError(f"{name} must hold only 0 and 1")
    return array.astype(np.int8)


def cluster_totals(values: npt.ArrayLike, clusters: npt.ArrayLike | None = None) -> np.ndarray:
    """Column sums of `values` (rows x k) within each cluster; without clusters each row is one."""
    table = np.asarray(values, dtype=float)
    table = table[:, None] if table.ndim == 1 else table
    if clusters is None:
        return table
    codes, uniques = pd.factorize(np.asarray(clusters))  # hashing: faster than np.unique's sort
    if len(codes) != len(table):
        raise ValueError(f"clusters has {len(codes)} entries for {len(table)} rows")
    if (codes < 0).any():
        raise ValueError("clusters has missing values")
    sums = [np.bincount(codes, weights=column, minlength=len(uniques)) for column in table.T]
    return np.column_stack(sums)


def _distinct_rows(totals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of `totals` and, for each original row, the index of its distinct row."""
    contiguous = np.ascontiguousarray(totals + 0.0)  # + 0.0 folds -0.0 into 0.0: rows hash as bytes
    row_bytes = np.dtype((np.void, contiguous.dtype.itemsize * contiguous.shape[1]))
    keys = contiguous.view(row_bytes).ravel()
    codes, uniques = pd.factorize(keys)
    rows = np.empty((len(uniques), totals.shape[1]))
    rows[codes] = totals
    return rows, codes


def resample_weights(codes: np.ndarray, n_groups: int, n_boot: int,
                     rng: np.random.Generator) -> np.ndarray:
    """(n_boot x n_groups): how often each group is drawn when resampling len(codes) rows."""
    n = len(codes)
    sizes = np.bincount(codes, minlength=n_groups)
    if n_groups <= _MULTINOMIAL_MAX_SHARE * n:
        return rng.multinomial(n, sizes / n, size=n_boot)
    draws = codes[rng.integers(0, n, size=(n_boot, n))]
    offsets = (np.arange(n_boot) * n_groups)[:, None]
    counts = np.bincount((draws + offsets).ravel(), minlength=n_boot * n_groups)
    return counts.reshape(n_boot, n_groups)


def resample_totals(totals: npt.ArrayLike, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot x k) column totals of `totals` (clusters x k) over resamples of the clusters."""
    table = np.asarray(totals, dtype=float)
    table = table[:, None] if table.ndim == 1 else table
    if len(table) == 0:
        raise ValueError("cannot bootstrap an empty sample")
    rows, codes = _distinct_rows(table)
    return resample_weights(codes, len(rows), n_boot, rng) @ rows


def percentile_ci(samples: npt.ArrayLike, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over axis 0, leaving out resamples where the statistic is nan."""
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level}")
    tail = (1 - level) / 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nan in every resample gives nan, quietly
        low, high = np.nanquantile(np.asarray(samples, dtype=float), [tail, 1 - tail], axis=0)
    return low, high


def estimate(value: float, samples: npt.ArrayLike, level: float) -> Estimate:
    """An Estimate of `value` with the percentile interval of its bootstrap `samples`."""
    low, high = percentile_ci(samples, level)
    return Estimate(float(value), float(low), float(high))


def safe_divide(numerator: npt.ArrayLike, denominator: npt.ArrayLike) -> np.ndarray:
    """numerator / denominator, nan where the denominator is 0 (an undefined rate, not an error)."""
    num = np.asarray(numerator, dtype=float)
    den = np.asarray(denominator, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den != 0, num / np.where(den != 0, den, 1.0), np.nan)
