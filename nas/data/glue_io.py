"""Reading task files row by row, with errors that name the file and line."""

from __future__ import annotations

import csv
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

from nas.base.errors import UserError
from nas.base.safe_files import MAX_LINE_BYTES, check_text, clip, shorten, text_lines
from nas.data.tasks import Task

# A field may be as long as the longest line we read (a quoted CSV field may span lines; this
# bounds it too). GLUE's longest sentences are a few KiB.
csv.field_size_limit(MAX_LINE_BYTES)

HEADERLESS_COLUMNS = {"cola": 4}


@dataclass(frozen=True)
class Example:
    text_a: str
    text_b: str | None
    label: object  # class index (int), score (float) or None when unlabelled
    raw_label: str | None = None


def split_path(task: Task, data_dir: Path | None, split: str) -> Path:
    name = task.train_file if split == "train" else task.dev_files[split]
    if task.name == "custom":
        return Path(name)
    return Path(data_dir) / task.folder / name


def _rows(path: Path, task: Task, with_label: bool = True):
    """Yield (line number, fields) with the header checked; fields keyed by column name or position.

    The whole file is checked first (a regular file under the size cap, UTF-8 with or without
    a byte-order mark, no NUL bytes, no overlong lines), so a quick run that reads only its
    first rows still refuses a file that is broken further down, with the line named.
    `with_label=False` reads rows to predict on, which need only the text columns.
    """
    check_text(path, "a data file")
    quoting = csv.QUOTE_MINIMAL if task.quoted else csv.QUOTE_NONE
    reader = csv.reader(text_lines(path, "a data file"), delimiter=task.delimiter, quoting=quoting)
    try:
        header = None
        if task.has_header:
            header = next(reader, None)
            if header is None:
                raise UserError(f"{path}: empty file (expected a header line)")
            header = [name.strip() for name in header]
            wanted = list(task.text_columns) + ([task.label_column] if with_label else [])
            missing = [name for name in wanted if name not in header]
            if missing:
                raise UserError(f"{path}:1: header has no column {shorten(missing[0])} "
                                f"(found: {clip(', '.join(header), 200)})")
            expected = len(header)
        else:
            expected = HEADERLESS_COLUMNS.get(task.name)
        for fields in reader:
            line = reader.line_num
            if not fields or fields == [""]:
                continue
            if expected is not None and len(fields) != expected:
                raise UserError(f"{path}:{line}: expected {expected} columns, found {len(fields)}")
            yield line, (dict(zip(header, fields)) if header else dict(enumerate(fields)))
    except csv.Error as error:  # a stray carriage return, a field over the limit, a bad quote
        # (csv's own hint about universal-newline mode does not apply here: drop it.)
        raise UserError(f"{path}:{reader.line_num}: cannot split into columns ({str(error).split(' - ')[0]})") from None


def read_fields(path, task: Task):
    """Yield (line number, fields) of an unlabelled TSV/CSV: the rows `nas predict` labels."""
    yield from _rows(Path(path), task, with_label=False)


def read_examples(task: Task, data_dir, split: str, limit: int | None = None) -> list[Example]:
    """Read one split; `limit` keeps the first N rows (quick runs read no further)."""
    path = split_path(task, data_dir, split)
    examples = []
    if limit is not None and limit <= 0:
        raise UserError(f"{path}: asked for {limit} rows of the {split} split; give a positive number")
    for line, fields in _rows(path, task):
        texts = [fields[column].strip() for column in task.text_columns]
        raw = fields[task.label_column].strip()
        examples.append(
            Example(texts[0], texts[1] if task.is_pair else None, _parse_label(task, raw, path, line), raw)
        )
        if limit is not None and len(examples) >= limit:
            break  # quick runs read (and check) no further
    if not examples:
        raise UserError(f"{path}: the {split} split has no examples")
    return examples


def _parse_label(task: Task, raw: str, path: Path, line: int):
    if task.is_regression:
        try:
            score = float(raw)
        except ValueError:
            raise UserError(f"{path}:{line}: label {shorten(raw)} is not a number (task {task.name} is a regression)") from None
        if not math.isfinite(score):  # nan or inf would surface only as a NaN loss, far from here
            raise UserError(f"{path}:{line}: label {shorten(raw)} is not a finite number (task {task.name} is a regression)")
        return score
    if not task.labels:  # a custom task whose label set is inferred after reading train
        if not raw:
            raise UserError(f"{path}:{line}: empty label (column {task.label_column!r})")
        return raw
    try:
        return task.labels.index(raw)
    except ValueError:
        raise UserError(
            f"{path}:{line}: label {shorten(raw)} is not one of the task's labels ({', '.join(task.labels)})"
        ) from None


@dataclass(frozen=True)
class TaskData:
    task: Task
    train: list[Example]
    dev: dict[str, list[Example]]  # split name -> examples; "dev" is the one models are selected on


def load_task_data(task: Task, data_dir, max_train=None, max_dev=None, with_train=True) -> TaskData:
    train = read_examples(task, data_dir, "train", max_train) if with_train else []
    if task.name == "custom" and not task.is_regression and not task.labels:
        if not with_train:
            raise UserError("a custom task needs its training file to know its labels")
        labels = tuple(sorted({example.label for example in train}))
        metrics = ("accuracy", "f1") if len(labels) == 2 else ("accuracy",)
        task = dataclasses.replace(task, labels=labels, metrics=metrics)
        train = [dataclasses.replace(e, label=labels.index(e.label)) for e in train]
    dev = {split: read_examples(task, data_dir, split, max_dev) for split in task.dev_files}
    return TaskData(task, train, dev)
