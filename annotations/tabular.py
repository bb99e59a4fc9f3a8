"""Reading people's CSV and JSONL files robustly: every row keeps its line number, so every
problem is reported as "file, line, field: what is wrong" in one `BadInputError`.

Used by the importers, the benchmark loaders and the instruction-data loader. Covers renaming
columns from the CLI form `prompt=objective,response=assistant_response` and mapping label values
from `1=refuses,0=complies` (an unmapped value is an error, never a guess).

    table = rename_columns(read_table("data.csv"), "prompt=objective")
    require_columns(table, ["prompt"])
    for row in table.rows:
        text = row.text("prompt")            # raises BadInputError naming file, line and field
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from annotations.records import HumanLabel

# Responses of a megabyte or more must survive intact; csv's default cap is 128 KiB.
FIELD_LIMIT = 64 * 1024 * 1024
SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json",
            ".parquet": "parquet"}
MAGIC = {b"\x1f\x8b": "a gzip archive", b"PK\x03\x04": "a zip archive (xlsx?)",
         b"PAR1": "a Parquet file", b"SQLite format 3": "a SQLite database"}
HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class BadInputError(ValueError):
    """A problem with a user's input file, said as `data.csv, line 7, field 'label': ...`."""

    def __init__(self, source: str, reason: str, line: int | None = None,
                 field: str | None = None, unit: str = "line"):
        where = [str(source)] + ([f"{unit} {line}"] if line is not None else [])
        where += [f"field {field!r}"] if field is not None else []
        super().__init__(f"{', '.join(where)}: {reason}")
        self.source, self.reason, self.line, self.field = str(source), reason, line, field


@dataclass(frozen=True)
class Row:
    """One record of a file: its values and where it starts (a line, or an item of a list)."""

    source: str
    line: int
    values: dict[str, Any]
    unit: str = "line"

    def error(self, field: str | None, reason: str) -> BadInputError:
        return BadInputError(self.source, reason, self.line, field, self.unit)

    def get(self, field: str, default: Any = None) -> Any:
        """The value, or `default` when the field is absent, null or an empty string."""
        value = self.values.get(field)
        return default if value is None or value == "" else value

    def text(self, field: str, allow_empty: bool = False) -> str:
        """A required text value (numbers are taken as their text), kept intact."""
        if self.values.get(field) is None:
            raise self.error(field, "missing value")
        value = _as_text(self.values[field])
        if not value.strip() and not allow_empty:
            raise self.error(field, "empty value")
        return value

    def optional_text(self, field: str) -> str | None:
        value = self.get(field)
        return None if value is None else _as_text(value)

    def optional_count(self, field: str, default: int = 0) -> int:
        """A whole number >= 0 (as a number or as text), `default` when absent."""
        value = self.get(field)
        if value is None:
            return default
        text = _as_text(value).strip()
        if not text.isdigit():
            raise self.error(field, f"{value!r} is not a whole number >= 0")
        return int(text)


@dataclass(frozen=True)
class Table:
    source: str
    columns: tuple[str, ...]
    rows: list[Row]


def _as_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


# ----- reading files -----
def read_table(path: str | Path, fmt: str | None = None) -> Table:
    """Rows of a CSV, TSV, JSONL, JSON (a list of objects) or Parquet file; the format from the
    suffix unless `fmt` is given."""
    source = str(path)
    fmt = fmt or SUFFIXES.get(Path(path).suffix.lower())
    if fmt is None:
        raise BadInputError(source, f"unknown file type {Path(path).suffix!r} "
                                    f"(known: {', '.join(SUFFIXES)})")
    try:
        if fmt == "parquet":
            return _read_parquet(source, Path(path))
        raw = Path(path).read_bytes()
    except OSError as err:
        raise BadInputError(source, f"cannot read the file ({err.strerror or err})") from err
    text = decode(source, raw)
    if not text.strip():
        raise BadInputError(source, "the file is empty")
    if fmt in ("csv", "tsv"):
        return _read_csv(source, text, "\t" if fmt == "tsv" else ",")
    if fmt == "json" and text.lstrip().startswith("["):
        return _read_json_list(source, text)
    return _read_jsonl(source, text)


def decode(source: str, raw: bytes) -> str:
    """UTF-8 text (a BOM is dropped); binary or other encodings fail naming line and offset."""
    for magic, what in MAGIC.items():
        if raw.startswith(magic):
            raise BadInputError(source, f"this is {what}, not a text CSV/JSONL file")
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise BadInputError(source, f"binary data (a NUL byte at byte offset {nul}), not a text "
                                    "CSV/JSONL file", raw.count(b"\n", 0, nul) + 1)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise BadInputError(source, f"not UTF-8 text (byte 0x{raw[err.start]:02x} at byte offset "
                                    f"{err.start}); save the file as UTF-8", line) from None


