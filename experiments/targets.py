"""Issue 11's speed targets as a user reaches them: `nas run --preset speedup5`, untuned, per task and speed-up.

Usage: python experiments/targets.py [--tasks mrpc] [--speeds 5,20] [--seeds 42] [--max-train N]
                                     [--finetune-seeds 43,44] [--finetune-set KEY=VALUE ...]
                                     [--knowledge-set KEY=VALUE ...] [--sanity] [--retime]
                                     [--teachers runs/teachers]
                                     [--runs runs/targets] [--report-only]

Each run is the whole pipeline with the `speedup5` preset (`--set search.latency_speedup=20` for
20x) on experiments/teacher.py's teacher (copied into the run folder, so `nas run` skips its
teacher stage): AdaBERT's transfer set, the budgeted search with its measured latency check, the
finetune from the search's weights. A run resumes where a stopped session left it (`nas run`
resumes every stage). Every finished run is kept in experiments/results/targets.json, so the
table outlives the run folders (these machines are not kept between sessions; a run made again
from the start on a new machine gets a row of its own beside the earlier one's); the report
experiments/results/targets.md is rewritten from it. Processes started side by side (one per
speed-up, say) share the JSON under a lock.

`--finetune-seeds`: each finished run's searched student finetuned again as the pipeline did (the
preset's finetune settings, the run's knowledge) with each of these seeds, so that a verdict a
few dev rows decide is read beside the spread the finetune's seed alone brings. With
`--finetune-set KEY=VALUE` (repeatable) those finetunes change the preset's settings (e.g.
`use_augmented=false` and `epochs=6`: the task's own rows instead of the transfer set), an
ablation of one lever on the searched student, reported apart. `--knowledge-set KEY=VALUE`
(repeatable) makes those finetunes train on another transfer set: the preset's knowledge settings
with these changed (e.g. `pair_shared_words=true`), built by `nas knowledge` beside the run's own.
Every finetune is reported by its kept epoch (the best on dev, as `nas finetune` keeps it) and by
its last epoch: a recipe with more epochs has more dev scores to pick its best from. Each transfer
set is reported with the share of its variants the teacher labels like their source row.

`--retime`: each finished run's student timed again beside its teacher in this one process (as
`nas finetune` timed them, at its torch threads, on the first 1 / 32 dev rows), with the machine's
load as it began: run it on a quiet machine. The training processes time their students while other
jobs run (SST-2's 20x recurrent student came out 24.6x in its search's check and 18.1x in its
metrics.json); where a run has been re-timed, "meets" reads the re-timed speed-up.

`--sanity`: issue 11's second target for each finished run, `nas sanity` as a user runs it on the
search's arch.json: the searched student against 5 random architectures of equal predicted
latency (random depth, width and cell), every one finetuned as the pipeline finetunes its student
(the preset's settings, from the search's supernet: `--set init=search`).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from baselines import majority_class_score, nas, timed_record  # noqa: E402  (experiments/ is this script's folder)
from gap import FLOOR_POINTS, GAP_POINTS  # noqa: E402
from kd.knowledge import Knowledge  # noqa: E402
from nas.base import atomic  # noqa: E402
from nas.base.markdown import markdown_cell  # noqa: E402
from nas.data.model_metrics import StudentMetrics  # noqa: E402
from nas.run.pipeline import preset_file  # noqa: E402
from nas.train.latency_check import kept_timing  # noqa: E402
from searchspace.genotype import Genotype  # noqa: E402

PRESET = "speedup5"
RESULTS = ROOT / "experiments/results/targets.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="mrpc")
    parser.add_argument("--speeds", default="5,20")
    parser.add_argument("--seeds", default="42")
    parser.add_argument("--max-train", type=int, default=None, help="the task's first N training rows (every stage)")
    parser.add_argument("--finetune-seeds", default="", help="finetune each searched student again with these seeds")
    parser.add_argument("--finetune-set", action="append", default=[], metavar="KEY=VALUE",
                        help="a finetune setting that --finetune-seeds' finetunes change (repeatable)")
    parser.add_argument("--knowledge-set", action="append", default=[], metavar="KEY=VALUE",
                        help="a knowledge setting of the transfer set --finetune-seeds' finetunes train on (repeatable)")
    parser.add_argument("--search-set", action="append", default=[], metavar="KEY=VALUE",
                        help="a search setting the run changes from the preset's (repeatable; its own run folder)")
    parser.add_argument("--sanity", action="store_true", help="the searched student against random ones of equal latency")
    parser.add_argument("--retime", action="store_true", help="time each finished run's student beside its teacher again")
    parser.add_argument("--teachers", default=str(ROOT / "runs/teachers"))
    parser.add_argument("--runs", default=str(ROOT / "runs/targets"))
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--results", default=str(RESULTS))
    parser.add_argument("--report-only", action="store_true", help="run nothing: rewrite the report from the JSON")
    args = parser.parse_args()
    results = Path(args.results)

    for task in [] if args.report_only else args.tasks.split(","):
        teacher = Path(args.teachers) / task
        if not (teacher / "metrics.json").is_file():
            print(f"{task}: no teacher at {teacher} yet (python experiments/teacher.py); skipped", flush=True)
            continue
        for speed in map(float, args.speeds.split(",")):
            for seed in map(int, args.seeds.split(",")):
                name = run_name(task, speed, seed, args.max_train, args.search_set)
                out = Path(args.runs) / name
                seconds = run(task, speed, seed, args, teacher, out)
                again = {str(other): refinetune(task, other, args, out)  # str: the JSON's keys
                         for other in map(int, filter(None, args.finetune_seeds.split(",")))}
                variant = " ".join([*(f"knowledge.{pair}" for pair in args.knowledge_set), *args.finetune_set])
                checked = sanity(task, args, out) if args.sanity else None
                timed = retime(task, args, out) if args.retime else None
                finished = record(task, speed, seed, args, out, seconds)
                with locked(results) as records:
                    earlier = records.get(name, {})
                    if earlier and earlier["date"] != finished["date"]:
                        # The same command run again from the start (run folders do not outlive a machine):
                        # the earlier run keeps its row, and its finetunes and checks stay with it.
                        records[f"{name}@{earlier['date']}"], earlier = earlier, {}
                    seeds, variants = earlier.get("finetune_seeds", {}), earlier.get("finetune_variants", {})
                    (variants.setdefault(variant, {}) if variant else seeds).update(again)
                    records[name] = {**finished, "finetune_seeds": seeds, "finetune_variants": variants,
                                     "sanity": checked or earlier.get("sanity"), "retimed": timed or earlier.get("retimed")}
    with locked(results) as records:
        write_report(results.with_suffix(".md"), records)
    return 0


def run_name(task: str, speed: float, seed: int, max_train: int | None, search_set=()) -> str:
    return (f"{task}_{speed:g}x_seed{seed}" + (f"_first{max_train}" if max_train else "")
            + "".join(f"_search-{slug(pair)}" for pair in search_set))


def command(task: str, speed: float, seed: int, max_train: int | None, search_set=()) -> list[str]:
    """The `nas run` arguments of one target, as a user types them (no --out, no --data-dir)."""
    return ["run", "--task", task, "--preset", PRESET, "--seed", str(seed),
            *(["--set", f"search.latency_speedup={speed:g}"] if speed != 5 else []),
            *(part for pair in search_set for part in ("--set", f"search.{pair}")),
            *(["--max-train", str(max_train)] if max_train else [])]


def run(task: str, speed: float, seed: int, args, teacher: Path, out: Path) -> float:
    """`nas run` into `out` unless finished; the wall seconds it has taken over every session (kept
    in out/seconds.json, since a stopped run is resumed by a later invocation)."""
    spent = out / "seconds.json"
    seconds = json.loads(spent.read_text())["seconds"] if spent.is_file() else 0.0
    if (out / "report.md").is_file():
        return seconds
    if not (out / "teacher" / "metrics.json").is_file():
        shutil.copytree(teacher, out / "teacher", dirs_exist_ok=True)
    started = time.perf_counter()
    try:
        nas(*command(task, speed, seed, args.max_train, args.search_set), "--out", out, *data_dir(args))
    finally:  # a stopped run's time still counts towards the whole
        seconds += time.perf_counter() - started
        atomic.write_json(spent, {"seconds": seconds})
    return seconds


def data_dir(args) -> list:
    return ["--data-dir", args.data_dir] if args.data_dir else []


def rows(args) -> list:
    """The training rows of every stage: `--max-train N`, or none (all)."""
    return ["--max-train", args.max_train] if args.max_train else []


def refinetune(task: str, seed: int, args, out: Path) -> dict:
    """The run's searched student finetuned again with `seed` and `--finetune-set`'s changes (skipped
    when finished): its dev metrics and speed-ups."""
    knowledge = transfer_set(task, args, out)
    names = [*(f"knowledge-{slug(pair)}" for pair in args.knowledge_set), *map(slug, args.finetune_set)]
    folder = out / ("finetune_" + "_".join([*names, f"seed{seed}"]))
    if not (folder / "metrics.json").is_file():
        nas("finetune", "--task", task, "--arch", out / "search" / "arch.json", "--teacher", out / "teacher",
            "--knowledge", knowledge, "--config", preset_file(PRESET), "--seed", seed, "--out", folder,
            "--resume", *settings(args.finetune_set), *rows(args), *data_dir(args))
    trained = scores(folder / "metrics.json")
    # The transfer set's labels, where the finetune trained on its variants (more rows than the task's)
    opened = Knowledge(knowledge)
    used_variants = trained.pop("train_rows") > opened.manifest.splits["train"]
    return {**trained, "agreement": label_agreement(opened) if used_variants else None}


def transfer_set(task: str, args, out: Path) -> Path:
    """The knowledge folder `--knowledge-set` asks for (built by `nas knowledge` unless it exists),
    or the run's own."""
    if not args.knowledge_set:
        return out / "knowledge"
    folder = out / ("knowledge_" + "_".join(map(slug, args.knowledge_set)))
    if not (folder / "manifest.json").is_file():
        nas("knowledge", "--task", task, "--teacher", out / "teacher", "--config", preset_file(PRESET),
            "--out", folder, *settings(args.knowledge_set), *rows(args), *data_dir(args))
    return folder


