"""The sweep's report: every statistic of `annotations.analysis` gathered once (`build_report`,
JSON with `to_dict()`), and one self-contained HTML page (`write_html`, rendered by
`annotations.report_html`) with the plots a reader of Fraser et al. (2025) expects.

    report = build_report(Store.open("workbench.db"))
    write_html(report, "report.html")

A statistic that cannot be computed yet (no human labels, no capability scores, one judge) leaves
its part empty with the reason in `notes`, instead of failing the whole report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from annotations import analysis as an
from annotations.frames import jsonable, mid_epoch
from annotations.leaderboard import Leaderboard, leaderboards
from annotations.matched import MatchedReport, matched_report, stored_goals
from annotations.robustness import Robustness, conclusion_robustness
from annotations.scores import (coherence_scorers, judge_human_by_score, score_agreement,
                                score_distribution, score_table)
from annotations.toxicity import toxicity_tables
from annotations.records import PromptKind, ScorerSpec
from annotations.report_html import render
from annotations.store import Store

ALL, PROMINENT, SELECTED = "all categories", "prominent (SORRY-Bench 1-24)", "selected"


@dataclass
class Report:
    """What the report shows; every part is also in `to_dict()` (for `run.py report --json`)."""

    generated_at: str
    store: str
    counts: dict
    categories: tuple[str, ...] | None
    primary_judge: str | None
    judges: pd.DataFrame
    harmfulness: dict[str, an.HarmfulnessReport]
    by_category: an.HarmfulnessReport | None
    subsets: pd.DataFrame
    headline: pd.DataFrame
    agreement: an.JudgeHumanTable | None
    alpha: pd.DataFrame | None
    judge_vs_judge: pd.DataFrame
    flips: list[an.ConclusionFlips]
    variance: list[an.VarianceReport]
    capability: pd.DataFrame
    notes: dict[str, str] = field(default_factory=dict)
    leaderboards: list[Leaderboard] = field(default_factory=list)  # one per labelled set
    scores: pd.DataFrame = field(default_factory=pd.DataFrame)  # scoring judges' mean scores
    score_agreement: pd.DataFrame = field(default_factory=pd.DataFrame)  # their AUC vs people
    toxicity: dict[str, pd.DataFrame] = field(default_factory=dict)  # per scorer, by checkpoint
    # per coherence scorer (its label): its distribution per checkpoint, judges vs people by it
    coherence: dict[str, dict[str, pd.DataFrame]] = field(default_factory=dict)
    matched: list[MatchedReport] = field(default_factory=list)  # one per capability goal
    robustness: list[Robustness] = field(default_factory=list)  # one per comparison

    def to_dict(self) -> dict:
        def frame(f):
            return None if f is None else f.to_dict("records")

        return jsonable({
            "generated_at": self.generated_at, "store": self.store, "counts": self.counts,
            "categories": self.categories, "primary_judge": self.primary_judge,
            "judges": frame(self.judges),
            "harmfulness": {j: r.to_dict() for j, r in self.harmfulness.items()},
            "by_category": None if self.by_category is None else self.by_category.to_dict(),
            "subsets": frame(self.subsets), "headline": frame(self.headline),
            "agreement": None if self.agreement is None else self.agreement.to_dict(),
            "alpha": frame(self.alpha), "judge_vs_judge": frame(self.judge_vs_judge),
            "conclusions": [f.to_dict() for f in self.flips],
            "variance": [v.to_dict() for v in self.variance],
            "capability": frame(self.capability), "notes": self.notes,
            "leaderboards": [b.to_dict() for b in self.leaderboards],
            "scores": frame(self.scores), "score_agreement": frame(self.score_agreement),
            "toxicity": {name: frame(t) for name, t in self.toxicity.items()},
            "coherence": {name: {part: frame(t) for part, t in parts.items()}
                          for name, parts in self.coherence.items()},
            "matched": [m.to_dict() for m in self.matched],
            "robustness": [r.to_dict() for r in self.robustness]})


def build_report(source: Store | an.Frames, categories: Sequence[str] | None = None,
                 n_boot: int = 1000, seed: int = 0) -> Report:
    """Every statistic of the report; `categories` (ids) restricts the headline numbers and is
    shown beside all categories and SORRY-Bench's prominent subset."""
    frames = an.frames_of(source)
    categories = None if categories is None else tuple(str(c) for c in categories)
    notes: dict[str, str] = {}
    unsafe = an.select_outcomes(frames.outcomes, PromptKind.UNSAFE)
    judge_ids = sorted(unsafe["judge_id"].dropna().unique(), key=str)
    agreement, alpha = _people(frames, notes, n_boot, seed)
    primary = an.primary_judge(frames, agreement)
    harm = {j: r for j in judge_ids
            if (r := _try(notes, "harmfulness", an.harmfulness_report, frames, j,
                          categories=categories, n_boot=n_boot, seed=seed)) is not None}
    by_category = None if primary is None else _try(
        notes, "categories", an.harmfulness_report, frames, primary, by_category=True,
        n_boot=n_boot, seed=seed, correct=False)  # the heatmap shows raw rates
    subsets, headline = _subsets(frames, harm, primary, categories, notes, n_boot, seed)
    report = Report(
        generated_at=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        store=source.url if isinstance(source, Store) else "(frames)",
        counts=source.counts() if isinstance(source, Store) else {}, categories=categories,
        primary_judge=primary, judges=an.judge_summary_table(frames, agreement, alpha),
        harmfulness=harm, by_category=by_category, subsets=subsets, headline=headline,
        agreement=agreement, alpha=alpha,
        judge_vs_judge=an.judge_vs_judge_table(frames) if len(judge_ids) > 1 else pd.DataFrame(),
        flips=[], variance=[],
        capability=an.capability_table(frames, harm[primary]) if primary in harm
        else pd.DataFrame(), notes=notes)
    _sweep_sections(report, frames, judge_ids, n_boot, seed)
    report.leaderboards = _try(notes, "leaderboard", leaderboards, frames, n_boot, seed) or []
    report.scores = score_table(frames, n_boot=n_boot, seed=seed)
    report.score_agreement = score_agreement(frames, n_boot=n_boot, seed=seed)
    report.toxicity = _try(notes, "toxicity", toxicity_tables, frames, primary, n_boot=n_boot,
                           seed=seed) or {}
    report.coherence = _try(notes, "coherence", _coherence, frames, n_boot, seed) or {}
    _capability_sections(report, frames, primary, n_boot, seed)
    return report


