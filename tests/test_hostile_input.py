"""Hostile files: each is refused with one line naming the file and the field or line, and
exit code 2 through the CLI, after reading a bounded amount (nas/base/safe_files.py).

The arch.json cases go through `nas validate` in a subprocess too, the way a user meets them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nas.base.errors import UserError
from nas.base.safe_files import JSON_CAP, MAX_MESSAGE
from nas.data.glue_io import read_examples
from nas.data.tasks import custom_task
from nas.deploy.latency_table import load_latency_table
from nas.run.config import build, read_config_file
from nas.train.search import SearchConfig
from searchspace.genotype import Genotype

ROOT = Path(__file__).resolve().parent.parent
MINIMAL = {"schema_version": 1, "num_cells": 3, "hidden_size": 128,
           "cell": [[["cnn3", 0], ["max_pool", 1]], [["dilated_cnn5", 2], ["identity", 0]],
                    [["cnn7", 3], ["avg_pool", 2]]]}
MINIMAL_TEXT = json.dumps(MINIMAL)


def with_fields(**changes) -> str:
    return json.dumps({**MINIMAL, **changes})


def raw(text: str, **replace) -> str:
    """MINIMAL's JSON with a field's value replaced by raw JSON text (tokens json.dumps won't write)."""
    data = {**MINIMAL, **{key: f"@{key}@" for key in replace}}
    text = json.dumps(data)
    for key, value in replace.items():
        text = text.replace(f'"@{key}@"', value)
    return text


def deep(depth: int) -> str:
    return raw("", provenance="{\"a\": " * depth + "1" + "}" * depth)


# (id, file content: str, bytes or a callable(path) that makes the path, fragments of the message)
ARCH_CASES = [
    ("int_5000_digits", raw("", num_cells="9" * 5000), ["integer of 5,000 digits"]),
    ("hidden_size_1e30", with_fields(hidden_size=10**30), ["hidden_size", "out of range", "1..1024"]),
    ("million_cells", with_fields(num_cells=10**6, max_cells=10**6), ["max_cells", "1..24"]),
    ("num_cells_over_default_max", with_fields(num_cells=9), ["num_cells", "1..8"]),
    ("deeply_nested_list", "[" * 100_000 + "]" * 100_000, ["nested too deeply"]),
    ("deeply_nested_provenance", deep(200), ["nested too deeply"]),
    ("unknown_op_in_vocabulary", with_fields(ops=["cnn3", "max_pool", "dilated_cnn5", "identity", "cnn7",
                                                  "avg_pool", "conv9"]), ["ops[6]", "'conv9'", "registry"]),
    ("long_op_name_in_vocabulary", with_fields(ops=["cnn3", "x" * 100_000]), ["ops[1]"]),
    ("key_of_100000_chars", with_fields(**{"k" * 100_000: 1}), ["kkk", "100,000 characters", "unknown field"]),
    ("odd_key_of_100000_chars", with_fields(**{"\n" * 100_000: 1}), ["100,000 characters", "unknown field"]),
    ("nan_logit", raw("", depth_logits="[NaN, 0, 0, 0, 0, 0, 0, 0]"), ["depth_logits[0]", "finite"]),
    ("infinite_cost", raw("", costs='{"flops": Infinity}'), ["costs.flops", "finite"]),
    ("overflowing_float", raw("", costs='{"flops": 1e999}'), ["costs.flops", "finite"]),
    ("float_count", with_fields(num_cells=3.0), ["num_cells", "expected an integer"]),
    ("bool_size", with_fields(hidden_size=True), ["hidden_size", "boolean"]),
    ("negative_size", with_fields(hidden_size=-128), ["hidden_size", "out of range"]),
    ("self_loop", with_fields(cell=[[["cnn3", 0], ["cnn3", 2]]] + MINIMAL["cell"][1:]), ["cell[0][1]", "earlier node"]),
    ("duplicate_key", MINIMAL_TEXT[:-1] + ', "hidden_size": 64}', ["hidden_size", "duplicate key"]),
    ("list_top_level", json.dumps([MINIMAL]), ["top level", "object"]),
    ("string_top_level", '"arch"', ["top level"]),
    ("empty_file", "", ["not valid JSON"]),
    ("whitespace_only", " \n\t\n", ["not valid JSON"]),
    ("cell_is_object", with_fields(cell={"n2": []}), ["cell", "expected a list"]),
    ("too_many_logit_blocks", with_fields(op_logits=[[0.0] * 10] * 9 * 9), ["op_logits", "at most 72"]),
    ("utf16", MINIMAL_TEXT.encode("utf-16"), [":1:", "not UTF-8"]),
    ("latin1_in_value", raw("", extra='{"note": "caf\xe9"}').encode("latin-1"), [":1:", "not UTF-8"]),
    ("nul_byte", MINIMAL_TEXT.encode() + b"\x00", ["NUL byte"]),
    ("binary", bytes(range(256)) * 4, ["not UTF-8"]),
    ("dev_zero_link", lambda path: os.symlink("/dev/zero", path), ["not a regular file"]),
    ("dev_null_link", lambda path: os.symlink("/dev/null", path), ["not a regular file"]),
    ("fifo", lambda path: os.mkfifo(path), ["not a regular file"]),
    ("folder", lambda path: path.mkdir(), ["is a folder"]),
    ("missing", lambda path: None, ["no such file"]),
    ("dangling_link", lambda path: os.symlink(path.parent / "nowhere", path), ["no such file"]),
    ("over_the_size_cap", lambda path: os.truncate(path.open("wb").name, JSON_CAP + 1), ["more than the 16 MiB"]),
]


def make(path: Path, content) -> Path:
    if callable(content):
        content(path)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def assert_one_line(message: str, path, fragments):
    assert "\n" not in message and "Traceback" not in message, message
    assert len(message) <= MAX_MESSAGE, len(message)
    assert message.startswith(str(path)), message
    for fragment in fragments:
        assert fragment in message, message


@pytest.mark.parametrize("content, fragments", [c[1:] for c in ARCH_CASES], ids=[c[0] for c in ARCH_CASES])
def test_hostile_arch_json_is_one_line(content, fragments, tmp_path):
    path = make(tmp_path / "arch.json", content)
    with pytest.raises(UserError) as raised:
        Genotype.load(path)
    assert_one_line(str(raised.value), path, fragments)


@pytest.mark.parametrize("content", [
    MINIMAL_TEXT.encode("utf-8-sig"),  # a byte-order mark
    MINIMAL_TEXT.replace(", ", ",\r\n").encode(),  # Windows line ends
    with_fields(num_cells=24, max_cells=24, hidden_size=1024),  # the upper bounds themselves
    with_fields(ops=["avg_pool", "cnn7", "identity", "max_pool", "dilated_cnn5", "cnn3"]),  # a reordered subset
], ids=["bom", "crlf", "upper_bounds", "ops_subset"])
def test_benign_variants_load_and_compile(content, tmp_path):
    torch = pytest.importorskip("torch")
    from searchspace.student import compile_genotype

    genotype = Genotype.load(make(tmp_path / "arch.json", content))
    with torch.device("meta"):  # builds every module without allocating weights
        compile_genotype(genotype, vocab_size=100, max_positions=64, num_labels=2, pair=False)


CLI_CASES = ["int_5000_digits", "deeply_nested_list", "dev_zero_link", "unknown_op_in_vocabulary",
             "hidden_size_1e30", "key_of_100000_chars", "utf16", "folder"]


@pytest.mark.slow
@pytest.mark.parametrize("name", CLI_CASES)
def test_nas_validate_in_a_subprocess(name, tmp_path):
    content, fragments = {c[0]: c[1:] for c in ARCH_CASES}[name]
    path = make(tmp_path / "arch.json", content)
    result = subprocess.run([sys.executable, "-m", "nas", "validate", str(path)], capture_output=True, text=True,
                            timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"nas validate: error: {path}"), result.stderr
    assert len(lines[0]) <= MAX_MESSAGE
    for fragment in fragments:
        assert fragment in lines[0]


# ----- data files -----

def tsv(*rows: str) -> bytes:
    return ("\n".join(rows) + "\n").encode()


DATA_CASES = [
    # (id, content, labels ("regression" or None: inferred), fragments)
    ("not_utf8", tsv("text\tlabel", "good\t1") + b"bad \xff\t0\n", None, [":3:", "not UTF-8", "column 5"]),
    ("not_utf8_past_the_rows_read", tsv("text\tlabel", *["fine\t1"] * 50) + b"\xc3\x28\t0\n", None, [":52:", "not UTF-8"]),
    ("utf16", "text\tlabel\ngood\t1\n".encode("utf-16"), None, [":1:", "not UTF-8"]),
    ("nul_byte", tsv("text\tlabel", "go\x00od\t1"), None, [":2:", "NUL"]),
    ("empty", b"", None, ["empty file"]),
    ("header_only", tsv("text\tlabel"), None, ["no examples"]),
    ("missing_column", tsv("text", "good"), None, [":1:", "no column 'label'"]),
    ("extra_column", tsv("text\tlabel", "good\t1\tx"), None, [":2:", "expected 2 columns, found 3"]),
    ("short_row", tsv("text\tlabel", "good\t1", "bad"), None, [":3:", "expected 2 columns, found 1"]),
    ("empty_label", tsv("text\tlabel", "good\t"), None, [":2:", "empty label"]),
    ("carriage_returns_only", b"text\tlabel\rgood\t1\r", None, [":1:", "cannot split into columns"]),
    ("line_of_2_MiB", tsv("text\tlabel") + b"x" * (2 * 1024 * 1024) + b"\t1\n", None, [":2:", "longer than 1 MiB"]),
    ("nan_score", tsv("text\tlabel", "good\t1.5", "bad\tnan"), "regression", [":3:", "'nan'", "finite"]),
    ("inf_score", tsv("text\tlabel", "good\tinf"), "regression", [":2:", "finite"]),
    ("overflowing_score", tsv("text\tlabel", "good\t1e999"), "regression", [":2:", "finite"]),
    ("word_score", tsv("text\tlabel", "good\thigh"), "regression", [":2:", "not a number"]),
    ("dev_zero_link", lambda path: os.symlink("/dev/zero", path), None, ["not a regular file"]),
    ("folder", lambda path: path.mkdir(), None, ["is a folder"]),
    ("fifo", lambda path: os.mkfifo(path), None, ["not a regular file"]),
]


def custom(path: Path, labels):
    return custom_task(str(path), str(path), "text", "label", labels)


@pytest.mark.parametrize("content, labels, fragments", [c[1:] for c in DATA_CASES], ids=[c[0] for c in DATA_CASES])
def test_hostile_data_file_is_one_line(content, labels, fragments, tmp_path):
    path = make(tmp_path / "train.tsv", content)
    with pytest.raises(UserError) as raised:
        read_examples(custom(path, labels), None, "train", limit=2)  # a quick run still checks the whole file
    assert_one_line(str(raised.value), path, fragments)


def test_bom_and_crlf_data_are_read(tmp_path):
    path = make(tmp_path / "train.tsv", b"\xef\xbb\xbftext\tlabel\r\ngood film\t1.5\r\nbad film\t-2\r\n")
    examples = read_examples(custom(path, "regression"), None, "train")
    assert [(e.text_a, e.label) for e in examples] == [("good film", 1.5), ("bad film", -2.0)]


def test_quoted_csv_with_a_newline_in_a_field_is_read(tmp_path):
    path = make(tmp_path / "train.csv", b'text,label\n"two\nlines, one field",a\nplain,b\n')
    examples = read_examples(custom(path, None), None, "train")
    assert [e.text_a for e in examples] == ["two\nlines, one field", "plain"]


def test_a_non_utf8_training_file_through_nas_teacher(run_cli, tiny_glue, tiny_teacher, tmp_path):
    import shutil

    glue = tmp_path / "glue"
    shutil.copytree(tiny_glue, glue)
    train = glue / "SST-2" / "train.tsv"
    train.write_bytes(train.read_bytes() + b"caf\xe9 film\t1\n")
    lines = train.read_bytes().count(b"\n")
    code, _, err = run_cli("teacher", "--task", "sst2", "--data-dir", glue, "--model", tiny_teacher,
                           "--out", tmp_path / "out", "--max-train", 8, "--device", "cpu")
    assert code == 2 and "Traceback" not in err
    assert err.strip() == f"nas teacher: error: {train}:{lines}: not UTF-8 text (byte 0xe9 at column 4); save the file as UTF-8"
    assert not (tmp_path / "out").exists()


# ----- settings files, latency tables, knowledge manifests -----

CONFIG_CASES = [
    ("settings.yaml", "epochs: " + "9" * 5000, ["a value YAML cannot read"]),
    ("settings.yaml", "[" * 5000 + "]" * 5000, ["nested too deeply"]),
    ("settings.yaml", "a: &a [1, *a]\n", ["contains itself"]),
    ("settings.yaml", "1: 2\n", ["setting names are text"]),
    ("settings.yaml", "lr: .nan\n", ["'lr'", "finite"]),
    ("settings.yaml", "lr: .inf\n", ["'lr'", "finite"]),
    ("settings.yaml", "epochs: 3.0\n", ["'epochs'", "expected an integer"]),
    ("settings.yaml", "epochs: true\n", ["'epochs'", "expected an integer"]),
    ("settings.yaml", "hidden_size: 100000\n", ["'hidden_size'", "1..1024"]),
    ("settings.yaml", "max_cells: 1000000\n", ["'max_cells'", "1..24"]),
    ("settings.yaml", "k" * 100_000 + ": 1\n", []),
    ("settings.yaml", "- a\n- b\n", ["top level"]),
    ("settings.yaml", "a: 2024-13-45\n", ["YAML cannot read"]),
    ("settings.yaml", "x: [\n", ["not valid YAML"]),
    ("settings.json", '{"epochs": ' + "9" * 5000 + "}", ["5,000 digits"]),
    ("settings.json", '{"lr": NaN}', ["NaN"]),
    ("settings.json", '{"epochs": 1, "epochs": 2}', ["duplicate key"]),
    ("settings.json", '{"' + "k" * 100_000 + '": 1}', ["unknown setting", "100,000 characters"]),
    ("settings.yaml", b"\xff\xfe\x00e", ["not UTF-8"]),
    ("settings.yaml", lambda path: os.symlink("/dev/zero", path), ["not a regular file"]),
    ("settings.yaml", lambda path: path.mkdir(), ["is a folder"]),
]


@pytest.mark.parametrize("name, content, fragments", CONFIG_CASES, ids=[f"case{i}" for i in range(len(CONFIG_CASES))])
def test_hostile_settings_file_is_one_line(name, content, fragments, tmp_path):
    path = make(tmp_path / name, content)
    with pytest.raises(UserError) as raised:
        build(SearchConfig, "search", path)
    message = str(raised.value)
    assert "\n" not in message and len(message) <= MAX_MESSAGE, message
    assert str(path) in message or message.startswith("setting "), message
    for fragment in fragments:
        assert fragment in message, message


def test_an_empty_settings_file_is_no_settings(tmp_path):
    assert read_config_file(make(tmp_path / "empty.yaml", "")) == {}


@pytest.mark.parametrize("content, fragments", [
    ('{"kind": ' + "1" * 5000 + "}", ["digits"]),
    ("[" * 100_000, ["nested too deeply"]),
    (lambda path: os.symlink("/dev/zero", path), ["not a regular file"]),
    ('{"kind": "' + "k" * 100_000 + '"}', ["kind", "characters"]),
    ('{"kind": "adabert-latency-table", "schema_version": 1, "hidden_size": 16, "device": {"type": "cpu"}, '
     '"method": "fast", "entries": []}', ["method", "expected an object"]),
])
def test_hostile_latency_table_is_one_line(content, fragments, tmp_path):
    path = make(tmp_path / "table.json", content)
    with pytest.raises(UserError) as raised:
        load_latency_table(path)
    assert_one_line(str(raised.value), path, fragments)


MANIFEST_CASES = [
    ("[" * 100_000, ["nested too deeply"]),
    ('{"format_version": ' + "1" * 5000 + "}", ["digits"]),
    ("[]", ["top level"]),
    ('{"format_version": 3}', ["format_version", "not supported"]),
    ('{"format_version": 1}', ["older `nas knowledge`", "rerun"]),
    ('{"format_version": 2, "task": "sst2", "inputs": {"max_length": 1e999}}', ["out of range"]),
    ('{"format_version": 2, "task": "sst2", "inputs": {"max_length": 64}, "splits": {"../x": 3}}',
     ["splits", "not a split name"]),
    ('{"format_version": 2, "task": "sst2", "inputs": {"max_length": 64}, "splits": {"train": -1}}',
     ["splits.train", "expected an integer >= 0"]),
    (lambda path: os.symlink("/dev/zero", path), ["not a regular file"]),
    (b"\xff\xfe{}", ["not UTF-8"]),
]


@pytest.mark.parametrize("content, fragments", MANIFEST_CASES, ids=[f"case{i}" for i in range(len(MANIFEST_CASES))])
def test_hostile_knowledge_manifest_is_one_line(content, fragments, tmp_path):
    from kd.knowledge import Knowledge

    path = make(tmp_path / "manifest.json", content)
    with pytest.raises(UserError) as raised:
        Knowledge(tmp_path)
    assert_one_line(str(raised.value), path, fragments)


def test_a_hostile_manifest_through_nas_finetune(run_cli, tmp_path):
    (tmp_path / "k").mkdir()
    (tmp_path / "k" / "manifest.json").write_text('{"format_version": 2, "task": ' + "[" * 100_000)
    arch = make(tmp_path / "arch.json", MINIMAL_TEXT)
    data = make(tmp_path / "data.tsv", tsv("text\tlabel", "good\t1", "bad\t0"))
    code, _, err = run_cli("finetune", "--arch", arch, "--teacher", tmp_path, "--knowledge", tmp_path / "k",
                           "--task", "custom", "--train", data, "--dev", data, "--text-columns", "text",
                           "--label-column", "label", "--out", tmp_path / "out")
    assert code == 2 and "Traceback" not in err
    assert err.strip() == f"nas finetune: error: {tmp_path / 'k' / 'manifest.json'}: nested too deeply (at most 64 levels)"


# ----- teacher folders -----

TEACHER_CASES = [
    ("config.json", lambda path: path.write_text("[" * 100_000), ["config.json", "nested too deeply"]),
    ("config.json", lambda path: path.write_text('{"vocab_size": ' + "9" * 5000 + "}"), ["config.json:1", "5,000 digits"]),
    ("config.json", lambda path: (path.unlink(), os.symlink("/dev/zero", path)), ["config.json", "not a regular file"]),
    ("tokenizer_config.json", lambda path: path.write_bytes(b"\xff\xfe{}"), ["tokenizer_config.json:1", "not UTF-8"]),
    ("metrics.json", lambda path: path.write_text('{"max_length": 1e300}'), ["metrics.json", "max_length"]),
    ("model.safetensors", lambda path: path.write_bytes(b"garbage"), ["cannot load the model weights"]),
    ("model.safetensors", lambda path: path.write_bytes(path.read_bytes()[:300]), ["cannot load the model weights"]),
]


@pytest.mark.parametrize("name, spoil, fragments", TEACHER_CASES, ids=[f"case{i}" for i in range(len(TEACHER_CASES))])
def test_a_hostile_teacher_folder_through_nas_knowledge(name, spoil, fragments, run_cli, tiny_glue, tiny_teacher, tmp_path):
    import shutil

    teacher = tmp_path / "teacher"
    shutil.copytree(tiny_teacher, teacher)
    spoil(teacher / name)
    code, _, err = run_cli("knowledge", "--teacher", teacher, "--task", "sst2", "--data-dir", tiny_glue,
                           "--out", tmp_path / "k", "--max-train", 8, "--max-dev", 8, "--device", "cpu")
    assert code == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"nas knowledge: error: {teacher}"), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert not (tmp_path / "k").exists()


def test_a_compact_string_with_a_5000_digit_count_is_one_line():
    cell = "cnn3~0,cnn3~1|cnn3~0,cnn3~1|cnn3~0,cnn3~1"
    with pytest.raises(UserError) as raised:
        Genotype.from_string(f"v1;K={'9' * 5000};H=16;M=8;cell={cell}", source="trials.csv:3")
    assert_one_line(str(raised.value), "trials.csv:3", ["K: expected an integer"])
