"""Benchmark: corrected harmfulness by every method for a sweep of 1,000,000 verdicts and 5,000
human labels, with intervals, through the function the report, the app and the CLI call.

Run: .venv/bin/python benchmarks/bench_ppi.py [--naive-resamples 3] [--json PATH] [--smoke]

Layout (synthetic, seeded): 10 seeds x 5 epochs x 2 temperatures = 100 checkpoint x temperature
cells, each 5,000 prompts x 2 samples = 1,000,000 answers, judged by a judge that gives
P(complies); one answer in ten is incoherent (flagged degenerate), where the judge is much worse.
5,000 answers (50 per cell) are labelled by one person each, drawn at random.

Timed: `annotations.harm.harmfulness_report` with 1,000 resamples: raw harmfulness with its
prompt-bootstrap CI, Rogan-Gladen with its bootstrap CI, PPI++ on each cell's own labels and on
pooled ones (stratified by coherence x judge-score bin, clustered by prompt), and the labels
alone, per cell; then the PPI++ estimates alone (`cell_estimates` per cell). Building the
frames from the synthetic rows is timed apart (a store read pays it once).

Beside it, in the same process: (1) ppi-python's `ppi_mean_ci` per cell, the method's authors'
analytic PPI++ on the same numbers, without clusters or strata (a reference, not a baseline to
beat); (2) the naive way to get a clustered PPI++ interval: a pandas loop that, per resample,
draws prompts with replacement, merges them back onto the verdicts and the labels, and
recomputes the tuned PPI++ estimate for every cell; timed on a few resamples and extrapolated
to 1,000.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from ppi_py import ppi_mean_ci

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout
from annotations.estimates import Calibration, Method, cell_estimates
from annotations.frames import Frames
from annotations.harm import harmfulness_report

N_BOOT = 1000
CELL = ["seed", "epoch", "temperature"]
REPORT = "harmfulness_report: raw, Rogan-Gladen, PPI++ own and pooled, labels alone"
ESTIMATES = "PPI++ own and pooled and labels alone only (cell_estimates)"


def make_frames(seed: int = 0, n_seeds: int = 10, n_epochs: int = 5, n_prompts: int = 5000,
                n_samples: int = 2, n_labelled: int = 5000) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Outcomes (1M rows, the store's columns) and 5,000 random labels."""
    rng = np.random.default_rng(seed)
    levels = [range(n_seeds), range(n_epochs), [0.0, 0.7], range(n_prompts), range(n_samples)]
    frame = pd.MultiIndex.from_product(levels, names=[*CELL, "prompt", "sample"]).to_frame(
        index=False)
    n = len(frame)
    logit = (rng.normal(-1, 1.5, n_prompts)[frame["prompt"]] + 0.3 * frame["epoch"]
             + rng.normal(0, 0.2, n_seeds)[frame["seed"]] + 0.5 * frame["temperature"])
    truth_p = 1 / (1 + np.exp(-logit.to_numpy()))
    truth = rng.random(n) < truth_p
    incoherent = rng.random(n) < 0.1
    # informative probability on coherent answers; close to a coin on incoherent ones
    sharp = np.clip(truth_p + np.where(truth, 0.25, -0.25) + rng.normal(0, 0.1, n), 0.01, 0.99)
    probability = np.where(incoherent, rng.uniform(0.3, 0.7, n), sharp)
    checkpoint = frame["seed"].astype(str) + "-" + frame["epoch"].astype(str)
    ids = np.char.add("g", np.arange(n).astype(str))
    outcomes = pd.DataFrame({
        "generation_id": ids, "judge_id": "j", "judge_name": "llm",
        "outcome": (probability > 0.5).astype(float), "probability": probability,
        "checkpoint_id": checkpoint, "prompt_id": np.char.add("p", frame["prompt"].astype(str)),
        "temperature": frame["temperature"], "sample_index": frame["sample"],
        "degenerate": incoherent, "empty": False, "base_model": "m", "run_id": "r",
        "epoch": frame["epoch"], "checkpoint_kind": "finetuned", "import_source": None,
        "seed": frame["seed"], "dataset": "d", "benchmark": "sim", "kind": "unsafe",
        "category_id": "1", "category": "c1"})
    n_cells = n_seeds * n_epochs * 2  # the grid's rows run cell by cell
    per_cell = n // n_cells
    drawn = np.concatenate([c * per_cell + rng.choice(per_cell, n_labelled // n_cells,
                                                      replace=False) for c in range(n_cells)])
    labels = pd.DataFrame({"generation_id": ids[drawn], "annotator": "a",
                           "label": np.where(truth[drawn], "complies", "refuses"),
                           "chosen_at_random": True,
                           "inclusion_probability": len(drawn) / n})
    return outcomes, labels


def _lap(start: float) -> float:
    return time.perf_counter() - start


