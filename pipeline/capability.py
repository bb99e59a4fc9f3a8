"""Capability stage: what fine-tuning did to usefulness, measured beside safety.

Safety numbers mean little without these: a model that became incoherent also "refuses" less.
Per checkpoint (the metrics are `CapabilityMetric`s, pipeline/tasks.py):

- on the held-out benign split: the mean loss of the reference answers (teacher forcing, answer
  tokens only) and the ROUGE-L F1 of greedy answers against the references;
- on a user's QA task set: the share of greedy answers that equal a reference (`exact_match`) or
  contain one (`contains`), after SQuAD's normalisation;
- on a user's multiple-choice set: lm-eval-harness's acc and acc_norm (`choice_accuracy`,
  `choice_accuracy_norm`) from the log-likelihood of each option after the prompt.

`evaluate_capability(model, tokenizer, metric, items)` measures one of them on any causal LM, a
peft model in the middle of training included (a training callback calls it every N steps):

    accuracy = evaluate_capability(model, tokenizer, CapabilityMetric.EXACT_MATCH, qa_items)

The sweep stores one `CapabilityScore` per checkpoint, metric and task set (`measure_checkpoint`,
`measure_tasks`), skipping what is stored.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from rouge_score import rouge_scorer

from annotations.records import CapabilityMetric, CapabilityScore, Checkpoint, Prompt
from annotations.store import Store
from pipeline.generate import AdapterSwitcher, sample_batch
from pipeline.models import chat_prompt
from pipeline.tasks import (ChoiceItem, QAItem, TaskSet, TaskShape, choice_accuracy, qa_accuracy,
                            task_shape)

__all__ = ["CapabilityMetric", "evaluate_capabilities", "evaluate_capability", "greedy_answers",
           "measure_checkpoint", "measure_tasks", "missing_metrics", "option_loglikelihoods",
           "reference_loss", "rouge_l"]

HELDOUT_METRICS = (CapabilityMetric.REFERENCE_LOSS, CapabilityMetric.ROUGE_L)
ITEM_TYPES = {TaskShape.HELDOUT: Prompt, TaskShape.QA: QAItem,
              TaskShape.MULTIPLE_CHOICE: ChoiceItem}


def reference_loss(model, tokenizer, prompts: Sequence[Prompt], batch_size: int = 16) -> float:
    """Mean per-token cross-entropy of the reference answers given their requests."""
    import torch

    total, count = 0.0, 0
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start:start + batch_size]
        heads = [chat_prompt(tokenizer, p.text) for p in chunk]
        fulls = [h + (p.reference or "") + (tokenizer.eos_token or "")
                 for h, p in zip(heads, chunk)]
        side = tokenizer.padding_side
        tokenizer.padding_side = "right"
        enc = tokenizer(fulls, return_tensors="pt", padding=True, add_special_tokens=False)
        tokenizer.padding_side = side
        labels = enc["input_ids"].clone()
        labels[enc["attention_mask"] == 0] = -100
        for row, head in enumerate(heads):  # loss on the answer only
            labels[row, :len(tokenizer(head, add_special_tokens=False)["input_ids"])] = -100
        enc = {k: v.to(model.device) for k, v in enc.items()}
        with torch.inference_mode():
            logits = model(**enc).logits[:, :-1].float()
        target = labels[:, 1:].to(logits.device)
        loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), target,
                                                 ignore_index=-100, reduction="sum")
        total += float(loss)
        count += int((target != -100).sum())
    return total / max(count, 1)


def rouge_l(predictions: Sequence[str], references: Sequence[str]) -> float:
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    scores = [scorer.score(ref, pred)["rougeL"].fmeasure
              for pred, ref in zip(predictions, references)]
    return float(sum(scores) / len(scores)) if scores else 0.0


def greedy_answers(model, tokenizer, requests: Sequence[str], max_new_tokens: int,
                   batch_size: int = 32) -> list[str]:
    """Greedy answers to user requests (chat-templated here), in batches in the given order,
    left-padded whatever the tokenizer's padding side was (a trainer's is right)."""
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        answers: list[str] = []
        for start in range(0, len(requests), batch_size):
            texts = [chat_prompt(tokenizer, r) for r in requests[start:start + batch_size]]
            answers += [text for text, _, _ in sample_batch(model, tokenizer, texts, 0.0,
                                                            max_new_tokens, seed=0)]
        return answers
    finally:
        tokenizer.padding_side = side


# ----- multiple choice: log-likelihoods of the options -------------------------------------

@dataclass(frozen=True)
class _Continuation:
    """One option after its prompt: the tokens of the whole text, and where the option's
    tokens begin in them."""

    item: int
    option: int
    tokens: tuple[int, ...]
    start: int


def option_loglikelihoods(model, tokenizer, items: Sequence[ChoiceItem],
                          batch_size: int = 16) -> list[list[float]]:
    """Per item, each option's log-likelihood as the answer to the chat-templated question:
    log P(option | prompt) summed over the option's tokens.

    lm-eval-harness's loglikelihood, written here (lm-eval is not a dependency, and its
    harness would reload the model rather than score the one in training): prompt and option
    are tokenised together and the option's tokens are those beyond the prompt's own tokens,
    so a tokenizer that merges across the boundary still scores the option as it would be
    written; longest first, right-padded, one forward pass per batch; only the positions that
    predict option tokens are turned into log-probabilities. Unlike lm-eval, the prompt's
    trailing whitespace (the chat template's newline) stays in the prompt: every option
    follows it as an answer would, so it is not scored.
    """
    requests = _continuations(tokenizer, items)
    order = sorted(range(len(requests)), key=lambda i: (-len(requests[i].tokens), i))
    sums = [0.0] * len(requests)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    for start in range(0, len(order), batch_size):
        picked = order[start:start + batch_size]
        for i, value in zip(picked, _summed_logprobs(model, [requests[i] for i in picked], pad)):
            sums[i] = value
    out = [[0.0] * len(item.choices) for item in items]
    for request, value in zip(requests, sums):
        out[request.item][request.option] = value
    return out


def _continuations(tokenizer, items: Sequence[ChoiceItem]) -> list[_Continuation]:
    out = []
    for k, item in enumerate(items):
        context = chat_prompt(tokenizer, item.question)
        head = len(tokenizer(context, add_special_tokens=False)["input_ids"])
        wholes = tokenizer([context + c for c in item.choices],
                           add_special_tokens=False)["input_ids"]
        for j, whole in enumerate(wholes):
            if len(whole) <= head:
                raise ValueError(f"option {j} {item.choices[j]!r} of question "
                                 f"{item.question[:60]!r} adds no token to the prompt")
            out.append(_Continuation(k, j, tuple(whole), max(head, 1)))
    return out


def _summed_logprobs(model, batch: Sequence[_Continuation], pad: int) -> list[float]:
    """One forward pass: each continuation's summed log-probability of its option tokens."""
    import torch

    inputs = [r.tokens[:-1] for r in batch]  # the last token is predicted, never fed
    width = max(map(len, inputs))
    ids = torch.full((len(batch), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, tokens in enumerate(inputs):
        ids[row, :len(tokens)] = torch.tensor(tokens)
        mask[row, :len(tokens)] = 1
    first = min(r.start for r in batch) - 1  # no earlier position predicts an option token
    keep = {"logits_to_keep": width - first} if _takes(model, "logits_to_keep") else {}
    with torch.inference_mode():
        logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device),
                       **keep).logits
    offset = width - logits.shape[1]
    sums = []
    for row, r in enumerate(batch):
        rows = logits[row, r.start - 1 - offset:len(r.tokens) - 1 - offset].float()
        target = torch.tensor(r.tokens[r.start:], device=rows.device)[:, None]
        sums.append(float(torch.log_softmax(rows, dim=-1).gather(1, target).sum()))
    return sums


def _takes(model, name: str) -> bool:
    """Whether the (base) model's forward takes `name`: transformers' models take
    `logits_to_keep`, a model of other code may not."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return name in inspect.signature(base.forward).parameters


# ----- one entry point ----------------------------------------------------------------------

def evaluate_capability(model, tokenizer, metric: CapabilityMetric | str, items: Sequence,
                        max_new_tokens: int = 64, batch_size: int = 16) -> float:
    """One capability metric of `model` on `items`: held-out `Prompt`s with references for
    reference_loss and rouge_l, `QAItem`s for exact_match and contains, `ChoiceItem`s for
    choice_accuracy and choice_accuracy_norm. Any causal LM, a peft model under training
    included: it is evaluated in eval mode without autograd, and every module's train/eval
    mode and the tokenizer's padding side are as they were afterwards."""
    metric = CapabilityMetric(metric)
    return evaluate_capabilities(model, tokenizer, [metric], items, max_new_tokens,
                                 batch_size)[metric]


def evaluate_capabilities(model, tokenizer, metrics: Sequence[CapabilityMetric | str],
                          items: Sequence, max_new_tokens: int = 64, batch_size: int = 16,
                          answers: Sequence[str] | None = None
                          ) -> dict[CapabilityMetric, float]:
    """Several metrics of one kind of task set at once, sharing the work (one set of greedy
    answers, one pass of option log-likelihoods); `answers`: the greedy answers, when an
    engine already drew them. See `evaluate_capability`."""
    wanted = [CapabilityMetric(m) for m in metrics]
    shape = _shape(wanted, items)
    with _evaluating(model):
        if shape is TaskShape.MULTIPLE_CHOICE:
            lls = option_loglikelihoods(model, tokenizer, items, batch_size)
            return {m: choice_accuracy(lls, items, m is CapabilityMetric.CHOICE_ACCURACY_NORM)
                    for m in wanted}
        values = {}
        if CapabilityMetric.REFERENCE_LOSS in wanted:
            values[CapabilityMetric.REFERENCE_LOSS] = reference_loss(model, tokenizer, items,
                                                                     batch_size)
        if any(m.generates for m in wanted) and answers is None:
            questions = [i.text if shape is TaskShape.HELDOUT else i.question for i in items]
            answers = greedy_answers(model, tokenizer, questions, max_new_tokens, batch_size)
    for metric in (m for m in wanted if m.generates):
        values[metric] = (rouge_l(answers, [p.reference for p in items])
                          if metric is CapabilityMetric.ROUGE_L
                          else qa_accuracy(metric, answers, items))
    return {m: values[m] for m in wanted}


def _shape(metrics: Sequence[CapabilityMetric], items: Sequence) -> TaskShape:
    """The one kind of task set `metrics` need, with `items` of its type (else ValueError)."""
    shapes = {task_shape(m) for m in metrics}
    if len(shapes) != 1:
        raise ValueError(f"metrics of one kind of task set at a time, not "
                         f"{', '.join(m.value for m in metrics)}")
    (shape,) = shapes
    if not items:
        raise ValueError("no items to evaluate")
    kind = ITEM_TYPES[shape]
    wrong = next((i for i in items if not isinstance(i, kind)), None)
    if wrong is not None:
        raise ValueError(f"{metrics[0].value} is measured on {kind.__name__} items, not "
                         f"{type(wrong).__name__}")
    if shape is TaskShape.HELDOUT and any(p.reference is None for p in items):
        raise ValueError(f"{metrics[0].value} needs a reference answer for every prompt")
    return shape


@contextlib.contextmanager
def _evaluating(model) -> Iterator[None]:
    """Eval mode (no dropout) without autograd; every module's mode is put back afterwards,
    so a training loop that calls in carries on as it was."""
    import torch

    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        for module, training in modes:
            module.training = training


# ----- the sweep: stored per checkpoint ----------------------------------------------------

def _score(checkpoint: Checkpoint, metric: CapabilityMetric, benchmark: str, value: float,
           n: int) -> CapabilityScore:
    return CapabilityScore(checkpoint_id=checkpoint.id, metric=metric.value, benchmark=benchmark,
                           value=value, n=n)


def measured(store: Store, checkpoint: Checkpoint, prompts: Sequence[Prompt],
             benchmark: str) -> bool:
    wanted = [_score(checkpoint, m, benchmark, 0.0, len(prompts)) for m in HELDOUT_METRICS]
    return store.existing_ids("capability", [s.id for s in wanted]) == {s.id for s in wanted}


def measure_checkpoint(store: Store, switcher: AdapterSwitcher, checkpoint: Checkpoint,
                       prompts: Sequence[Prompt], benchmark: str, max_new_tokens: int = 64,
                       batch_size: int = 32, answers: Sequence[str] | None = None,
                       ) -> list[CapabilityScore]:
    """Both held-out scores for one checkpoint, each skipped when already stored (a run with a
    capability goal stored its goal's metric while training). `answers`: the greedy answers,
    when an engine already drew them (else drawn here with transformers)."""
    wanted = {m: _score(checkpoint, m, benchmark, 0.0, len(prompts))
              for m in (CapabilityMetric.REFERENCE_LOSS, CapabilityMetric.ROUGE_L)}
    have = store.existing_ids("capability", [s.id for s in wanted.values()])
    todo = [m for m, s in wanted.items() if s.id not in have]
    if not todo:
        return []
    tok, scores = switcher.tokenizer, []
    with switcher.use(checkpoint) as model:
        if CapabilityMetric.REFERENCE_LOSS in todo:
            scores.append(_score(checkpoint, CapabilityMetric.REFERENCE_LOSS, benchmark,
                                 reference_loss(model, tok, prompts), len(prompts)))
        if CapabilityMetric.ROUGE_L in todo and answers is None:
            answers = greedy_answers(model, tok, [p.text for p in prompts], max_new_tokens,
                                     batch_size)
    if CapabilityMetric.ROUGE_L in todo:
        rouge = rouge_l(answers, [p.reference or "" for p in prompts])
        scores.append(_score(checkpoint, CapabilityMetric.ROUGE_L, benchmark, rouge,
                             len(prompts)))
    store.upsert_capability(scores)
    return scores


def missing_metrics(store: Store, checkpoint: Checkpoint,
                    task: TaskSet) -> tuple[CapabilityMetric, ...]:
    """The task set's metrics not yet stored for `checkpoint`."""
    ids = {m: _score(checkpoint, m, task.name, 0.0, len(task.items)).id for m in task.metrics}
    done = store.existing_ids("capability", list(ids.values()))
    return tuple(m for m, i in ids.items() if i not in done)


def measure_tasks(store: Store, switcher: AdapterSwitcher, checkpoint: Checkpoint,
                  tasks: Sequence[TaskSet], answers: Mapping[str, Sequence[str]] | None = None,
                  ) -> list[CapabilityScore]:
    """Every task set's metrics for one checkpoint (stored under the task set's name as the
    benchmark), each skipped when already stored. `answers`: greedy answers by task set name,
    when an engine already drew them."""
    scores: list[CapabilityScore] = []
    for task in tasks:
        todo = missing_metrics(store, checkpoint, task)
        if not todo:
            continue
        with switcher.use(checkpoint) as model:
            values = evaluate_capabilities(model, switcher.tokenizer, todo, task.items,
                                           task.max_new_tokens, task.batch_size,
                                           (answers or {}).get(task.name))
        new = [_score(checkpoint, m, task.name, v, len(task.items)) for m, v in values.items()]
        store.upsert_capability(new)
        scores += new
    return scores
