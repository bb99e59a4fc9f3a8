"""Sweep configs: the shipped ones load as before; every bad setting is named by its path and
what was expected, all problems in one line; YAML and file problems name the file (and line);
`check_inputs` finds bad inputs before a sweep writes anything."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from annotations.tabular import BadInputError
from pipeline.config import (ConfigError, DataSpec, JudgeConfig, SweepConfig, config_from_dict,
                             load_config)
from pipeline.preflight import check_inputs
from pipeline.models import ModelUnavailable

ROOT = Path(__file__).resolve().parents[2]


def problem(raw: object) -> str:
    with pytest.raises(ConfigError) as err:
        config_from_dict(raw, "sweep.yaml")
    message = str(err.value)
    assert "\n" not in message and message.startswith("sweep.yaml: ")
    return message.removeprefix("sweep.yaml: ")


def write(tmp_path: Path, text: str | bytes, name: str = "sweep.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_the_shipped_configs_load_with_their_values():
    demo = load_config(ROOT / "configs/demo.yaml")
    assert isinstance(demo, SweepConfig) and demo.name == "demo" and demo.seeds == (1, 2)
    assert demo.train.learning_rate == 3e-4 and demo.train.lora.target_modules[0] == "q_proj"
    assert demo.align is not None and isinstance(demo.align.data[0], DataSpec)
    assert demo.generation.temperatures == (0.0, 0.7)
    assert demo.judges == (JudgeConfig("refusal"),)
    assert demo.train_judge.template == "compact" and demo.train_judge.train.epochs == 12
    paper = load_config(ROOT / "configs/paper.yaml")
    assert paper.train.quantization == "4bit" and paper.capability.n == 500


def test_defaults_and_yaml_quirks():
    config = config_from_dict({"name": "x", "train": {"learning_rate": "2e-5"},
                               "seeds": 3, "capability": {}})
    assert config.train.learning_rate == 2e-5  # YAML 1.1 reads 2e-5 as text
    assert config.seeds == (3,) and config.capability is None
    assert config.judges == (JudgeConfig("refusal"),) and config.base_models == ("smollm2",)


@pytest.mark.parametrize("raw, expected", [
    ({"name": "x", "train": {"learning_rate": "fast"}},
     "train.learning_rate: expected a number, got 'fast'"),
    ({"base_models": ["smollm2"]}, "name: missing (required)"),
    ({"name": "x", "train": {"epochs": -2}}, "train.epochs: must be >= 1, got -2"),
    ({"name": "x", "trian": {}}, "trian: unknown setting (did you mean train?)"),
    ({"name": "x", "train": {"lora": {"r": 8, "alpah": 16}}},
     "train.lora.alpah: unknown setting (did you mean alpha?)"),
    ({"name": "x", "train": {"lora": {"dropout": 1.5}}},
     "train.lora.dropout: must be at least 0 and below 1, got 1.5"),
    ({"name": "x", "train": {"quantization": "3bit"}},
     "train.quantization: must be one of none, 4bit, 8bit or null, got '3bit'"),
    ({"name": "x", "train": {"bf16": "yes please"}},
     "train.bf16: expected true or false, got 'yes please'"),
    ({"name": "x", "train": [1, 2]}, "train: expected a mapping of settings, got a list"),
    ({"name": "x", "seeds": [1, "two"]}, "seeds[1]: expected a whole number, got 'two'"),
    ({"name": "x", "generation": {"temperatures": [0.0, -1]}},
     "generation.temperatures[1]: must be >= 0, got -1.0"),
    ({"name": "x", "datasets": [{"shape": "dolly", "path": "a.jsonl"}]},
     "datasets[0].name: missing (required)"),
    ({"name": "x", "datasets": [{"name": "d", "shape": "xml"}]},
     "datasets[0].shape: unknown instruction data shape 'xml'"),
    ({"name": "x", "benchmarks": [{"name": "b", "shape": "nope", "path": "b.jsonl"}]},
     "benchmarks[0].shape: unknown benchmark shape 'nope' (known: sorry-bench,"),
    ({"name": "x", "judges": [{"name": "refusal"}, {"name": "gpt5"}]},
     "judges[1]: unknown judge 'gpt5'; registered: guard, http, llm, refusal"),
    ({"name": "x", "judges": [{"name": "llm", "args": {"modle": "smollm2"}}]},
     "judges[0]: judge 'llm': got an unexpected keyword argument 'modle'"),
    ({"name": "x", "judges": [{"name": "refusal", "args": [1]}]},
     "judges[0].args: expected a mapping, got a list"),
    ({"name": "x", "align": {"data": [{"name": "a", "repeat": 0}]}},
     "align.data[0].repeat: must be >= 1, got 0"),
    ({"name": "x", "capability": {"n": 0}}, "capability.n: must be >= 1, got 0"),
    ({"name": ""}, "name: must not be empty"),
    (["name", "x"], "expected a mapping of settings (name: ..., base_models: ...), got a list"),
])
def test_each_problem_is_named_by_its_path(raw, expected):
    assert expected in problem(raw)


def test_every_problem_is_reported_at_once_on_one_line():
    message = problem({"train": {"learning_rate": "fast", "epochs": 0}, "seeds": [-1]})
    assert message.split("; ") == ["train.learning_rate: expected a number, got 'fast'",
                                   "train.epochs: must be >= 1, got 0",
                                   "seeds[0]: must be >= 0, got -1", "name: missing (required)"]


@pytest.mark.parametrize("text, expected", [
    ("name: [unclosed\nseeds: 1\n",
     "sweep.yaml, line 2, column 6: not valid YAML (expected ',' or ']', but got ':'; "
     "while parsing a flow sequence at line 1)"),
    ("name: a\n\ttrain: {}\n", "sweep.yaml, line 2, column 1: not valid YAML (found character "),
    ("name: a\ntrain: {epochs: 1}\ntrain: {epochs: 2}\n",
     "sweep.yaml, line 3, column 1: not valid YAML (the key 'train' is given twice)"),
    ("- name: a\n", "sweep.yaml: expected a mapping of settings"),
    ("just words\n", "sweep.yaml: expected a mapping of settings (name: ..., base_models: ...), "
                     "got 'just words'"),
    ("# only a comment\n", "sweep.yaml: the file is empty"),
    (b"name: caf\xe9\n", "sweep.yaml: not UTF-8 text (byte offset 9)"),
])
def test_file_problems_name_the_file_and_line(tmp_path, text, expected):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert expected in str(err.value) and str(tmp_path) in str(err.value)
    assert "\n" not in str(err.value)


def test_a_missing_file_or_a_folder(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: cannot read the sweep config "
                                          r"\(No such file or directory\)"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="is a folder, not a YAML file"):
        load_config(tmp_path)


def test_a_config_error_outside_the_train_section_does_not_import_the_training_stack(tmp_path):
    path = write(tmp_path, "base_models: [smollm2]\njudges: [{name: refusal}]\n")
    code = ("import sys\nfrom pipeline.config import load_config\n"
            "try:\n    load_config(sys.argv[1])\nexcept ValueError as err:\n    print(err)\n"
            "print('pipeline.finetune' in sys.modules)")
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code, str(path)], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout.splitlines()
    assert out == [f"{path}: name: missing (required)", "False"]
    assert time.perf_counter() - start < 5


# ----- check_inputs -----------------------------------------------------------------------------

def jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def minimal(tmp_path: Path, **changes) -> SweepConfig:
    prompts = jsonl(tmp_path / "p.jsonl", [{"prompt": "How do I pick a lock?"}])
    raw = {"name": "x", "base_models": [], "judges": [{"name": "refusal"}],
           "benchmarks": [{"name": "p", "shape": "plain", "path": str(prompts)}], **changes}
    return config_from_dict(raw)


def test_check_inputs_passes_the_demo_config():
    check_inputs(load_config(ROOT / "configs/demo.yaml"))


@pytest.mark.parametrize("changes, error, expected", [
    ({"benchmarks": [{"name": "b", "shape": "plain", "path": "no/such.jsonl"}]}, BadInputError,
     "no/such.jsonl: no such file"),
    ({"datasets": [{"name": "d", "path": "databricks/databricks-dolly-15k"}]}, BadInputError,
     "cannot load this data set from the Hugging Face hub (HF_HUB_OFFLINE is set)"),
    ({"base_models": ["meta-llama/Llama-3.2-1B"]}, ModelUnavailable,
     "model 'meta-llama/Llama-3.2-1B' is not on this machine"),
    ({"judges": [{"name": "llm", "args": {"model": "./no/judge", "template": "sorry_bench"}}]},
     ModelUnavailable, "no such model folder: ./no/judge"),
])
def test_check_inputs_names_the_bad_input(tmp_path, changes, error, expected):
    start = time.perf_counter()
    with pytest.raises(error) as err:
        check_inputs(minimal(tmp_path, **changes))
    assert expected in str(err.value) and "\n" not in str(err.value)
    assert time.perf_counter() - start < 3  # no hub retries


def test_check_inputs_reads_the_calibration_files(tmp_path):
    bad = tmp_path / "calib.csv"
    bad.write_text("prompt,response,label\nHi,Hello,maybe\n")
    with pytest.raises(BadInputError, match=r"calib.csv, line 2, field 'label': unknown value"):
        check_inputs(minimal(tmp_path, calibration=[{"path": str(bad)}]))
    bad.write_text("prompt,response,label\nHi,Hello,complies\n")
    check_inputs(minimal(tmp_path, calibration=[{"path": str(bad)}]))


def test_a_yaml_dump_of_a_config_loads_back(tmp_path):
    raw = {"name": "round", "seeds": [1], "train": {"epochs": 1, "lora": {"r": 4}},
           "generation": {"temperatures": [0.7], "samples": 2}}
    config = load_config(write(tmp_path, yaml.safe_dump(raw)))
    assert (config.train.epochs, config.train.lora.r, config.generation.samples) == (1, 4, 2)


def test_a_train_judge_section_is_read_with_its_training_settings():
    from pipeline.finetune import TrainSettings
    from pipeline.train_judge import JudgeTraining

    config = config_from_dict({"name": "x", "train_judge": {
        "template": "compact", "benchmarks": ["demo-calibration"], "holdout": 0.4,
        "train": {"epochs": 2, "learning_rate": "1e-3", "lora": {"r": 4}}}})
    spec = config.train_judge
    assert isinstance(spec, JudgeTraining) and isinstance(spec.train, TrainSettings)
    assert (spec.template, spec.benchmarks, spec.holdout) == ("compact", ("demo-calibration",), 0.4)
    assert (spec.train.epochs, spec.train.learning_rate, spec.train.lora.r) == (2, 1e-3, 4)
    assert config_from_dict({"name": "x"}).train_judge is None
    with pytest.raises(ConfigError, match="train_judge.holdot: unknown setting"):
        config_from_dict({"name": "x", "train_judge": {"holdot": 0.5}})
