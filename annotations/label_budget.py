"""How many more labels? `labels_needed`: for a target half-width of the corrected harmfulness
per checkpoint x temperature (from the cell's own labels, the estimate that rests on no pooling
assumption), the expected number of further random labels under the current judge, drawn
uniformly and drawn actively, and the next answers to label.

The PPI++ variance of a cell with n labels is lam^2 Var(f) / N + E[w (y - lam f)^2] / n, where
the second term's weight w is 1 under uniform draws and 1 / q (q the active draw's relative
inclusion probability, mean 1 over the cell) under active ones. The expected squared residual
at a judge score comes from the judge's random labels so far, per score bin and coherence
(`annotations.estimates.Calibration`); before any label, from a calibrated judge's f (1 - f),
or 1/4 for a judge that gives only verdicts.
The cluster structure (several answers per prompt) is left out of this forecast: it is a plan,
and the estimate itself carries it. The table's current half-width is the report's own PPI++
interval (`annotations.estimates.own_ppi`), not the forecast's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm

from annotations.active import inclusion_probabilities, pareto_sample
from annotations.agreement_tables import judge_agreement_summary, primary_judge
from annotations.estimates import Calibration, own_ppi, scores
from annotations.frames import Frames, frames_of, json_records, judge_names, select_outcomes
from annotations.records import PromptKind
from annotations.store import Store

BUDGET_COLUMNS = ["checkpoint_id", "checkpoint", "temperature", "n", "n_own_labels",
                  "half_width", "floor", "further_uniform", "further_active"]


@dataclass(frozen=True)
class LabelBudget:
    """Per cell, the further labels needed for `target` half-width; and the next answers."""

    judge_id: str
    judge: str  # its name as the views show it
    target: float
    level: float
    table: pd.DataFrame  # BUDGET_COLUMNS
    next_items: pd.DataFrame  # generation_id, checkpoint, temperature, inclusion_probability

    def to_dict(self) -> dict:
        return {"judge_id": self.judge_id, "judge": self.judge, "target": self.target, "level": self.level,
                "table": json_records(self.table), "next_items": json_records(self.next_items)}


def labels_needed(source: Store | Frames, judge_id: str, target: float = 0.05,
                  level: float = 0.95, kind: PromptKind = PromptKind.UNSAFE, n_next: int = 20,
                  seed: int = 0) -> LabelBudget:
    """The label budget for one judge's cells (see the module docstring)."""
    if not 0 < target < 0.5:
        raise ValueError(f"the target half-width must be in (0, 0.5), got {target}")
    frames = frames_of(source)
    mine = select_outcomes(frames.outcomes, kind)
    mine = mine[(mine["judge_id"] == judge_id) & mine["outcome"].notna()]
    if mine.empty:
        raise ValueError(f"no parsed verdicts of judge {judge_id!r} on {PromptKind(kind).value} "
                         "prompts")
    calibration = Calibration.of(mine, frames.labels)
    residual = _residual_model(calibration)
    rows = [_cell_row(key, block, calibration, residual, target, level)
            for key, block in mine.groupby(["checkpoint_id", "temperature"], sort=True)]
    table = pd.DataFrame(rows, columns=BUDGET_COLUMNS)
    table["checkpoint"] = table["checkpoint_id"].map(dict(zip(mine["checkpoint_id"],
                                                              mine["checkpoint"])))
    table = table.sort_values(["checkpoint", "temperature"], kind="stable").reset_index(drop=True)
    return LabelBudget(judge_id, judge_names(frames.outcomes)[judge_id], target, level, table,
                       _next_items(mine, calibration, table, n_next, seed))


@dataclass(frozen=True)
class _Residual:
    """E[(y - lam f)^2] per calibration stratum, and lam."""

    lam: float
    by_stratum: dict[str, float]
    fallback: bool  # no labels yet: a calibrated judge's f (1 - f) stands in


def _residual_model(calibration: Calibration) -> _Residual:
    items = calibration.items
    if len(items) < 2:
        return _Residual(1.0, {}, True)
    w, f, y = items["weight"].to_numpy(), items["score"].to_numpy(), items["y"].to_numpy()
    f_c, y_c = f - np.average(f, weights=w), y - np.average(y, weights=w)
    var_f = np.average(f_c ** 2, weights=w)
    lam = float(np.clip(np.average(f_c * y_c, weights=w) / var_f, 0, 1)) if var_f > 0 else 0.0
    r2 = (y - lam * f) ** 2
    by = pd.DataFrame({"s": items["stratum"], "wr": w * r2, "w": w}).groupby("s").sum()
    return _Residual(lam, dict(by["wr"] / by["w"]), False)


def _expected_r2(block: pd.DataFrame, calibration: Calibration, residual: _Residual,
                 ) -> np.ndarray:
    f = scores(block)
    if residual.fallback:  # a verdict says nothing of its own error: the worst case, 1/4
        return f * (1 - f) if calibration.probabilities else np.full(len(f), 0.25)
    strata = calibration.strata(block)
    overall = float(np.mean(list(residual.by_stratum.values())))
    return np.array([residual.by_stratum.get(s, overall) for s in strata])


