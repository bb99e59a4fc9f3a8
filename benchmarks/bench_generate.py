"""Benchmark: new tokens per second of the workbench's generation path vs plain `model.generate`.

Workbench: `pipeline.generate.generate_checkpoint` as the generate stage runs it (prompts wrapped in
the chat template, sorted by length, cut into left-padded batches of `--batch-sizes`, each batch
written to a SQLite store in a temporary folder). Baseline, in the same process on the same loaded
model: the same templated prompts in their given order, left-padded batches of `--baseline-batch`
(64) through `model.generate`, decoded. Both sample at `--temperature` (0.7) with the same settings
(top_k 0, top_p 1) and count new tokens up to the first end-of-sequence token. Reported per run:
new tokens, wall time, new tokens/s, peak GPU memory (CUDA only), and workbench / baseline.

Prompts are synthetic (seeded): `--prompts` (440, SORRY-Bench's size) of mixed lengths, lognormal
with a mean of about 40 words (4 to 400). Each configuration runs `--repeats` times (2) and the
fastest counts: the first call of a process is much slower on a GPU (DESIGN.md, "At scale").

GPU (an H100; builds a Llama-3.2-1B-shaped model with random weights in a temporary folder):
    .venv/bin/python benchmarks/bench_generate.py --shape llama-1b --json results.jsonl
    .venv/bin/python benchmarks/bench_generate.py --model /path/to/model --batch-sizes 64,440
CPU, seconds, a tiny random model:
    .venv/bin/python benchmarks/bench_generate.py --smoke

The helpers at the top (model shapes, synthetic words, timing, the JSON line) are shared with
bench_train.py and bench_judge.py.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from a checkout

# ----- shared by the three benchmarks ---------------------------------------------------------

SHAPES: dict[str, dict[str, Any]] = {
    "tiny": dict(vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                 max_position_embeddings=4096, tie_word_embeddings=False),
    "llama-1b": dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192,
                     num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
                     head_dim=64, max_position_embeddings=131072, rope_theta=500000.0,
                     rms_norm_eps=1e-5, tie_word_embeddings=True),
    "llama-8b": dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336,
                     num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                     head_dim=128, max_position_embeddings=131072, rope_theta=500000.0,
                     rms_norm_eps=1e-5, tie_word_embeddings=False),
}
CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
          "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
SPECIALS = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>"]
# Synthetic text is drawn from these words: one token each for the shapes' word-level tokenizer,
# about one token each for a real model's tokenizer too.
WORDS = """the a and or of to in on for with is are was be it this that you your we not no yes
can help but as how what why when where who which tell explain write make give list steps first
then next finally about answer question please sure guide way do does have one two three four
five good bad people money house car computer water food book story poem code data time day
year new old big small very more some all make find use work call try ask need feel become
leave put mean keep let begin seem show hear play run move live believe hold bring happen
0 1 2 3 4 5 6 7 8 9 . , ? !""".split()


def word_tokenizer(vocab_size: int) -> Any:
    """A word-level tokenizer of exactly `vocab_size` entries with a ChatML template: the
    synthetic words, then filler words `w<i>` up to the size (so the output layer is full size)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    known = list(dict.fromkeys(SPECIALS + WORDS))
    fillers = [f"w{i}" for i in range(vocab_size - len(known))]
    vocab = {tok: i for i, tok in enumerate(known + fillers)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split("<|im_start|>", "isolated"),
         pre_tokenizers.Split("<|im_end|>", "isolated"), pre_tokenizers.Whitespace()])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>", bos_token="<|im_start|>",
        eos_token="<|im_end|>", additional_special_tokens=["<|im_start|>", "<|im_end|>"])
    tokenizer.chat_template = CHATML
    return tokenizer


