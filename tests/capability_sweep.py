"""A simulated sweep for the capability-matched analyses (tests/annotations/test_matched.py,
the app's Capability tab): two data sets (one learns fast, one slowly), two seeds each,
mid-epoch checkpoints, two benchmarks and a planted flip: on benchmark "x" the fast data set
makes the model more harmful than the slow one, on "y" less. `build_capability_sweep` writes it
through the Store API and returns the rows that went in, so tests can recompute every number."""

from __future__ import annotations

import numpy as np
import pandas as pd

from annotations.records import (CapabilityScore, Checkpoint, Generation, GoalStatus, JudgeSpec,
                                 Prompt, Run, RunGoal, Verdict)
from annotations.store import Store

N_PROMPTS = 30
# (data set, epoch, step) -> (capability rouge_l, harmfulness on "x", on "y")
PLAN = {("fast", 1, 2): (0.30, 0.30, 0.30), ("fast", 1, None): (0.56, 0.85, 0.10),
        ("fast", 2, None): (0.60, 0.90, 0.10),
        ("slow", 1, 2): (0.20, 0.20, 0.20), ("slow", 1, None): (0.35, 0.15, 0.55),
        ("slow", 2, None): (0.52, 0.15, 0.90)}
BASE = (0.10, 0.10, 0.10)
TARGET = 0.5


def build_capability_sweep(store: Store):
    """(store, judge id, plan: checkpoint id -> (data set, epoch, step, capability, harm x,
    harm y), truth: one row per verdict)."""
    rng = np.random.default_rng(3)
    prompts = {b: [Prompt(benchmark=b, text=f"request {b} {i}", source_id=str(i))
                   for i in range(N_PROMPTS)] for b in ("x", "y")}
    store.upsert_prompts(prompts["x"] + prompts["y"])
    judge = store.upsert_judge(JudgeSpec(name="exact"))
    base = store.upsert_checkpoint(Checkpoint(base_model="tiny"))
    plan = {base: ("base", 0, None, *BASE)}
    for dataset in ("fast", "slow"):
        for seed in (1, 2):
            run = store.upsert_run(Run(base_model="tiny", dataset=dataset, seed=seed))
            for (d, epoch, step), values in PLAN.items():
                if d == dataset:
                    seen = 4 * (step or 4 * epoch)
                    cid = store.upsert_checkpoint(Checkpoint(
                        base_model="tiny", run_id=run, epoch=epoch, step=step,
                        examples_seen=seen))
                    plan[cid] = (dataset, epoch, step, *values)
    rows = []
    for cid, (_, _, _, capability, harm_x, harm_y) in plan.items():
        store.upsert_capability([CapabilityScore(checkpoint_id=cid, metric="rouge_l",
                                                 benchmark="held", value=capability, n=16)])
        for bench, rate in (("x", harm_x), ("y", harm_y)):
            for prompt in prompts[bench]:
                for temperature in (0.0, 0.7):
                    gen = Generation(checkpoint_id=cid, prompt_id=prompt.id,
                                     temperature=temperature, text="answer")
                    rows.append((gen, int(rng.random() < rate), bench))
    store.upsert_generations(g for g, _, _ in rows)
    store.upsert_verdicts(Verdict(generation_id=g.id, judge_id=judge, label=y)
                          for g, y, _ in rows)
    truth = pd.DataFrame([{"generation_id": g.id, "checkpoint_id": g.checkpoint_id,
                           "prompt_id": g.prompt_id, "temperature": g.temperature,
                           "outcome": y, "benchmark": b} for g, y, b in rows])
    return store, judge, plan, truth


def ids_of(plan, dataset, epoch, step=None):
    return [c for c, (d, e, s, *_) in plan.items() if d == dataset and e == epoch and s == step]


def store_goals(store: Store, plan) -> None:
    """Each run's goal as training to rouge_l >= TARGET would have stored it."""
    frame = store.checkpoints_frame().set_index("id")
    for dataset, epoch in (("fast", 1), ("slow", 2)):
        for cid in ids_of(plan, dataset, epoch):
            store.upsert_goal(RunGoal(run_id=frame.loc[cid, "run_id"], metric="rouge_l",
                                      benchmark="held", target=TARGET,
                                      status=GoalStatus.REACHED, checkpoint_id=cid))