def _coherence(frames: an.Frames, n_boot: int, seed: int) -> dict[str, dict[str, pd.DataFrame]]:
    """Per coherence scorer (the base model's loss on each answer): its distribution per
    checkpoint, and each judge against people within tertiles of it."""
    if frames.scores.empty:
        return {}
    names = frames.scores.drop_duplicates("scorer_id").set_index("scorer_id")
    labels = {s: ScorerSpec(name=r["scorer_name"], args=r["scorer_args"] or {}).label
              for s, r in names.iterrows()}
    return {labels.get(s, s): {
        "distribution": score_distribution(frames, s, n_boot=n_boot, seed=seed),
        "by_score": judge_human_by_score(frames, s, n_boot=n_boot, seed=seed)}
        for s in coherence_scorers(frames)}


def _capability_sections(report: Report, frames: an.Frames, primary: str | None, n_boot: int,
                         seed: int) -> None:
    """Safety at each capability goal the runs were trained to (under the primary judge), and
    each comparison's robustness: every data set against its base model, and data sets of
    one base model against each other."""
    goals = stored_goals(frames)
    if primary is not None:
        for metric, benchmark, target in goals:
            found = _try(report.notes, "matched", matched_report, frames, primary, metric,
                         target, benchmark=benchmark, n_boot=n_boot, seed=seed)
            report.matched += [found] if found is not None else []
    if not goals:
        report.notes["matched"] = ("No run was trained to a capability goal (`train.until:` "
                                   "in the sweep config).")
    by_base: dict[str, list[str]] = {}
    for base_model, dataset in an.sweeps(frames):
        by_base.setdefault(base_model, []).append(dataset)
    for base_model, datasets in by_base.items():
        pairs = [(d, None) for d in datasets] + [
            (a, b) for i, a in enumerate(datasets) for b in datasets[i + 1:]]
        for a, b in pairs:
            found = _try(report.notes, "robustness", conclusion_robustness, frames, a, b,
                         base_model=base_model, n_boot=n_boot, seed=seed)
            report.robustness += [found] if found is not None else []


