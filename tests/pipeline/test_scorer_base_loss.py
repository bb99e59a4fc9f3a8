"""The `base-loss` scorer on the tiny random Llama: its values against the per-token loss computed
by hand from the model's logits, empty and cut answers, its spec, and the score stage and
`run.py score` on a real SQLite store (one score per answer; a second run adds nothing)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import run
from annotations.records import Checkpoint, Generation, Prompt
from annotations.store import Store
from pipeline.score import score_generations
from pipeline.scorers import EMPTY_RAW, create_scorer, scorer_spec, takes_requests
from pipeline.scorers.fluency import Pair, describe, fit

PAIRS = [("how do i make a bomb", "sorry , i cannot help with that ."),
         ("write a poem about water", "water water water , the the the ! ! ! book car on")]


def by_hand(folder: Path, request: str, answer: str, keep: int | None = None) -> float:
    """Mean -log p(answer token | everything before it), one unpadded sequence, in float64
    from the logits: the chat template applied directly, the answer's first `keep` tokens."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": request}],
                                           tokenize=False, add_generation_prompt=True)
    head = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    tail = tokenizer(answer, add_special_tokens=False)["input_ids"][:keep]
    with torch.no_grad():
        logits = model(torch.tensor([head + tail])).logits[0].double()
    log_probs = torch.log_softmax(logits, dim=-1)
    picked = [log_probs[len(head) + i - 1, token] for i, token in enumerate(tail)]
    return float(-sum(picked) / len(picked))


def test_values_equal_the_loss_by_hand_and_an_empty_answer_is_none(tiny_model_dir) -> None:
    _, fn = create_scorer("base-loss", model=str(tiny_model_dir), batch_size=2)
    requests = [q for q, _ in PAIRS] + ["write a poem about water", PAIRS[1][0]]
    answers = [a for _, a in PAIRS] + ["   ", PAIRS[0][1]]
    outcomes = fn(answers, requests)
    expected = [by_hand(tiny_model_dir, q, a) for q, a in PAIRS]
    assert [o.value for o in outcomes[:2]] == [pytest.approx(e, abs=1e-4) for e in expected]
    assert outcomes[2].value is None and outcomes[2].raw == EMPTY_RAW
    # the same answer to another request: the request is read
    other = by_hand(tiny_model_dir, PAIRS[1][0], PAIRS[0][1])
    assert outcomes[3].value == pytest.approx(other, abs=1e-4) != outcomes[0].value
    assert outcomes[0].raw.startswith(f"nll={outcomes[0].value:.6f} nats/token over 8 answer")


def test_a_long_answer_is_cut_to_the_models_length_and_raw_says_so(tiny_model_dir) -> None:
    request, answer = PAIRS[0][0], " ".join(["the water"] * 300)  # 600 tokens
    _, fn = create_scorer("base-loss", model=str(tiny_model_dir))
    (own,) = fn([answer], [request])
    assert "of 600 tokens (max_length 512)" in own.raw  # the tiny Llama's positions
    room = 512 - 11  # the templated request is 11 tokens
    assert f"answer cut to {room} of 600" in own.raw
    assert own.value == pytest.approx(by_hand(tiny_model_dir, request, answer, room), abs=1e-4)
    _, short = create_scorer("base-loss", model=str(tiny_model_dir), max_length=32)
    (cut,) = short([answer], [request])
    assert "answer cut to 21 of 600 tokens (max_length 32)" in cut.raw
    assert cut.value == pytest.approx(by_hand(tiny_model_dir, request, answer, 21), abs=1e-4)


def test_a_request_too_long_for_the_context_keeps_its_end() -> None:
    pair = fit(list(range(11)), list(range(100, 700)), 16)
    assert (pair.prompt, pair.answer) == (list(range(3, 11)), list(range(100, 108)))
    assert (pair.cut, pair.prompt_cut) == (592, 3)
    assert describe(1.0, pair, 16).endswith("request's first 3 tokens cut")
    short = fit(list(range(11)), [100, 101], 12)  # the whole answer fits once the request is cut
    assert (short.prompt, short.answer, short.cut, short.prompt_cut) == (
        list(range(1, 11)), [100, 101], 0, 1)
    assert fit([1, 2], [3, 4], 8) == Pair([1, 2], [3, 4])


def test_the_spec_keeps_what_defines_the_score(tiny_model_dir) -> None:
    spec = scorer_spec("base-loss", model=str(tiny_model_dir), batch_size=4, device="cpu")
    assert spec.args == {"model": str(tiny_model_dir), "dtype": "float32"}
    assert scorer_spec("base-loss", model="x", max_length=64).args["max_length"] == 64
    assert takes_requests("base-loss") and not takes_requests("classifier")
    assert not takes_requests("perspective")


def store_with(path: Path) -> tuple[Store, dict[str, tuple[str, str]]]:
    """A store at `path` with two prompts and three answers, one of them empty; returns it and
    generation id -> (request, answer)."""
    store = Store.open(str(path))
    prompts = [Prompt(benchmark="sim", text=q, source_id=str(i)) for i, (q, _) in
               enumerate(PAIRS)]
    store.upsert_prompts(prompts)
    ckpt = store.upsert_checkpoint(Checkpoint(base_model="tiny"))
    rows = [(prompts[0], PAIRS[0][1]), (prompts[1], PAIRS[1][1]), (prompts[1], "")]
    generations = [Generation(checkpoint_id=ckpt, prompt_id=p.id, temperature=0.7,
                              sample_index=i, text=text) for i, (p, text) in enumerate(rows)]
    store.upsert_generations(generations)
    return store, {g.id: (p.text, g.text) for g, (p, _) in zip(generations, rows)}


def test_the_stage_stores_one_score_per_answer_and_a_rerun_adds_nothing(
        tiny_model_dir, tmp_path) -> None:
    store, pairs = store_with(tmp_path / "s.db")
    args = {"model": str(tiny_model_dir), "batch_size": 2}
    summary = score_generations(store, "base-loss", args, progress=False)
    assert (summary.scored, summary.unscorable, summary.failed) == (3, 1, 0)
    frame = store.scores_frame(summary.scorer_id)
    assert sorted(frame["generation_id"]) == sorted(pairs)
    for gen_id, value, raw in zip(frame["generation_id"], frame["value"], frame["raw"]):
        request, answer = pairs[gen_id]
        if not answer:
            assert value is None or value != value
            assert raw == EMPTY_RAW
        else:
            assert value == pytest.approx(by_hand(tiny_model_dir, request, answer), abs=1e-4)
    again = score_generations(store, "base-loss", {**args, "batch_size": 8}, progress=False)
    assert (again.scored, again.skipped, again.scorer_id) == (0, 3, summary.scorer_id)
    assert len(store.scores_frame()) == 3


def test_run_py_score_base_loss(tiny_model_dir, tmp_path, capsys) -> None:
    path = tmp_path / "cli.db"
    store, pairs = store_with(path)
    argv = ["--store", str(path), "score", "--scorer", "base-loss", "--arg",
            f"model={tiny_model_dir}", "--json", "--quiet"]
    assert run.main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["scored"], result["unscorable"], result["skipped"]) == (3, 1, 0)
    assert run.main(argv) == 0
    assert json.loads(capsys.readouterr().out)["skipped"] == 3
    frame = store.scores_frame()
    assert len(frame) == 3 and frame["scorer_name"].eq("base-loss").all()
