"""The Annotate tab: one answer at a time, labelled complies / refuses / incoherent, blind.

A session is planned by `annotations.planner` when the page opens (or the last one is finished)
and kept on the server per annotator, so a reload (or a second tab) resumes it where it was, with
its count. Each item on screen carries a fresh submission id (the token); the Label is stored
under that id, so a double-clicked or re-sent submit stores one label. Undo reopens the last
labelled item with a new token and says which label it had: labels are never deleted, and the
relabel supersedes the old one (the store keeps the history; `labels_frame(current=True)` reads
the latest). "Can't judge" is a label of its own (seen, no reading; no statistic counts it),
distinct from skip (not seen: the item goes back to the pool).

Blind: the annotator sees the request, its category and the answer; the checkpoint, run,
temperature and verdicts stay on the server. Answers are shown in a read-only Textbox: text, never
rendered markup.

Keys (see tool.app.SHORTCUTS): 1 complies, 2 refuses, 3 incoherent, c can't judge, s skip,
u undo; in the note, Enter or Esc goes back to the keys.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import gradio as gr
import pandas as pd

from annotations.planner import Assignment, PlanSettings, candidates, plan_session
from annotations.records import HumanLabel, Label, new_id
from tool.context import AppContext

WORDS = {HumanLabel.COMPLIES: "complies", HumanLabel.REFUSES: "refuses",
         HumanLabel.INCOHERENT: "incoherent", HumanLabel.CANT_JUDGE: "can't judge"}


@dataclass
class Item:
    prompt: str
    category: str
    answer: str
    details: str  # checkpoint, temperature and verdicts: shown only when not blind


@dataclass
class Session:
    """One annotator's planned items and where they are (kept server-side in a gr.State)."""

    annotator: str
    items: list[Assignment]
    shown: dict[str, Item]  # generation id -> what the screen shows
    pos: int = 0
    done: list[int] = field(default_factory=list)  # positions labelled, in order (undo pops)
    skipped: int = 0
    token: str = ""  # submission id of the item on screen
    shown_at: float = 0.0
    tokens: dict[str, int] = field(default_factory=dict)  # every token issued -> position
    given: dict[int, HumanLabel] = field(default_factory=dict)  # position -> label stored

    @property
    def finished(self) -> bool:
        return self.current is None

    @property
    def current(self) -> Assignment | None:
        return self.items[self.pos] if self.pos < len(self.items) else None

    def show(self, pos: int) -> None:
        self.pos = pos
        self.token = new_id()
        self.tokens[self.token] = pos
        self.shown_at = time.monotonic()


@dataclass(frozen=True)
class Outcome:
    session: Session
    message: str
    stored: bool = False


# ----- plain functions (tests call these directly) ---------------------------------------------


def open_session(ctx: AppContext, annotator: str) -> tuple[Session, bool]:
    """The annotator's unfinished session (resumed: a reload keeps its place), else a new one;
    and whether it was resumed."""
    with ctx.session_lock:
        session = ctx.sessions.get(annotator)
        if session is not None and not session.finished:
            session.show(session.pos)  # a fresh token: the old page's submit no longer counts
            return session, True
    return start_session(ctx, annotator), False


def start_session(ctx: AppContext, annotator: str) -> Session:
    """Plan a new session for `annotator`, holding its items against other people's sessions."""
    opts = ctx.options
    settings = PlanSettings(k=opts.k, size=opts.session_size, random_share=opts.random_share,
                            gold_share=opts.gold_share, kinds=opts.kinds)
    with ctx.outstanding.lock:  # planning and holding are one step, so two planners never race
        ctx.outstanding.release_all(annotator)
        labels = ctx.store.labels_frame(current=True)
        items = candidates(ctx.store.generations_frame(with_text=False),
                           ctx.store.verdicts_frame(), labels, opts.kinds)
        done = (set(labels.loc[labels["annotator"] == annotator, "generation_id"])
                if len(labels) else set())
        plan = plan_session(items, done, settings, ctx.outstanding.counts(exclude=annotator),
                            opts.gold, ctx.rng)
        ctx.outstanding.hold(annotator, [a.generation_id for a in plan if not a.gold])
    session = Session(annotator=annotator, items=plan, shown=_items(ctx, plan))
    session.show(0)
    with ctx.session_lock:
        ctx.sessions[annotator] = session
    return session


def _items(ctx: AppContext, plan: list[Assignment]) -> dict[str, Item]:
    gens = {g.id: g for g in ctx.store.generations([a.generation_id for a in plan])}
    prompts = ctx.store.prompts_frame().set_index("id")
    verdicts = ctx.store.verdicts_frame() if not ctx.options.blind else pd.DataFrame()
    out = {}
    for gen_id, gen in gens.items():
        prompt = prompts.loc[gen.prompt_id]
        details = ""
        if not ctx.options.blind:
            mine = verdicts[verdicts["generation_id"] == gen_id] if len(verdicts) else verdicts
            shown = ", ".join(f"{r.judge_name}: {r.label}" for r in mine.itertuples()) or "none"
            details = (f"checkpoint {gen.checkpoint_id} · T={gen.temperature} · "
                       f"sample {gen.sample_index} · verdicts: {shown}")
        out[gen_id] = Item(prompt=str(prompt["text"]), category=str(prompt["category"] or ""),
                           answer=gen.text, details=details)
    return out


