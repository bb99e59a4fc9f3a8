"""The Leaderboard tab (admins): every judge against people on the same items of one labelled set
(an imported published set, or the project's own labels), beside the people's alpha.

`leaderboard_view(ctx, benchmark)` lays out `annotations.leaderboard.judge_leaderboard`'s numbers
(fixed columns, intervals as text, "too few to read" below annotations.frames.MIN_ITEMS); it
computes nothing itself. Tests call it directly; `build_tab` shows it.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import pandas as pd

from annotations.frames import Frames
from annotations.leaderboard import Leaderboard, judge_leaderboard, labelled_benchmarks
from annotations.records import Role
from tool.board import interval
from tool.context import AppContext, session_dropdown, unchanged

JUDGE_COLUMNS = ["judge", "answers", "kappa [95% CI]", "sensitivity [95% CI]",
                 "specificity [95% CI]", "unparseable share", "kappa coherent",
                 "kappa incoherent", "AUC [95% CI]"]
CATEGORY_COLUMNS = ["judge", "category", "answers", "kappa [95% CI]", "unparseable"]


@dataclass
class LeaderboardView:
    judges: pd.DataFrame
    categories: pd.DataFrame
    summary: str
    board: Leaderboard


def _ci(row: pd.Series, name: str, n: int) -> str:
    return interval(row[name], row[f"{name}_ci_low"], row[f"{name}_ci_high"], n)


def leaderboard_view(ctx: AppContext, benchmark: str) -> LeaderboardView:
    board = judge_leaderboard(Frames.from_store(ctx.store), [benchmark], n_boot=ctx.options.n_boot)
    j = board.judges
    judges = pd.DataFrame([{
        "judge": r["judge"], "answers": int(r["n"]), "kappa [95% CI]": _ci(r, "kappa", r["n"]),
        "sensitivity [95% CI]": _ci(r, "sensitivity", r["n"]),
        "specificity [95% CI]": _ci(r, "specificity", r["n"]),
        "unparseable share": f"{r['share_unparseable']:.1%}",
        "kappa coherent": "" if pd.isna(r["kappa_coherent"]) else f"{r['kappa_coherent']:.2f}",
        "kappa incoherent": ("" if pd.isna(r["kappa_incoherent"])
                             else f"{r['kappa_incoherent']:.2f}"),
        "AUC [95% CI]": _ci(r, "auc", r["n"])} for _, r in j.iterrows()], columns=JUDGE_COLUMNS)
    c = board.by_category
    categories = pd.DataFrame([{
        "judge": r["judge_name"], "category": r["category"], "answers": int(r["n"]),
        "kappa [95% CI]": _ci(r, "kappa", r["n"]), "unparseable": int(r["n_unparseable"])}
        for _, r in c.iterrows()], columns=CATEGORY_COLUMNS)
    people = board.people[board.people["category"].eq("all")] if len(board.people) else None
    ceiling = ("" if people is None or people.empty else " People's alpha among themselves "
               "(the ceiling): " + interval(*people.iloc[0][["alpha", "ci_low", "ci_high"]]) + ".")
    summary = (f"{board.items} answers of {benchmark}, the same for every judge "
               f"({len(j)} judges).{ceiling}")
    return LeaderboardView(judges, categories, summary, board)


def build_tab(ctx: AppContext, blocks: gr.Blocks) -> gr.Tab:
    with gr.Tab("Leaderboard", id="leaderboard", visible=False) as tab:
        with gr.Row():
            chosen = session_dropdown("Labelled set", choices=[], scale=3,
                                      elem_id="wb-board-set")
            compute = gr.Button("Compute", variant="primary", scale=1, elem_id="wb-board-go")
        summary = gr.Textbox(label="Items and ceiling", interactive=False,
                             elem_id="wb-board-summary")
        judges = gr.Dataframe(label="Judges against people, best kappa first", interactive=False,
                              elem_id="wb-board-judges")
        categories = gr.Dataframe(label="By category", interactive=False,
                                  elem_id="wb-board-categories")

        def on_open(request: gr.Request) -> dict:
            if ctx.user(request)[1] != Role.ADMIN:
                return unchanged(chosen)
            names = labelled_benchmarks(Frames.from_store(ctx.store))
            return {chosen: gr.update(choices=names, value=names[0] if names else None)}

        def on_compute(benchmark: str | None, request: gr.Request,
                       progress: gr.Progress = gr.Progress()) -> dict:
            ctx.admin(request)
            if not benchmark:
                raise gr.Error("Choose a labelled set first.", print_exception=False)
            progress(0, desc="Computing the leaderboard")
            view = leaderboard_view(ctx, benchmark)
            return {judges: view.judges, categories: view.categories, summary: view.summary}

        hidden = {"api_visibility": "undocumented"}
        blocks.load(on_open, None, [chosen], **hidden)
        compute.click(on_compute, [chosen], [judges, categories, summary], api_name="leaderboard",
                      **hidden)
        def on_change(benchmark: str | None, request: gr.Request,
                      progress: gr.Progress = gr.Progress()) -> dict:
            if not benchmark:  # the tab opened on a store with no labelled set: nothing to say
                return unchanged(judges, categories, summary)
            return on_compute(benchmark, request, progress)

        chosen.change(on_change, [chosen], [judges, categories, summary], **hidden)
    return tab
