"""The genotype: round trips, the fixed JSON form, and every validation error."""

import copy
import dataclasses
import json
from pathlib import Path

import pytest

from nas.base.errors import UserError
from searchspace.genotype import (DEFAULT_OPS, JSON_KEYS, KNOWN_OPS, PARAMETER_FREE_OPS, Edge, Genotype,
                                  InvalidGenotype)

FIXTURES = Path(__file__).parent / "fixtures" / "arch"
VALID = sorted((FIXTURES / "valid").glob("*.json"))
MINIMAL = {"schema_version": 1, "num_cells": 3, "hidden_size": 128,
           "cell": [[["cnn3", 0], ["max_pool", 1]], [["dilated_cnn5", 2], ["identity", 0]],
                    [["cnn7", 3], ["avg_pool", 2]]]}
MINIMAL_STR = ("K=3 H=128 | n2: cnn3(0) max_pool(1) | n3: dilated_cnn5(2) identity(0) "
               "| n4: cnn7(3) avg_pool(2)")
NINE_ROWS = [[float(e + k) for k in range(len(DEFAULT_OPS))] for e in range(9)]


def minimal(**changes) -> Genotype:
    return Genotype.from_json(json.dumps({**MINIMAL, **changes}))


def full() -> Genotype:
    return Genotype.load(FIXTURES / "valid" / "full.json")


def assert_one_line_error(excinfo, prefix, *fragments):
    message = str(excinfo.value)
    assert "\n" not in message
    assert message.startswith(prefix), message
    for fragment in fragments:
        assert fragment in message, message


def test_default_ops_match_the_op_registry():
    ops = pytest.importorskip("ops")
    if not hasattr(ops, "OP_NAMES"):
        pytest.skip("ops package not written yet")
    assert DEFAULT_OPS == tuple(ops.ADABERT_OPS)
    assert KNOWN_OPS == tuple(ops.OP_NAMES)
    assert PARAMETER_FREE_OPS == frozenset(ops.PARAMETER_FREE)


# ----- valid genotypes and round trips -----

def test_minimal_hand_written_file_loads_with_defaults():
    g = Genotype.load(FIXTURES / "valid" / "minimal.json")
    assert (g.num_cells, g.hidden_size, g.schema_version, g.max_cells) == (3, 128, 1, 8)
    assert g.ops == DEFAULT_OPS
    assert g.cell[1] == (Edge("dilated_cnn5", 2), Edge("identity", 0))
    assert isinstance(g.cell[0][0], Edge) and g.cell[0][0].input == 0
    assert g.op_logits is g.depth_logits is g.costs is g.provenance is g.extra is None
    assert str(g) == MINIMAL_STR


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_json_round_trip(path):
    g = Genotype.load(path)
    assert Genotype.from_json(g.to_json()) == g
    assert Genotype.from_json(g.to_json()).to_json() == g.to_json()


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_save_load_round_trip(path, tmp_path):
    g = Genotype.load(path)
    out = g.save(tmp_path / "run" / "arch.json")  # the folder is created
    assert Genotype.load(out) == g
    assert [p.name for p in out.parent.iterdir()] == ["arch.json"]  # no temp file left


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_string_round_trip_is_lossless_for_the_architecture(path):
    g = Genotype.load(path)
    assert Genotype.from_string(g.to_string()) == g.architecture()
    assert Genotype.from_string(g.to_string()).to_string() == g.to_string()


def test_compact_string_form():
    assert minimal().to_string() == ("v1;K=3;H=128;M=8;cell=cnn3~0,max_pool~1|"
                                     "dilated_cnn5~2,identity~0|cnn7~3,avg_pool~2")
    custom = Genotype.load(FIXTURES / "valid" / "custom_ops.json")
    assert custom.to_string().endswith(";ops=cnn3,max_pool,identity")


