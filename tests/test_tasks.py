"""The task registry and the GLUE/custom readers, against a small fake GLUE folder.

`tests/fixtures/glue/<FOLDER>/` copies the real layouts: SST-2's trailing space before the tab,
CoLA without a header, MRPC's UTF-8 BOM, MNLI's 12-column train and 16-column dev files, and a
sentence that begins with `"` in several tasks (the files are read with csv.QUOTE_NONE, so the
quote must come through as text). Every test over tasks is parametrized over `GLUE_TASKS`, so a
newly registered task fails here until its fixture and golden rows are added.
"""

import shutil
from pathlib import Path

import pytest

from nas.base.errors import UserError
from nas.data import tasks as tasks_module
from nas.data.glue_io import Example, load_task_data, read_examples, split_path
from nas.data.tasks import GLUE_TASKS, TASK_NAMES, canonical_task_name, get_task, resolve_data_dir

FIXTURES = Path(__file__).parent / "fixtures" / "glue"
CUSTOM = FIXTURES / "custom"

# Golden labels per split, as the reader must map them (class index, or the score for STS-B).
# MNLI: contradiction=0, entailment=1, neutral=2; QNLI/RTE: entailment=0, not_entailment=1.
LABELS = {
    "sst2": {"train": [0, 0, 1, 1, 0], "dev": [1, 0, 1, 1]},
    "cola": {"train": [1, 1, 0, 1, 0, 1], "dev": [1, 1, 0, 1]},
    "mrpc": {"train": [1, 0, 0, 1], "dev": [1, 0, 0, 1]},
    "qqp": {"train": [0, 1, 0, 1, 0], "dev": [0, 0, 1, 1]},
    "stsb": {"train": [5.0, 3.8, 2.6, 2.6, 0.5], "dev": [5.0, 4.75, 5.0, 1.0]},
    "mnli": {"train": [2, 1, 0, 1, 2], "dev": [2, 0, 1, 0], "dev_mismatched": [0, 1, 2]},
    "qnli": {"train": [1, 1, 0, 0], "dev": [0, 1, 1, 0]},
    "rte": {"train": [1, 0, 0, 0, 1], "dev": [1, 0, 1, 0]},
    "wnli": {"train": [1, 1, 0, 0], "dev": [0, 1, 0, 1]},
}

# The first training row of each task: (text_a, text_b), whitespace around fields stripped.
FIRST_TRAIN = {
    "sst2": ("hide new secretions from the parental units", None),
    "cola": ("Our friends won't buy this analysis, let alone the next one we propose.", None),
    "mrpc": (
        'Amrozi accused his brother , whom he called " the witness " , of deliberately distorting his evidence .',
        'Referring to him as only " the witness " , Amrozi accused his brother of deliberately distorting his evidence .',
    ),
    "qqp": (
        "How is the life of a math student? Could you describe your own experiences?",
        "Which level of prepration is enough for the exam jlpt5?",
    ),
    "stsb": ("A plane is taking off.", "An air plane is taking off."),
    "mnli": (
        "Conceptually cream skimming has two basic dimensions - product and geography.",
        "Product and geography are what make cream skimming work.",
    ),
    "qnli": (
        "When did the third Digimon series begin?",
        "Unlike the two seasons before it and most of the seasons that followed, Digimon Tamers takes a darker "
        "and more realistic approach to its story.",
    ),
    "rte": ("No Weapons of Mass Destruction Found in Iraq Yet.", "Weapons of Mass Destruction Found in Iraq."),
    "wnli": (
        "I stuck a pin through a carrot. When I pulled the pin out, it had a hole.",
        "The carrot had a hole.",
    ),
}

