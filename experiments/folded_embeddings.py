"""What folding the word vectors buys the served student: projected variants, trained form vs served.

Usage: python experiments/folded_embeddings.py [--threads 1] [--repeats 20] [--tiny]
       [--out experiments/results/folded_embeddings.md]

A projected word-vector variant (frozen_projection, the default for single sentences) runs a
(teacher width x H) matmul per token in training; `for_inference()` (searchspace/student.py)
folds it into one (vocab, H) table, which `nas finetune` saves and every latency figure times.
Here, for SST-2's searched cells at the shapes the 5x and 20x budgets choose among, each student
is timed in both forms beside the MiniLM teacher, in one process, the models taking turns call by
call (`nas.deploy.latency.compare_latency`, the loop behind metrics.json) on the first 1 / 32
SST-2 dev rows. Latency does not depend on training, so the students have fresh weights and the
teacher is the un-finetuned MiniLM backbone with a fresh head (SDPA attention). Also: the largest
difference between the two forms' logits on those 32 rows, and each form's stored parameters.
`--tiny`: a tiny random BERT teacher and narrow students, for checking the script.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nas.base import atomic  # noqa: E402
from nas.base.run_info import machine  # noqa: E402

# The cell of targets.md's SST-2 20x search (seed 42), at the depths and widths its budgets weighed.
CELL = "cnn3~0,cnn3~1|dilated_cnn3~1,dilated_cnn3~2|dilated_cnn3~0,dilated_cnn3~3"
SHAPES = ((1, 64), (2, 64), (1, 96), (2, 96), (2, 128), (3, 128))
TINY_SHAPES = ((1, 8), (2, 16))
VARIANT = "frozen_projection"


def models_and_dev(tiny: bool):
    from transformers import BertConfig, BertForSequenceClassification

    from nas.data.batching import encode
    from nas.data.glue_io import read_examples
    from nas.data.models import load_classifier, load_tokenizer, resolve_model
    from nas.data.tasks import get_task, resolve_data_dir
    from searchspace.genotype import Genotype
    from searchspace.student import compile_genotype

    task = get_task("sst2")
    tokenizer = load_tokenizer(resolve_model("minilm"))
    dev = encode(read_examples(task, resolve_data_dir(None), "dev"), tokenizer, 128)
    torch.manual_seed(0)
    if tiny:
        teacher = BertForSequenceClassification(BertConfig(
            vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64, num_labels=2, attn_implementation="sdpa"))
        about = "tiny random BERT"
    else:
        teacher = load_classifier(resolve_model("minilm"), task, new_head=True, sdpa=True)
        about = "MiniLM-L6 (all-MiniLM-L6-v2 backbone, fresh head)"
    width = teacher.get_input_embeddings().weight.shape[1]
    students = {}
    for depth, hidden in TINY_SHAPES if tiny else SHAPES:
        genotype = Genotype.from_string(f"v1;K={depth};H={hidden};M=8;cell={CELL};emb={VARIANT}")
        trained = compile_genotype(genotype, vocab_size=teacher.config.vocab_size, max_positions=512, num_labels=2,
                                   pair=False, teacher_width=width).eval()
        students[f"K={depth} H={hidden}"] = (trained, trained.for_inference())
    return students, teacher.eval(), dev, about


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the targets' latency setting: 1)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--tiny", action="store_true", help="tiny random models (a check of the script)")
    parser.add_argument("--out", default=str(ROOT / "experiments/results/folded_embeddings.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from nas.deploy.costs import parameter_counts
    from nas.deploy.latency import compare_latency, latency_batches
    from nas.deploy.serving import optimised_forward

    started = time.perf_counter()
    students, teacher, dev, about = models_and_dev(args.tiny)
    cpu = torch.device("cpu")
    inputs = latency_batches(dev, (1, 32))
    forwards = {"teacher": optimised_forward(teacher, cpu, keep_outputs=False)}
    for name, (trained, served) in students.items():
        forwards[f"{name} trained"] = optimised_forward(trained, cpu, keep_outputs=False)
        forwards[f"{name} served"] = optimised_forward(served, cpu, keep_outputs=False)
    timed = compare_latency(forwards, inputs, cpu, repeats=args.repeats)

    command = "python experiments/folded_embeddings.py " + " ".join(sys.argv[1:])
    lines = [
        f"# Folded word vectors: the {VARIANT} student trained vs served",
        "",
        f"Command: `{command.strip()}`  ",
        f"Machine: {machine()}  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  ",
        f"Load average (1/5/15 min) at the end: {' / '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs",
        "",
        f"Cell `{CELL}`, `{VARIANT}` word vectors, fresh weights; teacher: {about}. First 1 / 32 SST-2 dev rows "
        f"(batch 32 padded to {inputs[32]['input_ids'].shape[1]} tokens), median of {args.repeats} calls, every model "
        "taking turns in one process. Trained: the module as training runs it (table at the teacher's width, a projection "
        "per token); served: `for_inference()`, one table at the cells' width, as `nas finetune` saves it.",
        "",
        "| student | params trained | params served | b=1 trained (ms) | b=1 served (ms) | b=32 trained (ms) | b=32 served (ms) "
        "| b=32 faster than the teacher, trained | served | served / trained time, b=32 | max logit difference |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    teacher_32 = timed["teacher"]["batch_32_ms"]
    batch = inputs[32]
    for name, (trained, served) in students.items():
        t, s = timed[f"{name} trained"], timed[f"{name} served"]
        with torch.inference_mode():
            gap = (trained(**batch).logits - served(**batch).logits).abs().max().item()
        lines.append(
            f"| {name} | {parameter_counts(trained)['params']:,} | {parameter_counts(served)['params']:,} "
            f"| {t['batch_1_ms']:.2f} | {s['batch_1_ms']:.2f} | {t['batch_32_ms']:.2f} | {s['batch_32_ms']:.2f} "
            f"| {teacher_32 / t['batch_32_ms']:.1f}x | {teacher_32 / s['batch_32_ms']:.1f}x "
            f"| {s['batch_32_ms'] / t['batch_32_ms']:.2f} | {gap:.1e} |")
    lines += ["", f"Teacher: {timed['teacher']['batch_1_ms']:.2f} ms at batch 1, {teacher_32:.2f} ms at batch 32. "
              f"Measured in {time.perf_counter() - started:.0f} s."]
    atomic.write_text(Path(args.out), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
