"""What the pipeline benchmarks share: model shapes with random weights and a word-level
tokenizer, synthetic words and lengths, CPU threads, timing, the command-line options every one
takes, and the JSON line each prints."""

from __future__ import annotations

import argparse
import json
import math
import random
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SHAPES: dict[str, dict[str, Any]] = {
    # head size 64: vLLM's CPU attention takes 32, 64, 80, ... (not 16)
    "tiny": dict(vocab_size=1024, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                 num_attention_heads=2, num_key_value_heads=1, head_dim=64,
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
