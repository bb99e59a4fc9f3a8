"""The report's figures: each builder takes the report's tables and returns a matplotlib Figure,
which `annotations.report_html` embeds in the page as a PNG.

Build them inside `style()`, so that every figure of the page shares its settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from annotations.frames import mid_epoch
from annotations.records import CapabilityMetric

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from annotations.harm import HarmfulnessReport
    from annotations.matched import MatchedReport
    from annotations.sweeps import VarianceReport


def style():
    """The settings every figure of the page is drawn under (a context manager)."""
    from matplotlib import rc_context

    # parse_math off: a `$` in a category or judge name must stay a dollar sign
    return rc_context({"text.parse_math": False, "font.size": 9})


def new_figure(n_cols: int, n_rows: int = 1, width: float = 5.0, height: float = 3.4):
    from matplotlib.figure import Figure  # no pyplot: no global state, safe in a server thread

    fig = Figure(figsize=(width * n_cols, height * n_rows), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    return fig, axes


def short(text: str, width: int = 38) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def _sweep_rows(table: pd.DataFrame, base_model: str, dataset: str) -> pd.DataFrame:
    """One sweep's checkpoints at epoch ends (the lines over epochs), the base among them."""
    mine = table[(table["base_model"].astype(str) == base_model) & ~mid_epoch(table)]
    return mine[(mine["epoch"] == 0) | (mine["dataset"].astype(str) == dataset)]


def _plot_trajectories(ax, rows: pd.DataFrame, value: str, low: str, high: str) -> bool:
    """One line per seed over epochs, each starting at the base model (epoch 0)."""
    base = rows[rows["epoch"] == 0]
    drawn = False
    for run_seed, tuned in rows[rows["epoch"] > 0].groupby("seed"):
        line = pd.concat([base, tuned]).sort_values("epoch")
        line = line[line[value].notna()]
        if line.empty:
            continue
        ax.plot(line["epoch"], line[value], marker="o", label=f"seed {int(run_seed)}")
        ax.fill_between(line["epoch"].astype(float), line[low].astype(float),
                        line[high].astype(float), alpha=0.12)
        drawn = True
    ax.set_ylim(-0.02, 1.02)
    _epoch_axis(ax)
    return drawn


def _epoch_axis(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch (0 = base model)")


def epoch_figure(result: HarmfulnessReport, base_model: str,
                 dataset: str) -> tuple[Figure, bool]:
    """Harmfulness vs epoch, one line per seed and one column per temperature, raw above and
    corrected below; and whether the corrected row is there (no corrected numbers: none)."""
    rows = _sweep_rows(result.table, base_model, dataset)
    temperatures = sorted(rows["temperature"].unique())
    corrected = rows["corrected"].notna().any()
    fig, axes = new_figure(len(temperatures), 2 if corrected else 1, width=4.2, height=3.0)
    for col, temperature in enumerate(temperatures):
        at = rows[rows["temperature"] == temperature]
        _plot_trajectories(axes[0][col], at, "harmfulness", "ci_low", "ci_high")
        axes[0][col].set_title(f"raw, T = {temperature:g}")
        axes[0][col].set_ylabel("harmfulness")
        if corrected:
            _plot_trajectories(axes[1][col], at, "corrected", "corrected_ci_low",
                               "corrected_ci_high")
            axes[1][col].set_title(f"corrected, T = {temperature:g}")
            axes[1][col].set_ylabel("corrected harmfulness")
    axes[0][0].legend(loc="best", fontsize=8)
    fig.suptitle(f"{result.judge}: {base_model} on {dataset}")
    return fig, corrected


def _checkpoint_order(table: pd.DataFrame) -> list[str]:
    keys = table.drop_duplicates("checkpoint_id")
    keys = keys.sort_values(["base_model", "seed", "epoch"], na_position="first")  # base first
    return list(keys["checkpoint_id"])


def category_heatmap(table: pd.DataFrame) -> Figure:
    """Raw harmfulness per category (rows) and checkpoint (columns), one panel per temperature."""
    temperatures = sorted(table["temperature"].unique())
    order = _checkpoint_order(table)
    names = table.drop_duplicates("checkpoint_id").set_index("checkpoint_id")
    several = names["base_model"].nunique() > 1
    labels = [(f"{names.loc[c, 'base_model']}: " if several else "") + names.loc[c, "checkpoint"]
              for c in order]
    cats = table.drop_duplicates("category_id")
    cats = cats.assign(_k=pd.to_numeric(cats["category_id"], errors="coerce")).sort_values(
        ["_k", "category_id"])
    fig, axes = new_figure(len(temperatures), 1, width=max(4.0, 0.45 * len(order) + 3),
                           height=max(2.5, 0.22 * len(cats) + 1.5))
    for ax, temperature in zip(axes[0], temperatures):
        at = table[table["temperature"] == temperature]
        grid = at.pivot_table(index="category_id", columns="checkpoint_id", values="harmfulness")
        grid = grid.reindex(index=list(cats["category_id"]), columns=order)
        image = ax.imshow(grid.to_numpy(dtype=float), vmin=0, vmax=1, cmap="Reds", aspect="auto")
        ax.set_xticks(range(len(order)), labels, rotation=60, ha="right")
        ax.set_yticks(range(len(cats)), [short(f"{i} {n}") for i, n in
                                         zip(cats["category_id"], cats["category"])])
        ax.set_title(f"T = {temperature:g}")
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="harmfulness (raw)")
    return fig


