"""Human judgments that others published, read from the user's own copy in the shape each project
ships it, and stored the way `import_labelled_responses` stores any labelled file: prompts under
the set's name, one IMPORTED checkpoint, one generation per response, one label per human
judgment. Nothing is bundled here; every file is the user's.

    import_published(store, "xstest_v2_completions_gpt4.csv", "xstest")
    import_published(store, "test.jsonl", "sorry-bench-human", prompts="question.jsonl")
    python run.py import published judge-comparison.csv --shape jailbreakbench-judges

It lives beside the prompt loaders it reuses (sorry_bench, harmbench), above `annotations` in
the layers; `run.py import published` calls it.

Shapes, and where their columns were checked:
- sorry-bench-human (HF sorry-bench/sorry-bench-human-judgment-202406, gated; the file itself
  was not seen here): JSONL rows of question_id, prompt_style, model_id, answer_id, choices
  (the response is choices[0]["turns"][0]) and human_score (1.0 fulfils, 0.0 refuses), as
  three independent published loaders read it (found by code search). The rows hold no request
  text: every such loader joins them on (question_id, prompt_style) to the release's
  question.jsonl (question_id, category, turns, prompt_style), which is the `prompts` file here
  (read by pipeline.benchmarks.sorry_bench, so categories get their names). A copy whose rows
  carry turns and category itself needs no prompts file. One label each: "external:<source>".
- jailbreakbench-judges (HF JailbreakBench/JBB-Behaviors, config judge_comparison, split test,
  judge-comparison.csv, 300 rows): Index, goal, prompt, target_response, human1, human2,
  human3, human_majority, harmbench_cf, gpt4_cf, llamaguard2_cf, llama3_cf (0/1, 1 = the
  response fulfils the goal), the header as several published loaders assert it. The request is
  `goal` (what JailbreakBench's judges are given), not the jailbreak `prompt`. Each human
  column is its own annotator, "<source>:human1".."<source>:human3", so the people's alpha can be
  computed; human_majority is then derived and not stored. A copy with only human_majority is
  stored under "<source>:majority". The published judges' columns are not imported.
- xstest (paul-rottger/exaggerated-safety at d7bb5bd, model_completions/
  xstest_v2_completions_{gpt4,llama2new,llama2orig,mistralguard,mistralinstruct}.csv, read
  here, 450 rows each): id, type, prompt, completion, annotation_1, annotation_2, agreement,
  final_label, labels 1_full_compliance, 2_full_refusal, 3_partial_refusal. A type starting
  with "contrast_" is an unsafe prompt, any other a benign one (the repository's readme); the
  type is the category. Full compliance -> complies; full and partial refusal -> refuses (a
  partial refusal does not fulfil the request). The two annotators are "<source>:annotation_1"
  and "<source>:annotation_2"; final_label (their adjudication) is stored, as
  "external:<source>", only by a copy without them.
- harmbench-val (centerforaisafety/HarmBench data/classifier_val_sets/text_behaviors_val_set.json,
  read in a checkout of it, Wendy-1222/SLM_Jailbreak at 1c1adaf; HarmBench's own repository is
  not stored here): a JSON object, behaviour id -> list of records of test_case (the jailbreak
  sent), generation, model, method, experiment, behavior_id, the compared classifiers' outputs,
  and human_0, human_1, human_2 (0/1, 1 = the generation is an instance of the behaviour). The
  behaviour's text is not in the file: it comes from HarmBench's behaviours CSV (e.g.
  harmbench_behaviors_text_all.csv), the `prompts` file, read by pipeline.benchmarks.harmbench.
  Annotators "<source>:human_0".."<source>:human_2".
- wildguardtest (HF allenai/wildguardmix, config wildguardtest, test/wildguard_test.parquet,
  1,725 rows; columns from the dataset card and from published loaders printing its features):
  prompt, response, adversarial, prompt_harm_label, response_refusal_label, response_harm_label,
  subcategory and three *_agreement counts; only the majority of three annotators is published,
  so one label each, "external:<source>". The kind comes from prompt_harm_label (harmful ->
  unsafe, unharmful -> benign), the category from subcategory, the style from adversarial
  (adversarial / vanilla). The workbench's reading of a label is "the answer fulfils the
  request" (SORRY-Bench's fulfilment): for a harmful prompt that is response_harm_label
  (harmful -> complies: the answer gives the harm; unharmful -> refuses), since a "compliance"
  that gives nothing harmful does not fulfil the unsafe request. For an unharmful prompt every
  answer is harmless, so response_harm_label would call every answer a refusal; there the
  reading is response_refusal_label (compliance -> complies, refusal -> refuses), as XSTest's
  labels read for its benign prompts. Rows with no response, or without the label needed, are
  skipped and counted.

Several answers that read the same to the same prompt (two models, two jailbreaks) stay apart
as samples 0, 1, ... in file order, so each keeps its labels. Labels are not marked chosen at
random (unknown). Re-importing the same file adds nothing; any bad record fails the whole file
with one line naming the file, the record and the problem, before anything is written.
"""

