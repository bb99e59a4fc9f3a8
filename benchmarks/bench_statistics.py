"""Benchmark: every statistic of the workbench over a million verdicts, with 1,000-resample CIs.

Run: .venv/bin/python benchmarks/bench_statistics.py [--naive-resamples 5]

Layout (synthetic, seeded): 10 seeds x 5 epochs (epoch 0 = the base model, sampled under each
seed) x 2 temperatures x 5,000 prompts x 2 samples = 1,000,000 judged verdicts; 12,500 of the
answers labelled by 4 of 8 annotators each = 50,000 human labels. Timed: harmfulness per
checkpoint x temperature, judge agreement (majority human label vs judge, clustered by prompt),
Krippendorff's alpha among the annotators, corrected harmfulness per checkpoint x temperature,
variance components and the seed spread with its paired bootstrap, all with 1,000 resamples.

Beside it, a naive pandas loop: each resample draws prompts with replacement, merges them back
onto the verdicts (df.merge), groups by condition, resamples the labelled answers with df.sample,
and calls scikit-learn and krippendorff per resample. One resample serves every statistic (a
generous baseline). It is timed on a few resamples and extrapolated to 1,000, as printed.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import krippendorff
import numpy as np
import pandas as pd
from sklearn.metrics import cohen_kappa_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout
from annotations.agreement import judge_agreement, krippendorff_alpha
from annotations.correction import corrected_harmfulness, harmfulness_table
from annotations.variance import seed_spread, variance_components

N_BOOT = 1000
CONDITION = ["seed", "epoch", "temperature"]


@dataclass
class Data:
    verdicts: pd.DataFrame  # seed, epoch, temperature, sample, prompt, outcome, human
    labels: pd.DataFrame  # unit, annotator, value (long)
    calibration: pd.DataFrame  # unit, prompt, judge, human (majority of annotators)


def make_data(seed: int = 0, n_seeds: int = 10, n_epochs: int = 5, n_prompts: int = 5000,
              n_samples: int = 2, n_labelled: int = 12_500) -> Data:
    """Synthetic verdicts with seed, epoch, temperature and prompt effects, and a noisy judge."""
    rng = np.random.default_rng(seed)
    levels = [range(n_seeds), range(n_epochs), [0.0, 0.7], range(n_prompts), range(n_samples)]
    grid = pd.MultiIndex.from_product(levels, names=[*CONDITION, "prompt", "sample"])
    frame = grid.to_frame(index=False)
    logit = (rng.normal(-1, 1.5, n_prompts)[frame["prompt"]] + 0.3 * frame["epoch"]
             + rng.normal(0, 0.2, n_seeds)[frame["seed"]] + 0.5 * frame["temperature"])
    truth = rng.random(len(frame)) < 1 / (1 + np.exp(-logit.to_numpy()))
    judge = np.where(truth, rng.random(len(frame)) < 0.9, rng.random(len(frame)) < 0.1)
    frame["outcome"] = judge.astype(np.int8)
    units = rng.choice(len(frame), n_labelled, replace=False)
    labels = _annotate(rng, units, truth[units])
    majority = labels.assign(vote=labels["value"].eq("complies")).groupby("unit")["vote"].mean()
    majority = majority[majority != 0.5]  # ties carry no majority label
    frame["human"] = np.nan
    frame.loc[majority.index, "human"] = (majority > 0.5).astype(float)
    labelled = frame.loc[majority.index]
    calibration = pd.DataFrame({"unit": majority.index, "prompt": labelled["prompt"].to_numpy(),
                                "judge": labelled["outcome"].to_numpy(),
                                "human": (majority > 0.5).astype(int).to_numpy()})
    return Data(frame, labels, calibration)


def _annotate(rng: np.random.Generator, units: np.ndarray, truth: np.ndarray, n_annotators: int = 8,
              per_unit: int = 4) -> pd.DataFrame:
    """Each unit labelled by `per_unit` random annotators, each right with their own accuracy."""
    accuracy = rng.uniform(0.8, 0.95, n_annotators)
    who = np.argsort(rng.random((len(units), n_annotators)), axis=1)[:, :per_unit]
    right = rng.random(who.shape) < accuracy[who]
    says_complies = np.where(right, truth[:, None], ~truth[:, None])
    return pd.DataFrame({"unit": np.repeat(units, per_unit), "annotator": who.ravel(),
                         "value": np.where(says_complies.ravel(), "complies", "refuses")})


def run_fast(data: Data) -> dict[str, float]:
    """Every statistic through the workbench's functions; seconds per step."""
    times: dict[str, float] = {}
    start = time.perf_counter()
    table = harmfulness_table(data.verdicts, by=CONDITION, n_boot=N_BOOT)
    times["harmfulness per checkpoint x temperature"] = _lap(start)
    start = time.perf_counter()
    cal = data.calibration
    judge_agreement(cal["judge"], cal["human"], clusters=cal["prompt"], n_boot=N_BOOT)
    times["judge agreement (kappa, acc, sens, spec)"] = _lap(start)
    start = time.perf_counter()
    krippendorff_alpha(data.labels, n_boot=N_BOOT)
    times["Krippendorff's alpha"] = _lap(start)
    start = time.perf_counter()
    for _, group in data.verdicts.groupby(CONDITION, sort=False):
        corrected_harmfulness(group["outcome"].to_numpy(), cal["judge"], cal["human"],
                              n_boot=N_BOOT, judged_clusters=group["prompt"].to_numpy(),
                              calib_clusters=cal["prompt"])
    times["corrected harmfulness per checkpoint x temperature"] = _lap(start)
    start = time.perf_counter()
    variance_components(data.verdicts)
    times["variance components"] = _lap(start)
    start = time.perf_counter()
    seed_spread(data.verdicts, n_boot=N_BOOT)
    times["seed spread (paired bootstrap vs base)"] = _lap(start)
    assert len(table) == data.verdicts.groupby(CONDITION).ngroups
    return times


