"""Every KD baseline of `nas distill` beside the searched student, on SST-2 and MRPC, with the
MiniLM teacher, at a student budget comparable to the searched student's.

Usage: python experiments/baselines.py [--tasks sst2,mrpc] [--runs runs/baselines] [--epochs 3]
       [--knowledge-root runs/transfer20]

Needs the teachers of experiments/teacher.py (runs/teachers/TASK) and the searches of
experiments/adabert.py (runs/adabert/TASK/{knowledge,search}). Every run writes its own folder
and is skipped when that folder is finished, so the script resumes after an interruption. At the
end all students and the teacher are loaded into this one process and timed side by side.

`--knowledge-root DIR`: every run of a task, the searched student's finetune included, trains on
the knowledge in DIR/TASK instead of the search's, e.g. a 20x transfer set made with
`nas knowledge --task TASK --teacher runs/teachers/TASK --augment-preset adabert --out DIR/TASK`
(Tang et al.'s BiLSTM is defined with one). `nas distill` and `nas finetune` join its augmented
rows, so the table compares like with like; its runs and report go to their own folder and file.
Writes experiments/results/baselines.md and experiments/results/baselines.json (the points that
experiments/sweep.py draws beside its Pareto front).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# One Transformer shape for every method that accepts any width: embeddings (3.9M of the
# searched student's 4.2M parameters are its 128-wide word table) and FLOPs of the same order as
# the searched student's. BERT-of-Theseus swaps student layers in for teacher layers, so its
# successor must be as wide as the teacher: one 384-wide layer is its smallest student.
# The BiLSTM keeps Tang et al.'s 300-dimensional word vectors with a 128-unit recurrence.
# TinyBERT and MiniLM compare attention maps head by head, so their students keep the teacher's
# 12 heads, at width 120 (10 per head), the nearest to 128 that 12 divides.
COMPARABLE = "transformer:layers=2,hidden=128,heads=2,ffn=512"
TWELVE_HEADS = "transformer:layers=2,hidden=120,heads=12,ffn=480"
STUDENTS = {
    "vanilla": COMPARABLE, "probes": COMPARABLE, "pkd-skip": COMPARABLE, "pkd-last": COMPARABLE,
    "distilbert": COMPARABLE, "tinybert": TWELVE_HEADS, "minilm": TWELVE_HEADS,
    "bilstm": "bilstm:hidden=128", "theseus": "transformer:layers=1",
}
# Training rows: SST-2's first 8000 (the rows its search ran on; the teacher-in-the-loop methods
# cost a teacher forward pass per step, which does not fit the full 67k rows x 9 methods on this
# CPU in a session), MRPC's full training set. Dev sets are always complete.
SUBSETS = {"sst2": ["--max-train", "8000"], "mrpc": []}


def nas(*args) -> None:
    print("$", " ".join(["nas", *map(str, args)]), flush=True)
    subprocess.run([sys.executable, "-m", "nas", *map(str, args)], check=True, cwd=ROOT)


def runs_for(task: str, search: Path) -> dict[str, tuple[str, list]]:
    """Run name -> (what it is, the `nas` arguments that train it, beyond task/teacher/knowledge/out)."""
    arch = f"arch:{search / 'arch.json'}"
    runs = {"adabert": ("searched student, AdaBERT finetune (KD from the search weights)",
                        ["finetune", "--arch", search / "arch.json"])}
    for method, student in STUDENTS.items():
        runs[method] = (f"{method} KD", ["distill", "--method", method, "--student", student])
    # The same students with the teacher taken away: vanilla KD with alpha 0 is plain cross-entropy,
    # on the task's own rows only (augmented rows carry the teacher's labels).
    alone = ["--set", "alpha=0", "--set", "use_augmented=false"]
    runs["no-teacher (searched)"] = ("searched cell, no teacher (CE only, from scratch)",
                                     ["distill", "--method", "vanilla", "--student", arch, *alone])
    runs["no-teacher (transformer)"] = ("Transformer, no teacher (CE only)",
                                        ["distill", "--method", "vanilla", "--student", COMPARABLE, *alone])
    return runs


def folder_name(run: str) -> str:
    return run.replace(" ", "_").replace("(", "").replace(")", "")


def latency_inputs(task_name: str, teacher_dir: Path, data_dir) -> dict[int, dict]:
    """The batches of 1 and 32 dev rows every latency here is timed on (as `nas finetune` times them)."""
    from nas.data.batching import encode
    from nas.data.glue_io import read_examples
    from nas.data.models import load_tokenizer
    from nas.data.tasks import get_task, resolve_data_dir
    from nas.deploy.latency import latency_batches

    task = get_task(task_name)
    tokenizer = load_tokenizer(str(teacher_dir))
    dev = encode(read_examples(task, resolve_data_dir(data_dir), "dev", 64), tokenizer, 128 if task.is_pair else 64)
    return latency_batches(dev)


def measure_side_by_side(task_name: str, teacher_dir: Path, folders: dict[str, Path], data_dir, inputs=None) -> dict:
    """Latency at batch 1 and 32 of the teacher and every student, interleaved in this one process,
    on `inputs` (default: `latency_inputs`)."""
    import torch

    from kd.students import load_student
    from nas.data.models import load_classifier, quiet_transformers
    from nas.data.tasks import get_task
    from nas.deploy.latency import compare_latency

    quiet_transformers()
    models = {"teacher": load_classifier(str(teacher_dir), get_task(task_name), new_head=False).eval()}
    models.update({name: load_student(folder).eval() for name, folder in folders.items()})
    forwards = {name: (lambda m: lambda batch: m(**batch).logits)(model) for name, model in models.items()}
    inputs = inputs or latency_inputs(task_name, teacher_dir, data_dir)
    return compare_latency(forwards, inputs, torch.device("cpu"), warmup=5, repeats=20)


def timed_record(task_name: str, teacher_dir: Path, folders: dict[str, Path], data_dir) -> dict:
    """`measure_side_by_side` as a record of how it was timed: when, the machine's load as it began
    (nas/deploy/machine_load.py; a warning when other work competes for the cores, which slows the
    teacher's long forward passes more than a student's) and the torch threads."""
    import torch

    from nas.deploy.machine_load import competes, cpu_load

    load = cpu_load()
    if competes(load, torch.get_num_threads()):
        print(f"warning: load average {load:.1f} on this CPU: other work slows the teacher's long forward passes "
              "more than the students'; time on a quiet machine", file=sys.stderr, flush=True)
    timed = measure_side_by_side(task_name, teacher_dir, folders, data_dir)
    return {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "load_average": load, "threads": torch.get_num_threads(),
            "teacher": timed["teacher"], "students": {name: timed[name] for name in folders}}


def majority_class_score(task_name: str, data_dir, subset: list) -> dict:
    """Dev metrics of always predicting the most frequent training label: the floor a student must
    clear (on MRPC, F1 0.81 comes from predicting "paraphrase" for every pair)."""
    from collections import Counter

    from nas.data.glue_io import read_examples
    from nas.data.metrics import compute
    from nas.data.tasks import get_task, resolve_data_dir

    task = get_task(task_name)
    folder = resolve_data_dir(data_dir)
    limit = int(subset[1]) if subset else None
    majority = Counter(e.label for e in read_examples(task, folder, "train", limit)).most_common(1)[0][0]
    labels = [e.label for e in read_examples(task, folder, "dev")]
    return compute(task.metrics, [majority] * len(labels), labels)


def knowledge_for(task: str, searched: Path, knowledge_root: str | None) -> Path:
    """The knowledge every run of `task` trains on: ROOT/TASK with --knowledge-root, else the search's."""
    if not knowledge_root:
        return searched / "knowledge"
    folder = Path(knowledge_root) / task
    if not (folder / "manifest.json").is_file():
        raise SystemExit(f"--knowledge-root: no knowledge in {folder} (make it with `nas knowledge --task {task} ... --out {folder}`)")
    return folder


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="sst2,mrpc")
    parser.add_argument("--runs", default=str(ROOT / "runs/baselines"))
    parser.add_argument("--adabert-runs", default=str(ROOT / "runs/adabert"))
    parser.add_argument("--teachers", default=str(ROOT / "runs/teachers"))
    parser.add_argument("--epochs", type=int, default=3, help="epochs per stage, for every run alike")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--results", default=None,
                        help="report file (default experiments/results/baselines.md, or baselines_transfer.md "
                             "with --knowledge-root)")
    parser.add_argument("--knowledge-root", default=None,
                        help="train every run on the knowledge folder ROOT/TASK (e.g. a 20x augmented transfer set)")
    args = parser.parse_args(argv)
    if args.knowledge_root:
        args.runs = args.runs if args.runs != str(ROOT / "runs/baselines") else str(ROOT / "runs/baselines_transfer")
    results = args.results or str(ROOT / "experiments/results" / (
        "baselines_transfer.md" if args.knowledge_root else "baselines.md"))

    data = ["--data-dir", args.data_dir] if args.data_dir else []
    report = {}
    for task in args.tasks.split(","):
        teacher = Path(args.teachers) / task
        searched = Path(args.adabert_runs) / task
        if not (teacher / "metrics.json").is_file() or not (searched / "search" / "arch.json").is_file():
            raise SystemExit(f"needs {teacher} and {searched}/search: run experiments/teacher.py and experiments/adabert.py first")
        knowledge = knowledge_for(task, searched, args.knowledge_root)
        common = ["--task", task, *data, "--teacher", teacher, "--knowledge", knowledge,
                  "--epochs", args.epochs, "--seed", 42, *SUBSETS[task]]
        rows, folders = {}, {}
        for run, (what, command) in runs_for(task, searched / "search").items():
            out = Path(args.runs) / task / folder_name(run)
            if not (out / "metrics.json").is_file():
                nas(command[0], *common, *command[1:], "--out", out, "--set", "latency_repeats=3")
            rows[run] = (what, command, json.loads((out / "metrics.json").read_text()))
            folders[run] = out
        latency = measure_side_by_side(task, teacher, folders, args.data_dir)
        report[task] = {"teacher": json.loads((teacher / "metrics.json").read_text()), "rows": rows, "latency": latency,
                        "majority": majority_class_score(task, args.data_dir, SUBSETS[task]),
                        "knowledge": _relative(str(knowledge))}
    write_report(Path(results), report, " ".join(sys.argv[1:] if argv is None else argv), args.epochs)
    return 0