def subsets_figure(table: pd.DataFrame) -> Figure:
    """Harmfulness vs epoch (mean over seeds), one line per category subset, one panel per
    temperature."""
    temperatures = sorted(table["temperature"].unique())
    fig, axes = new_figure(len(temperatures), 1, width=4.2, height=3.0)
    for ax, temperature in zip(axes[0], temperatures):
        for subset, block in table[table["temperature"] == temperature].groupby("subset",
                                                                                sort=False):
            mean = block[~mid_epoch(block)].groupby("epoch")["harmfulness"].mean()
            ax.plot(mean.index, mean.to_numpy(), marker="o", label=subset)
        ax.set_title(f"T = {temperature:g}")
        _epoch_axis(ax)
        ax.set_ylabel("harmfulness, mean over seeds")
        ax.set_ylim(-0.02, 1.02)
    axes[0][0].legend(fontsize=8)
    return fig


def agreement_figure(majority: pd.DataFrame, alpha: pd.DataFrame | None) -> Figure:
    """Each judge's kappa against the people's majority (all, coherent and incoherent answers)
    beside the people's own alpha (the first row of `alpha`, the overall one)."""
    judges = list(dict.fromkeys(majority["judge_name"]))
    fig, axes = new_figure(1, 1, width=7.0, height=0.55 * len(judges) + 1.6)
    ax = axes[0][0]
    offsets = {"all": 0.0, "coherent": -0.22, "incoherent": 0.22}
    for split, offset in offsets.items():
        rows = majority[(majority["coherence"] == split) & majority["kappa"].notna()]
        y = [judges.index(j) + offset for j in rows["judge_name"]]
        errors = [rows["kappa"] - rows["kappa_ci_low"], rows["kappa_ci_high"] - rows["kappa"]]
        ax.errorbar(rows["kappa"], y, xerr=np.clip(np.array(errors, dtype=float), 0, None),
                    fmt="o", capsize=3, label=f"kappa, {split} answers")
    overall = alpha.iloc[0] if alpha is not None and len(alpha) else None
    if overall is not None and pd.notna(overall["alpha"]):
        ax.axvspan(overall["ci_low"], overall["ci_high"], color="grey", alpha=0.2)
        ax.axvline(overall["alpha"], color="black", linestyle="--",
                   label="people's alpha (ceiling)")
    ax.set_yticks(range(len(judges)), [short(j, 30) for j in judges])
    ax.invert_yaxis()
    ax.set_xlim(-0.2, 1.0)
    ax.set_xlabel("agreement with people (kappa; alpha for people among themselves)")
    ax.legend(fontsize=8, loc="lower left")
    return fig


