"""Bringing outside data into the store: responses that someone else labelled, human labels in
long form, and benchmark prompts. Each import reads and checks the whole file first and then
writes it in one transaction: a bad row anywhere means nothing from that file is stored.

Imported labels get ids derived from the source name and the row's content, so importing the
same file again adds nothing; a later file that changes a label adds the new label (history kept).

    import_labelled_responses(store, "judged.csv", source="sorry-human",
                              columns="prompt=question,label=human_score",
                              label_values="1=complies,0=refuses")
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from annotations.records import (Annotator, Checkpoint, FinishReason, Generation, HumanLabel,
                                 Label, Prompt, PromptKind, Role, response_hash, stable_id,
                                 utcnow)
from annotations.store import Store
from annotations.tabular import (Row, Table, map_label, parse_label_values, read_table,
                                 rename_columns, require_columns, require_rows)

MappingText = str | Mapping[str, str] | None
RESPONSE_FIELDS = ("prompt", "response", "label", "annotator", "category", "category_id",
                   "source_id", "kind", "style", "sample", "note", "created_at")
LONG_FIELDS = ("item", "annotator", "label", "note", "created_at")


def external_annotator(source: str) -> str:
    """Who labelled a row that names no annotator: the source itself."""
    return "external:" + source


def import_labelled_responses(store: Store, path: str | Path, source: str | None = None,
                              columns: MappingText = None, label_values: MappingText = None,
                              random_sample: bool = False) -> dict[str, Any]:
    """Prompts, responses and human labels from one CSV/JSONL file labelled elsewhere.

    The answers are stored under one checkpoint of kind IMPORTED named after `source` (no base
    model, seed or epoch). Needs prompt, response and label columns (rename others with
    `columns`); optional annotator (default "external:<source>"), category, category_id,
    source_id, kind (unsafe, benign or capability; default unsafe), style, sample, note,
    created_at.
    The same response to the same prompt is one answer (all its rows label it) unless `sample`
    (0, 1, ...) tells repeated draws apart: two draws that happen to read the same. Labels
    that are not the words complies/refuses/incoherent need `label_values` ("1=complies,...").
    `random_sample` says the responses were drawn at random from answers like the ones to be
    judged: their labels are then marked chosen at random, so they calibrate the judge-error
    correction like the planner's random picks do.
    """
    source = source or Path(path).stem
    table = _read(path, columns, RESPONSE_FIELDS, ("prompt", "response", "label"))
    return import_response_table(store, table, source, parse_label_values(label_values),
                                 random_sample)


def import_response_table(store: Store, table: Table, source: str,
                          label_values: Mapping[str, HumanLabel] | None = None,
                          random_sample: bool = False) -> dict[str, Any]:
    """`import_labelled_responses` for rows already read (and named as RESPONSE_FIELDS), e.g.
    by a reader of a published set's own shape: checked whole, then written in one go."""
    checkpoint = Checkpoint(source=source)
    prompts, generations, labels = _parse_responses(table, source, checkpoint.id,
                                                    label_values or {})
    if random_sample:
        labels = [lab.model_copy(update={"chosen_at_random": True}) for lab in labels]
    with store.batch() as tx:
        tx.upsert_prompts(prompts)
        tx.upsert_checkpoint(checkpoint)
        tx.upsert_generations(generations)
        annotators = _add_annotators(tx, labels)
        added = tx.add_labels(labels)
    return {"source": source, "rows": len(table.rows), "prompts": len(prompts),
            "generations": len(generations), "annotators": annotators, "labels_added": added,
            "checkpoint_id": checkpoint.id}


def _parse_responses(table: Table, source: str, checkpoint_id: str,
                     mapping: Mapping[str, HumanLabel],
                     ) -> tuple[list[Prompt], list[Generation], list[Label]]:
    """Every row checked and turned into records before anything is written."""
    now = utcnow()
    prompts: dict[str, tuple[Row, Prompt]] = {}
    generations: dict[str, Generation] = {}
    labels: list[Label] = []
    for row in table.rows:
        prompt = _prompt(row, source)
        _same_as_before(row, prompts, prompt.id, prompt, "prompt")
        generation = _generation(row, checkpoint_id, prompt.id)
        generations[generation.id] = generation
        labels.append(_label(row, source, generation.id, mapping, external_annotator(source),
                             now))
    _one_label_each(table.rows, labels)
    return [p for _, p in prompts.values()], list(generations.values()), labels


