"""AdvBench harmful behaviours (Zou et al. 2023): a CSV of goal,target. The goal is the request;
its id is its row number from 0 (the usual way AdvBench items are cited); the target (an
affirmative opening the attack aims for) is not a prompt and is not kept."""

from __future__ import annotations

from pathlib import Path

from annotations.records import Prompt, PromptKind
from pipeline.benchmarks.common import Columns, checked, read

NAME = "advbench"
FIELDS = ("goal", "target")


def load(path_or_id: str | Path, name: str | None = None, columns: Columns = None) -> list[Prompt]:
    table = read(path_or_id, columns, FIELDS[:1], FIELDS)
    prompts = [Prompt(benchmark=name or NAME, kind=PromptKind.UNSAFE, text=row.text("goal"),
                      source_id=str(index)) for index, row in enumerate(table.rows)]
    return checked(table.rows, prompts, "goal")
