"""The store's schema as a history: an ordered list of numbered steps, each run once per store.

Step 1 is frozen: it creates the tables exactly as schema version 1 had them (written out here,
not taken from today's `annotations.schema`, so a new column never sneaks into it). Every later
change is its own step, written against the database as the step before left it. A step may be
run on a store that already has its change (two processes migrating at once), so each checks
first. `migrate` records the version in the `meta` table.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable

from sqlalchemy import (JSON, Boolean, Column, DateTime, Engine, Float, ForeignKey, Integer,
                        MetaData, String, Table, Text, column, func, inspect, select, table,
                        text)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError


def _v1_tables() -> MetaData:
    """Schema version 1, as it was (commit c0fee73)."""
    md = MetaData()
    Table("meta", md, Column("key", String, primary_key=True), Column("value", String))
    Table("prompts", md, Column("id", String, primary_key=True),
          Column("benchmark", String, index=True), Column("kind", String, index=True),
          Column("category_id", String), Column("category", String), Column("source_id", String),
          Column("text", Text), Column("reference", Text), Column("style", String))
    Table("runs", md, Column("id", String, primary_key=True), Column("base_model", String),
          Column("dataset", String), Column("seed", Integer), Column("hyperparameters", JSON),
          Column("versions", JSON), Column("created_at", DateTime(timezone=True)))
    Table("checkpoints", md, Column("id", String, primary_key=True),
          Column("run_id", String, ForeignKey("runs.id"), nullable=True, index=True),
          Column("base_model", String), Column("epoch", Integer), Column("adapter_path", String),
          Column("train_loss", Float))
    Table("generations", md, Column("id", String, primary_key=True),
          Column("checkpoint_id", String, ForeignKey("checkpoints.id"), index=True),
          Column("prompt_id", String, ForeignKey("prompts.id"), index=True),
          Column("temperature", Float), Column("sample_index", Integer), Column("seed", Integer),
          Column("max_new_tokens", Integer), Column("text", Text), Column("token_count", Integer),
          Column("finish_reason", String), Column("repetition", Float),
          Column("degenerate", Boolean), Column("empty", Boolean),
          Column("created_at", DateTime(timezone=True)))
    Table("judges", md, Column("id", String, primary_key=True), Column("name", String),
          Column("args", JSON))
    Table("verdicts", md, Column("id", String, primary_key=True),
          Column("generation_id", String, ForeignKey("generations.id"), index=True),
          Column("judge_id", String, ForeignKey("judges.id"), index=True),
          Column("label", Integer, nullable=True), Column("probability", Float),
          Column("raw", Text), Column("created_at", DateTime(timezone=True)))
    Table("annotators", md, Column("name", String, primary_key=True), Column("role", String),
          Column("password_hash", String), Column("created_at", DateTime(timezone=True)))
    Table("labels", md, Column("id", String, primary_key=True),
          Column("generation_id", String, ForeignKey("generations.id"), index=True),
          Column("annotator", String, ForeignKey("annotators.name"), index=True),
          Column("label", String), Column("note", Text), Column("chosen_at_random", Boolean),
          Column("created_at", DateTime(timezone=True)))
    Table("votes", md, Column("id", String, primary_key=True),
          Column("prompt_id", String, ForeignKey("prompts.id")),
          Column("generation_a", String, ForeignKey("generations.id")),
          Column("generation_b", String, ForeignKey("generations.id")),
          Column("annotator", String, ForeignKey("annotators.name")), Column("choice", String),
          Column("created_at", DateTime(timezone=True)))
    Table("capability", md, Column("id", String, primary_key=True),
          Column("checkpoint_id", String, ForeignKey("checkpoints.id"), index=True),
          Column("metric", String), Column("benchmark", String), Column("value", Float),
          Column("n", Integer))
    Table("judge_cache", md, Column("key", String, primary_key=True), Column("judge_id", String),
          Column("raw", Text), Column("created_at", DateTime(timezone=True)))
    return md


def m001_initial(conn: Connection) -> None:
    _v1_tables().create_all(conn, checkfirst=True)


def _add_column(conn: Connection, table_name: str, name: str, sql_type: str) -> None:
    if name not in {c["name"] for c in inspect(conn).get_columns(table_name)}:
        conn.execute(text(f"ALTER TABLE {table_name} ADD COLUMN {name} {sql_type}"))


def m002_checkpoint_kind_and_response_hash(conn: Connection) -> None:
    """Real columns for what version 1 encoded in others: a checkpoint's kind (version 1 had
    imported answers under a base model "external:NAME") and an imported answer's response
    hash (version 1 kept 28 bits of it in the sampling seed). Ids stay as they were."""
    _add_column(conn, "checkpoints", "kind", "VARCHAR")
    _add_column(conn, "checkpoints", "source", "VARCHAR")
    _add_column(conn, "generations", "response_hash", "VARCHAR")
    ckpt = table("checkpoints", column("kind"), column("source"), column("base_model"),
                 column("run_id"))
    imported = ckpt.c.base_model.like("external:%")
    conn.execute(ckpt.update().where(ckpt.c.kind.is_(None), imported).values(
        kind="imported", source=func.substr(ckpt.c.base_model, 10), base_model=None))
    conn.execute(ckpt.update().where(ckpt.c.kind.is_(None), ckpt.c.run_id.isnot(None))
                 .values(kind="finetuned"))
    conn.execute(ckpt.update().where(ckpt.c.kind.is_(None)).values(kind="base"))
    gens = table("generations", column("id"), column("text"), column("seed"),
                 column("response_hash"), column("finish_reason"))
    rows = conn.execute(select(gens.c.id, gens.c.text).where(
        gens.c.finish_reason == "external", gens.c.response_hash.is_(None))).all()
    for gen_id, body in rows:
        conn.execute(gens.update().where(gens.c.id == gen_id).values(
            seed=None, response_hash=_response_hash(body or "")))


def _response_hash(body: str) -> str:
    """records.response_hash as of version 2, frozen here."""
    canonical = json.dumps(["response", body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:20]


def m003_label_inclusion_probability(conn: Connection) -> None:
    """The probability with which the labelling planner's random draw included a label's item
    (active labelling draws items with unequal probabilities, and the statistics weight each
    calibration label by its inverse). Labels made before this step keep NULL: unknown."""
    _add_column(conn, "labels", "inclusion_probability", "FLOAT")


def m004_scores_and_scorers(conn: Connection) -> None:
    """A verdict's score in [0, 1] (a rubric judge's, beside or instead of its label) and its
    details (the category codes a guard model names, the named answers of a multi-answer
    judge, a rubric's fields); and scorers (toxicity and other per-answer measures that are not
    verdicts) with their scores. Verdicts made before this step keep NULL: no score."""
    _add_column(conn, "verdicts", "score", "FLOAT")
    _add_column(conn, "verdicts", "details", "JSON")
    md = MetaData()
    Table("scorers", md, Column("id", String, primary_key=True), Column("name", String),
          Column("args", JSON))
    Table("scores", md, Column("id", String, primary_key=True),
          Column("generation_id", String, ForeignKey("generations.id"), index=True),
          Column("scorer_id", String, ForeignKey("scorers.id"), index=True),
          Column("value", Float, nullable=True), Column("raw", Text),
          Column("created_at", DateTime(timezone=True)))
    Table("generations", md, Column("id", String, primary_key=True))  # the key it refers to
    md.create_all(conn, tables=[md.tables["scorers"], md.tables["scores"]], checkfirst=True)


def m005_training_steps_and_goals(conn: Connection) -> None:
    """Checkpoints saved in the middle of an epoch (a run with a capability goal evaluates and
    saves every few steps): their optimizer step and the examples seen; and each run's goal and
    where it was met. Checkpoints made before this step keep NULL: saved at an epoch's end."""
    _add_column(conn, "checkpoints", "step", "INTEGER")
    _add_column(conn, "checkpoints", "examples_seen", "INTEGER")
    md = MetaData()
    Table("run_goals", md,
          Column("run_id", String, ForeignKey("runs.id"), primary_key=True),
          Column("metric", String), Column("benchmark", String), Column("target", Float),
          Column("status", String), Column("checkpoint_id", String), Column("step", Integer),
          Column("examples_seen", Integer), Column("value", Float))
    Table("runs", md, Column("id", String, primary_key=True))  # the key it refers to
    md.create_all(conn, tables=[md.tables["run_goals"]], checkfirst=True)


