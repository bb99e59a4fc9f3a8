"""A user's own capability tasks: task-set files, the metrics each shape allows, and how an
answer is checked against its references. No model here (pipeline/capability.py runs them).

Two shapes of JSONL or CSV file (one record a line or row):

- `qa`: a question (column `question`, `prompt` or `input`) and one or more reference answers
  (`answers` as a list, or `answer` / `target` as one text; in a CSV a list is a JSON list in
  the cell). Scored on greedy answers by `exact_match` and `contains`.
- `multiple_choice`: a question, `choices` (or `options`: a list; in a CSV a JSON list in the
  cell, or columns A, B, C, ... as MMLU's CSVs have them) and the right one in `answer` or
  `label`: a 0-based index, a letter (A for the first), or the option's text. Scored by
  `choice_accuracy` and `choice_accuracy_norm` (lm-eval-harness's acc and acc_norm).

    items = load_tasks("qa", "demo_data/capability_qa.jsonl", n=16, seed=0)
    exact_match("The Pacific.", ["pacific", "Pacific Ocean"])   # True

Every problem in a file is a `BadInputError` naming file, line and field in one line, as the
other loaders give it (annotations/tabular.py). A held-out instruction set with reference answers
(the sweep's `capability:` section, pipeline/instructions.py) is the third kind of task set: the
one `reference_loss` and `rouge_l` need.
"""

from __future__ import annotations

import enum
import json
import random
import re
import string
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from annotations.hub import require_dataset
from annotations.records import CapabilityMetric, stable_id
from annotations.tabular import (BadInputError, Row, Table, ensure_unique, read_source,
                                 rename_columns, require_rows)

if TYPE_CHECKING:
    from pipeline.config import TaskSpec

QUESTION_COLUMNS = ("question", "prompt", "input")
ANSWER_COLUMNS = ("answers", "answer", "target")
CHOICE_COLUMNS = ("choices", "options")
LABEL_COLUMNS = ("answer", "label")
LETTERS = string.ascii_uppercase
T = TypeVar("T")


class TaskShape(str, enum.Enum):
    """The kind of task set a metric is measured on."""

    HELDOUT = "heldout"  # instruction pairs with a reference answer (the `capability:` section)
    QA = "qa"
    MULTIPLE_CHOICE = "multiple_choice"

    @classmethod
    def parse(cls, text: str) -> TaskShape:
        """`qa`, `multiple_choice` (or `multiple-choice`), `heldout`; else a one-line error."""
        try:
            return cls(text.strip().lower().replace("-", "_"))
        except ValueError:
            known = ", ".join(s.value for s in cls)
            raise ValueError(f"unknown task shape {text!r} (known: {known})") from None


_NEEDS = {CapabilityMetric.REFERENCE_LOSS: TaskShape.HELDOUT,
          CapabilityMetric.ROUGE_L: TaskShape.HELDOUT,
          CapabilityMetric.EXACT_MATCH: TaskShape.QA,
          CapabilityMetric.CONTAINS: TaskShape.QA,
          CapabilityMetric.CHOICE_ACCURACY: TaskShape.MULTIPLE_CHOICE,
          CapabilityMetric.CHOICE_ACCURACY_NORM: TaskShape.MULTIPLE_CHOICE}


def task_shape(metric: CapabilityMetric | str) -> TaskShape:
    """The kind of task set `metric` needs."""
    return _NEEDS[CapabilityMetric(metric)]


def metrics_for(shape: TaskShape) -> tuple[CapabilityMetric, ...]:
    """Every metric a task set of `shape` can give, in the enum's order."""
    return tuple(m for m in CapabilityMetric if task_shape(m) is shape)


@dataclass(frozen=True)
class QAItem:
    """A question and the answers that count as right (any one of them)."""

    id: str
    question: str
    answers: tuple[str, ...]


@dataclass(frozen=True)
class ChoiceItem:
    """A question, its options, and the index of the right option."""

    id: str
    question: str
    choices: tuple[str, ...]
    answer: int


