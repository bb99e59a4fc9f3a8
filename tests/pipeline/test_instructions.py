"""Instruction data: Dolly and Alpaca shapes, seeded subsampling, chat messages, bad input."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest
from huggingface_hub import constants as hub_constants

from annotations.tabular import BadInputError
from annotations import hub
from pipeline.instructions import InstructionPair, load_instructions, to_messages

DEMO_TRAIN = Path(__file__).resolve().parents[2] / "demo_data" / "benign_train.jsonl"


def jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def dolly_rows(n: int) -> list[dict]:
    return [{"id": f"d{i}", "instruction": f"Do {i}", "context": "Ctx" if i % 2 else "",
             "response": f"Done {i}", "category": "open_qa"} for i in range(n)]


def test_dolly_shape(tmp_path):
    pairs = load_instructions("dolly", jsonl(tmp_path / "d.jsonl", dolly_rows(3)))
    assert pairs[1] == InstructionPair(id="d1", instruction="Do 1", context="Ctx",
                                       response="Done 1", category="open_qa")
    assert dataclasses.replace(pairs[0], response="x").response == "x"  # frozen, replaceable


def test_alpaca_shape_from_a_json_list_and_csv(tmp_path):
    rows = [{"instruction": "Add", "input": "2+2", "output": "4"},
            {"instruction": "Greet", "input": "", "output": "Hello"}]
    (tmp_path / "a.json").write_text(json.dumps(rows))
    from_json = load_instructions("alpaca", tmp_path / "a.json")
    (tmp_path / "a.csv").write_text("instruction,input,output\nAdd,2+2,4\nGreet,,Hello\n")
    assert load_instructions("alpaca", tmp_path / "a.csv") == from_json
    assert from_json[0].context == "2+2" and from_json[1].context == ""
    assert from_json[0].category is None and len(from_json[0].id) == 20


def test_to_messages_joins_context():
    with_context = InstructionPair("1", "Summarise", "Some text.", "Short.", None)
    assert to_messages(with_context) == [
        {"role": "user", "content": "Summarise\n\nSome text."},
        {"role": "assistant", "content": "Short."}]
    assert to_messages(dataclasses.replace(with_context, context=""))[0]["content"] == "Summarise"


def test_seeded_subsample_is_repeatable(tmp_path):
    path = jsonl(tmp_path / "d.jsonl", dolly_rows(50))
    first = load_instructions("dolly", path, n=10, seed=3)
    assert first == load_instructions("dolly", path, n=10, seed=3)
    assert first != load_instructions("dolly", path, n=10, seed=4)
    assert [p.id for p in first] == sorted((p.id for p in first), key=lambda i: int(i[1:]))
    assert len(load_instructions("dolly", path, n=500)) == 50


def test_bad_instruction_files(tmp_path):
    with pytest.raises(BadInputError, match=r"missing column\(s\) 'response'"):
        load_instructions("dolly", jsonl(tmp_path / "a.jsonl", [{"instruction": "x"}]))
    rows = dolly_rows(3)
    rows[2]["instruction"] = ""
    with pytest.raises(BadInputError, match=r"line 3, field 'instruction': empty value"):
        load_instructions("dolly", jsonl(tmp_path / "b.jsonl", rows))
    with pytest.raises(BadInputError, match=r"line 3, field 'id': duplicate id 'd0'"):
        load_instructions("dolly", jsonl(tmp_path / "c.jsonl", dolly_rows(2) + dolly_rows(1)))
    with pytest.raises(ValueError, match="unknown instruction data shape"):
        load_instructions("sharegpt", tmp_path / "c.jsonl")


def test_repeated_pairs_without_ids_are_kept_once(tmp_path):
    rows = [{"instruction": "A", "output": "B"}] * 2 + [{"instruction": "A", "output": "C"}]
    assert len(load_instructions("alpaca", jsonl(tmp_path / "a.jsonl", rows))) == 2


def test_hub_id_offline_is_one_clear_sentence():
    start = time.perf_counter()
    with pytest.raises(BadInputError, match="cannot load this data set from the Hugging Face hub "
                                            r"\(HF_HUB_OFFLINE is set\); download it"):
        load_instructions("dolly", "databricks/databricks-dolly-15k")
    assert time.perf_counter() - start < 2  # not huggingface_hub's ~25 s of retries


def test_a_hub_data_set_in_the_local_cache_is_left_to_datasets(monkeypatch, tmp_path):
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets"))
    with pytest.raises(BadInputError):
        hub.require_dataset("someone/cached")
    (tmp_path / "datasets" / "someone___cached").mkdir(parents=True)
    hub.require_dataset("someone/cached")  # offline, datasets reads its own cache


@pytest.mark.skipif(not DEMO_TRAIN.exists(), reason="the demo training set is not written yet")
def test_the_demo_training_set_loads():
    pairs = load_instructions("dolly", DEMO_TRAIN)
    assert len(pairs) >= 100 and all(p.instruction and p.response for p in pairs)
    assert len({p.id for p in pairs}) == len(pairs)
