"""Exporting the store's tables to CSV, JSONL or Parquet, for analysis elsewhere or sharing.

Tables are the store's frames, joined where a row alone would be unreadable: generations carry
their prompt's text and checkpoint, labels carry the prompt and the response they judge. A labels
export can be imported again with `import_labelled_responses` (same source name = the prompt's
benchmark) and gives the same rows.

    export_table(store, "labels", "labels.parquet")      # the format from the suffix
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from annotations.store import Store

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
# Integer columns that pandas turns into floats as soon as one value is missing.
INTEGER_COLUMNS = {"label", "outcome", "sample_index", "seed", "max_new_tokens", "token_count",
                   "epoch", "n"}
LABEL_COLUMNS = ["id", "generation_id", "prompt_id", "checkpoint_id", "benchmark", "source_id",
                 "category_id", "category", "prompt", "response", "annotator", "label", "note",
                 "chosen_at_random", "created_at"]


def _prompts(store: Store) -> pd.DataFrame:
    return store.prompts_frame()


def _generations(store: Store) -> pd.DataFrame:
    texts = store.prompts_frame()[["id", "text"]].rename(columns={"id": "prompt_id",
                                                                   "text": "prompt"})
    checkpoints = store.checkpoints_frame()[["id", "base_model", "run_id", "epoch", "kind",
                                             "source"]].rename(
        columns={"id": "checkpoint_id", "kind": "checkpoint_kind", "source": "import_source"})
    frame = store.generations_frame(with_text=True)
    return frame.merge(checkpoints, on="checkpoint_id", how="left").merge(
        texts, on="prompt_id", how="left")


def _verdicts(store: Store) -> pd.DataFrame:
    return store.verdicts_frame(with_raw=True)


def _labels(store: Store) -> pd.DataFrame:
    """Every label ever given (history included), with the prompt and response it judges."""
    generations = store.generations_frame(with_text=True)[
        ["id", "prompt_id", "checkpoint_id", "text"]].rename(
        columns={"id": "generation_id", "text": "response"})
    prompts = store.prompts_frame()[
        ["id", "benchmark", "source_id", "category_id", "category", "text"]].rename(
        columns={"id": "prompt_id", "text": "prompt"})
    frame = store.labels_frame(current=False).merge(generations, on="generation_id", how="left")
    return frame.merge(prompts, on="prompt_id", how="left")[LABEL_COLUMNS]


def _votes(store: Store) -> pd.DataFrame:
    return store.votes_frame()


TABLES: dict[str, Callable[[Store], pd.DataFrame]] = {
    "prompts": _prompts, "generations": _generations, "verdicts": _verdicts,
    "labels": _labels, "votes": _votes,
    "checkpoints": lambda store: store.checkpoints_frame(),
    "runs": lambda store: store.runs_frame(),
    "annotators": lambda store: store.annotators_frame(),  # names and roles, never passwords
    "capability": lambda store: store.capability_frame(),
}


def table_frame(store: Store, table: str) -> pd.DataFrame:
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r} (known: {', '.join(TABLES)})")
    return TABLES[table](store)


def export_table(store: Store, table: str, path: str | Path, fmt: str | None = None,
                 ) -> dict[str, Any]:
    """Write one table to `path` as csv, jsonl or parquet (from the suffix unless `fmt`)."""
    fmt = fmt or FORMATS.get(Path(path).suffix.lower())
    if fmt not in FORMATS.values():
        raise ValueError(f"{path}: cannot tell the format; use a suffix of "
                         f"{', '.join(FORMATS)} or pass one of csv, jsonl, parquet")
    frame = table_frame(store, table)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_frame(frame, Path(path), fmt)
    return {"table": table, "path": str(path), "format": fmt, "rows": len(frame)}


def write_frame(frame: pd.DataFrame, path: Path, fmt: str) -> None:
    frame = _integers(frame)
    if fmt == "parquet":
        _json_text(frame).to_parquet(path, engine="pyarrow", index=False)
    elif fmt == "csv":
        _json_text(_iso_times(frame)).to_csv(path, index=False, encoding="utf-8")
    else:
        records = _iso_times(frame).astype(object).where(frame.notna(), None).to_dict("records")
        with open(path, "w", encoding="utf-8") as out:
            for record in records:
                out.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")


def _integers(frame: pd.DataFrame) -> pd.DataFrame:
    """Integer columns stay integers (1, not 1.0) where some values are missing."""
    frame = frame.copy()
    for column in INTEGER_COLUMNS & set(frame.columns):
        if pd.api.types.is_float_dtype(frame[column]):
            frame[column] = frame[column].astype("Int64")
    return frame


def _iso_times(frame: pd.DataFrame) -> pd.DataFrame:
    """Times as ISO 8601 text to the microsecond (pandas' own JSON keeps milliseconds)."""
    frame = frame.copy()
    for column in frame.columns:
        if pd.api.types.is_datetime64_any_dtype(frame[column]):
            frame[column] = frame[column].map(lambda t: None if pd.isna(t) else t.isoformat())
    return frame


def _json_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Dict and list cells (run hyperparameters, judge args) as JSON text."""
    frame = frame.copy()
    for column in frame.columns:
        if frame[column].map(lambda v: isinstance(v, (dict, list))).any():
            frame[column] = frame[column].map(
                lambda v: json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v)
    return frame
