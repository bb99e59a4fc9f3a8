"""Fine-tuning stage: one LoRA (or 4-bit QLoRA) run of a base model on instruction data.

trl's SFTTrainer on a prompt/completion data set with the loss on the answer tokens only, padded
to each batch's real length (or padding-free packing). The run's seed fixes the data order, the
LoRA initialisation and dropout. At the end of every epoch the Trainer saves a checkpoint (adapter,
optimizer and scheduler state) and a callback records it in the store with its training loss and
writes the run's settings beside it, so a killed run resumes from its last finished epoch.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from annotations.records import Checkpoint, Run
from annotations.store import Store

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
    bf16: bool | None = None  # bf16 autocast; None: on a GPU only (CPUs with avx512_bf16 gain too)
    lora: LoraSettings = field(default_factory=LoraSettings)

    def hyperparameters(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))


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
    mine = frame[frame["run_id"] == run.id] if len(frame) else frame
    return {int(e) for e, path in zip(mine.get("epoch", []), mine.get("adapter_path", []))
            if path and Path(path).exists()}


def finetune(store: Store, run: Run, pairs: Sequence[Any], settings: TrainSettings,
             output_root: Path, progress: bool = True) -> list[Checkpoint]:
    """Train `run` to `settings.epochs`, resuming from its last saved epoch; returns the
    checkpoints of epochs 1..N as stored (epoch 0, the base model, is the generation stage's)."""
    store.upsert_run(run)
    recover_checkpoints(store, run, run_dir(output_root, run))
    if finished_epochs(store, run) >= set(range(1, settings.epochs + 1)):
        return _stored_checkpoints(store, run)
    trainer = build_trainer(run.base_model, run.seed, pairs, settings, run_dir(output_root, run),
                            progress, callbacks=[RecordEpochs(store, run)])
    resume = any(run_dir(output_root, run).glob("checkpoint-*"))
    trainer.train(resume_from_checkpoint=True if resume else None)
    return _stored_checkpoints(store, run)


def recover_checkpoints(store: Store, run: Run, out: Path) -> None:
    """Record epochs already saved on disk but missing from this store (a new store over the
    same output folder, or a kill between the Trainer's save and our callback)."""
    for path in sorted(Path(out).glob("checkpoint-*")):
        state_file = path / "trainer_state.json"
        if not (path / "adapter_model.safetensors").exists() or not state_file.exists():
            continue
        state = json.loads(state_file.read_text())
        epoch = int(round(state.get("epoch") or 0))
        _record_epoch(store, run, path, epoch, _epoch_loss(state.get("log_history", []), epoch))


def _stored_checkpoints(store: Store, run: Run) -> list[Checkpoint]:
    frame = store.checkpoints_frame()
    rows = frame[frame["run_id"] == run.id].sort_values("epoch")
    return [Checkpoint(base_model=r.base_model, run_id=r.run_id, epoch=int(r.epoch),
                       adapter_path=r.adapter_path, train_loss=r.train_loss)
            for r in rows.itertuples()]


def build_trainer(base_model: str, seed: int, pairs: Sequence[Any], settings: TrainSettings,
                  out: Path, progress: bool, callbacks: Sequence[Any] = ()):
    """An SFTTrainer for LoRA on `base_model`, saving a checkpoint per epoch under `out`."""
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
        save_strategy="epoch", logging_steps=1, report_to="none", disable_tqdm=not progress,
        gradient_checkpointing=settings.gradient_checkpointing, use_cpu=device == "cpu",
        bf16=device.startswith("cuda") if settings.bf16 is None else settings.bf16,
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


def _record_epoch(store: Store, run: Run, path: Path, epoch: int, loss: float | None) -> None:
    (path / "run.json").write_text(json.dumps(
        {"run_id": run.id, "epoch": epoch, "train_loss": loss, **run.model_dump()},
        indent=2, default=str))
    store.upsert_checkpoint(Checkpoint(base_model=run.base_model, run_id=run.id, epoch=epoch,
                                       adapter_path=str(path), train_loss=loss))


def _epoch_loss(log_history: list[dict], epoch: int) -> float | None:
    losses = [h["loss"] for h in log_history
              if "loss" in h and epoch - 1 < h.get("epoch", 0) <= epoch + 1e-6]
    return float(sum(losses) / len(losses)) if losses else None


class RecordEpochs(TrainerCallback):
    """Store each epoch's checkpoint as soon as the Trainer has written it to disk."""

    def __init__(self, store: Store, run: Run):
        self.store, self.run = store, run

    def on_save(self, args, state, control, **kwargs):
        epoch = int(round(state.epoch or 0))
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        _record_epoch(self.store, self.run, path, epoch,
                      _epoch_loss(state.log_history, epoch))
        return control
