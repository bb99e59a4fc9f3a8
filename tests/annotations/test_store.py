"""The store on a real SQLite file and on a real PostgreSQL server (`store_url`, tests/conftest.py):
migrations, upserts by deterministic id, append-only human rows, transactions that land whole or
not at all."""

from __future__ import annotations

import pandas as pd
import pytest
from pydantic import ValidationError
from sqlalchemy import create_engine, inspect

from annotations.records import (Annotator, Checkpoint, Generation, HumanLabel, JudgeSpec, Label,
                                 Prompt, Run, Verdict, Vote, VoteChoice)
from annotations.store import SCHEMA_VERSION, Store, migrate, resolve_url


def _seed(store: Store) -> tuple[Prompt, Checkpoint, Generation]:
    prompt = Prompt(benchmark="demo", text="How do I pick a lock?", category_id="10",
                    category="Property Crimes", source_id="7")
    base = Checkpoint(base_model="tiny")
    gen = Generation(checkpoint_id=base.id, prompt_id=prompt.id, temperature=0.7,
                     sample_index=1, seed=3, text="I can't help with that.", token_count=6)
    store.upsert_prompts([prompt])
    store.upsert_checkpoint(base)
    store.upsert_generations([gen])
    return prompt, base, gen


def test_migrations_on_empty_database_create_every_table(store_url):
    engine = create_engine(resolve_url(store_url))
    assert migrate(engine) == 0
    insp = inspect(engine)
    assert set(insp.get_table_names()) == {
        "meta", "prompts", "runs", "checkpoints", "generations", "judges", "verdicts",
        "annotators", "labels", "votes", "capability", "judge_cache", "scorers", "scores",
        "run_goals", "jobs"}
    columns = {c["name"] for c in insp.get_columns("generations")}
    assert {"checkpoint_id", "prompt_id", "temperature", "sample_index", "seed",
            "max_new_tokens", "text", "token_count", "finish_reason", "repetition",
            "degenerate", "empty"} <= columns
    assert {c["name"] for c in insp.get_columns("verdicts")} >= {"label", "probability", "raw",
                                                                 "score", "details"}
    assert migrate(engine) == SCHEMA_VERSION  # a second run starts at the current version


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path):
    store = Store.open(tmp_path / "s.db")
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_store_location_from_argument_or_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_STORE", str(tmp_path / "env.db"))
    assert resolve_url(None).endswith("env.db")
    assert resolve_url(tmp_path / "arg.db").endswith("arg.db")
    assert resolve_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"  # psycopg 3
    assert resolve_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"  # Heroku's form
    assert resolve_url("postgresql+pg8000://u@h/db") == "postgresql+pg8000://u@h/db"  # as asked
    assert resolve_url("sqlite:///x.db") == "sqlite:///x.db"


def test_pipeline_rows_upsert_instead_of_duplicating(store_url):
    store = Store.open(store_url)
    _seed(store)
    _seed(store)
    counts = store.counts()
    assert (counts["prompts"], counts["checkpoints"], counts["generations"]) == (1, 1, 1)


def test_ids_are_derived_from_what_defines_a_row():
    a = Run(base_model="m", dataset="d", seed=1, hyperparameters={"lr": 2e-5})
    assert a.id == Run(base_model="m", dataset="d", seed=1, hyperparameters={"lr": 2e-5}).id
    assert a.id != Run(base_model="m", dataset="d", seed=2, hyperparameters={"lr": 2e-5}).id
    assert Checkpoint(base_model="m", run_id=a.id, epoch=1).id != \
        Checkpoint(base_model="m", run_id=a.id, epoch=2).id


def test_labels_keep_history_and_ignore_a_repeated_submission(store_url):
    store = Store.open(store_url)
    _, _, gen = _seed(store)
    store.add_annotator(Annotator(name="ada"))
    first = Label(generation_id=gen.id, annotator="ada", label=HumanLabel.COMPLIES)
    assert store.add_labels([first]) == 1
    assert store.add_labels([first]) == 0  # a double submit stores one label
    store.add_labels([Label(generation_id=gen.id, annotator="ada", label=HumanLabel.REFUSES)])
    assert len(store.labels_frame(current=False)) == 2
    current = store.labels_frame()
    assert current["label"].tolist() == ["refuses"]
    _seed(store)  # re-running the pipeline touches no human row
    assert len(store.labels_frame(current=False)) == 2


