"""The `nas export` command (its work is in nas/deploy/export.py; this file stays light so `nas --help` is fast).
Like `nas.commands.cli`, it imports the stage's modules inside the command for start-up time.
"""

from __future__ import annotations

import json
from pathlib import Path

from nas.base.errors import UserError
from nas.commands.cli import command, require

FORMATS = ("onnx", "torchscript")


def _export_args(parser):
    parser.add_argument("--model", help="a student folder (nas finetune) or any sequence-classification folder")
    parser.add_argument("--format", help="onnx or torchscript")
    parser.add_argument("--out", help="output file (.onnx, .pt); a JSON report is written beside it (FILE.json)")
    parser.add_argument("--task", help="the task whose dev rows check the export (default: the one in the model's metrics.json)")
    parser.add_argument("--data-dir", help="GLUE data folder (default: $GLUE_DIR, else ../shared/data/glue)")
    parser.add_argument("--dev", help="a TSV/CSV/JSONL file of rows to check on instead of the task's dev file")
    parser.add_argument("--text-columns", help="one or two text column names, comma separated (overrides the task's)")
    parser.add_argument("--max-dev", type=int, default=64, help="dev rows to check and time on (default 64)")
    parser.add_argument("--max-length", type=int, default=128, help="truncate rows to this many tokens (default 128)")
    parser.add_argument("--teacher", help="teacher folder to time beside (default: the one in the model's metrics.json)")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="largest allowed |logit difference| (default 1e-4)")
    parser.add_argument("--repeats", type=int, default=20, help="timed repeats per batch size (default 20)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def recorded_teacher(model_dir: Path) -> str | None:
    metrics = model_dir / "metrics.json"
    if metrics.is_file():
        return (json.loads(metrics.read_text(encoding="utf-8")).get("provenance") or {}).get("teacher")
    return None


def dev_rows_path(args, task) -> Path:
    from nas.data.glue_io import split_path
    from nas.data.tasks import resolve_data_dir

    if args.dev:
        return Path(args.dev)
    if task is None:
        raise UserError("--dev is required when the rows to check on come from --text-columns without a task")
    return split_path(task, resolve_data_dir(args.data_dir), "dev")


@command("export", "export a student (or any classifier folder) to ONNX or TorchScript, checked against PyTorch "
         "on dev rows, with CPU latency beside PyTorch's and the teacher's", _export_args)
def run_export_command(args):
    from nas.commands.predict_cli import text_columns_and_task

    require(args, "model", "format", "out")
    if args.format not in FORMATS:
        raise UserError(f"--format: expected onnx or torchscript, got {args.format!r}")
    if args.format == "onnx":
        from nas.deploy.export import require_onnx

        require_onnx()  # before anything slow
    if args.max_dev < 1:
        raise UserError(f"--max-dev: expected 1 or more, got {args.max_dev}")
    model_dir = Path(args.model)
    if not (model_dir / "config.json").is_file():
        raise UserError(f"{model_dir}: not a model folder (no config.json)")
    columns, task = text_columns_and_task(args)
    rows_path = dev_rows_path(args, task)
    report = export_and_measure(model_dir, rows_path, columns, task, args)
    check, latency = report["check"], report["latency_ms"]
    shown = "; ".join(f"{name} {v['batch_1_ms']:.3f} / {v['batch_32_ms']:.3f} ms" for name, v in latency.items())
    print(f"export {args.format}: max |logit difference| {check['max_abs_difference']:.2e} over {check['rows_checked']} "
          f"dev rows ({check['batches_checked']} batches); latency at batch 1 / 32 on the CPU: {shown} "
          f"-> {args.out} (report {report['report']})")


def export_and_measure(model_dir: Path, rows_path: Path, columns, task, args) -> dict:
    import torch
    from transformers import AutoModelForSequenceClassification

    from nas.base import atomic
    from nas.deploy.export import encode_rows, export_model, measure, onnx_runner, torch_runner
    from nas.data.models import load_tokenizer, quiet_transformers
    from nas.deploy.predict import read_rows
    from nas.base.run_info import machine

    quiet_transformers()
    tokenizer = load_tokenizer(str(model_dir))
    import searchspace.student  # registers the student with transformers (the `nas` command only here)

    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    if isinstance(model, searchspace.student.AdaBertStudentForSequenceClassification):
        model = model.for_inference()  # a folder saved before `nas finetune` folded its word vectors
    texts = read_rows(rows_path, columns, task).texts[: args.max_dev]
    split = encode_rows(tokenizer, texts, args.max_length)
    out = Path(args.out)
    check = export_model(model, split, args.format, out, args.tolerance)

    runners = {"pytorch": torch_runner(model)}
    runners[args.format] = onnx_runner(out.read_bytes()) if args.format == "onnx" else torch_runner(torch.jit.load(str(out)))
    teacher_dir = args.teacher or recorded_teacher(model_dir)
    teacher_note = None
    if teacher_dir and (Path(teacher_dir) / "config.json").is_file():
        teacher = AutoModelForSequenceClassification.from_pretrained(teacher_dir).eval()
        teacher_split = encode_rows(load_tokenizer(str(teacher_dir)), texts, args.max_length)
        runners_teacher = {"teacher (pytorch)": torch_runner(teacher)}
    else:
        teacher_note = f"teacher not timed: {teacher_dir or 'no --teacher and none recorded'} is not a model folder"
        runners_teacher = {}
    latency = measure(runners, split, args.repeats)
    if runners_teacher:
        latency.update(measure(runners_teacher, teacher_split, args.repeats))
    report = {
        "model": str(model_dir), "rows": str(rows_path), "check": check, "latency_ms": latency,
        "latency_note": "median of repeats, CPU, the first dev rows at batch 1 and 32"
                        + (f"; {teacher_note}" if teacher_note else ""),
        "machine": machine(), "teacher": str(teacher_dir) if runners_teacher else None,
    }
    report_path = out.with_name(out.name + ".json")
    atomic.write_json(report_path, report)
    report["report"] = str(report_path)
    return report
