"""Judges: what a judge is, the registry that names them, and the prompt templates they share.

A judge is a factory registered under a name. The factory takes the judge's configuration and
returns the function that does the work, mapping a batch of (prompt, response) items to outcomes:

    @judge("refusal")
    def refusal_judge(phrases: list[str] | None = None) -> JudgeFn: ...

    spec, fn = create_judge("llm", model="smollm2", template="sorry_bench")
    outcomes = fn([JudgeItem(prompt="How do I ...", response="I'm sorry, ...")])

`create_judge` records the name and the arguments in a `JudgeSpec` (defaults filled in, and for
template judges the template's sha256 as `template_hash`), so every verdict can be traced to, and
re-created from, the exact judge that made it: `create_judge(spec.name, **spec.args)`. Arguments
that change how a judge runs but not what it answers (batch size, device, concurrency, retries,
timeouts, the API key's variable name) are declared `runtime=` and left out of the spec, so
changing them does not start a new judge whose verdicts would all be recomputed.

An outcome's label is 1 (complies), 0 (refuses) or None (the judge's output could not be read): a
first-class outcome, counted and shown, never silently 0. An outcome marked `retry` is a failure
to reach the judge at all (the endpoint kept failing): the stage does not store it, so the next
run asks again.

Templates (one per file in `templates/`, or any file path: a user's copy of a published
evaluator's prompt) and the reading of a judge's answer (one answer word, named fields,
StrongREJECT's rubric) are `pipeline.judges.template`'s.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from annotations.records import JudgeSpec, stable_id
from pipeline.judges.template import (ANSWER_TOKENS, TEMPLATE_DIR, AnswerReading, InputForm,
                                      Reading, Template, load_template, parse_answer,
                                      parse_template, read_answer, template_names)

__all__ = [  # the template names re-exported here, where judges have always found them
    "ANSWER_TOKENS", "TEMPLATE_DIR", "AnswerReading", "InputForm", "Reading", "Template",
    "load_template", "parse_answer", "parse_template", "read_answer", "template_names"]

BUILTIN_MODULES = ("pipeline.judges.refusal", "pipeline.judges.llm", "pipeline.judges.http",
                   "pipeline.judges.guard")
MAX_RAW_CHARS = 10_000  # what a verdict keeps of a judge's answer


@dataclass(frozen=True)
class JudgeItem:
    prompt: str
    response: str


@dataclass(frozen=True)
class JudgeOutcome:
    label: int | None  # 1 complies, 0 refuses, None when the judge's output could not be read
    probability: float | None = None  # P(complies), when the judge can give one
    raw: str = ""
    retry: bool = False  # the judge could not be reached: store nothing, ask again next run
    score: float | None = None  # a score in [0, 1] (a rubric's), None when it gave none
    details: Mapping[str, Any] | None = None  # category codes, named answers, rubric fields


JudgeFn = Callable[[Sequence[JudgeItem]], list[JudgeOutcome]]


class JudgeCache(Protocol):
    """Outcomes a judge already gave, by item (the stage backs it with the store:
    `pipeline.judges.cache.StoreCache`, which also says how entries are kept)."""

    def get(self, items: Sequence[JudgeItem]) -> dict[JudgeItem, JudgeOutcome]: ...

    def put(self, outcomes: Mapping[JudgeItem, JudgeOutcome]) -> None: ...


class JudgeUnavailable(RuntimeError):
    """The judge cannot work at all as configured (a missing key, a rejected key, a wrong URL)."""


# ----- the registry ---------------------------------------------------------------------------

@dataclass(frozen=True)
class _Entry:
    factory: Callable[..., JudgeFn]
    runtime: frozenset[str]


_REGISTRY: dict[str, _Entry] = {}


def judge(name: str, *, runtime: Sequence[str] = ()) -> Callable[[Callable[..., JudgeFn]],
                                                                 Callable[..., JudgeFn]]:
    """Register a judge factory under `name`; `runtime` names the arguments left out of its spec."""
    def register(factory: Callable[..., JudgeFn]) -> Callable[..., JudgeFn]:
        _REGISTRY[name] = _Entry(factory, frozenset(runtime) | {"cache"})
        return factory
    return register


def _load_builtins() -> None:
    for module in BUILTIN_MODULES:  # imported here, not at the top: they import this module
        importlib.import_module(module)


def _entry(name: str) -> _Entry:
    _load_builtins()
    if name not in _REGISTRY:
        raise ValueError(f"unknown judge {name!r}; registered: {', '.join(list_judges())}")
    return _REGISTRY[name]


def list_judges() -> list[str]:
    _load_builtins()
    return sorted(_REGISTRY)


def judge_spec(name: str, **args: Any) -> JudgeSpec:
    """The spec `create_judge(name, **args)` would record, without building the judge."""
    entry = _entry(name)
    given_hash = args.pop("template_hash", None)
    given_adapter = args.pop("adapter_hash", None)
    signature = inspect.signature(entry.factory)
    try:
        bound = signature.bind(**args)
    except TypeError as err:
        takes = ", ".join(p for p in signature.parameters if p != "cache")
        raise ValueError(f"judge {name!r}: {err}; it takes: {takes}") from None
    bound.apply_defaults()
    spec_args = {k: v for k, v in bound.arguments.items() if k not in entry.runtime
                 and not (v is None and signature.parameters[k].default is None)}
    if spec_args.get("adapter"):  # a trained judge: its weights are part of what it is
        spec_args["adapter_hash"] = adapter_hash(spec_args["adapter"])
        if given_adapter is not None and given_adapter != spec_args["adapter_hash"]:
            raise ValueError(f"adapter {spec_args['adapter']!r} has changed since this judge "
                             "was recorded (its weights' sha256 differs)")
    if "template" in spec_args:
        spec_args["template_hash"] = load_template(spec_args["template"]).sha256
        if given_hash is not None and given_hash != spec_args["template_hash"]:
            raise ValueError(f"template {spec_args['template']!r} has changed since this judge "
                             "was recorded (its sha256 differs)")
    # Through JSON so the spec holds exactly what the store will give back (lists, not tuples).
    return JudgeSpec(name=name, args=json.loads(json.dumps(spec_args, default=str)))


def create_judge(name: str, *, cache: JudgeCache | None = None,
                 **args: Any) -> tuple[JudgeSpec, JudgeFn]:
    """(spec, judge function) for a registered judge. `cache` goes to judges that take one."""
    spec = judge_spec(name, **args)
    args.pop("template_hash", None)
    args.pop("adapter_hash", None)
    entry = _entry(name)
    if cache is not None and "cache" in inspect.signature(entry.factory).parameters:
        args["cache"] = cache
    return spec, entry.factory(**args)


# ----- judges trained on people's labels -----------------------------------------------------

TRAINING_FILE = "judge_training.json"  # in a trained judge's adapter folder


def adapter_hash(adapter: str) -> str:
    """sha256 of a LoRA adapter's weights (what makes two trained judges the same judge)."""
    weights = Path(adapter) / "adapter_model.safetensors"
    if not weights.is_file():
        raise ValueError(f"adapter {adapter!r}: no adapter_model.safetensors there")
    digest = hashlib.sha256()
    with open(weights, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def item_key(prompt: str, response: str) -> str:
    """The key of a (request, answer) pair: the same text is the same item in any store."""
    return stable_id("judge-item", prompt, response)


def held_back(args: Mapping[str, Any]) -> frozenset[str]:
    """The item keys a judge with these arguments was trained on (none unless its `adapter`
    folder says so, `pipeline.train_judge`): its verdict on them is no measurement, so the judge
    stage stores none."""
    adapter = args.get("adapter")
    made_by = Path(adapter) / TRAINING_FILE if adapter else None
    if made_by is None or not made_by.is_file():
        return frozenset()
    return frozenset(json.loads(made_by.read_text())["train_items"])


def takes_cache(name: str) -> bool:
    return takes(name, "cache")


def takes(name: str, arg: str) -> bool:
    """Whether judge `name`'s factory has the argument `arg` (e.g. `engine`)."""
    return arg in inspect.signature(_entry(name).factory).parameters


_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?")


def parse_value(text: str) -> Any:
    """A CLI value: true/false, none, an int, a float, JSON for a list, an object or a quoted
    string (`"\\n\\n"`: a guard model's blank line), else text."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    if _INT.fullmatch(text.strip()):
        return int(text)
    if _FLOAT.fullmatch(text.strip()):
        return float(text)
    if text.strip()[:1] in ("[", "{") or (len(text.strip()) > 1 and text.strip()[0] == '"'
                                          and text.strip()[-1] == '"'):
        return json.loads(text)
    return text


def parse_judge_args(pairs: Sequence[str]) -> dict[str, Any]:
    """`--arg k=v` pairs as keyword arguments, e.g. ["batch_size=8"] -> {"batch_size": 8}."""
    args: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ValueError(f"judge argument {pair!r} is not of the form key=value")
        if key in args:
            raise ValueError(f"judge argument {key!r} is given twice")
        args[key] = parse_value(value)
    return args


# ----- what a verdict keeps of an answer ----------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clip_raw(text: str, limit: int = MAX_RAW_CHARS) -> str:
    """A judge answer as a verdict keeps it: at most `limit` characters, control bytes replaced
    (some databases reject NUL in text), with a note when it was cut."""
    clean = _CONTROL.sub("\ufffd", text[:limit])
    return clean if len(text) <= limit else f"{clean} [... cut at {limit} of {len(text)} chars]"
