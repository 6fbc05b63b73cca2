"""What a `bigru` edge buys a one-cell student: the same cell with a max-pool or a `bigru` on one edge.

Usage: python experiments/recurrent_op.py [--seeds 42,43] [--epochs 2] [--transfer-seeds 42]
       [--recurrent-widths 128,256] [--recurrent-seeds 42]
       [--knowledge DIR] [--teacher runs/teachers/sst2] [--runs runs/recurrent_op]
       [--out experiments/results/recurrent_op.md] [--report-only]

At 20x the MiniLM teacher's batch-32 speed on this CPU a student is one cell of width 64-96, whose
convolutions see a few tokens either side. The cell here is of that size (K=1, H=64, SST-2's
frozen_projection word vectors); node 2 reads input 0 through a max-pool in one student and
through a bidirectional GRU (ops/recurrent.py) in the other, every other edge the same. Each is
compiled from its arch.json and trained by `nas finetune` from scratch on the task's own rows
(no augmented copies: the comparison is of the cells, not of the transfer set), with the
search's KD, for `--epochs` epochs per seed; the dev accuracy and the speed-ups are those of its
metrics.json (student and teacher timed side by side in one process). Then, per `--transfer-seeds`
seed, each on the transfer set as `nas run --preset speedup5` finetunes its searched student (the
knowledge folder's augmented copies, the preset's finetune settings), from scratch: what the
cell reaches where the searched students of experiments/results/targets.md were trained.
Then a cell built around the recurrence, per `--recurrent-widths` width and `--recurrent-seeds`
seed: node 2 reads input 0 through a `bigru` and input 1 as it is, nodes 3 and 4 max-pool the
node before and add an earlier state, so the GRU does the cell's work and every other edge is
nearly free; at width 128 (64 units each way) and 256 (128 each way, as Tang et al.'s BiLSTM),
on the transfer set as above.
Finished finetunes are kept under `--runs` and not run again.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

from baselines import nas  # noqa: E402  (experiments/ is this script's folder)
from nas.base import atomic  # noqa: E402
from nas.base.markdown import markdown_cell  # noqa: E402
from nas.base.run_info import machine  # noqa: E402
from nas.data.model_metrics import StudentMetrics  # noqa: E402
from nas.run.pipeline import preset_file  # noqa: E402
from searchspace.genotype import KNOWN_OPS, Edge, Genotype  # noqa: E402

EDGE_OPS = ("max_pool", "bigru")  # what node 2 reads input 0 through


def one_cell(hidden: int, cell) -> Genotype:
    """A K=1 student of width `hidden` with SST-2's frozen_projection word vectors."""
    return Genotype(num_cells=1, hidden_size=hidden, max_cells=8, ops=KNOWN_OPS, embeddings="frozen_projection",
                    cell=cell)


def cell_with(op: str) -> Genotype:
    """The K=1, H=64 student with `op` on node 2's edge from input 0."""
    return one_cell(64, ((Edge(op, 0), Edge("cnn3", 1)), (Edge("cnn5", 2), Edge("dilated_cnn3", 0)),
                         (Edge("dilated_cnn3", 2), Edge("cnn3", 3))))


def recurrent_cell(hidden: int) -> Genotype:
    """One cell whose work is its `bigru`: the other edges are identities and max-pools."""
    return one_cell(hidden, ((Edge("bigru", 0), Edge("identity", 1)), (Edge("max_pool", 2), Edge("identity", 1)),
                             (Edge("max_pool", 3), Edge("identity", 2))))


def recurrent_name(hidden: int) -> str:
    return f"recurrent_cell_h{hidden}"


def run_folder(name: str, seed: int, args, transfer: bool) -> Path:
    return Path(args.runs) / f"{name}_{'transfer_' if transfer else ''}seed{seed}"


def finetune(name: str, genotype: Genotype, seed: int, args, transfer: bool = False) -> None:
    """`nas finetune` of `genotype` into the runs folder's `name` (skipped when finished): on the
    task's rows for `--epochs`, or (`transfer`) on the transfer set with the speedup5 preset's settings."""
    folder = run_folder(name, seed, args, transfer)
    if not (folder / "metrics.json").is_file():
        arch = genotype.save(Path(args.runs) / f"{name}.json")
        recipe = (["--config", preset_file("speedup5")] if transfer
                  else ["--set", "use_augmented=false", "--epochs", args.epochs])
        nas("finetune", "--task", "sst2", "--arch", arch, "--teacher", args.teacher, "--knowledge", args.knowledge,
            *recipe, "--set", "init=scratch", "--seed", seed, "--out", folder,
            *(["--data-dir", args.data_dir] if args.data_dir else []))


