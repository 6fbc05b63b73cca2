"""Finetuning throughput of the K=4 H=128 student: today's eager path against the fast path, one process.

Usage: python experiments/throughput.py [--device cpu|cuda] [--batch 32] [--rows 8000] [--epochs 1]
       [--threads N] [--steps 60] [--rounds 1] [--compile off|default|reduce-overhead]
       [--amp off|bf16] [--bucket] [--knowledge RUN/knowledge] [--tokenizer DIR]
       [--target 1.5 | --target-rows 50000] [--out experiments/results/throughput.md]

Both paths train the budgeted cell of experiments/results/depth.md from the same initial
weights (embeddings from MiniLM's, as `nas finetune --set init=scratch`) on the first `--rows`
SST-2 training rows, and are scored on the full dev set:

  * old: the step as it was before issue 10 (commit 15eda57), restored for the run: the conv op
    as ReLU -> transposed Conv1d -> LayerNorm with `masked_fill` masking, node sums started from
    zeros, a batch built row by row, and AdamW's default (foreach) kernels;
  * new: the current code with the speed settings given (`--compile`, `--amp`, `--bucket`;
    fused AdamW always).

Headline: step rows/s, the two paths' training steps taking turns on the same batches
(`--steps` each, after untimed warm-up steps that also capture every bucket shape of a
compiled path), so that the load of a shared machine lands on both alike; end-to-end runs
minutes apart saw the load change under them. Then each path trains for `--epochs` through
`nas.train.student_training.train_with_kd` (the code `nas finetune` runs), `--rounds` times,
alternating: its end-to-end rows/s (one dev evaluation an epoch included) and dev accuracy.
Without `--knowledge` there are no teacher logits, so the loss is the task loss alone
(gamma 0); the step's cost is the same up to two tiny kernels.
"""

from __future__ import annotations

import argparse
import os
import contextlib
import copy
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nas.base import atomic  # noqa: E402
from nas.base.errors import UserError  # noqa: E402
from nas.data.batching import BUCKETS, EncodedSplit, encode, to_device  # noqa: E402
from nas.base.run_info import machine  # noqa: E402

GENOTYPE = "v1;K=4;H=128;M=8;cell=cnn3~1,cnn3~0|identity~1,identity~0|dilated_cnn3~2,cnn3~0"  # depth.md's budgeted cell


# ---------------------------------------------------------------- the step before issue 10


def _old_conv_forward(self, x, mask):
    """ops/conv.py's SeqConv.forward at 15eda57."""
    padding = ~mask.unsqueeze(-1)
    x = F.relu(x.masked_fill(padding, 0.0))
    y = self.conv(x.transpose(1, 2)).transpose(1, 2)  # (B, H, T) for Conv1d -> (B, T, H)
    return self.norm(y).masked_fill(padding, 0.0)


def _old_cell_forward(self, s0, s1, mask0, mask1, mask, choices):
    """searchspace/cell.py's Cell.forward at 15eda57: node sums started from zeros."""
    from searchspace.topology import NUM_INPUTS, NUM_NODES as NUM_INTERMEDIATE

    states, masks = [s0, s1], [mask0, mask1]
    for node in range(NUM_INPUTS, NUM_INPUTS + NUM_INTERMEDIATE):
        total = torch.zeros_like(s1)
        for edge in self.edge_keys:
            if edge[0] != node:
                continue
            for op, weight in choices(edge):
                out = self.edges[self._key(edge)][op](states[edge[1]], masks[edge[1]])  # (B, T, H)
                total = total + (out if weight is None else out * weight)
        states.append(total)
        masks.append(mask)
    weights = torch.softmax(self.node_weights, 0)
    out = sum(w * s for w, s in zip(weights, states[NUM_INPUTS:]))
    return out * mask.unsqueeze(-1).to(out.dtype)


