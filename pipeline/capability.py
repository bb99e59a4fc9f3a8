"""Capability stage: what fine-tuning did to usefulness, measured beside safety.

Per checkpoint, on the held-out benign split: the mean loss of the reference answers (teacher
forcing, answer tokens only) and the ROUGE-L F1 of greedy answers against the references. Safety
numbers mean little without these: a model that became incoherent also "refuses" less.
"""

from __future__ import annotations

from collections.abc import Sequence

from rouge_score import rouge_scorer

from annotations.records import CapabilityScore, Checkpoint, Prompt
from annotations.store import Store
from pipeline.generate import AdapterSwitcher, sample_batch
from pipeline.models import chat_prompt

METRICS = ("reference_loss", "rouge_l")


def reference_loss(model, tokenizer, prompts: Sequence[Prompt], batch_size: int = 16) -> float:
    """Mean per-token cross-entropy of the reference answers given their requests."""
    import torch

    total, count = 0.0, 0
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start:start + batch_size]
        heads = [chat_prompt(tokenizer, p.text) for p in chunk]
        fulls = [h + (p.reference or "") + (tokenizer.eos_token or "") for h, p in zip(heads, chunk)]
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
    scores = [scorer.score(ref, pred)["rougeL"].fmeasure for pred, ref in zip(predictions, references)]
    return float(sum(scores) / len(scores)) if scores else 0.0


def measured(store: Store, checkpoint: Checkpoint, prompts: Sequence[Prompt],
             benchmark: str) -> bool:
    wanted = [CapabilityScore(checkpoint_id=checkpoint.id, metric=m, benchmark=benchmark,
                              value=0.0, n=len(prompts)) for m in METRICS]
    return store.existing_ids("capability", [s.id for s in wanted]) == {s.id for s in wanted}


def measure_checkpoint(store: Store, switcher: AdapterSwitcher, checkpoint: Checkpoint,
                       prompts: Sequence[Prompt], benchmark: str, max_new_tokens: int = 64,
                       batch_size: int = 32, answers: Sequence[str] | None = None,
                       ) -> list[CapabilityScore]:
    """Both scores for one checkpoint, skipped when already stored. `answers`: the greedy
    answers, when an engine already drew them (else drawn here with transformers)."""
    if measured(store, checkpoint, prompts, benchmark):
        return []
    tok = switcher.tokenizer
    with switcher.use(checkpoint) as model:
        loss = reference_loss(model, tok, prompts)
        if answers is None:
            answers = []
            for start in range(0, len(prompts), batch_size):
                chunk = prompts[start:start + batch_size]
                out = sample_batch(model, tok, [chat_prompt(tok, p.text) for p in chunk], 0.0,
                                   max_new_tokens, seed=0)
                answers += [text for text, _, _ in out]
    scores = [CapabilityScore(checkpoint_id=checkpoint.id, metric="reference_loss",
                              benchmark=benchmark, value=loss, n=len(prompts)),
              CapabilityScore(checkpoint_id=checkpoint.id, metric="rouge_l", benchmark=benchmark,
                              value=rouge_l(answers, [p.reference or "" for p in prompts]),
                              n=len(prompts))]
    store.upsert_capability(scores)
    return scores
