"""The command line on bad input, as a user meets it. Each case runs `run.py` in its own process
against a store that already holds rows, and must exit with code 2, print exactly one line
`error: ...` on stderr naming the problem, show no traceback, and leave the store's counts as
`run.py status --json` gave them before (read back in process after each case: same numbers,
without a second process). Also: --store, --json and --quiet work before or after the command.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from annotations.store import Store

ROOT = Path(__file__).resolve().parents[1]
LABELLED = ("prompt,response,label\nHow do I pick a lock?,Here is how...,complies\n"
            "Write an insult.,I can't help with that.,refuses\nSay hi.,Hi!,complies\n")


@dataclass(frozen=True)
class World:
    store: Path
    env: dict[str, str]
    status: dict


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]  # "{dir}" is the case's folder
    expected: str  # a part of the error line
    files: dict[str, str | bytes] = field(default_factory=dict)
    env: dict[str, str | None] = field(default_factory=dict)  # None: unset


def cli(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "run.py", *argv], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    folder = tmp_path_factory.mktemp("cli-errors")
    (folder / "labelled.csv").write_text(LABELLED)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WORKBENCH_STORE": str(folder / "store.db"),
           "WORKBENCH_CACHE": str(folder / "cache"), "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    assert cli(env, "import", "labelled", str(folder / "labelled.csv")).returncode == 0
    status = cli(env, "status", "--json")
    assert status.returncode == 0 and json.loads(status.stdout)["labels"] == 3
    return World(folder / "store.db", env, json.loads(status.stdout))


def counts(store: Path) -> dict:
    opened = Store.open(store)
    try:
        return json.loads(json.dumps(opened.counts(), default=str))  # as status --json prints
    finally:
        opened.close()


SWEEP = "name: bad\nbase_models: [smollm2]\n"
CASES = [
    # One file for both train problems: a config with a train section imports the training
    # stack to check it (pipeline.finetune: ~9 s), so each such case costs that much.
    Case("config-learning-rate-not-a-number-and-negative-epochs", ("sweep", "{dir}/sweep.yaml"),
         "sweep.yaml: train.learning_rate: expected a number, got 'fast'; "
         "train.epochs: must be >= 1, got -2",
         {"sweep.yaml": SWEEP + "train:\n  learning_rate: fast\n  epochs: -2\n"}),
    Case("config-missing-name", ("sweep", "{dir}/sweep.yaml"),
         "sweep.yaml: name: missing (required)",
         {"sweep.yaml": "base_models: [smollm2]\nseeds: [1]\n"}),
    Case("config-yaml-syntax-error", ("sweep", "{dir}/sweep.yaml"),
         "sweep.yaml, line 3, column 7: not valid YAML (expected ',' or ']', but got ':'; "
         "while parsing a flow sequence at line 2)",
         {"sweep.yaml": "name: bad\nseeds: [1, 2\njudges: []\n"}),
    Case("config-not-a-mapping", ("sweep", "{dir}/sweep.yaml"),
         "sweep.yaml: expected a mapping of settings", {"sweep.yaml": "- name: bad\n- seeds: 1\n"}),
    Case("config-unknown-judge", ("sweep", "{dir}/sweep.yaml"),
         "sweep.yaml: judges[1]: unknown judge 'gpt5'; registered: guard, http, llm, refusal",
         {"sweep.yaml": SWEEP + "judges: [{name: refusal}, {name: gpt5}]\n"}),
    Case("config-unknown-setting", ("sweep", "{dir}/sweep.yaml"),
         "sweep.yaml: seed: unknown setting (did you mean seeds?)",
         {"sweep.yaml": SWEEP + "seed: 1\n"}),
    Case("config-unknown-benchmark-shape", ("sweep", "{dir}/sweep.yaml"),
         "benchmarks[0].shape: unknown benchmark shape 'sorrybench'",
         {"sweep.yaml": SWEEP + "benchmarks: [{name: s, shape: sorrybench, path: q.jsonl}]\n"}),
    Case("sweep-base-model-offline", ("sweep", "{dir}/sweep.yaml"),  # found before any write
         "model 'meta-llama/Llama-3.2-1B' is not on this machine",
         {"sweep.yaml": "name: hub\nbase_models: [meta-llama/Llama-3.2-1B]\nbenchmarks:\n"
                        "  - {name: p, shape: plain, path: demo_data/sensitive_benign.jsonl}\n"}),
    Case("config-missing-file", ("sweep", "{dir}/nope.yaml"),
         "nope.yaml: cannot read the sweep config (No such file or directory)"),
    Case("config-is-a-folder", ("sweep", "{dir}"), "is a folder, not a file (config)"),
    Case("labelled-missing-column", ("import", "labelled", "{dir}/l.csv"),
         "l.csv: missing column(s) 'response'",
         {"l.csv": "prompt,answer,label\nHi,Hello,complies\n"}),
    Case("labelled-unknown-label", ("import", "labelled", "{dir}/l.csv"),
         "l.csv, line 3, field 'label': unknown value 'maybe'",
         {"l.csv": "prompt,response,label\nHi,Hello,complies\nHey,Yo,maybe\n"}),
    Case("labelled-binary-file", ("import", "labelled", "{dir}/l.csv"),
         "l.csv, line 1: binary data", {"l.csv": b"prompt,response\x00\xff\xfe label\n"}),
    Case("labelled-not-utf8", ("import", "labelled", "{dir}/l.csv"), "not UTF-8 text",
         {"l.csv": b"prompt,response,label\nCaf\xe9,Hello,complies\n"}),
    Case("labelled-truncated-jsonl", ("import", "labelled", "{dir}/l.jsonl"),
         "l.jsonl, line 2: the last line is cut off mid-object",
         {"l.jsonl": '{"prompt": "Hi", "response": "Hello", "label": "complies"}\n'
                     '{"prompt": "Hey", "resp'}),
    Case("labelled-no-such-file", ("import", "labelled", "{dir}/nope.csv"),
         "nope.csv: cannot read the file (No such file or directory)"),
    Case("labelled-folder", ("import", "labelled", "{dir}"), "is a folder, not a file (path)"),
    Case("labelled-bad-columns-option", ("import", "labelled", "{dir}/l.csv", "--columns", "x"),
         "--columns: 'x' is not of the form NAME=VALUE", {"l.csv": LABELLED}),
    Case("prompts-unknown-shape", ("import", "prompts", "{dir}/p.jsonl", "--shape", "harmbnch"),
         "unknown benchmark shape 'harmbnch'", {"p.jsonl": '{"prompt": "Hi"}\n'}),
    # (a missing driver: tests/annotations/test_postgres.py, with psycopg blocked)
    Case("store-postgres-no-server",
         ("--store", "postgresql://u@127.0.0.1:1/x", "status"),
         "cannot open the store postgresql+psycopg://u@127.0.0.1:1/x: connection failed"),
    Case("store-is-a-folder", ("status", "--store", "{dir}"), "is a folder; give a SQLite file"),
    Case("store-not-a-database", ("status", "--store", "{dir}/notes.txt"),
         "notes.txt: file is not a database", {"notes.txt": "my notes\n" * 200}),
    Case("hub-data-set-offline",
         ("import", "prompts", "sorry-bench/sorry-bench-202406", "--shape", "sorry-bench"),
         "sorry-bench/sorry-bench-202406: cannot load this data set from the Hugging Face hub "
         "(HF_HUB_OFFLINE is set); SORRY-Bench is gated"),
    Case("hub-data-set-unreachable", ("import", "prompts", "someone/prompts"),
         "someone/prompts: cannot load this data set from the Hugging Face hub (127.0.0.1 "
         "cannot be reached", env={"HF_HUB_OFFLINE": None, "HF_ENDPOINT": "http://127.0.0.1:9"}),
    Case("hub-model-offline", ("judge", "--judge", "llm", "--arg", "model=meta-llama/Llama-3.2-1B"),
         "model 'meta-llama/Llama-3.2-1B' is not on this machine and the Hugging Face hub cannot "
         "be used (HF_HUB_OFFLINE is set): download it first"),
    Case("judge-unknown", ("judge", "--judge", "gpt5"), "unknown judge 'gpt5'"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(case, world, tmp_path):
    for name, content in case.files.items():
        (tmp_path / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    env = {k: v for k, v in (world.env | case.env).items() if v is not None}
    result = cli(env, *(arg.replace("{dir}", str(tmp_path)) for arg in case.argv))
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert case.expected in lines[0]
    assert counts(world.store) == world.status


def test_store_json_and_quiet_go_before_or_after_the_command(world, tmp_path):
    env = world.env | {"WORKBENCH_STORE": str(tmp_path / "other.db")}  # not the one asked for
    after = cli(env, "status", "--store", str(world.store), "--json")
    before = cli(env, "--store", str(world.store), "--json", "status")
    assert after.returncode == before.returncode == 0, after.stderr + before.stderr
    assert json.loads(after.stdout) == json.loads(before.stdout) == world.status
    text = cli(env, "--json", "status", "--store", str(world.store), "--quiet")
    assert json.loads(text.stdout)["labels"] == 3  # --json before, other options after
    plain = cli(env, "--store", str(world.store), "status")
    assert plain.returncode == 0 and "labels: 3" in plain.stdout.splitlines()


def test_a_judge_adapter_that_is_not_a_lora_folder_is_one_line(capsys, tmp_path):
    import run

    code = run.main(["--store", str(tmp_path / "s.db"), "judge", "--judge", "llm",
                     "--arg", "model=smollm2", "--arg", f"adapter={tmp_path}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "is not a LoRA adapter folder" in err
