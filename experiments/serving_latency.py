"""Serving latency of the K=4 H=128 student against the MiniLM teacher, eager and optimised.

Usage: python experiments/serving_latency.py [--device cpu|cuda] [--sizes 1,32,256] [--repeats 20]
       [--threads N] [--compile-cpu] [--tiny] [--out experiments/results/serving_latency.md]

Both models are timed by `nas.deploy.serving.measure_serving`, the code behind metrics.json: the same
SST-2 dev batches (the first 1 / 32 / 256 rows), in one process, the models taking turns call by
call; eager, then the optimised serving path (inference mode; on CUDA CUDA graphs through
torch.compile "reduce-overhead"). Latency does not depend on training, so the student has fresh
weights (depth.md's budgeted cell) and the teacher is the un-finetuned MiniLM backbone with a
fresh classification head, loaded with SDPA attention. `--compile-cpu` also times torch.compile
(inductor) on CPU, the choice `nas.deploy.serving.serving_mode` decided against. `--tiny`: a tiny random
BERT teacher and H=16 student, for checking the script (experiments/gpu_check.sh --cpu-dry-run).
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

GENOTYPE = "v1;K=4;H=128;M=8;cell=cnn3~1,cnn3~0|identity~1,identity~0|dilated_cnn3~2,cnn3~0"  # depth.md's budgeted cell


# all-MiniLM-L6-v2's architecture, for a machine without the package: latency does not depend on the weights.
MINILM_ARCH = dict(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                   intermediate_size=1536, max_position_embeddings=512)


def models_and_dev(tiny: bool, tokenizer_dir: str | None):
    from nas.data.batching import encode
    from nas.data.glue_io import read_examples
    from nas.data.models import load_classifier, load_tokenizer, resolve_model
    from nas.data.tasks import get_task, resolve_data_dir
    from searchspace.genotype import Genotype
    from searchspace.student import compile_genotype

    task = get_task("sst2")
    from transformers import BertConfig, BertForSequenceClassification

    from nas.base.errors import UserError

    tokenizer = load_tokenizer(tokenizer_dir or resolve_model("minilm"))
    dev = encode(read_examples(task, resolve_data_dir(None), "dev"), tokenizer, 128)
    torch.manual_seed(0)
    if tiny:
        config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=64, num_labels=2, attn_implementation="sdpa")
        teacher, about = BertForSequenceClassification(config), "tiny random BERT"
        genotype = GENOTYPE.replace("K=4;H=128", "K=2;H=16")
    else:
        genotype = GENOTYPE
        try:
            teacher = load_classifier(resolve_model("minilm"), task, new_head=True, sdpa=True)
            about = "MiniLM-L6 (all-MiniLM-L6-v2 backbone, fresh head)"
        except UserError:
            teacher = BertForSequenceClassification(BertConfig(**MINILM_ARCH, num_labels=2, attn_implementation="sdpa"))
            about = "MiniLM-L6's architecture with random weights (the MiniLM package is not installed here)"
    student = compile_genotype(Genotype.from_string(genotype), vocab_size=teacher.config.vocab_size,
                               max_positions=512, num_labels=2, pair=False)
    return student, teacher, dev, genotype, about


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", default="1,32,256")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--compile-cpu", action="store_true", help="on CPU, also time the student through torch.compile")
    parser.add_argument("--tiny", action="store_true", help="tiny random models (a check of the script)")
    parser.add_argument("--tokenizer", default=None, help="a tokenizer folder (default: the MiniLM package's)")
    parser.add_argument("--out", default=str(ROOT / "experiments/results/serving_latency.md"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sizes = tuple(int(s) for s in args.sizes.split(","))

    from nas.deploy.latency import compare_latency, latency_batches
    from nas.deploy.serving import measure_serving, optimised_forward

    student, teacher, dev, genotype, about = models_and_dev(args.tiny, args.tokenizer)
    student.to(device), teacher.to(device)
    started = time.perf_counter()
    result = measure_serving({"student": student, "teacher": teacher}, dev, device, sizes, args.repeats, args.warmup)
    compiled = compile_seconds = None
    if args.compile_cpu and device.type == "cpu":
        # Eager and compiled student timed in one call, taking turns, so the load hits both alike;
        # the first call at each size (compiling) is timed apart.
        forward = optimised_forward(student, device, mode="default")
        inputs = latency_batches(dev, sizes)
        began = time.perf_counter()
        for batch in inputs.values():
            forward(batch)
        compile_seconds = time.perf_counter() - began
        both = compare_latency({"eager": optimised_forward(student, device, mode="off"), "compiled": forward},
                               inputs, device, args.warmup, args.repeats)
        compiled = both["compiled"] if not forward.captured.failed else None
        if forward.captured.failed:
            print(f"torch.compile failed on CPU: {forward.captured.failed}")
    seconds = time.perf_counter() - started

    eager, fast = result["eager"], result["optimised"]
    command = "python experiments/serving_latency.py " + " ".join(sys.argv[1:])
    gpu = f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    lines = [
        f"# Serving latency: student vs teacher, eager and optimised ({device.type})",
        "",
        f"Command: `{command.strip()}`  ",
        f"Machine: {machine()}{gpu}  ",
        f"torch {torch.__version__}  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  ",
        f"Load average (1/5/15 min) at the end: {' / '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs",
        "",
        f"Student `{genotype}` (fresh weights); teacher: {about}, "
        f"SDPA attention. SST-2 dev rows, median of {args.repeats} interleaved calls after {args.warmup} warm-up calls "
        f"(`nas.deploy.serving.measure_serving`). Optimised = inference mode + torch.compile mode `{result['mode']}` "
        f"({'eager' if result['mode'] == 'off' else 'captured'}).{' Capture fell back to eager: ' + str(result['capture_failed']) if result['capture_failed'] else ''}",
        "",
        "| batch | student eager (ms) | teacher eager (ms) | student optimised (ms) | teacher optimised (ms) | "
        "student rows/s (opt.) | teacher rows/s (opt.) | speed-up eager | speed-up optimised |"
        + (" student torch.compile (ms, interleaved run below) |" if compiled else ""),
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |" + (" --- |" if compiled else ""),
    ]
    for size in sizes:
        key = f"batch_{size}_ms"
        s_e, t_e, s_o, t_o = eager["student"][key], eager["teacher"][key], fast["student"][key], fast["teacher"][key]
        row = (f"| {size} | {s_e:.3f} | {t_e:.3f} | {s_o:.3f} | {t_o:.3f} | {size * 1000 / s_o:,.0f} | {size * 1000 / t_o:,.0f} | "
               f"{t_e / s_e:.2f}x | {t_o / s_o:.2f}x |")
        lines.append(row + (f" {compiled[key]:.3f} |" if compiled else ""))
    verdicts = []
    if 256 in sizes:
        ratio = fast["teacher"]["batch_256_ms"] / fast["student"]["batch_256_ms"]
        verdicts.append(f"batch 256, optimised: student {ratio:.2f}x the teacher's throughput (GPU target >= 8x: {'met' if ratio >= 8 else 'not met'})")
    if 1 in sizes:
        ratio = fast["teacher"]["batch_1_ms"] / fast["student"]["batch_1_ms"]
        verdicts.append(f"batch 1, optimised: student {ratio:.2f}x the teacher's speed (GPU target >= 1x: {'met' if ratio >= 1 else 'not met'})")
    lines += ["", *(f"- {v}" for v in verdicts), f"- measured in {seconds:.0f} s"]
    if compiled:
        lines.append(f"- CPU torch.compile (inductor) of the student, timed interleaved with its eager inference-mode forward: "
                     + ", ".join(f"batch {s}: {both['eager'][f'batch_{s}_ms']:.3f} ms eager vs {compiled[f'batch_{s}_ms']:.3f} ms compiled "
                                 f"({both['eager'][f'batch_{s}_ms'] / compiled[f'batch_{s}_ms']:.2f}x)" for s in sizes)
                     + f"; compiling the {len(sizes)} shapes took {compile_seconds:.0f} s")
    atomic.write_text(Path(args.out), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