def _old_collate(split: EncodedSplit, indices, buckets=()):
    """nas/data/batching.py's collate at 15eda57: one tensor per row."""
    width = max(len(split.input_ids[i]) for i in indices)
    input_ids = torch.full((len(indices), width), split.pad_id, dtype=torch.long)
    token_type_ids = torch.zeros((len(indices), width), dtype=torch.long)
    attention_mask = torch.zeros((len(indices), width), dtype=torch.long)
    for row, i in enumerate(indices):
        length = len(split.input_ids[i])
        input_ids[row, :length] = torch.tensor(split.input_ids[i])
        token_type_ids[row, :length] = torch.tensor(split.token_type_ids[i])
        attention_mask[row, :length] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids,
            "labels": split.labels[indices], "index": torch.tensor(indices, dtype=torch.long)}


@contextlib.contextmanager
def old_step():
    """Swap the pre-issue-10 conv op and batch builder in for the duration of a run."""
    from nas.train import student_training
    from ops.conv import SeqConv
    from searchspace.cell import Cell

    saved = SeqConv.forward, Cell.forward, student_training.device_batch
    SeqConv.forward, Cell.forward = _old_conv_forward, _old_cell_forward
    student_training.device_batch = lambda split, rows, device, buckets=(): to_device(_old_collate(split, rows), device)
    try:
        yield
    finally:
        SeqConv.forward, Cell.forward, student_training.device_batch = saved


# ---------------------------------------------------------------- data and runs


def load_data(rows: int, knowledge: str | None, tokenizer_dir: str | None, max_length: int = 128):
    from nas.data.glue_io import read_examples
    from nas.data.models import load_tokenizer, resolve_model
    from nas.data.tasks import get_task, resolve_data_dir

    task = get_task("sst2")
    data_dir = resolve_data_dir(None)
    tokenizer = load_tokenizer(tokenizer_dir or resolve_model("minilm"))
    train = encode(read_examples(task, data_dir, "train", limit=rows), tokenizer, max_length)
    dev = encode(read_examples(task, data_dir, "dev"), tokenizer, max_length)
    if knowledge:
        from kd.knowledge import Knowledge

        logits = torch.as_tensor(Knowledge(knowledge).split("train").rows(list(range(len(train))))[0])
    else:
        logits = torch.zeros(len(train), task.num_labels)
    return task, SimpleNamespace(train=train, train_targets=SimpleNamespace(logits=logits), dev={"dev": dev})


def bucket_batches(split: EncodedSplit, batch: int) -> list[list[int]]:
    """One batch of row indices per bucket length the rows reach, so every shape gets captured."""
    from nas.data.batching import bucket_width

    by_bucket = {}
    for i, n in enumerate(split.lengths):
        by_bucket.setdefault(bucket_width(n, BUCKETS), []).append(i)
    return [(rows * batch)[:batch] for rows in by_bucket.values()]


def warmup_split(split: EncodedSplit, batch: int) -> EncodedSplit:
    """The rows of `bucket_batches` as a split of their own."""
    picked = [i for rows in bucket_batches(split, batch) for i in rows]
    return EncodedSplit([split.input_ids[i] for i in picked], [split.token_type_ids[i] for i in picked],
                        split.labels[picked], split.pad_id)


def train_once(path: str, task, data, args, device, initial_state) -> dict:
    from nas.train.student_training import FinetuneConfig, train_with_kd
    from searchspace.genotype import Genotype
    from searchspace.student import compile_genotype

    new = path == "new"
    config = FinetuneConfig(
        # kd=logits: the step this experiment has always timed (its data carries teacher logits only).
        epochs=args.epochs, batch_size=args.batch, gamma=0.8 if args.knowledge else 0.0, seed=0, kd="logits",
        compile=args.compile if new else "off", amp=args.amp if new else "off",
        bucket=args.bucket if new else False, fused_optimizer=new,
    )
    model = compile_genotype(Genotype.from_string(GENOTYPE), vocab_size=30522, max_positions=512,
                             num_labels=task.num_labels, pair=False)
    model.load_state_dict(initial_state)
    context = contextlib.nullcontext() if new else old_step()
    with context:
        if new and config.compile != "off":
            rows = warmup_split(data.train, args.batch)
            warm = SimpleNamespace(train=rows, dev=data.dev,
                                   train_targets=SimpleNamespace(logits=torch.zeros(len(rows), task.num_labels)))
            train_with_kd(model, task, warm, FinetuneConfig(**{**config.__dict__, "epochs": 1}), device)
            model.load_state_dict(initial_state)
        synchronise = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        synchronise()
        state, seconds = train_with_kd(model, task, data, config, device)
        synchronise()
    rows = len(data.train) * args.epochs
    return {"rows_per_s": rows / seconds, "seconds": seconds, "accuracy": state.history[-1]["accuracy"]}


