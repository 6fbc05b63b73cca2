"""How well a latency table predicts the latency of compiled students on this CPU.

Usage: OMP_NUM_THREADS=1 python experiments/latency_predictor.py [--count 20] [--threads 1]

Builds the table (`nas latency-table` defaults: hidden 128, batch 1 and 32, lengths 32/64/128)
and writes it beside the result, then draws `--count` random genotypes of depth 1..8 (half of
them sentence-pair students), compiles each into the student `nas finetune` builds, measures it
with `nas.deploy.latency.compare_latency` and compares with `predict_latency_ms`: at length 64, a
measured length, and at 96, which the table interpolates between 64 and 128. Each student is
measured with its weights warm in cache (as when it serves requests) and, at 64, also with
`compare_latency` as is, its weights evicted by the other students' calls. Writes
experiments/results/latency_predictor.md. About four minutes with one thread; short enough to
rerun whole, so it does not resume.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nas.deploy.costs import dummy_inputs  # noqa: E402
from nas.deploy.latency import compare_latency  # noqa: E402
from nas.deploy.latency_measure import VOCAB_SIZE, LatencyTableConfig, build_latency_table  # noqa: E402
from nas.deploy.latency_table import cpu_model, predict_latency_ms, save_latency_table  # noqa: E402
from nas.deploy.timing import interleaved_medians  # noqa: E402
from nas.base.markdown import markdown_cell  # noqa: E402
from nas.data.models import quiet_transformers  # noqa: E402
from nas.base.run_info import machine  # noqa: E402
from searchspace.random_arch import random_genotypes  # noqa: E402
from searchspace.student import compile_genotype  # noqa: E402

TARGET = 0.15  # mean absolute relative error we aim for


def warm_latency(models: dict, inputs: dict, repeats: int, warmup: int = 3) -> dict:
    """{name: {batch size: median ms}} of each model as it runs on its own, its weights in cache.

    `compare_latency`'s method (the one timing loop, nas/deploy/timing.py: the models taking
    turns call by call so that a slow spell of the shared machine hits them alike), except that
    each turn makes one untimed call first (`prime`): the timed call then finds the model's
    weights in cache, as a deployed student does, instead of evicted by the other models' calls.
    """
    out = {name: {} for name in models}
    for size, batch in inputs.items():
        calls = {name: functools.partial(forward, batch) for name, forward in models.items()}
        for name, ms in interleaved_medians(calls, warmup=warmup, repeats=repeats, prime=True).items():
            out[name][size] = ms
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--lengths", default="64,96", help="lengths to compare at (96: interpolated by the table)")
    parser.add_argument("--repeats", type=int, default=11, help="timed forward passes per student and batch")
    parser.add_argument("--out", default=str(ROOT / "experiments/results/latency_predictor.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    quiet_transformers()
    batches = [int(b) for b in args.batches.split(",")]
    lengths = [int(t) for t in args.lengths.split(",")]
    device = torch.device("cpu")

    started = time.perf_counter()
    table = build_latency_table(LatencyTableConfig(hidden_size=args.hidden, batch_sizes=tuple(batches)), device)
    # One table per hidden size, so a run at another width leaves the default's table alone.
    table_name = "latency_table_cpu.json" if args.hidden == 128 else f"latency_table_cpu_h{args.hidden}.json"
    table_path = Path(args.out).resolve().with_name(table_name)
    save_latency_table(table, table_path)
    table_seconds = time.perf_counter() - started

    genotypes = random_genotypes(args.seed, args.count, hidden_size=args.hidden, max_depth=8, max_cells=8)
    pairs = [i % 2 == 1 for i in range(len(genotypes))]
    torch.manual_seed(args.seed)
    models = {}
    for i, (genotype, pair) in enumerate(zip(genotypes, pairs)):
        student = compile_genotype(genotype, vocab_size=VOCAB_SIZE, max_positions=512, num_labels=2, pair=pair).eval()
        models[i] = lambda batch, student=student: student(**batch)
    rows = {}  # (genotype, batch, length) -> (predicted, measured warm)
    crowd = {}  # (genotype, batch) -> measured interleaved with all the other students, at lengths[0]
    for length in lengths:
        # Pair inputs (two halves) for every student; single-sentence students ignore the token types.
        inputs = {b: dummy_inputs(b, length, pair=True, vocab_size=VOCAB_SIZE) for b in batches}
        warm = warm_latency(models, inputs, repeats=args.repeats)
        for i, (genotype, pair) in enumerate(zip(genotypes, pairs)):
            for b in batches:
                rows[(i, b, length)] = (predict_latency_ms(table, genotype, b, length, pair), warm[i][b])
        if length == lengths[0]:
            # All students interleaved call by call: each call finds its weights evicted by the others'.
            together = compare_latency(models, inputs, device, warmup=3, repeats=args.repeats)
            crowd.update({(i, b): together[i][f"batch_{b}_ms"] for i in models for b in batches})
    seconds = time.perf_counter() - started

    error = {key: (p - m) / m for key, (p, m) in rows.items()}
    crowd_error = {(i, b): (rows[(i, b, lengths[0])][0] - m) / m for (i, b), m in crowd.items()}
    command = f"OMP_NUM_THREADS={args.threads} python experiments/latency_predictor.py " + " ".join(sys.argv[1:])
    lines = [
        "# Latency predictor: table sum vs measured compiled students (CPU)",
        "",
        f"Command: `{command.strip()}`  ",
        f"Machine: {cpu_model()}; {machine()} (the machine's other core was busy with another job)  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M %Z')}; torch {torch.__version__}; {seconds:.0f}s in all "
        f"({table_seconds:.0f}s for the table)",
        "",
        f"Table: `{table_path.relative_to(ROOT)}` (`nas latency-table` defaults: hidden {args.hidden}, batch "
        f"{', '.join(map(str, batches))}, lengths {', '.join(map(str, sorted(table.seq_lens(batches[0]))))}; "
        f"each part the median over {table.method['repeats']} rounds of >= {table.method['min_repeat_ms']:g} ms, "
        "parts interleaved, of its mean time per call).",
        "Prediction: frame + K · (cell overhead + Σ of the six edges' ops), the frame (embeddings, pair split, head)",
        f"and every part read from the table; length {', '.join(str(t) for t in lengths if t not in table.seq_lens(batches[0]))} "
        "is interpolated linearly between the measured lengths around it.",
        f"Measured: {args.count} random genotypes (`searchspace.random_arch.random_genotypes(seed={args.seed})`, depth 1..8, "
        "odd rows are sentence-pair students), fresh weights, eval mode, all tokens real; each the median of "
        f"{args.repeats} calls, the students taking turns call by call as in `nas.deploy.latency.compare_latency`, each timed "
        "call preceded by an untimed one so that it finds its weights in cache as a deployed student does. The last "
        "summary rows time them with `compare_latency` itself, every call finding its weights evicted by the other "
        "students' calls: colder caches than a student serving on its own sees, which the table does not model.",
        "",
        "## Summary",
        "",
        "| batch | length | mean abs. error | max abs. error | mean signed error | within 15% |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for length in lengths:
        for b in batches:
            errs = [error[(i, b, length)] for i in range(len(genotypes))]
            within = sum(abs(e) <= TARGET for e in errs)
            lines.append(f"| {b} | {length} | {statistics.mean(map(abs, errs)):.1%} | {max(map(abs, errs)):.1%} | "
                         f"{statistics.mean(errs):+.1%} | {within}/{len(errs)} |")
    for b in batches:
        errs = [crowd_error[(i, b)] for i in range(len(genotypes))]
        lines.append(f"| {b} | {lengths[0]}, interleaved | {statistics.mean(map(abs, errs)):.1%} | {max(map(abs, errs)):.1%} | "
                     f"{statistics.mean(errs):+.1%} | {sum(abs(e) <= TARGET for e in errs)}/{len(errs)} |")
    all_errs = [abs(e) for e in error.values()]
    lines += ["", f"Over all {len(all_errs)} warm comparisons: mean absolute error "
                  f"{statistics.mean(all_errs):.1%}, max {max(all_errs):.1%} (target: mean within {TARGET:.0%}).", ""]

    header = "| # | genotype | pair | " + " | ".join(f"b{b} t{t}: predicted / measured ms (error)" for t in lengths for b in batches) + " |"
    lines += ["## Per genotype", "", header, "| --- " * (3 + len(lengths) * len(batches)) + "|"]
    for i, (genotype, pair) in enumerate(zip(genotypes, pairs)):
        cells = [f"{rows[(i, b, t)][0]:.2f} / {rows[(i, b, t)][1]:.2f} ({error[(i, b, t)]:+.0%})" for t in lengths for b in batches]
        lines.append(f"| {i} | `{markdown_cell(str(genotype))}` | {'yes' if pair else 'no'} | " + " | ".join(cells) + " |")

    lines += ["", "## The table at length 64", "",
              "| part (ms) | " + " | ".join(f"batch {b}" for b in batches) + " |", "| --- " * (1 + len(batches)) + "|"]
    entries = [table.entry(b, 64) for b in batches]
    for name in ("frame_ms", "frame_pair_ms", "embedding_ms", "head_ms", "cell_ms"):
        lines.append(f"| {name} | " + " | ".join(f"{getattr(e, name):.3f}" for e in entries) + " |")
    for op in entries[0].ops_ms:
        lines.append(f"| op {op} | " + " | ".join(f"{e.ops_ms[op]:.3f}" for e in entries) + " |")
    lines.append("")

    from nas.base import atomic

    atomic.write_text(Path(args.out), "\n".join(lines))  # a half-written table never replaces the last one
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
