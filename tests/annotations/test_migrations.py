"""The schema as a history: every migration on an empty database gives exactly today's tables,
and a store written by schema version 1 (tests/fixtures/store_v1.db, made by a small real sweep at
commit c0fee73) upgrades in place, keeping every row and every id. Each runs on SQLite and on a
real PostgreSQL server (`store_url`); there the version-1 store is the fixture's rows copied into
migration 1's tables."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import MetaData, create_engine, inspect, select

from annotations.frames import Frames
from annotations.importers import import_labelled_responses
from annotations.migrations import (MIGRATIONS, SCHEMA_VERSION, StoreVersionError, migrate,
                                    schema_version)
from annotations.records import Checkpoint, CheckpointKind
from annotations.schema import metadata
from annotations.store import Store, StoreError, resolve_url

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "store_v1.db"
TABLES = ["prompts", "runs", "checkpoints", "generations", "judges", "verdicts", "annotators",
          "labels", "votes", "capability", "judge_cache"]


def _engine(store_url: str):
    return create_engine(resolve_url(store_url))


def _rows(store_url: str) -> dict[str, list[tuple]]:
    engine = _engine(store_url)
    with engine.connect() as conn:
        rows = {t: sorted(conn.exec_driver_sql(f"SELECT * FROM {t}").all(), key=str)
                for t in TABLES}
    engine.dispose()
    return rows


@pytest.fixture
def v1_store(store_url: str, tmp_path: Path) -> str:
    """A store as schema version 1 left it, holding the fixture's rows: a copy of the file on
    SQLite; on PostgreSQL, migration 1's tables filled with the fixture's rows, read and written
    through their reflected (typed) tables so times, JSON and booleans arrive as values."""
    copy = tmp_path / "v1-fixture.db"  # never opened in place: SQLite may write beside a file
    shutil.copy(FIXTURE, copy)
    if not store_url.startswith("postgresql"):
        shutil.move(copy, store_url)
        return store_url
    source, target = create_engine(f"sqlite:///{copy}"), _engine(store_url)
    with target.begin() as conn:
        MIGRATIONS[0](conn)
    read, write = MetaData(), MetaData()
    read.reflect(source)
    write.reflect(target)
    with source.connect() as src, target.begin() as dst:
        for table in read.sorted_tables:  # referenced rows first
            rows = [dict(row) for row in src.execute(select(table)).mappings()]
            if rows:
                dst.execute(write.tables[table.name].insert(), rows)
    source.dispose()
    target.dispose()
    return store_url


def test_every_migration_on_an_empty_database_gives_todays_tables(store_url):
    engine = _engine(store_url)
    assert migrate(engine) == 0 and schema_version(engine) == SCHEMA_VERSION == len(MIGRATIONS)
    insp = inspect(engine)
    assert set(insp.get_table_names()) == set(metadata.tables)
    for name, table in metadata.tables.items():
        assert [c["name"] for c in insp.get_columns(name)] == [c.name for c in table.columns], name
        indexed = {tuple(i["column_names"]) for i in insp.get_indexes(name)}
        assert indexed == {tuple(c.name for c in i.columns) for i in table.indexes}, name
    assert migrate(engine) == SCHEMA_VERSION  # a second run finds nothing to do


def test_migration_1_is_schema_version_1_exactly(store_url, tmp_path):
    """Step 1 alone gives the fixture's own tables and columns (it is frozen, not today's)."""
    engine = _engine(store_url)
    with engine.begin() as conn:
        MIGRATIONS[0](conn)
    shutil.copy(FIXTURE, tmp_path / "v1-fixture.db")
    fixture = inspect(create_engine(f"sqlite:///{tmp_path / 'v1-fixture.db'}"))
    mine = inspect(engine)
    assert set(mine.get_table_names()) == set(fixture.get_table_names())
    for name in fixture.get_table_names():
        assert [c["name"] for c in mine.get_columns(name)] == \
            [c["name"] for c in fixture.get_columns(name)], name


def test_a_version_1_store_upgrades_in_place_and_keeps_every_row(v1_store):
    before = _rows(v1_store)
    assert schema_version(_engine(v1_store)) == 1
    store = Store.open(v1_store)
    assert store.counts()["schema_version"] == SCHEMA_VERSION
    after = _rows(v1_store)
    for table in TABLES:
        assert len(after[table]) == len(before[table]) > 0, table
        old_ids = [r[0] for r in before[table]]
        assert sorted(r[0] for r in after[table]) == sorted(old_ids), table
    checkpoints = store.checkpoints_frame().set_index("id")
    imported = checkpoints[checkpoints["kind"] == CheckpointKind.IMPORTED.value]
    assert sorted(imported["source"]) == ["calib", "second"]
    assert imported["base_model"].isna().all()
    assert set(checkpoints["kind"]) == {"base", "finetuned", "imported"}
    assert (checkpoints.loc[checkpoints["kind"] == "finetuned", "run_id"].notna()).all()
    gens = store.generations_frame()
    external = gens[gens["finish_reason"] == "external"]
    assert len(external) == 6 and external["seed"].isna().all()
    assert external["response_hash"].notna().all()
    sampled = gens[gens["finish_reason"] != "external"]
    assert sampled["seed"].notna().all() and sampled["response_hash"].isna().all()
    names = set(Frames.from_store(store).outcomes["checkpoint"])
    assert {"base", "seed 1 epoch 1", "seed 1 epoch 2", "imported: calib"} <= names
    old_labels = store.labels_frame(current=False)
    assert len(old_labels) == len(before["labels"])
    assert old_labels["inclusion_probability"].isna().all()  # unknown for labels made before


def test_a_version_2_store_upgrades_to_today(store_url):
    """A store as version 2 left it (its two steps, nothing in it) gains the labels'
    inclusion_probability, the verdicts' score and details, the scorers and scores tables, the
    checkpoints' step and examples seen, the run_goals and jobs tables, and nothing else: it
    then has exactly today's tables."""
    engine = _engine(store_url)
    with engine.begin() as conn:
        for step in MIGRATIONS[:2]:
            step(conn)
        conn.exec_driver_sql("INSERT INTO meta (key, value) VALUES ('schema_version', '2')")
    columns = {c["name"] for c in inspect(engine).get_columns("labels")}
    assert "inclusion_probability" not in columns
    assert schema_version(engine) == 2
    assert migrate(engine) == 2 and schema_version(engine) == SCHEMA_VERSION == 6
    insp = inspect(engine)
    assert set(insp.get_table_names()) == set(metadata.tables)
    for name, table in metadata.tables.items():
        assert [c["name"] for c in insp.get_columns(name)] == [c.name for c in table.columns], name


