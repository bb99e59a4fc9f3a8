"""The Annotate tab's plain functions: sessions, blind items, submits, double submits, undo."""

from __future__ import annotations

import dataclasses

from annotations.records import HumanLabel
from tool.annotate import my_labels, open_session, progress, skip, start_session, submit, undo
from tool.app import AppOptions, make_context


def context(filled, **changes):
    return make_context(filled.store, AppOptions(seed=0, min_seconds_per_item=0.0, **changes))


def test_session_is_blind_and_counts_progress(filled):
    ctx = context(filled, session_size=5)
    session = start_session(ctx, "ana")
    assert progress(session) == (0, 5)
    item = session.shown[session.current.generation_id]
    assert item.details == "" and item.answer and item.prompt
    assert not any(c.id in item.prompt + item.answer + item.category for c in filled.checkpoints)
    outcome = submit(ctx, session, session.token, HumanLabel.COMPLIES, " a note ")
    assert outcome.stored and progress(session) == (1, 5)
    labels = filled.store.labels_frame()
    assert list(labels["annotator"]) == ["ana"] and list(labels["note"]) == ["a note"]
    assert labels["chosen_at_random"].notna().all()


def test_double_submit_stores_one_label(filled):
    ctx = context(filled)
    session = start_session(ctx, "ana")
    token = session.token
    assert submit(ctx, session, token, "refuses").stored
    again = submit(ctx, session, token, "refuses")
    assert not again.stored and "already" in again.message
    assert len(filled.store.labels_frame(current=False)) == 1 and progress(session)[0] == 1


def test_too_fast_second_click_is_ignored(filled):
    ctx = context(filled)
    slow = dataclasses.replace(ctx.options, min_seconds_per_item=60)
    ctx = dataclasses.replace(ctx, options=slow)
    session = start_session(ctx, "ana")
    assert not submit(ctx, session, session.token, "refuses").stored
    assert filled.store.labels_frame().empty


def test_undo_reopens_and_the_relabel_replaces(filled):
    ctx = context(filled)
    session = start_session(ctx, "ana")
    first = session.current.generation_id
    submit(ctx, session, session.token, "complies")
    undo(ctx, session)
    assert session.current.generation_id == first and progress(session)[0] == 0
    submit(ctx, session, session.token, "incoherent")
    current = filled.store.labels_frame(current=True)
    assert list(current["label"]) == ["incoherent"]
    assert len(filled.store.labels_frame(current=False)) == 2  # history kept


def test_skip_moves_on_without_a_label(filled):
    ctx = context(filled)
    session = start_session(ctx, "ana")
    first = session.current.generation_id
    skip(ctx, session, session.token)
    assert session.current.generation_id != first and session.skipped == 1
    assert filled.store.labels_frame().empty


def test_two_people_do_not_share_a_session_beyond_k(filled):
    ctx = context(filled, k=1, session_size=100)
    ana, bob = start_session(ctx, "ana"), start_session(ctx, "bob")
    assert not {a.generation_id for a in ana.items} & {a.generation_id for a in bob.items}
    assert len(ana.items) + len(bob.items) == len(filled.generations)


def test_not_blind_shows_details(filled):
    ctx = context(filled, blind=False)
    session = start_session(ctx, "ana")
    assert "verdicts" in session.shown[session.current.generation_id].details


def test_my_labels_are_only_mine(filled):
    ctx = context(filled)
    for name, label in (("ana", "complies"), ("bob", "refuses")):
        session = start_session(ctx, name)
        submit(ctx, session, session.token, label, f"note by {name}")
    mine = my_labels(ctx, "ana")
    assert list(mine["label"]) == ["complies"] and list(mine["note"]) == ["note by ana"]


def test_a_finished_session_ignores_further_submits(filled):
    ctx = context(filled, session_size=2)
    session = start_session(ctx, "ana")
    for _ in range(2):
        assert submit(ctx, session, session.token, "complies").stored
    assert session.current is None and progress(session) == (2, 2)
    assert not submit(ctx, session, session.token, "complies").stored
    assert not skip(ctx, session, session.token).stored
    assert len(filled.store.labels_frame()) == 2


def test_an_empty_store_gives_empty_views(tmp_path):
    from annotations.store import Store
    from tool.compare import new_pair
    from tool.board import Filters, compute

    ctx = make_context(Store.open(tmp_path / "empty.db"), AppOptions())
    session = start_session(ctx, "ana")
    assert session.items == [] and session.current is None and progress(session) == (0, 0)
    assert new_pair(ctx) is None
    board = compute(ctx, Filters())
    assert board.harm.empty and board.judges.empty


def test_a_reload_resumes_the_session_where_it_was(filled):
    ctx = context(filled, session_size=5)
    first, resumed = open_session(ctx, "ana")
    assert not resumed
    old_token = first.token
    submit(ctx, first, first.token, HumanLabel.COMPLIES)
    again, resumed = open_session(ctx, "ana")  # the page is loaded again
    assert resumed and again is first and progress(again) == (1, 5)
    assert again.token != old_token  # the old page's token no longer submits
    assert not submit(ctx, again, old_token, HumanLabel.REFUSES).stored
    other, resumed = open_session(ctx, "bob")  # someone else gets their own
    assert not resumed and other is not first


def test_undo_says_which_label_it_reopens(filled):
    ctx = context(filled)
    session = start_session(ctx, "ana")
    submit(ctx, session, session.token, HumanLabel.INCOHERENT)
    outcome = undo(ctx, session)
    assert "you had said: incoherent" in outcome.message and progress(session)[0] == 0


def test_cant_judge_is_a_label_of_its_own_that_no_statistic_counts(filled):
    from annotations.frames import Frames

    ctx = context(filled)
    session = start_session(ctx, "ana")
    item = session.current.generation_id
    outcome = submit(ctx, session, session.token, HumanLabel.CANT_JUDGE)
    assert outcome.stored and outcome.message == "Saved: can't judge."
    assert list(filled.store.labels_frame()["label"]) == ["cant_judge"]
    assert Frames.from_store(filled.store).labels.empty  # no reading: out of every statistic
    assert list(my_labels(ctx, "ana")["label"]) == ["can't judge"]
    later = start_session(ctx, "ana")  # not served to ana again, unlike a skip
    assert item not in {a.generation_id for a in later.items}