def settings(pairs: list[str]) -> list[str]:
    """KEY=VALUE pairs as `nas` arguments: --set KEY=VALUE each."""
    return [item for pair in pairs for item in ("--set", pair)]


def scores(metrics_json: Path) -> dict:
    """A finetune's dev metric at its kept epoch and at its last, its speed-up at batch 32 and the rows it trained on."""
    student = StudentMetrics.load(metrics_json)
    return {"score": student.metrics[student.primary_metric], "last_epoch": last_epoch(student),
            "speedup_32": student.speedup_at(32), "train_rows": student.train_rows}


def last_epoch(student: StudentMetrics) -> float | None:
    """The dev metric after a finetune's last epoch (None where metrics.json has no history)."""
    return student.history[-1][student.primary_metric] if student.history else None


def label_agreement(folder: Knowledge) -> float | None:
    """The share of a transfer set's variants whose teacher label is its source row's (None for a
    regression task or a folder without variants)."""
    train = np.asarray(folder.split("train").logits)
    if train.shape[1] == 1 or "augmented" not in folder.manifest.splits:  # one column: a regression score
        return None
    source = train.argmax(axis=1)
    variants = np.asarray(folder.split("augmented").logits).argmax(axis=1)
    per_row = folder.manifest.inputs.variants
    return float((variants == np.repeat(source, per_row)[: len(variants)]).mean())


