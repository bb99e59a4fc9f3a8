"""The judge leaderboard: every judge against people on the same items, beside the people's own
agreement as the ceiling. What the app's Judges tab, the report and `run.py leaderboard` show.

The items: the answers of the chosen benchmarks (an imported human-judgment set such as
`jailbreakbench` or `xstest`; all when None) that have a people's reading and a verdict from
EVERY judge on the board, so each judge is scored on exactly the same answers. Per judge, with
prompt-clustered CIs: kappa, accuracy, sensitivity, specificity against the people's majority
(`agreement_tables.judge_summary_table`), kappa on coherent and on incoherent answers, the
unparseable share, and for judges that give scores the AUC (`scores.score_agreement`); per
judge and category, kappa; and Krippendorff's alpha among the people overall and per category
(`agreement_tables.human_alpha`), over every labelled answer of the sets (the ceiling must count
the answers people disagree on, which have no majority and so are not on the board). No number is computed here: each comes from those functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from annotations.agreement_tables import (human_alpha, human_majority, judge_agreement_summary,
                                          judge_human_table, judge_summary_table,
                                          labelled_items)
from annotations.frames import Frames, frames_of, json_records, select_outcomes
from annotations.records import PromptKind
from annotations.scores import score_agreement
from annotations.store import Store


@dataclass(frozen=True)
class Leaderboard:
    judges: pd.DataFrame  # one row per judge, best kappa first
    by_category: pd.DataFrame  # judge x category: n, kappa and its CI
    people: pd.DataFrame  # alpha among the annotators: "all" and per category
    items: int  # answers every judge is scored on
    benchmarks: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"benchmarks": list(self.benchmarks), "items": self.items,
                "judges": json_records(self.judges), "by_category": json_records(self.by_category),
                "people": json_records(self.people)}


def common_items(frames: Frames, benchmarks: Sequence[str] | None,
                 kind: PromptKind | None) -> Frames:
    """The frames cut to the answers of `benchmarks` with a people's 0/1 majority and a verdict
    (parseable or not) from every judge that judged any of them."""
    outcomes = select_outcomes(frames.outcomes, kind)
    if benchmarks:
        outcomes = outcomes[outcomes["benchmark"].isin(list(benchmarks))]
    read = human_majority(frames.labels)
    read = set(read.loc[read["human"].notna(), "generation_id"])
    outcomes = outcomes[outcomes["generation_id"].isin(read)]
    judged = outcomes.groupby("judge_id")["generation_id"].agg(set)
    shared = set.intersection(*judged) if len(judged) else set()
    generations = frames.generations
    if not generations.empty:
        generations = generations[generations["id"].isin(shared)]
    return Frames(outcomes[outcomes["generation_id"].isin(shared)],
                  frames.labels[frames.labels["generation_id"].isin(shared)],
                  frames.checkpoints, frames.capability, generations)


def judge_leaderboard(source: Store | Frames, benchmarks: Sequence[str] | None = None,
                      kind: PromptKind | None = None, threshold: float = 0.5,
                      n_boot: int = 1000, seed: int = 0) -> Leaderboard:
    """The leaderboard over the answers of `benchmarks` (see the module docstring). `kind`
    None takes every prompt (a published set may hold safe prompts too, as XSTest does)."""
    everything = frames_of(source)
    frames = common_items(everything, benchmarks, kind)
    agreement = judge_agreement_summary(frames, kind=kind, n_boot=n_boot, seed=seed)
    # the ceiling from every labelled answer of the sets: cut to the answers with a majority,
    # the people's disagreements (the ties) would be left out and alpha would read too high
    labelled = labelled_items(everything, kind)
    if benchmarks:
        labelled = labelled[labelled["benchmark"].isin(list(benchmarks))]
    people = human_alpha(labelled, by="category", n_boot=n_boot, seed=seed)
    judges = judge_summary_table(frames, agreement, people, kind=kind)
    scores = score_agreement(frames, threshold, kind=kind, n_boot=n_boot, seed=seed)
    judges = judges.merge(scores[["judge_id", "auc", "auc_ci_low", "auc_ci_high"]],
                          on="judge_id", how="left")
    judges = judges.sort_values(["kappa", "judge"], ascending=[False, True], kind="stable",
                                na_position="last").reset_index(drop=True)
    categories = judge_human_table(frames, by="category", kind=kind, n_boot=n_boot, seed=seed)
    by_category = categories.agreement
    if len(by_category):
        by_category = by_category[by_category["reference"].eq("majority")]
        by_category = by_category[["judge_name", "category_id", "category", "n",
                                   "n_unparseable", "kappa", "kappa_ci_low", "kappa_ci_high"]]
    items = frames.outcomes["generation_id"].nunique()
    chosen = tuple(benchmarks) if benchmarks else tuple(sorted(
        frames.outcomes["benchmark"].dropna().unique()))
    return Leaderboard(judges, by_category.reset_index(drop=True), people, items, chosen)


def labelled_benchmarks(source: Store | Frames) -> list[str]:
    """The benchmarks (an imported set is its own) with judged answers that people labelled."""
    frames = frames_of(source)
    read = human_majority(frames.labels)
    read = read.loc[read["human"].notna(), "generation_id"]
    judged = frames.outcomes[frames.outcomes["generation_id"].isin(read)]
    return sorted(judged["benchmark"].dropna().astype(str).unique())


def leaderboards(source: Store | Frames, n_boot: int = 1000, seed: int = 0) -> list[Leaderboard]:
    """One leaderboard per labelled benchmark (the report's and the app's)."""
    frames = frames_of(source)
    return [judge_leaderboard(frames, [name], n_boot=n_boot, seed=seed)
            for name in labelled_benchmarks(frames)]