def build_shape(folder: Path, shape: str, seed: int = 0) -> Path:
    """A Llama of `shape` with random weights and a word-level tokenizer, saved to `folder`
    (built on the GPU when there is one: a 1B model initialises in seconds there)."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(**SHAPES[shape], pad_token_id=0, bos_token_id=2, eos_token_id=3)
    big = shape != "tiny"
    torch.manual_seed(seed)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = AutoModelForCausalLM.from_config(
            config, dtype=torch.bfloat16 if big else torch.float32)
    model.generation_config.pad_token_id = 0
    model.generation_config.eos_token_id = 3
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    word_tokenizer(config.vocab_size).save_pretrained(folder)
    del model
    release_memory()
    return folder


def model_source(args: argparse.Namespace, stack: ExitStack) -> str:
    """The model to benchmark: `--model` as given, else `--shape` built in a temporary folder."""
    if args.model:
        return args.model
    folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-model-")))
    start = time.perf_counter()
    build_shape(folder / args.shape, args.shape, args.seed)
    print(f"built a {args.shape}-shaped Llama with random weights in "
          f"{time.perf_counter() - start:.1f} s (not timed below)")
    return str(folder / args.shape)


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="a local model folder (or a name pipeline.models "
                        "resolves, e.g. smollm2); default: build --shape with random weights")
    parser.add_argument("--shape", choices=sorted(SHAPES), default=None,
                        help="Llama shape to build when no --model (default llama-1b; "
                        "tiny with --smoke)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true",
                        help="a seconds-long CPU run on a tiny random model (smoke sizes)")
    parser.add_argument("--json", type=Path, help="append the results as one JSON line here")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's; 1 with "
                        "--smoke, since a tiny model on shared cores is far slower with more)")


def fill_sizes(args: argparse.Namespace, full: dict[str, Any], smoke: dict[str, Any]) -> None:
    """Sizes the user left out take the full-size or, with --smoke, the smoke defaults."""
    for name, value in (smoke if args.smoke else full).items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)


@contextmanager
def cpu_threads(count: int | None) -> Iterator[None]:
    """torch's CPU thread count set for the block and restored after (tests run in-process)."""
    import torch

    before = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def mixed_lengths(rng: random.Random, n: int, mean: float, low: int, high: int,
                  sigma: float = 0.8) -> list[int]:
    """`n` lognormal lengths with about this mean, clipped to [low, high]."""
    mu = math.log(mean) - sigma ** 2 / 2
    return [min(high, max(low, round(rng.lognormvariate(mu, sigma)))) for _ in range(n)]


def words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choices(WORDS, k=n))


def release_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def synchronize() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


@dataclass
class Timing:
    seconds: float = 0.0
    peak_gpu_gb: float | None = None


@contextmanager
def timed() -> Iterator[Timing]:
    """Wall time (GPU work included) and peak GPU memory of the block."""
    import torch

    timing = Timing()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    synchronize()
    start = time.perf_counter()
    yield timing
    synchronize()
    timing.seconds = time.perf_counter() - start
    if torch.cuda.is_available():
        timing.peak_gpu_gb = round(torch.cuda.max_memory_allocated() / 2 ** 30, 2)


def environment() -> dict[str, Any]:
    import torch
    import transformers

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    return {"device": device, "cpu_threads": torch.get_num_threads(), "torch": torch.__version__,
            "transformers": transformers.__version__}


def emit(result: dict[str, Any], path: Path | None) -> None:
    """The results as one JSON line on stdout, and appended to `path` when given."""
    line = json.dumps(result, default=str)
    print(line)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as out:
            out.write(line + "\n")


def gb(value: float | None) -> str:
    return "" if value is None else f", peak GPU {value:.2f} GB"


# ----- this benchmark -------------------------------------------------------------------------

FULL = {"shape": "llama-1b", "prompts": 440, "max_new_tokens": 256, "batch_sizes": "64,440",
        "baseline_batch": 64, "repeats": 2}
SMOKE = {"shape": "tiny", "prompts": 24, "max_new_tokens": 8, "batch_sizes": "8,24",
         "baseline_batch": 8, "repeats": 3, "device": "cpu", "threads": 1}


@dataclass
class GenRun:
    path: str  # "baseline" or "workbench"
    batch_size: int
    new_tokens: int
    seconds: float
    peak_gpu_gb: float | None
    all_seconds: list[float] = field(default_factory=list)

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


def kept_tokens(rows: Sequence[Sequence[int]], eos_ids: set[int]) -> int:
    """New tokens up to (not counting) each row's first end-of-sequence token."""
    return sum(next((i for i, t in enumerate(row) if t in eos_ids), len(row)) for row in rows)


def eos_set(tokenizer: Any) -> set[int]:
    eos = tokenizer.eos_token_id
    return set(eos) if isinstance(eos, list) else {eos}


def sampling(temperature: float) -> dict[str, Any]:
    if temperature > 0:  # what pipeline.generate.sample_batch uses
        return {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0}
    return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}


def baseline_once(model: Any, tokenizer: Any, prompts: Sequence[Any], batch: int,
                  temperature: float, max_new_tokens: int, seed: int) -> tuple[int, Timing]:
    """Plain `model.generate` over the prompts in their given order, batches of `batch`."""
    import torch

    from pipeline.models import chat_prompt

    tokens = 0
    with timed() as timing:
        texts = [chat_prompt(tokenizer, p.text) for p in prompts]
        torch.manual_seed(seed)
        for start in range(0, len(texts), batch):
            enc = tokenizer(texts[start:start + batch], return_tensors="pt", padding=True,
                            add_special_tokens=False).to(model.device)
            out = model.generate(**enc, max_new_tokens=max_new_tokens,
                                 pad_token_id=tokenizer.pad_token_id, **sampling(temperature))
            new = out[:, enc["input_ids"].shape[1]:].tolist()
            tokens += kept_tokens(new, eos_set(tokenizer))
            tokenizer.batch_decode(new, skip_special_tokens=True)
    return tokens, timing


