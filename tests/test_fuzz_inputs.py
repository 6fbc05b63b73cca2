"""Property-based fuzzing of the readers of user files: arch.json, settings files, TSV/CSV data.

The property, for arbitrary JSON values, mutated valid files and random bytes: the reader
either returns a valid object (an arch.json that then compiles, a settings object, examples
with finite regression labels) or raises a UserError of one line that names the file. Any
other exception fails the test, and the deadline catches a hang. The number of examples is
bounded so that the whole file takes seconds, not minutes.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import signal
import tempfile
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kd.knowledge import KnowledgeConfig
from nas.base.errors import UserError
from nas.base.safe_files import MAX_MESSAGE
from nas.data.glue_io import load_task_data, read_examples
from nas.data.tasks import custom_task
from nas.run.config import build
from nas.train.search import SearchConfig
from nas.train.student_training import FinetuneConfig
from searchspace.genotype import DEFAULT_OPS, Genotype
from searchspace.student import compile_genotype

FIXTURES = Path(__file__).parent / "fixtures" / "arch" / "valid"
VALID_TEXTS = [path.read_bytes() for path in sorted(FIXTURES.glob("*.json"))]
VALID_DATA = [json.loads(text) for text in VALID_TEXTS]

# database=None: no .hypothesis folder in the checkout. The deadline is generous for a shared
# CI machine; a reader that hangs still blows through it. FUZZ_EXAMPLES=5000 fuzzes longer.
FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", 150)), deadline=5000, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

SCALARS = (st.none() | st.booleans() | st.integers(-40, 40) | st.integers(min_value=-10**150, max_value=10**150)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12)
           | st.sampled_from(DEFAULT_OPS + ("conv9", "zero", "")))
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


class Hang(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: float = 20.0):
    """Fail an example that runs this long: Hypothesis' deadline is only checked once it returns,
    and a hang never returns."""
    def hang(signum, frame):
        raise Hang(f"no answer after {seconds}s")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def folder():
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


def assert_one_line(error: UserError, path: Path) -> None:
    message = str(error)
    assert "\n" not in message and "\r" not in message, message
    assert len(message) <= MAX_MESSAGE, message
    assert str(path) in message, message


def write(path: Path, content) -> Path:
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
    return path


# ----- arch.json -----

def check_arch(path: Path) -> None:
    try:
        with time_limit():
            genotype = Genotype.load(path)
    except UserError as error:
        assert_one_line(error, path)
        return
    # Accepted: it must compile (on the meta device: every module built, no weights allocated)
    # and survive its own round trip.
    with torch.device("meta"):
        compile_genotype(genotype, vocab_size=100, max_positions=64, num_labels=2, pair=False)
    assert Genotype.from_json(genotype.to_json()) == genotype


def plausible(value):
    """A value of the same kind as `value`, so that mutations also land on valid files."""
    if isinstance(value, bool) or value is None:
        return SCALARS
    if isinstance(value, int):
        return st.integers(value - 3, value + 3) | st.integers(-1, 2000)
    if isinstance(value, float):
        return st.floats(-1e6, 1e6) | st.integers(-5, 5)
    if isinstance(value, str):
        return st.sampled_from(DEFAULT_OPS) | st.text(max_size=8)
    return JSON_VALUES


@st.composite
def mutated_arch(draw):
    """A valid arch.json with one to three places (any depth) replaced by arbitrary JSON or removed."""
    data = copy.deepcopy(draw(st.sampled_from(VALID_DATA)))
    for _ in range(draw(st.integers(1, 3))):
        places = []
        stack = [data]
        while stack:
            node = stack.pop()
            keys = list(node) if isinstance(node, dict) else range(len(node)) if isinstance(node, list) else []
            for key in keys:
                places.append((node, key))
                stack.append(node[key])
        if not places:
            break
        node, key = draw(st.sampled_from(places))
        if isinstance(node, dict) and draw(st.booleans()) and draw(st.booleans()):
            del node[key]
        else:
            node[key] = draw(plausible(node[key]) | JSON_VALUES)
    return json.dumps(data)  # NaN and Infinity are written as such: tokens a hand-edited file may hold


@st.composite
def mutated_bytes(draw, originals):
    """A valid file with a few byte ranges overwritten by random bytes."""
    data = bytearray(draw(st.sampled_from(originals)))
    for _ in range(draw(st.integers(1, 4))):
        start = draw(st.integers(0, len(data)))
        stop = draw(st.integers(start, min(len(data), start + 8)))
        data[start:stop] = draw(st.binary(max_size=8))
    return bytes(data)


@FUZZ
@given(value=JSON_VALUES)
def test_arch_loader_on_arbitrary_json(folder, value):
    check_arch(write(folder / "any.json", json.dumps(value)))


@FUZZ
@given(text=mutated_arch())
def test_arch_loader_on_mutated_valid_files(folder, text):
    check_arch(write(folder / "mutated.json", text))


@FUZZ
@given(data=mutated_bytes(VALID_TEXTS) | st.binary(max_size=300))
def test_arch_loader_on_random_bytes(folder, data):
    check_arch(write(folder / "bytes.json", data))


def test_mutations_reach_both_outcomes(folder):
    # Guards the fuzzing itself: a generator that only ever broke files (or never did) would
    # make the properties above vacuous.
    outcomes = set()

    @settings(max_examples=60, deadline=None, database=None, derandomize=True)
    @given(text=mutated_arch())
    def record(text):
        try:
            Genotype.load(write(folder / "outcome.json", text))
            outcomes.add("valid")
        except UserError:
            outcomes.add("refused")

    record()
    assert outcomes == {"valid", "refused"}


# ----- settings files -----

CONFIGS = [(SearchConfig, "search"), (FinetuneConfig, "finetune"), (KnowledgeConfig, "knowledge")]
SETTING_NAMES = sorted({f for cls, _ in CONFIGS for f in cls.__dataclass_fields__})
SETTINGS_DATA = st.dictionaries(st.sampled_from(SETTING_NAMES) | st.text(max_size=6), JSON_VALUES, max_size=4)


def check_settings(path: Path, config) -> None:
    cls, section = config
    try:
        with time_limit():
            built = build(cls, section, path)
    except UserError as error:
        message = str(error)
        assert "\n" not in message and len(message) <= MAX_MESSAGE, message
        # A bad value names the file; a check between settings names the setting.
        assert str(path) in message or message.startswith("setting"), message
        return
    assert isinstance(built, cls)


@FUZZ
@given(data=SETTINGS_DATA, config=st.sampled_from(CONFIGS), as_json=st.booleans())
def test_settings_loader_on_arbitrary_settings(folder, data, config, as_json):
    if as_json:
        path = write(folder / "settings.json", json.dumps(data))
    else:
        path = write(folder / "settings.yaml", yaml.safe_dump(data, allow_unicode=True))
    check_settings(path, config)


@FUZZ
@given(data=st.binary(max_size=200) | st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass"))
       | mutated_bytes([b"search:\n  epochs: 3\n  lr: 0.002\n  hidden_size: 16\n", b'{"epochs": 2, "mode": "soft"}']),
       config=st.sampled_from(CONFIGS), suffix=st.sampled_from([".yaml", ".json"]))
def test_settings_loader_on_random_bytes(folder, data, config, suffix):
    check_settings(write(folder / f"settings{suffix}", data), config)


# ----- TSV / CSV data -----

CELL = (st.text(alphabet=st.sampled_from(list("ab 1.5-e\t,\"\r\n\x00é\ufeff")), max_size=8)
        | st.sampled_from(["0", "1", "1.5", "nan", "inf", "-inf", "1e999", ""]))
ROWS = st.lists(st.lists(CELL, min_size=1, max_size=4), max_size=6)


def check_data(path: Path, labels) -> None:
    task = custom_task(str(path), str(path), "text", "label", labels)
    try:
        with time_limit():
            data = load_task_data(task, None, max_train=3)
            examples = read_examples(data.task, None, "dev")
    except UserError as error:
        assert_one_line(error, path)
        return
    assert examples and all(isinstance(e.text_a, str) for e in examples)
    if labels == "regression":
        assert all(isinstance(e.label, float) and math.isfinite(e.label) for e in examples)
    else:
        assert all(isinstance(e.label, int) and 0 <= e.label < data.task.num_labels for e in examples)


def table(rows, delimiter: str) -> str:
    return "\n".join(delimiter.join(row) for row in [["text", "label"], *rows]) + "\n"


@FUZZ
@given(rows=ROWS, csv_file=st.booleans(), regression=st.booleans())
def test_data_readers_on_arbitrary_rows(folder, rows, csv_file, regression):
    path = write(folder / ("data.csv" if csv_file else "data.tsv"), table(rows, "," if csv_file else "\t"))
    check_data(path, "regression" if regression else None)


VALID_TABLES = [table([["good film", "1"], ["bad film", "0"], ["fine", "1"]], "\t").encode(),
                table([['"a, quoted" text', "0.5"], ["plain", "-2"]], ",").encode("utf-8-sig")]


@FUZZ
@given(data=mutated_bytes(VALID_TABLES) | st.binary(max_size=200), csv_file=st.booleans(), regression=st.booleans())
def test_data_readers_on_random_bytes(folder, data, csv_file, regression):
    path = write(folder / ("bytes.csv" if csv_file else "bytes.tsv"), data)
    check_data(path, "regression" if regression else None)
