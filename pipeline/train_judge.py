"""Train a judge from your own labels, as SORRY-Bench did for its evaluator: a LoRA adapter on a
base model, trained with the pipeline's own fine-tuning on a training split of the store's human
labels (the filled judge template as the request, the template's answer word as the target),
then run as an `llm` judge (`adapter=` the folder) and scored against people on the held-out
split ONLY.

- The split is by prompt (every answer to a held-out prompt is held out), seeded, so no
  held-out request was seen in training; the labels are the people's majority (complies /
  refuses; ties and incoherent majorities are not trained on).
- The adapter folder keeps `judge_training.json`: a key (the hash of every setting and of the
  training answers with their labels), the base, the template and its hash, the settings, the
  training loss, the packages' versions, and the keys of the (request, answer) pairs trained
  on. The judge stage never stores this judge's verdict on a pair it was trained on
  (`pipeline.judges.held_back`): such a verdict is not a measurement, and every statistic
  (agreement, the leaderboard, the error correction) then sees held-out answers only.
- The demo's judge ships in `demo_data/judges/` (made by this stage; about 4.5 minutes on 2 CPU
  cores): a training whose key matches uses it, `WORKBENCH_JUDGE_TRAIN=1` trains anyway, and
  `pytest -m rederive tests/pipeline/test_train_judge.py` re-derives it and compares.
- `train_judge` then judges the held-out answers (and, for comparison, runs the judges named in
  `compare` on them) and returns the leaderboard over exactly those answers.

    python run.py train-judge --base smollm2 --template compact --out out/judge
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from annotations.agreement_tables import human_majority
from annotations.frames import Frames
from annotations.leaderboard import Leaderboard, judge_leaderboard
from annotations.records import stable_id
from annotations.store import Store
from pipeline.finetune import LoraSettings, TrainSettings, build_trainer, package_versions
from pipeline.instructions import InstructionPair
from pipeline.judges import TRAINING_FILE, InputForm, item_key, load_template

log = logging.getLogger(__name__)
# What taught SmolLM2-135M to beat the refusal-phrase judge on the demo's held-out answers (kappa
# 0.67 against 0.56; 3 epochs at 2e-4 left it calling everything "complies"): see README.
JUDGE_SETTINGS = TrainSettings(epochs=12, batch_size=16, micro_batch_size=8, learning_rate=2e-3,
                               optimizer="adamw_torch", max_length=512, bf16=True,
                               lora=LoraSettings(r=8, alpha=16, dropout=0.05))
SHIPPED = Path(__file__).resolve().parents[1] / "demo_data" / "judges"
TRAIN_ENV = "WORKBENCH_JUDGE_TRAIN"  # =1: train even where a shipped adapter matches


@dataclass(frozen=True)
class JudgeTraining:
    base: str = "smollm2"
    template: str = "compact"
    benchmarks: tuple[str, ...] = ()  # the labelled sets to train and test on; () = all
    holdout: float = 0.5  # share of prompts held out
    seed: int = 0
    train: TrainSettings = field(default_factory=lambda: JUDGE_SETTINGS)


def labelled_pairs(store: Store, benchmarks: Sequence[str]) -> pd.DataFrame:
    """generation_id, prompt_id, prompt, response, human (0/1) for every answer of the chosen
    sets with a people's 0/1 majority."""
    majority = human_majority(Frames(labels=store.labels_frame()).labels)
    majority = majority[majority["human"].notna()][["generation_id", "human"]]
    gens = store.generations_frame(with_text=True).rename(columns={"id": "generation_id"})
    if benchmarks:
        gens = gens[gens["benchmark"].isin(list(benchmarks))]
    prompts = store.prompts_frame()[["id", "text"]].rename(columns={"id": "prompt_id",
                                                                    "text": "prompt"})
    frame = gens.merge(majority, on="generation_id").merge(prompts, on="prompt_id")
    return frame.rename(columns={"text": "response"})[
        ["generation_id", "prompt_id", "prompt", "response", "human"]].reset_index(drop=True)


def split_by_prompt(frame: pd.DataFrame, holdout: float, seed: int) -> pd.Series:
    """True for the held-out rows: a seeded share `holdout` of the prompts, all their answers."""
    if not 0 < holdout < 1:
        raise ValueError(f"holdout must be between 0 and 1, got {holdout}")
    prompts = sorted(frame["prompt_id"].unique(), key=lambda p: stable_id("split", seed, p))
    held = set(prompts[:max(1, round(holdout * len(prompts)))])
    return frame["prompt_id"].isin(held)


def training_examples(train: pd.DataFrame, template_name: str) -> list[InstructionPair]:
    template = load_template(template_name)
    if template.form != InputForm.CHAT or not template.answers:
        raise ValueError("train-judge needs a chat template with two answer words (the "
                         f"targets); {template_name!r} is not one")
    words = {1: template.complies, 0: template.refuses}
    return [InstructionPair(id=row.generation_id, instruction=template.fill(row.prompt,
                                                                            row.response),
                            context="", response=words[int(row.human)])
            for row in train.itertuples()]