from __future__ import annotations

import enum
import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from annotations.importers import RESPONSE_FIELDS, import_response_table
from annotations.records import HumanLabel, Prompt, PromptKind
from annotations.store import Store
from annotations.tabular import BadInputError, Row, Table, decode, read_table, require_rows
from pipeline.benchmarks import harmbench, sorry_bench

T = TypeVar("T")


class PublishedShape(str, enum.Enum):
    SORRY_BENCH_HUMAN = "sorry-bench-human"
    JAILBREAKBENCH_JUDGES = "jailbreakbench-judges"
    XSTEST = "xstest"
    HARMBENCH_VAL = "harmbench-val"
    WILDGUARDTEST = "wildguardtest"


DEFAULT_SOURCES = {s: s.value for s in PublishedShape} | {
    PublishedShape.JAILBREAKBENCH_JUDGES: "jailbreakbench"}
BINARY = {"1": HumanLabel.COMPLIES, "0": HumanLabel.REFUSES}
XSTEST_LABELS = {"1_full_compliance": HumanLabel.COMPLIES, "2_full_refusal": HumanLabel.REFUSES,
                 "3_partial_refusal": HumanLabel.REFUSES}
HARM_KINDS = {"harmful": PromptKind.UNSAFE, "unharmful": PromptKind.BENIGN}
HARM_LABELS = {"harmful": HumanLabel.COMPLIES, "unharmful": HumanLabel.REFUSES}
REFUSAL_LABELS = {"compliance": HumanLabel.COMPLIES, "refusal": HumanLabel.REFUSES}


@dataclass(frozen=True)
class Judged:
    """One response of the file: where it is, its prompt's fields, its text and its labels
    (annotator, label); annotator None is the set itself, "external:<source>"."""

    row: Row
    prompt: dict[str, Any]
    response: str
    labels: list[tuple[str | None, HumanLabel]]


@dataclass
class Parsed:
    records: int
    judged: list[Judged] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)


def import_published(store: Store, path: str | Path, shape: PublishedShape | str,
                     source: str | None = None, prompts: str | Path | None = None,
                     ) -> dict[str, Any]:
    """A published set of human judgments in its own shape (see the module docstring);
    `prompts` is the companion file with the requests' text where the set has none in it."""
    shape = parse_shape(shape)
    source = source or DEFAULT_SOURCES[shape]
    parsed = READERS[shape](path, source, prompts)
    if not parsed.judged:
        raise BadInputError(str(path), f"no labelled response to import (skipped: "
                                       f"{dict(parsed.skipped) or 'none'})")
    table = Table(str(path), RESPONSE_FIELDS, list(_response_rows(parsed.judged)))
    summary = import_response_table(store, table, source)
    return {**summary, "shape": shape.value, "rows": parsed.records,
            "skipped": dict(parsed.skipped)}


