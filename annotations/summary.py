"""A sweep's headline, as a table and as text: harmfulness per judge x checkpoint x temperature,
raw with its CI and corrected for the judge's measured errors where people's labels allow (the
recommended method, named with its assumption, and Rogan-Gladen and the labels alone beside
it),
unparseable verdicts counted apart, over-refusal on harmless requests, and capability beside
safety. What `run.py demo` prints when the pipeline is done. Every number is
`annotations.harm`'s (`harmfulness_report`, `capability_table`); this module only lays them out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from annotations.frames import Frames, json_records, select_outcomes
from annotations.harm import HarmfulnessReport, capability_table, harmfulness_report
from annotations.records import PromptKind
from annotations.store import Store

RATE_COLUMNS = ["judge", "checkpoint", "temperature", "harmfulness", "ci_low", "ci_high", "n",
                "unparseable"]
SAFETY_COLUMNS = ["judge", "checkpoint", "temperature", "harmfulness", "ci_low", "ci_high",
                  "corrected", "corrected_ci_low", "corrected_ci_high", "method", "assumption",
                  "rogan_gladen", "rogan_gladen_ci_low", "rogan_gladen_ci_high",
                  "labels_only", "labels_only_ci_low", "labels_only_ci_high", "n",
                  "n_own_labels", "unparseable"]


@dataclass(frozen=True)
class SweepSummaryTable:
    safety: pd.DataFrame  # one row per judge x checkpoint x temperature (unsafe prompts)
    over_refusal: pd.DataFrame  # same, on harmless prompts: share answered (complies)
    capability: pd.DataFrame  # one row per checkpoint, one column per metric
    calibration: list[dict] = field(default_factory=list)  # per judge: how it was corrected

    def to_dict(self) -> dict:
        return {"safety": json_records(self.safety),
                "over_refusal": json_records(self.over_refusal),
                "capability": json_records(self.capability), "calibration": self.calibration}

    def to_text(self) -> str:
        parts = ["Harmfulness (share of unsafe requests answered; 95% CIs over prompts), raw and "
                 "corrected for each judge's errors against the annotators' labels (the "
                 "recommended method; Rogan-Gladen and the cell's own labels alone beside it):",
                 _show(_with_intervals(self.safety), ["judge", "checkpoint", "T", "raw [95% CI]",
                                                      "corrected [95% CI]", "method",
                                                      "Rogan-Gladen [95% CI]",
                                                      "labels alone [95% CI]", "n",
                                                      "own labels", "unparseable"])]
        parts += [f"  {c['judge']}: {c['text']}" for c in self.calibration]
        parts += [f"  {m}: assumes {a}" for m, a in _assumptions(self.safety)]
        if len(self.over_refusal):
            parts += ["", "Harmless-but-sensitive requests answered (higher is better):",
                      _show(self.over_refusal, RATE_COLUMNS)]
        if len(self.capability):
            shown = self.capability.drop(columns=["checkpoint_id", "base_model", "dataset",
                                                  "seed", "epoch", "step"], errors="ignore")
            if "examples_seen" in shown:  # whole numbers; none for the base model
                shown = shown.assign(examples_seen=shown["examples_seen"].astype("Int64"))
            parts += ["", "Capability on the held-out split(s):",
                      shown.to_string(index=False, float_format="%.3f", na_rep="-")]
        return "\n".join(parts)


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
               table["corrected"], table["corrected_ci_low"], table["corrected_ci_high"])],
           "Rogan-Gladen [95% CI]": [_interval(*r) for r in zip(
               table["rogan_gladen"], table["rogan_gladen_ci_low"],
               table["rogan_gladen_ci_high"])],
           "labels alone [95% CI]": [_interval(*r) for r in zip(
               table["labels_only"], table["labels_only_ci_low"],
               table["labels_only_ci_high"])]},
        method=table["method"].fillna("-"), **{"own labels": table["n_own_labels"]})


def _assumptions(table: pd.DataFrame) -> list[tuple[str, str]]:
    """Each headline method the table uses, with the assumption it rests on."""
    if table.empty:
        return []
    used = table.dropna(subset=["method"]).drop_duplicates("method")
    return list(zip(used["method"], used["assumption"]))


def judge_reports(frames: Frames, kind: PromptKind = PromptKind.UNSAFE, correct: bool = True,
                  n_boot: int = 1000, seed: int = 0) -> list[HarmfulnessReport]:
    """harmfulness_report for every judge with verdicts on prompts of `kind`, by judge name."""
    outcomes = select_outcomes(frames.outcomes, kind)
    names = dict(zip(outcomes["judge_id"], outcomes["judge_name"]))
    return [harmfulness_report(frames, j, kind=kind, correct=correct, n_boot=n_boot, seed=seed)
            for j in sorted(names, key=lambda j: (str(names[j]), j))]


def _stacked(reports: list[HarmfulnessReport], columns: list[str]) -> pd.DataFrame:
    if not reports:
        return pd.DataFrame(columns=columns)
    table = pd.concat([r.table.assign(judge=r.judge) for r in reports], ignore_index=True)
    return table.sort_values(["judge", "temperature", "checkpoint_kind", "base_model", "seed",
                              "epoch"], kind="stable", na_position="first").reset_index(drop=True)


def _calibration_note(report: HarmfulnessReport) -> dict:
    scores = "its P(complies)" if report.probabilities else "its verdicts"
    if report.informative:
        text = (f"corrected from {scores} with {report.n_labelled} answers labelled by "
                f"annotators ({report.calibration.value}); Rogan-Gladen from the "
                f"{report.n_calibration} read as complies or refuses: sensitivity "
                f"{report.sensitivity:.2f}, specificity {report.specificity:.2f}")
    else:
        text = f"no pooled correction: {report.reason}"
    return {"judge": report.judge, "text": text, "n_calibration": report.n_calibration,
            "calibration": report.calibration.value, "sensitivity": report.sensitivity,
            "specificity": report.specificity, "informative": report.informative}


def sweep_summary(store: Store | Frames, n_boot: int = 1000, seed: int = 0) -> SweepSummaryTable:
    """The summary, with the report's defaults (n_boot, seed), so its numbers are the report's."""
    frames = store if isinstance(store, Frames) else Frames.from_store(store)
    safety = judge_reports(frames, n_boot=n_boot, seed=seed)
    return SweepSummaryTable(
        safety=_stacked(safety, SAFETY_COLUMNS),
        over_refusal=_stacked(judge_reports(frames, PromptKind.BENIGN, correct=False,
                                            n_boot=n_boot, seed=seed), RATE_COLUMNS),
        capability=capability_table(frames), calibration=[_calibration_note(r) for r in safety])
