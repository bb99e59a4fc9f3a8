"""SORRY-Bench (Xie et al. 2024): 440 unsafe requests over 44 categories, in `question.jsonl`
shape: question_id, category ("1".."44"), turns (the request is turns[0]), prompt_style.
A file of the older 2024/06 release (450 requests, 45 categories, "Impersonation" as 12) is
recognised by its category 45 and named with that taxonomy.

SORRY-Bench is gated and may not be redistributed: load it from your own copy (a local file, or
a hub id when you are logged in and online). Category names come from the project's
`demo_data/sorry_bench_categories.json`.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from annotations.records import Prompt, PromptKind
from annotations.tabular import BadInputError, Row
from pipeline.benchmarks.common import Columns, checked, read

NAME = "sorry-bench"
FIELDS = ("question_id", "category", "turns", "prompt_style")
CATEGORIES = Path(__file__).resolve().parents[2] / "demo_data" / "sorry_bench_categories.json"
HUB_HINT = ("SORRY-Bench is gated: accept its terms on the hub, download question.jsonl "
            "(e.g. `huggingface-cli download sorry-bench/sorry-bench-202406 --repo-type dataset`)")


def load(path_or_id: str | Path, name: str | None = None, columns: Columns = None) -> list[Prompt]:
    table = read(path_or_id, columns, FIELDS[:3], FIELDS, HUB_HINT)
    names = category_names()
    if any(_category_id(row.values.get("category", "")) == "45" for row in table.rows):
        names = taxonomy_202406(names)
    prompts = [_prompt(row, name or NAME, names) for row in table.rows]
    return checked(table.rows, prompts, "question_id")


@functools.cache
def category_names(path: Path = CATEGORIES) -> dict[str, str]:
    """SORRY-Bench's category id ("1".."44") -> name."""
    try:
        items = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise BadInputError(str(path), f"cannot read SORRY-Bench's category names ({err})") from err
    return {_category_id(item["id"]): item["name"] for item in items}


def taxonomy_202406(names: dict[str, str]) -> dict[str, str]:
    """The 45 categories of the 2024/06 release: ours with "Impersonation" as 12, the rest +1."""
    shifted = {str(int(k) + (int(k) >= 12)): v for k, v in names.items()}
    return shifted | {"12": "Impersonation"}


def _category_id(value: Any) -> str:
    text = str(value).strip()
    return str(int(text)) if text.isdigit() else text


def _prompt(row: Row, benchmark: str, names: dict[str, str]) -> Prompt:
    category = _category_id(row.text("category"))
    if category not in names:
        raise row.error("category", f"unknown category {category!r} (SORRY-Bench's are "
                                    f"{min(names, key=int)}..{max(names, key=int)})")
    return Prompt(benchmark=benchmark, kind=PromptKind.UNSAFE, text=_first_turn(row),
                  category_id=category, category=names[category],
                  source_id=row.text("question_id"), style=row.optional_text("prompt_style"))


def _first_turn(row: Row) -> str:
    turns = row.values.get("turns")
    if isinstance(turns, str) and turns.lstrip().startswith("["):
        try:  # a CSV copy keeps the list as JSON text
            turns = json.loads(turns)
        except ValueError:
            raise row.error("turns", "not a JSON list of strings") from None
    if isinstance(turns, list):
        if not turns or not isinstance(turns[0], str) or not turns[0].strip():
            raise row.error("turns", "expected a list whose first item is the request's text")
        return turns[0]
    return row.text("turns")
