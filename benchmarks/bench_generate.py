"""Benchmark: the generation stage on both engines, vLLM against transformers (hf), same work.

The work: every checkpoint (the base model and `--adapters` LoRA adapters of it, random ones of
rank `--rank` on every linear layer, or the trained ones in `--adapter-dirs`) answers every
prompt at every temperature (`--temperatures`, 0.7) up to `--max-new-tokens`, into a SQLite store
in a temporary folder, exactly as the sweep's generate stage does:
- hf: `pipeline.generate.generate_checkpoint` per checkpoint (adapters swapped onto one loaded
  model; prompts sorted by length, left-padded batches of `--batch-size`), timed from loading the
  model;
- vllm: `pipeline.generate.generate_all` on one `pipeline.engine.VLLMEngine` (every adapter
  served by it, every request in one stream with its own seed), timed from building the engine
  (its start-up is reported apart too).
Both count new tokens up to the first end-of-sequence token. Reported per engine: new tokens,
wall time all in, new tokens/s, and vllm / hf. With `--plain`, plain `model.generate` on the base
model's share of the work (its prompts in their given order, batches of `--batch-size`) is timed
too, as in earlier versions of this benchmark.

Prompts are synthetic (seeded): `--prompts` (440, SORRY-Bench's size) of mixed lengths, lognormal
with a mean of about 40 words (4 to 400); or `--demo`: the demo sweep's own prompts and settings
(configs/demo.yaml: 56 prompts, T=0 and 0.7, 48 new tokens, batch 56).

The demo's generation stage on 2 CPU cores (its aligned model and the four adapters `run.py demo`
trained; both are in the model cache and out/demo after a demo run):
    .venv/bin/python benchmarks/bench_generate.py --demo --model aligned/smollm2-refuse-89c32d41 \
        --adapter-dirs 'out/demo/run-*/checkpoint-*'
GPU (vLLM's CUDA build installed, see README "Engines"; a Llama-3.2-1B-shaped model with random
weights, 25 adapters in one engine, 440 prompts x 256 new tokens at T=0.7):
    .venv/bin/python benchmarks/bench_generate.py --shape llama-1b --adapters 25 --json r.jsonl
CPU, seconds, a tiny random model:
    .venv/bin/python benchmarks/bench_generate.py --smoke

The helpers it shares with bench_train.py and bench_judge.py are in benchmarks/common.py.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from a checkout

from benchmarks.common import (add_common_args, cpu_threads, emit, environment,  # noqa: E402
                               fill_sizes, gb, mixed_lengths, model_source, release_memory,
                               timed, words)

# ----- this benchmark -------------------------------------------------------------------------

FULL = {"shape": "llama-1b", "prompts": 440, "max_new_tokens": 256, "batch_size": 64,
        "adapters": 25, "temperatures": "0.7"}
SMOKE = {"shape": "tiny", "prompts": 12, "max_new_tokens": 8, "batch_size": 8, "adapters": 2,
         "temperatures": "0,0.7", "device": "cpu", "threads": 1}
DEMO = {"max_new_tokens": 48, "batch_size": 56, "adapters": 0, "temperatures": "0,0.7"}


@dataclass
class GenRun:
    engine: str  # "hf", "vllm" or "plain"
    new_tokens: int
    answers: int
    seconds: float  # all in: loading the model or building the engine included
    start_seconds: float  # of which loading or building
    peak_gpu_gb: float | None

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.seconds

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"tokens_per_s": round(self.tokens_per_s, 1)}


def synthetic_prompts(n: int, seed: int) -> list[Any]:
    from annotations.records import Prompt

    rng = random.Random(seed)
    return [Prompt(benchmark="bench", source_id=str(i), text=f"request {i} : {words(rng, k)}")
            for i, k in enumerate(mixed_lengths(rng, n, mean=40, low=4, high=400))]


def demo_prompts() -> list[Any]:
    from pipeline.config import load_config
    from pipeline.sweep import benchmark_prompts

    return benchmark_prompts(load_config(ROOT / "configs/demo.yaml").benchmarks)


def kept_tokens(rows: Sequence[Sequence[int]], eos_ids: set[int]) -> int:
    """New tokens up to (not counting) each row's first end-of-sequence token."""
    return sum(next((i for i, t in enumerate(row) if t in eos_ids), len(row)) for row in rows)


def eos_set(tokenizer: Any) -> set[int]:
    eos = tokenizer.eos_token_id
    return set(eos) if isinstance(eos, list) else {eos}


