"""The table's predicted speed-up of derived students against the students timed whole beside the
teacher, and what the search's measured check (`latency_check=measure`) makes of them.

Usage: OMP_NUM_THREADS=1 python experiments/latency_check.py [--cells 4] [--speedups 5,20]
       [--teacher DIR] [--work runs/latency_check] [--out experiments/results/latency_check.md]
       (the timings also go to the --out file's .json)

Replays the end of a `--speedup` search as `nas run --preset speedup5` runs it on SST-2 (batch 32,
length 44, widths 64/96/128, frozen_projection word vectors, `depth_choice=trial`): the teacher
timed as the search times it (`nas/train/speedup_budget.py`), a latency table per width measured
as the search measures them, and, for each of `--cells` random cells (searchspace.random_arch,
seed 0), the candidates the trials would train: the cell at each width stacked as deep as the
table says fits (`shape_candidates`). Each candidate is then checked as the search now checks it
before the trials (nas/train/latency_check.py): timed whole beside the teacher, stepped down while
it misses, and stacked deeper while a deeper stack meets the speed-up when timed. A student's latency does not depend on its weights or its teacher's, so without
`--teacher` the script makes one with `nas teacher --max-train 64 --epochs 1` (MiniLM's
architecture with SST-2's head) in the work folder; tables are kept there and reused.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nas.base import atomic  # noqa: E402
from nas.base.markdown import markdown_cell  # noqa: E402
from nas.data.models import quiet_transformers  # noqa: E402
from nas.data.tasks import get_task  # noqa: E402
from nas.deploy.latency_table import cpu_model  # noqa: E402
from nas.deploy.machine_load import cpu_load  # noqa: E402
from nas.train.distill_data import teacher_embedding_tables  # noqa: E402
from nas.train.latency_check import fit_measured, kept_timing, shape, student_timer  # noqa: E402
from nas.train.search import SearchConfig  # noqa: E402
from nas.train.shape_trials import shape_candidates  # noqa: E402
from nas.train.speedup_budget import with_speedup_budget  # noqa: E402
from nas.train.width_latency import width_search_latency  # noqa: E402
from searchspace.random_arch import random_genotype  # noqa: E402

WIDTHS, MAX_CELLS, BATCH, LENGTH = (64, 96, 128), 8, 32, 44  # the speedup5 preset on SST-2


def make_teacher(work: Path) -> Path:
    """A MiniLM classifier with SST-2's head, trained for a moment: only its shape is timed."""
    out = work / "teacher"
    if not (out / "metrics.json").is_file():
        subprocess.run([sys.executable, "-m", "nas", "teacher", "--task", "sst2", "--model", "minilm", "--out", str(out),
                        "--max-train", "64", "--max-dev", "32", "--epochs", "1", "--device", "cpu"], check=True, cwd=ROOT)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=4)
    parser.add_argument("--speedups", default="5,20")
    parser.add_argument("--teacher", default="")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", default=str(ROOT / "runs/latency_check"))
    parser.add_argument("--out", default=str(ROOT / "experiments/results/latency_check.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    quiet_transformers()
    device, task, work = torch.device("cpu"), get_task("sst2"), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    teacher = Path(args.teacher) if args.teacher else make_teacher(work)
    words, positions = teacher_embedding_tables(str(teacher), task)
    rng = random.Random(0)
    cells = [random_genotype(rng, hidden_size=max(WIDTHS), num_cells=MAX_CELLS, max_cells=MAX_CELLS)
             for _ in range(args.cells)]
    started, load = time.perf_counter(), cpu_load()
    rows = []
    for speedup in (float(s) for s in args.speedups.split(",")):
        base = SearchConfig(hidden_size=max(WIDTHS), widths=WIDTHS, max_cells=MAX_CELLS, embeddings="frozen_projection",
                            latency_batch_size=BATCH, latency_seq_len=LENGTH, latency_speedup=speedup,
                            depth_choice="trial", epochs=2, warmup_epochs=1)
        config, timing = with_speedup_budget(base, teacher, task, work / f"x{speedup:g}", device)
        latency = width_search_latency(config, work, device, False, config.space.ops, teacher_width=words.shape[1])
        latency.keep_table(work)  # every speed-up reads the same tables
        measure = student_timer(teacher, task, words, positions, device, BATCH, LENGTH, speedup)
        for index, cell in enumerate(cells):
            cell = replace(cell, embeddings="frozen_projection")
            for candidate in shape_candidates(cell, WIDTHS, MAX_CELLS, latency):
                # As the search checks each width's deepest candidate before its trials: down
                # while it misses, deeper while the calibrated prediction says a deeper stack fits.
                checked, record = fit_measured(candidate, latency, measure, speedup, deepest=MAX_CELLS)
                first = record["timings"][0]
                kept = kept_timing(record, checked)
                rows.append({"speedup": speedup, "cell": index, "teacher_ms_budget": timing["teacher_ms"],
                             "budget_ms": config.latency_budget_ms, "candidate": shape(candidate),
                             "predicted_speedup": round(timing["teacher_ms"] / first["predicted_ms"], 2),
                             "first": first, "checked": shape(checked), "kept": kept, "met": record["met"],
                             "timings": len(record["timings"]), "all_timings": record["timings"]})
                atomic.write_json(work / "latency_check.json", rows)
    seconds = time.perf_counter() - started
    atomic.write_json(Path(args.out).with_suffix(".json"), rows)
    write_report(rows, args, seconds, load)
    return 0


def depth(shown: str) -> int:
    """The K of a `shape` string."""
    return int(shown.split()[0][2:])


def write_report(rows: list[dict], args, seconds: float, load: float | None) -> None:
    command = f"OMP_NUM_THREADS={args.threads} python experiments/latency_check.py --cells {args.cells} --speedups {args.speedups}"
    lines = [
        "# The derived student timed whole: the table's prediction against the clock (`latency_check`)",
        "",
        f"Command: `{command}`  ",
        f"Machine: {cpu_model()}, {args.threads} torch thread(s), load average {f'{load:.1f}' if load is not None else 'unknown'} at the start  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M %Z')}; torch {torch.__version__}; {seconds:.0f} s in all",
        "",
        f"The end of a `--speedup` search on SST-2's shape (batch {BATCH}, length {LENGTH}, widths "
        f"{'/'.join(map(str, WIDTHS))}, frozen_projection word vectors, up to {MAX_CELLS} cells): for each random "
        "cell, each width's deepest stack the latency table fits under the budget less the 5% margin (the "
        "candidates `depth_choice=trial` trains), then timed whole beside the MiniLM teacher in one process "
        "(nas/train/latency_check.py). \"predicted\": the teacher's latency as the "
        "search timed it over the table's sum for the student; \"first timing\": the candidate timed beside the "
        "teacher; \"met\": at least the speed-up asked with the 5% margin (5.26x, 21.05x), as the check requires, "
        "since two timings of one student differ by several percent; \"after the check\": the candidate the search "
        "now keeps, down while it misses and deeper while a deeper stack meets it when timed (up to 8 cells), and "
        "its speed-up when timed; \"timed\": how many students the check timed. Every timing is in "
        "latency_check.json beside this file.",
        "",
        "| speed-up asked | cell | candidate | predicted | first timing | met | after the check | timed | its speed-up | met |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        lines.append("| " + " | ".join(markdown_cell(str(value)) for value in (
            f"{row['speedup']:g}x", row["cell"], row["candidate"], f"{row['predicted_speedup']:.2f}x",
            f"{row['first']['speedup']:.2f}x", "yes" if row["first"]["met"] else "**no**", row["checked"],
            row["timings"], f"{row['kept']['speedup']:.2f}x", "yes" if row["met"] else "**no**")) + " |")
    lines += ["", "Summary:", ""]
    for speedup in sorted({row["speedup"] for row in rows}):
        these = [row for row in rows if row["speedup"] == speedup]
        optimism = [row["predicted_speedup"] / row["first"]["speedup"] - 1 for row in these]
        short = sum(row["first"]["speedup"] < speedup for row in these)
        short_of_margin = sum(not row["first"]["met"] for row in these)
        lines.append(f"- {speedup:g}x: {len(these)} candidates; the prediction was optimistic by a median "
                     f"{100 * statistics.median(optimism):.1f}% (range {100 * min(optimism):.1f}% to "
                     f"{100 * max(optimism):.1f}%); as derived from the table alone, {short} of {len(these)} were slower "
                     f"than {speedup:g}x when timed and {short_of_margin} short of it with the margin; after the check {sum(row['met'] for row in these)} of "
                     f"{len(these)} meet it, {sum(depth(row['checked']) > depth(row['candidate']) for row in these)} "
                     f"of them deeper than the table allowed, {sum(depth(row['checked']) < depth(row['candidate']) for row in these)} "
                     f"shallower, with {sum(row['timings'] for row in these)} timings in all.")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
