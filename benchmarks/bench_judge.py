"""Benchmark: verdicts per second of the LLM judge on both engines, and against generate + parse.

Workbench, on each engine in `--engines` (hf,vllm): the `llm` judge from
`pipeline.judges.create_judge` (template `sorry_bench`, answers "1"/"0"), the verdict and its
probability read from the next-token distribution: with hf, inputs sorted by length in
left-padded batches of `--batch-size` through ONE forward pass; with vllm, one engine call
whose next token is restricted to the answers' tokens (their logprobs). Baseline, in the same
process: the same judge inputs (the same filled-in template in the same chat template) in their
given order, left-padded batches of `--baseline-batch` through `model.generate(max_new_tokens=8)`,
greedy, decoded, and the first answer word parsed. Reported: verdicts/s of each, peak GPU memory
(CUDA only), how many verdicts were unparseable, workbench / baseline and vllm / hf. The judging
call is timed after a few other pairs are judged untimed (warm-up); building the vLLM engine is
reported apart, and in the all-in ratio.

Pairs are synthetic (seeded): `--pairs` (440) requests of about 40 words and answers of about
150 words (at most `--max-response-tokens`, 256), as a generation stage at 256 new tokens leaves.

GPU (an H100; a Llama-3.2-1B-shaped judge with random weights built in a temporary folder, or
`--shape llama-8b` for a judge of about the size the design's figures used):
    .venv/bin/python benchmarks/bench_judge.py --shape llama-1b --batch-size 32
    .venv/bin/python benchmarks/bench_judge.py --model /path/to/judge --batch-size 32
CPU, seconds, a tiny random model:
    .venv/bin/python benchmarks/bench_judge.py --smoke
The demo's judge (the embedded SmolLM2) on 2 CPU cores:
    .venv/bin/python benchmarks/bench_judge.py --model smollm2 --pairs 680 --batch-size 32
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout
from benchmarks.common import (Timing, add_common_args, cpu_threads, emit,  # noqa: E402
                                       environment, fill_sizes, gb, mixed_lengths, model_source,
                                       release_memory, timed, words)

FULL = {"shape": "llama-1b", "pairs": 440, "batch_size": 32, "baseline_batch": None,
        "max_response_tokens": 256}
SMOKE = {"shape": "tiny", "pairs": 24, "batch_size": 8, "baseline_batch": None,
         "max_response_tokens": 64, "threads": 1, "device": "cpu"}
WARMUP_PAIRS = 4


@dataclass
class JudgeRun:
    path: str
    batch_size: int
    verdicts: int
    unparseable: int
    seconds: float
    peak_gpu_gb: float | None
    start_seconds: float = 0.0  # loading the judge (building the engine), untimed above

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"verdicts_per_s": round(self.verdicts / self.seconds, 2)}


def synthetic_items(n: int, max_response: int, seed: int) -> list[Any]:
    from pipeline.judges import JudgeItem

    rng = random.Random(seed)
    prompts = mixed_lengths(rng, n, mean=40, low=4, high=400)
    answers = mixed_lengths(rng, n, mean=150, low=1, high=max_response)
    return [JudgeItem(prompt=f"request {i} : {words(rng, p)}", response=words(rng, a))
            for i, (p, a) in enumerate(zip(prompts, answers))]


def judge_texts(tokenizer: Any, template: Any, items: Sequence[Any]) -> list[str]:
    from pipeline.judges.llm import judge_input

    return [judge_input(tokenizer, template, item, max_text_tokens=2000)[0] for item in items]


def baseline_once(model: Any, tokenizer: Any, template: Any, items: Sequence[Any],
                  batch: int) -> tuple[list[int | None], Timing]:
    """generate(8 tokens) + parse on the judge's own inputs, in the given order."""
    from pipeline.judges import parse_answer

    labels: list[int | None] = []
    with timed() as timing:
        texts = judge_texts(tokenizer, template, items)
        for start in range(0, len(texts), batch):
            enc = tokenizer(texts[start:start + batch], return_tensors="pt", padding=True,
                            add_special_tokens=False).to(model.device)
            out = model.generate(**enc, max_new_tokens=8, do_sample=False, temperature=None,
                                 top_p=None, top_k=None, pad_token_id=tokenizer.pad_token_id)
            answers = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:],
                                             skip_special_tokens=True)
            labels += [parse_answer(text, template.answers) for text in answers]
    return labels, timing


def run_baseline(source: str, items: Sequence[Any], warmup: Sequence[Any],
                 args: argparse.Namespace) -> JudgeRun:
    from pipeline.judges import load_template
    from pipeline.models import LoadOptions, load_model

    model, tokenizer = load_model(source, LoadOptions(device=args.device))
    template = load_template(args.template)
    baseline_once(model, tokenizer, template, warmup, args.baseline_batch)
    labels, timing = baseline_once(model, tokenizer, template, items, args.baseline_batch)
    del model
    release_memory()
    return JudgeRun("baseline", args.baseline_batch, len(labels),
                    sum(label is None for label in labels), timing.seconds, timing.peak_gpu_gb)


