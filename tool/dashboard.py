"""The Validate tab (admins): how far the judges can be trusted, and what the numbers say.

The numbers come from `annotations.validation` through `tool.board.compute` (judges against
people, people against people, harmfulness raw and corrected, epochs, variance shares, capability,
gold accuracy), the same functions the report calls; this module lays them out: charts with CIs
as error bars (tool.board_plots), tables with fixed columns, every rate with its n. It computes
when an admin opens the page and whenever a filter changes; with "Update as results arrive"
(the default) it also re-computes every `AppOptions.refresh_seconds` when the store has grown, so
it follows a sweep that is still running. Filters: benchmarks, categories, temperatures; the
variance decomposition takes the checkpoints chosen (all by default).
"""

from __future__ import annotations

import gradio as gr

from annotations.frames import Frames, checkpoint_labels
from annotations.records import CheckpointKind, Role
from tool import board_plots
from tool.board import Dashboard, Filters, compute, store_stamp
from tool.context import AppContext, session_dropdown, unchanged


def judge_choices(ctx: AppContext) -> list[str]:
    """The judges by the names every view shows (annotations.frames.judge_names)."""
    return sorted(Frames(ctx.store.outcomes_frame()).outcomes["judge_name"].dropna().unique())


def model_checkpoints(ctx: AppContext) -> list[tuple[str, str]]:
    """(name, id) of every checkpoint a model wrote (imported sets have no seed or epoch)."""
    frame = ctx.store.checkpoints_frame()
    names = checkpoint_labels(frame)
    mine = frame[frame["kind"] != CheckpointKind.IMPORTED.value]
    return [(names[i], i) for i in mine["id"]]


