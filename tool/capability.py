"""The Capability tab (admins): safety at matched capability and whether a conclusion holds.

`capability_view(ctx, judge, goal, target, a, b)` lays out `annotations.matched.matched_report`
(each run's goal checkpoint, comparisons at equal capability, the safety-against-capability
plot) and `annotations.robustness.conclusion_robustness` (one comparison read under every
benchmark, judge, temperature and alignment); it computes nothing itself. Tests call it
directly; `build_tab` shows it.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import pandas as pd

from annotations.frames import Frames, judge_names, select_outcomes
from annotations.matched import MatchedReport, matched_report, stored_goals
from annotations.records import PromptKind, Role
from annotations.robustness import Robustness, conclusion_robustness
from annotations.sweeps import sweeps
from tool.board import interval
from tool.context import AppContext, session_dropdown, unchanged

BASE = "the base model"
GOAL_COLUMNS = ["run", "data", "temperature", "goal", "examples seen", "capability",
                "harmfulness [95% CI]", "corrected [95% CI]"]
COMPARISON_COLUMNS = ["comparison", "temperature", "difference (pp) [95% CI]", "prompts",
                      "conclusion"]
ROBUSTNESS_COLUMNS = ["alignment", "benchmark", "source", "temperature",
                      "difference (pp) [95% CI]", "prompts", "conclusion", "flips with"]


@dataclass
class CapabilityView:
    at_goal: pd.DataFrame
    comparisons: pd.DataFrame
    robustness: pd.DataFrame
    summary: str
    matched: MatchedReport
    conclusions: Robustness | None


def goal_choices(frames: Frames) -> list[str]:
    """Each measured capability as `metric on benchmark` (the target is its own box), the
    goals runs were trained to first."""
    goals = [f"{metric} on {bench}" for metric, bench, _ in stored_goals(frames)]
    measured = frames.capability[["metric", "benchmark"]].drop_duplicates() \
        if len(frames.capability) else pd.DataFrame(columns=["metric", "benchmark"])
    return list(dict.fromkeys(goals + [f"{m} on {b}" for m, b in measured.itertuples(index=False)]))


def _pp(row: pd.Series) -> str:
    return interval(100 * row["difference"], 100 * row["ci_low"], 100 * row["ci_high"])


def _rate(row: pd.Series, name: str) -> str:
    if pd.isna(row[name]):
        return ""
    return interval(row[name], row[f"{name}_ci_low" if name == "corrected" else "ci_low"],
                    row[f"{name}_ci_high" if name == "corrected" else "ci_high"])


def capability_view(ctx: AppContext, judge_id: str, goal: str, target: float, a: str | None,
                    b: str | None) -> CapabilityView:
    frames = Frames.from_store(ctx.store)
    metric, _, benchmark = goal.partition(" on ")
    matched = matched_report(frames, judge_id, metric, float(target), benchmark=benchmark or None,
                             n_boot=ctx.options.n_boot)
    at_goal = pd.DataFrame([{
        "run": r["checkpoint"], "data": r["dataset"], "temperature": r["temperature"],
        "goal": ("reached" + (", interpolated" if r["interpolated"] else "")) if r["reached"]
        else "not reached", "examples seen": r["examples_seen"],
        "capability": round(float(r["capability"]), 4),
        "harmfulness [95% CI]": _rate(r, "harmfulness"), "corrected [95% CI]": _rate(r, "corrected")}
        for _, r in matched.at_goal.iterrows()], columns=GOAL_COLUMNS)
    comparisons = pd.DataFrame([{
        "comparison": r["comparison"], "temperature": r["temperature"],
        "difference (pp) [95% CI]": _pp(r), "prompts": int(r["n_prompts"]),
        "conclusion": r["conclusion"]} for _, r in matched.comparisons.iterrows()],
        columns=COMPARISON_COLUMNS)
    conclusions, rows = None, pd.DataFrame(columns=ROBUSTNESS_COLUMNS)
    if a:
        conclusions = conclusion_robustness(frames, a, None if b in (None, "", BASE) else b,
                                            metric=metric, target=float(target),
                                            capability_benchmark=benchmark or None,
                                            n_boot=ctx.options.n_boot)
        rows = pd.DataFrame([{
            "alignment": r["alignment"], "benchmark": r["benchmark"], "source": r["source"],
            "temperature": r["temperature"], "difference (pp) [95% CI]": _pp(r),
            "prompts": int(r["n_prompts"]), "conclusion": r["conclusion"],
            "flips with": r["flips_with"]} for _, r in conclusions.table.iterrows()],
            columns=ROBUSTNESS_COLUMNS)
    flipping = "" if conclusions is None else (
        f" {a} against {conclusions.b}: {int(conclusions.table['flips'].sum())} of "
        f"{len(conclusions.table)} readings flip; most common: {conclusions.reference}.")
    summary = f"Goal {matched.goal}, harmfulness under {matched.judge}.{flipping} {matched.note}"
    return CapabilityView(at_goal, comparisons, rows, summary.strip(), matched, conclusions)


def build_tab(ctx: AppContext, blocks: gr.Blocks) -> gr.Tab:
    from annotations import report_plots

    with gr.Tab("Capability", id="capability", visible=False) as tab:
        with gr.Row():
            judge = session_dropdown("Judge", choices=[], scale=2, elem_id="wb-cap-judge")
            goal = session_dropdown("Capability metric", choices=[], scale=2,
                                    elem_id="wb-cap-goal")
            target = gr.Number(label="Target", scale=1, elem_id="wb-cap-target")
        with gr.Row():
            first = session_dropdown("Compare data set", choices=[], scale=2, elem_id="wb-cap-a")
            second = session_dropdown("against", choices=[], scale=2, elem_id="wb-cap-b")
            compute = gr.Button("Compute", variant="primary", scale=1, elem_id="wb-cap-go")
        summary = gr.Textbox(label="Summary", interactive=False, elem_id="wb-cap-summary")
        plot = gr.Plot(label="Harmfulness against capability", elem_id="wb-cap-plot")
        at_goal = gr.Dataframe(label="Each run where it meets the goal", interactive=False,
                               elem_id="wb-cap-goals")
        comparisons = gr.Dataframe(label="At equal capability", interactive=False,
                                   elem_id="wb-cap-comparisons")
        robustness = gr.Dataframe(label="Does the conclusion hold?", interactive=False,
                                  elem_id="wb-cap-robustness")

        def on_open(request: gr.Request) -> dict:
            if ctx.user(request)[1] != Role.ADMIN:
                return unchanged(judge, goal, target, first, second)
            frames = Frames.from_store(ctx.store)
            names = judge_names(select_outcomes(frames.outcomes, PromptKind.UNSAFE))
            goals, choices = stored_goals(frames), goal_choices(frames)
            datasets = [d for _, d in sweeps(frames)]
            return {judge: gr.update(choices=[(n, j) for j, n in names.items()],
                                     value=next(iter(names), None)),
                    goal: gr.update(choices=choices, value=choices[0] if choices else None),
                    target: goals[0][2] if goals else None,
                    first: gr.update(choices=datasets, value=datasets[0] if datasets else None),
                    second: gr.update(choices=[BASE, *datasets], value=BASE)}

        def on_compute(judge_id: str | None, chosen: str | None, value: float | None,
                       a: str | None, b: str | None, request: gr.Request,
                       progress: gr.Progress = gr.Progress()) -> dict:
            ctx.admin(request)
            if not judge_id or not chosen or value is None:
                raise gr.Error("Choose a judge, a capability metric and a target first.",
                               print_exception=False)
            progress(0, desc="Computing safety at matched capability")
            try:
                view = capability_view(ctx, judge_id, chosen, value, a, b)
            except ValueError as err:
                raise gr.Error(str(err), print_exception=False) from None
            with report_plots.style():
                figure = report_plots.safety_capability_figure(view.matched)
            return {summary: view.summary, plot: figure, at_goal: view.at_goal,
                    comparisons: view.comparisons, robustness: view.robustness}

        hidden = {"api_visibility": "undocumented"}
        blocks.load(on_open, None, [judge, goal, target, first, second], **hidden)
        compute.click(on_compute, [judge, goal, target, first, second],
                      [summary, plot, at_goal, comparisons, robustness], api_name="capability",
                      **hidden)
    return tab
