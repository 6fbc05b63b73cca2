"""The shapes a search's trials weighed, each finetuned as the pipeline finetunes the one it chose:
do the trials rank depth against width as the full finetune does?

Usage: OMP_NUM_THREADS=1 python experiments/trial_shapes.py --run runs/targets/<run folder>
           [--shapes 2x256,1x256] [--seed 42] [--report-only]
       (the table: experiments/results/trial_shapes.md, from trial_shapes.json beside it)

`depth_choice=trial` (nas/train/shape_trials.py) trains the searched cell at each width, as deep
as the budget allows and shallower, for 2 epochs on 7,200 of the task's rows (and their copies)
and picks by the accuracy on 800 held-out rows. Those differ by less than one point, under the
noise of 800 rows, while the students they stand for are finetuned on the whole transfer set.
For each shape KxH of `--shapes` (default: every shape the run's search/shape_trials.json
tried) the run's cell at that depth and width is written beside the search's arch.json
(search/arch_K<K>_H<H>.json, so it starts from the same supernet weights, as `nas finetune`
starts the chosen one) and finetuned with the preset's settings on the run's transfer set into
<run>/shape_K<K>_H<H>_seed<S>, skipped where that folder has its metrics.json. Each row keeps the
command its finetune ran with (its metrics.json's provenance), the machine and the date.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from baselines import nas  # noqa: E402  (experiments/ is this script's folder)
from nas.base import atomic  # noqa: E402
from nas.base.markdown import markdown_cell  # noqa: E402
from nas.data.model_metrics import StudentMetrics  # noqa: E402
from nas.run.pipeline import preset_file  # noqa: E402
from searchspace.genotype import Genotype  # noqa: E402
from targets import PRESET, locked, stamp  # noqa: E402  (PRESET: the preset of the run folders this script reads)

RESULTS = ROOT / "experiments/results/trial_shapes.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", default=[], help="a finished experiments/targets.py run folder (repeatable)")
    parser.add_argument("--shapes", default="", help="KxH,... (default: the shapes the run's trials tried)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--results", default=str(RESULTS))
    parser.add_argument("--report-only", action="store_true", help="run nothing: rewrite the report from the JSON")
    args = parser.parse_args()
    results = Path(args.results)
    for folder in map(Path, [] if args.report_only else args.run):
        trials = json.loads((folder / "search" / "shape_trials.json").read_text())["trials"]
        held_out = {_shape(Genotype.from_string(t["genotype"])): score for t in trials
                    for key, score in t.items() if key.startswith("held_out_")}  # held_out_<the task's metric>
        shapes = [tuple(map(int, s.split("x"))) for s in args.shapes.split(",")] if args.shapes else list(held_out)
        for depth, width in shapes:
            keep(results, f"{folder.name}/K{depth}_H{width}_seed{args.seed}",
                 {**finetuned(folder, depth, width, args.seed), "run": folder.name, "held_out": held_out.get((depth, width))})
        keep(results, f"{folder.name}/searched", {**row(folder / "student"), "run": folder.name,
                                                  "held_out": held_out.get(_shape(built(folder / "student")))})
    write_report(results.with_suffix(".md"), json.loads(results.read_text()) if results.is_file() else {})
    return 0


def keep(results: Path, key: str, record: dict) -> None:
    """Add one row to the JSON as soon as it is known, under targets.py's lock: finetunes of other
    runs may be running beside this one (one each core) and adding theirs."""
    with locked(results) as records:
        records[key] = record


def _shape(genotype: Genotype) -> tuple[int, int]:
    return genotype.num_cells, genotype.hidden_size


def finetuned(run: Path, depth: int, width: int, seed: int) -> dict:
    """The run's cell at K=depth, H=width finetuned from the search's weights (unless done): its row."""
    searched = Genotype.load(run / "search" / "arch.json")
    arch = run / "search" / f"arch_K{depth}_H{width}.json"
    # The search's costs were for its own shape; metrics.json measures this one's.
    atomic.write_text(arch, replace(searched, num_cells=depth, hidden_size=width, costs=None).to_json())
    out = run / f"shape_K{depth}_H{width}_seed{seed}"
    if not (out / "metrics.json").is_file():
        nas("finetune", "--task", run_task(run), "--arch", arch, "--teacher", run / "teacher", "--knowledge",
            run / "knowledge", "--config", preset_file(PRESET), "--seed", seed, "--out", out, "--resume")
    return row(out)


def run_task(run: Path) -> str:
    return json.loads((run / "teacher" / "metrics.json").read_text())["task"]


def built(folder: Path) -> Genotype:
    """The genotype a student folder was built from (its arch.json)."""
    return Genotype.load(folder / "arch.json")


def row(folder: Path) -> dict:
    """What the table shows of one finetuned student, from its folder's metrics.json."""
    student = StudentMetrics.load(folder / "metrics.json")
    return {"genotype": student.genotype, "metric": student.primary_metric,
            "score": student.metrics[student.primary_metric], "teacher": student.teacher_metrics[student.primary_metric],
            "speedup_1": student.speedup_at(1), "speedup_32": student.speedup_at(32),
            "command": (student.provenance or {}).get("command", ""), **stamp(student, folder / "metrics.json")}


def write_report(path: Path, records: dict) -> None:
    lines = ["# Trial shapes against their finetunes", "",
             "Produced by `python experiments/trial_shapes.py --run <targets run folder>` (module docstring). "
             "Each row: one shape of the run's searched cell, finetuned from the search's weights with the "
             "`speedup5` preset's settings on the run's transfer set; `held-out` is what the search's trial "
             "measured for that shape (2 epochs on 7,200 rows, 800 held out); speed-ups are metrics.json's, "
             "the student beside the teacher in one process on this CPU.", "",
             "| run | student | trial held-out | dev metric | teacher | below (points) | b=1 faster | b=32 faster | date | machine | command |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for key in sorted(records, key=lambda k: (records[k]["run"], k.endswith("/searched") is False, k)):
        r = records[key]
        name = ("searched: " if key.endswith("/searched") else "") + f"`{r['genotype']}`"
        below = (r["teacher"] - r["score"]) * 100
        lines.append("| " + " | ".join(markdown_cell(str(cell)) for cell in (
            r["run"], name, "-" if r["held_out"] is None else f"{r['held_out']:.4f}", f"{r['metric']} {r['score']:.4f}",
            f"{r['teacher']:.4f}", f"{below:.2f}", f"{r['speedup_1']}x", f"{r['speedup_32']}x", r["date"], r["machine"],
            f"`{r['command']}`")) + " |")
    atomic.write_text(path, "\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
