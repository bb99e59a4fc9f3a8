"""Where the spread in harmfulness comes from: seed, epoch, temperature, prompt, sampling, judge.

`variance_components` splits the variance of a judged 0/1 outcome into the parts due to each
factor of the experiment, in percentage points and as shares; `seed_spread` shows how far apart
the fine-tuning seeds land at each epoch and temperature, and whether each seed's harmfulness rose
above the base model's (epoch 0), with a paired bootstrap over prompts.

Both read a frame with one row per verdict and columns seed, epoch, temperature, sample, prompt,
outcome (0/1); `variance_components` also uses human (0/1, nan where unlabelled) and judge.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from statsmodels.stats.anova import anova_lm

from annotations.bootstrap import Seed, make_rng, percentile_ci, resample_totals

FACTORS = ("seed", "epoch", "temperature")
REQUIRED = (*FACTORS, "sample", "prompt", "outcome")


@dataclass(frozen=True)
class VarianceComponents:
    """Variance of one verdict split by source; `table`: component, variance, sd_pp, share."""

    table: pd.DataFrame
    n_rows: int
    n_prompts: int
    n_conditions: int
    note: str

    def to_frame(self) -> pd.DataFrame:
        return self.table.copy()

    def to_dict(self) -> dict[str, object]:
        return {"components": self.table.to_dict(orient="records"), "n_rows": self.n_rows,
                "n_prompts": self.n_prompts, "n_conditions": self.n_conditions, "note": self.note}


@dataclass(frozen=True)
class SeedSpread:
    """`by_condition`: spread across seeds per epoch x temperature; `vs_base`: seeds vs epoch 0."""

    by_condition: pd.DataFrame
    vs_base: pd.DataFrame

    def to_dict(self) -> dict[str, list[dict[str, object]]]:
        return {"by_condition": self.by_condition.to_dict(orient="records"),
                "vs_base": self.vs_base.to_dict(orient="records")}


def _check(frame: pd.DataFrame) -> None:
    missing = set(REQUIRED) - set(frame.columns)
    if missing:
        raise ValueError(f"frame lacks columns {sorted(missing)}")
    if frame.empty:
        raise ValueError("frame has no rows")
    if not frame["outcome"].isin([0, 1]).all():
        raise ValueError("outcome must hold only 0 and 1 (drop unparseable verdicts first)")


def _cell_table(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per (condition, prompt) cell: mean, within-cell variance and count; and the means as a
    conditions x prompts table, which must be complete for the balanced formulas."""
    by_cell = frame.groupby([*FACTORS, "prompt"], observed=True)["outcome"]
    cells = by_cell.agg(["mean", "var", "count"])
    table = cells["mean"].unstack("prompt")
    n_grid = np.prod([frame[f].nunique() for f in FACTORS])
    if table.isna().any().any() or len(table) != n_grid:
        raise ValueError("variance_components needs every prompt answered under every seed x "
                         "epoch x temperature (a complete grid); subset the frame, e.g. repeat "
                         "the base model under each seed or drop epoch 0")
    return cells, table


def _sampling_variance(cells: pd.DataFrame) -> float:
    """Pooled within-cell variance of the outcome: repeated draws of a prompt on a checkpoint."""
    replicated = cells[cells["count"] >= 2]
    if replicated.empty:
        return np.nan
    dof = replicated["count"] - 1
    return float((dof * replicated["var"]).sum() / dof.sum())


def _prompt_anova(table: np.ndarray) -> tuple[float, float]:
    """Mean squares of prompts and of prompt x condition (two-way layout, one value per cell)."""
    n_cond, n_prompt = table.shape
    grand = table.mean()
    ss_prompt = n_cond * ((table.mean(axis=0) - grand) ** 2).sum()
    resid = table - table.mean(axis=1, keepdims=True) - table.mean(axis=0, keepdims=True) + grand
    ms_prompt = ss_prompt / (n_prompt - 1) if n_prompt > 1 else np.nan
    df_int = (n_cond - 1) * (n_prompt - 1)
    return ms_prompt, float((resid ** 2).sum() / df_int) if df_int else np.nan


