"""The three pipeline benchmarks run end to end with --smoke (a tiny random Llama on CPU), in
process, and print one JSON line with positive throughput for the workbench path and the baseline;
with --json the same line is appended to the file. So does the corrected-harmfulness benchmark,
on a small synthetic sweep."""

from __future__ import annotations

import json

import pytest

from benchmarks import bench_generate, bench_judge, bench_ppi, bench_train

pytestmark = pytest.mark.slow


def _run(main, capsys, *extra: str) -> dict:
    main(["--smoke", *extra])
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_generate_smoke(capsys, tmp_path):
    path = tmp_path / "results.jsonl"
    result = _run(bench_generate.main, capsys, "--json", str(path))
    assert result["benchmark"] == "generate" and result["smoke"]
    assert result["baseline"]["tokens_per_s"] > 0 and result["baseline"]["new_tokens"] > 0
    assert [r["batch_size"] for r in result["workbench"]] == [8, 24]
    assert all(r["tokens_per_s"] > 0 for r in result["workbench"])
    assert set(result["ratio"]) == {"8", "24"} and all(v > 0 for v in result["ratio"].values())
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
    result = _run(bench_judge.main, capsys)
    assert result["benchmark"] == "judge" and result["one_forward_pass"]
    assert result["baseline"]["verdicts_per_s"] > 0 and result["workbench"]["verdicts_per_s"] > 0
    assert result["baseline"]["verdicts"] == result["workbench"]["verdicts"] == 24
    assert result["workbench"]["unparseable"] == 0  # read from probabilities: always a label
    assert result["ratio"] > 0


def test_ppi_smoke(capsys, tmp_path):
    path = tmp_path / "results.jsonl"
    result = _run(bench_ppi.main, capsys, "--json", str(path), "--naive-resamples", "1")
    assert result["benchmark"] == "ppi" and result["smoke"]
    assert result["verdicts"] == 10_000 and result["labels"] == 3_000
    assert 0 < result["estimates_s"] <= result["report_s"] and result["naive_s"] > 0
    assert json.loads(path.read_text().splitlines()[-1]) == result