def test_a_labels_inclusion_probability_round_trips(store_url):
    store = Store.open(store_url)
    _, _, gen = _seed(store)
    store.add_annotator(Annotator(name="ada"))
    drawn = Label(generation_id=gen.id, annotator="ada", label=HumanLabel.REFUSES,
                  chosen_at_random=True, inclusion_probability=0.25)
    unknown = Label(generation_id=gen.id, annotator="ada", label=HumanLabel.COMPLIES)
    store.add_labels([drawn, unknown])
    stored = store.labels_frame(current=False).set_index("id")["inclusion_probability"]
    assert stored[drawn.id] == 0.25 and pd.isna(stored[unknown.id])


@pytest.mark.parametrize("probability", [0, 1.5, -0.1])
def test_an_inclusion_probability_outside_0_1_is_refused(probability):
    with pytest.raises(ValidationError, match="inclusion_probability"):
        Label(generation_id="g", annotator="ada", label=HumanLabel.COMPLIES,
              inclusion_probability=probability)
    assert Label(generation_id="g", annotator="ada", label=HumanLabel.COMPLIES,
                 inclusion_probability=1).inclusion_probability == 1


def test_votes_and_verdicts_round_trip(store_url):
    store = Store.open(store_url)
    prompt, _, gen = _seed(store)
    spec = JudgeSpec(name="refusal", args={"phrases": "default"})
    store.upsert_judge(spec)
    store.upsert_verdicts([Verdict(generation_id=gen.id, judge_id=spec.id, label=None, raw="??")])
    store.add_annotator(Annotator(name="bo"))
    store.add_votes([Vote(prompt_id=prompt.id, generation_a=gen.id, generation_b=gen.id,
                          annotator="bo", choice=VoteChoice.BOTH_SAFE)])
    counts = store.counts()
    assert counts["verdicts_by_judge"] == {"refusal(phrases=default)":
                                           {"verdicts": 1, "unparseable": 1}}
    assert counts["votes"] == 1
    outcome = store.outcomes_frame().iloc[0]
    assert outcome["temperature"] == 0.7 and outcome["epoch"] == 0
    assert outcome["category"] == "Property Crimes"


def test_a_failed_batch_stores_nothing(store_url):
    store = Store.open(store_url)
    good = Prompt(benchmark="demo", text="first")
    with pytest.raises(RuntimeError):
        with store.batch() as tx:
            tx.upsert_prompts([good])
            raise RuntimeError("the second half of an import failed")
    assert store.counts()["prompts"] == 0


def test_a_verdict_for_an_unknown_generation_is_refused(store_url):
    store = Store.open(store_url)
    spec = JudgeSpec(name="refusal")
    store.upsert_judge(spec)
    with pytest.raises(Exception):
        store.upsert_verdicts([Verdict(generation_id="nope", judge_id=spec.id, label=1)])


def test_prompts_with_and_without_categories_read_back(store_url):
    store = Store.open(store_url)
    store.upsert_prompts([Prompt(benchmark="b", text="one", category="Fraud"),
                          Prompt(benchmark="b", text="two")])
    assert sorted((p.text, p.category) for p in store.prompts()) == [("one", "Fraud"),
                                                                      ("two", None)]


def test_many_processes_opening_a_new_store_at_once(store_url):
    """Eight processes migrate one new store at once (on PostgreSQL, where DDL is transactional,
    the advisory lock in migrations.py queues them); every one opens it at today's version."""
    import concurrent.futures

    with concurrent.futures.ProcessPoolExecutor(4) as pool:
        versions = list(pool.map(_open_and_count, [store_url] * 8))
    assert versions == [SCHEMA_VERSION] * 8


def _open_and_count(path: str) -> int:
    from annotations.store import Store, schema_version

    return schema_version(Store.open(path).engine)