def _condition_anova(rates: pd.DataFrame) -> tuple[dict[str, float], float]:
    """Variance components of seed, epoch and temperature from the condition means (statsmodels
    OLS + ANOVA; expected mean squares of a balanced crossed main-effects model), and the
    residual mean square (interactions of the three plus prompt/sampling noise)."""
    varied = [f for f in FACTORS if rates[f].nunique() > 1]
    formula = "rate ~ " + (" + ".join(f"C({f})" for f in varied) if varied else "1")
    fit = smf.ols(formula, data=rates).fit()
    ms_resid = float(fit.mse_resid) if fit.df_resid > 0 else np.nan
    if not varied:
        return {f: np.nan for f in FACTORS}, ms_resid
    anova = anova_lm(fit, typ=1)
    components = {f: np.nan for f in FACTORS}
    for f in varied:
        per_level = len(rates) / rates[f].nunique()  # condition means behind one level's mean
        components[f] = max((float(anova.loc[f"C({f})", "mean_sq"]) - ms_resid) / per_level, 0.0)
    return components, ms_resid


def _judge_error(frame: pd.DataFrame) -> float:
    """Variance of (judge - human) over rows with a human label; nan without human labels."""
    if "human" not in frame.columns:
        return np.nan
    labelled = frame[frame["human"].notna()]
    if len(labelled) < 2:
        return np.nan
    verdict = labelled["judge"] if "judge" in labelled.columns else labelled["outcome"]
    return float((verdict.astype(float) - labelled["human"].astype(float)).var())


def variance_components(frame: pd.DataFrame) -> VarianceComponents:
    """Variance components of harmfulness, in percentage points and as shares of the total.

    Model (method of moments on a balanced crossed design, for a single 0/1 verdict):

        y = mu + seed + epoch + temperature + (their interactions) + prompt
              + (prompt x condition) + sampling draw,

    where a condition is one seed x epoch x temperature. Three steps, all on aggregates:
    1. sampling: the pooled within-cell variance of y over repeated samples of one prompt on one
       condition (nan when every cell has one sample);
    2. prompt and prompt x condition: a two-way ANOVA of the cell means (conditions x prompts);
       prompt = (MS_prompt - MS_interaction) / n_conditions, and prompt x condition =
       MS_interaction - sampling * mean(1 / samples per cell);
    3. seed, epoch, temperature: statsmodels OLS + anova_lm on the condition means (harmfulness per
       checkpoint and temperature), component = (MS_factor - MS_residual) / conditions per level;
       what the three leave over, net of prompt-level noise, is "condition interactions".
    Negative moment estimates are set to 0. Aggregating first keeps it fast (a prompt dummy per
    prompt would not fit in memory for 10,000 prompts) and gives the exact ANOVA of the balanced
    design. The grid must be complete (every prompt under every condition).

    Judge error is var(judge - human) over rows with a human label (`judge` column if present,
    else `outcome` is the judge's verdict). A verdict-level judge error shows up within cells, so
    it is taken out of the sampling component (floored at 0); this assumes the judge's errors are
    independent across samples, an approximation.

    Epoch and temperature are designed, fixed factors; their "variance" is that of their level
    effects (divisor levels - 1), the usual random-effects reading. sd_pp = 100 * sqrt(variance):
    the standard deviation of the harmfulness rate between levels, in percentage points.
    """
    _check(frame)
    cells, table = _cell_table(frame)
    sampling = _sampling_variance(cells)
    inv_k = float((1 / cells["count"]).mean())
    ms_prompt, ms_int = _prompt_anova(table.to_numpy())
    rates = table.mean(axis=1).rename("rate").reset_index()
    checkpoint, ms_resid = _condition_anova(rates)
    noise = 0.0 if np.isnan(sampling) else sampling * inv_k
    judge = _judge_error(frame)
    variances = {
        **checkpoint,
        "condition interactions": max(ms_resid - ms_int / table.shape[1], 0.0),
        "prompt": max((ms_prompt - ms_int) / len(table), 0.0),
        "prompt x condition": max(ms_int - noise, 0.0),
        "sampling": sampling if np.isnan(judge) else max(sampling - judge, 0.0),
        "judge error": judge,
    }
    note = ("one sample per cell: sampling is counted in prompt x condition"
            if np.isnan(sampling) else "")
    return VarianceComponents(_components_table(variances), len(frame), table.shape[1], len(table),
                              note)


def _components_table(variances: dict[str, float]) -> pd.DataFrame:
    table = pd.DataFrame({"component": list(variances), "variance": list(variances.values())})
    table["sd_pp"] = 100 * np.sqrt(table["variance"])
    table["share"] = table["variance"] / table["variance"].sum()  # nan (not estimable) rows skipped
    return table


# --- seeds -----------------------------------------------------------------------------------


def _by_condition(frame: pd.DataFrame) -> pd.DataFrame:
    rates = frame.groupby(list(FACTORS), observed=True)["outcome"].mean()
    by_condition = rates.groupby(["epoch", "temperature"], observed=True)
    spread = by_condition.agg(["min", "max", "mean", "std", "count"])
    return spread.rename(columns={"std": "sd", "count": "n_seeds"}).reset_index()


