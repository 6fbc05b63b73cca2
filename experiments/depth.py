"""How far depth closes the gap to the teacher: the searched SST-2 cell stacked K times.

Usage: python experiments/depth.py [--task sst2] [--depths 1,2,4,8] [--epochs 3] [--runs runs/depth]
                                   [--no-budgeted-search] [--random 5]

The search of experiments/adabert.py settles on K=1 (its efficiency term pulls the depth down),
and that student ends 9 points below the teacher. This experiment keeps the searched cell, sets
K by hand (an arch.json with only the four fixed keys), trains each student from scratch with KD
on the full training set, and times every student beside the teacher in one process. It answers
whether the accuracy target (within 2 points of the teacher) is reachable at a speed that still
meets the latency target (at least 5x faster than the teacher at batch 32).

It then runs the search the way a user with that latency target would: `nas search
--latency-budget B --set latency_batch_size=32 --set depth_choice=budget`, B being the
teacher's batch-32 latency (timed here first) over 5, on the same rows and epochs as
experiments/adabert.py's search, and trains its student like the stacked ones. Its cell is then
set against `--random` random cells of the same depth and similar FLOPs, all trained the same
way as experiments/adabert.py's sanity check (from scratch, its subset and epochs).

Needs experiments/teacher.py's teacher and experiments/adabert.py's search and knowledge.
Finished runs are skipped, so the script resumes. Writes experiments/results/depth.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adabert import SETTINGS, sanity_check  # noqa: E402  (experiments/ is this script's folder)
from baselines import measure_side_by_side, nas  # noqa: E402

SPEED_TARGET = 5.0  # issue 3: at least 5x faster than the MiniLM teacher at batch 32
GAP_TARGET = 2.0  # issue 3: within 2 points of the teacher


def stacked(reference: Path, depth: int, path: Path) -> Path:
    """The searched cell of `reference` stacked `depth` times, as a hand-written arch.json."""
    searched = json.loads(reference.read_text())
    arch = {key: searched[key] for key in ("schema_version", "hidden_size", "cell")}
    arch["num_cells"] = depth
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(arch))
    return path


def budgeted_search(args, teacher: Path, common: list, runs: Path) -> tuple[str, Path, dict]:
    """Search under the latency target's budget with depth_choice=budget and finetune its student;
    returns the student's name and folder, and the budget with the derived genotype."""
    from searchspace.genotype import Genotype

    search, out, budget_file = runs / "budget_search", runs / "budget_student", runs / "budget.json"
    if not budget_file.is_file():  # timed once: a resumed run keeps its budget
        teacher_ms = measure_side_by_side(args.task, teacher, {}, args.data_dir)["teacher"]["batch_32_ms"]
        budget_file.parent.mkdir(parents=True, exist_ok=True)
        budget_file.write_text(json.dumps({"teacher_batch_32_ms": teacher_ms, "budget_ms": round(teacher_ms / SPEED_TARGET, 3)}))
    budget = json.loads(budget_file.read_text())
    if not (search / "arch.json").is_file():
        resume = ["--resume"] if (search / "checkpoint.pt").is_file() else []
        nas("search", *common, "--out", search, *SETTINGS[args.task]["search"], "--latency-budget", budget["budget_ms"],
            "--set", "latency_batch_size=32", "--set", "depth_choice=budget", *resume)
    if not (out / "metrics.json").is_file():
        nas("finetune", *common, "--arch", search / "arch.json", "--out", out, "--epochs", args.epochs,
            "--set", "init=scratch", "--set", "latency_repeats=3")
    arch = Genotype.load(search / "arch.json")
    return f"budgeted search, K={arch.num_cells}", out, {**budget, "arch": arch}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--depths", default="1,2,4,8")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--runs", default=str(ROOT / "runs/depth"))
    parser.add_argument("--adabert-runs", default=str(ROOT / "runs/adabert"), help="experiments/adabert.py's run folder")
    parser.add_argument("--teachers", default=str(ROOT / "runs/teachers"))
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--no-budgeted-search", dest="budgeted_search", action="store_false",
                        help="skip the search under the latency target's budget")
    parser.add_argument("--random", type=int, default=5, help="random cells set against the budgeted search's cell")
    parser.add_argument("--results", default=str(ROOT / "experiments/results/depth.md"))
    args = parser.parse_args()

    teacher = Path(args.teachers) / args.task
    adabert = Path(args.adabert_runs) / args.task
    reference, knowledge = adabert / "search" / "arch.json", adabert / "knowledge"
    for needed, script in ((teacher / "metrics.json", "teacher.py"), (reference, "adabert.py"), (knowledge / "manifest.json", "adabert.py")):
        if not needed.is_file():
            raise SystemExit(f"{needed} is missing: run python experiments/{script} first")
    data = ["--data-dir", args.data_dir] if args.data_dir else []
    common = ["--task", args.task, *data, "--teacher", teacher, "--knowledge", knowledge]
    runs = Path(args.runs) / args.task
    folders = {}
    for depth in map(int, args.depths.split(",")):
        out = runs / f"k{depth}"
        if not (out / "metrics.json").is_file():
            arch = stacked(reference, depth, runs / f"arch_k{depth}.json")
            nas("finetune", *common, "--arch", arch, "--out", out, "--epochs", args.epochs, "--set", "init=scratch", "--set", "latency_repeats=3")
        folders[f"K={depth}"] = out
    budget, sanity = None, {}
    if args.budgeted_search:
        name, folder, budget = budgeted_search(args, teacher, common, runs)
        folders[name] = folder
        if args.random:
            sanity = sanity_check(args.task, runs / "budget_search" / "arch.json", runs, common, args.random)
    latency = measure_side_by_side(args.task, teacher, folders, args.data_dir)
    records = {name: json.loads((folder / "metrics.json").read_text()) for name, folder in folders.items()}
    write_report(Path(args.results), args, json.loads((teacher / "metrics.json").read_text()), records, latency, budget, sanity)
    return 0


