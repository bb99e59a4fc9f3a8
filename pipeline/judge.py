"""Judge stage: every stored generation this judge has not judged yet gets a verdict.

The judge is named and configured as in the registry (`pipeline.judges`); its spec is stored
with the verdicts, so each verdict can be traced to the exact judge that made it. Each batch of
verdicts is written in its own transaction, so a killed run loses at most the batch in flight
and the next run carries on from there. Judges that take a cache (the LLM and HTTP judges) get
one backed by the store (`pipeline.judges.cache.StoreCache`: one key and one payload format for
every judge), so an answer paid for once is never asked for again. Outcomes marked `retry` (the
judge could not be reached) are not stored, and the stage stops after a batch of nothing else.

    python run.py judge --judge refusal
    python run.py judge --judge llm --arg model=smollm2 --arg template=sorry_bench
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tqdm.auto import tqdm

from annotations.records import Verdict
from annotations.store import Store
from pipeline.judges import (JudgeFn, JudgeItem, JudgeOutcome, create_judge, held_back,
                             item_key, judge_spec, takes_cache)
from pipeline.judges.cache import StoreCache

log = logging.getLogger(__name__)


@dataclass
class JudgeSummary:
    judge_id: str
    judge: str  # the spec's readable label, e.g. llm(model=smollm2,template=sorry_bench)
    judged: int = 0  # verdicts written by this run
    skipped: int = 0  # generations this judge had already judged
    unparseable: int = 0
    complies: int = 0
    refuses: int = 0
    failed: int = 0  # the judge could not be reached: nothing stored, the next run asks again
    held_back: int = 0  # answers this (trained) judge was trained on: never judged by it

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def count(self, outcomes: Sequence[JudgeOutcome]) -> None:
        for outcome in outcomes:
            if outcome.retry:
                self.failed += 1
                continue
            self.judged += 1
            self.unparseable += outcome.label is None
            self.complies += outcome.label == 1
            self.refuses += outcome.label == 0


def pending(store: Store, judge_id: str) -> tuple[list[str], int]:
    """Ids of the generations still to judge (in a stable order), and how many are done."""
    frame = store.generations_frame(with_text=False)
    done = store.judged_generation_ids(judge_id)
    ids = sorted(set(frame["id"]) - done) if len(frame) else []
    return ids, len(done)


def judge_batch(store: Store, fn: JudgeFn, judge_id: str, ids: Sequence[str],
                prompt_text: dict[str, str]) -> list[JudgeOutcome]:
    """Judge one batch of generations and write its verdicts in one transaction."""
    generations = store.generations(ids)
    items = [JudgeItem(prompt_text[g.prompt_id], g.text) for g in generations]
    outcomes = fn(items)
    verdicts = [Verdict(generation_id=g.id, judge_id=judge_id, label=o.label,
                        probability=o.probability, raw=o.raw, score=o.score,
                        details=dict(o.details or {}))
                for g, o in zip(generations, outcomes) if not o.retry]
    with store.batch() as tx:
        tx.upsert_verdicts(verdicts)
    return outcomes


def judge_store(store: Store, name: str, args: dict[str, Any] | None = None,
                batch_size: int = 128, progress: bool = True,
                loaded: dict[str, JudgeFn] | None = None) -> JudgeSummary:
    """Judge every stored generation that judge `name` with `args` has not judged yet.
    `loaded` keeps judges built by earlier calls (a sweep judges after every checkpoint and
    should not reload a judge model each time)."""
    args = dict(args or {})
    spec = judge_spec(name, **args)
    todo, done = pending(store, spec.id)
    summary = JudgeSummary(judge_id=spec.id, judge=spec.label, skipped=done)
    prompt_text = dict(zip(*(store.prompts_frame()[c] for c in ("id", "text"))))
    if trained := held_back(args):
        kept = [g.id for g in store.generations(todo)
                if item_key(prompt_text[g.prompt_id], g.text) not in trained]
        summary.held_back = len(todo) - len(kept)
        todo = sorted(kept)
    if not todo:  # nothing to do: do not load a judge model for nothing
        return summary
    store.upsert_judge(spec)
    cache = StoreCache(store, spec.id) if takes_cache(name) else None
    loaded = {} if loaded is None else loaded
    if spec.id not in loaded:
        loaded[spec.id] = create_judge(name, cache=cache, **args)[1]
    fn = loaded[spec.id]
    bar = tqdm(total=len(todo), disable=not progress, desc=f"judge {spec.label}")
    for start in range(0, len(todo), batch_size):
        outcomes = judge_batch(store, fn, spec.id, todo[start:start + batch_size], prompt_text)
        summary.count(outcomes)
        bar.update(len(outcomes))
        if all(o.retry for o in outcomes):
            log.warning("judge %s could not be reached; stopping (re-run to resume)", spec.label)
            break
    bar.close()
    return summary
