"""Fine-tuning stage: one LoRA (or 4-bit QLoRA) run of a base model on instruction data.

trl's SFTTrainer on a prompt/completion data set with the loss on the answer tokens only, padded
to each batch's real length (or padding-free packing). The run's seed fixes the data order, the
LoRA initialisation and dropout. At the end of every epoch the Trainer saves a checkpoint (adapter,
optimizer and scheduler state) and a callback records it in the store with its training loss and
writes the run's settings beside it, so a killed run resumes from its last saved checkpoint.

With a capability goal (`until:`, pipeline/goal.py) the run also evaluates capability every few
optimizer steps, saves a checkpoint at each evaluation and stops at the first that meets the
target; the goal's outcome is stored with the run.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from annotations.records import CapabilityScore, Checkpoint, GoalStatus, Run, RunGoal
from annotations.store import Store
from pipeline.goal import (LOG_PREFIX, CapabilityGoal, GoalCallback, GoalCheck,
                           checkpoint_position, evaluation_value)
from pipeline.models import cpu_has_bf16

log = logging.getLogger(__name__)

PACKAGES = ("torch", "transformers", "peft", "trl", "accelerate", "bitsandbytes")


@dataclass(frozen=True)
class LoraSettings:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                       "up_proj", "down_proj")


@dataclass(frozen=True)
class TrainSettings:
    """Defaults follow Fraser et al. 2025: batch 64, lr 2e-5, 5 epochs, AdamW-8bit."""

    epochs: int = 5
    batch_size: int = 64  # effective: micro_batch_size x gradient accumulation
    micro_batch_size: int = 8
    learning_rate: float = 2e-5
    lr_scheduler: str = "linear"
    warmup_ratio: float = 0.0
    max_length: int = 512
    quantization: str | None = None  # "4bit" (QLoRA, NF4), "8bit" or None
    optimizer: str = "adamw_8bit"  # falls back to plain AdamW where bitsandbytes cannot run
    packing: bool = False  # padding-free packing instead of padding to the longest in a batch
    gradient_checkpointing: bool = False
    # bf16 autocast; None: on a GPU only; true on a CPU: where it has AVX512-BF16 or AMX
    bf16: bool | None = None
    lora: LoraSettings = field(default_factory=LoraSettings)
    until: CapabilityGoal | None = None  # train to a capability goal (pipeline/goal.py)

    def hyperparameters(self) -> dict[str, Any]:
        """The settings as a run records them (and its id is derived from); `until` only when
        set, so runs without a goal keep the ids they had before goals existed."""
        found = json.loads(json.dumps(asdict(self)))
        if found["until"] is None:
            del found["until"]
        return found


def package_versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def optimizer_name(settings: TrainSettings, device: str) -> str:
    if settings.optimizer in ("adamw_8bit", "adamw_bnb_8bit"):
        if device.startswith("cuda"):
            return "adamw_bnb_8bit"
        log.warning("AdamW-8bit needs a GPU; using plain AdamW on %s.", device)
        return "adamw_torch"
    return settings.optimizer


def autocast_bf16(setting: bool | None, device: str) -> bool:
    """Whether training runs under bf16 autocast: on a GPU unless set false; on a CPU where set
    true and the CPU runs bfloat16 natively. A CPU without AVX512-BF16 or AMX emulates it (the
    demo's LoRA step 400 s against 15 s in float32 on an AVX2 EPYC): float32 there, said once in
    the log (as the engine's `engine_dtype: bfloat16` falls back), so one config serves both."""
    if device.startswith("cuda"):
        return True if setting is None else setting
    if setting and not cpu_has_bf16():
        _warn_once("train: this CPU has neither AVX512-BF16 nor AMX, so bf16 autocast would be "
                   "emulated (far slower): training in float32")
        return False
    return bool(setting)


@functools.cache
def _warn_once(message: str) -> None:
    log.warning(message)


def completion_dataset(pairs: Sequence[Any]):
    """Conversational prompt/completion records: trl computes the loss on the completion only."""
    from datasets import Dataset

    def prompt_text(pair: Any) -> str:
        return f"{pair.instruction}\n\n{pair.context}" if pair.context else pair.instruction

    return Dataset.from_list([
        {"prompt": [{"role": "user", "content": prompt_text(p)}],
         "completion": [{"role": "assistant", "content": p.response}]} for p in pairs])


def run_dir(root: Path, run: Run) -> Path:
    return Path(root) / f"run-{run.id}"


def finished_epochs(store: Store, run: Run) -> set[int]:
    frame = store.checkpoints_frame()
    mine = frame[(frame["run_id"] == run.id) & frame["step"].isna()] if len(frame) else frame
    return {int(e) for e, path in zip(mine.get("epoch", []), mine.get("adapter_path", []))
            if path and Path(path).exists()}


def finetune(store: Store, run: Run, pairs: Sequence[Any], settings: TrainSettings,
             output_root: Path, progress: bool = True, goal: GoalCheck | None = None,
             callbacks: Sequence[Any] = ()) -> list[Checkpoint]:
    """Train `run` to `settings.epochs`, or with `settings.until` to its capability goal
    (measured by `goal`), resuming from its last saved checkpoint; returns its checkpoints as
    stored, in training order (epoch 0, the base model, is the generation stage's).
    `callbacks`: more Trainer callbacks, called before the ones that record checkpoints."""
    if settings.until is not None and goal is None:
        raise ValueError("train.until needs the capability to measure: give the sweep a "
                         "`capability:` hold-out (or the task set the goal names)")
    store.upsert_run(run)
    recover_checkpoints(store, run, run_dir(output_root, run), settings, goal, len(pairs))
    if _finished(store, run, settings):
        return _stored_checkpoints(store, run)
    record = RecordCheckpoints(store, run, settings, goal, len(pairs))
    extra = [GoalCallback(goal)] if settings.until is not None else []
    trainer = build_trainer(run.base_model, run.seed, pairs, settings, run_dir(output_root, run),
                            progress, callbacks=[*callbacks, *extra, record])
    resume = any(run_dir(output_root, run).glob("checkpoint-*"))
    trainer.train(resume_from_checkpoint=True if resume else None)
    if settings.until is not None and store.goal(run.id) is None:
        record.settle(final=True)
    return _stored_checkpoints(store, run)


def _finished(store: Store, run: Run, settings: TrainSettings) -> bool:
    """A run with a goal is done once its goal is settled (met, or the epoch limit reached
    without it); any run once every epoch's checkpoint is saved."""
    if settings.until is not None and store.goal(run.id) is not None:
        return True
    return finished_epochs(store, run) >= set(range(1, settings.epochs + 1))


def recover_checkpoints(store: Store, run: Run, out: Path, settings: TrainSettings | None = None,
                        goal: GoalCheck | None = None, n_examples: int = 0) -> None:
    """Record checkpoints already saved on disk but missing from this store (a new store over
    the same output folder, or a kill between the Trainer's save and our callback), with the
    capability evaluations saved in them; settle the run's goal when they show it."""
    record = RecordCheckpoints(store, run, settings or TrainSettings(), goal, n_examples)
    for path in sorted(Path(out).glob("checkpoint-*"), key=_step_of):
        state_file = path / "trainer_state.json"
        if not (path / "adapter_model.safetensors").exists() or not state_file.exists():
            continue
        record.record(path, json.loads(state_file.read_text()))
    if record.settings.until is not None:
        epochs = set(range(1, record.settings.epochs + 1))
        record.settle(final=finished_epochs(store, run) >= epochs)


def _step_of(path: Path) -> int:
    tail = path.name.rpartition("-")[2]
    return int(tail) if tail.isdigit() else -1


def _stored_checkpoints(store: Store, run: Run) -> list[Checkpoint]:
    frame = store.checkpoints_frame()
    rows = frame[frame["run_id"] == run.id]
    order = rows["examples_seen"].fillna(rows["epoch"] * 1e12)  # older rows: by epoch
    rows = rows.assign(_order=order).sort_values(["_order", "epoch"])
    return [Checkpoint(base_model=r.base_model, run_id=r.run_id, epoch=int(r.epoch),
                       step=None if r.step != r.step or r.step is None else int(r.step),
                       examples_seen=None if r.examples_seen != r.examples_seen
                       or r.examples_seen is None else int(r.examples_seen),
                       adapter_path=r.adapter_path, train_loss=r.train_loss)
            for r in rows.itertuples()]


def build_trainer(base_model: str, seed: int, pairs: Sequence[Any], settings: TrainSettings,
                  out: Path, progress: bool, callbacks: Sequence[Any] = ()):
    """An SFTTrainer for LoRA on `base_model`, saving a checkpoint per epoch under `out` (with a
    capability goal, the goal's callback asks for each save instead)."""
    from peft import LoraConfig
    from trl import SFTConfig

    from pipeline.models import LoadOptions, device_for, load_model

    options = LoadOptions(quantization=settings.quantization)
    device = device_for(options)
    model, tokenizer = load_model(base_model, options)
    tokenizer.padding_side = "right"  # training pads on the right; generation on the left
    accumulation = max(1, math.ceil(settings.batch_size / settings.micro_batch_size))
    config = SFTConfig(
        output_dir=str(out), num_train_epochs=settings.epochs,
        per_device_train_batch_size=settings.micro_batch_size,
        gradient_accumulation_steps=accumulation, learning_rate=settings.learning_rate,
        lr_scheduler_type=settings.lr_scheduler, warmup_steps=settings.warmup_ratio,
        # Packing ("bfd") packs to max_length and is padding-free by itself (position ids restart
        # per example); without it each batch is padded to its own longest example.
        max_length=settings.max_length, packing=settings.packing, completion_only_loss=True,
        optim=optimizer_name(settings, device), seed=seed, data_seed=seed,
        save_strategy="epoch" if settings.until is None else "no", logging_steps=1, report_to="none", disable_tqdm=not progress,
        gradient_checkpointing=settings.gradient_checkpointing, use_cpu=device == "cpu",
        bf16=autocast_bf16(settings.bf16, device),
        dataloader_num_workers=0)
    lora = LoraConfig(r=settings.lora.r, lora_alpha=settings.lora.alpha,
                      lora_dropout=settings.lora.dropout,
                      target_modules=list(settings.lora.target_modules), task_type="CAUSAL_LM")
    return lean_trainer_class()(model=model, args=config,
                                train_dataset=completion_dataset(pairs),
                                processing_class=tokenizer, peft_config=lora,
                                callbacks=list(callbacks))


def lean_trainer_class():
    """trl's SFTTrainer whose loss is the model's own (the same completion-only cross-entropy
    over the same labels). trl 1.16 computes it through a chunked LM head that also yields the
    entropy and top-1 accuracy over the whole vocabulary for its logs: 1.5x slower here (the
    demo's fine-tune epoch 59 s against 39 s on 2 cores; tests/pipeline/test_finetune.py checks
    the two losses agree)."""
    from transformers import Trainer
    from trl import SFTTrainer

    class LeanSFTTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            inputs["use_cache"] = False
            return Trainer.compute_loss(self, model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)

    return LeanSFTTrainer


def _loss_since(log_history: list[dict], start: float, end: float) -> float | None:
    """Mean logged training loss over the steps with start < epoch <= end."""
    losses = [h["loss"] for h in log_history
              if "loss" in h and start + 1e-9 < h.get("epoch", 0) <= end + 1e-6]
    return float(sum(losses) / len(losses)) if losses else None


class RecordCheckpoints(TrainerCallback):
    """Store each checkpoint as soon as the Trainer has written it to disk (its epoch, or its
    step when saved mid-epoch, the examples seen and the training loss since the previous
    one), with the run's settings beside it; with a goal, the capability measured there and,
    once the goal is met, the run's goal."""

    def __init__(self, store: Store, run: Run, settings: TrainSettings, goal: GoalCheck | None,
                 n_examples: int):
        self.store, self.run, self.settings, self.goal = store, run, settings, goal
        self.n_examples = n_examples
        self.micro_batches = math.ceil(n_examples / settings.micro_batch_size) if n_examples else 0

    def on_save(self, args, state, control, **kwargs):
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        self.record(path, {"global_step": state.global_step, "epoch": state.epoch,
                           "log_history": state.log_history})
        if self.settings.until is not None:
            self.settle(final=False)
        return control

    def record(self, path: Path, state: dict) -> Checkpoint:
        step, fraction = int(state.get("global_step") or 0), float(state.get("epoch") or 0)
        history = state.get("log_history", [])
        if self.micro_batches:
            epoch, mid_step, seen = checkpoint_position(step, fraction, self.n_examples,
                                                        self.micro_batches,
                                                        self.settings.micro_batch_size)
        else:  # recovered without the data at hand: an epoch's end, as before goals existed
            epoch, mid_step, seen = int(round(fraction)), None, None
        checkpoint = Checkpoint(base_model=self.run.base_model, run_id=self.run.id, epoch=epoch,
                                step=mid_step, examples_seen=seen, adapter_path=str(path),
                                train_loss=_loss_since(history, self._previous(history, step,
                                                                               fraction),
                                                       fraction))
        value = None
        if self.goal is not None:
            value = evaluation_value(history, self.goal.goal.metric, step)
        (path / "run.json").write_text(json.dumps(
            {"run_id": self.run.id, "epoch": epoch, "step": mid_step, "examples_seen": seen,
             "train_loss": checkpoint.train_loss, "capability": value,
             **self.run.model_dump()}, indent=2, default=str))
        with self.store.batch() as tx:
            tx.upsert_checkpoint(checkpoint)
            if value is not None:
                tx.upsert_capability([CapabilityScore(
                    checkpoint_id=checkpoint.id, metric=self.goal.goal.metric,
                    benchmark=self.goal.benchmark, value=value, n=self.goal.n)])
        return checkpoint

    def _previous(self, history: list[dict], step: int, fraction: float) -> float:
        """Where the previous checkpoint was saved (fractional epoch): the epoch before, or
        with a goal the previous evaluation (each evaluation saves one)."""
        if self.goal is None:
            return fraction - 1
        key = LOG_PREFIX + self.goal.goal.metric
        return max([float(h.get("epoch", 0)) for h in history
                    if key in h and h.get("step", 0) < step] or [0.0])

    def settle(self, final: bool) -> RunGoal | None:
        """Store the run's goal: met at the first evaluation that meets it; with `final` (the
        epoch limit reached), not met, at the last evaluation."""
        if self.goal is None:
            return None
        goal = self.goal.goal
        checkpoints = _stored_checkpoints(self.store, self.run)
        scores = self.store.capability_frame()
        scores = scores[(scores["metric"] == goal.metric)
                        & (scores["benchmark"] == self.goal.benchmark)]
        values = dict(zip(scores["checkpoint_id"], scores["value"]))
        measured = [(c, values[c.id]) for c in checkpoints if c.id in values]
        met = next(((c, v) for c, v in measured if goal.reached(v)), None)
        if met is None and not (final and measured):
            return None
        where, value = met if met is not None else measured[-1]
        found = RunGoal(run_id=self.run.id, metric=goal.metric, benchmark=self.goal.benchmark,
                        target=goal.target,
                        status=GoalStatus.REACHED if met is not None else GoalStatus.NOT_REACHED,
                        checkpoint_id=where.id, step=_optimizer_step(where),
                        examples_seen=where.examples_seen, value=float(value))
        self.store.upsert_goal(found)
        return found


def _optimizer_step(checkpoint: Checkpoint) -> int | None:
    return _step_of(Path(checkpoint.adapter_path)) if checkpoint.adapter_path else None