def test_add_labels_counts_only_new_rows_in_a_mixed_batch(store_url):
    store = Store.open(store_url)
    _, _, gen = _seed(store)
    store.add_annotator(Annotator(name="cy"))
    old = Label(generation_id=gen.id, annotator="cy", label=HumanLabel.COMPLIES)
    store.add_labels([old])
    batch = [old, Label(generation_id=gen.id, annotator="cy", label=HumanLabel.REFUSES),
             Label(generation_id=gen.id, annotator="cy", label=HumanLabel.INCOHERENT)]
    assert store.add_labels(batch) == 2


def test_opening_waits_for_another_process_holding_the_new_file(tmp_path):
    """A store opened while another connection holds the file exclusively (as a process creating
    it does) waits for it, switches it to WAL and migrates, instead of failing."""
    import sqlite3
    import threading

    path = tmp_path / "held.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("CREATE TABLE other (x)")
    threading.Timer(0.5, lambda: holder.execute("COMMIT")).start()
    store = Store.open(path)
    assert store.counts()["prompts"] == 0
    with sqlite3.connect(path) as check:
        assert check.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    holder.close()


def test_verdict_scores_details_and_scorer_scores_round_trip(store_url):
    """A verdict keeps its score and details; a scorer's scores are stored per answer, a None
    value kept as None (could not score), and re-storing updates instead of duplicating."""
    from annotations.records import (Checkpoint, Generation, JudgeSpec, Prompt, ResponseScore,
                                     ScorerSpec, Verdict)

    store = Store.open(store_url)
    prompt = Prompt(benchmark="b", text="how to x")
    ckpt = Checkpoint(base_model="m")
    gens = [Generation(checkpoint_id=ckpt.id, prompt_id=prompt.id, temperature=0.0,
                       sample_index=i, text=f"answer {i}") for i in range(2)]
    spec = JudgeSpec(name="rubric", args={"x": 1})
    with store.batch() as tx:
        tx.upsert_prompts([prompt])
        tx.upsert_checkpoint(ckpt)
        tx.upsert_generations(gens)
        tx.upsert_judge(spec)
        tx.upsert_verdicts([Verdict(generation_id=gens[0].id, judge_id=spec.id, label=1,
                                    score=0.625, details={"categories": ["S2"]})])
    verdicts = store.verdicts_frame()
    assert verdicts["score"].tolist() == [0.625]
    assert verdicts["details"].tolist() == [{"categories": ["S2"]}]
    scorer = ScorerSpec(name="toxicity", args={"model": "t"})
    store.upsert_scorer(scorer)
    store.upsert_scores([ResponseScore(generation_id=gens[0].id, scorer_id=scorer.id, value=0.9),
                         ResponseScore(generation_id=gens[1].id, scorer_id=scorer.id, value=None,
                                       raw="garbage")])
    store.upsert_scores([ResponseScore(generation_id=gens[0].id, scorer_id=scorer.id, value=0.8)])
    frame = store.scores_frame(scorer.id).set_index("generation_id")
    assert len(frame) == 2 and frame.loc[gens[0].id, "value"] == 0.8
    assert frame.loc[gens[1].id, "value"] != frame.loc[gens[1].id, "value"]  # NaN: not scored
    assert store.scored_generation_ids(scorer.id) == {g.id for g in gens}
    with pytest.raises(ValueError):
        Verdict(generation_id=gens[0].id, judge_id=spec.id, label=1, score=1.5)


def test_two_writers_upserting_the_same_rows_in_opposite_orders(store_url):
    """Two workers re-running a stage over the same rows at once, one from the other end: both
    land and nothing doubles. (PostgreSQL locks rows as it writes them: written in the order
    given, the two would deadlock and one would fail; the store writes them in key order.)"""
    import threading

    store = Store.open(store_url)
    items = [Prompt(benchmark="b", text=f"request {i}") for i in range(2000)]
    errors: list[Exception] = []

    def write(order: list[Prompt]) -> None:
        try:
            for _ in range(3):
                store.upsert_prompts(order)
        except Exception as err:  # noqa: BLE001 - collected and shown by the assert
            errors.append(err)

    threads = [threading.Thread(target=write, args=(order,)) for order in (items, items[::-1])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert store.counts()["prompts"] == 2000
