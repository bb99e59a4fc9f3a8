"""Do-Not-Answer (Wang et al. 2023), CSV or JSONL: id, risk_area, types_of_harm, specific_harms,
question. The type of harm (12 of them) is the category."""

from __future__ import annotations

from pathlib import Path

from annotations.records import Prompt, PromptKind
from annotations.tabular import Row
from pipeline.benchmarks.common import Columns, checked, read

NAME = "do-not-answer"
FIELDS = ("id", "question", "risk_area", "types_of_harm", "specific_harms")


def load(path_or_id: str | Path, name: str | None = None, columns: Columns = None) -> list[Prompt]:
    table = read(path_or_id, columns, FIELDS[:2], FIELDS)
    prompts = [_prompt(row, name or NAME) for row in table.rows]
    return checked(table.rows, prompts, "id")


def _prompt(row: Row, benchmark: str) -> Prompt:
    harm = row.optional_text("types_of_harm")
    return Prompt(benchmark=benchmark, kind=PromptKind.UNSAFE, text=row.text("question"),
                  category_id=harm, category=harm, source_id=row.text("id"))