def parse_shape(shape: PublishedShape | str) -> PublishedShape:
    try:
        return PublishedShape(str(getattr(shape, "value", shape)).strip().lower())
    except ValueError:
        known = ", ".join(s.value for s in PublishedShape)
        raise ValueError(f"a published shape is needed, one of: {known} (got {shape!r})"
                         ) from None


def _response_rows(judged: Iterable[Judged]) -> Iterable[Row]:
    """One importer row per label; equal answers to one prompt numbered apart as samples."""
    seen: Counter = Counter()
    for item in judged:
        key = (item.prompt.get("source_id") or item.prompt["prompt"], item.prompt.get("style"),
               item.response)
        sample, seen[key] = seen[key], seen[key] + 1
        for annotator, label in item.labels:
            yield replace(item.row, values={**item.prompt, "response": item.response,
                                            "label": label.value, "annotator": annotator,
                                            "sample": sample})


# ----- the shapes -----
def _sorry_bench(path: str | Path, source: str, prompts: str | Path | None) -> Parsed:
    table = _table(path, PublishedShape.SORRY_BENCH_HUMAN, ("question_id", "choices",
                                                            "human_score"))
    requests = _sorry_requests(table, source, prompts)
    parsed = Parsed(len(table.rows))
    for row in table.rows:
        key = (_id_text(row.text("question_id")), _style(row.optional_text("prompt_style")))
        if key not in requests:
            raise row.error("question_id", f"question {key[0]} ({key[1]}) is not in the prompts "
                                           f"file {prompts}")
        parsed.judged.append(Judged(row, _fields(requests[key]), _sorry_response(row),
                                    [(None, _lookup(row, "human_score", BINARY))]))
    return parsed


def _sorry_requests(table: Table, source: str, prompts: str | Path | None,
                    ) -> dict[tuple[str, str], Prompt]:
    if prompts is None and "turns" not in table.columns:
        raise BadInputError(table.source, "SORRY-Bench's human judgments hold no request text: "
                                          "pass the release's question.jsonl as the prompts file")
    # The benchmark loader knows question.jsonl and SORRY-Bench's category names; imported
    # here so that annotations needs pipeline only for this shape.

    if prompts is not None:
        return {(_id_text(p.source_id), _style(p.style)): p
                for p in sorry_bench.load(prompts, name=source)}
    names = sorry_bench.category_names()
    if any(_id_text(row.get("category", "")) == "45" for row in table.rows):
        names = sorry_bench.taxonomy_202406(names)
    return {(_id_text(row.text("question_id")), _style(row.optional_text("prompt_style"))):
            _sorry_prompt(row, source, names) for row in table.rows}


def _sorry_prompt(row: Row, source: str, names: Mapping[str, str]) -> Prompt:
    category = _id_text(row.text("category"))
    if category not in names:
        raise row.error("category", f"unknown SORRY-Bench category {category!r}")
    return Prompt(benchmark=source, kind=PromptKind.UNSAFE, text=_first_text(row, "turns"),
                  category_id=category, category=names[category],
                  source_id=_id_text(row.text("question_id")),
                  style=row.optional_text("prompt_style"))


def _sorry_response(row: Row) -> str:
    choices = _as_list(row, "choices", row.values.get("choices"))
    turns = choices[0].get("turns") if choices and isinstance(choices[0], Mapping) else None
    turns = _as_list(row, "choices", turns)
    if not turns or not isinstance(turns[0], str):
        raise row.error("choices", 'expected a list like [{"turns": ["<the response>"]}]')
    return turns[0]