def random_adapters(source: str, count: int, rank: int, folder: Path, seed: int) -> list[str]:
    """`count` LoRA adapters with small random weights on every linear layer of the model."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from pipeline.models import resolve

    model = AutoModelForCausalLM.from_pretrained(resolve(source))
    config = LoraConfig(r=rank, lora_alpha=2 * rank, init_lora_weights="gaussian",
                        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                        "up_proj", "down_proj"])
    paths = []
    for k in range(count):
        torch.manual_seed(seed + k)
        peft = get_peft_model(model, config)
        for name, weight in peft.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(weight, std=0.02)
        peft.save_pretrained(folder / f"adapter-{k}")
        paths.append(str(folder / f"adapter-{k}"))
        model = peft.unload()
    del model
    release_memory()
    return paths


def checkpoints_for(name: str, adapters: Sequence[str]) -> tuple[list[Any], Any]:
    """The base and one checkpoint per adapter (epochs of one run), and that run."""
    from annotations.records import Checkpoint, Run

    run = Run(base_model=name, dataset="bench", seed=0)
    return [Checkpoint(base_model=name)] + [
        Checkpoint(base_model=name, run_id=run.id, epoch=k + 1, adapter_path=a)
        for k, a in enumerate(adapters)], run


@contextmanager
def fresh_store(name: str, adapters: Sequence[str], prompts: Sequence[Any]):
    from annotations.store import Store

    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        store = Store.open(Path(tmp) / "bench.db")
        checkpoints, run = checkpoints_for(name, adapters)
        store.upsert_prompts(prompts)
        store.upsert_run(run)
        for checkpoint in checkpoints:
            store.upsert_checkpoint(checkpoint)
        yield store, checkpoints
        store.close()


def counted(store: Any) -> tuple[int, int]:
    frame = store.generations_frame(with_text=False)
    return int(frame["token_count"].sum()), len(frame)


def hf_run(source: str, adapters: Sequence[str], prompts: Sequence[Any], settings: Any,
           args: argparse.Namespace) -> GenRun:
    """The sweep's hf path: one loaded model, each checkpoint's adapter swapped in."""
    from pipeline.generate import AdapterSwitcher, generate_checkpoint
    from pipeline.models import LoadOptions, load_model

    with fresh_store(source, adapters, prompts) as (store, checkpoints):
        with timed() as timing:
            with timed() as start:
                model, tokenizer = load_model(source, LoadOptions(dtype=args.dtype,
                                                                  device=args.device))
            switcher = AdapterSwitcher(model, tokenizer)
            for checkpoint in checkpoints:
                generate_checkpoint(store, switcher, checkpoint, prompts, settings,
                                    progress=False)
        tokens, answers = counted(store)
    del model, switcher
    release_memory()
    return GenRun("hf", tokens, answers, timing.seconds, start.seconds, timing.peak_gpu_gb)


def vllm_run(source: str, adapters: Sequence[str], prompts: Sequence[Any], settings: Any,
             args: argparse.Namespace) -> GenRun:
    """The sweep's vllm path: one engine, every checkpoint's requests in one stream."""
    from pipeline.engine import VLLMEngine
    from pipeline.servable import engine_rank
    from pipeline.generate import generate_all

    with fresh_store(source, adapters, prompts) as (store, checkpoints):
        with timed() as timing:
            with timed() as start:
                engine = VLLMEngine(source, max_lora_rank=engine_rank(adapters),
                                    dtype=args.engine_dtype or args.dtype)
            generate_all(store, engine, checkpoints, prompts, settings, progress=False)
        tokens, answers = counted(store)
    engine.close()
    release_memory()
    return GenRun("vllm", tokens, answers, timing.seconds, start.seconds, None)


def plain_run(source: str, prompts: Sequence[Any], settings: Any,
              args: argparse.Namespace) -> GenRun:
    """Plain `model.generate` on the base model's share: prompts in their given order."""
    import torch

    from pipeline.generate import sampling_kwargs
    from pipeline.models import LoadOptions, chat_prompt, load_model

    tokens = answers = 0
    with timed() as timing:
        with timed() as start:
            model, tokenizer = load_model(source, LoadOptions(dtype=args.dtype,
                                                              device=args.device))
        texts = [chat_prompt(tokenizer, p.text) for p in prompts]
        for temperature in settings.temperatures:
            torch.manual_seed(args.seed)
            for first in range(0, len(texts), settings.batch_size):
                enc = tokenizer(texts[first:first + settings.batch_size], return_tensors="pt",
                                padding=True, add_special_tokens=False).to(model.device)
                out = model.generate(**enc, max_new_tokens=settings.max_new_tokens,
                                     pad_token_id=tokenizer.pad_token_id,
                                     **sampling_kwargs(temperature))
                new = out[:, enc["input_ids"].shape[1]:].tolist()
                tokens += kept_tokens(new, eos_set(tokenizer))
                answers += len(new)
                tokenizer.batch_decode(new, skip_special_tokens=True)
    del model
    release_memory()
    return GenRun("plain", tokens, answers, timing.seconds, start.seconds, timing.peak_gpu_gb)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    parser.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--dtype", help="bfloat16, float16 or float32 (default: bf16 on GPU, "
                        "float32 on CPU)")
    parser.add_argument("--engine-dtype", help="the vLLM engine's dtype, when not --dtype "
                        "(bfloat16 on a CPU with AMX: faster, answers not identical to hf's)")
    parser.add_argument("--demo", action="store_true",
                        help="the demo sweep's prompts and generation settings")
    parser.add_argument("--prompts", type=int, help="synthetic prompts (440)")
    parser.add_argument("--max-new-tokens", type=int, help="new tokens per answer (256)")
    parser.add_argument("--temperatures", help="comma-separated (0.7)")
    parser.add_argument("--batch-size", type=int, help="the hf path's batch size (64)")
    parser.add_argument("--adapters", type=int, help="random LoRA adapters (25)")
    parser.add_argument("--rank", type=int, default=8, help="their rank (8)")
    parser.add_argument("--adapter-dirs", help="trained adapters instead: a glob or a "
                        "comma-separated list of folders")
    parser.add_argument("--engines", default="hf,vllm", help="comma-separated: hf, vllm")
    parser.add_argument("--plain", action="store_true",
                        help="also plain model.generate on the base model's share")
    args = parser.parse_args(argv)
    if args.demo:
        fill_sizes(args, DEMO, DEMO)
    fill_sizes(args, FULL, SMOKE)
    return args


