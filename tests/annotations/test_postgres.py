"""A PostgreSQL store as a team would use it: a plain `postgresql://` URL given to run.py opens it
through psycopg 3; a missing driver is one line naming what to install; times read back as
SQLite gives them whatever zone the server runs in. (The rest of the store's tests run on
PostgreSQL too, through `store_url` in tests/conftest.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from annotations.records import Annotator, Checkpoint, Generation, HumanLabel, Label, Prompt
from annotations.store import SCHEMA_VERSION, Store

ROOT = Path(__file__).resolve().parents[2]


def _run_py(*args: str, blocked: str | None = None) -> subprocess.CompletedProcess:
    """run.py in its own process; `blocked` names a module made unimportable there, as it is
    where its package is not installed."""
    block = f"import sys; sys.modules[{blocked!r}] = None; " if blocked else ""
    code = f"{block}import run; sys.exit(run.main({list(args)!r}))"
    return subprocess.run([sys.executable, "-c", f"import sys; {code}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_a_plain_postgresql_url_opens_with_psycopg_3(postgres_url):
    store = Store.open(postgres_url)
    assert store.engine.dialect.name == "postgresql"
    assert store.engine.dialect.driver == "psycopg"
    assert store.counts()["schema_version"] == SCHEMA_VERSION


def test_run_py_status_on_a_postgresql_store(postgres_url):
    done = _run_py("--store", postgres_url, "status", "--json")
    assert done.returncode == 0, done.stderr
    counts = json.loads(done.stdout)
    assert counts["schema_version"] == SCHEMA_VERSION and counts["prompts"] == 0
    assert counts["store"].startswith("postgresql+psycopg://postgres@127.0.0.1:")


def test_without_psycopg_a_postgresql_store_is_one_line_naming_the_extra():
    done = _run_py("--store", "postgresql://u@127.0.0.1:9/x", "status", blocked="psycopg")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ")
    assert "'psycopg'" in done.stderr and "pip install -e '.[postgres]'" in done.stderr


def test_a_driver_the_extra_does_not_bring_is_named_itself():
    done = _run_py("--store", "postgresql+pg8000://u@127.0.0.1:9/x", "status", blocked="pg8000")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1
    assert "'pg8000'" in done.stderr and "pip install pg8000" in done.stderr
    assert "[postgres]" not in done.stderr  # that extra brings psycopg, not pg8000


def test_times_read_back_as_sqlite_gives_them_whatever_the_servers_zone(postgres_url,
                                                                         tmp_path):
    """The test server runs in a zone nine hours from UTC; a label's time still reads back as
    the same naive UTC time, of the same type, as from SQLite."""
    import psycopg

    with psycopg.connect(postgres_url) as raw:
        assert raw.execute("SHOW timezone").fetchone()[0] != "UTC"
    when = datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=timezone.utc)
    frames = [_one_label(Store.open(url), when)
              for url in (str(tmp_path / "s.db"), postgres_url)]
    for frame in frames:
        assert frame["created_at"].tolist() == [pd.Timestamp("2026-03-04 05:06:07.123456")]
    assert frames[0]["created_at"].dtype == frames[1]["created_at"].dtype


def _one_label(store: Store, when: datetime) -> pd.DataFrame:
    prompt = Prompt(benchmark="demo", text="How do I pick a lock?")
    base = Checkpoint(base_model="tiny")
    gen = Generation(checkpoint_id=base.id, prompt_id=prompt.id, temperature=0.0,
                     sample_index=0, text="No.")
    with store.batch() as tx:
        tx.upsert_prompts([prompt])
        tx.upsert_checkpoint(base)
        tx.upsert_generations([gen])
        tx.add_annotator(Annotator(name="ada"))
        tx.add_labels([Label(generation_id=gen.id, annotator="ada", label=HumanLabel.REFUSES,
                             created_at=when)])
    return store.labels_frame()
