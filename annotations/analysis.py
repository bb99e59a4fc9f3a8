"""The statistics over the store, in one import: store frames in, tables and dataclasses out.

The CLI, the HTML report and the app all call these functions, so nothing is recomputed in a UI.
Each takes `source`, either a `Store` or a `Frames` (plain frames, for tests and the app), and
returns frames or dataclasses with `to_dict()`. They live in one module per concept; this one
gathers their public names (`import annotations.analysis as an; an.harmfulness_report(...)`):

- `annotations.frames`: `Frames`, `frames_of`, `select_outcomes`, `judge_names`.
- `annotations.agreement_tables`: `human_majority`, `human_alpha` (the people-vs-people ceiling),
  `judge_human_table` (each judge against the majority and each annotator, optionally per
  category, checkpoint or coherence), `unparseable_table`, `judge_vs_judge_table` (pairwise
  kappa and Kendall's tau of the checkpoint rankings).
- `annotations.harm`: `harmfulness_report`, raw and Rogan-Gladen-corrected harmfulness per
  checkpoint x temperature, over all categories or a subset (`PROMINENT_CATEGORIES`).
- `annotations.sweeps`: `variance_report` (the sweep as a complete grid for
  `variance_components`, and `seed_spread`) and `conclusion_flips` (does "harmfulness rose /
  fell / did not change" survive a change of judge?).
- `annotations.planner`: `plan_labels`, which generations people should label next.
"""

from __future__ import annotations

from annotations.agreement_tables import (BINARY, BY_COLUMNS, JudgeHumanTable, coherence,
                                          human_alpha, human_majority, judge_agreement_summary,
                                          judge_human_table, judge_summary_table,
                                          judge_vs_judge_table, labelled_items, majority_rows,
                                          primary_judge,
                                          unparseable_table)
from annotations.frames import (ITEM_COLUMNS, LABEL_COLUMNS, OUTCOME_COLUMNS, Frames, frames_of,
                                judge_names, select_outcomes)
from annotations.harm import (CELL_KEYS, PROMINENT_CATEGORIES, CalibrationSource, CellStatus,
                              HarmfulnessReport, capability_table, harmfulness_report)
from annotations.planner import PLAN_COLUMNS, plan_labels
from annotations.sweeps import (CHANGE_COLUMNS, FELL, MIN_HUMAN_PROMPTS, NO_CHANGE, ROSE, TOO_FEW,
                                Conclusion, ConclusionFlips, VarianceReport, compare_conclusions,
                                conclusion, conclusion_flips, sweep_frame, sweeps, variance_report)

__all__ = [
    "BINARY", "BY_COLUMNS", "CELL_KEYS", "CHANGE_COLUMNS", "FELL", "ITEM_COLUMNS", "LABEL_COLUMNS",
    "MIN_HUMAN_PROMPTS", "NO_CHANGE", "OUTCOME_COLUMNS", "PLAN_COLUMNS", "PROMINENT_CATEGORIES",
    "ROSE", "TOO_FEW", "CalibrationSource", "CellStatus", "Conclusion", "ConclusionFlips",
    "Frames", "HarmfulnessReport", "JudgeHumanTable", "VarianceReport", "capability_table",
    "coherence", "compare_conclusions", "conclusion", "conclusion_flips", "frames_of",
    "harmfulness_report", "human_alpha", "human_majority", "judge_agreement_summary",
    "judge_human_table", "judge_names", "judge_summary_table", "judge_vs_judge_table", "labelled_items",
    "majority_rows", "plan_labels", "primary_judge", "select_outcomes", "sweep_frame", "sweeps",
    "unparseable_table", "variance_report",
]