def run_workbench(source: str, items: Sequence[Any], warmup: Sequence[Any],
                  args: argparse.Namespace, engine: str = "hf") -> tuple[JudgeRun, bool]:
    """The llm judge as the judge stage builds it on `engine`; also whether it read the verdict
    from the next token (not a short generation)."""
    from pipeline.engine import close_shared
    from pipeline.judges import create_judge, load_template
    from pipeline.judges.llm import single_token_answers
    from pipeline.models import load_tokenizer

    with timed() as start:
        _, judge = create_judge("llm", model=source, template=args.template,
                                batch_size=args.batch_size, device=args.device, engine=engine,
                                engine_fallback=False, engine_dtype=args.engine_dtype)
        judge(warmup)  # hf loads its model on the first call
    one_pass = single_token_answers(load_tokenizer(source), load_template(args.template))
    with timed() as timing:
        outcomes = judge(items)
    del judge
    close_shared()
    release_memory()
    run = JudgeRun(engine, args.batch_size, len(outcomes),
                   sum(o.label is None for o in outcomes), timing.seconds, timing.peak_gpu_gb,
                   start.seconds)
    return run, one_pass is not None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    parser.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--template", default="sorry_bench", help="judge template (sorry_bench)")
    parser.add_argument("--pairs", type=int, help="synthetic (prompt, response) pairs (440)")
    parser.add_argument("--batch-size", type=int, help="workbench judge batch size (32)")
    parser.add_argument("--baseline-batch", type=int, help="baseline batch (default: the same)")
    parser.add_argument("--max-response-tokens", type=int, help="longest response (256)")
    parser.add_argument("--engines", default="hf,vllm", help="workbench engines: hf, vllm")
    parser.add_argument("--engine-dtype", help="the vLLM engine's dtype (default: float32 on "
                        "CPU, the model's on a GPU)")
    args = parser.parse_args(argv)
    fill_sizes(args, FULL, SMOKE)
    args.baseline_batch = args.baseline_batch or args.batch_size
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    with ExitStack() as stack:
        stack.enter_context(cpu_threads(args.threads))
        source = model_source(args, stack)
        items = synthetic_items(args.pairs, args.max_response_tokens, args.seed)
        warmup = synthetic_items(WARMUP_PAIRS, args.max_response_tokens, args.seed + 1)
        base = run_baseline(source, items, warmup, args)
        ours = [run_workbench(source, items, warmup, args, engine)
                for engine in args.engines.split(",") if engine]
        return report(args, base, [run for run, _ in ours], all(one for _, one in ours))


def report(args: argparse.Namespace, base: JudgeRun, ours: Sequence[JudgeRun],
           one_pass: bool) -> dict:
    reading = "the next token" if one_pass else "short generation (answers not single tokens)"
    print(f"{base.verdicts} (prompt, response) pairs, template {args.template}; "
          f"workbench reads the verdict from {reading}")
    for run in (base, *ours):
        print(f"  {run.path:<9} batch {run.batch_size:>3}: {run.verdicts} verdicts in "
              f"{run.seconds:7.2f} s = {run.verdicts / run.seconds:9,.1f} verdicts/s, "
              f"{run.unparseable} unparseable{gb(run.peak_gpu_gb)}"
              + (f" (+{run.start_seconds:.1f} s to start)" if run.path != "baseline" else ""))
    rate = {run.path: run.verdicts / run.seconds for run in ours}
    ratio = {path: round(r / (base.verdicts / base.seconds), 2) for path, r in rate.items()}
    print("  workbench / baseline verdicts/s: "
          + ", ".join(f"{r}x ({path})" for path, r in ratio.items()))
    engines = {}
    by = {run.path: run for run in ours}
    if "hf" in by and "vllm" in by:
        engines = {"verdicts_per_s": round(rate["vllm"] / rate["hf"], 2),
                   "all_in": round((by["hf"].seconds + by["hf"].start_seconds)
                                   / (by["vllm"].seconds + by["vllm"].start_seconds), 2)}
        print(f"  vllm / hf: {engines['verdicts_per_s']}x the verdicts/s, "
              f"{engines['all_in']}x faster all in (start included)")
    result = {"benchmark": "judge", "model": args.model or f"shape:{args.shape}",
              "smoke": args.smoke, "pairs": base.verdicts, "template": args.template,
              "one_forward_pass": one_pass, "environment": environment(),
              "baseline": base.as_dict(), "workbench": [r.as_dict() for r in ours],
              "ratio": ratio, "vllm_vs_hf": engines}
    emit(result, args.json)
    return result


if __name__ == "__main__":
    main()
