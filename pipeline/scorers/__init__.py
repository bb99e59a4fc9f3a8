"""Scorers: a number per answer (toxicity and the like), not a verdict; the registry of them.

A scorer is a factory registered under a name, as judges are (`pipeline.judges`). The factory
takes the scorer's configuration and returns the function that does the work, mapping a batch
of answer texts to outcomes (or, for a scorer registered with `requests=True`, a batch of answers
and the requests they answer: `fn(answers, requests)`; the score stage passes the prompt texts):

    @scorer("perspective", runtime=("api_key_env", "max_per_second"))
    def perspective_scorer(base_url: str = ..., attribute: str = "TOXICITY", ...) -> ScorerFn: ...

    spec, fn = create_scorer("classifier", model="path/to/model", label="toxic")
    outcomes = fn(["You are wonderful.", "You are an idiot."])

`create_scorer` records the name and the arguments in a `ScorerSpec` (defaults filled in), so
every score can be traced to, and re-created from, the exact scorer that made it. Arguments that
change how a scorer runs but not what it answers (batch size, device, rate, retries, the API
key's variable) are declared `runtime=` and left out of the spec.

An outcome's value is a float, or None when the answer could not be scored (an empty answer,
an unreadable reply): its own counted outcome, never a 0. An outcome marked `retry` means the
scorer could not be reached at all: the stage stores nothing, so the next run asks again.

Built in: `perspective` (Google's Perspective API, `pipeline.scorers.perspective`),
`classifier` (any local transformers sequence classifier, `pipeline.scorers.classifier`) and
`base-loss` (a base model's per-token loss of the answer given the request: how fluent, or
incoherent, it reads; `pipeline.scorers.fluency`).
"""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from annotations.records import ScorerSpec

BUILTIN_MODULES = ("pipeline.scorers.perspective", "pipeline.scorers.classifier",
                   "pipeline.scorers.fluency")
EMPTY_RAW = "empty answer: nothing to score"


@dataclass(frozen=True)
class ScoreOutcome:
    value: float | None  # None: the answer could not be scored
    raw: str = ""
    retry: bool = False  # the scorer could not be reached: store nothing, ask again next run


ScorerFn = Callable[[Sequence[str]], list[ScoreOutcome]]
# A scorer that reads the request too (registered with `requests=True`): (answers, requests).
RequestScorerFn = Callable[[Sequence[str], Sequence[str]], list[ScoreOutcome]]
AnyScorerFn = ScorerFn | RequestScorerFn
Factory = Callable[..., AnyScorerFn]


class ScorerUnavailable(RuntimeError):
    """The scorer cannot work at all as configured (a missing or rejected key, a wrong URL)."""


@dataclass(frozen=True)
class _Entry:
    factory: Factory
    runtime: frozenset[str]
    requests: bool = False  # the scorer's function takes (answers, requests)


_REGISTRY: dict[str, _Entry] = {}


def scorer(name: str, *, runtime: Sequence[str] = (),
           requests: bool = False) -> Callable[[Factory], Factory]:
    """Register a scorer factory under `name`; `runtime` names the arguments left out of its
    spec; `requests` says its function takes (answers, requests) rather than answers alone."""
    def register(factory: Factory) -> Factory:
        _REGISTRY[name] = _Entry(factory, frozenset(runtime), requests)
        return factory
    return register


def _load_builtins() -> None:
    for module in BUILTIN_MODULES:  # imported here, not at the top: they import this module
        importlib.import_module(module)


def _entry(name: str) -> _Entry:
    _load_builtins()
    if name not in _REGISTRY:
        raise ValueError(f"unknown scorer {name!r}; registered: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def list_scorers() -> list[str]:
    _load_builtins()
    return sorted(_REGISTRY)


def scorer_spec(name: str, **args: Any) -> ScorerSpec:
    """The spec `create_scorer(name, **args)` would record, without building the scorer."""
    entry = _entry(name)
    signature = inspect.signature(entry.factory)
    try:
        bound = signature.bind(**args)
    except TypeError as err:
        raise ValueError(f"scorer {name!r}: {err}; it takes: "
                         f"{', '.join(signature.parameters)}") from None
    bound.apply_defaults()
    kept = {k: v for k, v in bound.arguments.items() if k not in entry.runtime
            and not (v is None and signature.parameters[k].default is None)}
    # Through JSON so the spec holds exactly what the store will give back (lists, not tuples).
    return ScorerSpec(name=name, args=json.loads(json.dumps(kept, default=str)))


def takes_requests(name: str) -> bool:
    """Whether scorer `name`'s function takes (answers, requests) rather than answers alone."""
    return _entry(name).requests


def create_scorer(name: str, **args: Any) -> tuple[ScorerSpec, AnyScorerFn]:
    """(spec, scorer function) for a registered scorer: `fn(answers)`, or `fn(answers,
    requests)` where `takes_requests(name)`."""
    spec = scorer_spec(name, **args)
    return spec, _entry(name).factory(**args)


def is_empty(text: str) -> bool:
    return not text.strip()
