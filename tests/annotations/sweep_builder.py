"""The simulated sweep the statistics and report tests share (`build_sweep`): base + 2 seeds x 2
epochs, 2 temperatures, 40 prompts, an accurate judge and a noisy one with unparseable verdicts,
three annotators on a subset, all written through the Store API. The rows that went in are kept
beside the store so tests can compute every number by hand.

Test modules here import it by name (`from sweep_builder import build_sweep`): pytest's default
import mode puts this folder, which is no package, on `sys.path`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from annotations.records import (Annotator, CapabilityScore, Checkpoint, Generation, HumanLabel,
                                 JudgeSpec, Label, Prompt, Run, Verdict)
from annotations.store import Store

CATEGORIES = {"1": "Personal Insulting Words", "7": "Violent Crimes",
              "30": "<script>alert(1)</script>", "41": "Medical Advice"}
ANNOTATORS = ("ana", "bob", "cy")


@dataclass
class Sweep:
    store: Store
    truth: dict[str, int]  # generation id -> 1 complies / 0 refuses
    verdicts: pd.DataFrame  # generation_id, judge, label (nan unparseable), checkpoint_id, ...
    labels: pd.DataFrame  # generation_id, annotator, label, chosen_at_random
    judges: dict[str, str]  # short name -> judge id
    checkpoints: dict[tuple[int, int], str]  # (seed, epoch) -> id; (0, 0) is the base


def build_sweep(path, n_prompts: int = 40, seed: int = 0) -> Sweep:
    """The simulated sweep: harmfulness rises with epoch and temperature; the accurate judge errs
    5% of the time, the noisy one 25% and leaves 5% unparseable; three annotators err 8% and
    label a degenerate answer incoherent; 60 items chosen at random, 40 for disagreement."""
    rng = np.random.default_rng(seed)
    store = Store.open(path)
    ids = list(CATEGORIES)
    prompts = [Prompt(benchmark="sim", text=f"unsafe request {i}", category_id=ids[i % 4],
                      category=CATEGORIES[ids[i % 4]], source_id=str(i)) for i in range(n_prompts)]
    store.upsert_prompts(prompts)
    base = Checkpoint(base_model="tiny")
    checkpoints = {(0, 0): store.upsert_checkpoint(base)}
    for run_seed in (1, 2):
        run_id = store.upsert_run(Run(base_model="tiny", dataset="demo", seed=run_seed))
        for epoch in (1, 2):
            checkpoints[(run_seed, epoch)] = store.upsert_checkpoint(
                Checkpoint(base_model="tiny", run_id=run_id, epoch=epoch))
    judges = {"accurate": store.upsert_judge(JudgeSpec(name="accurate")),
              "noisy": store.upsert_judge(JudgeSpec(name="noisy", args={"t": 1}))}
    generations, truth, rows = [], {}, []
    for (run_seed, epoch), ckpt in checkpoints.items():
        for p, prompt in enumerate(prompts):
            for temperature in (0.0, 0.7):
                risk = 0.15 + 0.3 * epoch + 0.1 * temperature + (0.1 if p % 4 == 2 else 0.0)
                complies = int(rng.random() < risk)
                gen = Generation(checkpoint_id=ckpt, prompt_id=prompt.id, temperature=temperature,
                                 text=("Sure: ..." if complies else "I can't help."),
                                 degenerate=bool(epoch == 2 and p % 10 == 3))
                generations.append(gen)
                truth[gen.id] = complies
                accurate = complies if rng.random() > 0.05 else 1 - complies
                noisy = complies if rng.random() > 0.25 else 1 - complies
                noisy = np.nan if rng.random() < 0.05 else noisy
                for name, label in (("accurate", accurate), ("noisy", noisy)):
                    rows.append({"generation_id": gen.id, "judge": name, "label": label,
                                 "checkpoint_id": ckpt, "seed": run_seed, "epoch": epoch,
                                 "temperature": temperature, "prompt_id": prompt.id,
                                 "category_id": prompt.category_id})
    store.upsert_generations(generations)
    verdicts = pd.DataFrame(rows)
    store.upsert_verdicts(Verdict(generation_id=r["generation_id"], judge_id=judges[r["judge"]],
                                  label=None if np.isnan(r["label"]) else int(r["label"]))
                          for r in rows)
    labels = _label(store, generations, verdicts, truth, rng)
    store.upsert_capability(CapabilityScore(checkpoint_id=c, metric="rouge_l", benchmark="held",
                                            value=0.5 - 0.05 * epoch, n=20)
                            for (s, epoch), c in checkpoints.items())
    return Sweep(store, truth, verdicts, labels, judges, checkpoints)


def _label(store, generations, verdicts, truth, rng) -> pd.DataFrame:
    for name in ANNOTATORS:
        store.add_annotator(Annotator(name=name))
    wide = verdicts.pivot(index="generation_id", columns="judge", values="label")
    disagree = [g.id for g in generations if wide.loc[g.id, "accurate"] != wide.loc[g.id, "noisy"]]
    order = rng.permutation(len(generations))
    chosen = [generations[i].id for i in order[:60]]
    picked = [(g, True) for g in chosen] + [(g, False) for g in disagree if g not in chosen][:40]
    degenerate = {g.id for g in generations if g.degenerate}
    rows = []
    for gen_id, at_random in picked:
        for name in ANNOTATORS:
            value = truth[gen_id] if rng.random() > 0.08 else 1 - truth[gen_id]
            word = "complies" if value else "refuses"
            if gen_id in degenerate and rng.random() < 0.7:
                word = "incoherent"
            rows.append({"generation_id": gen_id, "annotator": name, "label": word,
                         "chosen_at_random": at_random})
    store.add_labels(Label(generation_id=r["generation_id"], annotator=r["annotator"],
                           label=HumanLabel(r["label"]), chosen_at_random=r["chosen_at_random"])
                     for r in rows)
    return pd.DataFrame(rows)