def variance_figure(results: list[VarianceReport]) -> Figure:
    """Each variance component's share, one bar per judge and sweep."""
    fig, axes = new_figure(1, 1, width=7.5, height=3.6)
    ax = axes[0][0]
    components = list(results[0].components.table["component"])
    height = 0.8 / len(results)
    for i, result in enumerate(results):
        shares = result.components.table.set_index("component")["share"].reindex(components)
        ax.barh(np.arange(len(components)) + i * height, shares.fillna(0).to_numpy(), height,
                label=f"{result.judge} ({result.sweep[0]})")
    ax.set_yticks(np.arange(len(components)) + 0.4 - height / 2, components)
    ax.invert_yaxis()
    ax.set_xlabel("share of the variance of one verdict")
    ax.legend(fontsize=8)
    return fig


def _point_name(row: dict) -> str:
    if row["epoch"] == 0:
        return "base"
    step = row.get("step")
    where = f"e{int(row['epoch'])}" if step is None or pd.isna(step) else f"@{int(step)}"
    return f"s{int(row['seed'])}{where}"


def capability_figure(table: pd.DataFrame, metrics: list, rate_cols: list[str]) -> Figure:
    """Harmfulness against each capability metric (at most three), one point per checkpoint and
    temperature."""
    fig, axes = new_figure(min(len(metrics), 3), 1, width=4.4, height=3.4)
    for ax, metric in zip(axes[0], metrics):
        for rate in rate_cols:
            ax.scatter(table[metric], table[rate], label=rate.replace("harmfulness_t", "T = "))
            for row in table.to_dict("records"):
                ax.annotate(_point_name(row), (row[metric], row[rate]), fontsize=7,
                            xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(short(str(metric)))
        ax.set_ylabel("harmfulness (raw)")
        ax.set_ylim(-0.02, 1.02)
    axes[0][0].legend(fontsize=8)
    return fig


def safety_capability_figure(matched: MatchedReport) -> Figure:
    """Harmfulness (raw) against capability, one panel per temperature: each checkpoint a
    point, each run a line from the base model in training order, the region where the goal is
    met shaded (the band starts at the target), each run's goal checkpoint a star. The more
    capable side is on the right (a loss's axis runs from high to low)."""
    points = matched.points
    temperatures = sorted(points["temperature"].unique())
    fig, axes = new_figure(len(temperatures), 1, width=4.6, height=3.6)
    base = points[points["run_id"].isna()]
    goals = set(matched.at_goal.loc[matched.at_goal["reached"].astype(bool), "checkpoint_id"])
    from matplotlib.ticker import FormatStrFormatter, MaxNLocator

    higher = CapabilityMetric(matched.metric).higher_is_better
    for ax, temperature in zip(axes[0], temperatures):
        at_t = points[points["temperature"] == temperature]
        start = base[base["temperature"] == temperature]
        for (dataset, run_seed), run in at_t[at_t["run_id"].notna()].groupby(
                ["dataset", "seed"], sort=True):
            line = pd.concat([start[start["base_model"] == run["base_model"].iloc[0]], run])
            drawn = ax.plot(line["capability"], line["harmfulness"], marker="o", markersize=3,
                            label=short(f"{dataset} seed {int(run_seed)}", 28))
            hit = run[run["checkpoint_id"].isin(goals)]
            ax.scatter(hit["capability"], hit["harmfulness"], marker="*", s=140, zorder=3,
                       color=drawn[0].get_color())
        low, high = ax.get_xlim()
        edge = high if higher else low
        ax.axvspan(min(matched.target, edge), max(matched.target, edge), color="tab:green",
                   alpha=0.10, lw=0)
        ax.axvline(matched.target, color="tab:green", lw=1)
        ax.set_xlim((low, high) if higher else (high, low))  # more capable to the right
        ax.xaxis.set_major_locator(MaxNLocator(4))
        digits = max(0, 1 - int(np.floor(np.log10(max(high - low, 1e-12)))))
        ax.xaxis.set_major_formatter(FormatStrFormatter(f"%.{digits}f"))
        ax.set_title(f"T = {temperature:g}")
        ax.set_xlabel(short(f"{matched.metric} ({matched.benchmark}), better →", 48))
        ax.set_ylabel("harmfulness (raw)")
        ax.set_ylim(-0.02, 1.02)
    axes[0][0].legend(fontsize=7)
    return fig