def _prompt_counts(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (seed, temperature, prompt): complied count and sample count at each epoch (columns)."""
    cells = frame.groupby([*FACTORS, "prompt"], observed=True)["outcome"].agg(["sum", "count"])
    return cells.unstack("epoch")


def _base_counts(frame: pd.DataFrame, wide: pd.DataFrame, base_epoch: object) -> pd.DataFrame:
    """Base-model counts per (seed, temperature, prompt): the seed's own epoch-0 rows where it has
    them, else the epoch-0 rows of all seeds pooled at that temperature."""
    own = wide.xs(base_epoch, axis=1, level="epoch")
    base_rows = frame[frame["epoch"] == base_epoch]
    by_prompt = base_rows.groupby(["temperature", "prompt"], observed=True)["outcome"]
    pooled = by_prompt.agg(["sum", "count"])
    keys = own.index.droplevel("seed")
    fallback = pooled.reindex(keys).set_axis(own.index)
    missing = own["count"].isna().to_numpy()
    own = own.copy()
    own.loc[missing] = fallback.loc[missing].to_numpy()
    return own


def seed_spread(frame: pd.DataFrame, n_boot: int = 1000, level: float = 0.95,
                seed: Seed = 0) -> SeedSpread:
    """Spread of harmfulness across seeds, and each seed's change from the base model.

    `by_condition`: per epoch x temperature, min, max, mean and SD of harmfulness across seeds.
    `vs_base`: per seed x epoch (> base) x temperature, harmfulness minus the base model's (epoch 0,
    or the smallest epoch present) on the same prompts, with a paired bootstrap CI resampling
    prompts (both conditions' samples of a prompt move together); `rose` says the point estimate is
    above the base, `significant` that the CI excludes 0.
    """
    _check(frame)
    base_epoch = frame["epoch"].min()
    wide = _prompt_counts(frame)
    base = _base_counts(frame, wide, base_epoch)
    rng, rows = make_rng(seed), []
    for epoch in sorted(e for e in frame["epoch"].unique() if e != base_epoch):
        tuned = wide.xs(epoch, axis=1, level="epoch")
        paired = pd.concat([tuned, base], axis=1, keys=["t", "b"]).dropna()
        for (run_seed, temperature), block in paired.groupby(level=["seed", "temperature"]):
            boot = resample_totals(block.to_numpy(dtype=float), n_boot, rng)
            paired_row = paired_difference(block.to_numpy(dtype=float), boot, level)
            rows.append((run_seed, epoch, temperature, *paired_row))
    columns = ["seed", "epoch", "temperature", "harmfulness", "base", "difference", "ci_low",
               "ci_high", "n_prompts", "rose", "significant"]
    return SeedSpread(_by_condition(frame), pd.DataFrame(rows, columns=columns))


def paired_difference(totals: np.ndarray, boot: np.ndarray, level: float) -> tuple:
    """Tuned rate, base rate, difference, CI, prompts, rose, significant. Columns of `totals` and
    `boot`: tuned complied, tuned count, base complied, base count (per prompt, and as
    `resample_totals` resampled prompts). annotations.contrasts reads any two sets this way."""
    tuned, base = totals[:, 0].sum() / totals[:, 1].sum(), totals[:, 2].sum() / totals[:, 3].sum()
    low, high = percentile_ci(boot[:, 0] / boot[:, 1] - boot[:, 2] / boot[:, 3], level)
    return (tuned, base, tuned - base, float(low), float(high), len(totals), bool(tuned > base),
            bool(low > 0 or high < 0))


def draw_spread(frame: pd.DataFrame) -> pd.DataFrame:
    """Live sampling's spread: rows of (draw, checkpoint, judge, complies 1/0/None, text). Per
    checkpoint and judge: the share judged complying in each draw, its range over draws, the
    last draw's, and the share of distinct answer texts."""
    if frame.empty:
        return pd.DataFrame()
    per_draw = frame.groupby(["checkpoint", "judge", "draw"])["complies"].mean()
    table = per_draw.groupby(["checkpoint", "judge"]).agg(["count", "mean", "min", "max", "last"])
    table.columns = ["draws", "mean complies", "lowest draw", "highest draw", "last draw"]
    distinct = frame.groupby(["checkpoint", "judge"])["text"].agg(lambda s: s.nunique() / len(s))
    return table.assign(**{"distinct answers": distinct}).reset_index()