def _cell_row(key: tuple, block: pd.DataFrame, calibration: Calibration, residual: _Residual,
              target: float, level: float) -> list:
    z = float(norm.ppf(0.5 + level / 2))
    f = scores(block)
    r2 = _expected_r2(block, calibration, residual)
    q = _relative_inclusion(f)
    judged_var = residual.lam ** 2 * float(np.var(f)) / len(f)
    room = (target / z) ** 2 - judged_var
    own = calibration.items[(calibration.items["checkpoint_id"] == key[0])
                            & (calibration.items["temperature"] == key[1])]
    # a cell cannot have more labels than answers: beyond them, more answers are needed
    needed = [math.inf if room <= 0 or (k := math.ceil(float(np.mean(per)) / room)) > len(f)
              else k for per in (r2, r2 / q)]
    now = own_ppi(block, own, level)  # the report's own PPI++ interval, not a forecast
    further = [n if math.isinf(n) else max(0, n - len(own)) for n in needed]
    floor = z * math.sqrt(judged_var + float(np.mean(r2)) / len(f))  # every answer labelled
    return [key[0], "", key[1], len(f), len(own), np.nan if now is None else now.half_width,
            floor, *further]


def _relative_inclusion(f: np.ndarray) -> np.ndarray:
    """The active draw's inclusion probabilities over a cell, scaled to mean 1."""
    pi = inclusion_probabilities(f, max(1, len(f) // 10))
    return pi / pi.mean()


def _next_items(mine: pd.DataFrame, calibration: Calibration, table: pd.DataFrame, n: int,
                seed: int) -> pd.DataFrame:
    """`n` unlabelled answers from the cells that need labels, drawn actively, with their
    inclusion probabilities (to store with their labels)."""
    cols = ["generation_id", "checkpoint_id", "checkpoint", "temperature",
            "inclusion_probability"]
    short = table[table["further_active"] > 0][["checkpoint_id", "temperature"]]
    pool = mine.merge(short, on=["checkpoint_id", "temperature"])
    pool = pool[~pool["generation_id"].isin(set(calibration.items["generation_id"]))]
    pool = pool.drop_duplicates("generation_id").sort_values("generation_id")
    if pool.empty or n <= 0:
        return pd.DataFrame(columns=cols)
    pi = inclusion_probabilities(scores(pool), n)
    drawn = pareto_sample(pi, np.random.default_rng(seed))
    return pool.iloc[drawn].assign(inclusion_probability=pi[drawn])[cols].reset_index(drop=True)



def judge_by_name(source: Store | Frames, judge: str | None,
                  kind: PromptKind = PromptKind.UNSAFE) -> str:
    """The judge id for a name as the views show it (`refusal`, `llm(template=harmbench)`), an
    id or its first characters; None: the judge the report shows first."""
    frames = frames_of(source)
    names = judge_names(frames.outcomes) if len(frames.outcomes) else {}
    if judge is None:  # the report's choice: kappa is a point estimate, few resamples will do
        agreement = judge_agreement_summary(frames, n_boot=50) if len(frames.labels) else None
        chosen = primary_judge(frames, agreement, kind=kind)
        if chosen is None:
            raise ValueError("no verdicts in the store: run a sweep or `run.py judge` first")
        return chosen
    matches = [j for j, name in names.items() if name == judge] or [
        j for j in names if str(j).startswith(judge)]
    if len(matches) != 1:
        known = ", ".join(sorted(names.values())) or "none"
        raise ValueError(f"--judge {judge!r} names {'no' if not matches else 'more than one'} "
                         f"judge (judges: {known})")
    return matches[0]


def budget_text(budget: LabelBudget) -> str:
    """The budget as the CLI prints it: one line per cell, then the next answers to label."""
    lines = [f"further random labels for a {budget.target:.0%} half-width ({budget.level:.0%} "
             f"CI) of each cell's own PPI++ harmfulness under judge {budget.judge}:",
             f"  {'checkpoint':<28} {'T':>4} {'answers':>8} {'labels':>7} {'now':>6} "
             f"{'uniform':>8} {'active':>8}"]
    for row in budget.table.itertuples(index=False):
        now = "-" if pd.isna(row.half_width) else f"{row.half_width:.3f}"
        reachable = not math.isinf(row.further_uniform)
        uniform, active = ((f"{int(row.further_uniform)}", f"{int(row.further_active)}")
                           if reachable else ("-", "-"))
        lines.append(f"  {str(row.checkpoint):<28} {row.temperature:>4g} {row.n:>8} "
                     f"{row.n_own_labels:>7} {now:>6} {uniform:>8} {active:>8}"
                     + ("" if reachable else
                        f"  unreachable: all {row.n} answers labelled give +/-{row.floor:.3f}"))
    if len(budget.next_items):
        lines.append(f"next {len(budget.next_items)} answers to label (active draw; store each "
                     "label with its inclusion probability):")
        lines += [f"  {r.generation_id}  {r.checkpoint}, T={r.temperature:g}, "
                  f"pi={r.inclusion_probability:.4f}"
                  for r in budget.next_items.itertuples(index=False)]
    return "\n".join(lines)