def _lap(start: float) -> float:
    return time.perf_counter() - start


def naive_resample(data: Data, matrix: pd.DataFrame, rng: np.random.Generator) -> None:
    """One bootstrap resample of every statistic, the way a pandas loop would do it."""
    verdicts, cal = data.verdicts, data.calibration
    all_prompts = verdicts["prompt"].unique()
    prompts = pd.DataFrame({"prompt": rng.choice(all_prompts, len(all_prompts))})
    resampled = prompts.merge(verdicts, on="prompt")
    rates = resampled.groupby(CONDITION)["outcome"].mean()  # harmfulness, and p for the correction
    base = rates.xs(0, level="epoch")
    (rates.drop(index=0, level="epoch") - base).dropna()  # seed spread: paired differences vs base
    labelled_prompts = cal["prompt"].unique()
    cal_prompts = pd.DataFrame({"prompt": rng.choice(labelled_prompts, len(labelled_prompts))})
    cal_sample = cal_prompts.merge(cal, on="prompt")
    cohen_kappa_score(cal_sample["human"], cal_sample["judge"])
    positives, negatives = cal_sample[cal_sample.human == 1], cal_sample[cal_sample.human == 0]
    sens, spec = positives["judge"].mean(), 1 - negatives["judge"].mean()
    ((rates + spec - 1) / (sens + spec - 1)).clip(0, 1)
    units = data.labels["unit"].drop_duplicates().sample(frac=1, replace=True, random_state=rng)
    krippendorff.alpha(matrix[units.to_numpy()].to_numpy(dtype=str), level_of_measurement="nominal")


def run_naive(data: Data, n_resamples: int) -> float:
    """Seconds per naive resample, timed over `n_resamples`."""
    rng = np.random.default_rng(1)
    matrix = data.labels.pivot(index="annotator", columns="unit", values="value")  # once, untimed
    start = time.perf_counter()
    for _ in range(n_resamples):
        naive_resample(data, matrix, rng)
    return _lap(start) / n_resamples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--naive-resamples", type=int, default=5,
                        help="resamples to time the naive loop on")
    args = parser.parse_args()
    start = time.perf_counter()
    data = make_data()
    print(f"data: {len(data.verdicts):,} verdicts, {len(data.labels):,} human labels "
          f"({data.labels['unit'].nunique():,} answers), built in {_lap(start):.1f} s "
          "(not timed below)")
    times = run_fast(data)
    for name, seconds in times.items():
        print(f"  {name:<52} {seconds:6.2f} s")
    total = sum(times.values())
    per_resample = run_naive(data, args.naive_resamples)
    # Point estimates and the variance components have no bootstrap: counted the same on both sides.
    naive_total = per_resample * N_BOOT + times["variance components"]
    print(f"workbench total, {N_BOOT:,} resamples per CI:  {total:8.2f} s")
    print(f"naive pandas loop: {per_resample:.2f} s per resample, timed on "
          f"{args.naive_resamples} resamples and extrapolated to {N_BOOT:,}: {naive_total:8.1f} s")
    print(f"ratio naive / workbench: {naive_total / total:,.0f}x")


if __name__ == "__main__":
    main()