# A field that begins with a double quote: (split, row, attribute, exact text).
QUOTED = {
    "sst2": ("train", 3, "text_a", '" the emperor \'s new clothes " is a fine , funny film'),
    "cola": ("train", 3, "text_a", '"Who did you say left?" asked Mary.'),
    "mrpc": ("dev", 0, "text_b", '" The foodservice pie business does not fit our long-term growth strategy .'),
    "qqp": ("train", 2, "text_a", '"What causes stool color to change to yellow?"'),
    "stsb": ("train", 2, "text_a", '"Syria" talks to begin in Geneva.'),
    "mnli": ("dev_mismatched", 1, "text_a", '" The answer is no . "'),
    "qnli": (
        "train",
        2,
        "text_b",
        '"He bases this interpretation on the fact that examples such as the one described above refer to two '
        'things: assertions and the facts to which they refer."',
    ),
    "rte": ("train", 3, "text_a", '"Judie Vivian, chief executive at ProMedica, said the hospital is ready."'),
    "wnli": ("train", 3, "text_a", '"Mark told Pete many lies about himself," said the narrator.'),
}

NUM_LABELS = {"sst2": 2, "cola": 2, "mrpc": 2, "qqp": 2, "stsb": 1, "mnli": 3, "qnli": 2, "rte": 2, "wnli": 2}
PRIMARY_METRIC = {
    "sst2": "accuracy", "cola": "matthews", "mrpc": "f1", "qqp": "f1", "stsb": "pearson",
    "mnli": "accuracy", "qnli": "accuracy", "rte": "accuracy", "wnli": "accuracy",
}  # fmt: skip

ALL_TASKS = sorted(GLUE_TASKS)
HEADER_TASKS = sorted(name for name, task in GLUE_TASKS.items() if task.has_header)
CLASSIFICATION_TASKS = sorted(name for name, task in GLUE_TASKS.items() if not task.is_regression)


def _error(call, *args, **kwargs) -> str:
    """The message of the UserError that `call` raises; it must be a single line."""
    with pytest.raises(UserError) as caught:
        call(*args, **kwargs)
    message = str(caught.value)
    assert "\n" not in message, f"error is not one line: {message!r}"
    return message


def _copy_task(name: str, tmp_path: Path) -> tuple:
    """A private copy of one task's fixture folder: (data dir, task, train file)."""
    task = GLUE_TASKS[name]
    shutil.copytree(FIXTURES / task.folder, tmp_path / task.folder)
    return tmp_path, task, tmp_path / task.folder / task.train_file


def _lines(path: Path) -> list[str]:
    # Read as utf-8 (not -sig) so MRPC's BOM survives a rewrite.
    return path.read_text(encoding="utf-8").split("\n")


def _write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines), encoding="utf-8")


def _label_position(task, lines: list[str]) -> int:
    if not task.has_header:
        return task.label_column
    header = [name.strip("\ufeff") for name in lines[0].split("\t")]
    return header.index(task.label_column)


# --- the registry -------------------------------------------------------------------------


def test_golden_tables_cover_every_registered_task():
    for table in (LABELS, FIRST_TRAIN, QUOTED, NUM_LABELS, PRIMARY_METRIC):
        assert set(table) == set(GLUE_TASKS)
    assert TASK_NAMES == tuple(GLUE_TASKS) + ("custom",)


@pytest.mark.parametrize("name", ALL_TASKS)
def test_task_shape(name):
    task = GLUE_TASKS[name]
    assert task.name == name
    assert task.num_labels == NUM_LABELS[name]
    assert task.primary_metric == PRIMARY_METRIC[name]
    assert task.is_regression == (name == "stsb")
    assert task.is_pair == (FIRST_TRAIN[name][1] is not None)
    assert (FIXTURES / task.folder / task.train_file).is_file()
    assert set(task.dev_files) == set(LABELS[name]) - {"train"}
    assert "dev" in task.dev_files  # the split models are selected on


