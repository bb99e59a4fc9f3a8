"""The judge cache: the outcome a judge gave for a (prompt, response), kept in the store's
judge_cache table so that each is paid for (HTTP) or computed (LLM) once per store. The judge
stage hands a `StoreCache` to every judge that takes a `cache`; the judges see only items and
outcomes, never the format below.

One key and one payload for every judge:
- key: `cache_key(judge_id, prompt, response)`. It is the key the stage has always written
  (the judge's id and the item's own stable id, hashed together), so older entries are found.
- payload: JSON of the outcome as a verdict keeps it, `{"label": 1 | 0 | null, "probability":
  float | null, "raw": str}`, plus `"score"` and `"details"` when the judge gave them (entries
  written before scores existed read back without them). Outcomes marked `retry` (the judge was not reached) are not kept.

Entries written before this format: the LLM judge's hold the same JSON plus `"retry": false`
and read back as they are (extra keys are ignored). The HTTP judge's hold the bare answer text,
which carries no label (reading it needs the template): they read as a miss, so such an item is
asked once more and its entry rewritten in this format. Anything else that does not read back
(not JSON, a label other than 0, 1 or null) is a miss as well, never an error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from annotations.records import stable_id
from pipeline.judges import JudgeItem, JudgeOutcome

if TYPE_CHECKING:
    from annotations.store import Store


def cache_key(judge_id: str, prompt: str, response: str) -> str:
    return stable_id("judge-cache", judge_id, stable_id("judge-item", prompt, response))


class Payload(BaseModel):
    """What one cache entry holds."""

    model_config = ConfigDict(strict=True)
    label: Literal[0, 1] | None
    probability: float | None
    raw: str
    score: float | None = None
    details: dict[str, Any] = Field(default_factory=dict)


def dump_outcome(outcome: JudgeOutcome) -> str:
    return Payload(label=outcome.label, probability=outcome.probability, raw=outcome.raw,
                   score=outcome.score,
                   details=dict(outcome.details or {})).model_dump_json(exclude_defaults=True)


def load_outcome(payload: str) -> JudgeOutcome | None:
    """The outcome an entry holds; None (a miss) when it does not hold one in this format."""
    try:
        entry = Payload.model_validate_json(payload)
    except ValidationError:
        return None
    return JudgeOutcome(label=entry.label, probability=entry.probability, raw=entry.raw,
                        score=entry.score, details=entry.details or None)


class StoreCache:
    """A judge cache in the store's judge_cache table, for the judge with id `judge_id`."""

    def __init__(self, store: Store, judge_id: str):
        self.store = store
        self.judge_id = judge_id

    def _key(self, item: JudgeItem) -> str:
        return cache_key(self.judge_id, item.prompt, item.response)

    def get(self, items: Sequence[JudgeItem]) -> dict[JudgeItem, JudgeOutcome]:
        by_key = {self._key(item): item for item in items}
        found = {by_key[k]: load_outcome(p) for k, p in self.store.cache_get(list(by_key)).items()}
        return {item: outcome for item, outcome in found.items() if outcome is not None}

    def put(self, outcomes: Mapping[JudgeItem, JudgeOutcome]) -> None:
        self.store.cache_put(self.judge_id, {self._key(item): dump_outcome(outcome)
                                             for item, outcome in outcomes.items()
                                             if not outcome.retry})