def test_full_file_is_the_golden_output_of_to_json():
    path = FIXTURES / "valid" / "full.json"
    g = full()
    assert g.to_json() + "\n" == path.read_text()
    # The golden file predates the searched width; its two fields are tested in tests/test_width.py.
    assert list(json.loads(g.to_json())) == [key for key in JSON_KEYS if key not in ("widths", "width_logits")]
    assert g.provenance["config"]["kd"]["methods"] == ("logits", "hidden")
    assert len(g.op_logits) == 9 and len(g.depth_logits) == g.max_cells


def test_to_json_is_stable_and_leaves_out_unset_fields():
    keys = list(json.loads(minimal().to_json()))
    assert keys == ["schema_version", "num_cells", "hidden_size", "cell", "ops", "max_cells"]
    a = minimal(costs={"params": 1, "flops": 2}, extra={"b": 1, "a": [1, 2]})
    b = minimal(extra={"a": [1, 2], "b": 1}, costs={"flops": 2, "params": 1})
    assert a == b and a.to_json() == b.to_json()


@pytest.mark.parametrize("where", ["supernet_best.pt", "weights/epoch_3.pt"])
def test_search_weights_are_recorded_relative_to_the_file_and_are_not_architecture(where, tmp_path):
    g = minimal(search_weights=where)
    assert Genotype.load(g.save(tmp_path / "arch.json")).search_weights == where
    assert g.architecture().search_weights is None and g.canonical() == minimal().canonical()
    assert minimal().search_weights is None  # an arch.json written before the record: none


def test_construction_normalises_and_equals_the_loaded_form():
    built = Genotype(num_cells=3, hidden_size=128, cell=MINIMAL["cell"])
    assert built == minimal()
    assert isinstance(built.cell, tuple) and isinstance(built.cell[2][1], Edge)


def test_genotype_is_immutable_and_hashable():
    g = full()
    with pytest.raises(dataclasses.FrozenInstanceError):
        g.num_cells = 4
    with pytest.raises(TypeError):
        g.costs["params"] = 0
    with pytest.raises(TypeError):
        g.provenance["config"]["search"]["epochs"] = 1
    assert hash(g) == hash(full()) and len({g, full(), minimal()}) == 2


def test_canonical_sorts_in_edges_and_drops_metadata():
    a = minimal()
    swapped = copy.deepcopy(MINIMAL)
    for node in swapped["cell"]:
        node.reverse()
    b = minimal(cell=swapped["cell"], costs={"params": 5})
    assert a != b
    assert a.canonical() == b.canonical()
    assert a.canonical().to_string() == b.canonical().to_string()
    assert b.canonical().costs is None
    assert a.canonical().cell[1] == (Edge("identity", 0), Edge("dilated_cnn5", 2))
    assert a.canonical().canonical() == a.canonical()


def test_canonical_keeps_different_cells_apart():
    other = copy.deepcopy(MINIMAL)
    other["cell"][2][0] = ["cnn5", 3]
    assert minimal().canonical() != minimal(cell=other["cell"]).canonical()


def test_parameter_free_share():
    assert minimal().parameter_free_share() == 0.5  # max_pool, identity, avg_pool
    convs = [[["cnn3", 0], ["cnn5", 1]], [["cnn7", 2], ["cnn3", 0]], [["cnn3", 3], ["identity", 2]]]
    assert minimal(cell=convs).parameter_free_share() == pytest.approx(1 / 6)


def test_logits_may_come_in_per_cell_blocks():
    g = minimal(op_logits=NINE_ROWS * 3)
    assert len(g.op_logits) == 27
    assert Genotype.from_json(g.to_json()) == g


# ----- validation: fixture files -----

