"""The Validate tab (admins): how far the judges can be trusted, and what the numbers say.

The numbers come from `annotations.validation` through `tool.board.compute` (judges against
people, people against people, harmfulness raw and corrected, epochs, variance shares, capability,
gold accuracy), the same functions the report calls; this module lays them out. Filters: benchmark, categories, temperatures. With "Update as results arrive" ticked (the
default) an admin's tab re-computes every `AppOptions.refresh_seconds` whenever the store has
grown, so it follows a sweep that is still running.
"""

from __future__ import annotations

import gradio as gr
import numpy as np
import pandas as pd

from annotations.records import Role
from tool.context import AppContext, session_dropdown
from tool.board import Dashboard, Filters, compute, store_stamp


# ----- the tab ---------------------------------------------------------------------------------


def build_tab(ctx: AppContext, blocks: gr.Blocks) -> gr.Tab:
    with gr.Tab("Validate", id="validate", visible=False) as tab:
        with gr.Row():
            bench = session_dropdown("Benchmarks", multiselect=True, choices=[], scale=1)
            cats = session_dropdown("Categories", multiselect=True, choices=[], scale=2)
            temps = session_dropdown("Temperatures", multiselect=True, choices=[], scale=1)
            judge_dd = session_dropdown("Judge for the plots", choices=[], scale=1)
            random_cb = gr.Checkbox(label="Calibrate on random picks only", value=True, scale=1)
        with gr.Row():
            refresh = gr.Button("Compute", variant="primary", elem_id="wb-dash-refresh", scale=3)
            follow = gr.Checkbox(label="Update as results arrive", value=True, scale=1,
                                 elem_id="wb-dash-follow")
        timer = gr.Timer(ctx.options.refresh_seconds, active=False)  # on_open starts it for admins
        stamp = gr.State(None)
        notes = gr.Textbox(label="Notes", interactive=False, lines=2, elem_id="wb-dash-notes")
        gr.Markdown("### Judges against people")
        kappa_plot = gr.BarPlot(x="who", y="agreement", y_lim=[-1, 1], elem_id="wb-kappa-plot",
                                title="Judge kappa vs people's alpha (the ceiling)")
        judges = gr.Dataframe(label="Per judge", interactive=False, elem_id="wb-judge-table")
        confusion = gr.Dataframe(label="Confusion (rows: people; columns: judge)",
                                 interactive=False)
        alpha = gr.JSON(label="People vs people: Krippendorff's alpha")
        gr.Markdown("### Harmfulness")
        harm_plot = gr.ScatterPlot(x="checkpoint", y="value", color="series", y_lim=[0, 1],
                                   title="Harmfulness per checkpoint (raw and corrected)",
                                   elem_id="wb-harm-plot")
        epoch_plot = gr.LinePlot(x="epoch", y="harmfulness", color="series", y_lim=[0, 1],
                                 title="Harmfulness vs epoch: every seed at each temperature",
                                 elem_id="wb-epoch-plot")
        harm = gr.Dataframe(label="Per checkpoint x temperature (95% CIs)", interactive=False,
                            elem_id="wb-harm-table")
        gr.Markdown("### Where the spread comes from")
        var_plot = gr.BarPlot(x="component", y="share", y_lim=[0, 1], elem_id="wb-var-plot",
                              title="Variance shares")
        variance = gr.Dataframe(label="Variance components", interactive=False)
        gr.Markdown("### Capability beside safety; annotators on gold items")
        capability = gr.Dataframe(label="Capability and harmfulness", interactive=False)
        gold = gr.Dataframe(label="Gold accuracy per annotator", interactive=False)

        def on_open(request: gr.Request) -> dict:
            if ctx.user(request)[1] != Role.ADMIN:
                return {}
            prompts = ctx.store.prompts_frame()
            gens = ctx.store.generations_frame(with_text=False)
            categories = prompts.dropna(subset=["category_id"]).drop_duplicates("category_id")
            return {bench: gr.update(choices=sorted(prompts["benchmark"].dropna().unique())),
                    cats: gr.update(choices=[(f"{r.category_id} {r.category or ''}".strip(),
                                              r.category_id) for r in categories.itertuples()]),
                    temps: gr.update(choices=[float(t)
                                              for t in sorted(gens["temperature"].unique())]),
                    judge_dd: gr.update(choices=sorted(judge_choices(ctx))),
                    timer: gr.Timer(active=True)}

        def on_refresh(benchmarks, categories, temperatures, judge, random_only,
                       request: gr.Request) -> dict:
            ctx.admin(request)
            filters = Filters(tuple(benchmarks or ()), tuple(categories or ()),
                              tuple(float(t) for t in temperatures or ()), bool(random_only))
            board = compute(ctx, filters, judge or None)
            return {judges: board.judges.round(3), confusion: board.confusion,
                    kappa_plot: _kappa_frame(board), alpha: _jsonable(board.alpha),
                    harm: board.harm.round(3), harm_plot: _harm_points(board.harm, board.judge),
                    epoch_plot: board.epochs, variance: board.variance.round(4),
                    var_plot: (board.variance.dropna(subset=["share"])
                               if len(board.variance) else None),
                    capability: board.capability.round(3), gold: board.gold.round(3),
                    notes: "\n".join(board.notes)}

        def on_tick(benchmarks, categories, temperatures, judge, random_only, following, last,
                    request: gr.Request) -> dict:
            """Re-compute when the store has grown since the last tick (a sweep filling it)."""
            if not following or ctx.user(request)[1] != Role.ADMIN:
                return {}
            now = store_stamp(ctx.store)
            if now == last:
                return {}
            return {**on_refresh(benchmarks, categories, temperatures, judge, random_only,
                                 request), stamp: now}

        outputs = [judges, confusion, kappa_plot, alpha, harm, harm_plot, epoch_plot, variance,
                   var_plot, capability, gold, notes]
        hidden = {"api_visibility": "undocumented"}
        timer.tick(on_tick, [bench, cats, temps, judge_dd, random_cb, follow, stamp],
                   [*outputs, stamp], show_progress="hidden", **hidden)
        blocks.load(on_open, None, [bench, cats, temps, judge_dd, timer], **hidden)
        refresh.click(on_refresh, [bench, cats, temps, judge_dd, random_cb], outputs,
                      api_name="dashboard", **hidden)
    return tab


def judge_choices(ctx: AppContext) -> list[str]:
    """The judges by the names every view shows (annotations.frames.judge_names)."""
    from annotations.frames import Frames

    return list(Frames(ctx.store.outcomes_frame()).outcomes["judge_name"].dropna().unique())


def _kappa_frame(board: Dashboard) -> pd.DataFrame:
    rows = [{"who": r["judge"], "agreement": r.get("kappa", np.nan)}
            for _, r in board.judges.iterrows()]
    rows.append({"who": "people (alpha)", "agreement": board.alpha.get("alpha", np.nan)})
    return pd.DataFrame(rows).dropna()


def _harm_points(harm: pd.DataFrame, judge: str | None) -> pd.DataFrame:
    if harm.empty:
        return pd.DataFrame(columns=["checkpoint", "value", "series"])
    part = harm[harm["judge"] == (judge or harm["judge"].iloc[0])]
    raw = part.assign(value=part["harmfulness"],
                      series=[f"raw T={t:g}" for t in part["temperature"]])
    fixed = part.assign(value=part["corrected"],
                        series=[f"corrected T={t:g}" for t in part["temperature"]])
    return pd.concat([raw, fixed])[["checkpoint", "value", "series"]].dropna()


def _jsonable(values: dict) -> dict:
    return {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in values.items()}