@pytest.mark.parametrize(
    "alias, name",
    [
        ("SST-2", "sst2"), ("sst-2", "sst2"), ("SST2", "sst2"), ("sst_2", "sst2"), (" sst2 ", "sst2"),
        ("STS-B", "stsb"), ("sts-b", "stsb"), ("MNLI", "mnli"), ("CoLA", "cola"), ("QQP", "qqp"),
        ("Custom", "custom"),
    ],
)  # fmt: skip
def test_task_name_aliases(alias, name):
    assert canonical_task_name(alias) == name
    if name != "custom":
        assert get_task(alias) is GLUE_TASKS[name]


@pytest.mark.parametrize("name", ["squad", "mnli-mm", "", "sst3"])
def test_unknown_task_is_a_user_error_listing_known_tasks(name):
    message = _error(get_task, name)
    assert repr(name) in message
    for known in TASK_NAMES:
        assert known in message


# --- reading every GLUE task --------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_TASKS)
def test_loads_train_and_every_dev_split(name):
    task = GLUE_TASKS[name]
    data = load_task_data(task, FIXTURES)
    assert data.task is task
    splits = {"train": data.train, **data.dev}
    assert set(splits) == set(LABELS[name])
    for split, examples in splits.items():
        assert [e.label for e in examples] == LABELS[name][split], split
        for example in examples:
            assert isinstance(example, Example)
            assert example.text_a and example.text_a == example.text_a.strip()
            if task.is_pair:
                assert example.text_b and example.text_b == example.text_b.strip()
            else:
                assert example.text_b is None
            if task.is_regression:
                assert isinstance(example.label, float)
                assert example.label == float(example.raw_label)
            else:
                assert isinstance(example.label, int)
                assert task.labels[example.label] == example.raw_label
    first = data.train[0]
    assert (first.text_a, first.text_b) == FIRST_TRAIN[name]


@pytest.mark.parametrize("name", ALL_TASKS)
def test_sentence_starting_with_a_quote_is_read_verbatim(name):
    split, row, attribute, text = QUOTED[name]
    examples = read_examples(GLUE_TASKS[name], FIXTURES, split)
    assert getattr(examples[row], attribute) == text
    # QUOTE_NONE: a quote never swallows the tab or newline after it, so the row count holds.
    assert len(examples) == len(LABELS[name][split])


def test_mrpc_header_with_byte_order_mark():
    path = FIXTURES / "MRPC" / "train.tsv"
    assert path.read_bytes().startswith(b"\xef\xbb\xbfQuality\t")
    examples = read_examples(GLUE_TASKS["mrpc"], FIXTURES, "train")
    assert [e.raw_label for e in examples] == ["1", "0", "0", "1"]


def test_mnli_dev_files_have_more_columns_than_train():
    mnli = FIXTURES / "MNLI"
    widths = {p.name: p.read_text().splitlines()[0].count("\t") + 1 for p in mnli.glob("*.tsv")}
    assert widths == {"train.tsv": 12, "dev_matched.tsv": 16, "dev_mismatched.tsv": 16}
    # gold_label is read by name, not position: the first dev row's label2 says entailment.
    assert read_examples(GLUE_TASKS["mnli"], FIXTURES, "dev")[0].raw_label == "neutral"


@pytest.mark.parametrize("name", ALL_TASKS)
def test_split_paths(name):
    task = GLUE_TASKS[name]
    assert split_path(task, FIXTURES, "train") == FIXTURES / task.folder / "train.tsv"
    for split, file in task.dev_files.items():
        assert split_path(task, FIXTURES, split) == FIXTURES / task.folder / file


@pytest.mark.parametrize("name", ALL_TASKS)
def test_limit_keeps_the_first_rows(name):
    task = GLUE_TASKS[name]
    data = load_task_data(task, FIXTURES, max_train=2, max_dev=1)
    assert [e.label for e in data.train] == LABELS[name]["train"][:2]
    assert (data.train[0].text_a, data.train[0].text_b) == FIRST_TRAIN[name]
    for split, examples in data.dev.items():
        assert [e.label for e in examples] == LABELS[name][split][:1]
    everything = load_task_data(task, FIXTURES, max_train=1000)
    assert len(everything.train) == len(LABELS[name]["train"])


