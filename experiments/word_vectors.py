"""The student's word vectors, measured: each embedding variant on one genotype, side by side.

Usage: nice -n 5 python experiments/word_vectors.py [--rows 8000] [--epochs 3] [--seeds 0,1]
       [--variants pca,frozen_projection,...] [--runs runs/word_vectors] [--knowledge RUN/knowledge]
       [--out experiments/results/word_vectors.md]

Trains the budgeted cell of experiments/results/depth.md (K=4, H=128) once per embedding variant
(searchspace/embedding_variants.py) and seed, as `nas finetune --set init=scratch --set
embeddings=NAME` starts it (tables from MiniLM's, searchspace's `init_from_teacher`), through
`train_with_kd` on the first `--rows` SST-2 training rows; scores the full dev set. Without
`--knowledge` (a knowledge folder of a fine-tuned teacher) there are no teacher logits, so the
loss is the task loss alone (gamma 0). Then times every variant's forward pass on CPU at batch 1
and 32 (the first dev rows), one thread, the variants taking turns in one process.

Resumable: each (variant, seed) writes `RUNS/<variant>_s<seed>.json` and is skipped when that
file exists; the report is written from whatever is there.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GENOTYPE = "v1;K=4;H=128;M=8;cell=cnn3~1,cnn3~0|identity~1,identity~0|dilated_cnn3~2,cnn3~0"  # depth.md's budgeted cell
# A difference smaller than this (accuracy points) is not called a difference: 5 random cells of
# this depth scored with a standard deviation of 1.02 points at 8,000 rows x 3 epochs (depth.md).
NOISE_POINTS = 1.0

from throughput import load_data  # noqa: E402  (experiments/ is this script's folder)


def build(variant: str, task, words: torch.Tensor, positions: torch.Tensor | None, seed: int):
    """The student as `nas finetune --set init=scratch --set embeddings=VARIANT` builds it."""
    from searchspace.genotype import Genotype
    from searchspace.student import compile_genotype

    torch.manual_seed(seed)
    genotype = replace(Genotype.from_string(GENOTYPE), embeddings=variant)
    model = compile_genotype(genotype, vocab_size=words.shape[0], max_positions=positions.shape[0],
                             num_labels=task.num_labels, pair=False, teacher_width=words.shape[1])
    model.embeddings.init_from_teacher(words, positions)
    return model


def sizes(model) -> dict:
    from nas.deploy.costs import parameter_counts

    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {**parameter_counts(model), "trainable_params": trainable}


def train(variant: str, seed: int, args, task, data, words, positions) -> dict:
    from nas.train.student_training import FinetuneConfig, train_with_kd

    model = build(variant, task, words, positions, seed)
    config = FinetuneConfig(epochs=args.epochs, gamma=0.8 if args.knowledge else 0.0, seed=seed, embeddings=variant)
    before = model.embeddings.words.weight.detach().clone()
    state, seconds = train_with_kd(model, task, data, config, torch.device("cpu"))
    return {
        "variant": variant, "seed": seed, "rows": len(data.train), "epochs": args.epochs,
        "accuracy": [h["accuracy"] for h in state.history], "best_epoch": state.best_epoch + 1,
        "train_seconds": round(seconds, 1), **sizes(model),
        "token_table_moved": bool((model.embeddings.words.weight.detach() != before).any()),
    }


def latency(variants, task, data, words, positions) -> dict:
    """Median ms per forward of every variant at batch 1 and 32, taking turns (nas.deploy.latency)."""
    from nas.deploy.latency import compare_latency, latency_batches

    models = {v: build(v, task, words, positions, 0).eval() for v in variants}
    forwards = {v: (lambda batch, m=m: m(**batch)) for v, m in models.items()}
    return compare_latency(forwards, latency_batches(data.dev["dev"], (1, 32)), torch.device("cpu"), warmup=5, repeats=40)


def main() -> int:
    from nas.base import atomic
    from nas.data.models import resolve_model
    from nas.train.distill_data import teacher_embedding_tables
    from searchspace.embedding_variants import EMBEDDINGS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--variants", default=",".join(EMBEDDINGS))
    parser.add_argument("--knowledge", default=None, help="a knowledge folder for real teacher logits (else CE only)")
    parser.add_argument("--runs", default=str(ROOT / "runs/word_vectors/sst2"))
    parser.add_argument("--out", default=str(ROOT / "experiments/results/word_vectors.md"))
    args = parser.parse_args()
    torch.set_num_threads(1)  # one thread for training and timing alike: comparable, and fair to a shared machine
    variants, seeds = args.variants.split(","), [int(s) for s in args.seeds.split(",")]
    runs = Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)

    task, data = load_data(args.rows, args.knowledge, None)  # experiments/throughput.py's SST-2 rows
    words, positions = teacher_embedding_tables(resolve_model("minilm"), task)
    for seed in seeds:  # every variant at one seed before the next seed, so a stopped run stays balanced
        for variant in variants:
            path = runs / f"{variant}_s{seed}.json"
            if path.is_file():
                continue
            print(f"training {variant} seed {seed}", flush=True)
            result = train(variant, seed, args, task, data, words, positions)
            atomic.write_json(path, result)
            print(f"{variant} seed {seed}: dev accuracy {result['accuracy']} in {result['train_seconds']} s", flush=True)
    timing_path = runs / "latency.json"
    if not timing_path.is_file():
        atomic.write_json(timing_path, latency(variants, task, data, words, positions))
    results = [json.loads((runs / f"{v}_s{s}.json").read_text()) for v in variants for s in seeds
               if (runs / f"{v}_s{s}.json").is_file()]
    write_report(Path(args.out), args, results, json.loads(timing_path.read_text()), words.shape[1])
    return 0


def verdict(by_variant: dict, runs: dict, with_kd: bool) -> str:
    """Whether any variant beats pca beyond noise: its mean final accuracy more than NOISE_POINTS
    above pca's and each of its seeds above each of pca's. Only a measurement with KD, the way
    `nas finetune` trains by default, may change the default; one without KD names a candidate."""
    rule = (f"the rule, set before the runs: every seed above every pca seed and the mean more than {NOISE_POINTS} "
            f"point above, {NOISE_POINTS} point being the spread of random cells at this budget in depth.md")
    pca = by_variant.get("pca")
    if not pca or len(pca) < 2:
        return "pca was not measured at two seeds or more, so nothing is judged: the default stays `pca`."
    better = [v for v, accs in by_variant.items() if v != "pca" and len(accs) == len(pca) and min(accs) > max(pca)
              and 100 * (statistics.mean(accs) - statistics.mean(pca)) > NOISE_POINTS]
    if not better:
        return f"No variant beats pca beyond noise ({rule}), so the default stays `pca`."
    best = max(better, key=lambda v: statistics.mean(by_variant[v]))
    gain = 100 * (statistics.mean(by_variant[best]) - statistics.mean(pca))
    size = runs[best]["params"] / runs["pca"]["params"]
    text = (f"`{best}` beats pca beyond noise ({rule}): +{gain:.2f} points, at {size:.2f}x pca's stored parameters. ")
    if not with_kd:
        text += ("The default stays `pca` all the same: this measurement trained without KD on a slice of the data, "
                 "while `nas finetune` trains with KD by default, so it names a candidate, not the default; rerun with "
                 "`--knowledge` (a fine-tuned teacher's knowledge folder) to decide.")
    else:
        text += f"Measured as `nas finetune` trains (with KD), this makes `{best}` the measured choice for the default."
    return text


def write_report(path: Path, args, results: list[dict], timing: dict, teacher_width: int) -> None:
    from nas.base import atomic
    from nas.base.run_info import machine

    variants = list(dict.fromkeys(r["variant"] for r in results))
    by_variant = {v: [r["accuracy"][-1] for r in results if r["variant"] == v] for v in variants}
    lines = [
        "# Student word vectors on sst2 (MiniLM's tables)",
        "",
        f"Command: `{' '.join(['nice -n 5 python experiments/word_vectors.py', *sys.argv[1:]])}`  ",
        f"Machine: {machine()}  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M %Z')}",
        "",
        f"The cell `{GENOTYPE}` (depth.md's budgeted search, K=4, H=128) with each word-vector variant "
        "(searchspace/embedding_variants.py), built and initialised as `nas finetune --set init=scratch --set "
        f"embeddings=NAME` does, trained on the first {results[0]['rows'] if results else args.rows:,} SST-2 training rows "
        f"for {args.epochs} epochs, scored on the full dev set (872 rows). "
        + ("Loss: task cross-entropy and KD (gamma 0.8) against the teacher's logits. " if args.knowledge else
           "No fine-tuned teacher's knowledge was available, so the loss is the task cross-entropy alone (gamma 0). ")
        + f"MiniLM's tables are {teacher_width} wide. Latency: CPU, one thread, median of 40 runs after 5 warm-up runs "
        "on the first 1 / 32 dev rows, the variants taking turns in one process. The machine is shared (other jobs ran "
        "beside this one), so absolute times, train times above all, are loose; the latencies compare within the table.",
        "",
        "| variant | dev accuracy, final epoch (per seed) | mean | params | trainable | params w/o token table "
        "| b=1 (ms) | b=32 (ms) | train (s, mean) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for v in variants:
        runs = [r for r in results if r["variant"] == v]
        accs = by_variant[v]
        t = timing.get(v, {})
        lines.append(
            f"| {v} | {', '.join(f'{a:.4f}' for a in accs)} | {statistics.mean(accs):.4f} | {runs[0]['params']:,} "
            f"| {runs[0]['trainable_params']:,} | {runs[0]['params_without_embeddings']:,} "
            f"| {t.get('batch_1_ms', float('nan')):.2f} | {t.get('batch_32_ms', float('nan')):.2f} "
            f"| {statistics.mean(r['train_seconds'] for r in runs):.0f} |")
    lines += [
        "",
        "Every epoch's dev accuracy: " + "; ".join(
            f"{r['variant']} s{r['seed']}: {', '.join(f'{a:.4f}' for a in r['accuracy'])}" for r in results) + ".",
        "",
        "`params` counts every stored parameter, frozen or not; `params w/o token table` "
        "(`params_without_embeddings`) leaves out the token table only, so it holds the position table and, for the "
        "projected variants, the projection; `trainable` is what the optimiser moves (the frozen variant's tables "
        "are stored but never trained).",
        "",
        verdict(by_variant, {r["variant"]: r for r in results}, bool(args.knowledge)),
    ]
    atomic.write_text(path, "\n".join(lines) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