INVALID_FILES = {
    "not_json": (None, "not valid JSON", "line 3, column 3"),
    "top_level_list": (None, "top level must be a JSON object"),
    "typo_num_cell": ("num_cell: ", "unknown field", "did you mean 'num_cells'"),
    "zero_op": ("cell[1][0]: ", "'zero' is not allowed", "dead edge"),
    "unknown_op": ("cell[1][0]: ", "unknown op 'cnn9'", "known: cnn3, cnn5"),
    "forward_input": ("cell[0][1]: ", "input 2 is not an earlier node"),
    "three_edges": ("cell[2]: ", "exactly 2 in-edges, got 3"),
    "two_nodes": ("cell: ", "expected 3 intermediate nodes", "got 2"),
    "schema_v2": ("schema_version: ", "unsupported schema_version 2", "supported: 1"),
    "duplicate_key": ("num_cells: ", "duplicate key"),
    "bool_num_cells": ("num_cells: ", "expected an integer", "boolean"),
    "short_depth_logits": ("depth_logits: ", "expected 8 numbers", "got 3"),
    "unknown_embeddings": ("embeddings: ", "unknown variant 'word2vec'", "known: pca, frozen_projection"),
}


def test_every_invalid_fixture_has_an_expectation():
    assert {p.stem for p in (FIXTURES / "invalid").glob("*.json")} == set(INVALID_FILES)


@pytest.mark.parametrize("name", sorted(INVALID_FILES))
def test_invalid_fixture_files(name):
    path = FIXTURES / "invalid" / f"{name}.json"
    field, *fragments = INVALID_FILES[name]
    with pytest.raises(UserError) as excinfo:
        Genotype.load(path)
    assert_one_line_error(excinfo, f"{path}: {field or ''}", *fragments)


# ----- validation: every field, through from_json -----

def _drop(key):
    def change(d):
        del d[key]
    return change


def _set(key, value):
    def change(d):
        d[key] = value
    return change


def _set_cell(path, value):
    def change(d):
        target = d["cell"]
        for i in path[:-1]:
            target = target[i]
        target[path[-1]] = value
    return change