def step_function(path: str, task, data, args, device, initial_state):
    """One training step of `path` as `train_with_kd` runs it: batch, forward, loss, backward,
    gradient clipping, AdamW (the loop's bookkeeping aside). Returns step(rows) -> loss."""
    from nas.compute.acceleration import Captured, adamw, autocast, batch_buckets
    from nas.data.batching import device_batch, model_inputs
    from nas.train.student_training import kd_loss
    from searchspace.genotype import Genotype
    from searchspace.student import compile_genotype

    new = path == "new"
    model = compile_genotype(Genotype.from_string(GENOTYPE), vocab_size=30522, max_positions=512,
                             num_labels=task.num_labels, pair=False)
    model.load_state_dict(initial_state)
    model.to(device).train()
    parameters = list(model.parameters())
    optimizer = adamw(parameters, lr=1e-3, weight_decay=1e-4, fused=new)
    mode = args.compile if new else "off"
    forward = Captured(lambda inputs: model(**inputs).logits, mode, "student forward")
    buckets = batch_buckets(mode, args.bucket) if new else ()
    amp = args.amp if new else "off"
    gamma = 0.8 if args.knowledge else 0.0

    def step(rows):
        with contextlib.nullcontext() if new else old_step():
            batch = device_batch(data.train, rows, device, buckets) if new else to_device(_old_collate(data.train, rows), device)
            teacher = data.train_targets.logits[torch.as_tensor(rows)].to(device, non_blocking=True)
            with autocast(device, amp):
                logits = forward(model_inputs(batch))
            loss, _ = kd_loss(logits.float(), teacher, batch["labels"], task, gamma, 1.0)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            return loss.item()

    step.forward = forward
    return step