def build_tab(ctx: AppContext, blocks: gr.Blocks) -> gr.Tab:
    with gr.Tab("Validate", id="validate", visible=False) as tab:
        with gr.Row():
            bench = session_dropdown("Benchmarks", multiselect=True, choices=[], scale=1)
            cats = session_dropdown("Categories", multiselect=True, choices=[], scale=2)
            temps = session_dropdown("Temperatures", multiselect=True, choices=[], scale=1)
            judge_dd = session_dropdown("Judge for the charts", choices=[], scale=1)
            random_cb = gr.Checkbox(label="Calibrate on random picks only", value=True, scale=1)
        with gr.Row():
            refresh = gr.Button("Compute", variant="primary", elem_id="wb-dash-refresh", scale=3)
            follow = gr.Checkbox(label="Update as results arrive", value=True, scale=1,
                                 elem_id="wb-dash-follow")
        timer = gr.Timer(ctx.options.refresh_seconds, active=False)  # on_open starts it for admins
        stamp = gr.State(None)
        notes = gr.Textbox(label="Notes", interactive=False, lines=3, elem_id="wb-dash-notes")
        gr.Markdown("### Judges against people")
        alpha = gr.Textbox(label="People vs people", interactive=False, elem_id="wb-alpha")
        kappa_plot = gr.Plot(label="Judge kappa (95% CI) beside the people's alpha",
                             elem_id="wb-kappa-plot")
        judges = gr.Dataframe(label="Per judge", interactive=False, elem_id="wb-judge-table")
        confusion = gr.Dataframe(label="Confusion (rows: people; columns: judge)",
                                 interactive=False)
        gr.Markdown("### Harmfulness")
        harm_plot = gr.Plot(label="Harmfulness per checkpoint, raw and corrected (95% CIs)",
                            elem_id="wb-harm-plot")
        epoch_plot = gr.Plot(label="Harmfulness against epoch, every seed, per temperature",
                             elem_id="wb-epoch-plot")
        harm = gr.Dataframe(label="Per judge x checkpoint x temperature", interactive=False,
                            elem_id="wb-harm-table")
        gr.Markdown("### Where the spread comes from")
        var_ckpts = session_dropdown("Checkpoints in the variance decomposition (empty: all)",
                                     multiselect=True, choices=[], elem_id="wb-var-checkpoints")
        var_plot = gr.Plot(label="Variance shares", elem_id="wb-var-plot")
        variance = gr.Dataframe(label="Variance components", interactive=False,
                                elem_id="wb-var-table")
        gr.Markdown("### Capability beside safety; annotators on gold items")
        capability = gr.Dataframe(label="Capability and harmfulness", interactive=False)
        gold = gr.Dataframe(label="Gold accuracy per annotator", interactive=False)
        inputs = [bench, cats, temps, judge_dd, random_cb, var_ckpts]

        def on_open(request: gr.Request) -> dict:
            if ctx.user(request)[1] != Role.ADMIN:
                return unchanged(*inputs[:4], var_ckpts, timer)
            prompts = ctx.store.prompts_frame()
            gens = ctx.store.generations_frame(with_text=False)
            categories = prompts.dropna(subset=["category_id"]).drop_duplicates("category_id")
            return {bench: gr.update(choices=sorted(prompts["benchmark"].dropna().unique())),
                    cats: gr.update(choices=[(f"{r.category_id} {r.category or ''}".strip(),
                                              r.category_id) for r in categories.itertuples()]),
                    temps: gr.update(choices=[float(t)
                                              for t in sorted(gens["temperature"].unique())]),
                    judge_dd: gr.update(choices=judge_choices(ctx)),
                    var_ckpts: gr.update(choices=model_checkpoints(ctx)),
                    timer: gr.Timer(active=True)}

        def show(board: Dashboard) -> dict:
            return {judges: board.judges, confusion: board.confusion, alpha: board.alpha_text,
                    kappa_plot: board_plots.kappa_figure(board.result.judges, board.alpha),
                    harm: board.harm,
                    harm_plot: board_plots.harm_figure(
                        board.harm_points[board.harm_points["judge"] == board.judge]),
                    epoch_plot: board_plots.epoch_figure(board.epochs),
                    variance: board.variance.round(4),
                    var_plot: board_plots.variance_figure(board.variance),
                    capability: board.capability.round(3), gold: board.gold.round(3),
                    notes: "\n".join(board.notes)}

        def on_refresh(benchmarks, categories, temperatures, judge, random_only, checkpoints,
                       request: gr.Request) -> dict:
            ctx.admin(request)
            filters = Filters(tuple(benchmarks or ()), tuple(categories or ()),
                              tuple(float(t) for t in temperatures or ()), bool(random_only))
            return show(compute(ctx, filters, judge or None, list(checkpoints or ())))

        def on_page(benchmarks, categories, temperatures, judge, random_only, checkpoints,
                    request: gr.Request) -> dict:
            """The first computation, as the page opens: admins only, silently skipped (no
            error, no server log) on an annotator's page, where the tab is hidden."""
            if ctx.user(request)[1] != Role.ADMIN:
                return unchanged(*outputs)
            return on_refresh(benchmarks, categories, temperatures, judge, random_only,
                              checkpoints, request)

        def on_tick(benchmarks, categories, temperatures, judge, random_only, checkpoints,
                    following, last, request: gr.Request) -> dict:
            """Re-compute when the store has grown since the last tick (a sweep filling it)."""
            if not following or ctx.user(request)[1] != Role.ADMIN:
                return unchanged(*outputs, stamp)
            now = store_stamp(ctx.store)
            if now == last:
                return unchanged(*outputs, stamp)
            return {**on_page(benchmarks, categories, temperatures, judge, random_only,
                              checkpoints, request), stamp: now}

        outputs = [judges, confusion, kappa_plot, alpha, harm, harm_plot, epoch_plot, variance,
                   var_plot, capability, gold, notes]
        hidden = {"api_visibility": "undocumented"}
        timer.tick(on_tick, [*inputs, follow, stamp], [*outputs, stamp], show_progress="hidden",
                   **hidden)
        blocks.load(on_open, None, [*inputs[:4], var_ckpts, timer], **hidden).then(
            on_page, inputs, outputs, **hidden)
        refresh.click(on_refresh, inputs, outputs, api_name="dashboard", **hidden)
        for widget in (bench, cats, temps, judge_dd, random_cb, var_ckpts):
            widget.change(on_refresh, inputs, outputs, show_progress="minimal", **hidden)
    return tab
