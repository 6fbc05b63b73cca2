"""The task registry: every GLUE task plus a user's own TSV/CSV.

A task says where its files are, which columns hold the text and the label, what the labels
are (or that it is a regression), and which metrics GLUE reports for it. Columns are found by
header name where GLUE files have a header, so column order quirks (MNLI's dev files have more
columns than train) do not matter; CoLA has no header and is read by position.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from nas.base.errors import UserError


@dataclass(frozen=True)
class Task:
    name: str
    folder: str  # the GLUE folder name under the data dir
    text_columns: tuple  # header names, or positions when has_header is False
    label_column: object
    labels: tuple[str, ...] | None  # None: regression
    metrics: tuple[str, ...]
    has_header: bool = True
    dev_files: dict = field(default_factory=lambda: {"dev": "dev.tsv"})
    train_file: str = "train.tsv"
    delimiter: str = "\t"
    quoted: bool = False  # GLUE files are read with csv.QUOTE_NONE

    @property
    def is_pair(self) -> bool:
        return len(self.text_columns) == 2

    @property
    def is_regression(self) -> bool:
        return self.labels is None

    @property
    def num_labels(self) -> int:
        return 1 if self.labels is None else len(self.labels)

    @property
    def primary_metric(self) -> str:
        return self.metrics[0]


def default_max_length(task: Task) -> int:
    """Tokens per row when no setting says: pairs need room for two sentences. Both the teacher
    and the knowledge pass read it, so it lives with the task rather than with either stage."""
    return 128 if task.is_pair else 64


_ENTAIL = ("entailment", "not_entailment")

GLUE_TASKS = {
    task.name: task
    for task in [
        Task("sst2", "SST-2", ("sentence",), "label", ("0", "1"), ("accuracy",)),
        Task("cola", "CoLA", (3,), 1, ("0", "1"), ("matthews", "accuracy"), has_header=False),
        Task("mrpc", "MRPC", ("#1 String", "#2 String"), "Quality", ("0", "1"), ("f1", "accuracy")),
        Task("qqp", "QQP", ("question1", "question2"), "is_duplicate", ("0", "1"), ("f1", "accuracy")),
        Task("stsb", "STS-B", ("sentence1", "sentence2"), "score", None, ("pearson", "spearman")),
        Task(
            "mnli",
            "MNLI",
            ("sentence1", "sentence2"),
            "gold_label",
            ("contradiction", "entailment", "neutral"),
            ("accuracy",),
            dev_files={"dev": "dev_matched.tsv", "dev_mismatched": "dev_mismatched.tsv"},
        ),
        Task("qnli", "QNLI", ("question", "sentence"), "label", _ENTAIL, ("accuracy",)),
        Task("rte", "RTE", ("sentence1", "sentence2"), "label", _ENTAIL, ("accuracy",)),
        Task("wnli", "WNLI", ("sentence1", "sentence2"), "label", ("0", "1"), ("accuracy",)),
    ]
}

TASK_NAMES = tuple(GLUE_TASKS) + ("custom",)


def canonical_task_name(name: str) -> str:
    """`SST-2`, `sst-2`, `SST2` and `sst2` all name the same task."""
    key = name.strip().lower().replace("-", "").replace("_", "")
    if key in GLUE_TASKS or key == "custom":
        return key
    raise UserError(f"unknown task {name!r}; known tasks: {', '.join(TASK_NAMES)}")


def custom_task(train: str, dev: str, text_columns: str, label_column: str, labels=None) -> Task:
    """A user's own TSV/CSV with a header naming the text and label columns.

    The delimiter follows the file suffix (`.csv` is comma separated and may quote fields;
    anything else is tab separated and read like GLUE). Labels default to the sorted set seen
    in the training file; `labels="regression"` makes a regression task.
    """
    if not train or not dev:
        raise UserError("--task custom needs --train FILE and --dev FILE")
    if not text_columns or not label_column:
        raise UserError("--task custom needs --text-columns A[,B] and --label-column C")
    columns = tuple(c.strip() for c in text_columns.split(",") if c.strip())
    if len(columns) not in (1, 2):
        raise UserError(f"--text-columns: expected one or two column names, got {text_columns!r}")
    is_csv = Path(train).suffix.lower() == ".csv"
    if labels == "regression":
        label_set, metrics = None, ("pearson", "spearman")
    else:
        label_set = tuple(labels.split(",")) if labels else ()
        metrics = ("accuracy", "f1") if len(label_set) == 2 else ("accuracy",)
    return Task(
        name="custom",
        folder=str(Path(train).parent),
        text_columns=columns,
        label_column=label_column.strip(),
        labels=label_set,
        metrics=metrics,
        dev_files={"dev": str(dev)},
        train_file=str(train),
        delimiter="," if is_csv else "\t",
        quoted=is_csv,
    )


def default_data_dir() -> Path | None:
    """`$GLUE_DIR`, else `../shared/data/glue` beside the working folder or the checkout."""
    env = os.environ.get("GLUE_DIR")
    if env:
        return Path(env)
    for candidate in _shared_candidates():
        if candidate.is_dir():
            return candidate
    return None


def _shared_candidates() -> list[Path]:
    checkout = Path(__file__).resolve().parents[2]  # nas/<layer>/this file -> the checkout
    return [Path.cwd().parent / "shared/data/glue", checkout.parent / "shared/data/glue"]


def resolve_data_dir(data_dir) -> Path:
    if data_dir:
        path = Path(data_dir)
        if not path.is_dir():
            raise UserError(f"--data-dir {path}: no such folder")
        return path
    path = default_data_dir()
    if path is None:
        raise UserError(
            "no data folder: give --data-dir, or set GLUE_DIR, or put GLUE data in ../shared/data/glue "
            f"(looked for $GLUE_DIR (unset) and {' and '.join(map(str, _shared_candidates()))})"
        )
    if not path.is_dir():
        raise UserError(f"GLUE_DIR={path}: no such folder")
    return path


def get_task(name: str, **custom) -> Task:
    key = canonical_task_name(name)
    if key == "custom":
        return custom_task(**custom)
    return GLUE_TASKS[key]