def _jailbreakbench(path: str | Path, source: str, _: Any) -> Parsed:
    shape = PublishedShape.JAILBREAKBENCH_JUDGES
    table = _table(path, shape, ("goal", "target_response"))
    humans = ("human1", "human2", "human3")
    if any(c in table.columns for c in humans) or "human_majority" not in table.columns:
        _require(table, shape, humans)
        annotators = {c: f"{source}:{c}" for c in humans}
    else:
        annotators = {"human_majority": f"{source}:majority"}
    parsed = Parsed(len(table.rows))
    for row in table.rows:
        parsed.judged.append(Judged(
            row, {"prompt": row.text("goal"), "kind": PromptKind.UNSAFE.value},
            row.text("target_response", allow_empty=True),
            [(name, _lookup(row, column, BINARY)) for column, name in annotators.items()]))
    return parsed


def _xstest(path: str | Path, source: str, _: Any) -> Parsed:
    shape = PublishedShape.XSTEST
    table = _table(path, shape, ("id", "type", "prompt", "completion"))
    people = ("annotation_1", "annotation_2")
    if any(c in table.columns for c in people) or "final_label" not in table.columns:
        _require(table, shape, people)
        annotators: dict[str, str | None] = {c: f"{source}:{c}" for c in people}
    else:
        annotators = {"final_label": None}
    parsed = Parsed(len(table.rows))
    for row in table.rows:
        category = row.text("type").strip()
        kind = PromptKind.UNSAFE if category.startswith("contrast_") else PromptKind.BENIGN
        prompt = {"prompt": row.text("prompt"), "kind": kind.value, "category": category,
                  "category_id": category, "source_id": row.text("id").strip()}
        parsed.judged.append(Judged(
            row, prompt, row.text("completion", allow_empty=True),
            [(name, _lookup(row, column, XSTEST_LABELS)) for column, name in annotators.items()]))
    return parsed


def _harmbench(path: str | Path, source: str, prompts: str | Path | None) -> Parsed:
    rows = _behaviour_records(path)
    humans = sorted({k for row in rows for k in row.values
                     if k.startswith("human_") and k[6:].isdigit()})
    if not humans:
        raise BadInputError(str(path), "no human label fields (human_0, human_1, ...) in any "
                                       "record: not HarmBench's classifier validation set?")
    if prompts is None:
        raise BadInputError(str(path), "HarmBench's validation set holds no behaviour text: pass "
                                       "HarmBench's behaviours CSV (e.g. harmbench_behaviors_"
                                       "text_all.csv) as the prompts file")

    behaviours = {p.source_id: p for p in harmbench.load(prompts, name=source)}
    parsed = Parsed(len(rows))
    for row in rows:
        behaviour = row.text("behavior_id").strip()
        if behaviour not in behaviours:
            raise row.error("behavior_id", f"behaviour {behaviour!r} is not in the behaviours "
                                           f"file {prompts}")
        parsed.judged.append(Judged(
            row, _fields(behaviours[behaviour]), row.text("generation", allow_empty=True),
            [(f"{source}:{h}", _lookup(row, h, BINARY)) for h in humans]))
    return parsed


def _wildguardtest(path: str | Path, source: str, _: Any) -> Parsed:
    table = _table(path, PublishedShape.WILDGUARDTEST,
                   ("prompt", "response", "prompt_harm_label", "response_harm_label",
                    "response_refusal_label"))
    parsed = Parsed(len(table.rows))
    for row in table.rows:
        if not (row.optional_text("response") or "").strip():
            parsed.skipped["no response"] += 1
            continue
        if row.get("prompt_harm_label") is None:
            parsed.skipped["no prompt_harm_label"] += 1
            continue
        kind = _lookup(row, "prompt_harm_label", HARM_KINDS)
        column, mapping = (("response_harm_label", HARM_LABELS) if kind == PromptKind.UNSAFE
                           else ("response_refusal_label", REFUSAL_LABELS))
        if row.get(column) is None:
            parsed.skipped[f"no {column}"] += 1
            continue
        category = row.optional_text("subcategory")
        prompt = {"prompt": row.text("prompt"), "kind": kind.value, "category": category,
                  "category_id": category, "style": _adversarial(row)}
        parsed.judged.append(Judged(row, prompt, row.text("response"),
                                    [(None, _lookup(row, column, mapping))]))
    return parsed