def _read_csv(source: str, text: str, delimiter: str) -> Table:
    csv.field_size_limit(max(csv.field_size_limit(), FIELD_LIMIT))
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    header: list[str] | None = None
    rows: list[Row] = []
    start = 1
    try:
        for record in reader:
            if any(record):  # blank lines, and Excel's trailing ",,," lines, are no rows
                if header is None:
                    header = _header(source, start, record)
                else:
                    rows.append(_csv_row(source, start, header, record))
            start = reader.line_num + 1
    except csv.Error as err:
        reason = ("a quoted field opened here never closes (unterminated quote; truncated file?)"
                  if "end of data" in str(err) else f"malformed CSV ({err})")
        raise BadInputError(source, reason, start) from None
    return Table(source, tuple(header or ()), rows)


def _header(source: str, line: int, record: list[str]) -> list[str]:
    header = [cell.strip() for cell in record]
    for i, name in enumerate(header):
        if not name:
            raise BadInputError(source, f"the header's column {i + 1} has no name", line)
        if name in header[:i]:
            raise BadInputError(source, f"the header names column {name!r} twice", line)
    return header


def _csv_row(source: str, line: int, header: list[str], record: list[str]) -> Row:
    if len(record) != len(header):
        raise BadInputError(source, f"{len(record)} fields where the header has {len(header)} "
                                    "(a truncated row, or a stray delimiter or quote?)", line)
    return Row(source, line, dict(zip(header, record)))


def _read_jsonl(source: str, text: str) -> Table:
    lines = text.split("\n")
    last = max(i for i, line in enumerate(lines) if line.strip())
    rows: list[Row] = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            # A parser that ran out of text on the file's unterminated last line: a cut file.
            ran_out = err.pos >= len(line.rstrip()) or err.msg.startswith("Unterminated")
            cut = i == last and not text.endswith("\n") and ran_out
            reason = ("the last line is cut off mid-object (a truncated file?)" if cut
                      else f"not valid JSON ({err.msg} at column {err.colno})")
            raise BadInputError(source, reason, i + 1) from None
        rows.append(_json_row(source, i + 1, value, "line"))
    return Table(source, _columns(rows), rows)


def _read_json_list(source: str, text: str) -> Table:
    try:
        items = json.loads(text)
    except json.JSONDecodeError as err:
        reason = ("the file ends mid-list (a truncated file?)" if err.pos >= len(text.rstrip())
                  else f"not valid JSON ({err.msg} at column {err.colno})")
        raise BadInputError(source, reason, err.lineno) from None
    if not isinstance(items, list):
        raise BadInputError(source, "expected a JSON list of objects")
    rows = [_json_row(source, i + 1, value, "item") for i, value in enumerate(items)]
    return Table(source, _columns(rows), rows)


def _json_row(source: str, line: int, value: Any, unit: str) -> Row:
    if not isinstance(value, dict):
        raise BadInputError(source, f"expected a JSON object, got {type(value).__name__}",
                            line, unit=unit)
    return Row(source, line, value, unit)


def _read_parquet(source: str, path: Path) -> Table:
    """A Parquet file (as the exports write it); rows are numbered from 1, missing is None."""
    import pandas as pd
    import pyarrow

    try:
        frame = pd.read_parquet(path, engine="pyarrow")
    except pyarrow.ArrowException as err:
        raise BadInputError(source, f"not a readable Parquet file ({err})") from None
    frame = frame.astype(object).where(frame.notna(), None)
    rows = [Row(source, i + 1, values, "row") for i, values in enumerate(frame.to_dict("records"))]
    return Table(source, tuple(frame.columns), rows)


def _columns(rows: list[Row]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(key for row in rows for key in row.values))


def read_source(path_or_id: str | Path, split: str = "train", hub_hint: str = "") -> Table:
    """A local file, or else a Hugging Face dataset id (`owner/name`) loaded with `datasets`."""
    text = str(path_or_id)
    if Path(text).exists():
        return read_table(text)
    if HF_ID.match(text) and Path(text).suffix.lower() not in SUFFIXES:
        return read_hub(text, split, hub_hint)
    raise BadInputError(text, "no such file")


