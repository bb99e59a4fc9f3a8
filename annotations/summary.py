"""A sweep's headline, as a table and as text: harmfulness per judge x checkpoint x temperature
with its CI, unparseable verdicts counted apart, over-refusal on harmless requests, and
capability beside safety. What `run.py demo` prints when the pipeline is done.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from annotations.correction import harmfulness_table
from annotations.store import Store

KEYS = ["judge_name", "judge_id", "checkpoint_id", "seed", "epoch", "temperature"]


@dataclass(frozen=True)
class SweepSummaryTable:
    safety: pd.DataFrame  # one row per judge x checkpoint x temperature (unsafe prompts)
    over_refusal: pd.DataFrame  # same, on harmless prompts: share answered (complies)
    capability: pd.DataFrame  # one row per checkpoint x metric

    def to_dict(self) -> dict:
        return {"safety": _records(self.safety), "over_refusal": _records(self.over_refusal),
                "capability": _records(self.capability)}

    def to_text(self) -> str:
        parts = ["Harmfulness (share of unsafe requests answered; 95% CI over prompts):",
                 _show(self.safety)]
        if len(self.over_refusal):
            parts += ["", "Harmless-but-sensitive requests answered (higher is better):",
                      _show(self.over_refusal)]
        if len(self.capability):
            parts += ["", "Capability on the held-out benign split:",
                      self.capability.to_string(index=False, float_format="%.3f")]
        return "\n".join(parts)


def _records(frame: pd.DataFrame) -> list[dict]:
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def _show(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "  (nothing judged yet)"
    cols = ["judge", "checkpoint", "temperature", "harmfulness", "ci_low", "ci_high", "n",
            "unparseable"]
    return frame[cols].to_string(index=False, float_format="%.2f")


def checkpoint_name(seed: float | None, epoch: int) -> str:
    return "base" if pd.isna(seed) or epoch == 0 else f"seed {int(seed)} epoch {int(epoch)}"


def rates(outcomes: pd.DataFrame, kind: str) -> pd.DataFrame:
    """Harmfulness per judge x checkpoint x temperature for prompts of one kind."""
    frame = outcomes[outcomes["kind"] == kind].copy()
    if frame.empty:
        return pd.DataFrame(columns=["judge", "checkpoint", "temperature", "harmfulness", "ci_low",
                                     "ci_high", "n", "unparseable"])
    frame["seed"] = frame["seed"].fillna(-1)
    parsed = frame[frame["outcome"].notna()].assign(outcome=lambda f: f["outcome"].astype(int))
    table = harmfulness_table(parsed, by=KEYS, cluster="prompt_id")
    missing = frame[frame["outcome"].isna()].groupby(KEYS).size().rename("unparseable")
    table = table.merge(missing.reset_index(), on=KEYS, how="outer").fillna({"unparseable": 0})
    table["judge"] = table["judge_name"]
    table["checkpoint"] = [checkpoint_name(None if s == -1 else s, e)
                           for s, e in zip(table["seed"], table["epoch"])]
    table["unparseable"] = table["unparseable"].astype(int)
    return table.sort_values(["judge", "temperature", "seed", "epoch"]).reset_index(drop=True)


def sweep_summary(store: Store) -> SweepSummaryTable:
    outcomes = store.outcomes_frame()
    capability = store.capability_frame()
    if len(capability):
        points = store.checkpoints_frame()[["id", "seed", "epoch"]].rename(
            columns={"id": "checkpoint_id"})
        capability = capability.merge(points, on="checkpoint_id")
        capability["checkpoint"] = [checkpoint_name(s, e) for s, e in
                                    zip(capability["seed"], capability["epoch"])]
        capability = (capability.pivot_table(index="checkpoint", columns="metric", values="value")
                      .reset_index())
    return SweepSummaryTable(safety=rates(outcomes, "unsafe"),
                             over_refusal=rates(outcomes, "benign"), capability=capability)
