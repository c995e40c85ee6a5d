"""Loading datasets in every supported layout, and every class of bad input."""

from __future__ import annotations

import csv
import json
import os
import stat

import pytest

from gasus.errors import BadInputError
from gasus.io import FieldMap, atomic_write, load_examples, write_json, write_jsonl, write_records
from gasus.records import example_id
from tests.conftest import run_cli

ROWS = [
    {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5", "source": "team"},
    {"instruction": "Say hello.", "output": "Hello!"},
    {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5", "source": "team"},
]


def _expected_ids():
    return [example_id("Add the numbers.", "2 and 3", "5"), example_id("Say hello.", "", "Hello!"),
            example_id("Add the numbers.", "2 and 3", "5")]


def test_json_array(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps(ROWS))
    examples = load_examples(path)
    assert [e.id for e in examples] == _expected_ids()
    assert [e.index for e in examples] == [0, 1, 2]
    assert examples[1].input == ""
    assert examples[0].extra == {"source": "team"}
    assert examples[0].to_dict() == ROWS[0]


def test_duplicates_keep_places_and_share_an_id(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps(ROWS))
    examples = load_examples(path)
    assert examples[0].id == examples[2].id
    assert (examples[0].index, examples[2].index) == (0, 2)


def test_id_matches_design_formula():
    import hashlib

    payload = json.dumps({"instruction": "é", "input": "", "output": "x"}, sort_keys=True,
                         separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    assert example_id("é", "", "x") == hashlib.sha256(payload).hexdigest()


def test_jsonl(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n\n")
    assert [e.id for e in load_examples(path)] == _expected_ids()


def test_csv(tmp_path):
    path = tmp_path / "d.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["instruction", "input", "output", "source"])
        writer.writeheader()
        for row in ROWS:
            writer.writerow(row)
    examples = load_examples(path)
    assert [e.id for e in examples] == _expected_ids()
    assert examples[1].extra == {"source": ""}


def test_csv_cell_over_131072_characters_is_read(tmp_path):
    """A valid CSV whose cell is longer than the csv module's default limit reads whole, and the
    process's limit is as it was afterwards."""
    long_output = "y" * 200_000
    path = tmp_path / "long.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["instruction", "input", "output"])
        writer.writeheader()
        writer.writerow({"instruction": "Repeat y.", "input": "", "output": long_output})
        writer.writerow({"instruction": "Say hi.", "input": "", "output": "hi"})
    limit = csv.field_size_limit()
    examples = load_examples(path)
    assert [(e.instruction, len(e.output)) for e in examples] == [("Repeat y.", 200_000), ("Say hi.", 2)]
    assert examples[0].output == long_output
    assert csv.field_size_limit() == limit


def test_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), path)
    examples = load_examples(path)
    assert [e.id for e in examples] == _expected_ids()
    assert examples[1].input == ""  # a null input counts as ""


def test_dolly_format_and_field_mapping(tmp_path):
    path = tmp_path / "dolly.jsonl"
    path.write_text(json.dumps({"instruction": "Say hello.", "context": "", "response": "Hello!", "category": "x"}) + "\n")
    examples = load_examples(path, fields=FieldMap.for_format("dolly"))
    assert examples[0].id == example_id("Say hello.", "", "Hello!")
    assert examples[0].extra == {"category": "x"}
    custom = tmp_path / "custom.json"
    custom.write_text(json.dumps([{"q": "Say hello.", "a": "Hello!"}]))
    examples = load_examples(custom, fields=FieldMap.for_format(instruction="q", output="a"))
    assert examples[0].id == example_id("Say hello.", "", "Hello!")


def test_hub_dataset_offline_is_a_clear_error():
    pytest.importorskip("datasets")
    with pytest.raises(BadInputError, match=r"^nobody-here/no-such-dataset: cannot load the Hugging Face hub dataset"):
        load_examples("nobody-here/no-such-dataset")


@pytest.mark.parametrize("name,content,message", [
    ("missing.json", None, r"missing\.json: no such file"),
    ("bad.json", '[{"instruction": "a", "output": "b"},\n {"instruction": }]',
     r"bad\.json: invalid JSON at line 2, column 18: Expecting value"),
    ("bad.jsonl", '{"instruction": "a", "output": "b"}\n{"instruction": "a", \n',
     r"bad\.jsonl: invalid JSON at line 2, column 22: Expecting property name"),
    ("top.json", '"just a string"', r"top\.json: expected a JSON array of records at the top level, got a string"),
    ("obj.json", '{"a": 1, "b": 2}', r"obj\.json: expected a JSON array of records at the top level, got an object"),
    ("row.json", '[{"instruction": "a", "output": "b"}, 7]', r"row\.json: row 1: expected an object, got a number"),
    ("line.jsonl", '[1, 2]\n', r"line\.jsonl: line 1: expected a JSON object, got an array"),
    ("noinst.json", '[{"instruction": "a", "output": "b"}, {"output": "b"}]',
     r"noinst\.json: row 1: missing required field 'instruction'"),
    ("noout.jsonl", '{"instruction": "a"}\n', r"noout\.jsonl: line 1: missing required field 'output'"),
    ("type.json", '[{"instruction": "a", "output": 5}]', r"type\.json: row 0: field 'output' must be a string, got a number"),
    ("input.json", '[{"instruction": "a", "input": ["x"], "output": "b"}]',
     r"input\.json: row 0: field 'input' must be a string, got an array"),
    ("empty.json", "[]", r"empty\.json: the dataset has no examples"),
    ("empty.jsonl", "\n", r"empty\.jsonl: the dataset has no examples"),
])
def test_bad_input(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(BadInputError, match=message):
        load_examples(path)


def test_undecodable_bytes(tmp_path):
    path = tmp_path / "latin.jsonl"
    path.write_bytes(b'{"instruction": "tea", "output": "b"}\n{"instruction": "caf\xe9", "output": "b"}\n')
    with pytest.raises(BadInputError, match=r"latin\.jsonl: not UTF-8 text: undecodable byte 0xe9 at line 2 \(byte offset 58\)"):
        load_examples(path)


def test_directory_is_not_a_file(tmp_path):
    with pytest.raises(BadInputError, match="is a directory"):
        load_examples(tmp_path)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.jsonl"
    with pytest.raises(RuntimeError):
        with atomic_write(target) as handle:
            handle.write("half")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "out.jsonl"
    write_jsonl(target, [{"a": 1}])

    def rows():
        yield {"a": 2}
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_jsonl(target, rows())
    assert target.read_text() == '{"a": 1}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_write_records_layouts(tmp_path):
    write_records(tmp_path / "a.json", [{"x": 1}])
    write_records(tmp_path / "a.jsonl", [{"x": 1}])
    assert json.loads((tmp_path / "a.json").read_text()) == [{"x": 1}]
    assert (tmp_path / "a.jsonl").read_text() == '{"x": 1}\n'


def test_write_into_missing_directory(tmp_path):
    with pytest.raises(BadInputError, match="does not exist"):
        write_jsonl(tmp_path / "nope" / "x.jsonl", [])


# ---------------------------------------------------------------- issue 18.3


@pytest.mark.parametrize("name", ["kept.jsonl", "kept.ndjson", "kept.JSONL", "kept.json", "kept.JSON"])
def test_files_gasus_writes_read_back_with_unicode_line_breaks_and_any_suffix_case(tmp_path, name):
    rows = [{"instruction": "Join\u2028these", "input": "para\u2029graph", "output": "next\x85line", "n": i}
            for i in range(3)]
    source = tmp_path / "data.jsonl"
    source.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    assert [e.to_dict() for e in load_examples(source)] == rows  # raw separators inside JSON strings
    out = tmp_path / name
    result = run_cli("select", str(source), "--random", "3", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert [e.to_dict() for e in load_examples(out)] == rows
    written = out.read_text(encoding="utf-8")
    assert written.lstrip().startswith("[") == name.lower().endswith(".json")
    if not name.lower().endswith(".json"):
        assert "\u2028" not in written and "\\u2028" in written  # escaped for readers that split on it


# ---------------------------------------------------------------- issue 18.11

DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize("case", ["deep JSON dataset", "deep JSON Lines dataset", "deep answers", "deep cache import",
                                  "deep TOML", "lone surrogate in grade", "lone surrogate in select",
                                  "scores.jsonl is a directory"])
def test_malformed_input_is_one_line_not_a_traceback(tmp_path, case):
    from tests.test_run_dirs import _run_config

    path = tmp_path / "in.jsonl"
    out = str(tmp_path / "out.jsonl")
    if case == "deep JSON dataset":
        path = tmp_path / "in.json"
        path.write_text(DEEP)
        args, message = ["select", str(path), "--random", "1", "-o", out], f"{path}: JSON nested too deeply"
    elif case == "deep JSON Lines dataset":
        path.write_text('{"instruction": "a", "output": "b"}\n' + DEEP + "\n")
        args, message = ["select", str(path), "--random", "1", "-o", out], f"{path}: line 2: JSON nested too deeply"
    elif case == "deep answers":
        path.write_text(DEEP + "\n")
        args, message = ["judge", str(path), str(path), "-o", out], f"{path}: line 1: JSON nested too deeply"
    elif case == "deep cache import":
        path.write_text(json.dumps({"key": "k", "entry": {"value": {}}})[:-2] + ', "x": ' + DEEP + "}}\n")
        args, message = ["cache", "import", str(path)], f"{path}: line 1: JSON nested too deeply"
    elif case == "deep TOML":
        path = tmp_path / "run.toml"
        path.write_text("x = " + DEEP + "\n")
        args, message = ["run", str(path)], f"{path}: invalid TOML: nested too deeply"
    elif case.startswith("lone surrogate"):
        path.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "bad \\ud800 text", "output": "b"}\n')
        args = (["grade", str(path), "-o", out, "--offline"] if case.endswith("grade")
                else ["select", str(path), "--random", "1", "-o", out])
        message = f"{path}: line 2: a string holds a lone surrogate escape (\\ud800), which is not text"
    else:
        config = _run_config(tmp_path, tmp_path / "missing.gguf")
        config.write_text(config.read_text().replace(f'base = "{tmp_path / "missing.gguf"}"\n', ""))
        (tmp_path / "out" / "scores.jsonl").mkdir(parents=True)
        args, message = ["run", str(config)], f"{tmp_path / 'out' / 'scores.jsonl'}: is a directory, not a file"
    result = run_cli(*args)
    assert (result.exit_code, result.output.strip().splitlines()[-1]) == (2, f"Error: {message}")
    assert not (tmp_path / "out.jsonl").exists()


def test_paired_surrogate_escapes_are_text(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"instruction": "smile \\ud83d\\ude00", "output": "\\\\ud800 is six characters"}\n')
    (example,) = load_examples(path)
    assert (example.instruction, example.output) == ("smile \U0001F600", "\\ud800 is six characters")


# ---------------------------------------------------------------- issue 18.12


def _dictionary_parquet(path, rows):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    zeros = pa.array([0] * rows, pa.int32())
    table = pa.table({name: pa.DictionaryArray.from_arrays(zeros, pa.array([text]))
                      for name, text in (("instruction", "Give one word."), ("input", ""), ("output", "Word."))})
    pq.write_table(table, path, use_dictionary=True)
    return path


def test_a_tiny_parquet_file_cannot_take_gigabytes(tmp_path):
    huge = _dictionary_parquet(tmp_path / "huge.parquet", 1_200_000)
    assert huge.stat().st_size < 20_000  # a few kilobytes that read as 1.2M rows
    kept = tmp_path / "kept.json"
    result = run_cli("select", str(huge), "--random", "1", "-o", str(kept))
    assert (result.exit_code, result.output) == (
        2, f"Error: {huge}: holds 1,200,000 rows or more, over --max-rows 1,000,000; give a larger --max-rows "
           "(0: no limit) to read them all\n")
    assert not kept.exists()

    # Read in record batches; --random holds only the rows it draws, and draws as before.
    many = _dictionary_parquet(tmp_path / "many.parquet", 25_000)
    result = run_cli("select", str(many), "--random", "3", "--seed", "7", "--max-rows", "0", "-o", str(kept))
    assert result.output.replace("\n", "") == f"kept 3 of 25000 (0.0%) by random 3 (seed 7) -> {kept}"
    assert json.loads(kept.read_text()) == [{"instruction": "Give one word.", "input": "", "output": "Word."}] * 3
    examples = load_examples(many, max_rows=0)
    assert len(examples) == 25_000 and examples[-1].index == 24_999
    from gasus.selection import select_random, select_random_from
    assert select_random_from(many, 3, 7, max_rows=0) == select_random(examples, 3, 7)

    small = tmp_path / "small.jsonl"
    small.write_text("".join(json.dumps({"instruction": f"T{i}", "output": "O"}) + "\n" for i in range(5)))
    result = run_cli("grade", str(small), "-o", str(tmp_path / "s.jsonl"), "--max-rows", "4")
    assert (result.exit_code, result.output) == (
        2, f"Error: {small}: holds 5 rows or more, over --max-rows 4; give a larger --max-rows (0: no limit) "
           "to read them all\n")


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_outputs_are_created_with_the_users_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        write_jsonl(tmp_path / "scores.jsonl", [{"a": 1}])
        write_json(tmp_path / "summary.json", {"a": 1})
    finally:
        os.umask(old)
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()} == {
        "scores.jsonl": mode, "summary.json": mode}