def _try(notes: dict, section: str, fn, *args, **kwargs):
    """fn(...), or None with the reason added to the section's note (a missing piece of data
    should cost one section, not the whole report)."""
    try:
        return fn(*args, **kwargs)
    except ValueError as err:
        notes[section] = "; ".join(filter(None, [notes.get(section), str(err)]))
        return None


def _people(frames: an.Frames, notes: dict, n_boot: int, seed: int):
    if frames.labels.empty:
        notes["people"] = "No human labels yet: label answers in the app to see agreement."
        return None, None
    agreement = an.judge_agreement_summary(frames, n_boot=n_boot, seed=seed)
    alpha = an.human_alpha(frames, by="category", n_boot=n_boot, seed=seed)
    return agreement, alpha


def _subsets(frames, harm, primary, categories, notes, n_boot, seed):
    """Harmfulness of the primary judge under all categories, the prominent subset and the
    selected one; and the headline (mean over seeds at the last epoch minus the base)."""
    if primary is None:
        return pd.DataFrame(), pd.DataFrame()
    subsets = {ALL: None, PROMINENT: an.PROMINENT_CATEGORIES}
    if categories is not None:
        subsets[SELECTED] = categories
    parts = []
    for name, cats in subsets.items():
        result = harm.get(primary) if cats == categories else _try(
            notes, "subsets", an.harmfulness_report, frames, primary, categories=cats,
            n_boot=n_boot, seed=seed)
        if result is not None:
            n_cats = None if cats is None else len(cats)
            parts.append(result.table.assign(subset=name, n_categories=n_cats))
    if not parts:
        return pd.DataFrame(), pd.DataFrame()
    table = pd.concat(parts, ignore_index=True)
    return table, _headline(table)


def _headline(table: pd.DataFrame) -> pd.DataFrame:
    """Per subset x base model x temperature: the base model's harmfulness, the mean over seeds
    at the last epoch, and the change in percentage points (raw and corrected)."""
    rows = []
    for (subset, base_model, temperature), block in table[~mid_epoch(table)].groupby(
            ["subset", "base_model", "temperature"], sort=False):
        base, tuned = block[block["epoch"] == 0], block[block["epoch"] > 0]
        if base.empty or tuned.empty:
            continue
        last = tuned[tuned["epoch"] == tuned["epoch"].max()]
        rows.append({"subset": subset, "base_model": base_model, "temperature": temperature,
                     "last_epoch": int(last["epoch"].iloc[0]),
                     "base": base["harmfulness"].mean(),
                     "last_epoch_mean": last["harmfulness"].mean(),
                     "change_pp": 100 * (last["harmfulness"].mean() - base["harmfulness"].mean()),
                     "corrected_change_pp": 100 * (last["corrected"].mean()
                                                   - base["corrected"].mean())})
    return pd.DataFrame(rows)


def _sweep_sections(report: Report, frames: an.Frames, judge_ids: list[str], n_boot: int,
                    seed: int) -> None:
    found = an.sweeps(frames)
    if not found:
        report.notes["sweeps"] = "No fine-tuned checkpoints judged yet: nothing to compare " \
                                 "with the base model."
        return
    for sweep in found:
        flips = _try(report.notes, "conclusions", an.conclusion_flips, frames, sweep=sweep,
                     n_boot=n_boot, seed=seed)
        report.flips += [flips] if flips is not None else []
        for judge_id in judge_ids:
            result = _try(report.notes, "variance", an.variance_report, frames, judge_id,
                          sweep=sweep, n_boot=n_boot, seed=seed)
            report.variance += [result] if result is not None else []


def write_html(report: Report, path: str | Path) -> Path:
    """Write the report as one self-contained HTML file; returns its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(report), encoding="utf-8")
    return path


def report_command(store: Store, html_path: str | Path | None = None,
                   categories: Sequence[str] | None = None, n_boot: int = 1000) -> dict:
    """What `run.py report` calls: the report as a dict, and the HTML page when a path is given
    (its path is then under "html")."""
    report = build_report(store, categories=categories, n_boot=n_boot)
    result = report.to_dict()
    if html_path is not None:
        result["html"] = str(write_html(report, html_path))
    return result