def retime(task: str, args, out: Path) -> dict:
    """The run's student and its teacher timed again side by side in this process, at the torch
    threads its finetune timed them with: the speed-ups, and when and how loaded."""
    import torch

    threads = StudentMetrics.load(out / "student" / "metrics.json").latency_threads
    torch.set_num_threads(threads)
    timed = timed_record(task, out / "teacher", {"student": out / "student"}, args.data_dir)
    student, teacher = timed["students"]["student"], timed["teacher"]
    return {"date": timed["date"], "load_average": timed["load_average"], "threads": timed["threads"],
            **{f"speedup_{size}": teacher[f"batch_{size}_ms"] / student[f"batch_{size}_ms"] for size in (1, 32)}}


def speedup_32(r: dict) -> float:
    """The batch-32 speed-up a verdict reads: the re-timed one where the run has been timed again."""
    return (r.get("retimed") or r)["speedup_32"]


def slug(pair: str) -> str:
    """A folder-name form of KEY=VALUE."""
    return "".join(c if c.isalnum() else "-" for c in pair)


def sanity(task: str, args, out: Path) -> dict:
    """`nas sanity` of the run's arch.json (skipped when finished): the searched student's dev metric
    against the random architectures'."""
    folder = out / "sanity"
    if not (folder / "sanity.json").is_file():
        nas("sanity", "--task", task, "--arch", out / "search" / "arch.json", "--teacher", out / "teacher",
            "--knowledge", out / "knowledge", "--config", preset_file(PRESET), "--set", "init=search", "--random", 5,
            "--out", folder, *rows(args), *data_dir(args))
    summary = json.loads((folder / "sanity.json").read_text())
    return {key: summary[key] for key in ("searched", "random_mean", "random_std", "gain_points", "beats_random")} | {
        "random": [{"genotype": row["genotype"], "score": row[summary["metric"]], "predicted_ms": row["predicted_ms"]}
                   for row in summary["rows"] if row["name"] != "searched"]}