def submit(ctx: AppContext, session: Session, token: str, label: HumanLabel | str,
           note: str = "") -> Outcome:
    """Store the label of the item shown under `token` and move on; a repeat is ignored."""
    with ctx.session_lock:
        pos = session.tokens.get(token)
        if session.current is None:
            return Outcome(session, "")
        if pos is None or pos != session.pos or pos in session.done:
            return Outcome(session, "That item was already submitted; here is the current one.")
        if time.monotonic() - session.shown_at < ctx.options.min_seconds_per_item:
            return Outcome(session, "Ignored a second click: the item had only just appeared.")
        assignment = session.items[pos]
    ctx.store.add_labels([Label(id=token, generation_id=assignment.generation_id,
                                annotator=session.annotator, label=HumanLabel(label),
                                note=(note or "").strip()[:2000],
                                chosen_at_random=assignment.chosen_at_random,
                                inclusion_probability=assignment.inclusion_probability)])
    ctx.outstanding.release(session.annotator, assignment.generation_id)
    with ctx.session_lock:
        if session.pos == pos and pos not in session.done:  # a concurrent repeat moved on already
            session.done.append(pos)
            session.given[pos] = HumanLabel(label)
            session.show(pos + 1)
    return Outcome(session, f"Saved: {WORDS[HumanLabel(label)]}.", stored=True)


def skip(ctx: AppContext, session: Session, token: str) -> Outcome:
    with ctx.session_lock:
        if session.tokens.get(token) != session.pos or session.current is None:
            return Outcome(session, "Nothing to skip.")
        ctx.outstanding.release(session.annotator, session.current.generation_id)
        session.skipped += 1
        session.show(session.pos + 1)
    return Outcome(session, "Skipped.")


def undo(ctx: AppContext, session: Session) -> Outcome:
    """Reopen the last labelled item; the next label given to it replaces the old one."""
    with ctx.session_lock:
        if not session.done:
            return Outcome(session, "Nothing to undo in this session.")
        last = session.done.pop()
        was = session.given.pop(last, None)
        session.show(last)
    said = f" (you had said: {WORDS[was]})" if was is not None else ""
    return Outcome(session, f"Reopened your last item{said}: label it again; your new label "
                            "replaces the old one.")


def progress(session: Session) -> tuple[int, int]:
    """(done, assigned) for the progress bar."""
    return len(session.done), len(session.items)


def my_labels(ctx: AppContext, annotator: str) -> pd.DataFrame:
    """The annotator's own current labels, newest first (never anyone else's)."""
    labels = ctx.store.labels_frame(current=True, annotator=annotator)
    cols = ["time", "request", "label", "note"]
    if labels.empty:
        return pd.DataFrame(columns=cols)
    gens = {g.id: g.prompt_id for g in ctx.store.generations(list(labels["generation_id"]))}
    prompts = ctx.store.prompts_frame().set_index("id")["text"]
    labels["request"] = [str(prompts.get(gens.get(g), ""))[:120] for g in labels["generation_id"]]
    labels["time"] = pd.to_datetime(labels["created_at"]).dt.strftime("%Y-%m-%d %H:%M:%S")
    labels["label"] = labels["label"].map(lambda v: WORDS[HumanLabel(v)])
    return labels.sort_values("created_at", ascending=False)[cols].reset_index(drop=True)


# ----- the tab ---------------------------------------------------------------------------------


def progress_html(done: int, assigned: int) -> str:
    """The progress bar: built from two integers only, never from stored text."""
    done, assigned = int(done), int(assigned)
    return (f'<div class="wb-progress" id="wb-progress" data-done="{done}" '
            f'data-assigned="{assigned}"><progress value="{done}" max="{max(assigned, 1)}">'
            f'</progress> <span>{done} of {assigned} done</span></div>')


