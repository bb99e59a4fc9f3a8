"""The Compare tab: one request, two checkpoints' answers side by side as A and B, one vote.

Pairs are drawn at random (or for a chosen prompt; admins may also choose the two checkpoints),
always two different checkpoints of the sweep answering the same request at the same
temperature (imported answers are never paired), with the sides swapped at random. Votes: A
safer, B safer, both safe, both unsafe; each vote is stored under the pair's own id (a repeated
click stores one vote) and the next pair appears at once, with the session's vote count.
Annotators never learn which checkpoint, run, temperature or judge stands behind an answer, before
or after they vote, in any response the server sends; admins are shown who A and B were.

The win table (admins) gives, per checkpoint, how often people judged its answer the safer one of
a decided pair, with a bootstrap CI over prompts (`annotations.votes.win_table`).

Keys: a A safer, b B safer, g both safe, x both unsafe.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import gradio as gr
import pandas as pd

from annotations.frames import checkpoint_labels
from annotations.votes import win_table
from annotations.records import CheckpointKind, Role, VerdictLabel, Vote, VoteChoice, new_id
from tool.board_plots import win_figure
from tool.context import AppContext, prompt_label, session_dropdown

RANDOM = "(random)"


@dataclass
class Pair:
    token: str  # the vote's id
    prompt_id: str
    generation_a: str
    generation_b: str
    request: str
    answer_a: str
    answer_b: str
    voted: VoteChoice | None = None


# ----- plain functions -------------------------------------------------------------------------


def checkpoint_names(store) -> dict[str, str]:
    return checkpoint_labels(store.checkpoints_frame())


def pick_pair(generations: pd.DataFrame, rng: random.Random, prompt_id: str | None = None,
              checkpoint_a: str | None = None, checkpoint_b: str | None = None,
              temperature: float | None = None) -> tuple[str, str] | None:
    """Two generations (ids, sides already swapped at random) of one prompt at one temperature
    from two different checkpoints; None when no such pair exists."""
    pool = generations
    if prompt_id:
        pool = pool[pool["prompt_id"] == prompt_id]
    if temperature is not None:
        pool = pool[pool["temperature"] == temperature]
    wanted = list(dict.fromkeys(c for c in (checkpoint_a, checkpoint_b) if c))
    groups = [g for _, g in pool.groupby(["prompt_id", "temperature"], sort=True)
              if g["checkpoint_id"].nunique() >= 2 and set(wanted) <= set(g["checkpoint_id"])]
    if not groups:
        return None
    group = groups[rng.randrange(len(groups))]
    present = sorted(group["checkpoint_id"].unique())
    first = wanted[0] if wanted else rng.choice(present)
    second = wanted[1] if len(wanted) > 1 else rng.choice([c for c in present if c != first])
    pick = {c: sorted(group.loc[group["checkpoint_id"] == c, "id"]) for c in (first, second)}
    a, b = rng.choice(pick[first]), rng.choice(pick[second])
    return (a, b) if rng.random() < 0.5 else (b, a)


def comparable(ctx: AppContext) -> pd.DataFrame:
    """The answers that can be paired: those models of the sweep wrote (imported answers are
    someone else's, never set against a checkpoint) to prompts of the app's kinds."""
    gens = ctx.store.generations_frame(with_text=False)
    points = ctx.store.checkpoints_frame()
    imported = set(points.loc[points["kind"] == CheckpointKind.IMPORTED.value, "id"])
    return gens[gens["kind"].isin([k.value for k in ctx.options.kinds])
                & ~gens["checkpoint_id"].isin(imported)]


def new_pair(ctx: AppContext, prompt_id: str | None = None, checkpoint_a: str | None = None,
             checkpoint_b: str | None = None, temperature: float | None = None) -> Pair | None:
    gens = comparable(ctx)
    ids = pick_pair(gens, ctx.rng, prompt_id, checkpoint_a, checkpoint_b, temperature)
    if ids is None:
        return None
    texts = {g.id: g for g in ctx.store.generations(list(ids))}
    prompt = texts[ids[0]].prompt_id
    request = ctx.store.prompts_frame().set_index("id").loc[prompt, "text"]
    return Pair(new_id(), prompt, ids[0], ids[1], str(request), texts[ids[0]].text,
                texts[ids[1]].text)


def vote(ctx: AppContext, pair: Pair, annotator: str, choice: VoteChoice | str) -> bool:
    """Store the vote (once per pair); True when this call stored it."""
    if pair.voted is not None:
        return False
    ctx.store.add_votes([Vote(id=pair.token, prompt_id=pair.prompt_id,
                              generation_a=pair.generation_a, generation_b=pair.generation_b,
                              annotator=annotator, choice=VoteChoice(choice))])
    pair.voted = VoteChoice(choice)
    return True


def reveal(ctx: AppContext, pair: Pair, with_verdicts: bool) -> str:
    """Who A and B were (and, when allowed, what each judge said)."""
    names = checkpoint_names(ctx.store)
    gens = {g.id: g for g in ctx.store.generations([pair.generation_a, pair.generation_b])}
    verdicts = ctx.store.verdicts_frame() if with_verdicts else pd.DataFrame()
    lines = []
    for side, gen_id in (("A", pair.generation_a), ("B", pair.generation_b)):
        gen = gens[gen_id]
        line = f"{side}: {names.get(gen.checkpoint_id, gen.checkpoint_id)}, T={gen.temperature}"
        if with_verdicts:
            mine = verdicts[verdicts["generation_id"] == gen_id] if len(verdicts) else verdicts
            said = ", ".join(f"{r.judge_name}: {_verdict_word(r.label)}" for r in mine.itertuples())
            line += f"; judges: {said or 'none yet'}"
        lines.append(line)
    return "\n".join(lines)


def _verdict_word(label: float | None) -> str:
    return VerdictLabel.of(label).word


# ----- the tab ---------------------------------------------------------------------------------

VOTES = {VoteChoice.A_SAFER: ("A is safer [a]", "wb-a-safer"),
         VoteChoice.B_SAFER: ("B is safer [b]", "wb-b-safer"),
         VoteChoice.BOTH_SAFE: ("Both safe [g]", "wb-both-safe"),
         VoteChoice.BOTH_UNSAFE: ("Both unsafe [x]", "wb-both-unsafe")}


def _choices(ctx: AppContext, is_admin: bool) -> tuple[list, list, list]:
    gens = comparable(ctx)
    pairable = gens.groupby("prompt_id")["checkpoint_id"].nunique()
    prompts = ctx.store.prompts_frame()
    prompts = prompts[prompts["id"].isin(set(pairable.index[pairable >= 2]))]
    prompt_choices = [(RANDOM, RANDOM)] + [(prompt_label(r.category, r.benchmark, r.text), r.id)
                                           for r in prompts.itertuples()]
    names = checkpoint_names(ctx.store) if is_admin else {}
    names = {c: n for c, n in names.items() if c in set(gens["checkpoint_id"])}
    ckpt_choices = [(RANDOM, RANDOM)] + [(name, cid) for cid, name in sorted(names.items(),
                                                                              key=lambda x: x[1])]
    temps = sorted(gens["temperature"].unique())
    return prompt_choices, ckpt_choices, [RANDOM] + [str(t) for t in temps]


def build_tab(ctx: AppContext, blocks: gr.Blocks) -> gr.Tab:
    with gr.Tab("Compare", id="compare") as tab:
        state = gr.State(None)
        with gr.Row():
            prompt_dd = session_dropdown("Request", choices=[RANDOM], value=RANDOM, scale=3)
            temp_dd = session_dropdown("Temperature", choices=[RANDOM], value=RANDOM, scale=1)
            ckpt_a = session_dropdown("Checkpoint 1 (admins)", choices=[RANDOM], value=RANDOM,
                                 scale=1)
            ckpt_b = session_dropdown("Checkpoint 2 (admins)", choices=[RANDOM], value=RANDOM,
                                 scale=1)
        next_btn = gr.Button("New pair [n]", elem_id="wb-new-pair")
        request_box = gr.Textbox(label="Request", interactive=False, lines=2,
                                 elem_id="wb-pair-request")
        with gr.Row():
            answer_a = gr.Textbox(label="Answer A (plain text)", interactive=False, lines=8,
                                  max_lines=30, autoscroll=False, elem_id="wb-answer-a")
            answer_b = gr.Textbox(label="Answer B (plain text)", interactive=False, lines=8,
                                  max_lines=30, autoscroll=False, elem_id="wb-answer-b")
        with gr.Row():
            buttons = {choice: gr.Button(text, elem_id=elem)
                       for choice, (text, elem) in VOTES.items()}
        revealed = gr.Textbox(label="Status", interactive=False, lines=2, elem_id="wb-reveal")
        count = gr.State(0)  # votes in this page's session
        with gr.Accordion("Win table (admins)", open=False, visible=False) as win_box:
            table_btn = gr.Button("Compute the win table", size="sm", elem_id="wb-win-refresh")
            table = gr.Dataframe(interactive=False, elem_id="wb-win-table")
            plot = gr.Plot(label="Share of decided votes where the checkpoint was safer (95% CI)",
                           elem_id="wb-win-plot")
        views = [state, request_box, answer_a, answer_b, revealed, count]

        def show(pair: Pair | None, message: str = "", votes: int = 0) -> dict:
            if pair is None:
                message = " ".join(filter(None, [message, "No pair of checkpoints answers this "
                                                 "request."]))
                return {state: None, request_box: "", answer_a: "", answer_b: "",
                        revealed: message, count: votes}
            return {state: pair, request_box: pair.request, answer_a: pair.answer_a,
                    answer_b: pair.answer_b, revealed: message, count: votes}

        def on_open(request: gr.Request) -> dict:
            _, role = ctx.user(request)
            prompts, ckpts, temps = _choices(ctx, role == Role.ADMIN)
            return {prompt_dd: gr.update(choices=prompts), temp_dd: gr.update(choices=temps),
                    ckpt_a: gr.update(choices=ckpts, visible=role == Role.ADMIN),
                    ckpt_b: gr.update(choices=ckpts, visible=role == Role.ADMIN),
                    win_box: gr.update(visible=role == Role.ADMIN)}

        def draw(role: Role, prompt: str, temperature: str, first: str,
                 second: str) -> Pair | None:
            chosen = role == Role.ADMIN  # an annotator choosing checkpoints would not be blind
            return new_pair(ctx, None if prompt in (None, RANDOM) else prompt,
                            first if chosen and first not in (None, RANDOM) else None,
                            second if chosen and second not in (None, RANDOM) else None,
                            None if temperature in (None, RANDOM) else float(temperature))

        def on_next(votes: int, prompt: str, temperature: str, first: str, second: str,
                    request: gr.Request) -> dict:
            _, role = ctx.user(request)
            return show(draw(role, prompt, temperature, first, second), "", votes or 0)

        def on_vote(choice: VoteChoice):
            def handler(pair: Pair | None, votes: int, prompt: str, temperature: str,
                        first: str, second: str, request: gr.Request) -> dict:
                """Store the vote and move on to a new pair. Annotators are never told which
                checkpoint wrote an answer; admins see who A and B were."""
                name, role = ctx.user(request)
                votes = votes or 0
                if pair is None:
                    return show(None, "Draw a pair first.", votes)
                if vote(ctx, pair, name, choice):
                    votes += 1
                message = f"Stored: {choice.value.replace('_', ' ')}. Votes this session: {votes}."
                if role == Role.ADMIN:
                    message += "\nThe pair you voted on: " + reveal(ctx, pair, True)
                return show(draw(role, prompt, temperature, first, second), message, votes)
            handler.__name__ = f"vote_{choice.value}"
            return handler

        def on_table(request: gr.Request) -> dict:
            ctx.admin(request)
            frame = win_table(ctx.store.votes_frame(), ctx.store.generations_frame(with_text=False),
                              checkpoint_names(ctx.store), ctx.options.n_boot)
            return {table: frame.round(3), plot: win_figure(frame)}

        hidden = {"api_visibility": "undocumented"}
        many = {"concurrency_limit": ctx.options.label_concurrency, **hidden}
        blocks.load(on_open, None, [prompt_dd, temp_dd, ckpt_a, ckpt_b, win_box], **hidden)
        filters = [prompt_dd, temp_dd, ckpt_a, ckpt_b]
        next_btn.click(on_next, [count, *filters], views, api_name="new_pair", **many)
        for choice, button in buttons.items():
            button.click(on_vote(choice), [state, count, *filters], views,
                         api_name=f"vote_{choice.value}", **many)
        table_btn.click(on_table, None, [table, plot], api_name="win_table", **hidden)
    return tab