@pytest.mark.parametrize("name", ALL_TASKS)
def test_limit_reads_no_further_than_the_first_rows(name, tmp_path):
    """`max_train=2` must not even parse row 3: a quick run on a file broken later still works."""
    data_dir, task, train = _copy_task(name, tmp_path)
    lines = _lines(train)
    third_row = 3 if task.has_header else 2  # index into lines
    lines[third_row] += "\tstray"
    _write_lines(train, lines)
    data = load_task_data(task, data_dir, max_train=2)
    assert [e.label for e in data.train] == LABELS[name]["train"][:2]


def test_with_train_false_reads_only_dev(tmp_path):
    data_dir, task, train = _copy_task("rte", tmp_path)
    train.unlink()
    data = load_task_data(task, data_dir, with_train=False)
    assert data.train == []
    assert [e.label for e in data.dev["dev"]] == LABELS["rte"]["dev"]


# --- bad GLUE inputs: one-line UserErrors naming the file and line ------------------------


@pytest.mark.parametrize("name", ALL_TASKS)
def test_missing_file(name, tmp_path):
    data_dir, task, _ = _copy_task(name, tmp_path)
    for file in [task.train_file, *task.dev_files.values()]:
        missing = tmp_path / task.folder / file
        missing.unlink()
        message = _error(load_task_data, task, data_dir)
        assert str(missing) in message and "no such file" in message
        shutil.copy(FIXTURES / task.folder / file, missing)


@pytest.mark.parametrize("name", ALL_TASKS)
def test_wrong_column_count_names_the_line(name, tmp_path):
    data_dir, task, train = _copy_task(name, tmp_path)
    lines = _lines(train)
    lines[3] += "\textra"  # line 4 of the file gets one tab too many
    _write_lines(train, lines)
    width = len(lines[0].split("\t"))
    message = _error(load_task_data, task, data_dir)
    assert message.startswith(f"{train}:4: ")
    assert f"expected {width} columns, found {width + 1}" in message


@pytest.mark.parametrize("name", ALL_TASKS)
def test_too_few_columns_names_the_line(name, tmp_path):
    data_dir, task, train = _copy_task(name, tmp_path)
    lines = _lines(train)
    lines[2] = lines[2].rsplit("\t", 1)[0]
    _write_lines(train, lines)
    assert _error(read_examples, task, data_dir, "train").startswith(f"{train}:3: ")


@pytest.mark.parametrize("name", ALL_TASKS)
def test_label_outside_the_label_set_names_the_line(name, tmp_path):
    data_dir, task, _ = _copy_task(name, tmp_path)
    dev = tmp_path / task.folder / task.dev_files["dev"]
    lines = _lines(dev)
    fields = lines[2].split("\t")
    fields[_label_position(task, lines)] = "maybe"
    lines[2] = "\t".join(fields)
    _write_lines(dev, lines)
    message = _error(load_task_data, task, data_dir)
    assert message.startswith(f"{dev}:3: ")
    assert "'maybe'" in message
    if task.is_regression:
        assert "not a number" in message
    else:
        assert ", ".join(task.labels) in message


@pytest.mark.parametrize("score", ["", "five", "4,5", "N/A"])
def test_stsb_score_that_is_not_a_number(score, tmp_path):
    data_dir, task, train = _copy_task("stsb", tmp_path)
    lines = _lines(train)
    lines[4] = lines[4].rsplit("\t", 1)[0] + "\t" + score
    _write_lines(train, lines)
    message = _error(read_examples, task, data_dir, "train")
    assert message.startswith(f"{train}:5: ") and "not a number" in message and repr(score) in message


@pytest.mark.parametrize("name", ALL_TASKS)
def test_empty_split(name, tmp_path):
    data_dir, task, train = _copy_task(name, tmp_path)
    # Header only; CoLA has no header, so its "empty" file is truly empty.
    _write_lines(train, [_lines(train)[0], ""] if task.has_header else [""])
    message = _error(load_task_data, task, data_dir)
    assert str(train) in message and "no examples" in message