def record(task: str, speed: float, seed: int, args, out: Path, seconds: float) -> dict:
    student = StudentMetrics.load(out / "student" / "metrics.json")
    metric = student.primary_metric
    teacher_score = json.loads((out / "teacher" / "metrics.json").read_text())["metrics"][metric]
    searched = Genotype.load(out / "search" / "arch.json")
    check = (searched.extra or {}).get("latency_check")
    kept = kept_timing(check, searched) if check else None
    knowledge = Knowledge(out / "knowledge")
    return {
        "task": task, "speed": speed, "seed": seed, "max_train": args.max_train, "metric": metric,
        "command": " ".join(["nas", *command(task, speed, seed, args.max_train, args.search_set)]),
        **stamp(student, out / "student" / "metrics.json"),
        "teacher": teacher_score, "student": student.metrics[metric],
        "student_last_epoch": last_epoch(student),
        "agreement": label_agreement(knowledge),
        "knowledge_rows": sum(knowledge.manifest.splits.values()), "knowledge_seconds": knowledge.manifest.seconds,
        "majority": majority_class_score(task, args.data_dir, rows(args))[metric],
        "speedup_1": student.speedup_at(1), "speedup_32": student.speedup_at(32),
        "check_speedup": kept["speedup"] if kept else None,
        "genotype": student.genotype, "params": student.student.params, "train_rows": student.train_rows,
        "seconds": seconds,
    }


def stamp(student: StudentMetrics, metrics_json: Path) -> dict:
    """When a finetune finished (its metrics.json's time, not when this script last looked at it:
    it adds finetunes later) and the machine it was timed on."""
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(metrics_json.stat().st_mtime)),
            "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, "
                       f"{student.latency_threads} torch thread(s)"}