def workbench_once(model: Any, tokenizer: Any, name: str, prompts: Sequence[Any], batch: int,
                   temperature: float, max_new_tokens: int, seed: int) -> tuple[int, Timing]:
    """The generate stage for one checkpoint (the base model) into a fresh store."""
    from annotations.records import Checkpoint
    from annotations.store import Store
    from pipeline.generate import AdapterSwitcher, GenerationSettings, generate_checkpoint

    settings = GenerationSettings(temperatures=(temperature,), samples=1,
                                  max_new_tokens=max_new_tokens, batch_size=batch, seed=seed)
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        store = Store.open(Path(tmp) / "bench.db")
        checkpoint = Checkpoint(base_model=name)
        store.upsert_prompts(prompts)
        store.upsert_checkpoint(checkpoint)
        with timed() as timing:
            generate_checkpoint(store, AdapterSwitcher(model, tokenizer), checkpoint, prompts,
                                settings, progress=False)
        tokens = int(store.generations_frame(with_text=False)["token_count"].sum())
        store.close()
    return tokens, timing


def best_of(repeats: int, path: str, batch: int, once: Any) -> GenRun:
    """Run `once` `repeats` times; the fastest counts, every time is kept."""
    results = [once() for _ in range(repeats)]
    tokens, fastest = min(results, key=lambda r: r[1].seconds)
    peak = max((t.peak_gpu_gb for _, t in results if t.peak_gpu_gb is not None), default=None)
    return GenRun(path, batch, tokens, fastest.seconds, peak,
                  [round(t.seconds, 3) for _, t in results])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    parser.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--dtype", help="bfloat16, float16 or float32 (default: bf16 on GPU)")
    parser.add_argument("--prompts", type=int, help="synthetic prompts (440)")
    parser.add_argument("--max-new-tokens", type=int, help="new tokens per answer (256)")
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--batch-sizes", help="workbench batch sizes, comma-separated (64,440)")
    parser.add_argument("--baseline-batch", type=int, help="baseline batch size (64)")
    parser.add_argument("--repeats", type=int, help="runs per configuration, fastest counts (2)")
    args = parser.parse_args(argv)
    fill_sizes(args, FULL, SMOKE)
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    from pipeline.models import LoadOptions, load_model

    args = parse_args(argv)
    with ExitStack() as stack:
        stack.enter_context(cpu_threads(args.threads))
        source = model_source(args, stack)
        model, tokenizer = load_model(source, LoadOptions(dtype=args.dtype, device=args.device))
        prompts = synthetic_prompts(args.prompts, args.seed)
        gen = (args.temperature, args.max_new_tokens, args.seed)
        # Warm-up, untimed: the first generate call of a process pays for kernels and allocations.
        baseline_once(model, tokenizer, prompts[:args.baseline_batch], args.baseline_batch,
                      args.temperature, min(4, args.max_new_tokens), args.seed)
        base = best_of(args.repeats, "baseline", args.baseline_batch,
                       lambda: baseline_once(model, tokenizer, prompts, args.baseline_batch, *gen))
        ours = [best_of(args.repeats, "workbench", size,
                        lambda size=size: workbench_once(model, tokenizer, source, prompts, size,
                                                         *gen))
                for size in (int(s) for s in str(args.batch_sizes).split(","))]
        return report(args, prompts, tokenizer, base, ours)


def report(args: argparse.Namespace, prompts: Sequence[Any], tokenizer: Any, base: GenRun,
           ours: Sequence[GenRun]) -> dict[str, Any]:
    lengths = [len(tokenizer(p.text, add_special_tokens=False)["input_ids"]) for p in prompts]
    print(f"{len(prompts)} prompts ({sum(lengths) / len(lengths):.0f} tokens mean, "
          f"{max(lengths)} max) x {args.max_new_tokens} new tokens at T={args.temperature}")
    for run in (base, *ours):
        print(f"  {run.path:<9} batch {run.batch_size:>4}: {run.new_tokens:>8,} new tokens in "
              f"{run.seconds:8.2f} s = {run.tokens_per_s:10,.1f} tokens/s{gb(run.peak_gpu_gb)}")
    ratios = {str(run.batch_size): round(run.tokens_per_s / base.tokens_per_s, 2) for run in ours}
    print("  workbench / baseline tokens/s: "
          + ", ".join(f"{r}x at batch {b}" for b, r in ratios.items()))
    result = {"benchmark": "generate", "model": args.model or f"shape:{args.shape}",
              "smoke": args.smoke, "prompts": len(prompts), "max_new_tokens": args.max_new_tokens,
              "temperature": args.temperature, "environment": environment(),
              "baseline": base.as_dict(), "workbench": [r.as_dict() for r in ours],
              "ratio": ratios}
    emit(result, args.json)
    return result


if __name__ == "__main__":
    main()