@pytest.mark.parametrize("name", HEADER_TASKS)
def test_header_missing_a_column(name, tmp_path):
    data_dir, task, train = _copy_task(name, tmp_path)
    lines = _lines(train)
    fields = lines[0].split("\t")
    fields[_label_position(task, lines)] = "labels"
    lines[0] = "\t".join(fields)
    _write_lines(train, lines)
    message = _error(read_examples, task, data_dir, "train")
    assert message.startswith(f"{train}:1: ") and repr(task.label_column) in message


def test_file_without_even_a_header(tmp_path):
    data_dir, task, train = _copy_task("sst2", tmp_path)
    train.write_text("")
    message = _error(read_examples, task, data_dir, "train")
    assert str(train) in message and "header" in message


# --- a user's own task --------------------------------------------------------------------


def _custom(suffix: str, **overrides):
    arguments = dict(
        train=str(CUSTOM / f"reviews_train.{suffix}"),
        dev=str(CUSTOM / f"reviews_dev.{suffix}"),
        text_columns="review,title",
        label_column="sentiment",
    )
    return get_task("custom", **{**arguments, **overrides})


def test_custom_csv_with_quoted_fields():
    task = _custom("csv")
    assert (task.delimiter, task.quoted, task.is_pair) == (",", True, True)
    data = load_task_data(task, None)
    # Labels are the sorted set seen in train; the returned task carries them.
    assert data.task.labels == ("negative", "neutral", "positive")
    assert data.task.metrics == ("accuracy",)
    assert [e.label for e in data.train] == [2, 0, 1, 0, 2]
    assert (data.train[0].text_a, data.train[0].text_b) == ("Great phone, battery lasts two days", "Love it")
    assert (data.train[1].text_a, data.train[1].text_b) == ("Broke after a week", "Cheap, flimsy")
    assert data.train[3].text_a == 'The "pro" model is no better'
    assert [e.label for e in data.dev["dev"]] == [0, 1, 2]
    assert (data.dev["dev"][2].text_a, data.dev["dev"][2].text_b) == ("Fast, light, and cheap", "Best buy, really")


def test_custom_tsv_reads_quotes_as_text():
    task = _custom("tsv")
    assert (task.delimiter, task.quoted) == ("\t", False)
    data = load_task_data(task, None)
    assert data.task.labels == ("negative", "neutral", "positive")
    assert [e.label for e in data.train] == [2, 0, 1, 2]
    assert data.train[2].text_a == '"It works," I guess'
    assert data.train[0].text_a == "Great phone, battery lasts two days"
    assert [e.label for e in data.dev["dev"]] == [0, 1]


def test_custom_single_text_column_and_given_labels():
    task = _custom("csv", text_columns="review", labels="positive,neutral,negative")
    data = load_task_data(task, None)
    assert data.task.labels == ("positive", "neutral", "negative")  # given order is kept
    assert [e.label for e in data.train] == [0, 2, 1, 2, 0]
    assert all(e.text_b is None for e in data.train)


def test_custom_regression():
    task = _custom("csv", text_columns="review", label_column="id", labels="regression")
    data = load_task_data(task, None)
    assert data.task.is_regression and data.task.metrics == ("pearson", "spearman")
    assert [e.label for e in data.train] == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_custom_two_labels_report_f1(tmp_path):
    train = tmp_path / "train.csv"
    train.write_text("text,label\ngood,yes\nbad,no\nfine,yes\n")
    task = get_task("custom", train=str(train), dev=str(train), text_columns="text", label_column="label")
    data = load_task_data(task, None)
    assert data.task.labels == ("no", "yes") and data.task.metrics == ("accuracy", "f1")
    assert [e.label for e in data.train] == [1, 0, 1]