def write_report(path: Path, args, teacher: dict, records: dict, latency: dict, budget: dict | None,
                 sanity: dict) -> None:
    from nas.base import atomic
    from nas.base.markdown import markdown_cell
    from nas.base.run_info import machine

    metric = next(iter(records.values()))["primary_metric"]
    teacher_score = teacher["metrics"][metric]
    cell = " ".join(next(iter(records.values()))["genotype"].split(" | ")[1:])
    lines = [
        f"# Depth of the searched cell on {args.task} (MiniLM teacher)",
        "",
        f"Command: `{' '.join(['python experiments/depth.py', *sys.argv[1:]])}`  ",
        f"Machine: {machine()}  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M %Z')}",
        "",
        f"The cell `{cell}` (experiments/adabert.py's search) stacked K times; each student trained from scratch with KD "
        f"(`nas finetune --set init=scratch --epochs {args.epochs}`, the tool's defaults otherwise) on the full training set. "
        "Latency: CPU, median of 20 interleaved runs after 5 warm-up runs on the first 1 / 32 dev rows, the teacher and "
        "every student in one process.",
        "",
        f"| student | dev {metric} | below teacher (points) | params | FLOPs (64 tokens) | b=1 (ms) | b=32 (ms) "
        "| faster than teacher b=1 | faster than teacher b=32 | train (s) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| teacher | {teacher_score:.4f} | 0 | | | {latency['teacher']['batch_1_ms']:.2f} | {latency['teacher']['batch_32_ms']:.2f} | 1.0x | 1.0x | |",
    ]
    meets = []
    for name, record in records.items():
        score, timing = record["metrics"][metric], latency[name]
        speedup_1 = latency["teacher"]["batch_1_ms"] / timing["batch_1_ms"]
        speedup_32 = latency["teacher"]["batch_32_ms"] / timing["batch_32_ms"]
        gap = (teacher_score - score) * 100
        lines.append(
            f"| {name} | {score:.4f} | {gap:.2f} | {record['student']['params']:,} | {record['student']['flops']:,} "
            f"| {timing['batch_1_ms']:.2f} | {timing['batch_32_ms']:.2f} | {speedup_1:.1f}x | {speedup_32:.1f}x "
            f"| {record['train_seconds']:.0f} |"
        )
        if speedup_32 >= SPEED_TARGET:
            meets.append((score, name, gap))
    lines.append("")
    if budget:
        arch = budget["arch"]
        lines += [
            f"Budgeted search: the teacher took {budget['teacher_batch_32_ms']:.1f} ms at batch 32 when timed before the "
            f"search, so the budget was {budget['budget_ms']:g} ms at batch 32, length 64; the search derived "
            f"`{markdown_cell(str(arch))}`, predicted at {arch.costs['predicted_latency_ms']:.2f} ms "
            f"(depth logits argmax: K={arch.depth_logits.index(max(arch.depth_logits)) + 1}).",
            "",
        ]
    scores = {name: metrics[metric] for name, (metrics, _, _) in sanity.items()}
    randoms = [score for name, score in scores.items() if name != "searched"]
    if randoms:
        lines += [
            f"Sanity check (`nas finetune --set init=scratch {' '.join(SETTINGS[args.task]['random'])}`): the budgeted "
            f"search's cell {scores['searched']:.4f} vs {len(randoms)} random cells of its depth and similar FLOPs: "
            f"mean {statistics.mean(randoms):.4f}, std {statistics.pstdev(randoms):.4f}, min {min(randoms):.4f}, "
            f"max {max(randoms):.4f}.",
            "",
            f"| cell | dev {metric} | FLOPs | genotype |",
            "| --- | --- | --- | --- |",
        ]
        for name, (_, flops, genotype) in sanity.items():
            lines.append(f"| {name} | {scores[name]:.4f} | {flops:,} | `{markdown_cell(genotype)}` |")
        lines.append("")
    if meets:
        score, name, gap = max(meets)
        verdict = "meets" if gap <= GAP_TARGET else "misses"
        lines.append(f"Most accurate student at least {SPEED_TARGET:g}x faster than the teacher at batch 32: {name}, "
                     f"{gap:.2f} points below the teacher ({verdict} the {GAP_TARGET:g}-point target).")
    else:
        lines.append(f"No student here is {SPEED_TARGET:g}x faster than the teacher at batch 32.")
    lines.append("")
    atomic.write_text(path, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