CASES = [
    # (id, change, field, reason fragment)
    *[(f"missing_{k}", _drop(k), k, "missing required field") for k in
      ("schema_version", "num_cells", "hidden_size", "cell")],
    ("unknown_key", _set("colour", "red"), "colour", "unknown field"),
    ("schema_version_2", _set("schema_version", 2), "schema_version", "supported: 1"),
    ("schema_version_string", _set("schema_version", "1"), "schema_version", "expected an integer"),
    ("num_cells_bool", _set("num_cells", True), "num_cells", "boolean"),
    ("num_cells_float", _set("num_cells", 3.0), "num_cells", "expected an integer"),
    ("num_cells_zero", _set("num_cells", 0), "num_cells", "out of range (allowed: 1..8"),
    ("num_cells_above_max", _set("num_cells", 9), "num_cells", "out of range (allowed: 1..8"),
    ("num_cells_null", _set("num_cells", None), "num_cells", "got null"),
    ("hidden_size_zero", _set("hidden_size", 0), "hidden_size", "out of range (allowed: 1..1024"),
    ("hidden_size_string", _set("hidden_size", "128"), "hidden_size", "expected an integer"),
    ("max_cells_zero", _set("max_cells", 0), "max_cells", "out of range"),
    ("max_cells_bool", _set("max_cells", False), "max_cells", "boolean"),
    ("ops_not_list", _set("ops", "cnn3"), "ops", "expected a list of op names"),
    ("ops_empty", _set("ops", []), "ops", "must not be empty"),
    ("ops_repeated", _set("ops", ["cnn3", "cnn3"]), "ops[1]", "listed twice"),
    ("ops_bad_name", _set("ops", ["cnn3", "cnn 5"]), "ops[1]", "expected an op name"),
    ("op_outside_vocabulary", _set("ops", ["cnn3", "identity"]), "cell[0][1]", "unknown op 'max_pool'"),
    ("cell_not_list", _set("cell", {"n2": []}), "cell", "expected a list of nodes"),
    ("cell_four_nodes", _set("cell", MINIMAL["cell"] + [[["cnn3", 0], ["cnn3", 1]]]),
     "cell", "expected 3 intermediate nodes"),
    ("node_one_edge", _set_cell([0], [["cnn3", 0]]), "cell[0]", "exactly 2 in-edges, got 1"),
    ("node_not_list", _set_cell([0], "cnn3"), "cell[0]", "expected a list of in-edges"),
    ("edge_not_pair", _set_cell([1, 0], ["cnn3"]), "cell[1][0]", "[op, input] pair, got 1"),
    ("edge_is_object", _set_cell([1, 0], {"op": "cnn3"}), "cell[1][0]", "[op, input] pair"),
    ("op_not_string", _set_cell([1, 0], [3, 0]), "cell[1][0]", "op must be a string"),
    ("unknown_op", _set_cell([2, 1], ["cnn9", 0]), "cell[2][1]", "unknown op 'cnn9'"),
    ("zero_op", _set_cell([0, 0], ["zero", 0]), "cell[0][0]", "'zero' is not allowed"),
    ("input_negative", _set_cell([1, 1], ["cnn3", -1]), "cell[1][1]", "input -1 is not an earlier"),
    ("input_self", _set_cell([2, 0], ["cnn3", 4]), "cell[2][0]", "n4 can read nodes 0..3"),
    ("input_bool", _set_cell([0, 0], ["cnn3", False]), "cell[0][0]", "input must be an integer"),
    ("input_string", _set_cell([0, 0], ["cnn3", "0"]), "cell[0][0]", "input must be an integer"),
    ("op_logits_8_rows", _set("op_logits", NINE_ROWS[:8]), "op_logits", "multiple of 9 rows"),
    ("op_logits_empty", _set("op_logits", []), "op_logits", "multiple of 9 rows"),
    ("op_logits_short_row", _set("op_logits", NINE_ROWS[:8] + [[0.0] * 9]), "op_logits[8]",
     "expected 10 numbers"),
    ("op_logits_string", _set("op_logits", [["x"] * 10] + NINE_ROWS[1:]), "op_logits[0][0]",
     "finite number"),
    ("op_logits_nan", _set("op_logits", [[float("nan")] * 10] + NINE_ROWS[1:]), "op_logits[0][0]",
     "finite number"),
    ("depth_logits_long", _set("depth_logits", [0.0] * 9), "depth_logits", "expected 8 numbers"),
    ("depth_logits_bool", _set("depth_logits", [True] + [0.0] * 7), "depth_logits[0]",
     "finite number"),
    ("depth_logits_not_list", _set("depth_logits", 3), "depth_logits", "expected a list"),
    ("costs_not_object", _set("costs", [1, 2]), "costs", "expected an object"),
    ("costs_infinite", _set("costs", {"flops": float("inf")}), "costs.flops", "finite number"),
    ("provenance_string", _set("provenance", "git"), "provenance", "expected an object"),
    ("search_weights_number", _set("search_weights", 3), "search_weights", "expected a file name relative"),
    ("search_weights_empty", _set("search_weights", ""), "search_weights", "1..255 printable characters"),
    ("search_weights_newline", _set("search_weights", "a\nb.pt"), "search_weights", "printable characters"),
    ("search_weights_absolute", _set("search_weights", "/etc/passwd"), "search_weights", "inside arch.json's folder"),
    ("search_weights_windows", _set("search_weights", "C:\\w.pt"), "search_weights", "inside arch.json's folder"),
    ("search_weights_parent", _set("search_weights", "runs/../../w.pt"), "search_weights", "without '..'"),
    ("search_weights_folder", _set("search_weights", "weights/"), "search_weights", "inside arch.json's folder"),
    ("embeddings_unknown", _set("embeddings", "glove"), "embeddings",
     "unknown variant 'glove' (known: pca, frozen_projection, wide_projection, factorised)"),
    ("embeddings_not_string", _set("embeddings", 3), "embeddings", "expected a variant name like 'pca', got an integer"),
]