def adapter_dirs(spec: str) -> list[str]:
    import glob

    found = [p for part in spec.split(",") for p in sorted(glob.glob(part))]
    if not found:
        raise SystemExit(f"--adapter-dirs {spec!r}: no such folders")
    return found


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    from pipeline.generate import GenerationSettings

    args = parse_args(argv)
    engines = [e for e in args.engines.split(",") if e]
    with ExitStack() as stack:
        stack.enter_context(cpu_threads(args.threads))
        source = model_source(args, stack)
        prompts = demo_prompts() if args.demo else synthetic_prompts(args.prompts, args.seed)
        if args.adapter_dirs:
            adapters = adapter_dirs(args.adapter_dirs)
        else:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-lora-")))
            adapters = random_adapters(source, args.adapters, args.rank, folder, args.seed)
        settings = GenerationSettings(
            temperatures=tuple(float(t) for t in args.temperatures.split(",")), samples=1,
            max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, seed=args.seed)
        runs = [plain_run(source, prompts, settings, args)] if args.plain else []
        for engine in engines:
            run = {"hf": hf_run, "vllm": vllm_run}[engine]
            runs.append(run(source, adapters, prompts, settings, args))
        return report(args, prompts, adapters, settings, runs)


def report(args: argparse.Namespace, prompts: Sequence[Any], adapters: Sequence[str],
           settings: Any, runs: Sequence[GenRun]) -> dict[str, Any]:
    print(f"{1 + len(adapters)} checkpoints (the base and {len(adapters)} adapters) x "
          f"{len(prompts)} prompts x T={settings.temperatures} x {settings.max_new_tokens} new "
          "tokens at most")
    for run in runs:
        print(f"  {run.engine:<5}: {run.answers:>6,} answers, {run.new_tokens:>9,} new tokens in "
              f"{run.seconds:8.1f} s all in ({run.start_seconds:5.1f} s start) = "
              f"{run.tokens_per_s:9,.1f} tokens/s{gb(run.peak_gpu_gb)}")
    by = {run.engine: run for run in runs}
    ratio = None
    if "hf" in by and "vllm" in by:
        ratio = round(by["hf"].seconds / by["vllm"].seconds, 2)
        print(f"  vllm / hf: {ratio}x faster all in, "
              f"{by['vllm'].tokens_per_s / by['hf'].tokens_per_s:.2f}x the tokens/s")
    result = {"benchmark": "generate", "model": args.model or f"shape:{args.shape}",
              "smoke": args.smoke, "demo": args.demo, "engine_dtype": args.engine_dtype,
              "prompts": len(prompts),
              "adapters": len(adapters), "temperatures": list(settings.temperatures),
              "max_new_tokens": settings.max_new_tokens, "environment": environment(),
              "runs": [r.as_dict() for r in runs], "ratio": ratio}
    emit(result, args.json)
    return result


if __name__ == "__main__":
    main()
