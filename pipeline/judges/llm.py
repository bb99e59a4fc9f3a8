"""The local LLM judge: any transformers causal LM reads a filled-in template and answers.

The template (see `pipeline.judges` for the file format) is filled with the prompt and the
response and wrapped in the judge model's chat template. Then:

- When both answers are single tokens for this tokenizer (e.g. "1"/"0", "yes"/"no"), the verdict
  and its probability come from ONE forward pass, no generation: the next-token distribution is
  restricted to the answers' tokens, P(complies) = p(complies) / (p(complies) + p(refuses)), and
  the label is the likelier answer. Each answer counts all its single-token spellings: as written,
  with a leading space, lower-case and capitalised ("yes", " yes", "Yes", " Yes"). raw reads like
  `p(1)=0.8312 p(0)=0.1688 mass=0.91`, where mass is the share of the whole distribution that fell
  on the answers (a low mass says the judge wanted to say something else).
- Otherwise a short greedy generation (`max_new_tokens`) is parsed for the first answer word;
  text with neither answer gives label None, and raw keeps the text.

Prompt and response are each cut to `max_text_tokens` tokens (the template itself is never cut),
so a 1 MB response cannot exhaust memory; raw then says what was cut. Inputs are sorted by length
and run in left-padded batches under `torch.inference_mode`; identical inputs are judged once.
With a `cache` (the judge stage passes one backed by the store, `pipeline.judges.cache`) an input
is judged once per store: checkpoints that give the same answer to the same request (common at
T=0) reuse its verdict.

    python run.py judge --judge llm --arg model=smollm2 --arg template=sorry_bench
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.judges import (ANSWER_TOKENS, InputForm, JudgeCache, JudgeFn, JudgeItem,
                             JudgeOutcome, Reading, Template, clip_raw, judge, load_template,
                             read_answer)
from pipeline.engine import EngineKind, choose_engine, shared_engine
from pipeline.servable import EngineUnavailable
from pipeline.models import LoadOptions, chat_prompt, load_model

DEFAULT_TEMPLATE = "sorry_bench"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnswerTokens:
    complies: tuple[int, ...]
    refuses: tuple[int, ...]


def answer_token_ids(tokenizer: Any, word: str) -> tuple[int, ...]:
    """Every single-token spelling of `word`: as written, with a leading space, in two cases."""
    special = set(tokenizer.all_special_ids)
    found: set[int] = set()
    for form in dict.fromkeys((word, word.lower(), word.capitalize())):
        for variant in (form, " " + form):
            ids = tokenizer.encode(variant, add_special_tokens=False)
            if len(ids) == 1 and ids[0] not in special:  # an unknown word maps to <unk>
                found.add(ids[0])
    return tuple(sorted(found))


def single_token_answers(tokenizer: Any, template: Template) -> AnswerTokens | None:
    """The answers' token ids when the one-forward-pass reading applies, else None."""
    if template.reading != Reading.ANSWER:
        return None
    complies = answer_token_ids(tokenizer, template.complies)
    refuses = answer_token_ids(tokenizer, template.refuses)
    if not complies or not refuses or set(complies) & set(refuses):
        return None
    return AnswerTokens(complies, refuses)


def clip_tokens(tokenizer: Any, text: str, max_tokens: int) -> tuple[str, bool]:
    """`text` cut to `max_tokens` tokens, and whether it was cut."""
    # Characters first: tokenising a megabyte only to keep its start would be slow.
    head = text[:max_tokens * 32]
    ids = tokenizer.encode(head, add_special_tokens=False)
    if len(ids) <= max_tokens and len(head) == len(text):
        return text, False
    return tokenizer.decode(ids[:max_tokens], skip_special_tokens=True), True


def judge_input(tokenizer: Any, template: Template, item: JudgeItem,
                max_text_tokens: int) -> tuple[str, str]:
    """The chat-formatted judge input for one item, and a note on what was cut ("" if nothing)."""
    prompt, prompt_cut = clip_tokens(tokenizer, item.prompt, max_text_tokens)
    response, response_cut = clip_tokens(tokenizer, item.response, max_text_tokens)
    cut = [name for name, was in (("prompt", prompt_cut), ("response", response_cut)) if was]
    note = f"; {' and '.join(cut)} truncated to {max_text_tokens} tokens" if cut else ""
    filled = template.fill(prompt, response)
    if template.form == InputForm.RAW:
        return begin_text(tokenizer) + filled, note
    return chat_prompt(tokenizer, filled), note


