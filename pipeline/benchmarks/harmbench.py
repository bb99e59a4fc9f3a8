"""HarmBench (Mazeika et al. 2024) behaviours CSV: Behavior, FunctionalCategory,
SemanticCategory, Tags, ContextString, BehaviorID.

A contextual behaviour is asked the way HarmBench asks it: the context, a `---` line, then the
behaviour. The semantic category is the category; the functional one (standard, contextual,
copyright) is the prompt's style.
"""

from __future__ import annotations

from pathlib import Path

from annotations.records import Prompt, PromptKind
from annotations.tabular import Row
from pipeline.benchmarks.common import Columns, checked, read

NAME = "harmbench"
FIELDS = ("Behavior", "BehaviorID", "FunctionalCategory", "SemanticCategory", "Tags",
          "ContextString")


def load(path_or_id: str | Path, name: str | None = None, columns: Columns = None) -> list[Prompt]:
    table = read(path_or_id, columns, FIELDS[:2], FIELDS)
    prompts = [_prompt(row, name or NAME) for row in table.rows]
    return checked(table.rows, prompts, "BehaviorID")


def _prompt(row: Row, benchmark: str) -> Prompt:
    behavior = row.text("Behavior")
    context = (row.optional_text("ContextString") or "").strip()
    category = row.optional_text("SemanticCategory")
    return Prompt(benchmark=benchmark, kind=PromptKind.UNSAFE,
                  text=f"{context}\n\n---\n\n{behavior}" if context else behavior,
                  category_id=category, category=category, source_id=row.text("BehaviorID"),
                  style=row.optional_text("FunctionalCategory"))