def test_after_the_upgrade_a_reimport_finds_the_same_rows(v1_store, tmp_path):
    """The ids of imported answers stay those version 1 gave them: importing the same answers
    again adds no checkpoint, answer or label."""
    store = Store.open(v1_store)
    counts = store.counts()
    labelled = store.generations_frame()
    rows = labelled[labelled["benchmark"] == "second"]
    calib = tmp_path / "second.jsonl"
    prompts = store.prompts_frame().set_index("id")["text"]
    words = dict(zip(store.labels_frame()["generation_id"], store.labels_frame()["label"]))
    calib.write_text("".join(
        '{"prompt": %s, "response": %s, "label": "%s", "annotator": "ann"}\n' % (
            _json(prompts[r.prompt_id]), _json(r.text), words[r.id]) for r in rows.itertuples()))
    result = import_labelled_responses(store, calib, source="second")
    assert result["labels_added"] == 0
    assert store.counts() == counts


def _json(text: str) -> str:
    import json
    return json.dumps(text)


def test_a_store_newer_than_the_code_is_refused_in_one_sentence(store_url):
    store = Store.open(store_url)
    with store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    store.close()
    with pytest.raises(StoreError, match="schema version 99, newer than this code's"):
        Store.open(store_url)
    assert issubclass(StoreVersionError, ValueError)


def test_a_version_4_store_keeps_its_checkpoints_at_epoch_ends(store_url):
    """Checkpoints made before training steps were stored keep their ids and read as saved at
    an epoch's end (step NULL); the store gains run goals."""
    engine = _engine(store_url)
    with engine.begin() as conn:
        for step in MIGRATIONS[:4]:
            step(conn)
        conn.exec_driver_sql("INSERT INTO meta (key, value) VALUES ('schema_version', '4')")
        conn.exec_driver_sql("INSERT INTO runs (id, base_model, dataset, seed) "
                             "VALUES ('r1', 'tiny', 'toy', 1)")
        old = Checkpoint(base_model="tiny", run_id="r1", epoch=2)
        conn.exec_driver_sql("INSERT INTO checkpoints (id, run_id, base_model, epoch, kind) "
                             f"VALUES ('{old.id}', 'r1', 'tiny', 2, 'finetuned')")
    store = Store(engine)
    assert migrate(engine) == 4
    row = store.checkpoints_frame().iloc[0]
    assert row["id"] == old.id and row["step"] is None and row["examples_seen"] is None
    assert store.goals_frame().empty and store.goal("r1") is None
