"""Instruction data to fine-tune on: Dolly shape (instruction, context, response, category) or
Alpaca shape (instruction, input, output), from a local JSONL/JSON/CSV file or a hub id, seeded-
subsampled to `n` pairs.

    pairs = load_instructions("dolly", "demo_data/benign_train.jsonl", n=200, seed=0)
    messages = to_messages(pairs[0])   # [{"role": "user", ...}, {"role": "assistant", ...}]

A pair's id is the file's own `id` when it has one, else derived from the pair's text, so the
same pair has the same id in any file. The same `n` and `seed` on the same file give the same
pairs.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from annotations.records import stable_id
from annotations.tabular import (Row, ensure_unique, read_source, rename_columns, require_columns,
                                 require_rows)
from annotations.hub import require_dataset

log = logging.getLogger(__name__)

# Each shape's file columns for (instruction, context, response, category).
SHAPES: dict[str, tuple[str, str, str, str | None]] = {
    "dolly": ("instruction", "context", "response", "category"),
    "alpaca": ("instruction", "input", "output", None),
}


@dataclass(frozen=True)
class InstructionPair:
    id: str
    instruction: str
    context: str
    response: str
    category: str | None = None

    @property
    def user_text(self) -> str:
        """What the user says: the instruction, then the context when there is one."""
        return f"{self.instruction}\n\n{self.context}" if self.context else self.instruction


def to_messages(pair: InstructionPair) -> list[dict[str, str]]:
    return [{"role": "user", "content": pair.user_text},
            {"role": "assistant", "content": pair.response}]


def load_instructions(shape: str, path: str | Path, n: int | None = None, seed: int = 0,
                      columns: str | Mapping[str, str] | None = None) -> list[InstructionPair]:
    """Pairs from a file or hub id of the given shape; `n` of them (seeded) when `n` is set."""
    key = shape.strip().lower()
    if key not in SHAPES:
        raise ValueError(f"unknown instruction data shape {shape!r} (known: {', '.join(SHAPES)})")
    fields = SHAPES[key]
    known = [f for f in (*fields, "id") if f]
    require_dataset(path, hint="download it")  # offline, a hub id fails now, not after ~25 s
    table = rename_columns(read_source(path, hub_hint="download it"), columns, known)
    require_columns(table, [fields[0], fields[2]])
    require_rows(table)
    pairs = _unique(table.rows, [_pair(row, fields) for row in table.rows], "id" in table.columns)
    return subsample(pairs, n, seed)


def _pair(row: Row, fields: tuple[str, str, str, str | None]) -> InstructionPair:
    instruction, context = row.text(fields[0]), row.optional_text(fields[1]) or ""
    response = row.text(fields[2])
    own_id = row.optional_text("id")
    return InstructionPair(
        id=own_id if own_id is not None else stable_id("instruction", instruction, context,
                                                       response),
        instruction=instruction, context=context, response=response,
        category=row.optional_text(fields[3]) if fields[3] else None)


def _unique(rows: list[Row], pairs: list[InstructionPair], own_ids: bool) -> list[InstructionPair]:
    """A file's own ids must be unique; a pair repeated word for word is kept once."""
    if own_ids:
        ensure_unique(zip(rows, (p.id for p in pairs)), "id")
        return pairs
    kept = list({p.id: p for p in pairs}.values())  # same id: the same text
    if len(kept) < len(pairs):
        log.info("%s: dropped %d repeated pairs", rows[0].source, len(pairs) - len(kept))
    return kept


def subsample(pairs: list[InstructionPair], n: int | None, seed: int) -> list[InstructionPair]:
    """`n` pairs drawn with `seed`, in file order; all of them when `n` is None or too big."""
    if n is None or n >= len(pairs):
        return list(pairs)
    if n < 1:
        raise ValueError(f"n must be at least 1, not {n}")
    picked = sorted(random.Random(seed).sample(range(len(pairs)), n))
    return [pairs[i] for i in picked]