def test_custom_dev_label_unseen_in_train(tmp_path):
    dev = tmp_path / "dev.csv"
    dev.write_text('id,review,title,sentiment\n6,"Fine, mostly",OK,neutral\n7,"Good, bad",Hmm,mixed\n')
    task = _custom("csv", dev=str(dev))
    message = _error(load_task_data, task, None)
    assert message.startswith(f"{dev}:3: ") and "'mixed'" in message


def test_custom_csv_wrong_column_count(tmp_path):
    train = tmp_path / "train.csv"
    train.write_text('id,review,title,sentiment\n1,"a, b",t,positive\n2,a, b,t,negative\n')
    task = _custom("csv", train=str(train))
    assert _error(load_task_data, task, None).startswith(f"{train}:3: expected 4 columns, found 5")


@pytest.mark.parametrize(
    "overrides, needle",
    [
        ({"train": ""}, "--train"),
        ({"dev": ""}, "--dev"),
        ({"text_columns": ""}, "--text-columns"),
        ({"label_column": ""}, "--label-column"),
        ({"text_columns": "a,b,c"}, "--text-columns"),
    ],
)
def test_custom_task_needs_its_arguments(overrides, needle):
    assert needle in _error(_custom, "csv", **overrides)


def test_custom_missing_column(tmp_path):
    task = _custom("csv", label_column="stars")
    message = _error(load_task_data, task, None)
    assert message.startswith(f"{CUSTOM / 'reviews_train.csv'}:1: ") and "'stars'" in message


# --- finding the data folder --------------------------------------------------------------


@pytest.fixture
def nowhere(tmp_path, monkeypatch):
    """No GLUE_DIR, a working folder and a checkout with no ../shared/data/glue beside them."""
    monkeypatch.delenv("GLUE_DIR", raising=False)
    work = tmp_path / "work" / "here"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    checkout = tmp_path / "checkout" / "repo"
    monkeypatch.setattr(tasks_module, "__file__", str(checkout / "nas" / "data" / "tasks.py"))
    return tmp_path


def test_explicit_data_dir(tmp_path):
    assert resolve_data_dir(FIXTURES) == FIXTURES
    assert resolve_data_dir(str(FIXTURES)) == FIXTURES
    missing = tmp_path / "nope"
    message = _error(resolve_data_dir, missing)
    assert str(missing) in message and "--data-dir" in message


def test_explicit_data_dir_beats_glue_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("GLUE_DIR", str(tmp_path))
    assert resolve_data_dir(FIXTURES) == FIXTURES


def test_glue_dir_environment_variable(nowhere, monkeypatch):
    monkeypatch.setenv("GLUE_DIR", str(FIXTURES))
    assert resolve_data_dir(None) == FIXTURES
    (nowhere / "checkout" / "shared" / "data" / "glue").mkdir(parents=True)
    assert resolve_data_dir(None) == FIXTURES  # the variable wins over ../shared


def test_glue_dir_that_does_not_exist(nowhere, monkeypatch):
    monkeypatch.setenv("GLUE_DIR", str(nowhere / "gone"))
    message = _error(resolve_data_dir, None)
    assert "GLUE_DIR" in message and str(nowhere / "gone") in message


def test_shared_folder_beside_the_working_folder(nowhere):
    found = nowhere / "work" / "shared" / "data" / "glue"
    found.mkdir(parents=True)
    assert resolve_data_dir(None).resolve() == found.resolve()


def test_shared_folder_beside_the_checkout(nowhere):
    found = nowhere / "checkout" / "shared" / "data" / "glue"
    found.mkdir(parents=True)
    assert resolve_data_dir(None).resolve() == found.resolve()


def test_nothing_found_lists_where_it_looked(nowhere):
    message = _error(resolve_data_dir, None)
    assert "--data-dir" in message and "GLUE_DIR" in message
    assert str(nowhere / "work" / "shared" / "data" / "glue") in message
    assert str(nowhere / "checkout" / "shared" / "data" / "glue") in message
