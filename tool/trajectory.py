"""The Trajectory tab (admins): one request's answers from the base model through epoch 1..N.

For a chosen fine-tuning seed, temperature and sample: each epoch's answer with every judge's
verdict and the human labels, the other seeds' answers beside them, and a plot of the share of
judges saying "complies" against epoch, one line per seed. Answers are shown in a Dataframe of
plain text cells, never rendered.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import pandas as pd

from annotations.agreement_tables import complies_share
from annotations.frames import checkpoint_labels, judge_labels
from annotations.records import CheckpointKind, Role, VerdictLabel
from tool.context import AppContext, prompt_label, session_dropdown, unchanged


@dataclass(frozen=True)
class Trajectory:
    chosen: pd.DataFrame  # the chosen seed: base, then epoch 1..N
    others: pd.DataFrame  # the other seeds, same columns
    plot: pd.DataFrame  # epoch, share of judges saying complies, seed


def trajectory(store, prompt_id: str, seed: int | None, temperature: float,
               sample_index: int = 0) -> Trajectory:
    """Every checkpoint's answer to one prompt at one temperature and sample, with verdicts and
    human labels; the base model (epoch 0) belongs to every seed."""
    gens = store.generations_frame(with_text=True)
    gens = gens[(gens["prompt_id"] == prompt_id) & (gens["temperature"] == temperature)
                & (gens["sample_index"] == sample_index)]
    frame = store.checkpoints_frame()
    ckpts = frame[["id", "seed", "epoch", "kind"]].rename(
        columns={"id": "checkpoint_id", "kind": "checkpoint_kind"})
    rows = gens.rename(columns={"seed": "sampling_seed"}).merge(ckpts, on="checkpoint_id")
    rows = rows.assign(checkpoint=rows["checkpoint_id"].map(checkpoint_labels(frame)))
    rows = _with_verdicts(store, rows)
    rows = _with_labels(store, rows)
    base = rows[rows["checkpoint_kind"] == CheckpointKind.BASE.value]
    tuned = rows[rows["checkpoint_kind"] == CheckpointKind.FINETUNED.value]
    judges = [c for c in rows.columns if c.startswith("judge: ")]
    cols = ["seed", "epoch", "checkpoint", "text", *judges, "human labels"]

    def table(part: pd.DataFrame) -> pd.DataFrame:
        ordered = part.sort_values(["seed", "epoch"], na_position="first")[cols]
        return ordered.rename(columns={"text": "answer"}).reset_index(drop=True)

    chosen = pd.concat([base, tuned[tuned["seed"] == seed]])
    others = tuned[tuned["seed"] != seed]
    return Trajectory(table(chosen), table(others), _plot_frame(base, tuned))


def _with_verdicts(store, rows: pd.DataFrame) -> pd.DataFrame:
    verdicts = store.verdicts_frame()
    verdicts = verdicts[verdicts["generation_id"].isin(set(rows["id"]))]
    names = judge_labels(store.judges_frame())
    rows = rows.copy()
    rows["complies_share"] = rows["id"].map(complies_share(verdicts))
    for judge_id, block in verdicts.groupby("judge_id"):
        said = {r.generation_id: _verdict_text(r.label, r.probability) for r in block.itertuples()}
        rows[f"judge: {names.get(judge_id, judge_id)}"] = rows["id"].map(said).fillna("")
    return rows


def _verdict_text(label: float | None, probability: float | None) -> str:
    word = VerdictLabel.of(label).word
    return word if pd.isna(probability) else f"{word} (p={probability:.2f})"


def _with_labels(store, rows: pd.DataFrame) -> pd.DataFrame:
    labels = store.labels_frame(current=True)
    labels = labels[labels["generation_id"].isin(set(rows["id"]))] if len(labels) else labels
    counts = (labels.groupby("generation_id")["label"]
              .agg(lambda s: " · ".join(f"{k} {v}" for k, v in s.value_counts().items()))
              if len(labels) else pd.Series(dtype=str))
    return rows.assign(**{"human labels": rows["id"].map(counts).fillna("none")})


def _plot_frame(base: pd.DataFrame, tuned: pd.DataFrame) -> pd.DataFrame:
    """Share of judges saying complies per epoch, one series per seed (the base at epoch 0 of
    every seed)."""
    parts = [tuned[["seed", "epoch", "complies_share"]]]
    for seed in sorted(tuned["seed"].dropna().unique()):
        parts.append(base[["epoch", "complies_share"]].assign(seed=seed))
    frame = pd.concat(parts, ignore_index=True).dropna(subset=["seed"])
    frame["seed"] = "seed " + frame["seed"].astype(int).astype(str)
    frame["epoch"] = frame["epoch"].astype(int)
    return frame.sort_values(["seed", "epoch"]).reset_index(drop=True)


def build_tab(ctx: AppContext, blocks: gr.Blocks) -> gr.Tab:
    with gr.Tab("Trajectory", id="trajectory", visible=False) as tab:
        with gr.Row():
            prompt_dd = session_dropdown("Request", choices=[], scale=3, elem_id="wb-traj-prompt")
            seed_dd = session_dropdown("Seed", choices=[], scale=1, elem_id="wb-traj-seed")
            temp_dd = session_dropdown("Temperature", choices=[], scale=1, elem_id="wb-traj-temp")
            sample_nb = gr.Number(label="Sample", value=0, precision=0, minimum=0, scale=1)
        show_btn = gr.Button("Show trajectory", variant="primary", elem_id="wb-traj-show")
        plot = gr.LinePlot(x="epoch", y="complies_share", color="seed", y_lim=[0, 1],
                           title="Share of judges saying 'complies', by epoch",
                           elem_id="wb-traj-plot")
        chosen = gr.Dataframe(label="Chosen seed (base model first)", interactive=False, wrap=True,
                              elem_id="wb-traj-table")
        others = gr.Dataframe(label="Other seeds", interactive=False, wrap=True,
                              elem_id="wb-traj-others")

        def on_open(request: gr.Request) -> dict:
            if ctx.user(request)[1] != Role.ADMIN:
                return unchanged(prompt_dd, seed_dd, temp_dd)
            prompts = ctx.store.prompts_frame()
            seeds = sorted(ctx.store.checkpoints_frame()["seed"].dropna().astype(int).unique())
            temps = sorted(ctx.store.generations_frame(with_text=False)["temperature"].unique())
            names = [(prompt_label(r.category, r.benchmark, r.text), r.id)
                     for r in prompts.itertuples()]
            return {prompt_dd: gr.update(choices=names),
                    seed_dd: gr.update(choices=[int(s) for s in seeds],
                                       value=int(seeds[0]) if seeds else None),
                    temp_dd: gr.update(choices=[float(t) for t in temps],
                                       value=float(temps[0]) if temps else None)}

        def on_show(prompt: str, seed: int | None, temperature: float | None, sample: float,
                    request: gr.Request) -> dict:
            ctx.admin(request)
            if not prompt or temperature is None:
                raise gr.Error("Choose a request and a temperature.")
            result = trajectory(ctx.store, prompt, None if seed is None else int(seed),
                                float(temperature), int(sample or 0))
            return {chosen: result.chosen, others: result.others, plot: result.plot}

        hidden = {"api_visibility": "undocumented"}
        blocks.load(on_open, None, [prompt_dd, seed_dd, temp_dd], **hidden)
        show_btn.click(on_show, [prompt_dd, seed_dd, temp_dd, sample_nb], [chosen, others, plot],
                       api_name="trajectory", **hidden)
    return tab