TaskItem = QAItem | ChoiceItem


@dataclass(frozen=True)
class TaskSet:
    """A loaded task set as a sweep measures it: stored under `name` as the benchmark."""

    name: str
    shape: TaskShape
    items: tuple[TaskItem, ...]
    metrics: tuple[CapabilityMetric, ...]
    max_new_tokens: int = 32
    batch_size: int = 16


# ----- scoring answers ----------------------------------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lowercase, punctuation removed (Unicode punctuation too, so
    curly quotes and dashes go as ASCII ones do), the articles a/an/the removed, whitespace
    collapsed. "The  Pacific-Ocean!" -> "pacificocean"."""
    text = "".join(ch for ch in text.lower() if not _is_punctuation(ch))
    return " ".join(_ARTICLES.sub(" ", text).split())


def _is_punctuation(ch: str) -> bool:
    return ch in string.punctuation or unicodedata.category(ch).startswith("P")


def exact_match(answer: str, references: Sequence[str]) -> bool:
    """The normalised answer equals a normalised reference."""
    said = normalize_answer(answer)
    return any(said == normalize_answer(ref) for ref in references)


def contains_answer(answer: str, references: Sequence[str]) -> bool:
    """A normalised reference occurs in the normalised answer as whole words ("4" is not found
    in "14"); a reference that normalises to nothing is never found."""
    said = f" {normalize_answer(answer)} "
    return any(ref and f" {ref} " in said for ref in map(normalize_answer, references))


def qa_accuracy(metric: CapabilityMetric, answers: Sequence[str],
                items: Sequence[QAItem]) -> float:
    """The share of `answers` (one per item) that are right by `metric` (exact_match or
    contains)."""
    check = {CapabilityMetric.EXACT_MATCH: exact_match,
             CapabilityMetric.CONTAINS: contains_answer}[metric]
    if len(answers) != len(items):
        raise ValueError(f"{len(answers)} answers for {len(items)} questions")
    return _mean([check(a, item.answers) for a, item in zip(answers, items)])


def choice_accuracy(loglikelihoods: Sequence[Sequence[float]], items: Sequence[ChoiceItem],
                    per_character: bool = False) -> float:
    """The share of items whose likeliest option is the right one (the first of equals wins,
    as numpy's argmax in lm-eval). `per_character`: each log-likelihood divided by the option's
    length in characters first, lm-eval's acc_norm."""
    right = []
    for lls, item in zip(loglikelihoods, items, strict=True):
        scores = [ll / len(c) if per_character else ll for ll, c in zip(lls, item.choices)]
        right.append(max(range(len(scores)), key=scores.__getitem__) == item.answer)
    return _mean(right)


def _mean(flags: Sequence[bool]) -> float:
    return sum(flags) / len(flags) if flags else 0.0


# ----- loading task files -------------------------------------------------------------------

def load_tasks(shape: TaskShape | str, path: str | Path, n: int | None = None, seed: int = 0,
               columns: str | Mapping[str, str] | None = None) -> list[TaskItem]:
    """The items of a task-set file (or hub id) of `shape` (qa or multiple_choice); `n` of them
    (seeded, in file order) when `n` is set; `columns` renames (`question=query`)."""
    shape = TaskShape.parse(shape) if isinstance(shape, str) else shape
    if shape is TaskShape.HELDOUT:
        raise ValueError("a held-out instruction set is read by pipeline/instructions.py (the "
                         "sweep's `capability:` section), not as a task set")
    require_dataset(path, hint="download it")  # offline, a hub id fails now, not after ~25 s
    known = QUESTION_COLUMNS + ANSWER_COLUMNS + CHOICE_COLUMNS + LABEL_COLUMNS + ("id",)
    table = rename_columns(read_source(path, hub_hint="download it"), columns, known)
    require_rows(table)
    _column(table, QUESTION_COLUMNS, "question")
    if shape is TaskShape.QA:
        _column(table, ANSWER_COLUMNS, "answer")
        items: list[TaskItem] = [_qa_item(row) for row in table.rows]
    else:
        letters = _choice_letters(table)
        _column(table, LABEL_COLUMNS, "answer")
        items = [_choice_item(row, letters) for row in table.rows]
    _unique(table, items)
    return subsample(items, n, seed)


def load_task_set(spec: TaskSpec) -> TaskSet:
    """A sweep config's task set, read and subsampled, with the metrics it asks for (all the
    shape allows when it names none)."""
    shape = TaskShape.parse(spec.shape)
    metrics = tuple(CapabilityMetric(m) for m in spec.metrics) or metrics_for(shape)
    wrong = [m.value for m in metrics if task_shape(m) is not shape]
    if wrong:
        raise ValueError(f"task set {spec.name!r}: {', '.join(wrong)} cannot be measured on a "
                         f"{shape.value} task set")
    items = load_tasks(shape, spec.path, n=spec.n, seed=spec.seed, columns=spec.columns)
    return TaskSet(spec.name, shape, tuple(items), metrics, spec.max_new_tokens,
                   spec.batch_size)


def task_sets(specs: Sequence[TaskSpec]) -> list[TaskSet]:
    """Every task set of a sweep config, read and checked; two with one name are refused (each
    one's scores are stored under its name)."""
    names = [spec.name for spec in specs]
    twice = next((name for i, name in enumerate(names) if name in names[:i]), None)
    if twice is not None:
        raise ValueError(f"tasks: the name {twice!r} is given to two task sets")
    return [load_task_set(spec) for spec in specs]


def subsample(items: Sequence[T], n: int | None, seed: int) -> list[T]:
    """`n` items drawn with `seed`, in file order; all of them when `n` is None or too big."""
    if n is None or n >= len(items):
        return list(items)
    if n < 1:
        raise ValueError(f"n must be at least 1, not {n}")
    return [items[i] for i in sorted(random.Random(seed).sample(range(len(items)), n))]


def _column(table: Table, names: Sequence[str], what: str) -> str:
    """The first of `names` the file has, else a one-line error naming the columns it has."""
    found = next((name for name in names if name in table.columns), None)
    if found is None:
        there = ", ".join(table.columns) or "none"
        raise BadInputError(table.source, f"no {what} column (one of {', '.join(names)}; the "
                                          f"columns are: {there}); rename with --columns "
                                          f"{names[0]}=<column>")
    return found


def _field(row: Row, names: Sequence[str]) -> str:
    """The first of `names` this row has a value in (a file may mix them), else the first."""
    return next((name for name in names if row.get(name) is not None), names[0])


def _qa_item(row: Row) -> QAItem:
    text = row.text(_field(row, QUESTION_COLUMNS))
    field = _field(row, ANSWER_COLUMNS)
    answers = tuple(_texts(row, field, "answers"))
    for answer in answers:
        if not normalize_answer(answer):
            raise row.error(field, f"answer {answer!r} is empty once normalised (lowercase, no "
                                   "punctuation or articles), so no answer could match it")
    return QAItem(_id(row, "qa", text, answers), text, answers)


def _choice_item(row: Row, letters: tuple[str, ...]) -> ChoiceItem:
    text = row.text(_field(row, QUESTION_COLUMNS))
    choices = tuple(_choices(row, letters))
    answer = _answer_index(row, _field(row, LABEL_COLUMNS), choices)
    return ChoiceItem(_id(row, "choice", text, choices, answer), text, choices, answer)


def _texts(row: Row, field: str, what: str) -> list[str]:
    """A list of non-empty texts: a JSON list, a JSON list written in a CSV cell, or one text."""
    value = row.values.get(field)
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass  # a text that happens to start with a bracket
    if not isinstance(value, list):
        return [row.text(field)]
    if not value:
        raise row.error(field, f"empty {what} (an empty list)")
    texts = [_item_text(row, field, v, i, what) for i, v in enumerate(value)]
    return texts


def _item_text(row: Row, field: str, value: Any, i: int, what: str) -> str:
    if value is None or isinstance(value, (dict, list, bool)):
        raise row.error(field, f"{what} item {i}: expected text, got {json.dumps(value)}")
    text = str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    if not text.strip():
        raise row.error(field, f"{what} item {i} is empty")
    return text


def _choice_letters(table: Table) -> tuple[str, ...]:
    """Without a choices column, the option columns A, B, C, ... (MMLU's CSV layout); with
    one, none. Neither: a one-line error."""
    if any(name in table.columns for name in CHOICE_COLUMNS):
        return ()
    letters = tuple(letter for letter in LETTERS if letter in table.columns)
    if letters != tuple(LETTERS[:len(letters)]) or len(letters) < 2:
        raise BadInputError(table.source, "no choices column (choices or options, a list; or "
                                          "one column per option named A, B, C, ...); the "
                                          f"columns are: {', '.join(table.columns)}")
    return letters


def _choices(row: Row, letters: tuple[str, ...]) -> list[str]:
    if letters:
        field, choices = letters[0], [row.text(letter) for letter in letters]
    else:
        field = _field(row, CHOICE_COLUMNS)
        choices = _texts(row, field, "choices")
    if len(choices) < 2:
        raise row.error(field, f"{len(choices)} choice; a multiple-choice question needs 2 or "
                               "more")
    for i, choice in enumerate(choices):
        if choice in choices[:i]:
            raise row.error(field, f"choices {choices.index(choice)} and {i} are the same text "
                                   f"{choice!r}")
    return choices


def _answer_index(row: Row, field: str, choices: tuple[str, ...]) -> int:
    """The right option's index from an index, a letter, or the option's own text; a text that
    is one option and as a letter or index points at another is refused as ambiguous."""
    value = row.values.get(field)
    if isinstance(value, bool) or value is None or value == "":
        raise row.error(field, f"expected the right option's index, letter or text, got "
                               f"{json.dumps(value)}")
    if isinstance(value, (int, float)):
        if not float(value).is_integer():
            raise row.error(field, f"{value!r} is not a whole number")
        return _in_range(row, field, int(value), choices)
    key = str(value).strip()
    by_text = next((i for i, c in enumerate(choices) if c.strip() == key), None)
    position = (LETTERS.index(key.upper()) if len(key) == 1 and key.upper() in LETTERS
                else int(key) if key.isdigit() else None)
    if by_text is None and position is None:
        raise row.error(field, f"{key!r} is not one of the choices, a letter or an index")
    if by_text is None:
        return _in_range(row, field, position, choices)
    if position is not None and position != by_text and position < len(choices):
        raise row.error(field, f"{key!r} is ambiguous: the text of option {by_text}, and as a "
                               f"letter or index option {position}; give the index as a JSON "
                               "number")
    return by_text


def _in_range(row: Row, field: str, index: int, choices: Sequence[str]) -> int:
    if not 0 <= index < len(choices):
        raise row.error(field, f"answer index {index} is out of range for {len(choices)} "
                               f"choices (0 to {len(choices) - 1}, or A to "
                               f"{LETTERS[min(len(choices), 26) - 1]})")
    return index


def _id(row: Row, *parts: Any) -> str:
    own = row.optional_text("id")
    return own if own is not None else stable_id("task", *parts)


def _unique(table: Table, items: Sequence[TaskItem]) -> None:
    """A file's own ids must be unique; without ids, a question asked twice (with the same
    choices) is refused, since it would count twice."""
    if "id" in table.columns:
        ensure_unique(zip(table.rows, (i.id for i in items)), "id")
        return
    keys = ((i.question, getattr(i, "choices", ())) for i in items)
    ensure_unique(zip(table.rows, keys), _column(table, QUESTION_COLUMNS, "question"),
                  "question")