def _relative(text: str) -> str:
    """Paths under the checkout as the README writes them."""
    return text.replace(str(ROOT) + "/", "")


def _others(metrics: dict, primary: str) -> str:
    return ", ".join(f"{name} {value:.4f}" for name, value in metrics.items() if name != primary)


def transfer_set_line(r: dict) -> str:
    """What the runs trained on, read from their metrics.json (train_rows, augmented_rows, augmentation)."""
    kinds = set()
    for _, _, m in r["rows"].values():
        augmentation = m.get("augmentation") or {}
        kinds.add((m.get("train_rows"), m.get("augmented_rows", 0), augmentation.get("preset", ""), augmentation.get("n")))
    parts = []
    for rows, augmented, preset, n in sorted(kinds, key=str):
        made = f"{n}x per row" + (f", preset {preset}" if preset else "") if augmented else ""
        parts.append(f"{rows} rows" + (f" ({rows - augmented} of the task's, {augmented} augmented: {made})" if augmented
                                       else " (the task's own, no augmented rows)"))
    same = "every run alike" if len(parts) == 1 else "the no-teacher runs keep to the task's own rows"
    return f"Transfer set ({same}; knowledge `{r.get('knowledge', '')}`): " + "; ".join(parts) + "."


def write_report(path: Path, report: dict, argv: str, epochs: int) -> None:
    import torch

    from nas.base import atomic
    from nas.base.markdown import markdown_cell
    from nas.base.run_info import machine

    lines = [
        "# KD baselines beside the searched student (MiniLM teacher)",
        "",
        f"Command: `{('python experiments/baselines.py ' + argv).strip()}`  ",
        f"Machine: {machine()}  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M %Z')}",
        "",
        f"Every run: `--epochs {epochs}` (per stage for the two-stage methods), seed 42, the tool's default "
        "learning rate and method options. Training rows: SST-2 the first 8000 of train (the rows the search "
        "ran on), MRPC all 3668; dev complete. Students: the searched cell of experiments/adabert.py; "
        f"`{COMPARABLE}` (embeddings from the teacher's, PCA-projected) for every method that takes any width, "
        f"`{TWELVE_HEADS}` for TinyBERT and MiniLM, which compare attention head by head with the teacher's 12; "
        "BERT-of-Theseus needs the teacher's width (its successor layers stand in for teacher layers), so its "
        "student is one 384-wide layer; the BiLSTM has 300-dimensional word vectors and 128 units.",
        "",
        f"Latency: CPU, {torch.get_num_threads()} torch threads, every model of a task loaded into one "
        "process and timed interleaved (median of 20 runs after 5 warm-up runs) on the first 1 / 32 dev rows; "
        "`x teacher` is how many times faster than the teacher in that same measurement. FLOPs: one sequence "
        "of 64 tokens (FlopCounterMode; the BiLSTM's recurrence counted by its own formula). Train time: wall "
        "time of the training stages in the run, on this shared 2-core machine with 1 torch thread.",
    ]
    points = []
    for task, r in report.items():
        metric = next(iter(r["rows"].values()))[2]["primary_metric"]
        teacher_score = r["teacher"]["metrics"][metric]
        lat = r["latency"]
        first = next(iter(r["rows"].values()))[2]  # every run measured the same teacher beside its student
        lines += ["", f"## {task} (dev {metric}; teacher {teacher_score:.4f})", "", transfer_set_line(r), "",
                  f"| run | student | dev {metric} | vs teacher | other dev metrics | params | FLOPs | b=1 ms | b=32 ms | x teacher b=1 | x teacher b=32 | train rows | train s |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        lines.append(f"| teacher (MiniLM-L6) | | {teacher_score:.4f} | | {_others(r['teacher']['metrics'], metric)} | {first['teacher']['params']:,} | {first['teacher'].get('flops', 0):,} | "
                     f"{lat['teacher']['batch_1_ms']:.2f} | {lat['teacher']['batch_32_ms']:.2f} | 1.0 | 1.0 | | |")
        lines.append(f"| majority class | | {r['majority'][metric]:.4f} | {r['majority'][metric] - teacher_score:+.4f} "
                     f"| {_others(r['majority'], metric)} | | | | | | | | |")
        for run, (what, command, m) in r["rows"].items():
            score = m["metrics"][metric]
            student = m["student"]
            b1, b32 = lat[run]["batch_1_ms"], lat[run]["batch_32_ms"]
            spec = markdown_cell(_relative(m.get("student_spec") or m.get("genotype", "")))
            lines.append(
                f"| {run} | `{spec}` | {score:.4f} | {score - teacher_score:+.4f} | {_others(m['metrics'], metric)} | {student['params']:,} | "
                f"{student['flops']:,} | {b1:.2f} | {b32:.2f} | {lat['teacher']['batch_1_ms'] / b1:.1f} | "
                f"{lat['teacher']['batch_32_ms'] / b32:.1f} | {m.get('train_rows', '')} | {m.get('train_seconds', float('nan')):.0f} |")
            points.append({"task": task, "method": run, "metric_name": metric, "metric": score,
                           "batch_1_ms": b1, "batch_32_ms": b32, "params": student["params"], "flops": student["flops"]})
        scores = {run: m["metrics"][metric] for run, (_, _, m) in r["rows"].items()}
        ranked = sorted(scores, key=scores.get, reverse=True)
        floor = [run for run, score in scores.items() if score <= r["majority"][metric] + 1e-9]
        lines += ["", f"Best: {ranked[0]} ({scores[ranked[0]]:.4f}, {scores[ranked[0]] - teacher_score:+.4f} against the "
                  f"teacher). The searched student (adabert) ranks {ranked.index('adabert') + 1} of {len(ranked)}. "
                  f"No better than always predicting the majority class: {', '.join(floor) if floor else 'none'}."]
        lines += ["", "Commands (each with `--task " + task + " --teacher runs/teachers/" + task +
                  " --knowledge " + r.get("knowledge", f"runs/adabert/{task}/knowledge") + " --epochs " + str(epochs) + " --seed 42"
                  + (" " + " ".join(SUBSETS[task]) if SUBSETS[task] else "") + " --out DIR`):", ""]
        for run, (what, command, _) in r["rows"].items():
            lines.append(f"- {run} ({what}): `nas {_relative(' '.join(map(str, command)))}`")
    atomic.write_text(path, "\n".join(lines) + "\n")
    atomic.write_json(path.with_suffix(".json"), points)
    print(f"wrote {path} and {path.with_suffix('.json')}")


if __name__ == "__main__":
    sys.exit(main())
