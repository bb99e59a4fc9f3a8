"""The Live sampling tab (admins): ask checkpoints a request now and see their answers vary.

Type a request (or pick one from a benchmark), choose checkpoints, a temperature and a number of
samples: each checkpoint answers in turn (one base model loaded once, LoRA adapters swapped onto it
by `pipeline.generate.AdapterSwitcher`), the answers stream into the table as each checkpoint
finishes, and the live judges (`AppOptions.live_judges`) judge them. "Resample" draws again with a
new seed and the variation table shows how much the answers and verdicts move from draw to draw.
"Store" saves the last draw as generations (with their verdicts) so they can be annotated.

Answers appear in a Dataframe of plain text cells, never rendered.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import gradio as gr
import pandas as pd

from annotations.frames import checkpoint_labels
from annotations.records import (Checkpoint, CheckpointKind, FinishReason, Generation, JudgeSpec,
                                 Prompt, PromptKind, Role, Verdict, VerdictLabel)
from tool.context import AppContext, prompt_label, session_dropdown, unchanged

LIVE_BENCHMARK = "live"


@dataclass(frozen=True)
class Answer:
    checkpoint_id: str
    checkpoint: str
    sample_index: int
    text: str
    token_count: int
    finish_reason: FinishReason
    verdicts: dict[str, tuple[int | None, float | None, str]]  # judge label -> outcome


@dataclass
class Draw:
    request: str
    prompt_id: str | None  # a stored prompt when the request was picked from a benchmark
    temperature: float
    max_new_tokens: int
    seed: int
    answers: list[Answer] = field(default_factory=list)


class LiveModels:
    """Base models loaded on first use (one per base model name) and the live judges."""

    def __init__(self, judge_names: Sequence[Any]):
        self.lock = threading.Lock()
        self._switchers: dict[str, Any] = {}
        self._judge_names = list(judge_names)
        self._judges: list[tuple[JudgeSpec, Any]] | None = None

    def switcher(self, base_model: str):
        from pipeline.generate import AdapterSwitcher
        from pipeline.models import load_model

        if base_model not in self._switchers:
            self._switchers[base_model] = AdapterSwitcher(*load_model(base_model))
        return self._switchers[base_model]

    def judges(self) -> list[tuple[JudgeSpec, Any]]:
        from pipeline.judges import create_judge

        if self._judges is None:
            made = []
            for entry in self._judge_names:
                name, args = (entry, {}) if isinstance(entry, str) else entry
                made.append(create_judge(name, **dict(args)))
            self._judges = made
        return self._judges


def models(ctx: AppContext) -> LiveModels:
    return ctx.extras.setdefault("live_models", LiveModels(ctx.options.live_judges))


def _checkpoint(row: pd.Series) -> Checkpoint:
    """The typed record of a checkpoints_frame row (its id comes out the same)."""
    def value(key: str) -> Any:
        return None if pd.isna(row[key]) else row[key]
    return Checkpoint(base_model=row["base_model"], run_id=value("run_id"), epoch=int(row["epoch"]),
                      adapter_path=value("adapter_path"), kind=value("kind"))


# ----- plain functions -------------------------------------------------------------------------


def sample(ctx: AppContext, draw: Draw, checkpoint_ids: Sequence[str],
           samples: int) -> Iterator[list[Answer]]:
    """Each checkpoint's `samples` answers to the request, judged, yielded checkpoint by checkpoint
    (the draw's answers grow as they come)."""
    from pipeline.generate import sample_batch
    from pipeline.models import chat_prompt

    frame = ctx.store.checkpoints_frame().set_index("id")
    names = checkpoint_labels(frame.reset_index())
    pool = models(ctx)
    for index, checkpoint_id in enumerate(checkpoint_ids):
        row = frame.loc[checkpoint_id]
        ckpt = _checkpoint(row)
        with pool.lock:  # one generation at a time on the shared model
            switcher = pool.switcher(ckpt.base_model)
            with switcher.use(ckpt) as model:
                text = chat_prompt(switcher.tokenizer, draw.request)
                outs = sample_batch(model, switcher.tokenizer, [text] * samples, draw.temperature,
                                    draw.max_new_tokens, draw.seed + index)
        verdicts = judge_answers(pool, draw.request, [o[0] for o in outs])
        name = names[checkpoint_id]
        draw.answers += [Answer(checkpoint_id, name, k, text, count, reason, verdicts[k])
                         for k, (text, count, reason) in enumerate(outs)]
        yield list(draw.answers)


def judge_answers(pool: LiveModels, request: str, texts: Sequence[str]) -> list[dict]:
    from pipeline.judges import JudgeItem

    items = [JudgeItem(prompt=request, response=t) for t in texts]
    out: list[dict] = [{} for _ in texts]
    for spec, fn in pool.judges():
        for k, outcome in enumerate(fn(items)):
            out[k][spec.label] = (outcome.label, outcome.probability, outcome.raw)
    return out


def answers_table(draws: Sequence[Draw]) -> pd.DataFrame:
    rows = []
    for number, draw in enumerate(draws, start=1):
        for a in draw.answers:
            row = {"draw": number, "checkpoint": a.checkpoint, "sample": a.sample_index}
            row |= {f"judge: {j}": _word(v[0]) for j, v in a.verdicts.items()}  # before the text
            row |= {"answer": a.text, "tokens": a.token_count, "finish": a.finish_reason.value}
            rows.append(row)
    return pd.DataFrame(rows)


def one_line(err: BaseException) -> str:
    """An error's message on one line (loaders' messages can run to several)."""
    return " ".join(str(err).split()) or type(err).__name__


def _word(label: int | None) -> str:
    return VerdictLabel.of(label).word


def variation(draws: Sequence[Draw]) -> pd.DataFrame:
    """Per checkpoint and judge, how much the draws differ (annotations.variance.draw_spread)."""
    from annotations.variance import draw_spread

    rows = [{"draw": number, "checkpoint": a.checkpoint, "judge": judge,
             "complies": None if label is None else float(label), "text": a.text}
            for number, draw in enumerate(draws, start=1) for a in draw.answers
            for judge, (label, _, _) in a.verdicts.items()]
    return draw_spread(pd.DataFrame(rows))


def store_draw(ctx: AppContext, draw: Draw) -> int:
    """Save the draw's answers as generations (and their verdicts) for annotation."""
    from pipeline.coherence import coherence

    with ctx.store.batch() as tx:
        prompt_id = draw.prompt_id
        if prompt_id is None:
            prompt = Prompt(benchmark=LIVE_BENCHMARK, text=draw.request, kind=PromptKind.UNSAFE)
            tx.upsert_prompts([prompt])
            prompt_id = prompt.id
        gens, verdicts = [], []
        specs = {spec.label: spec for spec, _ in models(ctx).judges()}
        for spec in specs.values():
            tx.upsert_judge(spec)
        for a in draw.answers:
            flags = coherence(a.text)
            gen = Generation(checkpoint_id=a.checkpoint_id, prompt_id=prompt_id,
                             temperature=draw.temperature, sample_index=a.sample_index,
                             seed=draw.seed, max_new_tokens=draw.max_new_tokens, text=a.text,
                             token_count=a.token_count, finish_reason=a.finish_reason,
                             repetition=flags.repetition, degenerate=flags.degenerate,
                             empty=flags.empty)
            gens.append(gen)
            verdicts += [Verdict(generation_id=gen.id, judge_id=specs[j].id, label=label,
                                 probability=p, raw=raw)
                         for j, (label, p, raw) in a.verdicts.items()]
        tx.upsert_generations(gens)
        tx.upsert_verdicts(verdicts)
    return len(gens)


# ----- the tab ---------------------------------------------------------------------------------


def build_tab(ctx: AppContext, blocks: gr.Blocks) -> gr.Tab:
    with gr.Tab("Live sampling", id="live", visible=False) as tab:
        draws = gr.State([])
        with gr.Row():
            pick = session_dropdown("Pick a benchmark request (optional)", choices=[], scale=2)
            request_box = gr.Textbox(label="Request", lines=2, scale=3, elem_id="wb-live-request")
        with gr.Row():
            ckpts = gr.Dropdown(label="Checkpoints", multiselect=True, choices=[], scale=3,
                                elem_id="wb-live-ckpts")
            temperature = gr.Slider(0.0, 1.5, value=0.7, step=0.05, label="Temperature", scale=1)
            n_samples = gr.Slider(1, 16, value=3, step=1, label="Samples per checkpoint", scale=1)
            max_tokens = gr.Slider(8, 512, value=ctx.options.live_max_new_tokens, step=8,
                                   label="Max new tokens", scale=1)
        with gr.Row():
            sample_btn = gr.Button("Sample", variant="primary", elem_id="wb-live-sample")
            again_btn = gr.Button("Resample (new seed)", elem_id="wb-live-resample")
            store_btn = gr.Button("Store the last draw for annotation", elem_id="wb-live-store")
        status = gr.Textbox(label="Status", interactive=False, elem_id="wb-live-status")
        answers = gr.Dataframe(label="Answers (plain text)", interactive=False, wrap=True,
                               elem_id="wb-live-answers")
        spread = gr.Dataframe(label="How much the draws differ", interactive=False,
                              elem_id="wb-live-variation")

        def on_open(request: gr.Request) -> dict:
            if ctx.user(request)[1] != Role.ADMIN:
                return unchanged(ckpts, pick)
            frame = ctx.store.checkpoints_frame()
            prompts = ctx.store.prompts_frame()
            names = checkpoint_labels(frame)
            models_only = frame[frame["kind"] != CheckpointKind.IMPORTED.value]
            return {ckpts: gr.update(choices=[(names[i], i) for i in models_only["id"]]),
                    pick: gr.update(choices=[(prompt_label(r.category, r.benchmark, r.text), r.id)
                                             for r in prompts.itertuples()])}

        def on_pick(prompt_id: str, request: gr.Request) -> str:
            ctx.admin(request)
            frame = ctx.store.prompts_frame().set_index("id")
            return str(frame.loc[prompt_id, "text"]) if prompt_id in frame.index else ""

        def run(history: list[Draw], prompt_id: str | None, text: str, chosen: list[str],
                temp: float, n: float, tokens: float, keep: bool, request: gr.Request,
                progress: gr.Progress) -> Iterator[dict]:
            ctx.admin(request)
            if not text or not text.strip() or not chosen:
                raise gr.Error("Type a request and choose at least one checkpoint.")
            unknown = set(chosen) - set(ctx.store.checkpoints_frame()["id"])
            if unknown:
                raise gr.Error(f"Unknown checkpoints: {', '.join(sorted(unknown))}")
            stored = ctx.store.prompts_frame().set_index("id")
            picked = prompt_id in stored.index and stored.loc[prompt_id, "text"] == text
            known = prompt_id if picked else None
            draw = Draw(text, known, float(temp), int(tokens), ctx.rng.randrange(2**31))
            last = history[-1] if history else None
            same = keep and last and (last.request, last.temperature) == (text, draw.temperature)
            history = (list(history) if same else []) + [draw]
            progress(None, desc="loading the model (the first time takes a while)")
            try:
                for done, _ in enumerate(sample(ctx, draw, chosen, int(n)), start=1):
                    progress(done / len(chosen), desc=f"{done} of {len(chosen)} checkpoints")
                    yield {draws: history, answers: answers_table(history),
                           spread: variation(history),
                           status: f"draw {len(history)}: {done} of {len(chosen)} checkpoints "
                                   "answered"}
            except (ValueError, OSError, RuntimeError) as err:  # a model that cannot load
                raise gr.Error(f"Cannot sample: {one_line(err)}") from None

        def on_sample(history, prompt_id, text, chosen, temp, n, tokens, request: gr.Request,
                      progress=gr.Progress()):
            yield from run(history, prompt_id, text, chosen, temp, n, tokens, False, request,
                           progress)

        def on_resample(history, prompt_id, text, chosen, temp, n, tokens, request: gr.Request,
                        progress=gr.Progress()):
            yield from run(history, prompt_id, text, chosen, temp, n, tokens, True, request,
                           progress)

        def on_store(history: list[Draw], request: gr.Request) -> str:
            ctx.admin(request)
            if not history:
                return "Nothing sampled yet."
            return f"Stored {store_draw(ctx, history[-1])} answers as generations."

        hidden = {"api_visibility": "undocumented"}
        inputs = [draws, pick, request_box, ckpts, temperature, n_samples, max_tokens]
        outputs = [draws, answers, spread, status]
        blocks.load(on_open, None, [ckpts, pick], **hidden)
        pick.change(on_pick, pick, request_box, **hidden)
        sample_btn.click(on_sample, inputs, outputs, api_name="live_sample", **hidden)
        again_btn.click(on_resample, inputs, outputs, api_name="live_resample", **hidden)
        store_btn.click(on_store, draws, status, api_name="live_store", **hidden)
    return tab