def finished(name: str, seeds, args, transfer: bool = False) -> dict[int, StudentMetrics]:
    """{seed: metrics.json} of the finetunes of `name` the runs folder holds."""
    files = {seed: run_folder(name, seed, args, transfer) / "metrics.json" for seed in seeds}
    return {seed: StudentMetrics.load(file) for seed, file in files.items() if file.is_file()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="42,43")
    parser.add_argument("--ops", default=",".join(EDGE_OPS), help="which of the two students to train (to split the "
                        "work between processes; the report has those the runs folder holds)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--transfer-seeds", default="42", help="seeds of the finetunes on the transfer set ('' for none)")
    parser.add_argument("--recurrent-widths", default="128,256",
                        help="widths of the recurrent cell, trained on the transfer set ('' for none)")
    parser.add_argument("--recurrent-seeds", default="42", help="seeds of the recurrent cell's finetunes")
    parser.add_argument("--teacher", default=str(ROOT / "runs/teachers/sst2"))
    parser.add_argument("--knowledge", default=str(ROOT / "runs/targets/sst2_20x_seed42/knowledge"),
                        help="an SST-2 knowledge folder of that teacher (its task rows' logits and probes)")
    parser.add_argument("--runs", default=str(ROOT / "runs/recurrent_op"))
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default=str(ROOT / "experiments/results/recurrent_op.md"))
    parser.add_argument("--report-only", action="store_true",
                        help="run nothing: the report of the finetunes the runs folder holds")
    args = parser.parse_args()
    started = time.perf_counter()
    seeds = [int(s) for s in args.seeds.split(",")]
    transfer_seeds = [int(s) for s in filter(None, args.transfer_seeds.split(","))]
    widths = [int(w) for w in filter(None, args.recurrent_widths.split(","))]
    recurrent_seeds = [int(s) for s in filter(None, args.recurrent_seeds.split(","))]
    if not args.report_only:
        for op in args.ops.split(","):
            for seed in seeds:
                finetune(op, cell_with(op), seed, args)
            for seed in transfer_seeds:
                finetune(op, cell_with(op), seed, args, transfer=True)
        for hidden in widths:
            for seed in recurrent_seeds:
                finetune(recurrent_name(hidden), recurrent_cell(hidden), seed, args, transfer=True)
    results = {op: finished(op, seeds, args) for op in EDGE_OPS}
    transfer = {op: finished(op, transfer_seeds, args, transfer=True) for op in EDGE_OPS}
    recurrent = {f"H={hidden}": finished(recurrent_name(hidden), recurrent_seeds, args, transfer=True) for hidden in widths}
    write_report(Path(args.out), args, results, transfer, recurrent, time.perf_counter() - started)
    return 0


def write_report(path: Path, args, results: dict, transfer: dict, recurrent: dict, seconds: float) -> None:
    rows = next((m.train_rows for by_seed in results.values() for m in by_seed.values()), 0)
    lines = [
        "# A `bigru` in a one-cell student (SST-2): on one edge against a max-pool, and a cell built around it", "",
        f"Command: `python experiments/recurrent_op.py --seeds {args.seeds} --epochs {args.epochs} "
        f"--transfer-seeds {args.transfer_seeds} --recurrent-widths {args.recurrent_widths} --recurrent-seeds {args.recurrent_seeds}`  ",
        f"Machine: {machine()} (the finetunes inherit this process's thread setting)  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; this invocation {seconds / 60:.0f} min "
        "(finetunes finished earlier are read back)", "",
        "One K=1, H=64 cell (frozen_projection word vectors), node 2 reading input 0 through a max-pool "
        "or a `bigru`, every other edge the same, each compiled from its arch.json and finetuned by "
        "`nas finetune` from scratch. Speed-ups: metrics.json's, the student and the teacher timed side "
        "by side in one process.", "",
        f"## On the task's rows ({rows:,}, no augmented copies, the search's KD, {args.epochs} epochs)", "",
        *table(results),
    ]
    if any(transfer.values()):
        lines += ["", "## On the transfer set (the knowledge folder's augmented copies, the speedup5 preset's "
                  "finetune settings)", "", *table(transfer)]
    if any(recurrent.values()):
        lines += ["", "## A recurrent cell on the transfer set", "",
                  "Node 2: `bigru` of input 0 plus input 1; node 3: max-pool of node 2 plus input 1; node 4: "
                  "max-pool of node 3 plus node 2. Trained as the section above (from scratch, the speedup5 "
                  "preset's finetune settings).", "", *table(recurrent, "width", "width")]
    atomic.write_text(path, "\n".join(lines) + "\n")
    print(f"wrote {path}")


def table(results: dict, varied: str = "node 2 reads input 0 through", per: str = "op") -> list[str]:
    """The finetunes of `results` ({label: {seed: metrics}}) by seed, then a line per label."""
    lines = [f"| {varied} | student | seed | dev accuracy | b=1 faster | b=32 faster | params "
             "| rows trained | train s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for label, by_seed in results.items():
        for seed, metrics in by_seed.items():
            lines.append(f"| `{label}` | {markdown_cell(metrics.genotype)} | {seed} | {metrics.metrics['accuracy']:.4f} | "
                         f"{metrics.speedup_at(1):.1f}x | {metrics.speedup_at(32):.1f}x | {metrics.student.params:,} | "
                         f"{metrics.train_rows:,} | {metrics.train_seconds:.0f} |")
    lines += ["", f"Per {per}, over the seeds: dev accuracy (mean ± sd) and the batch-32 speed-ups.", ""]
    for label, by_seed in results.items():
        if not by_seed:
            continue
        scores = [m.metrics["accuracy"] for m in by_seed.values()]
        fast = [m.speedup_at(32) for m in by_seed.values()]
        spread = f" ± {statistics.stdev(scores):.4f}" if len(scores) > 1 else ""
        lines.append(f"- `{label}`: {statistics.mean(scores):.4f}{spread} ({len(scores)} seed(s)), "
                     f"{min(fast):.1f}x to {max(fast):.1f}x the teacher's batch-32 speed")
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