@pytest.mark.parametrize("change, field, reason", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_validation_errors_name_file_and_field(change, field, reason):
    data = copy.deepcopy(MINIMAL)
    change(data)
    with pytest.raises(UserError) as excinfo:
        Genotype.from_json(json.dumps(data), source="runs/x/arch.json")
    assert_one_line_error(excinfo, f"runs/x/arch.json: {field}: ", reason)
    assert excinfo.value.exit_code == 2


def test_the_unchanged_minimal_case_is_valid():
    # Guards the table above: each case fails because of its change alone.
    assert Genotype.from_json(json.dumps(MINIMAL)) == minimal()


def test_odd_key_names_stay_on_one_line():
    with pytest.raises(UserError) as excinfo:
        Genotype.from_json(json.dumps({**MINIMAL, "bad\nkey": 1}))
    assert_one_line_error(excinfo, "arch.json: 'bad\\nkey': ", "unknown field")


# ----- validation: construction and loading -----

@pytest.mark.parametrize("kwargs, field", [
    ({"num_cells": True}, "num_cells"),
    ({"hidden_size": -4}, "hidden_size"),
    ({"cell": [[("cnn3", 0), ("cnn3", 5)]] * 3}, "cell[0][1]"),
    ({"costs": {"params": object()}}, "costs.params"),
    ({"extra": {1: "x"}}, "extra"),
    ({"op_logits": [[0.0] * 9] * 9}, "op_logits[0]"),
    ({"depth_logits": (0.0,) * 8, "max_cells": 4}, "depth_logits"),
])
def test_construction_validates_too(kwargs, field):
    args = {"num_cells": 3, "hidden_size": 128, "cell": MINIMAL["cell"], **kwargs}
    with pytest.raises(InvalidGenotype) as excinfo:
        Genotype(**args)
    assert_one_line_error(excinfo, f"Genotype: {field}: ")


def test_replace_validates():
    with pytest.raises(UserError, match="num_cells"):
        dataclasses.replace(minimal(), num_cells=20)


def test_load_missing_file_names_it(tmp_path):
    with pytest.raises(UserError) as excinfo:
        Genotype.load(tmp_path / "nope.json")
    assert_one_line_error(excinfo, f"{tmp_path / 'nope.json'}: ", "no such file")


def test_load_a_folder_says_so(tmp_path):
    with pytest.raises(UserError, match="is a folder"):
        Genotype.load(tmp_path)


def test_save_replaces_an_existing_file(tmp_path):
    path = tmp_path / "arch.json"
    path.write_text("old")
    full().save(path)
    assert Genotype.load(path) == full()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arch.json"]


@pytest.mark.parametrize("text, field", [
    ("garbage", None),
    ("v1;K=3;H=128;M=8", "cell"),
    ("v1;K=x;H=128;M=8;cell=cnn3~0,cnn3~1|cnn3~0,cnn3~1|cnn3~0,cnn3~1", "K"),
    ("v1;K=3;H=128;M=8;Q=1;cell=cnn3~0,cnn3~1|cnn3~0,cnn3~1|cnn3~0,cnn3~1", "Q"),
    ("v1;K=3;K=3;H=128;M=8;cell=cnn3~0,cnn3~1|cnn3~0,cnn3~1|cnn3~0,cnn3~1", "K"),
    ("v1;K=3;H=128;M=8;cell=cnn3~0,cnn3|cnn3~0,cnn3~1|cnn3~0,cnn3~1", "cell[0][1]"),
    ("v1;K=3;H=128;M=8;cell=cnn3~0,cnn3~1|cnn3~0,cnn3~1", "cell"),
    ("v2;K=3;H=128;M=8;cell=cnn3~0,cnn3~1|cnn3~0,cnn3~1|cnn3~0,cnn3~1", "schema_version"),
])
def test_from_string_errors(text, field):
    with pytest.raises(UserError) as excinfo:
        Genotype.from_string(text, source="--arch")
    assert_one_line_error(excinfo, f"--arch: {field}: " if field else "--arch: ")
