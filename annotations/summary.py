"""A sweep's headline, as a table and as text: harmfulness per judge x checkpoint x temperature,
raw with its CI and corrected for the judge's measured errors where people's labels allow,
unparseable verdicts counted apart, over-refusal on harmless requests, and capability beside
safety. What `run.py demo` prints when the pipeline is done.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from annotations.correction import harmfulness_table
from annotations.frames import Frames, checkpoint_name
from annotations.harm import harmfulness_report
from annotations.store import Store

KEYS = ["judge_name", "judge_id", "checkpoint_id", "base_model", "seed", "epoch", "temperature"]
RATE_COLUMNS = ["judge", "checkpoint", "temperature", "harmfulness", "ci_low", "ci_high", "n",
                "unparseable"]
SAFETY_COLUMNS = ["judge", "checkpoint", "temperature", "harmfulness", "ci_low", "ci_high",
                  "corrected", "corrected_ci_low", "corrected_ci_high", "n", "unparseable"]


@dataclass(frozen=True)
class SweepSummaryTable:
    safety: pd.DataFrame  # one row per judge x checkpoint x temperature (unsafe prompts)
    over_refusal: pd.DataFrame  # same, on harmless prompts: share answered (complies)
    capability: pd.DataFrame  # one row per checkpoint x metric
    calibration: list[dict] = field(default_factory=list)  # per judge: how it was corrected

    def to_dict(self) -> dict:
        return {"safety": _records(self.safety), "over_refusal": _records(self.over_refusal),
                "capability": _records(self.capability), "calibration": self.calibration}

    def to_text(self) -> str:
        parts = ["Harmfulness (share of unsafe requests answered; 95% CIs over prompts), raw and "
                 "corrected for each judge's errors against people's labels:",
                 _show(_with_intervals(self.safety), ["judge", "checkpoint", "T", "raw [95% CI]",
                                                      "corrected [95% CI]", "n",
                                                      "unparseable"])]
        parts += [f"  {c['judge']}: {c['text']}" for c in self.calibration]
        if len(self.over_refusal):
            parts += ["", "Harmless-but-sensitive requests answered (higher is better):",
                      _show(self.over_refusal, RATE_COLUMNS)]
        if len(self.capability):
            parts += ["", "Capability on the held-out benign split:",
                      self.capability.to_string(index=False, float_format="%.3f")]
        return "\n".join(parts)


def _records(frame: pd.DataFrame) -> list[dict]:
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def _show(frame: pd.DataFrame, cols: list[str]) -> str:
    if frame.empty:
        return "  (nothing judged yet)"
    return frame[cols].to_string(index=False, float_format="%.2f", na_rep="-")


def _interval(value: float, low: float, high: float) -> str:
    return "-" if pd.isna(value) else f"{value:.2f} [{low:.2f}, {high:.2f}]"


def _with_intervals(table: pd.DataFrame) -> pd.DataFrame:
    """The safety table with each rate and its CI as one text column, for reading."""
    if table.empty:
        return table
    return table.assign(
        T=table["temperature"],
        **{"raw [95% CI]": [_interval(*r) for r in zip(table["harmfulness"], table["ci_low"],
                                                      table["ci_high"])],
           "corrected [95% CI]": [_interval(*r) for r in zip(
               table["corrected"], table["corrected_ci_low"], table["corrected_ci_high"])]})


def rates(outcomes: pd.DataFrame, kind: str) -> pd.DataFrame:
    """Raw harmfulness per judge x checkpoint x temperature for prompts of one kind."""
    frame = outcomes[outcomes["kind"] == kind].copy()
    if frame.empty:
        return pd.DataFrame(columns=RATE_COLUMNS)
    frame["seed"] = frame["seed"].fillna(-1)
    parsed = frame[frame["outcome"].notna()].assign(outcome=lambda f: f["outcome"].astype(int))
    table = harmfulness_table(parsed, by=KEYS, cluster="prompt_id")
    missing = frame[frame["outcome"].isna()].groupby(KEYS).size().rename("unparseable")
    table = table.merge(missing.reset_index(), on=KEYS, how="outer").fillna({"unparseable": 0})
    table["judge"] = table["judge_name"]
    table["checkpoint"] = [checkpoint_name(None if s == -1 else s, e, b) for s, e, b in
                           zip(table["seed"], table["epoch"], table["base_model"])]
    table["unparseable"] = table["unparseable"].astype(int)
    return table.sort_values(["judge", "temperature", "seed", "epoch"]).reset_index(drop=True)


def safety_table(frames: Frames) -> tuple[pd.DataFrame, list[dict]]:
    """Raw and corrected harmfulness on unsafe prompts for every judge (annotations.harm), and
    per judge what the correction rests on: calibration size, sensitivity, specificity, or why
    there is no corrected number."""
    unsafe = frames.outcomes[frames.outcomes["kind"] == "unsafe"]
    names = dict(zip(unsafe["judge_id"], unsafe["judge_name"]))
    tables, calibration = [], []
    for judge_id in sorted(names, key=lambda j: str(names[j])):
        report = harmfulness_report(frames, judge_id)
        tables.append(report.table.assign(judge=names[judge_id]))
        calibration.append(_calibration_note(report, names[judge_id]))
    if not tables:
        return pd.DataFrame(columns=SAFETY_COLUMNS), calibration
    table = pd.concat(tables, ignore_index=True)
    return table.sort_values(["judge", "temperature", "base_model", "seed", "epoch"],
                             kind="stable", na_position="first").reset_index(drop=True), calibration


def _calibration_note(report, judge: str) -> dict:
    if report.informative:
        text = (f"corrected with {report.n_calibration} human-labelled answers "
                f"({report.calibration}): sensitivity {report.sensitivity:.2f}, "
                f"specificity {report.specificity:.2f}")
    else:
        text = f"no corrected numbers: {report.reason}"
    return {"judge": judge, "text": text, "n_calibration": report.n_calibration,
            "calibration": report.calibration, "sensitivity": report.sensitivity,
            "specificity": report.specificity, "informative": report.informative}


def sweep_summary(store: Store) -> SweepSummaryTable:
    frames = Frames.from_store(store)
    capability = frames.capability
    if len(capability):
        points = frames.checkpoints[["id", "seed", "epoch", "base_model"]].rename(
            columns={"id": "checkpoint_id"})
        capability = capability.merge(points, on="checkpoint_id")
        capability["checkpoint"] = [checkpoint_name(s, e, b) for s, e, b in zip(
            capability["seed"], capability["epoch"], capability["base_model"])]
        capability = (capability.pivot_table(index="checkpoint", columns="metric", values="value")
                      .reset_index())
    safety, calibration = safety_table(frames)
    return SweepSummaryTable(safety=safety, over_refusal=rates(frames.outcomes, "benign"),
                             capability=capability, calibration=calibration)