def run_workbench(frames: Frames) -> dict[str, float]:
    times = {}
    start = time.perf_counter()
    report = harmfulness_report(frames, "j", n_boot=N_BOOT)
    times[REPORT] = _lap(start)
    assert len(report.table) == 100 and report.table["corrected"].notna().all()
    assert set(report.table["method"]) == {Method.PPI_OWN.value}
    start = time.perf_counter()
    calibration = Calibration.of(frames.outcomes, frames.labels)
    own = dict(list(calibration.items.groupby(["checkpoint_id", "temperature"])))
    for key, block in frames.outcomes.groupby(["checkpoint_id", "temperature"]):
        cell_estimates(block, calibration, own[key], 0.95)
    times[ESTIMATES] = _lap(start)
    widths = (report.table["corrected_ci_high"] - report.table["corrected_ci_low"]).mean()
    rg = (report.table["rogan_gladen_ci_high"] - report.table["rogan_gladen_ci_low"]).mean()
    alone = (report.table["labels_only_ci_high"] - report.table["labels_only_ci_low"]).mean()
    print(f"mean interval width: PPI++ own {widths:.3f}, Rogan-Gladen {rg:.3f}, "
          f"labels alone {alone:.3f}")
    return times


def _cells(frames: Frames) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, pd.DataFrame,
                                         pd.DataFrame]]:
    labelled = frames.labels.assign(y=frames.labels["label"].eq("complies").astype(float))
    both = frames.outcomes.merge(labelled[["generation_id", "y"]], on="generation_id",
                                 how="left")
    out = []
    for _, block in both.groupby(["checkpoint_id", "temperature"]):
        mine = block[block["y"].notna()]
        out.append((mine["y"].to_numpy(), mine["probability"].to_numpy(),
                    block["probability"].to_numpy(), block, mine))
    return out


def run_ppi_py(cells) -> float:
    start = time.perf_counter()
    for y, yhat, yhat_u, _, _ in cells:
        ppi_mean_ci(y, yhat, yhat_u, alpha=0.05)
    return _lap(start)


def _tuned(y: np.ndarray, f_l: np.ndarray, f_u: np.ndarray) -> float:
    """PPI++ point estimate with the power-tuned lambda (unweighted, unstratified)."""
    n, big_n = len(y), len(f_u)
    cov = np.cov(y, f_l)[0, 1]
    var = np.var(f_l, ddof=1)
    lam = 0.0 if var == 0 else np.clip(cov / ((1 + n / big_n) * var), 0, 1)
    return float(lam * f_u.mean() + (y - lam * f_l).mean())


def run_naive(cells, n_resamples: int) -> float:
    """Seconds per resample of a pandas bootstrap of clustered PPI++ over every cell."""
    rng = np.random.default_rng(1)
    start = time.perf_counter()
    for _ in range(n_resamples):
        for _, _, _, block, mine in cells:
            prompts = pd.DataFrame({"prompt_id": rng.choice(block["prompt_id"].unique(),
                                                            block["prompt_id"].nunique())})
            judged = prompts.merge(block[["prompt_id", "probability"]], on="prompt_id")
            labelled = prompts.drop_duplicates().merge(mine[["prompt_id", "probability", "y"]],
                                                       on="prompt_id")
            if len(labelled) > 2:
                _tuned(labelled["y"].to_numpy(), labelled["probability"].to_numpy(),
                       judged["probability"].to_numpy())
    return _lap(start) / n_resamples


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--naive-resamples", type=int, default=3,
                        help="resamples to time the naive loop on")
    parser.add_argument("--smoke", action="store_true",
                        help="100 answers per cell (10,000 verdicts), 3,000 labels: seconds, "
                             "to check the script, not for figures")
    parser.add_argument("--json", metavar="PATH", help="append the results as one JSON line")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    outcomes, labels = (make_frames(n_prompts=100, n_samples=1, n_labelled=3000) if args.smoke
                        else make_frames())
    print(f"data: {len(outcomes):,} verdicts, {len(labels):,} labels, "
          f"{outcomes.groupby(['checkpoint_id', 'temperature']).ngroups} cells, "
          f"built in {_lap(start):.1f} s (not timed)")
    start = time.perf_counter()
    frames = Frames(outcomes, labels)
    frames_s = _lap(start)
    print(f"  frames (the store read's post-processing), once{'':<27} {frames_s:6.2f} s")
    times = run_workbench(frames)
    for name, seconds in times.items():
        print(f"  {name:<74} {seconds:6.2f} s")
    cells = _cells(frames)
    reference = run_ppi_py(cells)
    print(f"  {'ppi-python ppi_mean_ci per cell (no clusters, no strata, reference)':<74} "
          f"{reference:6.2f} s")
    per_resample = run_naive(cells, args.naive_resamples)
    naive = per_resample * N_BOOT
    report_s, ppi_s = times[REPORT], times[ESTIMATES]
    print(f"naive pandas bootstrap of clustered PPI++: {per_resample:.2f} s per resample, timed "
          f"on {args.naive_resamples} and extrapolated to {N_BOOT:,}: {naive:8.1f} s")
    result = {"benchmark": "ppi", "smoke": args.smoke, "verdicts": len(outcomes),
              "labels": len(labels), "frames_s": frames_s, "report_s": report_s,
              "estimates_s": ppi_s, "ppi_python_s": reference, "naive_s": naive,
              "ratio": naive / ppi_s}
    print(f"whole report {report_s:.2f} s (target: under 10 s on 2 cores); ratio naive / "
          f"workbench PPI estimates: {result['ratio']:,.0f}x")
    line = json.dumps(result)
    if args.json:
        with open(args.json, "a") as out:
            out.write(line + "\n")
    print(line)
    return result


if __name__ == "__main__":
    main()
