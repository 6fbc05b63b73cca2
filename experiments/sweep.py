"""Pareto sweep of the search settings on SST-2 with the MiniLM teacher: dev accuracy against CPU
latency at batch 1 under several latency budgets, beside the KD baselines.

Usage: python experiments/sweep.py [--trials 24] [--max-train 8000] [--epochs 3] [--budgets MS,MS,MS]
                                   [--latency-table FILE ...] [--workers 1] [--runs runs/sweep]

Needs the teacher of experiments/teacher.py (runs/teachers/sst2) and the knowledge of
experiments/adabert.py (runs/adabert/sst2/knowledge). Runs `nas sweep` (with `--workers N`, N
workers on one study) on the first `--max-train` training rows; the study lives in
RUNS/sst2/study.db, so rerunning the script continues it (finished trials are kept, an
interrupted one is resumed). Without --budgets the sweep's default budgets are used (three,
between the cheapest and the slowest student the latency table predicts). A table timed on a
busy machine over-predicts (a table measured during other jobs on this 2-core machine predicted
6.2 ms for a student that runs in 2.1 ms; one measured when it was quiet, 2.15 ms), so measure
the tables with `nas latency-table` on a quiet machine and pass them with --latency-table, or
run the script when nothing else runs. Then every complete trial's student is timed again here,
all students in one process, interleaved, at the budget's batch size and length, to check that
each meets its budget. KD baselines are read from
experiments/results/baselines.json when that file exists (experiments/baselines.py writes it).
Writes experiments/results/sweep.md and experiments/results/sweep_pareto.png.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TASK = "sst2"
# Swept beyond the sweep's defaults: two widths and two depths keep a CPU trial to minutes.
SPACE = ["--set", "hidden_sizes=64,128", "--set", "max_cells_choices=4,8", "--set", "finetune_epochs=1"]


def nas_sweep(args, baselines: Path | None) -> list[str]:
    """The `nas sweep` command line (without the interpreter)."""
    runs = Path(args.runs) / TASK
    command = ["sweep", "--task", TASK, "--teacher", Path(args.teachers) / TASK, "--knowledge", Path(args.knowledge),
               "--out", runs, "--trials", args.trials, "--max-train", args.max_train, "--epochs", args.epochs, *SPACE]
    if args.data_dir:
        command += ["--data-dir", args.data_dir]
    if args.budgets:
        command += ["--budgets", args.budgets]
    for table in args.latency_table:
        command += ["--latency-table", table]
    if baselines is not None:
        command += ["--baselines", baselines]
    return [str(part) for part in command]


def baseline_points(path: Path, batch_size: int, out: Path) -> tuple[Path | None, list[dict]]:
    """experiments/results/baselines.json rows of this task as the sweep's {name, latency_ms, metric}."""
    if not path.is_file():
        return None, []
    rows = [row for row in json.loads(path.read_text()) if row.get("task") == TASK]
    points = [{"name": row["method"], "latency_ms": row[f"batch_{batch_size}_ms"], "metric": row["metric"]} for row in rows]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(points, indent=2))
    return out, rows


def run_workers(command: list[str], workers: int) -> None:
    print("$", " ".join(["nas", *command]) + (f"   (x{workers} workers)" if workers > 1 else ""), flush=True)
    processes = [subprocess.Popen([sys.executable, "-m", "nas", *command], cwd=ROOT) for _ in range(workers)]
    codes = [p.wait() for p in processes]
    if any(codes):
        raise SystemExit(f"nas sweep failed (exit codes {codes})")


