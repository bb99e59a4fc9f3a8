"""Benchmark: training tokens per second of the workbench's LoRA / QLoRA path vs plain HF + peft.

Three runs in one process, each a fixed number of optimizer steps on the same synthetic,
Alpaca-like length mix (seeded pairs; chat-templated length lognormal, mean about 260 tokens,
at most 1024):
- baseline: a plain transformers `Trainer` on a peft `get_peft_model(LoraConfig)` model, examples
  tokenized with the chat template (loss on the answer only) and `DataCollatorForSeq2Seq` padding
  to the longest in each micro-batch of `--micro-batch`;
- workbench, padded: `pipeline.finetune.build_trainer` (trl SFTTrainer, completion-only loss,
  padding to the longest in the micro-batch) at the same micro-batch;
- workbench, packed: the same with `packing=True` (padding-free packing), at
  `--packed-micro-batch` packed rows of up to `--max-tokens` tokens, by default as many as hold
  about the same real tokens per step as the padded runs.
All three use the same model loading (`pipeline.models.load_model`: bf16 on a GPU, or 4-bit NF4
with `--quantization 4bit`), LoRA settings, optimizer choice (AdamW-8bit on a GPU), logging every
step and gradient accumulation 1. Timed: steps after `--warmup-steps`, from the start of the first
timed step to the end of the last. Reported: non-pad tokens/s (every real token a step reads,
prompt and answer), answer tokens/s (those with a loss), peak GPU memory, and workbench / baseline.
A run that fails (out of memory, a library error) is reported with its error; the others go on.

GPU (an H100; builds a Llama-3.2-1B-shaped model with random weights in a temporary folder):
    .venv/bin/python benchmarks/bench_train.py --shape llama-1b --micro-batch 8 --steps 30
    .venv/bin/python benchmarks/bench_train.py --shape llama-1b --quantization 4bit
CPU, seconds, a tiny random model, no quantization:
    .venv/bin/python benchmarks/bench_train.py --smoke
build_trainer trains on the GPU whenever one is visible (--smoke too); to train on CPU on a GPU
machine, hide it: `CUDA_VISIBLE_DEVICES= .venv/bin/python benchmarks/bench_train.py --smoke`.
bitsandbytes 4-bit also runs on CPU, slowly (`--smoke --quantization 4bit`).
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout
from benchmarks.common import (  # noqa: E402
    add_common_args, cpu_threads, emit, environment, fill_sizes, gb, mixed_lengths, model_source,
    release_memory, synchronize, words)

FULL = {"shape": "llama-1b", "micro_batch": 8, "steps": 30, "warmup_steps": 3, "pairs": None,
        "mean_tokens": 260, "max_tokens": 1024}
SMOKE = {"shape": "tiny", "micro_batch": 4, "steps": 6, "warmup_steps": 1, "pairs": None,
         "mean_tokens": 64, "max_tokens": 256, "threads": 1}
TEMPLATE_TOKENS = 8  # what the chat template adds around one exchange (ChatML: about 8)


@dataclass(frozen=True)
class Pair:
    """An instruction-data pair, as pipeline.finetune reads it."""

    instruction: str
    context: str
    response: str


@dataclass
class TrainRun:
    path: str
    micro_batch: int
    steps: int = 0
    seconds: float = 0.0
    tokens: int = 0  # non-pad tokens in the timed steps
    answer_tokens: int = 0  # tokens with a loss
    peak_gpu_gb: float | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        rates = {} if self.error else {"tokens_per_s": round(self.tokens / self.seconds, 1),
                                       "answer_tokens_per_s": round(self.answer_tokens
                                                                    / self.seconds, 1)}
        return {**self.__dict__, **rates}


def synthetic_pairs(n: int, mean: int, maximum: int, seed: int) -> list[Pair]:
    """Pairs whose chat-templated length follows a lognormal mix; about a third is prompt."""
    rng = random.Random(seed)
    pairs = []
    for total in mixed_lengths(rng, n, mean=mean, low=24, high=maximum):
        body = total - TEMPLATE_TOKENS
        prompt = max(4, round(body * rng.uniform(0.15, 0.5)))
        pairs.append(Pair(words(rng, prompt), "", words(rng, body - prompt)))
    return pairs


class Meter:
    """Counts the real tokens each training step reads and times the steps after the warm-up:
    a TrainerCallback for the timing, a wrapper of `training_step` for the counting."""

    def __init__(self, warmup: int):
        self.warmup, self.start, self.end, self.steps = warmup, 0.0, 0.0, 0
        self.tokens = self.answer_tokens = 0

    def attach(self, trainer: Any) -> None:
        from transformers import TrainerCallback

        meter, step = self, trainer.training_step

        class Timing(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                if state.global_step == meter.warmup:
                    synchronize()
                    meter.start = time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs):
                synchronize()
                meter.end, meter.steps = time.perf_counter(), state.global_step - meter.warmup

        def counted(model, inputs, *rest, **kwargs):
            if trainer.state.global_step >= meter.warmup:
                meter.count(inputs)
            return step(model, inputs, *rest, **kwargs)

        trainer.add_callback(Timing())
        trainer.training_step = counted

    def count(self, inputs: dict[str, Any]) -> None:
        mask = inputs.get("attention_mask")  # padding-free batches have none: no pads at all
        self.tokens += int(mask.sum()) if mask is not None else inputs["input_ids"].numel()
        self.answer_tokens += int((inputs["labels"] != -100).sum())


def measure(path: str, micro_batch: int, make_trainer: Any, args: argparse.Namespace) -> TrainRun:
    """Build a trainer, run warm-up + timed steps, and read the meter; errors are reported."""
    import torch

    run = TrainRun(path, micro_batch)
    trainer = None
    try:
        trainer = make_trainer()
        trainer.args.max_steps = args.warmup_steps + args.steps
        meter = Meter(args.warmup_steps)
        meter.attach(trainer)
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        trainer.train()
        run.steps, run.seconds = meter.steps, meter.end - meter.start
        run.tokens, run.answer_tokens = meter.tokens, meter.answer_tokens
        if torch.cuda.is_available():
            run.peak_gpu_gb = round(torch.cuda.max_memory_allocated() / 2 ** 30, 2)
    except Exception as err:  # noqa: BLE001 - one failed run (OOM, a library error) is a result
        run.error = f"{type(err).__name__}: {err}"[:500]
    finally:
        del trainer
        release_memory()
    return run


def workbench_trainer(source: str, pairs: Sequence[Pair], args: argparse.Namespace,
                      packing: bool, micro_batch: int, out: Path) -> Any:
    from pipeline.finetune import LoraSettings, TrainSettings, build_trainer

    settings = TrainSettings(epochs=1, batch_size=micro_batch, micro_batch_size=micro_batch,
                             max_length=args.max_tokens, quantization=args.quantization,
                             packing=packing, gradient_checkpointing=args.gradient_checkpointing,
                             lora=LoraSettings(r=args.lora_r, alpha=2 * args.lora_r))
    return build_trainer(source, args.seed, pairs, settings, out, progress=False)


def baseline_features(tokenizer: Any, pairs: Sequence[Pair], max_length: int) -> Any:
    """input_ids / attention_mask / labels (the prompt masked with -100), chat-templated."""
    from datasets import Dataset

    from pipeline.finetune import completion_dataset

    rows = []
    for record in completion_dataset(pairs):
        prompt = tokenizer.apply_chat_template(record["prompt"], tokenize=False,
                                               add_generation_prompt=True)
        full = tokenizer.apply_chat_template(record["prompt"] + record["completion"],
                                             tokenize=False)
        head = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        ids = tokenizer(full, add_special_tokens=False)["input_ids"][:max_length]
        labels = ([-100] * head + ids[head:])[:len(ids)]
        rows.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels})
    return Dataset.from_list(rows)


def baseline_trainer(source: str, pairs: Sequence[Pair], args: argparse.Namespace,
                     out: Path) -> Any:
    """Plain transformers Trainer + peft LoRA, padding to the longest in the micro-batch."""
    from peft import LoraConfig, get_peft_model
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    from pipeline.finetune import LoraSettings, TrainSettings, optimizer_name
    from pipeline.models import LoadOptions, device_for, load_model

    options = LoadOptions(quantization=args.quantization)
    device = device_for(options)
    model, tokenizer = load_model(source, options)
    tokenizer.padding_side = "right"
    lora = LoraSettings(r=args.lora_r, alpha=2 * args.lora_r)
    model = get_peft_model(model, LoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules), task_type="CAUSAL_LM"))
    if args.gradient_checkpointing:  # as trl does for a peft model: frozen inputs need grads
        model.enable_input_require_grads()
    settings = TrainSettings()
    config = TrainingArguments(
        output_dir=str(out), per_device_train_batch_size=args.micro_batch,
        gradient_accumulation_steps=1, learning_rate=settings.learning_rate,
        lr_scheduler_type=settings.lr_scheduler, optim=optimizer_name(settings, device),
        seed=args.seed, data_seed=args.seed, save_strategy="no", logging_steps=1,
        report_to="none", disable_tqdm=True, gradient_checkpointing=args.gradient_checkpointing,
        use_cpu=device == "cpu", bf16=device.startswith("cuda"), dataloader_num_workers=0)
    return Trainer(model=model, args=config,
                   train_dataset=baseline_features(tokenizer, pairs, args.max_tokens),
                   data_collator=DataCollatorForSeq2Seq(tokenizer, padding="longest",
                                                        label_pad_token_id=-100))


def check_device(device: str | None) -> None:
    """build_trainer picks the GPU whenever one is visible: hide it to train on CPU."""
    if device != "cpu":
        return
    if "torch" not in sys.modules:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        return
    import torch

    if torch.cuda.is_available():
        raise SystemExit("--device cpu: build_trainer uses the GPU whenever one is visible; "
                         "run with CUDA_VISIBLE_DEVICES= to train on CPU")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    parser.add_argument("--device", choices=["cuda", "cpu"],
                        help="default: cuda when available (as build_trainer does)")
    parser.add_argument("--quantization", choices=["4bit", "8bit"],
                        help="load the base model quantized (4bit: QLoRA); default: bf16/fp32")
    parser.add_argument("--micro-batch", type=int, help="examples per step, padded runs (8)")
    parser.add_argument("--packed-micro-batch", type=int,
                        help="packed rows per step (default: the same real tokens per step)")
    parser.add_argument("--steps", type=int, help="timed optimizer steps (30)")
    parser.add_argument("--warmup-steps", type=int, help="untimed steps first (3)")
    parser.add_argument("--pairs", type=int, help="synthetic pairs (default: enough for all "
                        "steps of the padded runs without repeating one)")
    parser.add_argument("--mean-tokens", type=int, help="mean templated pair length (260)")
    parser.add_argument("--max-tokens", type=int, help="longest pair and max_length (1024)")
    parser.add_argument("--lora-r", type=int, default=16, help="LoRA rank (alpha = 2 r)")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    args = parser.parse_args(argv)
    fill_sizes(args, FULL, SMOKE)
    if args.pairs is None:
        args.pairs = (args.steps + args.warmup_steps) * args.micro_batch
    if args.packed_micro_batch is None:
        per_step = args.micro_batch * args.mean_tokens
        args.packed_micro_batch = max(1, math.ceil(per_step / args.max_tokens))
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    check_device(args.device)
    with ExitStack() as stack:
        stack.enter_context(cpu_threads(args.threads))
        source = model_source(args, stack)
        out = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-train-")))
        pairs = synthetic_pairs(args.pairs, args.mean_tokens, args.max_tokens, args.seed)
        runs = [
            measure("baseline", args.micro_batch,
                    lambda: baseline_trainer(source, pairs, args, out / "baseline"), args),
            measure("workbench padded", args.micro_batch,
                    lambda: workbench_trainer(source, pairs, args, False, args.micro_batch,
                                              out / "padded"), args),
            measure("workbench packed", args.packed_micro_batch,
                    lambda: workbench_trainer(source, pairs, args, True, args.packed_micro_batch,
                                              out / "packed"), args)]
        return report(args, templated_lengths(source, pairs), runs)


def templated_lengths(source: str, pairs: Sequence[Pair]) -> list[int]:
    from pipeline.finetune import completion_dataset
    from pipeline.models import load_tokenizer

    tokenizer = load_tokenizer(source)
    texts = [tokenizer.apply_chat_template(r["prompt"] + r["completion"], tokenize=False)
             for r in completion_dataset(pairs)]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def report(args: argparse.Namespace, lengths: Sequence[int], runs: Sequence[TrainRun]) -> dict:
    print(f"{len(lengths)} pairs, {sum(lengths) / len(lengths):.0f} tokens mean, "
          f"{max(lengths)} max, chat-templated; {args.warmup_steps} warm-up + {args.steps} "
          f"timed steps; quantization {args.quantization or 'none'}")
    base = runs[0]
    ratios = {}
    for run in runs:
        if run.error:
            print(f"  {run.path:<17} micro-batch {run.micro_batch:>3}: FAILED {run.error}")
            continue
        rate = run.tokens / run.seconds
        if not base.error:
            ratios[run.path] = round(rate / (base.tokens / base.seconds), 2)
        print(f"  {run.path:<17} micro-batch {run.micro_batch:>3}: {run.tokens:>9,} tokens in "
              f"{run.seconds:7.2f} s = {rate:10,.1f} non-pad tokens/s "
              f"({run.answer_tokens / run.seconds:,.1f} answer tokens/s){gb(run.peak_gpu_gb)}")
    print("  workbench / baseline non-pad tokens/s: "
          + ", ".join(f"{path} {r}x" for path, r in ratios.items() if path != "baseline"))
    result = {"benchmark": "train", "model": args.model or f"shape:{args.shape}",
              "smoke": args.smoke, "quantization": args.quantization, "pairs": len(lengths),
              "mean_tokens": round(sum(lengths) / len(lengths), 1), "max_tokens": max(lengths),
              "steps": args.steps, "warmup_steps": args.warmup_steps,
              "environment": environment(), "baseline": base.as_dict(),
              "workbench": [r.as_dict() for r in runs[1:]],
              "ratio": {k: v for k, v in ratios.items() if k != "baseline"}}
    emit(result, args.json)
    return result


if __name__ == "__main__":
    main()
