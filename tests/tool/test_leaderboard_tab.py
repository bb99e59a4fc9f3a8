"""The Leaderboard tab's view: its numbers are annotations.leaderboard's, laid out as text."""

from __future__ import annotations

from annotations.leaderboard import judge_leaderboard, labelled_benchmarks
from test_dashboard import label_everything
from tool.app import AppOptions
from tool.board import interval
from tool.context import make_context
from tool.leaderboard import leaderboard_view


def test_the_view_shows_judge_leaderboards_numbers(filled):
    label_everything(filled)
    ctx = make_context(filled.store, AppOptions(n_boot=100))
    assert labelled_benchmarks(filled.store) == ["demo"]
    view = leaderboard_view(ctx, "demo")
    board = judge_leaderboard(filled.store, ["demo"], n_boot=100)
    assert list(view.judges["judge"]) == list(board.judges["judge"])
    for (_, shown), (_, numbers) in zip(view.judges.iterrows(), board.judges.iterrows()):
        assert shown["kappa [95% CI]"] == interval(numbers["kappa"], numbers["kappa_ci_low"],
                                                   numbers["kappa_ci_high"], numbers["n"])
        assert shown["answers"] == numbers["n"]
    assert f"{board.items} answers of demo" in view.summary and "ceiling" in view.summary
    assert set(view.categories["category"]) == set(board.by_category["category"])