def retime_students(trials, batch_size: int, seq_len: int) -> dict[int, float]:
    """Median ms per forward pass of each trial's student at (batch_size, seq_len), all students in
    this one process, interleaved repeat by repeat (nas.deploy.latency.compare_latency)."""
    import torch

    from nas.deploy.costs import dummy_inputs
    from nas.deploy.latency import compare_latency
    from nas.data.models import load_classifier, quiet_transformers
    from nas.data.tasks import get_task

    quiet_transformers()
    task = get_task(TASK)
    models = {t.number: load_classifier(str(Path(t.user_attrs["folder"]) / "student"), task, new_head=False).eval()
              for t in trials}
    if not models:
        return {}
    vocab = next(iter(models.values())).get_input_embeddings().num_embeddings
    inputs = {batch_size: dummy_inputs(batch_size, seq_len, task.is_pair, vocab)}  # every token real, as in the table
    timed = compare_latency({n: (lambda m: lambda b: m(**b).logits)(m) for n, m in models.items()}, inputs,
                            torch.device("cpu"), warmup=5, repeats=30)
    return {n: values[f"batch_{batch_size}_ms"] for n, values in timed.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--max-train", type=int, default=8000, help="the fixed subset: the first N training rows")
    parser.add_argument("--epochs", type=int, default=3, help="search epochs per trial")
    parser.add_argument("--budgets", help="latency budgets in ms at batch 1 (default: the sweep's three defaults)")
    parser.add_argument("--workers", type=int, default=1, help="`nas sweep` workers sharing the study")
    parser.add_argument("--latency-table", action="append", default=[], metavar="FILE",
                        help="a `nas latency-table` file per swept hidden size (64, 128), measured on a quiet "
                             "machine (default: the sweep measures them when it starts)")
    parser.add_argument("--runs", default=str(ROOT / "runs/sweep"))
    parser.add_argument("--teachers", default=str(ROOT / "runs/teachers"))
    parser.add_argument("--knowledge", default=str(ROOT / "runs/adabert/sst2/knowledge"))
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--baselines", default=str(ROOT / "experiments/results/baselines.json"))
    parser.add_argument("--results", default=str(ROOT / "experiments/results/sweep.md"))
    parser.add_argument("--plot", default=str(ROOT / "experiments/results/sweep_pareto.png"))
    args = parser.parse_args()

    if not (Path(args.teachers) / TASK / "metrics.json").is_file():
        raise SystemExit(f"no teacher at {Path(args.teachers) / TASK}: run python experiments/teacher.py first")
    if not (Path(args.knowledge) / "manifest.json").is_file():
        raise SystemExit(f"no knowledge at {args.knowledge}: run python experiments/adabert.py first")
    runs = Path(args.runs) / TASK
    points_file, baselines = baseline_points(Path(args.baselines), 1, runs.parent / "baselines_points.json")
    command = nas_sweep(args, points_file)
    started = time.perf_counter()
    run_workers(command, args.workers)
    seconds = time.perf_counter() - started

    import optuna
    from optuna.trial import TrialState

    from nas.sweep.sweep_report import finished_rows
    from nas.sweep.sweep_storage import SURPLUS

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.load_study(study_name=f"adabert-{TASK}", storage=f"sqlite:///{runs.resolve() / 'study.db'}")
    settings = study.user_attrs["settings"]
    seq_len = settings["latency_seq_len"]
    # Students trained on this machine (workers elsewhere keep theirs in their own RUNS folder).
    complete = [t for t in study.get_trials(states=(TrialState.COMPLETE,))
                if "result" in t.user_attrs and (Path(t.user_attrs["folder"]) / "student" / "config.json").is_file()]
    retimed = retime_students(complete, 1, seq_len)
    states = [t.state for t in study.get_trials() if not t.user_attrs.get(SURPLUS)]
    shutil.copyfile(runs / "pareto.png", args.plot)
    write_report(Path(args.results), args, command, study, finished_rows(study), retimed, states, baselines, seq_len,
                 seconds)
    return 0


def write_report(path: Path, args, command, study, rows, retimed, states, baselines, seq_len, seconds) -> None:
    from optuna.trial import TrialState

    from nas.base.markdown import markdown_cell
    from nas.sweep.pareto import pareto_front
    from nas.base.run_info import machine

    metric = study.user_attrs["settings"]["metric"]
    front = set(pareto_front([(r["metric"], r["latency_ms"]) for r in rows]))
    budgets = study.user_attrs["budgets"]
    meets = [r for r in rows if retimed.get(r["trial"], float("inf")) <= r["budget_ms"]]
    argv = " ".join(sys.argv[1:])
    lines = [
        "# Latency-budgeted search sweep on SST-2 (MiniLM teacher)",
        "",
        f"Command: `{('python experiments/sweep.py ' + argv).strip()}`  ",
        f"Sweep: `nas {' '.join(Path(part).relative_to(ROOT).as_posix() if part.startswith(str(ROOT)) else part for part in command)}`  ",
        f"Machine: {machine()}  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M %Z')}; this run of the script took {seconds / 60:.1f} min "
        "(earlier runs of a resumed study not counted)",
        "",
        f"Latency budgets: {', '.join(f'{b:g}' for b in budgets)} ms at batch 1, {seq_len} tokens.  ",
        f"Trials: {states.count(TrialState.COMPLETE)} complete, {states.count(TrialState.PRUNED)} pruned, "
        f"{states.count(TrialState.FAIL)} failed. Each: search on the first {args.max_train} training rows "
        f"(epochs: {args.epochs}), then 1 finetune epoch on the same rows; dev: the full SST-2 dev set.",
        "",
        "Latency columns: *predicted* by the sweep's latency table for the derived genotype; *trial* timed "
        "by the trial right after its finetune, the student alone (median of 30 runs, the budget's batch and length; "
        "the sweep's latency objective); *re-timed* here, every "
        f"student in one process, interleaved, median of 30 runs on {seq_len} real tokens (the budget's length). "
        f"**{len(meets)} of {len(rows)}** students meet their budget when re-timed.",
        "",
        f"| trial | Pareto | dev {metric} | budget ms | predicted ms | trial ms | re-timed ms | meets budget "
        "| params | FLOPs | β | γ | τ start | H | Kmax | genotype |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for i, r in sorted(enumerate(rows), key=lambda item: (item[1]["budget_ms"], -item[1]["metric"])):
        again = retimed.get(r["trial"])
        if again is None:
            continue  # trained on another machine: not re-timed here
        lines.append(
            f"| {r['trial']} | {'yes' if i in front else ''} | {r['metric']:.4f} | {r['budget_ms']:g} | {r['predicted_ms']:.3f} "
            f"| {r['latency_ms']:.3f} | {again:.3f} | {'yes' if again <= r['budget_ms'] else '**no**'} | {r['params']:,} "
            f"| {r['flops']:,} | {r['beta']:.3g} | {r['gamma']:.3g} | {r['tau_start']:.3g} | {r['hidden_size']} "
            f"| {r['max_cells']} | `{markdown_cell(r['genotype_text'])}` |")
    if baselines:
        shown = Path(args.baselines).resolve()
        shown = shown.relative_to(ROOT) if shown.is_relative_to(ROOT) else shown
        lines += ["", f"KD baselines ({shown}, drawn as black squares in the plot; latency timed there, beside the "
                  "teacher). They were trained as that file's table says (SST-2's first 8000 rows, 3 epochs per stage), "
                  f"the sweep's students on the first {args.max_train} rows with a short finetune, so part of the accuracy "
                  "gap between the two sets is training, not architecture.", "",
                  f"| method | dev {metric} | batch 1 ms | params | FLOPs |", "| --- | --- | --- | --- | --- |"]
        lines += [f"| {b['method']} | {b['metric']:.4f} | {b['batch_1_ms']:.3f} | {b['params']:,} | {b['flops']:,} |"
                  for b in baselines]
    else:
        lines += ["", f"No KD baselines drawn ({args.baselines} is missing)."]
    lines += ["", f"![Pareto front]({Path(args.plot).name})", ""]
    from nas.base import atomic

    atomic.write_text(path, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