def spec_settings(spec: JudgeTraining) -> dict[str, Any]:
    """The spec as its key and made_by.json record it (training settings as a run records
    them: a setting added later with its default changes no key)."""
    return {**asdict(spec), "train": spec.train.hyperparameters()}


def training_key(spec: JudgeTraining, train: pd.DataFrame) -> str:
    """What makes two trainings the same: every setting, and the training answers with their
    labels (a changed label or split is a new judge)."""
    data = sorted((r.generation_id, int(r.human)) for r in train.itertuples())
    return stable_id("judge-training", spec_settings(spec), data)


def train_adapter(spec: JudgeTraining, train: pd.DataFrame, out: Path,
                  progress: bool = True) -> Path:
    """The LoRA adapter in `out/adapter`, with its judge_training.json."""
    pairs = training_examples(train, spec.template)
    if not pairs:
        raise ValueError("no labelled answers to train on (label some, or import a set)")
    trainer = build_trainer(spec.base, spec.seed, pairs, spec.train, out / "train", progress)
    result = trainer.train()
    adapter = out / "adapter"
    trainer.model.save_pretrained(adapter)
    made_by = {"key": training_key(spec, train), "base": spec.base, "template": spec.template,
               "template_sha256": load_template(spec.template).sha256,
               "spec": json.loads(json.dumps(spec_settings(spec), default=str)),
               "train_loss": result.training_loss,
               "versions": package_versions(),
               "train_items": sorted(item_key(r.prompt, r.response) for r in train.itertuples()),
               "train_generation_ids": sorted(train["generation_id"])}
    (adapter / TRAINING_FILE).write_text(json.dumps(made_by, indent=2, default=str))
    return adapter


def judge_args(spec: JudgeTraining, adapter: Path) -> dict[str, Any]:
    return {"model": spec.base, "template": spec.template, "adapter": str(adapter)}


@dataclass
class TrainedJudge:
    adapter: Path
    judge: dict[str, Any]  # the llm judge's arguments: `run.py judge --judge llm --arg ...`
    train_answers: int
    heldout_answers: int
    leaderboard: Leaderboard  # on the held-out answers only

    def to_dict(self) -> dict[str, Any]:
        return {"adapter": str(self.adapter), "judge": self.judge,
                "train_answers": self.train_answers, "heldout_answers": self.heldout_answers,
                "leaderboard": self.leaderboard.to_dict()}


def made_with(folder: Path) -> str | None:
    """The training key a trained judge's folder records, if any."""
    made_by = Path(folder) / TRAINING_FILE
    return json.loads(made_by.read_text()).get("key") if made_by.is_file() else None


def shipped_adapter(key: str) -> Path | None:
    """The adapter the project shipped for exactly this training (settings and data), if any."""
    return next((folder for folder in sorted(SHIPPED.glob("*")) if made_with(folder) == key),
                None)


def trained_adapter(store: Store, spec: JudgeTraining, out: Path, progress: bool = True) -> Path:
    """The adapter in `out/adapter` for this training: the one already there, else the one the
    project shipped for exactly these settings and labels (copied; `WORKBENCH_JUDGE_TRAIN=1`
    trains instead), else trained on the training split now."""
    frame = labelled_pairs(store, spec.benchmarks)
    train = frame[~split_by_prompt(frame, spec.holdout, spec.seed)]
    key, adapter = training_key(spec, train), Path(out) / "adapter"
    if made_with(adapter) == key:
        return adapter
    shipped = None if os.environ.get(TRAIN_ENV) == "1" else shipped_adapter(key)
    if shipped is not None:
        log.info("train-judge: using the shipped adapter %s (made by this stage with the same "
                 "settings and labels; %s=1 trains it here)", shipped, TRAIN_ENV)
        shutil.rmtree(adapter, ignore_errors=True)
        shutil.copytree(shipped, adapter)
        return adapter
    return train_adapter(spec, train, Path(out), progress)


def train_judge(store: Store, spec: JudgeTraining, out: Path,
                compare: Sequence[tuple[str, dict[str, Any]]] = (("refusal", {}),),
                progress: bool = True, n_boot: int = 1000) -> TrainedJudge:
    """Train (or reuse the adapter already in `out`), judge the held-out answers with it and
    with the `compare` judges, and score them all against people there."""
    from pipeline.judge import judge_store

    frame = labelled_pairs(store, spec.benchmarks)
    heldout = split_by_prompt(frame, spec.holdout, spec.seed)
    adapter = trained_adapter(store, spec, out, progress)
    args = judge_args(spec, adapter)
    for name, extra in [("llm", args), *compare]:
        judge_store(store, name, extra, progress=progress)
    benchmarks = spec.benchmarks or tuple(sorted(
        store.generations_frame(with_text=False).set_index("id").loc[
            frame["generation_id"], "benchmark"].unique()))
    board = judge_leaderboard(store, list(benchmarks), n_boot=n_boot)
    return TrainedJudge(adapter, args, int((~heldout).sum()), int(heldout.sum()), board)