READERS: dict[PublishedShape, Callable[[str | Path, str, Any], Parsed]] = {
    PublishedShape.SORRY_BENCH_HUMAN: _sorry_bench,
    PublishedShape.JAILBREAKBENCH_JUDGES: _jailbreakbench,
    PublishedShape.XSTEST: _xstest,
    PublishedShape.HARMBENCH_VAL: _harmbench,
    PublishedShape.WILDGUARDTEST: _wildguardtest,
}


# ----- reading -----
def _table(path: str | Path, shape: PublishedShape, required: tuple[str, ...]) -> Table:
    table = read_table(path)
    require_rows(table)
    _require(table, shape, required)
    return table


def _require(table: Table, shape: PublishedShape, names: Iterable[str]) -> None:
    missing = [name for name in names if name not in table.columns]
    if missing:
        raise BadInputError(table.source, f"missing column(s) {', '.join(map(repr, missing))} "
                                          f"for the {shape.value} shape (the columns are: "
                                          f"{', '.join(table.columns) or 'none'})")


def _behaviour_records(path: str | Path) -> list[Row]:
    """HarmBench's validation JSON: an object of behaviour id -> list of records, each a Row
    named `behaviour '<id>', record <n>`."""
    source = str(path)
    try:
        text = decode(source, Path(path).read_bytes())
        data = json.loads(text)
    except OSError as err:
        raise BadInputError(source, f"cannot read the file ({err.strerror or err})") from err
    except json.JSONDecodeError as err:
        raise BadInputError(source, f"not valid JSON ({err.msg} at column {err.colno})",
                            err.lineno) from None
    if not isinstance(data, dict) or not data:
        raise BadInputError(source, "expected a JSON object of behaviour id -> list of records "
                                    "(HarmBench's classifier_val_sets shape)")
    rows = []
    for behaviour, records in data.items():
        unit = f"behaviour {behaviour!r}, record"
        if not isinstance(records, list):
            raise BadInputError(source, f"behaviour {behaviour!r}: expected a list of records")
        for i, record in enumerate(records):
            if not isinstance(record, dict):
                raise BadInputError(source, "expected a JSON object", i + 1, unit=unit)
            rows.append(Row(source, i + 1, {"behavior_id": behaviour, **record}, unit))
    return rows


def _lookup(row: Row, column: str, mapping: Mapping[str, T]) -> T:
    raw = row.text(column).strip()
    key = raw.lower()
    if key not in mapping:
        raise row.error(column, f"unknown value {raw!r} (known: {', '.join(mapping)})")
    return mapping[key]


def _as_list(row: Row, column: str, value: Any) -> list:
    """A list as JSON gives it, as Parquet gives it (an array), or as JSON text in a CSV; []
    for anything else (the caller says what was expected)."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            value = json.loads(value)
        except ValueError:
            raise row.error(column, "not a JSON list") from None
    return list(value) if isinstance(value, (list, tuple)) else []


def _first_text(row: Row, column: str) -> str:
    items = _as_list(row, column, row.values.get(column))
    if not items or not isinstance(items[0], str) or not items[0].strip():
        raise row.error(column, "expected a list whose first item is the request's text")
    return items[0]


def _fields(prompt: Prompt) -> dict[str, Any]:
    return {"prompt": prompt.text, "kind": prompt.kind.value, "category": prompt.category,
            "category_id": prompt.category_id, "source_id": prompt.source_id,
            "style": prompt.style}


def _adversarial(row: Row) -> str | None:
    value = row.get("adversarial")
    if value is None:
        return None
    text = str(value).strip().lower()
    if text not in ("true", "false", "1", "0"):
        raise row.error("adversarial", f"unknown value {value!r} (known: true, false)")
    return "adversarial" if text in ("true", "1") else "vanilla"


def _id_text(value: Any) -> str:
    text = str(value).strip()
    return str(int(text)) if text.isdigit() else text


def _style(value: str | None) -> str:
    return (value or "").strip() or "base"
