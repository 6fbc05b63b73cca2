"""Mistakes a user can make, each answered by one line on stderr that names the culprit, and exit code 2.

Every case is also run with --debug, where the same UserError propagates instead.
"""

import shutil
from pathlib import Path

import pytest
from conftest import write_tiny_teacher

from nas.base.errors import UserError

TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")




def sst2_folder(root: Path, train: str | None = None, dev: str | None = None, source: Path | None = None) -> Path:
    """A data folder whose SST-2 files are `train`/`dev` text, or copies of `source`'s."""
    folder = root / "glue"
    (folder / "SST-2").mkdir(parents=True)
    for split, text in (("train", train), ("dev", dev)):
        target = folder / "SST-2" / f"{split}.tsv"
        if text is None:
            shutil.copy(source / "SST-2" / f"{split}.tsv", target)
        else:
            target.write_text(text, encoding="utf-8")
    return folder


def teacher_cmd(data_dir, model, out, *extra, task="sst2"):
    return ("teacher", "--task", task, "--data-dir", data_dir, "--model", model, "--out", out, "--epochs", 1,
            "--device", "cpu", *extra)


def knowledge_cmd(teacher, data_dir, out):
    return ("knowledge", "--teacher", teacher, "--task", "sst2", "--data-dir", data_dir, "--out", out, "--device", "cpu")


# Each case builds what it needs under tmp_path and returns (arguments, fragments the message must hold).


def missing_data_dir(tmp, glue, teacher):
    return teacher_cmd(tmp / "no_glue", teacher, tmp / "out"), ["--data-dir", str(tmp / "no_glue"), "no such folder"]


def missing_task_file(tmp, glue, teacher):
    (tmp / "glue" / "MRPC").mkdir(parents=True)
    shutil.copy(glue / "MRPC" / "train.tsv", tmp / "glue" / "MRPC" / "train.tsv")
    return teacher_cmd(tmp / "glue", teacher, tmp / "out"), [str(tmp / "glue" / "SST-2" / "train.tsv"), "no such file"]


def wrong_column_count(tmp, glue, teacher):
    folder = sst2_folder(tmp, train="sentence\tlabel\ngood film\t1\nbad film\t0\na\textra\t1\n", source=glue)
    return teacher_cmd(folder, teacher, tmp / "out"), [f"{folder / 'SST-2' / 'train.tsv'}:4", "columns"]


def unknown_label(tmp, glue, teacher):
    folder = sst2_folder(tmp, train="sentence\tlabel\ngood film\t1\nodd film\t2\nbad film\t0\n", source=glue)
    return teacher_cmd(folder, teacher, tmp / "out"), [f"{folder / 'SST-2' / 'train.tsv'}:3", "'2'"]


def empty_split(tmp, glue, teacher):
    folder = sst2_folder(tmp, dev="sentence\tlabel\n", source=glue)
    return teacher_cmd(folder, teacher, tmp / "out"), [str(folder / "SST-2" / "dev.tsv"), "no examples"]


def unknown_task(tmp, glue, teacher):
    return teacher_cmd(glue, teacher, tmp / "out", task="sst3"), ["'sst3'", "unknown task"]


def teacher_without_tokenizer(tmp, glue, teacher):
    stripped = tmp / "no_tokenizer"
    shutil.copytree(teacher, stripped, ignore=shutil.ignore_patterns(*TOKENIZER_FILES))
    assert not any((stripped / name).exists() for name in TOKENIZER_FILES)
    return knowledge_cmd(stripped, glue, tmp / "k"), [str(stripped), "tokenizer"]


def backbone_without_tokenizer(tmp, glue, teacher):
    stripped = tmp / "no_tokenizer"
    shutil.copytree(teacher, stripped, ignore=shutil.ignore_patterns(*TOKENIZER_FILES))
    return teacher_cmd(glue, stripped, tmp / "out"), [str(stripped), "tokenizer"]


def teacher_with_three_labels(tmp, glue, teacher):
    three = write_tiny_teacher(tmp / "three", num_labels=3)
    return knowledge_cmd(three, glue, tmp / "k"), [str(three), "3 labels", "sst2"]


def missing_model_folder(tmp, glue, teacher):
    # A path that starts with ./ is a local folder, never a hub id: say that it is missing.
    return teacher_cmd(glue, "./does/not/exist", tmp / "out"), ["./does/not/exist", "no such"]


def missing_config_file(tmp, glue, teacher):
    args = teacher_cmd(glue, teacher, tmp / "out", "--config", tmp / "nope.yaml")
    return args, ["--config", "nope.yaml", "no such file"]


def unknown_setting(tmp, glue, teacher):
    return teacher_cmd(glue, teacher, tmp / "out", "--set", "lrr=0.1"), ["'lrr'", "unknown setting"]


CASES = [
    missing_data_dir, missing_task_file, wrong_column_count, unknown_label, empty_split, unknown_task,
    teacher_without_tokenizer, backbone_without_tokenizer, teacher_with_three_labels, missing_model_folder,
    missing_config_file, unknown_setting,
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.__name__)
def test_one_line_naming_the_problem_and_exit_code_2(case, run_cli, tiny_glue, tiny_teacher, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths such as ./does/not/exist resolve here
    args, fragments = case(tmp_path, tiny_glue, tiny_teacher)
    code, out, err = run_cli(*args)
    assert code == 2, f"exit {code}; stdout: {out!r}"
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"nas {args[0]}: error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    assert not (tmp_path / "out").exists() and not (tmp_path / "k").exists()


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.__name__)
def test_debug_raises_the_same_error(case, run_cli, tiny_glue, tiny_teacher, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args, fragments = case(tmp_path, tiny_glue, tiny_teacher)
    with pytest.raises(UserError) as raised:
        run_cli(*args, "--debug")
    for fragment in fragments:
        assert fragment in str(raised.value)
