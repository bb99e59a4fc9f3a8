"""The three pipeline benchmarks run end to end with --smoke (a tiny random Llama on CPU), in
process, and print one JSON line with positive throughput for the workbench path on each engine
(vLLM where it is installed) and the baseline; with --json the same line is appended to the
file. So does the corrected-harmfulness benchmark, on a small synthetic sweep."""

from __future__ import annotations

import importlib.util
import json

import pytest

from benchmarks import bench_generate, bench_judge, bench_ppi, bench_train

pytestmark = pytest.mark.slow
ENGINES = ["hf", "vllm"] if importlib.util.find_spec("vllm") else ["hf"]


def _run(main, capsys, *extra: str) -> dict:
    main(["--smoke", *extra])
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_generate_smoke(capsys, tmp_path):
    path = tmp_path / "results.jsonl"
    result = _run(bench_generate.main, capsys, "--json", str(path), "--plain",
                  "--engines", ",".join(ENGINES))
    assert result["benchmark"] == "generate" and result["smoke"] and result["adapters"] == 2
    runs = {r["engine"]: r for r in result["runs"]}
    assert list(runs) == ["plain", *ENGINES]
    assert all(r["tokens_per_s"] > 0 and r["new_tokens"] > 0 for r in runs.values())
    # the base and 2 adapters x 12 prompts x 2 temperatures, each engine; plain: the base's
    assert [runs[e]["answers"] for e in ENGINES] == [3 * 12 * 2] * len(ENGINES)
    assert runs["plain"]["answers"] == 12 * 2
    assert (result["ratio"] > 0) if "vllm" in runs else result["ratio"] is None
    assert json.loads(path.read_text().splitlines()[-1]) == result


def test_train_smoke(capsys):
    result = _run(bench_train.main, capsys)
    assert result["benchmark"] == "train" and result["quantization"] is None
    baseline, (padded, packed) = result["baseline"], result["workbench"]
    assert baseline["error"] is None and baseline["tokens_per_s"] > 0
    assert padded["error"] is None and padded["tokens_per_s"] > 0
    # Same data, same micro-batch, same order: both padded runs read the same real tokens.
    assert padded["tokens"] == baseline["tokens"] and padded["answer_tokens"] > 0
    assert result["ratio"]["workbench padded"] > 0
    assert packed["error"] is None, packed["error"]
    assert packed["tokens_per_s"] > 0 and result["ratio"]["workbench packed"] > 0


def test_judge_smoke(capsys):
    result = _run(bench_judge.main, capsys, "--engines", ",".join(ENGINES))
    assert result["benchmark"] == "judge" and result["one_forward_pass"]
    assert [r["path"] for r in result["workbench"]] == ENGINES
    assert result["baseline"]["verdicts_per_s"] > 0
    for run in result["workbench"]:
        assert run["verdicts_per_s"] > 0 and run["verdicts"] == 24
        assert run["unparseable"] == 0  # read from probabilities: always a label
    assert set(result["ratio"]) == set(ENGINES) and all(v > 0 for v in result["ratio"].values())
    assert bool(result["vllm_vs_hf"]) == ("vllm" in ENGINES)


def test_ppi_smoke(capsys, tmp_path):
    path = tmp_path / "results.jsonl"
    result = _run(bench_ppi.main, capsys, "--json", str(path), "--naive-resamples", "1")
    assert result["benchmark"] == "ppi" and result["smoke"]
    assert result["verdicts"] == 10_000 and result["labels"] == 3_000
    assert 0 < result["estimates_s"] <= result["report_s"] and result["naive_s"] > 0
    assert json.loads(path.read_text().splitlines()[-1]) == result
