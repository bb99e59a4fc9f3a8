"""Toxicity per checkpoint x temperature under one scorer (the seed paper's secondary metric):
`toxicity_table`.

One row per checkpoint x temperature: the mean score of every scored answer (`toxicity`), and,
given a judge, the mean over the answers that judge says complied (`complied_toxicity`: how
toxic the harmful answers are, apart from how many there are). Each mean has a percentile
bootstrap CI clustered by prompt (several answers to one prompt are not independent), its n,
and the count of unscorable answers (a stored score of None: left out of the mean, never a 0).
Answers the judge left unparseable or did not judge are not counted as complied.

    from annotations.toxicity import toxicity_table
    table = toxicity_table(store, judge_id=judge_id)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from annotations.bootstrap import (cluster_totals, estimate, make_rng, resample_totals,
                                   safe_divide)
from annotations.frames import MIN_ITEMS, Frames, frames_of, generation_items
from annotations.records import COHERENCE_SCORER, PromptKind
from annotations.store import Store

CELL_KEYS = ["checkpoint_id", "temperature"]
CHECKPOINT_COLUMNS = ["base_model", "dataset", "checkpoint", "checkpoint_kind", "import_source",
                      "seed", "epoch"]
COLUMNS = [*CELL_KEYS, "toxicity", "ci_low", "ci_high", "n", "n_prompts", "unscorable",
           "complied_toxicity", "complied_ci_low", "complied_ci_high", "complied_n",
           "complied_unscorable"]
ORDER = ["base_model", "dataset", "temperature", "checkpoint_kind", "seed", "epoch"]


def toxicity_table(source: Store | Frames, scorer_id: str | None = None,
                   judge_id: str | None = None, level: float = 0.95, n_boot: int = 1000,
                   seed: int = 0, kind: PromptKind | None = PromptKind.UNSAFE,
                   scores: pd.DataFrame | None = None) -> pd.DataFrame:
    """Mean toxicity per checkpoint x temperature with clustered bootstrap CIs (see the module
    docstring). `scorer_id` may be left out when one scorer has scores; `scores` (the store's
    scores_frame) defaults to the store's, or the Frames' `scores`.
    `kind` keeps answers to one kind of prompt (None: every kind)."""
    frames = frames_of(source)
    scored = answer_scores(source, scores)
    scorer_id = one_scorer(scored, scorer_id)
    values = scored.loc[scored["scorer_id"] == scorer_id, ["generation_id", "value"]]
    items = generation_items(frames, kind).merge(values, on="generation_id")
    if items.empty:
        shown = "any" if kind is None else PromptKind(kind).value
        raise ValueError(f"no scores of scorer {scorer_id!r} on {shown} prompts")
    items["value"] = pd.to_numeric(items["value"], errors="coerce").astype(float)
    items["complied"] = _complied(frames, judge_id, items["generation_id"])
    rng = make_rng(seed)
    rows = [_cell(key, block, judge_id is not None, level, n_boot, rng)
            for key, block in items.groupby(CELL_KEYS, sort=True)]
    table = pd.DataFrame(rows)
    table = table[[c for c in COLUMNS if c in table]]
    points = items.drop_duplicates("checkpoint_id").set_index("checkpoint_id")[CHECKPOINT_COLUMNS]
    table = table.join(points, on="checkpoint_id")
    table["too_few"] = table["n"] < MIN_ITEMS  # shown as "too few to read"
    return table.sort_values(ORDER, kind="stable", na_position="first").reset_index(drop=True)


def answer_scores(source: Store | Frames, scores: pd.DataFrame | None) -> pd.DataFrame:
    if scores is not None:
        return scores
    if isinstance(source, Store):
        return source.scores_frame()
    return source.scores if len(source.scores) else pd.DataFrame(
        columns=["generation_id", "scorer_id", "scorer_name", "value"])


def one_scorer(scores: pd.DataFrame, scorer_id: str | None) -> str:
    known = scores.drop_duplicates("scorer_id")
    names = dict(zip(known["scorer_id"], known.get("scorer_name", known["scorer_id"])))
    if scorer_id is not None:
        if scorer_id not in names:
            raise ValueError(f"no scores of scorer {scorer_id!r}")
        return scorer_id
    if len(names) == 1:
        return next(iter(names))
    if not names:
        raise ValueError("no scores in the store: run `run.py score` first")
    listed = ", ".join(f"{name} [{sid}]" for sid, name in names.items())
    raise ValueError(f"several scorers have scores, name one (scorer_id): {listed}")


def _complied(frames: Frames, judge_id: str | None, generation_ids: pd.Series) -> pd.Series:
    """Whether judge `judge_id` labels each answer 1 (complies); all False without a judge."""
    if judge_id is None:
        return pd.Series(False, index=generation_ids.index)
    verdicts = frames.outcomes[frames.outcomes["judge_id"] == judge_id]
    if verdicts.empty:
        raise ValueError(f"no verdicts of judge {judge_id!r}")
    labels = verdicts.drop_duplicates("generation_id").set_index("generation_id")["outcome"]
    return generation_ids.map(labels).eq(1)


def _cell(key: tuple, block: pd.DataFrame, by_judge: bool, level: float, n_boot: int,
          rng: np.random.Generator) -> dict:
    """One checkpoint x temperature: its means, their CIs from one set of prompt resamples
    (the same draws for every mean), and its counts."""
    scorable = block["value"].notna()
    groups = {"": pd.Series(True, index=block.index)}
    if by_judge:
        groups["complied_"] = block["complied"]
    row = dict(zip(CELL_KEYS, key), n_prompts=int(block["prompt_id"].nunique()))
    for prefix, member in groups.items():
        row[f"{prefix}n"] = int((member & scorable).sum())
        row[f"{prefix}unscorable"] = int((member & ~scorable).sum())
    scored = block[scorable]
    if scored.empty:
        return row | {f"{p}{c}": np.nan for p in groups for c in ("toxicity", "ci_low", "ci_high")}
    # per prompt, for each group: the sum of its scores and its count
    columns = [part for member in groups.values() for part in
               (scored["value"].where(member[scorable], 0.0), member[scorable].astype(float))]
    totals = cluster_totals(np.column_stack(columns), scored["prompt_id"])
    boot = resample_totals(totals, n_boot, rng)
    sums = totals.sum(axis=0)
    for i, prefix in enumerate(groups):
        means = safe_divide(boot[:, 2 * i], boot[:, 2 * i + 1])
        found = estimate(float(safe_divide(sums[2 * i], sums[2 * i + 1])), means, level)
        row |= {f"{prefix}toxicity": found.value, f"{prefix}ci_low": found.ci_low,
                f"{prefix}ci_high": found.ci_high}
    return row


def toxicity_tables(source: Store | Frames, judge_id: str | None = None, level: float = 0.95,
                    n_boot: int = 1000, seed: int = 0) -> dict[str, pd.DataFrame]:
    """toxicity_table for every scorer with scores but the coherence scorer (its loss is not a
    toxicity), by the scorer's name (the report's)."""
    frames = frames_of(source)
    scored = answer_scores(frames, None)
    scored = scored[scored["scorer_name"] != COHERENCE_SCORER] if len(scored) else scored
    names = scored.drop_duplicates("scorer_id").set_index("scorer_id")["scorer_name"]
    return {f"{name} [{sid[:8]}]" if list(names).count(name) > 1 else name:
            toxicity_table(frames, sid, judge_id, level, n_boot, seed)
            for sid, name in names.items()}
