"""Generation stage: every checkpoint answers every benchmark prompt at every temperature.

One base model is loaded once; checkpoints are LoRA adapters swapped onto it (epoch 0 runs with
adapters disabled). Prompts are wrapped in the chat template, sorted by length and generated in
left-padded batches; temperature 0 is greedy. Sampling is seeded per batch from the ids of the
items in it, and batches are cut from the full work list before anything stored is skipped, so a
resumed run draws exactly the texts an uninterrupted one would. Each batch is written in one
transaction, so a killed run loses at most the batch in flight.

With the vLLM engine (`generate_all`), every checkpoint x temperature x sample still missing goes
to one engine as one stream of requests, each with its checkpoint's adapter and its own seed
derived from its generation id (so a resumed run draws the same texts, whatever went before);
each engine call's answers are written in one transaction as it returns.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from tqdm.auto import tqdm

from annotations.records import Checkpoint, FinishReason, Generation, Prompt, generation_id
from annotations.records import stable_id
from annotations.store import Store
from pipeline.coherence import coherence
from pipeline.engine import Completion, Request, VLLMEngine, request_seed
from pipeline.models import chat_prompt


@dataclass(frozen=True)
class GenerationSettings:
    temperatures: tuple[float, ...] = (0.0, 0.7)
    samples: int = 1  # answers per prompt at temperatures above 0 (greedy gives one)
    max_new_tokens: int = 256
    batch_size: int = 32
    seed: int = 0


@dataclass(frozen=True)
class WorkItem:
    prompt: Prompt
    sample_index: int
    id: str


class AdapterSwitcher:
    """One loaded base model whose LoRA adapters are swapped in per checkpoint."""

    def __init__(self, model, tokenizer):
        self.model = model
        self.tokenizer = tokenizer
        self._loaded: set[str] = set()

    @contextlib.contextmanager
    def use(self, checkpoint: Checkpoint) -> Iterator[object]:
        if checkpoint.adapter_path is None:
            with self._base():
                yield self.model
            return
        from peft import PeftModel

        name = f"ckpt_{checkpoint.id}"
        if not isinstance(self.model, PeftModel):
            self.model = PeftModel.from_pretrained(self.model, checkpoint.adapter_path,
                                                   adapter_name=name)
        elif name not in self._loaded:
            self.model.load_adapter(checkpoint.adapter_path, adapter_name=name)
        self._loaded.add(name)
        self.model.set_adapter(name)
        for other in self._loaded - {name}:  # one adapter in memory at a time: memory stays flat
            self.model.delete_adapter(other)
        self._loaded = {name}
        self.model.eval()
        yield self.model

    @contextlib.contextmanager
    def _base(self) -> Iterator[None]:
        if hasattr(self.model, "disable_adapter"):
            with self.model.disable_adapter():
                yield
        else:
            yield


def sampling_kwargs(temperature: float) -> dict[str, object]:
    """`model.generate`'s settings: plain sampling at `temperature` (no top-k, no top-p), or
    greedy at 0."""
    if temperature > 0:
        return {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0}
    return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}


def sample_batch(model, tokenizer, texts: Sequence[str], temperature: float,
                 max_new_tokens: int, seed: int) -> list[tuple[str, int, FinishReason]]:
    """Answers to already-templated prompts: (text, new token count, finish reason) each."""
    import torch

    enc = tokenizer(list(texts), return_tensors="pt", padding=True, add_special_tokens=False)
    enc = {k: v.to(model.device) for k, v in enc.items()}
    sampling = sampling_kwargs(temperature)
    torch.manual_seed(seed)
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                             **sampling)
    new = out[:, enc["input_ids"].shape[1]:].tolist()
    return [_finish(tokenizer, row, max_new_tokens) for row in new]


def _finish(tokenizer, ids: list[int], max_new_tokens: int) -> tuple[str, int, FinishReason]:
    eos = tokenizer.eos_token_id
    eos_ids = set(eos) if isinstance(eos, list) else {eos}
    cut = next((i for i, t in enumerate(ids) if t in eos_ids), None)
    kept = ids if cut is None else ids[:cut]
    reason = FinishReason.STOP if cut is not None or len(ids) < max_new_tokens else FinishReason.LENGTH
    return tokenizer.decode(kept, skip_special_tokens=True).strip(), len(kept), reason


def work_list(checkpoint: Checkpoint, prompts: Sequence[Prompt], temperature: float,
              settings: GenerationSettings) -> list[WorkItem]:
    samples = settings.samples if temperature > 0 else 1
    return [WorkItem(p, k, generation_id(checkpoint.id, p.id, temperature, k, settings.seed,
                                         settings.max_new_tokens))
            for p in prompts for k in range(samples)]


def batches(items: list[WorkItem], tokenizer, size: int) -> list[list[WorkItem]]:
    """Longest first (memory peaks early, padding stays low), cut into fixed batches."""
    length = {p.id: len(tokenizer(p.text, add_special_tokens=False)["input_ids"])
              for p in {i.prompt.id: i.prompt for i in items}.values()}
    ordered = sorted(items, key=lambda i: (-length[i.prompt.id], i.id))
    return [ordered[i:i + size] for i in range(0, len(ordered), size)]


def generate_checkpoint(store: Store, switcher: AdapterSwitcher, checkpoint: Checkpoint,
                        prompts: Sequence[Prompt], settings: GenerationSettings,
                        progress: bool = True) -> int:
    """Generate what is missing for one checkpoint; returns how many generations were added."""
    added = 0
    for temperature in settings.temperatures:
        items = work_list(checkpoint, prompts, temperature, settings)
        done = store.existing_ids("generations", [i.id for i in items])
        todo = [b for b in batches(items, switcher.tokenizer, settings.batch_size)
                if any(i.id not in done for i in b)]
        bar = tqdm(total=sum(len(b) for b in todo), disable=not progress, leave=False,
                   desc=f"generate epoch {checkpoint.epoch} T={temperature}")
        with switcher.use(checkpoint) as model:
            for batch in todo:
                rows = _generate_batch(model, switcher.tokenizer, checkpoint, batch, temperature,
                                       settings)
                store.upsert_generations(rows)
                added += len(rows)
                bar.update(len(batch))
        bar.close()
    return added


def generate_all(store: Store, engine: VLLMEngine, checkpoints: Sequence[Checkpoint],
                 prompts: Sequence[Prompt], settings: GenerationSettings,
                 progress: bool = True,
                 on_written: Callable[[int], None] | None = None) -> int:
    """Generate what is missing for every checkpoint through one vLLM engine; returns how many
    generations were added. `on_written` hears how many answers each engine call stored (for
    a progress display)."""
    todo: dict[str, tuple[Checkpoint, WorkItem, float]] = {}
    for checkpoint in checkpoints:
        for temperature in settings.temperatures:
            items = work_list(checkpoint, prompts, temperature, settings)
            done = store.existing_ids("generations", [i.id for i in items])
            todo |= {i.id: (checkpoint, i, temperature) for i in items if i.id not in done}
    requests = [Request(gid, chat_prompt(engine.tokenizer, item.prompt.text),
                        checkpoint.adapter_path, temperature, settings.max_new_tokens,
                        request_seed(gid))
                for gid, (checkpoint, item, temperature) in todo.items()]
    added = 0
    with tqdm(total=len(requests), disable=not progress, leave=False,
              desc=f"generate {len(checkpoints)} checkpoints (vllm)") as bar:
        for answers in engine.generate(requests):
            rows = [generation_row(*todo[a.id], a, settings) for a in answers]
            store.upsert_generations(rows)
            added += len(rows)
            bar.update(len(rows))
            if on_written is not None:
                on_written(len(rows))
    return added


def generation_row(checkpoint: Checkpoint, item: WorkItem, temperature: float,
                   answer: Completion, settings: GenerationSettings) -> Generation:
    """The stored answer, with its coherence flags (every engine and endpoint writes these)."""
    flags = coherence(answer.text)
    return Generation(
        checkpoint_id=checkpoint.id, prompt_id=item.prompt.id, temperature=temperature,
        sample_index=item.sample_index, seed=settings.seed, max_new_tokens=settings.max_new_tokens,
        text=answer.text, token_count=answer.token_count, finish_reason=answer.finish_reason,
        repetition=flags.repetition, degenerate=flags.degenerate, empty=flags.empty)


def _generate_batch(model, tokenizer, checkpoint: Checkpoint, batch: list[WorkItem],
                    temperature: float, settings: GenerationSettings) -> list[Generation]:
    seed = int(stable_id("batch-seed", settings.seed, [i.id for i in batch])[:8], 16)
    texts = [chat_prompt(tokenizer, i.prompt.text) for i in batch]
    answers = sample_batch(model, tokenizer, texts, temperature, settings.max_new_tokens, seed)
    return [generation_row(checkpoint, item, temperature,
                           Completion(item.id, text, count, reason), settings)
            for item, (text, count, reason) in zip(batch, answers)]