def build_tab(ctx: AppContext, blocks: gr.Blocks) -> gr.Tab:
    with gr.Tab("Annotate", id="annotate") as tab:
        state = gr.State(None)
        bar = gr.HTML(progress_html(0, 0))
        with gr.Row():
            request_box = gr.Textbox(label="Request", interactive=False, lines=2, scale=3,
                                     elem_id="wb-request")
            category_box = gr.Textbox(label="Category", interactive=False, scale=1,
                                      elem_id="wb-category")
        answer_box = gr.Textbox(label="Answer (shown as plain text)", interactive=False, lines=8,
                                max_lines=30, autoscroll=False, elem_id="wb-answer")
        details_box = gr.Textbox(label="Details", interactive=False, visible=not ctx.options.blind)
        note_box = gr.Textbox(label="Note (optional; Enter or Esc returns to the keys)", lines=1,
                              elem_id="wb-note")
        token_box = gr.Textbox(visible=False, elem_id="wb-token")
        with gr.Row():
            buttons = {
                HumanLabel.COMPLIES: gr.Button("Complies [1]", variant="primary",
                                               elem_id="wb-complies"),
                HumanLabel.REFUSES: gr.Button("Refuses [2]", variant="primary",
                                              elem_id="wb-refuses"),
                HumanLabel.INCOHERENT: gr.Button("Incoherent [3]", elem_id="wb-incoherent"),
                HumanLabel.CANT_JUDGE: gr.Button("Can't judge [c]", elem_id="wb-cant-judge"),
            }
            skip_btn = gr.Button("Skip [s]", elem_id="wb-skip")
            undo_btn = gr.Button("Undo last [u]", elem_id="wb-undo")
        status = gr.Textbox(label="Status", interactive=False, elem_id="wb-status")
        new_btn = gr.Button("Start a new session", visible=False, elem_id="wb-new-session")
        mine_open = gr.State(False)  # the table is kept up to date only while it is open
        with gr.Accordion("My labels (updated as you label)", open=False,
                          elem_id="wb-my-accordion") as mine_box:
            mine_btn = gr.Button("Refresh", size="sm", elem_id="wb-my-labels")
            mine_table = gr.Dataframe(interactive=False, wrap=True, elem_id="wb-my-table")
        views = [state, bar, request_box, category_box, answer_box, details_box, note_box,
                 token_box, status, new_btn]

        def render(outcome: Outcome) -> dict:
            session = outcome.session
            item = session.shown.get(session.current.generation_id) if session.current else None
            finished = item is None
            message = outcome.message
            if finished:
                message = (f"{message} Session finished: {len(session.done)} labelled, "
                           f"{session.skipped} skipped." if session.items else
                           "Nothing is waiting for you: every item has enough labels.")
            return {state: session, bar: progress_html(*progress(session)),
                    request_box: "" if finished else item.prompt,
                    category_box: "" if finished else item.category,
                    answer_box: "" if finished else item.answer,
                    details_box: "" if finished or ctx.options.blind else item.details,
                    note_box: "", token_box: session.token, status: message.strip(),
                    new_btn: gr.update(visible=finished)}

        def own(session: Session | None, request: gr.Request) -> Session:
            name, _ = ctx.user(request)
            if session is None or session.annotator != name:
                session = start_session(ctx, name)
            return session

        def on_start(request: gr.Request) -> dict:
            name, _ = ctx.user(request)
            return render(Outcome(start_session(ctx, name), "New session."))

        def on_open(request: gr.Request) -> dict:
            name, _ = ctx.user(request)
            session, resumed = open_session(ctx, name)
            return render(Outcome(session, "Resumed your session." if resumed else
                                  "New session."))

        def with_mine(shown: dict, is_open: bool, request: gr.Request) -> dict:
            """The annotator's own labels beside the new item, when their table is open (one
            response: no second event a double click could slip into)."""
            return {**shown, mine_table: my_labels(ctx, ctx.user(request)[0]) if is_open
                    else gr.update()}

        def on_label(label: HumanLabel):
            def handler(session: Session | None, token: str, note: str, is_open: bool,
                        request: gr.Request) -> dict:
                shown = render(submit(ctx, own(session, request), token, label, note))
                return with_mine(shown, is_open, request)
            handler.__name__ = f"label_{label.value}"
            return handler

        def on_skip(session: Session | None, token: str, request: gr.Request) -> dict:
            return render(skip(ctx, own(session, request), token))

        def on_undo(session: Session | None, is_open: bool, request: gr.Request) -> dict:
            return with_mine(render(undo(ctx, own(session, request))), is_open, request)

        def on_mine(request: gr.Request) -> pd.DataFrame:
            name, _ = ctx.user(request)
            return my_labels(ctx, name)

        hidden = {"api_visibility": "undocumented"}
        limit = {"concurrency_limit": ctx.options.label_concurrency, **hidden}
        for label, button in buttons.items():
            button.click(on_label(label), [state, token_box, note_box, mine_open],
                         [*views, mine_table], api_name=f"label_{label.value}", **limit)
        skip_btn.click(on_skip, [state, token_box], views, api_name="skip", **limit)
        undo_btn.click(on_undo, [state, mine_open], [*views, mine_table], api_name="undo",
                       **limit)
        new_btn.click(on_start, None, views, api_name="start", **limit)
        mine_btn.click(on_mine, None, mine_table, api_name="my_labels", **hidden)
        blocks.load(on_open, None, views, api_name="open", **limit)
        def on_expand(request: gr.Request) -> tuple[bool, pd.DataFrame]:
            return True, on_mine(request)

        mine_box.expand(on_expand, None, [mine_open, mine_table], **hidden)
        mine_box.collapse(lambda: False, None, mine_open, **hidden)
    return tab
