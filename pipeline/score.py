"""Score stage: every stored generation this scorer has not scored yet gets a score (toxicity).

The scorer is named and configured as in the registry (`pipeline.scorers`); its spec is stored
with the scores, so each score can be traced to the exact scorer that made it. What is stored
is skipped, so a restart asks nothing twice; each batch of scores is written in its own
transaction, so a killed run loses at most the batch in flight. Outcomes marked `retry` (the
scorer could not be reached) are not stored, and the stage stops after a batch of nothing else.
A value of None (could not score: an empty answer, an unreadable reply) is stored and counted
as unscorable, never as a 0. A scorer that reads the request too (`base-loss`: registered with
`requests=True`) is given each answer's prompt text beside it.

    python run.py score --scorer perspective --arg max_per_second=1
    python run.py score --scorer classifier --arg model=/models/toxic-bert --arg label=toxic
    python run.py score --scorer base-loss --arg model=smollm2
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from tqdm.auto import tqdm

from annotations.records import PromptKind, ResponseScore
from annotations.store import Store
from pipeline.scorers import (AnyScorerFn, RequestScorerFn, ScoreOutcome, ScorerFn,
                              create_scorer, scorer_spec, takes_requests)

log = logging.getLogger(__name__)


@dataclass
class ScoreSummary:
    scorer_id: str
    scorer: str  # the spec's readable label, e.g. perspective(attribute=TOXICITY,...)
    scored: int = 0  # scores written by this run, unscorable ones included
    skipped: int = 0  # generations this scorer had already scored
    unscorable: int = 0  # stored with value None
    failed: int = 0  # the scorer could not be reached: nothing stored, the next run asks again

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def count(self, outcomes: Sequence[ScoreOutcome]) -> None:
        for outcome in outcomes:
            self.failed += outcome.retry
            self.scored += not outcome.retry
            self.unscorable += not outcome.retry and outcome.value is None


def pending(store: Store, scorer_id: str,
            kinds: Sequence[PromptKind] | None) -> tuple[list[str], int]:
    """Ids of the generations still to score (in a stable order), and how many are done."""
    frame = store.generations_frame(with_text=False)
    if kinds is not None and len(frame):
        frame = frame[frame["kind"].isin([PromptKind(k).value for k in kinds])]
    ids = set(frame["id"]) if len(frame) else set()
    done = store.scored_generation_ids(scorer_id) & ids
    return sorted(ids - done), len(done)


def prompt_texts(store: Store) -> dict[str, str]:
    """Prompt id -> its text: the requests a scorer that reads them is given."""
    frame = store.prompts_frame()
    return dict(zip(frame["id"], frame["text"])) if len(frame) else {}


def score_batch(store: Store, fn: AnyScorerFn, scorer_id: str, ids: Sequence[str],
                requests: Mapping[str, str] | None = None) -> list[ScoreOutcome]:
    """Score one batch of generations and write its scores in one transaction. With
    `requests` (prompt id -> text) the scorer is called as fn(answers, requests)."""
    generations = store.generations(ids)
    answers = [g.text for g in generations]
    if requests is None:
        outcomes = cast(ScorerFn, fn)(answers)
    else:
        asked = [requests[g.prompt_id] for g in generations]
        outcomes = cast(RequestScorerFn, fn)(answers, asked)
    scores = [ResponseScore(generation_id=g.id, scorer_id=scorer_id, value=o.value, raw=o.raw)
              for g, o in zip(generations, outcomes) if not o.retry]
    with store.batch() as tx:
        tx.upsert_scores(scores)
    return outcomes


def score_generations(store: Store, scorer_name: str, args: dict[str, Any] | None = None,
                      kinds: Sequence[PromptKind] | None = None, batch_size: int = 64,
                      progress: bool = True) -> ScoreSummary:
    """Score every stored generation (on prompts of `kinds`; None: every kind) that scorer
    `scorer_name` with `args` has not scored yet."""
    args = dict(args or {})
    spec = scorer_spec(scorer_name, **args)
    todo, done = pending(store, spec.id, kinds)
    summary = ScoreSummary(scorer_id=spec.id, scorer=spec.label, skipped=done)
    if not todo:  # nothing to do: no model loaded, no key needed
        return summary
    fn = create_scorer(scorer_name, **args)[1]  # a missing key fails here, before the store
    store.upsert_scorer(spec)
    requests = prompt_texts(store) if takes_requests(scorer_name) else None
    bar = tqdm(total=len(todo), disable=not progress, desc=f"score {spec.label}")
    for start in range(0, len(todo), batch_size):
        outcomes = score_batch(store, fn, spec.id, todo[start:start + batch_size], requests)
        summary.count(outcomes)
        bar.update(len(outcomes))
        if all(o.retry for o in outcomes):
            log.warning("scorer %s could not be reached; stopping (re-run to resume)", spec.label)
            break
    bar.close()
    return summary
