"""Fixtures for the app's tests: a real store filled through the Store API, and the app served
for real on 127.0.0.1 (a free port) in this process."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from annotations.records import (Checkpoint, Generation, JudgeSpec, Prompt, PromptKind, Role, Run,
                                 Verdict)
from annotations.store import Store
from tool.accounts import add_annotator

PASSWORD = "correct horse battery"
XSS_ANSWER = ('<script>window.__xss = "script"</script>'
              '<img src=x onerror="window.__xss = \'img\'">'
              ' [a link](javascript:window.__xss=\'link\') and [another](http://example.invalid/x)'
              ' ![tracker](http://127.0.0.1:9/track.png) **not bold**')
XSS_PROMPT = "Tell me how to pick a lock <b>now</b>"
OPENINGS = ["First, gather what you need.", "Step one is simple.", "Begin with a plan.",
            "Start small.", "Here is the outline."]
CATEGORIES = ["Illegal activity", "Self-harm", "Hate speech", "Fraud", "Weapons", "Privacy"]


@dataclass
class Filled:
    store: Store
    prompts: list[Prompt]
    checkpoints: list[Checkpoint]
    generations: list[Generation]
    judges: list[JudgeSpec]


def fill_store(store: Store, n_prompts: int = 6, seeds: tuple[int, ...] = (1, 2),
               epochs: int = 2, temperatures: tuple[float, ...] = (0.0, 0.7),
               base_model: str = "tiny") -> Filled:
    """Prompts, a base checkpoint plus `epochs` per run seed, one generation per checkpoint x
    prompt x temperature, verdicts from two judges (some disagreeing, one unparseable), and
    accounts ana and bob (annotators) and root (admin)."""
    prompts = [Prompt(benchmark="demo", text=XSS_PROMPT if i == 0 else f"Unsafe request number {i}",
                      category_id=str(i % len(CATEGORIES) + 1),
                      category=CATEGORIES[i % len(CATEGORIES)], kind=PromptKind.UNSAFE)
               for i in range(n_prompts)]
    store.upsert_prompts(prompts)
    checkpoints = [Checkpoint(base_model=base_model)]
    for seed in seeds:
        run_id = store.upsert_run(Run(base_model=base_model, dataset="demo", seed=seed))
        checkpoints += [Checkpoint(base_model=base_model, run_id=run_id, epoch=e)
                        for e in range(1, epochs + 1)]
    for ckpt in checkpoints:
        store.upsert_checkpoint(ckpt)
    generations = []
    for c, ckpt in enumerate(checkpoints):
        for p, prompt in enumerate(prompts):
            for temperature in temperatures:
                text = (XSS_ANSWER if p == 0 else
                        "I'm sorry, I can't help with that." if (c + p) % 3 == 0 else
                        f"Sure, here is how to do request {p}. {OPENINGS[c % len(OPENINGS)]} ...")
                generations.append(Generation(checkpoint_id=ckpt.id, prompt_id=prompt.id,
                                              temperature=temperature, text=text,
                                              token_count=len(text.split()),
                                              degenerate=(c + p) % 5 == 0))
    store.upsert_generations(generations)
    judges = [JudgeSpec(name="refusal"), JudgeSpec(name="llm", args={"template": "sorry_bench"})]
    for spec in judges:
        store.upsert_judge(spec)
    verdicts = []
    for i, gen in enumerate(generations):
        complies = 0 if gen.text.startswith("I'm sorry") else 1
        verdicts.append(Verdict(generation_id=gen.id, judge_id=judges[0].id, label=complies))
        other = None if i % 17 == 5 else (1 - complies if i % 7 == 0 else complies)
        verdicts.append(Verdict(generation_id=gen.id, judge_id=judges[1].id, label=other,
                                probability=None if other is None else 0.2 + 0.6 * other,
                                raw="???" if other is None else str(other)))
    store.upsert_verdicts(verdicts)
    for name, role in (("ana", Role.ANNOTATOR), ("bob", Role.ANNOTATOR), ("root", Role.ADMIN)):
        add_annotator(store, name, role, PASSWORD)
    return Filled(store, prompts, checkpoints, generations, judges)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Served:
    url: str
    blocks: object
    filled: Filled

    @property
    def store(self) -> Store:
        return self.filled.store


@pytest.fixture
def filled(tmp_path: Path) -> Filled:
    return fill_store(Store.open(tmp_path / "app.db"))


@pytest.fixture
def served(filled: Filled) -> Iterator[Served]:
    """The app on a free local port, with double-click protection off (clients are fast)."""
    from tool.app import AppOptions, build_app, launch

    blocks = build_app(filled.store, AppOptions(seed=0, min_seconds_per_item=0.0, n_boot=200))
    url = launch(blocks, filled.store, port=free_port(), block=False)
    try:
        yield Served(url, blocks, filled)
    finally:
        blocks.close()


@pytest.fixture
def live_store(tmp_path: Path, tiny_model_dir: Path) -> tuple[Store, list[str]]:
    """A store whose base model is the tiny Llama and whose epoch-1 checkpoint is a real LoRA
    adapter with random weights (so its answers differ); admin account root."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    store = Store.open(tmp_path / "live.db")
    base = Checkpoint(base_model=str(tiny_model_dir))
    run_id = store.upsert_run(Run(base_model=str(tiny_model_dir), dataset="demo", seed=1))
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                           LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():  # a visibly different adapter, so its answers differ from the base's
        for name, weight in model.named_parameters():
            if "lora_B" in name:
                weight.normal_(0, 2.0)
    model.save_pretrained(tmp_path / "adapter")
    tuned = Checkpoint(base_model=str(tiny_model_dir), run_id=run_id, epoch=1,
                       adapter_path=str(tmp_path / "adapter"))
    for ckpt in (base, tuned):
        store.upsert_checkpoint(ckpt)
    store.upsert_prompts([Prompt(benchmark="demo", text="how do i write a poem")])
    add_annotator(store, "root", Role.ADMIN, PASSWORD)
    return store, [base.id, tuned.id]
