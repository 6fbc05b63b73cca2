"""Settings resolved from defaults, a YAML/JSON file, flags and `--set`, in that order."""

import dataclasses
import json
from dataclasses import dataclass

import pytest

from nas.base.errors import UserError
from nas.run.config import as_dict, build, parse_sets, read_config_file


@dataclass(frozen=True)
class Demo:
    epochs: int = 3
    lr: float = 1e-3
    amp: bool = False
    name: str = "demo"
    max_train: int | None = None
    tasks: tuple[str, ...] = ("sst2",)
    sizes: tuple[int, ...] = (1, 2)


def _error(call, *args, **kwargs) -> str:
    with pytest.raises(UserError) as caught:
        call(*args, **kwargs)
    message = str(caught.value)
    assert "\n" not in message, f"error is not one line: {message!r}"
    return message


def _file(tmp_path, text: str, name: str = "config.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults():
    assert build(Demo, "search") == Demo()
    assert build(Demo, "search", None, {}, []) == Demo()


def test_result_is_frozen():
    config = build(Demo, "search", sets=["epochs=4"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.epochs = 5  # type: ignore[misc]
    assert as_dict(config)["epochs"] == 4


def test_flat_yaml_file(tmp_path):
    path = _file(tmp_path, "epochs: 5\nlr: 2.0e-4\namp: true\ntasks: [mrpc, rte]\nmax_train: 100\n")
    assert build(Demo, "search", path) == Demo(epochs=5, lr=2e-4, amp=True, tasks=("mrpc", "rte"), max_train=100)


def test_yaml_exponent_without_a_dot_is_still_a_number(tmp_path):
    # PyYAML reads `1e-4` (no dot) as the string "1e-4"; the float field must still get 0.0001.
    path = _file(tmp_path, "lr: 1e-4\n")
    config = build(Demo, "search", path)
    assert config.lr == 1e-4 and isinstance(config.lr, float)


def test_yaml_with_a_section_per_command(tmp_path):
    path = _file(
        tmp_path,
        "teacher:\n  epochs: 9\n  name: bert\nsearch:\n  epochs: 7\n  sizes: [4, 8]\nfinetune:\n  epochs: 1\n",
    )
    assert build(Demo, "search", path) == Demo(epochs=7, sizes=(4, 8))
    assert build(Demo, "teacher", path) == Demo(epochs=9, name="bert")


def test_flat_keys_apply_when_the_file_has_only_other_sections(tmp_path):
    path = _file(tmp_path, "epochs: 6\nteacher:\n  epochs: 9\n  bogus: 1\n")
    assert build(Demo, "search", path) == Demo(epochs=6)


def test_json_file(tmp_path):
    path = _file(tmp_path, json.dumps({"search": {"lr": 0.5, "amp": False, "max_train": None}}), "config.json")
    assert build(Demo, "search", path) == Demo(lr=0.5)
    path = _file(tmp_path, json.dumps({"epochs": 2, "tasks": ["qqp"]}), "flat.json")
    assert build(Demo, "search", str(path)) == Demo(epochs=2, tasks=("qqp",))


def test_flags_override_the_file_and_none_flags_do_not(tmp_path):
    path = _file(tmp_path, "epochs: 5\nname: from-file\n")
    config = build(Demo, "search", path, flags={"epochs": 8, "name": None})
    assert (config.epochs, config.name) == (8, "from-file")


def test_set_overrides_flags_and_file(tmp_path):
    path = _file(tmp_path, "epochs: 5\nlr: 0.1\n")
    config = build(Demo, "search", path, flags={"epochs": 8}, sets=["epochs=11"])
    assert (config.epochs, config.lr) == (11, 0.1)


def test_dashes_in_keys_name_the_same_setting(tmp_path):
    assert build(Demo, "search", sets=["max-train=50"]).max_train == 50
    assert build(Demo, "search", _file(tmp_path, "max-train: 7\n")).max_train == 7


@pytest.mark.parametrize(
    "assignment, key, expected",
    [
        ("epochs=5", "epochs", 5),
        ("epochs=-1", "epochs", -1),
        ("lr=1e-4", "lr", 1e-4),
        ("lr=2", "lr", 2.0),
        ("amp=true", "amp", True),
        ("amp=True", "amp", True),
        ("amp=yes", "amp", True),
        ("amp=1", "amp", True),
        ("amp=false", "amp", False),
        ("amp=no", "amp", False),
        ("amp=0", "amp", False),
        ("name=42", "name", "42"),
        ("name=a=b", "name", "a=b"),
        ("name=", "name", ""),
        ("max_train=none", "max_train", None),
        ("max_train=null", "max_train", None),
        ("max_train=100", "max_train", 100),
        ("tasks=mrpc,rte", "tasks", ("mrpc", "rte")),
        ("tasks=mrpc", "tasks", ("mrpc",)),
        ("tasks=", "tasks", ()),
        ("sizes=4,8,16", "sizes", (4, 8, 16)),
        (" epochs = 6 ", "epochs", 6),
    ],
)
def test_set_values_are_coerced_to_the_field_type(assignment, key, expected):
    value = getattr(build(Demo, "search", sets=[assignment]), key)
    assert value == expected
    assert type(value) is type(expected)


def test_list_items_from_the_command_line_are_stripped():
    # `--set tasks="mrpc, rte"` is how people type lists; the space is not part of the name.
    assert build(Demo, "search", sets=["tasks=mrpc, rte"]).tasks == ("mrpc", "rte")


@pytest.mark.parametrize(
    "source, key",
    [
        ({"sets": ["epochs=five"]}, "epochs"),
        ({"sets": ["epochs=2.5"]}, "epochs"),
        ({"sets": ["lr=fast"]}, "lr"),
        ({"sets": ["amp=maybe"]}, "amp"),
        ({"sets": ["max_train=lots"]}, "max_train"),
        ({"sets": ["sizes=1,x"]}, "sizes"),
        ({"flags": {"epochs": "many"}}, "epochs"),
        ({"flags": {"amp": 2}}, "amp"),
        ({"yaml": "epochs: 2.5\n"}, "epochs"),
        ({"yaml": "epochs: true\n"}, "epochs"),  # a bool is not an int here
        ({"yaml": "lr: true\n"}, "lr"),
        ({"yaml": "amp: 1\n"}, "amp"),
        ({"yaml": "name: [a, b]\n"}, "name"),
        ({"yaml": "tasks: 3\n"}, "tasks"),
        ({"yaml": "epochs:\n"}, "epochs"),  # empty value is None, and epochs is not optional
        ({"yaml": "epochs: 100000000000000000000000000000000000000000000000000\n"}, "epochs"),  # past 64 bits
        ({"sets": ["max_train=-9223372036854775809"]}, "max_train"),
    ],
)
def test_wrong_type_names_the_key(source, key, tmp_path):
    path = _file(tmp_path, source["yaml"]) if "yaml" in source else None
    message = _error(build, Demo, "search", path, flags=source.get("flags"), sets=source.get("sets"))
    assert repr(key) in message


@pytest.mark.parametrize(
    "source, origin",
    [
        ({"sets": ["epoch=3"]}, "--set"),
        ({"flags": {"epoch": 3}}, "flags"),
        ({"yaml": "epoch: 3\n"}, "config.yaml"),
        ({"yaml": "search:\n  epoch: 3\n"}, "config.yaml"),
    ],
)
def test_unknown_key_is_named_with_where_it_came_from(source, origin, tmp_path):
    path = _file(tmp_path, source["yaml"]) if "yaml" in source else None
    message = _error(build, Demo, "search", path, flags=source.get("flags"), sets=source.get("sets"))
    assert "'epoch'" in message and origin in message and "search" in message
    assert "epochs" in message  # the known settings are listed


def test_parse_sets():
    assert parse_sets(["a=1", "b = two", "c=x=y", "d="]) == {"a": "1", "b": "two", "c": "x=y", "d": ""}
    assert parse_sets(None) == {}
    assert parse_sets([]) == {}
    assert parse_sets(["a=1", "a=2"]) == {"a": "2"}  # the last one wins


@pytest.mark.parametrize("pair", ["epochs", "=5", " =5", "", "epochs:5"])
def test_bad_set_syntax(pair):
    message = _error(parse_sets, [pair])
    assert repr(pair) in message and "key=value" in message
    _error(build, Demo, "search", sets=[pair])


def test_missing_config_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    message = _error(build, Demo, "search", missing)
    assert str(missing) in message and "no such file" in message


@pytest.mark.parametrize(
    "name, text, kind",
    [
        ("bad.yaml", "epochs: [1, 2\nlr: 3\n", "YAML"),
        ("bad.yaml", "epochs: 1\n  lr: 2\n", "YAML"),
        ("bad.yml", "a: b: c\n", "YAML"),
        ("bad.json", '{"epochs": 1,}', "JSON"),
        ("bad.json", "epochs: 1\n", "JSON"),
    ],
)
def test_invalid_file(name, text, kind, tmp_path):
    path = _file(tmp_path, text, name)
    message = _error(read_config_file, path)
    assert str(path) in message and f"not valid {kind}" in message


@pytest.mark.parametrize("text", ["- 1\n- 2\n", "just text\n", "42\n"])
def test_top_level_must_be_a_mapping(text, tmp_path):
    assert "mapping" in _error(read_config_file, _file(tmp_path, text))


@pytest.mark.parametrize("text", ["", "# nothing here\n", "---\n"])
def test_empty_file_means_defaults(text, tmp_path):
    assert build(Demo, "search", _file(tmp_path, text)) == Demo()
