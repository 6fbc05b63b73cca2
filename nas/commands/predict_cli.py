"""The `nas predict` command (its work is in nas/deploy/predict.py; this file stays light so `nas --help` is fast).
Like `nas.commands.cli`, it imports the stage's modules inside the command for start-up time.
"""

from __future__ import annotations

import json
from pathlib import Path

from nas.base.errors import UserError
from nas.commands.cli import command, require


def _predict_args(parser):
    parser.add_argument("--model", help="a classifier folder: a student (nas finetune), a teacher (nas teacher) or any "
                                        "Hugging Face sequence-classification folder")
    parser.add_argument("--input", help=".tsv, .csv (both with a header row) or .jsonl (one JSON object per line)")
    parser.add_argument("--out", help="output file; its suffix picks the format (.tsv, .csv or .jsonl)")
    parser.add_argument("--task", help="the task whose text columns to read (default: the one in the model's metrics.json)")
    parser.add_argument("--text-columns", help="one or two text column names, comma separated (overrides the task's)")
    parser.add_argument("--batch-size", type=int, default=64, help="rows per batch (default 64)")
    parser.add_argument("--max-length", type=int, help="truncate to this many tokens (default: the model's limit, at most 512)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: CUDA when present)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def recorded_task(model_dir: Path) -> str | None:
    """The task a `nas` model folder was trained on (its metrics.json), if it says."""
    metrics = model_dir / "metrics.json"
    if not metrics.is_file():
        return None
    try:
        return json.loads(metrics.read_text(encoding="utf-8")).get("task")
    except (json.JSONDecodeError, AttributeError):
        return None


def text_columns_and_task(args):
    """(text columns, task or None) from --text-columns, --task, or the model folder's records."""
    from nas.data.tasks import GLUE_TASKS, canonical_task_name

    name = args.task or recorded_task(Path(args.model))
    task = None
    if name and name != "custom":
        task = GLUE_TASKS.get(canonical_task_name(name))
        if task is None:
            raise UserError(f"--task: unknown task {name!r}")
    if args.text_columns:
        columns = tuple(c.strip() for c in args.text_columns.split(",") if c.strip())
        if not 1 <= len(columns) <= 2:
            raise UserError(f"--text-columns: expected one or two column names, got {args.text_columns!r}")
        return columns, task
    if task is None:
        raise UserError(f"{args.model}: records no task; give --task or --text-columns")
    return tuple(task.text_columns), task


@command("predict", "label a TSV/CSV/JSONL file with a student, a teacher or any classifier folder", _predict_args)
def run_predict_command(args):
    import time

    from nas.data.models import pick_device, quiet_transformers
    from nas.deploy.predict import run_predict

    quiet_transformers()
    require(args, "model", "input", "out")
    if args.batch_size < 1:
        raise UserError(f"--batch-size: expected 1 or more, got {args.batch_size}")
    if not (Path(args.model) / "config.json").is_file():
        raise UserError(f"{args.model}: not a model folder (no config.json)")
    columns, task = text_columns_and_task(args)
    started = time.perf_counter()
    result = run_predict(args.model, args.input, args.out, text_columns=columns, task=task,
                         device=pick_device(args.device), batch_size=args.batch_size, max_length=args.max_length)
    counts = ", ".join(f"{label}: {n}" for label, n in sorted(result["counts"].items())) or "scores"
    print(f"predict: {result['rows']} rows ({counts}) in {time.perf_counter() - started:.1f}s -> {result['out']}")