def read_hub(dataset_id: str, split: str = "train", hint: str = "") -> Table:
    from annotations.hub import require_dataset  # fails in seconds where the hub is not there

    require_dataset(dataset_id, hint)
    try:
        import datasets

        data = datasets.load_dataset(dataset_id, split=split)
    except Exception as err:  # offline, gated, unknown: all end in the same advice
        raise BadInputError(dataset_id, f"cannot load this data set from the Hugging Face hub "
                                        f"({type(err).__name__}); {hint or 'download it'} and "
                                        "pass the local file's path instead") from None
    rows = [Row(dataset_id, i + 1, dict(item), "row") for i, item in enumerate(data)]
    return Table(dataset_id, tuple(data.column_names), rows)


# ----- columns -----
def parse_mapping(text: str | Mapping[str, str] | None,
                  option: str = "--columns") -> dict[str, str]:
    """`prompt=objective,label=human_score` -> {"prompt": "objective", "label": "human_score"}."""
    if text is None or isinstance(text, Mapping):
        return dict(text or {})
    mapping: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not key or not value:
            raise ValueError(f"{option}: {item!r} is not of the form NAME=VALUE")
        if key in mapping:
            raise ValueError(f"{option}: {key!r} is given twice")
        mapping[key] = value
    return mapping


def rename_columns(table: Table, columns: str | Mapping[str, str] | None,
                   known: Iterable[str] | None = None) -> Table:
    """Rename file columns to the names the reader expects (`field=file_column`)."""
    mapping = parse_mapping(columns)
    if not mapping:
        return table
    if known is not None:
        unknown = sorted(set(mapping) - set(known))
        if unknown:
            raise ValueError(f"--columns: unknown field(s) {', '.join(unknown)} "
                             f"(known: {', '.join(known)})")
    for field, column in mapping.items():
        if column not in table.columns:
            raise BadInputError(table.source, f"missing column {column!r} (given for {field!r}); "
                                              f"the columns are: {', '.join(table.columns)}")
    back = {column: field for field, column in mapping.items()}

    def kept(name: str) -> bool:  # a column named like a renamed field gives way to it
        return name not in mapping or name in back

    rows = [replace(row, values={back.get(k, k): v for k, v in row.values.items() if kept(k)})
            for row in table.rows]
    columns = tuple(back.get(c, c) for c in table.columns if kept(c))
    return Table(table.source, columns, rows)


def require_columns(table: Table, names: Iterable[str]) -> None:
    missing = [name for name in names if name not in table.columns]
    if missing:
        there = ", ".join(table.columns) or "none"
        raise BadInputError(table.source, f"missing column(s) {', '.join(map(repr, missing))} "
                                          f"(the columns are: {there}); rename with --columns "
                                          f"{missing[0]}=<column>")


def require_rows(table: Table) -> None:
    if not table.rows:
        raise BadInputError(table.source, "no rows (only a header?)")


def ensure_unique(keyed: Iterable[tuple[Row, Hashable]], field: str, what: str = "id") -> None:
    """Raise on the second row with the same key, naming both lines."""
    first: dict[Hashable, Row] = {}
    for row, key in keyed:
        if key in first:
            raise row.error(field, f"duplicate {what} {_short(key)} (first on {first[key].unit} "
                                   f"{first[key].line})")
        first[key] = row


def _short(value: Any, width: int = 60) -> str:
    text = repr(value if not isinstance(value, tuple) else value[0])
    return text if len(text) <= width else text[:width - 4] + "...'"


# ----- labels -----
def parse_label_values(text: str | Mapping[str, str] | None) -> dict[str, HumanLabel]:
    """`1=refuses,0=complies` -> {"1": REFUSES, "0": COMPLIES}; the targets must be label words."""
    mapping: dict[str, HumanLabel] = {}
    for value, word in parse_mapping(text, "--label-values").items():
        try:
            mapping[value.lower()] = HumanLabel(word.strip().lower())
        except ValueError:
            raise ValueError(f"--label-values: {word!r} is not a label "
                             f"(known: {', '.join(h.value for h in HumanLabel)})") from None
    return mapping


def map_label(row: Row, field: str, mapping: Mapping[str, HumanLabel] | None) -> HumanLabel:
    """The row's label; without a mapping only the words complies/refuses/incoherent pass."""
    raw = row.text(field).strip()
    if mapping:
        if raw.lower() in mapping:
            return mapping[raw.lower()]
        raise row.error(field, f"unknown value {raw!r} (known: {', '.join(sorted(mapping))})")
    try:
        return HumanLabel(raw.lower())
    except ValueError:
        words = ", ".join(h.value for h in HumanLabel)
        raise row.error(field, f"unknown value {raw!r} (known: {words}); map other values with "
                               "--label-values, e.g. 1=complies,0=refuses") from None
