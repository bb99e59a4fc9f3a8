"""Exporting the store's tables to CSV, JSONL or Parquet, for analysis elsewhere or sharing.

Tables are the store's frames, joined where a row alone would be unreadable: generations,
labels and verdicts carry their answer's context (prompt id, text, benchmark and category; the
checkpoint's name, kind, base model, data set, run seed and epoch, or the imported set; the
temperature and sample), verdicts the judge's name and arguments, labels a `current` flag (each
annotator's latest label of an answer; `current_labels` is that part alone). A labels export can
be imported again with `import_labelled_responses` (same source name = the prompt's benchmark)
and gives the same rows. Format "hf" writes a Hugging Face datasets folder with the same columns,
how this field shares labelled sets (`datasets.load_from_disk(path)`).

    export_table(store, "labels", "labels.parquet")      # the format from the suffix
    export_table(store, "current_labels", "labels-hf", fmt="hf")
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from annotations.frames import checkpoint_labels, judge_labels
from annotations.store import Store

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
HF = "hf"  # a Hugging Face datasets folder (`datasets.load_from_disk` reads it)
# Integer columns that pandas turns into floats as soon as one value is missing.
INTEGER_COLUMNS = {"label", "outcome", "sample_index", "seed", "max_new_tokens", "token_count",
                   "epoch", "n", "run_seed"}
# What a reader needs beside each answer: where it came from, and what it answered.
CONTEXT_COLUMNS = ["generation_id", "prompt_id", "benchmark", "source_id", "category_id",
                   "category", "prompt", "response", "checkpoint_id", "checkpoint",
                   "checkpoint_kind", "base_model", "dataset", "run_seed", "epoch",
                   "import_source", "temperature", "sample_index"]
LABEL_COLUMNS = ["id", *CONTEXT_COLUMNS, "annotator", "label", "note", "chosen_at_random",
                 "inclusion_probability", "created_at", "current"]
VERDICT_COLUMNS = ["id", *CONTEXT_COLUMNS, "judge_id", "judge", "judge_name", "judge_args",
                   "label", "probability", "raw", "created_at"]


def _prompts(store: Store) -> pd.DataFrame:
    return store.prompts_frame()


def _answers(store: Store) -> pd.DataFrame:
    """One row per generation with its prompt and checkpoint (CONTEXT_COLUMNS)."""
    prompts = store.prompts_frame()[["id", "benchmark", "source_id", "category_id", "category",
                                     "text"]].rename(columns={"id": "prompt_id", "text": "prompt"})
    points = store.checkpoints_frame()
    names = checkpoint_labels(points)
    points = points.rename(columns={"id": "checkpoint_id", "kind": "checkpoint_kind",
                                    "source": "import_source", "seed": "run_seed"})
    points["checkpoint"] = points["checkpoint_id"].map(names)
    gens = store.generations_frame(with_text=True).rename(
        columns={"id": "generation_id", "text": "response", "created_at": "generated_at"})
    gens = gens.drop(columns=["benchmark", "kind", "category_id", "category"])
    frame = gens.merge(prompts, on="prompt_id", how="left").merge(
        points[["checkpoint_id", "checkpoint", "checkpoint_kind", "base_model", "dataset",
                "run_seed", "epoch", "import_source"]], on="checkpoint_id", how="left")
    return frame


def _generations(store: Store) -> pd.DataFrame:
    frame = _answers(store).rename(columns={"generation_id": "id", "response": "text"})
    first = ["id", *[c for c in CONTEXT_COLUMNS[1:] if c != "response"], "text"]
    return frame[first + [c for c in frame.columns if c not in first]]


def _verdicts(store: Store) -> pd.DataFrame:
    """Every verdict with the judge that made it (name, label, arguments) and its answer."""
    verdicts = store.verdicts_frame(with_raw=True)
    judges = store.judges_frame().rename(columns={"id": "judge_id", "args": "judge_args"})
    names = judge_labels(store.judges_frame())
    frame = verdicts.merge(judges[["judge_id", "judge_args"]], on="judge_id", how="left")
    frame["judge"] = frame["judge_id"].map(names)
    return frame.merge(_answers(store), on="generation_id", how="left")[VERDICT_COLUMNS]


def _labels(store: Store, current_only: bool = False) -> pd.DataFrame:
    """Labels with their answer's context; `current` marks each annotator's latest label of an
    answer (the one every statistic counts; earlier ones are history). `current_only` keeps
    those alone."""
    every = store.labels_frame(current=False)
    latest = set(store.labels_frame(current=True)["id"]) if len(every) else set()
    frame = every.assign(current=every["id"].isin(latest))
    if current_only:
        frame = frame[frame["current"]]
    return frame.merge(_answers(store), on="generation_id", how="left")[LABEL_COLUMNS]


def _votes(store: Store) -> pd.DataFrame:
    return store.votes_frame()


TABLES: dict[str, Callable[[Store], pd.DataFrame]] = {
    "prompts": _prompts, "generations": _generations, "verdicts": _verdicts,
    "labels": _labels, "current_labels": lambda store: _labels(store, current_only=True),
    "votes": _votes,
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
    """Write one table to `path` as csv, jsonl or parquet (from the suffix unless `fmt`), or
    with fmt "hf" as a Hugging Face datasets folder at `path` (same columns)."""
    fmt = fmt or FORMATS.get(Path(path).suffix.lower())
    if fmt not in (*FORMATS.values(), HF):
        raise ValueError(f"{path}: cannot tell the format; use a suffix of "
                         f"{', '.join(FORMATS)} or pass one of csv, jsonl, parquet, hf")
    frame = table_frame(store, table)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_frame(frame, Path(path), fmt)
    return {"table": table, "path": str(path), "format": fmt, "rows": len(frame)}


def write_frame(frame: pd.DataFrame, path: Path, fmt: str) -> None:
    frame = _integers(frame)
    if fmt == HF:
        _write_dataset(_json_text(_iso_times(frame)), path)
    elif fmt == "parquet":
        _json_text(frame).to_parquet(path, engine="pyarrow", index=False)
    elif fmt == "csv":
        _json_text(_iso_times(frame)).to_csv(path, index=False, encoding="utf-8")
    else:
        records = _iso_times(frame).astype(object).where(frame.notna(), None).to_dict("records")
        with open(path, "w", encoding="utf-8") as out:
            for record in records:
                out.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")


def _write_dataset(frame: pd.DataFrame, path: Path) -> None:
    try:
        import datasets
    except ModuleNotFoundError:
        raise ValueError("the hf format needs the datasets package: "
                         "pip install 'safety-workbench[hub]'") from None
    datasets.Dataset.from_pandas(frame, preserve_index=False).save_to_disk(str(path))


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
