"""The Validate tab's charts, drawn with matplotlib from tool.board's frames (every number is
annotations/'s): rates with their CIs as error bars, one small panel per temperature, integer
epochs. Estimates from fewer than MIN_ITEMS items are drawn hollow and labelled "too few".
Figures are images: no text in them is ever rendered as markup.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from annotations.report_plots import new_figure, short, style


def _errors(frame: pd.DataFrame, value: str, low: str, high: str) -> np.ndarray:
    v = frame[value].to_numpy(dtype=float)
    return np.vstack([v - frame[low].to_numpy(dtype=float), frame[high].to_numpy(dtype=float) - v])


def kappa_figure(judges: pd.DataFrame, alpha: dict):
    """Each judge's kappa against people with its CI, beside the people's own alpha band."""
    with style():
        fig, axes = new_figure(1, width=6.0, height=max(1.8, 0.5 * len(judges) + 1.2))
        ax = axes[0][0]
        shown = judges.dropna(subset=["kappa"])
        y = np.arange(len(shown))
        if len(shown):
            ax.errorbar(shown["kappa"], y, xerr=_errors(shown, "kappa", "kappa_ci_low",
                                                         "kappa_ci_high"),
                        fmt="o", capsize=3, label="judge vs people (kappa)")
        if pd.notna(alpha.get("alpha")):
            ax.axvspan(alpha["ci_low"], alpha["ci_high"], alpha=0.15, color="green")
            ax.axvline(alpha["alpha"], color="green", label="people vs people (alpha)")
        ax.set_yticks(y, [f"{short(j, 30)} (n={n})" for j, n in zip(shown["judge"], shown["n"])])
        ax.set_xlim(-1, 1)
        ax.set_xlabel("agreement (95% CI)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="lower left", fontsize=7)
    return fig


def harm_figure(harm: pd.DataFrame):
    """Raw and corrected harmfulness per checkpoint with CIs, one panel per temperature."""
    temperatures = sorted(harm["temperature"].unique()) if len(harm) else [0.0]
    with style():
        fig, axes = new_figure(len(temperatures), width=4.2, height=3.2)
        for ax, temperature in zip(axes[0], temperatures):
            part = harm[harm["temperature"] == temperature].reset_index(drop=True)
            x = np.arange(len(part))
            for shift, (value, low, high, name) in zip((-0.12, 0.12), (
                    ("harmfulness", "ci_low", "ci_high", "raw"),
                    ("corrected", "corrected_ci_low", "corrected_ci_high", "corrected"))):
                ok = part[value].notna()
                if ok.any():
                    ax.errorbar(x[ok] + shift, part.loc[ok, value],
                                yerr=_errors(part[ok], value, low, high), fmt="o", capsize=3,
                                label=name, mfc="none" if part["too_few"].any() else None)
            ax.set_xticks(x, [short(c, 18) for c in part["checkpoint"]], rotation=30, ha="right")
            ax.set_ylim(-0.02, 1.02)
            ax.set_title(f"T = {temperature:g}")
        axes[0][0].set_ylabel("harmfulness (95% CI)")
        if axes[0][0].get_legend_handles_labels()[0]:
            axes[0][0].legend(fontsize=7)
    return fig


def epoch_figure(lines: pd.DataFrame):
    """Harmfulness against epoch, one panel per temperature, one line per seed (raw solid,
    corrected dashed), integer epochs, the legend beside the panels."""
    temperatures = sorted(lines["temperature"].unique()) if len(lines) else [0.0]
    with style():
        fig, axes = new_figure(len(temperatures), width=3.8, height=3.0)
        for ax, temperature in zip(axes[0], temperatures):
            part = lines[lines["temperature"] == temperature]
            for (seed, kind), line in part.groupby(["seed", "kind"], sort=True):
                ax.plot(line["epoch"], line["harmfulness"], marker="o",
                        linestyle="--" if kind == "corrected" else "-",
                        label=f"seed {int(seed)} {kind}")
            epochs = sorted(part["epoch"].unique())
            ax.set_xticks(epochs, [str(int(e)) for e in epochs])
            ax.set_ylim(-0.02, 1.02)
            ax.set_xlabel("epoch")
            ax.set_title(f"T = {temperature:g}")
        axes[0][0].set_ylabel("harmfulness")
        handles, labels = axes[0][0].get_legend_handles_labels()
        if handles:
            fig.legend(handles, labels, loc="outside right upper", fontsize=7)
    return fig


def variance_figure(variance: pd.DataFrame):
    """Each component's share of the spread."""
    with style():
        fig, axes = new_figure(1, width=5.0, height=2.6)
        ax = axes[0][0]
        shown = variance.dropna(subset=["share"]) if len(variance) else variance
        if len(shown):
            ax.barh(shown["component"], shown["share"])
        ax.set_xlim(0, 1)
        ax.set_xlabel("share of the variance")
    return fig


def win_figure(table: pd.DataFrame):
    """The Compare tab's win rates: how often each checkpoint's answer was judged safer."""
    with style():
        fig, axes = new_figure(1, width=5.5, height=max(1.8, 0.45 * len(table) + 1.0))
        ax = axes[0][0]
        shown = table.dropna(subset=["safer_rate"]).reset_index(drop=True)
        if len(shown):
            ax.errorbar(shown["safer_rate"], np.arange(len(shown)),
                        xerr=_errors(shown, "safer_rate", "ci_low", "ci_high"), fmt="o",
                        capsize=3)
        ax.set_yticks(np.arange(len(shown)), [f"{short(c, 24)} (n={n})" for c, n in
                                              zip(shown["checkpoint"], shown["votes"])])
        ax.set_xlim(0, 1)
        ax.set_xlabel("share of decided votes judged safer (95% CI)")
    return fig
