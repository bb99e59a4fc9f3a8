"""Reading CSV/JSONL robustly: line numbers, renaming, label mapping, and every kind of bad input
ending in one BadInputError that names the file, the line and the field."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pandas as pd
import pytest

from annotations.records import HumanLabel
from annotations.tabular import (BadInputError, ensure_unique, map_label, parse_label_values,
                                 parse_mapping, read_source, read_table, rename_columns,
                                 require_columns)


def write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8"))
    return path


def jsonl(path: Path, rows: list[dict]) -> Path:
    return write(path, "".join(json.dumps(r) + "\n" for r in rows))


# ----- the two mapping strings -----
def test_parse_mapping_reads_the_cli_form():
    assert parse_mapping("prompt=objective, response=assistant_response,label=human_score") == {
        "prompt": "objective", "response": "assistant_response", "label": "human_score"}
    assert parse_mapping(None) == {} and parse_mapping({"a": "b"}) == {"a": "b"}


@pytest.mark.parametrize("text", ["prompt", "prompt=", "=x", "a=b,a=c"])
def test_parse_mapping_refuses_malformed_items(text):
    with pytest.raises(ValueError, match="--columns"):
        parse_mapping(text)


def test_parse_label_values_maps_to_label_words():
    assert parse_label_values("1=refuses,0=complies") == {"1": HumanLabel.REFUSES,
                                                          "0": HumanLabel.COMPLIES}
    with pytest.raises(ValueError, match="'fulfils' is not a label"):
        parse_label_values("1=fulfils")


# ----- CSV -----
def test_csv_rows_keep_the_line_they_start_on(tmp_path):
    path = write(tmp_path / "data.csv",
                 'prompt,label\n"two\nlines",1\n\nthird,0\n')
    table = read_table(path)
    assert table.columns == ("prompt", "label")
    assert [(r.line, r.values["prompt"]) for r in table.rows] == [(2, "two\nlines"), (5, "third")]


def test_csv_with_a_bom_and_tsv(tmp_path):
    assert read_table(write(tmp_path / "a.csv", "\ufeffprompt\nhi\n")).columns == ("prompt",)
    assert read_table(write(tmp_path / "a.tsv", "a\tb\n1\t2\n")).rows[0].values == {"a": "1",
                                                                                   "b": "2"}


def test_unterminated_quote_names_the_line_it_opens_on(tmp_path):
    path = write(tmp_path / "data.csv", 'prompt,label\nok,1\n"never closed,1\nmore,0\n')
    with pytest.raises(BadInputError, match=r"data\.csv, line 3: .*unterminated quote"):
        read_table(path)


def test_a_short_csv_row_is_refused(tmp_path):
    path = write(tmp_path / "data.csv", "prompt,response,label\na,b,1\nc,d")
    with pytest.raises(BadInputError, match=r"line 3: 2 fields where the header has 3"):
        read_table(path)


def test_a_header_naming_a_column_twice_is_refused(tmp_path):
    with pytest.raises(BadInputError, match="names column 'a' twice"):
        read_table(write(tmp_path / "data.csv", "a,a\n1,2\n"))


def test_a_1mb_response_is_read_intact(tmp_path):
    rng = random.Random(0)
    big = "".join(rng.choice("abc ,\"\n\r\u00e9") for _ in range(1_100_000))
    pd.DataFrame({"prompt": ["p"], "response": [big]}).to_csv(tmp_path / "big.csv", index=False)
    jsonl(tmp_path / "big.jsonl", [{"prompt": "p", "response": big}])
    assert read_table(tmp_path / "big.csv").rows[0].values["response"] == big
    assert read_table(tmp_path / "big.jsonl").rows[0].values["response"] == big


# ----- JSON lines and JSON -----
def test_jsonl_rows_keep_their_line_and_blank_lines_are_skipped(tmp_path):
    path = write(tmp_path / "d.jsonl", '{"a": 1}\n\n{"a": 2, "b": "x"}\n')
    table = read_table(path)
    assert [r.line for r in table.rows] == [1, 3] and table.columns == ("a", "b")


def test_a_truncated_jsonl_is_reported_as_cut_off(tmp_path):
    path = write(tmp_path / "d.jsonl", '{"prompt": "a"}\n{"prompt": "b", "resp')
    with pytest.raises(BadInputError, match=r"d\.jsonl, line 2: the last line is cut off"):
        read_table(path)


def test_bad_json_in_the_middle_names_its_line(tmp_path):
    path = write(tmp_path / "d.jsonl", '{"a": 1}\n{"a": }\n{"a": 3}\n')
    with pytest.raises(BadInputError, match=r"line 2: not valid JSON"):
        read_table(path)
    with pytest.raises(BadInputError, match=r"line 2: not valid JSON"):  # bad, not cut off
        read_table(write(tmp_path / "e.jsonl", '{"a": 1}\nnonsense'))


def test_a_jsonl_line_must_be_an_object(tmp_path):
    with pytest.raises(BadInputError, match=r"line 1: expected a JSON object, got list"):
        read_table(write(tmp_path / "d.jsonl", "[1, 2]\n"))


def test_json_list_items_are_numbered(tmp_path):
    path = write(tmp_path / "d.json", json.dumps([{"a": 1}, {"a": ""}]))
    rows = read_table(path).rows
    with pytest.raises(BadInputError, match=r"d\.json, item 2, field 'a': empty value"):
        rows[1].text("a")


def test_a_truncated_json_list_is_reported(tmp_path):
    text = json.dumps([{"a": 1}, {"a": 2}], indent=1)
    with pytest.raises(BadInputError, match=r"d\.json, line \d+: the file ends mid-list"):
        read_table(write(tmp_path / "d.json", text[:-12]))


def test_parquet_is_read_with_missing_values_as_none(tmp_path):
    pd.DataFrame({"a": ["x", None], "b": [1.5, float("nan")]}).to_parquet(tmp_path / "d.parquet")
    rows = read_table(tmp_path / "d.parquet").rows
    assert rows[1].values == {"a": None, "b": None} and rows[0].get("b") == 1.5


# ----- bad files -----
def test_non_utf8_names_the_line_and_byte_offset(tmp_path):
    path = tmp_path / "data.csv"
    path.write_bytes(b"prompt,label\nok,1\ncaf\xe9,0\n")
    with pytest.raises(BadInputError, match=r"data\.csv, line 3: not UTF-8 .*byte offset 21"):
        read_table(path)


def test_binary_garbage_gives_a_clear_error(tmp_path):
    garbage = tmp_path / "data.jsonl"
    rng = random.Random(1)
    garbage.write_bytes(bytes(rng.randrange(256) for _ in range(4096)))
    with pytest.raises(BadInputError, match="binary data|not UTF-8"):
        read_table(garbage)
    zipped = tmp_path / "data.csv"
    zipped.write_bytes(gzip.compress(b"prompt\nhi\n"))
    with pytest.raises(BadInputError, match="gzip archive"):
        read_table(zipped)


def test_empty_unknown_and_missing_files(tmp_path):
    with pytest.raises(BadInputError, match="empty"):
        read_table(write(tmp_path / "e.csv", "\n \n"))
    with pytest.raises(BadInputError, match="unknown file type '.txt'"):
        read_table(write(tmp_path / "e.txt", "x"))
    with pytest.raises(BadInputError, match="no such file"):
        read_source(tmp_path / "absent.jsonl")


def test_a_hub_id_offline_fails_in_one_sentence():
    with pytest.raises(BadInputError) as err:
        read_source("someone/some-dataset", hub_hint="download it")
    assert "download it and pass the local file's path" in str(err.value)
    assert "\n" not in str(err.value)


# ----- columns, labels, duplicates -----
def test_rename_and_require_columns(tmp_path):
    path = write(tmp_path / "data.csv", "objective,assistant_response,prompt\nq,r,old\n")
    table = rename_columns(read_table(path), "prompt=objective,response=assistant_response")
    require_columns(table, ["prompt", "response"])
    assert table.rows[0].values == {"prompt": "q", "response": "r"}
    with pytest.raises(BadInputError, match=r"missing column\(s\) 'label' \(the columns are: "
                                            r"prompt, response\)"):
        require_columns(table, ["prompt", "label"])


def test_renaming_from_an_absent_column_names_it(tmp_path):
    table = read_table(write(tmp_path / "data.csv", "a,b\n1,2\n"))
    with pytest.raises(BadInputError, match=r"missing column 'objective' .*columns are: a, b"):
        rename_columns(table, "prompt=objective")
    with pytest.raises(ValueError, match="unknown field"):
        rename_columns(table, "promt=a", known=["prompt"])


def test_label_mapping_errors_name_file_line_and_field(tmp_path):
    table = read_table(write(tmp_path / "data.csv", "label\n1\n0\nmaybe\n"))
    mapping = parse_label_values("1=complies,0=refuses")
    assert [map_label(r, "label", mapping) for r in table.rows[:2]] == [HumanLabel.COMPLIES,
                                                                         HumanLabel.REFUSES]
    with pytest.raises(BadInputError) as err:
        map_label(table.rows[2], "label", mapping)
    assert str(err.value).endswith(
        "data.csv, line 4, field 'label': unknown value 'maybe' (known: 0, 1)")


def test_numbers_need_a_mapping_words_do_not(tmp_path):
    table = read_table(write(tmp_path / "data.csv", "label\nRefuses\n1\n"))
    assert map_label(table.rows[0], "label", {}) is HumanLabel.REFUSES
    with pytest.raises(BadInputError, match="--label-values"):
        map_label(table.rows[1], "label", {})


def test_ensure_unique_names_both_lines(tmp_path):
    rows = read_table(write(tmp_path / "data.csv", "id\na\nb\na\n")).rows
    with pytest.raises(BadInputError, match=r"line 4, field 'id': duplicate id 'a' \(first on "
                                            r"line 2\)"):
        ensure_unique(((r, r.values["id"]) for r in rows), "id")