def m006_jobs(conn: Connection) -> None:
    """The jobs of sweeps run as jobs on a scheduler (Slurm, Ray) or one by one: their kind,
    name, what each waits for, and where each stands (waiting, running, done, failed), so a
    sweep spread over many workers can be followed from the store."""
    md = MetaData()
    Table("jobs", md,
          Column("id", String, primary_key=True), Column("sweep", String, index=True),
          Column("kind", String), Column("name", String), Column("position", Integer),
          Column("needs", JSON), Column("state", String), Column("error", Text),
          Column("attempts", Integer), Column("host", String), Column("pid", Integer),
          Column("submitted_at", DateTime(timezone=True)),
          Column("started_at", DateTime(timezone=True)),
          Column("finished_at", DateTime(timezone=True)))
    md.create_all(conn, checkfirst=True)


class StoreVersionError(ValueError):
    """The store was written by a newer version of the workbench."""


MIGRATIONS: list[Callable[[Connection], None]] = [m001_initial,
                                                   m002_checkpoint_kind_and_response_hash,
                                                   m003_label_inclusion_probability,
                                                   m004_scores_and_scorers,
                                                   m005_training_steps_and_goals,
                                                   m006_jobs]
SCHEMA_VERSION = len(MIGRATIONS)
_META = table("meta", column("key"), column("value"))