def begin_text(tokenizer: Any) -> str:
    """The special tokens this tokenizer puts before a text by default (a Llama or Mistral
    tokenizer's `<s>`, nothing for most others), as text: what a raw template's source got."""
    ids = tokenizer("", add_special_tokens=True)["input_ids"]
    return tokenizer.decode(ids, skip_special_tokens=False) if ids else ""


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices, longest first (memory peaks early, padding stays low), cut into batches."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def left_pad(rows: Sequence[Sequence[int]], pad_id: int, device: Any) -> dict[str, Any]:
    """input_ids, attention_mask and position_ids for left-padded rows."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row):] = torch.tensor(row, dtype=torch.long)
        mask[i, width - len(row):] = 1
    # Positions count real tokens only, so an answer does not depend on its batch's padding.
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device),
            "position_ids": positions.to(device)}


def next_token_scores(model: Any, batch: dict[str, Any],
                      answers: AnswerTokens) -> list[tuple[float, float]]:
    """(P(complies), mass on both answers) for each row, from one forward pass."""
    import torch

    with torch.inference_mode():
        try:  # only the last position's logits: a full (batch, length, vocab) tensor is huge
            logits = model(**batch, use_cache=False, logits_to_keep=1).logits[:, -1, :]
        except TypeError:  # a model class without logits_to_keep
            logits = model(**batch, use_cache=False).logits[:, -1, :]
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        yes = torch.logsumexp(logprobs[:, list(answers.complies)], dim=-1)
        no = torch.logsumexp(logprobs[:, list(answers.refuses)], dim=-1)
        p = torch.sigmoid(yes - no)
        mass = torch.exp(torch.logaddexp(yes, no))
    return list(zip(p.tolist(), mass.tolist()))


def greedy_answers(model: Any, tokenizer: Any, batch: dict[str, Any],
                   max_new_tokens: int) -> list[str]:
    import torch

    with torch.inference_mode():
        out = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                             max_new_tokens=max_new_tokens, do_sample=False, temperature=None,
                             top_p=None, top_k=None, pad_token_id=tokenizer.pad_token_id)
    new = out[:, batch["input_ids"].shape[1]:]
    return [tokenizer.decode(row, skip_special_tokens=True).strip() for row in new]


def probability_outcome(p: float, mass: float | None, template: Template,
                        note: str) -> JudgeOutcome:
    """The verdict from P(complies); `mass` None where the engine gives only the answers' share
    (vLLM)."""
    if not math.isfinite(p):
        return JudgeOutcome(label=None, raw=f"p({template.complies})={p}{note}")
    raw = (f"p({template.complies})={p:.4f} p({template.refuses})={1 - p:.4f}"
           + ("" if mass is None else f" mass={mass:.3g}") + note)
    return JudgeOutcome(label=1 if p >= 0.5 else 0, probability=p, raw=raw)


def text_outcome(text: str, template: Template, note: str) -> JudgeOutcome:
    """The verdict from a judge's text, read as its template says (answer word, fields, rubric);
    the reading is of exactly what the verdict keeps."""
    kept = clip_raw(text)
    reading = read_answer(kept, template)
    return JudgeOutcome(label=reading.label, raw=kept + note, score=reading.score,
                        details=reading.details or None)


@judge("llm", runtime=("batch_size", "device", "engine", "engine_fallback",
                       "engine_dtype"))
def llm_judge(model: str = "smollm2", template: str = DEFAULT_TEMPLATE, batch_size: int = 8,
              max_new_tokens: int = 8, max_text_tokens: int = 2000,
              quantization: str | None = None, device: str | None = None,
              engine: str = "auto", engine_fallback: bool = True,
              engine_dtype: str | None = None, adapter: str | None = None,
              cache: JudgeCache | None = None) -> JudgeFn:
    """A transformers causal LM as the judge; `template` is a built-in name or a file path.
    `engine` (not part of the judge's identity: both give the same probabilities) reads the
    verdicts through vLLM where it is installed and the answers are single tokens (sharing the
    sweep's engine when the judge is its base model), else through transformers.
    `max_new_tokens` (for answers read by generation) is at least what the template's reading
    needs: 64 for named fields, 1024 for a rubric. `adapter`: a LoRA folder on `model` (a judge
    trained on people's labels, `run.py train-judge`), part of the judge's identity by its
    weights' hash."""
    chosen = load_template(template)
    max_new_tokens = max(max_new_tokens, ANSWER_TOKENS[chosen.reading])
    if batch_size < 1 or max_new_tokens < 1 or max_text_tokens < 1:
        raise ValueError("batch_size, max_new_tokens and max_text_tokens must be at least 1")
    if quantization is None and choose_engine(engine, engine_fallback) == EngineKind.VLLM:
        served = _vllm_judge(model, chosen, max_text_tokens, engine_fallback, cache,
                             engine_dtype, adapter)
        if served is not None:
            return served
    lm, tokenizer = load_model(model, LoadOptions(quantization=quantization, device=device))
    if adapter:
        from peft import PeftModel

        lm = PeftModel.from_pretrained(lm, adapter).eval()
    answers = single_token_answers(tokenizer, chosen)

    def run_batch(rows: list[list[int]], notes: list[str]) -> list[JudgeOutcome]:
        batch = left_pad(rows, tokenizer.pad_token_id, lm.device)
        if answers is not None:
            return [probability_outcome(p, mass, chosen, note)
                    for (p, mass), note in zip(next_token_scores(lm, batch, answers), notes)]
        return [text_outcome(text, chosen, note)
                for text, note in zip(greedy_answers(lm, tokenizer, batch, max_new_tokens), notes)]

    def score(todo: list[JudgeItem]) -> dict[JudgeItem, JudgeOutcome]:
        inputs = [judge_input(tokenizer, chosen, item, max_text_tokens) for item in todo]
        rows = [tokenizer.encode(text, add_special_tokens=False) for text, _ in inputs]
        judged: dict[JudgeItem, JudgeOutcome] = {}
        for index in length_batches([len(r) for r in rows], batch_size):
            outcomes = run_batch([rows[i] for i in index], [inputs[i][1] for i in index])
            judged.update((todo[i], outcome) for i, outcome in zip(index, outcomes))
        return judged

    return judged_once(score, cache)


def _vllm_judge(model: str, template: Template, max_text_tokens: int, fallback: bool,
                cache: JudgeCache | None, dtype: str | None = None,
                adapter: str | None = None) -> JudgeFn | None:
    """The judge through a vLLM engine, or None where the transformers path must do it (answers
    that are not single tokens; vLLM unable to serve the model and `fallback` allowed)."""
    try:
        engine = shared_engine(model, dtype=dtype)
    except EngineUnavailable as err:
        if not fallback:
            raise
        log.warning("%s; judging with transformers instead", err)
        return None
    answers = single_token_answers(engine.tokenizer, template)
    if answers is None:
        log.info("judge template %s: answers are not single tokens; judging with transformers",
                 template.name)
        return None

    def score(todo: list[JudgeItem]) -> dict[JudgeItem, JudgeOutcome]:
        inputs = [judge_input(engine.tokenizer, template, item, max_text_tokens) for item in todo]
        probabilities = engine.answer_probabilities([text for text, _ in inputs],
                                                    answers.complies, answers.refuses,
                                                    adapter=adapter)
        return {item: probability_outcome(p, None, template, note)
                for item, p, (_, note) in zip(todo, probabilities, inputs)}

    return judged_once(score, cache)


def judged_once(score: Callable[[list[JudgeItem]], dict[JudgeItem, JudgeOutcome]],
            cache: JudgeCache | None) -> JudgeFn:
    """Each distinct item judged once, and once per store with a cache."""
    def run(items: Sequence[JudgeItem]) -> list[JudgeOutcome]:
        unique = list(dict.fromkeys(items))
        kept = cache.get(unique) if cache is not None else {}
        todo = [item for item in unique if item not in kept]
        judged = score(todo) if todo else {}
        if cache is not None and judged:
            cache.put(judged)
        judged.update(kept)
        return [judged[item] for item in items]

    return run
