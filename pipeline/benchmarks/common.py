"""What every benchmark loader shares: read a local file or hub id, rename columns, check the
required ones, and refuse two rows that would become the same prompt."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from annotations.records import Prompt
from annotations.tabular import (Row, Table, ensure_unique, read_source, rename_columns,
                                 require_columns, require_rows)
from annotations.hub import require_dataset

Columns = str | Mapping[str, str] | None


def read(path_or_id: str | Path, columns: Columns, required: Sequence[str],
         known: Iterable[str], hub_hint: str = "") -> Table:
    require_dataset(path_or_id, hub_hint)  # offline, a hub id fails now, not after ~25 s
    table = rename_columns(read_source(path_or_id, hub_hint=hub_hint), columns, list(known))
    require_columns(table, required)
    require_rows(table)
    return table


def checked(rows: Sequence[Row], prompts: list[Prompt], field: str) -> list[Prompt]:
    """`prompts` (one per row) unless two of them are the same prompt (same id or text)."""
    keys = ((p.source_id if p.source_id is not None else p.text, p.style) for p in prompts)
    ensure_unique(zip(rows, keys), field, "id" if field != "prompt" else "prompt")
    return prompts


def default_name(path_or_id: str | Path) -> str:
    """A benchmark name from a file name (`my_prompts.csv` -> `my_prompts`) or a hub id."""
    return Path(path_or_id).stem if Path(path_or_id).exists() else str(path_or_id)
