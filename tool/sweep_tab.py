"""The Sweep tab (admins): the jobs of a sweep run as jobs (on Slurm, Ray or one by one) and
where each stands: waiting, running, done or failed, with its tries, worker, times and error.

`sweep_view(ctx, sweep)` lays out `annotations.jobs.jobs_table`; it computes nothing itself.
Tests call it directly; `build_tab` shows it. A job whose worker died still says running until
the sweep is submitted again.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import pandas as pd

from annotations.jobs import jobs_summary, jobs_table, sweep_names
from annotations.records import Role
from tool.context import AppContext, session_dropdown, unchanged

COLUMNS = ["job", "state", "attempts", "waits for", "worker", "started", "finished", "seconds",
           "error"]


@dataclass
class SweepView:
    jobs: pd.DataFrame
    summary: str


def sweep_view(ctx: AppContext, sweep: str) -> SweepView:
    table = jobs_table(ctx.store, sweep)
    return SweepView(table[COLUMNS].reset_index(drop=True), f"{sweep}: {jobs_summary(table)}")


def build_tab(ctx: AppContext, blocks: gr.Blocks) -> gr.Tab:
    with gr.Tab("Sweep", id="sweep", visible=False) as tab:
        with gr.Row():
            chosen = session_dropdown("Sweep", choices=[], scale=3, elem_id="wb-sweep-name")
            refresh = gr.Button("Refresh", scale=1, elem_id="wb-sweep-refresh")
        summary = gr.Textbox(label="Jobs by state", interactive=False, elem_id="wb-sweep-summary")
        jobs = gr.Dataframe(label="Jobs, in the plan's order", interactive=False,
                            elem_id="wb-sweep-jobs")

        def on_open(request: gr.Request) -> dict:
            if ctx.user(request)[1] != Role.ADMIN:
                return unchanged(chosen)
            names = sweep_names(ctx.store)
            return {chosen: gr.update(choices=names, value=names[0] if names else None)}

        def on_refresh(sweep: str | None, request: gr.Request) -> dict:
            ctx.admin(request)
            if not sweep:  # no sweep has run as jobs in this store
                return unchanged(jobs, summary)
            view = sweep_view(ctx, sweep)
            return {jobs: view.jobs, summary: view.summary}

        hidden = {"api_visibility": "undocumented"}
        blocks.load(on_open, None, [chosen], **hidden)
        refresh.click(on_refresh, [chosen], [jobs, summary], api_name="sweep_jobs", **hidden)
        chosen.change(on_refresh, [chosen], [jobs, summary], **hidden)
    return tab