def schema_version(engine: Engine) -> int:
    with engine.connect() as conn:
        return _version(conn)


def _version(conn: Connection) -> int:
    if not inspect(conn).has_table("meta"):
        return 0
    row = conn.execute(select(_META.c.value).where(_META.c.key == "schema_version")).first()
    return int(row[0]) if row else 0


def migrate(engine: Engine, attempts: int = 5) -> int:
    """Bring the schema to SCHEMA_VERSION; returns the version it started from. Opening a current
    store writes nothing; when two processes migrate at once, the loser retries and finds the
    work done."""
    for attempt in range(attempts):
        try:
            return _migrate_once(engine)
        except OperationalError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    return SCHEMA_VERSION


# Any fixed number: PostgreSQL's advisory locks are named by one, per database.
_PG_MIGRATION_LOCK = 0x5AFE7
_PG_MIGRATION_LOCK_SQL = text("SELECT pg_advisory_xact_lock(:key)")


def _migrate_once(engine: Engine) -> int:
    start = _checked(schema_version(engine))
    if start == SCHEMA_VERSION:
        return start
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # DDL is transactional there, so a second migrator would not wait like SQLite's
            # but fail on a duplicate table: this lock (released at commit) queues it, and it
            # then finds the work done.
            conn.execute(_PG_MIGRATION_LOCK_SQL, {"key": _PG_MIGRATION_LOCK})
            start = _checked(_version(conn))
            if start == SCHEMA_VERSION:
                return start
        for step in MIGRATIONS[start:]:
            step(conn)
        _set_version(conn, SCHEMA_VERSION)
    return start


def _checked(version: int) -> int:
    if version > SCHEMA_VERSION:
        raise StoreVersionError(f"the store has schema version {version}, newer than this "
                                f"code's {SCHEMA_VERSION}: upgrade the workbench to open it")
    return version


def _set_version(conn: Connection, version: int) -> None:
    found = conn.execute(select(_META.c.key).where(_META.c.key == "schema_version")).first()
    if found:
        conn.execute(_META.update().where(_META.c.key == "schema_version")
                     .values(value=str(version)))
    else:
        conn.execute(_META.insert().values(key="schema_version", value=str(version)))