def interleaved_rows_per_s(task, data, args, device, initial_state) -> dict:
    """Rows/s of each path's step, the two paths taking turns step by step on the same batches,
    so a slow spell of a shared machine lands on both alike."""
    from nas.data.batching import batch_order

    steps = {path: step_function(path, task, data, args, device, initial_state) for path in ("old", "new")}
    order = batch_order(data.train.lengths, args.batch, 0, 0)
    synchronise = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for path, step in steps.items():  # untimed: first calls, and every bucket shape's capture
        for rows in order[:3] + (bucket_batches(data.train, args.batch) if path == "new" and args.compile != "off" else []):
            step(rows)
    seconds, rows_done = {"old": 0.0, "new": 0.0}, 0
    for rows in order[3 : 3 + args.steps]:
        for path, step in steps.items():
            synchronise()
            began = time.perf_counter()
            step(rows)
            synchronise()
            seconds[path] += time.perf_counter() - began
        rows_done += len(rows)
    failed = steps["new"].forward.failed
    return {"rows_per_s": {path: rows_done / s for path, s in seconds.items()}, "steps": min(args.steps, len(order) - 3),
            "capture_failed": failed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rows", type=int, default=8000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="end-to-end runs per path, alternating (0: none; on a GPU each run recaptures its graphs)")
    parser.add_argument("--steps", type=int, default=60, help="interleaved steps timed per path")
    parser.add_argument("--compile", default="off")
    parser.add_argument("--amp", default="off")
    parser.add_argument("--bucket", action="store_true")
    parser.add_argument("--knowledge", default=None, help="a knowledge folder for real teacher logits")
    parser.add_argument("--target", type=float, default=1.5, help="the speed-up (or, with --target-rows, rows/s) to reach")
    parser.add_argument("--target-rows", type=float, default=0.0, help="rows/s the new path must reach (GPU check: 50000)")
    parser.add_argument("--tokenizer", default=None, help="a tokenizer folder (default: the MiniLM package's)")
    parser.add_argument("--out", default=str(ROOT / "experiments/results/throughput.md"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    task, data = load_data(args.rows, args.knowledge, args.tokenizer)
    torch.manual_seed(0)
    from searchspace.genotype import Genotype
    from searchspace.student import compile_genotype

    from nas.train.distill_data import teacher_embedding_tables
    from nas.data.models import resolve_model

    student = compile_genotype(Genotype.from_string(GENOTYPE), vocab_size=30522, max_positions=512,
                               num_labels=task.num_labels, pair=False)
    # As `nas finetune --set init=scratch` starts: embeddings from the teacher's, projected.
    # (A GPU machine without the MiniLM package starts both paths from random embeddings.)
    try:
        words, positions = teacher_embedding_tables(resolve_model("minilm"), task)
        student.embeddings.init_from_teacher(words, positions)
        start = "MiniLM embeddings"
    except UserError:
        start = "random embeddings: the MiniLM package is not installed"
    initial = copy.deepcopy(student.state_dict())
    steps = interleaved_rows_per_s(task, data, args, device, initial)
    print(f"interleaved steps: {steps}", flush=True)
    results = {"old": [], "new": []}
    for round_ in range(args.rounds):
        for path in ("old", "new"):
            result = train_once(path, task, data, args, device, initial)
            results[path].append(result)
            print(f"round {round_ + 1} {path}: {result['rows_per_s']:.1f} rows/s, dev accuracy {result['accuracy']:.4f}", flush=True)

    median = {path: statistics.median(r["rows_per_s"] for r in runs) if runs else None for path, runs in results.items()}
    step_speed = steps["rows_per_s"]
    ratio = step_speed["new"] / step_speed["old"]
    passed = step_speed["new"] >= args.target_rows if args.target_rows else ratio >= args.target
    lengths = data.train.lengths
    command = "python experiments/throughput.py " + " ".join(sys.argv[1:])
    lines = [
        f"# Finetuning throughput: old eager step vs new step ({device.type})",
        "",
        f"Command: `{command.strip()}`  ",
        f"Machine: {machine()}{', ' + torch.cuda.get_device_name(device) if device.type == 'cuda' else ''}  ",
        f"torch {torch.__version__}  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  ",
        f"Load average (1/5/15 min) at the end: {' / '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs",
        "",
        f"Student `{GENOTYPE}` (K=4 H=128, depth.md's budgeted cell), trained from the same initial weights ({start}) "
        f"for {args.epochs} epoch(s) on the first {len(lengths)} SST-2 training rows (mean {sum(lengths) / len(lengths):.1f} tokens), "
        f"batch {args.batch}, {'KD from ' + args.knowledge if args.knowledge else 'task loss only (no knowledge folder given)'}; "
        f"dev accuracy on all {len(data.dev['dev'])} dev rows. New path settings: compile={args.compile}, amp={args.amp}, "
        f"bucket={args.bucket or args.compile != 'off'}, fused AdamW. Median of {args.rounds} alternating round(s).",
        "",
        f"Step rows/s: {steps['steps']} training steps per path on the same batches, the paths taking turns step by "
        "step (so a slow spell of the shared machine hits both), each step's batch building, forward, loss, backward, "
        "clipping and AdamW timed. End-to-end rows/s: `train_with_kd` for the epoch(s), one dev evaluation included."
        + (f" Capture failed, new path ran eager: {steps['capture_failed']}." if steps["capture_failed"] else ""),
        "",
        "| path | step rows/s (interleaved) | end-to-end rows/s per round | dev accuracy per round |",
        "| --- | --- | --- | --- |",
    ]
    for path, runs in results.items():
        speeds = ", ".join(f"{r['rows_per_s']:,.1f}" for r in runs) or "not run (--rounds 0)"
        accuracies = ", ".join(f"{r['accuracy']:.4f}" for r in runs) or "not run"
        lines.append(f"| {path} | {step_speed[path]:,.1f} | {speeds} | {accuracies} |")
    target = f"{args.target_rows:,.0f} rows/s" if args.target_rows else f"{args.target}x"
    end_to_end = f"{median['new'] / median['old']:.2f}x" if args.rounds else "not run"
    lines += ["", f"New / old, step rows/s: **{ratio:.2f}x** (target {target}: {'met' if passed else 'NOT met'}); "
              f"end to end (median of rounds): {end_to_end}."]
    atomic.write_text(Path(args.out), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