class locked:
    """The JSON of finished runs, read and written back under an exclusive lock (`with locked(path) as
    records`). The lock is taken on the JSON's folder, so no lock file is left beside it."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> dict:
        self.folder = os.open(self.path.parent, os.O_RDONLY)
        fcntl.flock(self.folder, fcntl.LOCK_EX)
        self.records = json.loads(self.path.read_text()) if self.path.is_file() else {}
        return self.records

    def __exit__(self, *failed) -> None:
        try:
            if not any(failed):
                atomic.write_json(self.path, self.records)
        finally:
            os.close(self.folder)  # releases the lock


def verdict(r: dict) -> str:
    """Which target the run meets: its speed-up at batch 32 (from its finetune's side-by-side timing,
    or `--retime`'s where it has one) and its distance to the teacher in points; a student no better
    than always predicting the majority class meets nothing, however weak its teacher."""
    gap = (r["teacher"] - r["student"]) * 100
    if r["student"] <= r["majority"]:
        return "no: at the majority-class floor"
    fast = speedup_32(r) >= r["speed"]
    if fast and gap <= GAP_POINTS[r["speed"]]:
        return "yes"
    if fast and r["speed"] == 5 and gap <= FLOOR_POINTS:
        return f"at the floor ({FLOOR_POINTS:g} points)"
    return "no: " + ", ".join(why for why, missed in ((f"{gap:.2f} points below", gap > GAP_POINTS[r["speed"]]),
                                                       (f"{speedup_32(r):.1f}x", not fast)) if missed)


def _spread(scores: list) -> str:
    scores = [score for score in scores if score is not None]  # runs recorded before last epochs were
    if not scores:
        return "-"
    return f"{statistics.mean(scores):.4f} ± {statistics.stdev(scores):.4f} ({len(scores)})" if len(scores) > 1 else \
        f"{scores[0]:.4f} (1)"


def _retimed(timed: dict | None) -> str:
    if not timed:
        return "-"
    load = f", load {timed['load_average']:.1f}" if timed.get("load_average") is not None else ""
    return (f"{timed['speedup_1']:.1f}x / {timed['speedup_32']:.1f}x ({timed['date']}, "
            f"{timed['threads']} thread(s){load})")


def _share(value) -> str:
    return "-" if value is None else f"{value:.1%}"


def _per_seed(runs: dict) -> str:
    """seed: kept-epoch metric / last-epoch metric, b=32 speed-up; for each finetune."""

    def last(a: dict) -> str:  # nothing for a finetune recorded before last epochs were
        return "" if a.get("last_epoch") is None else f" / {a['last_epoch']:.4f}"

    return "; ".join(f"{seed}: {a['score']:.4f}{last(a)}, {a['speedup_32']:.1f}x" for seed, a in sorted(runs.items())) or "-"


def _build(r: dict) -> str:
    """The transfer set's rows, build minutes and rows/s, as its manifest records them."""
    if not r.get("knowledge_seconds"):
        return "-"
    rows, seconds = r["knowledge_rows"], r["knowledge_seconds"]
    return f"{rows:,} rows, {seconds / 60:.0f} min ({rows / seconds:.0f} rows/s)"


def _table_head(columns: list[str]) -> list[str]:
    """A markdown table's header row and its rule."""
    return ["| " + " | ".join(columns) + " |", "| " + " | ".join(["---"] * len(columns)) + " |"]


def write_report(path: Path, records: dict) -> None:
    lines = [
        "# Issue 11's speed targets by `nas run --preset speedup5`, untuned",
        "",
        "Produced by `python experiments/targets.py` (each row: its command, machine and date). Each run is the "
        "whole pipeline as a user runs it on experiments/teacher.py's MiniLM teacher (copied in): AdaBERT's transfer "
        "set, the search under the latency budget with its measured check, the finetune from the search's weights. "
        f"Targets: at least 5x faster than the teacher at batch 32 within {GAP_POINTS[5.0]:g} points (floor "
        f"{FLOOR_POINTS:g}), at least 20x within {GAP_POINTS[20.0]:g}. Speed-ups: the finetune's metrics.json (student "
        "and teacher timed side by side in one process, CPU, on the first 1 / 32 dev rows); \"check\" is the search's "
        "own timing of the kept student before arch.json was written; \"re-timed\": student and teacher timed "
        "again side by side by `--retime` (when, threads, the load average as it began), which \"meets\" then reads. "
        "Dev sets are complete. \"Finetuned again\": the "
        "same searched student finetuned by `nas finetune` with the preset's settings and another seed "
        "(`--finetune-seeds`), and the mean and standard deviation of the dev metric over the run's finetune and these: "
        "the spread the finetune's seed alone brings. A finetune keeps its best epoch on dev (`nas finetune`'s rule, "
        "the teacher's too); \"last epoch\" is its score after the last, which no choice on dev has lifted. "
        "\"Labelled like the source\": the share of the transfer set's variants the teacher gives their source row's "
        "label. \"Transfer set built\": the rows the teacher labelled (train, dev, augmented) and the build time in the "
        "knowledge folder's manifest; \"wall time\" is that of the `nas run` invocations this script timed to their end "
        "or error, so a transfer set built outside them is counted in \"transfer set built\" only (SST-2's: the "
        "first invocation was stopped once it was built, to cap the search's rows in the preset, and the 20x run "
        "took a copy of the 5x run's, of identical knowledge settings).",
        "",
        *_table_head(["task", "speed-up asked", "seed", "dev metric", "last epoch", "teacher", "below (points)",
                      "majority class", "b=1 faster", "b=32 faster", "check", "re-timed b=1 / b=32", "meets",
                      "finetuned again (seed: metric / last epoch, b=32)", "mean ± sd", "last epochs: mean ± sd",
                      "student", "params", "rows trained", "labelled like the source", "transfer set built", "wall time",
                      "machine", "date", "command"]),
    ]
    for r in sorted(records.values(), key=lambda r: (r["task"], r["speed"], r["seed"])):
        check = f"{r['check_speedup']:.1f}x" if r.get("check_speedup") else "-"
        subset = f" (first {r['max_train']:,} rows)" if r.get("max_train") else ""
        again = r.get("finetune_seeds") or {}
        spread = _spread([r["student"], *(a["score"] for a in again.values())]) if again else "-"
        last_spread = _spread([r.get("student_last_epoch"), *(a.get("last_epoch") for a in again.values())]) if again else "-"
        last = "-" if r.get("student_last_epoch") is None else f"{r['student_last_epoch']:.4f}"
        lines.append(
            f"| {r['task']}{subset} | {r['speed']:g}x | "
            f"{r['seed']} | {r['metric']} {r['student']:.4f} | {last} | {r['teacher']:.4f} | "
            f"{(r['teacher'] - r['student']) * 100:.2f} | {r['majority']:.4f} | {r['speedup_1']:.1f}x | {r['speedup_32']:.1f}x | "
            f"{check} | {_retimed(r.get('retimed'))} | {verdict(r)} | {_per_seed(again)} | {spread} | {last_spread} | `{markdown_cell(r['genotype'])}` | "
            f"{r['params']:,} | {r['train_rows']:,} | {_share(r.get('agreement'))} | {_build(r)} | {r['seconds'] / 60:.0f} min | "
            f"{r['machine']} | {r['date']} | `{r['command']}` |")
    varied = [(r, variant, runs) for r in sorted(records.values(), key=lambda r: (r["task"], r["speed"], r["seed"]))
              for variant, runs in (r.get("finetune_variants") or {}).items()]
    if varied:
        lines += [
            "",
            "## The searched student finetuned otherwise (`--finetune-set`)",
            "",
            "The run's searched student finetuned again by `nas finetune` with the preset's settings changed as the "
            "row says (`knowledge.`: on a transfer set built with that knowledge setting changed, `--knowledge-set`), "
            "one finetune per seed; beside it the run's own finetune and `--finetune-seeds`' (the preset's settings). "
            "Kept epoch: the best on dev; last epoch: after the last (a recipe of more epochs picks its best among "
            "more dev scores).",
            "",
            "| run | changed | labelled like the source | per seed (metric / last epoch, b=32) | mean ± sd | "
            "last epochs: mean ± sd | with the preset's settings: mean ± sd | last epochs: mean ± sd |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r, variant, runs in varied:
            again = (r.get("finetune_seeds") or {}).values()
            preset = _spread([r["student"], *(a["score"] for a in again)])
            preset_last = _spread([r.get("student_last_epoch"), *(a.get("last_epoch") for a in again)])
            agreement = next(iter(runs.values())).get("agreement")  # of the transfer set these trained on
            lines.append(f"| {r['task']} {r['speed']:g}x seed {r['seed']} | `{variant}` | {_share(agreement)} | "
                         f"{_per_seed(runs)} | {_spread([a['score'] for a in runs.values()])} | "
                         f"{_spread([a.get('last_epoch') for a in runs.values()])} | {preset} | {preset_last} |")
    checked = [r for r in sorted(records.values(), key=lambda r: (r["task"], r["speed"], r["seed"])) if r.get("sanity")]
    if checked:
        lines += [
            "",
            "## Does the search beat chance? (`--sanity`)",
            "",
            "Each run's searched student against 5 random architectures whose predicted latency is within 10% of its "
            "own (random depth, width and cell; `nas sanity --set init=search`, every one finetuned from the search's "
            "supernet with the preset's finetune settings). The target: the searched one above the random ones' mean "
            "by at least one standard deviation and 0.5 points.",
            "",
            "| run | searched | random mean ± sd | gain (points) | beats chance | random architectures (metric) |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        lines += [f"| {r['task']} {r['speed']:g}x seed {r['seed']} | {r['sanity']['searched']:.4f} | "
                  f"{r['sanity']['random_mean']:.4f} ± {r['sanity']['random_std']:.4f} | {r['sanity']['gain_points']:+.2f} | "
                  f"{'yes' if r['sanity']['beats_random'] else 'no'} | "
                  + "; ".join(f"`{markdown_cell(a['genotype'])}` {a['score']:.4f}" for a in r["sanity"]["random"]) + " |"
                  for r in checked]
    atomic.write_text(path, "\n".join(lines) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