def import_human_labels(store: Store, path: str | Path, source: str | None = None,
                        columns: MappingText = None, label_values: MappingText = None,
                        ) -> dict[str, Any]:
    """Human labels in long form: item (a generation id already in the store), annotator,
    label; optional note and created_at."""
    source = source or Path(path).stem
    table = _read(path, columns, LONG_FIELDS, ("item", "annotator", "label"))
    mapping = parse_label_values(label_values)
    now = utcnow()
    items = [row.text("item").strip() for row in table.rows]
    known = store.existing_ids("generations", sorted(set(items)))
    for row, item in zip(table.rows, items):
        if item not in known:
            raise row.error("item", f"unknown generation id {item!r} (not in the store)")
    labels = [_label(row, source, item, mapping, None, now) for row, item in zip(table.rows, items)]
    _one_label_each(table.rows, labels)
    with store.batch() as tx:
        annotators = _add_annotators(tx, labels)
        added = tx.add_labels(labels)
    return {"source": source, "rows": len(table.rows), "annotators": annotators,
            "labels_added": added}


def _read(path: str | Path, columns: MappingText, known: tuple[str, ...],
          required: tuple[str, ...]) -> Table:
    table = rename_columns(read_table(path), columns, known)
    require_columns(table, required)
    require_rows(table)
    return table


def _prompt(row: Row, source: str) -> Prompt:
    category = row.optional_text("category")
    return Prompt(benchmark=source, kind=_kind(row), text=row.text("prompt"),
                  category_id=row.optional_text("category_id") or category, category=category,
                  source_id=row.optional_text("source_id"), style=row.optional_text("style"))


def _kind(row: Row) -> PromptKind:
    value = (row.optional_text("kind") or PromptKind.UNSAFE.value).strip().lower()
    try:
        return PromptKind(value)
    except ValueError:
        known = ", ".join(k.value for k in PromptKind)
        raise row.error("kind", f"unknown value {value!r} (known: {known})") from None


def _same_as_before(row: Row, seen: dict[str, tuple[Row, Any]], key: str, value: Any,
                    field: str) -> None:
    """The same prompt may appear on many rows, but it must be the same prompt each time."""
    if key in seen and seen[key][1] != value:
        first = seen[key][0]
        raise row.error(field, f"the same prompt as on line {first.line} but with a different "
                               "text, category or id")
    seen.setdefault(key, (row, value))


def _generation(row: Row, checkpoint_id: str, prompt_id: str) -> Generation:
    # Responses are told apart by their text's hash and `sample`, so the same response gets the
    # same id from any file and in any order.
    text = row.text("response", allow_empty=True)
    return Generation(checkpoint_id=checkpoint_id, prompt_id=prompt_id, temperature=0.0,
                      sample_index=row.optional_count("sample"), seed=None,
                      response_hash=response_hash(text), text=text, token_count=0,
                      finish_reason=FinishReason.EXTERNAL)


def _label(row: Row, source: str, generation_id: str, mapping: Mapping[str, HumanLabel],
           default_annotator: str | None, now: datetime) -> Label:
    label = map_label(row, "label", mapping)
    annotator = (row.optional_text("annotator") or "").strip() or default_annotator
    if annotator is None:
        raise row.error("annotator", "missing value")
    note = row.optional_text("note") or ""
    return Label(id=stable_id("label", source, generation_id, annotator, label.value, note),
                 generation_id=generation_id, annotator=annotator, label=label, note=note,
                 created_at=_created_at(row, now))


def _created_at(row: Row, default: datetime) -> datetime:
    value = row.optional_text("created_at")
    if value is None:
        return default
    try:
        stamp = datetime.fromisoformat(value.strip())
    except ValueError:
        raise row.error("created_at", f"{value!r} is not a date and time (ISO 8601, e.g. "
                                      "2024-05-01T12:00:00Z)") from None
    # The store keeps UTC: an offset is converted, a naive time is taken as UTC already.
    if stamp.tzinfo is None:
        return stamp.replace(tzinfo=timezone.utc)
    return stamp.astimezone(timezone.utc)


def _one_label_each(rows: list[Row], labels: list[Label]) -> None:
    """One annotator labels one response once per file (two would leave no latest label)."""
    first: dict[tuple[str, str], Row] = {}
    for row, lab in zip(rows, labels):
        key = (lab.generation_id, lab.annotator)
        if key in first:
            raise row.error("annotator", f"{lab.annotator!r} already labelled this response on "
                                         f"{first[key].unit} {first[key].line}")
        first[key] = row


def _add_annotators(tx: Store, labels: list[Label]) -> int:
    """Annotator rows for new names; they have no password, so they cannot log in."""
    names = sorted({lab.annotator for lab in labels})
    for name in names:
        tx.add_annotator(Annotator(name=name, role=Role.ANNOTATOR, password_hash=""))
    return len(names)
