"""Any JSONL or CSV of prompts: a `prompt` column, and optionally id, category, category_id,
kind (unsafe, benign, capability), reference and style. Other column names are mapped with
`columns="prompt=question,category=topic"`. Without an id column a prompt is known by its text,
so the same text twice is refused as a duplicate."""

from __future__ import annotations

from pathlib import Path

from annotations.records import Prompt, PromptKind
from annotations.tabular import Row
from pipeline.benchmarks.common import Columns, checked, default_name, read

FIELDS = ("prompt", "id", "category", "category_id", "kind", "reference", "style")


def load(path_or_id: str | Path, name: str | None = None, columns: Columns = None,
         kind: PromptKind | str = PromptKind.UNSAFE) -> list[Prompt]:
    table = read(path_or_id, columns, FIELDS[:1], FIELDS)
    benchmark = name or default_name(path_or_id)
    prompts = [_prompt(row, benchmark, PromptKind(kind)) for row in table.rows]
    return checked(table.rows, prompts, "id" if "id" in table.columns else "prompt")


def _prompt(row: Row, benchmark: str, default_kind: PromptKind) -> Prompt:
    category = row.optional_text("category")
    return Prompt(benchmark=benchmark, kind=_kind(row, default_kind), text=row.text("prompt"),
                  category_id=row.optional_text("category_id") or category, category=category,
                  source_id=row.optional_text("id"), reference=row.optional_text("reference"),
                  style=row.optional_text("style"))


def _kind(row: Row, default: PromptKind) -> PromptKind:
    value = row.optional_text("kind")
    try:
        return PromptKind(value.strip().lower()) if value else default
    except ValueError:
        known = ", ".join(k.value for k in PromptKind)
        raise row.error("kind", f"unknown value {value!r} (known: {known})") from None
