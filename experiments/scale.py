"""Scale: what a 20x transfer set costs `nas knowledge` (and, from part B, `nas finetune`) on this machine.

Usage: python experiments/scale.py [--work /tmp/nas-scale] [--sst2-rows 100] [--mrpc-rows 50]
                                   [--memory-rows 4000] [--only NAME ...]

One function per measurement; each one's result is kept in WORK/state.json as soon as it is
measured, so a stopped run continues with the next one (`--redo NAME` measures one again).
Every `nas` command runs in its own process, timed, with its peak RSS read from wait4().
Writes experiments/results/scale.md (the command, the machine and the date at its top).

The MiniLM teachers are fine-tuned here on 256 rows for one epoch: throughput and memory do not
depend on a teacher's accuracy. The memory rows use a tiny random teacher with MiniLM's
tokenizer, so that 160,000 augmented rows fit in minutes; what they show (memory flat in the
number of rows) is a property of the code path, which is the same for any teacher.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kd.knowledge_manifest import KnowledgeManifest  # noqa: E402
from nas.base.run_info import machine  # noqa: E402

PYTHON = sys.executable
SST2_TRAIN, SST2_DEV = 67_349, 872
MINILM = {"layers": 6, "hidden": 384}
# The tiny teacher gains nothing from a second thread, and on a shared 2-core machine OpenMP
# threads that wait on each other stall for seconds.
ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # what the old code held per row: (layers+1) x hidden float32 features


# ---------------------------------------------------------------- running `nas` and measuring it


def measured(args: list[str], env: dict | None = None) -> dict:
    """Run a command; its wall seconds, peak RSS (MB) and exit code. RSS from wait4: the child's own peak."""
    started = time.perf_counter()
    process = subprocess.Popen(args, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return {"seconds": round(time.perf_counter() - started, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024),
            "returncode": process.returncode, "output": output[-2000:]}


def nas(*args, env=None, check=True) -> dict:
    result = measured([PYTHON, "-m", "nas", *map(str, args)], env)
    if check and result["returncode"] != 0:
        raise SystemExit(f"nas {' '.join(map(str, args))} failed:\n{result['output']}")
    return result


def data_dir() -> Path:
    from nas.data.tasks import resolve_data_dir

    return resolve_data_dir(None)


def minilm_teacher(work: Path, task: str) -> Path:
    """MiniLM fine-tuned on 256 rows for one epoch (kept in WORK; throughput does not need a good one)."""
    out = work / f"teacher_{task}"
    if not (out / "metrics.json").is_file():
        nas("teacher", "--task", task, "--model", "minilm", "--max-train", 256, "--max-dev", 128, "--epochs", 1,
            "--device", "cpu", "--out", out)
    return out


def tiny_teacher(work: Path) -> Path:
    """A random 2-layer, width-32 BERT with MiniLM's tokenizer: real token ids, a fast forward."""
    out = work / "teacher_tiny"
    if (out / "config.json").is_file():
        return out
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from nas.data.models import load_tokenizer, resolve_model

    tokenizer = load_tokenizer(resolve_model("minilm"))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512, num_labels=2)
    BertForSequenceClassification(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def knowledge(work: Path, name: str, task: str, teacher: Path, rows: int, dev_rows: int, augment: int,
              env=None, check=True, extra=()) -> dict:
    out = work / name
    run = nas("knowledge", "--task", task, "--teacher", teacher, "--max-train", rows, "--max-dev", dev_rows,
              "--augment", augment, "--device", "cpu", "--force", "--out", out, *extra, env=env, check=check)
    if run["returncode"] != 0:
        return run
    manifest = KnowledgeManifest.load(out / "manifest.json")
    total_rows = sum(manifest.splits.values())
    return {**run, "folder": str(out), "splits": manifest.splits, "build_seconds": manifest.seconds,
            "rows_per_s": round(total_rows / manifest.seconds, 1), "npy_bytes": manifest.bytes,
            "folder_bytes": sum(f.stat().st_size for f in out.iterdir() if f.is_file())}


# ---------------------------------------------------------------- the measurements, one function each


def measure_tokenize(work: Path, args) -> dict:
    """SST-2's 67,349 training sentences tokenised four ways, each in a fresh process, best of 2."""
    results = {}
    for mode in TOKENIZE_MODES:
        runs = []
        for _ in range(2):
            run = measured([PYTHON, __file__, "--tokenize-worker", mode])
            if run["returncode"] != 0:
                raise SystemExit(run["output"])
            runs.append({**json.loads(run["output"].strip().splitlines()[-1]), "peak_rss_mb": run["peak_rss_mb"]})
        results[mode] = min(runs, key=lambda r: r["seconds"])
    return results


TOKENIZE_MODES = {
    "before": "before: one call, one thread, into Python lists (every command, every run)",
    "one": "one thread, into flat arrays (nas.data.token_arrays)",
    "threads": "the fast tokenizer's threads (TOKENIZERS_PARALLELISM), into flat arrays",
    "processes": "a pool of forked processes, into flat arrays",
}


def tokenize_worker(mode: str) -> None:
    """One tokenisation, timed. `before` is what every command did (the tokenizer's Python lists,
    with TOKENIZERS_PARALLELISM=false as nas sets it); the others are nas.data.token_arrays' ways."""
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    from nas.data.glue_io import read_examples
    from nas.data.models import load_tokenizer, resolve_model
    from nas.data.tasks import get_task
    from nas.data.token_arrays import tokenize, workers

    tokenizer = load_tokenizer(resolve_model("minilm"))
    texts = [e.text_a for e in read_examples(get_task("sst2"), data_dir(), "train")]
    started = time.perf_counter()
    if mode == "before":
        encoded = tokenizer(texts, None, truncation=True, max_length=64, return_token_type_ids=True)
        tokens = sum(map(len, encoded["input_ids"]))
    else:
        ids, _ = tokenize(texts, None, tokenizer, 64, how=mode)
        tokens = len(ids.flat)
    seconds = time.perf_counter() - started
    print(json.dumps({"rows": len(texts), "tokens": tokens, "seconds": round(seconds, 2),
                      "rows_per_s": round(len(texts) / seconds), "cores": workers()}))


def measure_knowledge_minilm(work: Path, args) -> dict:
    """`nas knowledge` with the MiniLM teacher at 1x and 20x, on an SST-2 and an MRPC subset."""
    results = {}
    for task, rows, dev in (("sst2", args.sst2_rows, 200), ("mrpc", args.mrpc_rows, 100)):
        teacher = minilm_teacher(work, task)
        for augment in (0, 20):
            results[f"{task}_x{augment}"] = knowledge(work, f"k_{task}_x{augment}", task, teacher, rows, dev, augment)
    return results


def measure_memory(work: Path, args) -> dict:
    """Peak RSS as the augmented set grows (tiny teacher): 2x, 10x and 20x of the same rows."""
    teacher = tiny_teacher(work)
    return {f"x{augment}": knowledge(work, f"k_mem_x{augment}", "sst2", teacher, args.memory_rows, SST2_DEV, augment,
                                     env=ONE_THREAD)
            for augment in (2, 10, 20)}


def measure_resume(work: Path, args) -> dict:
    """The 20x memory run again, SIGKILLed after a quarter of its shards, started again, compared byte for byte."""
    teacher = tiny_teacher(work)
    reference = work / "k_mem_x20"
    if not (reference / "manifest.json").is_file():
        raise SystemExit("the resume check compares against the memory measurement's 20x folder: run `memory` first")
    out = work / "k_resume"
    for leftover in (out, out.with_name(out.name + ".partial")):
        if leftover.exists():
            import shutil

            shutil.rmtree(leftover)
    from kd.knowledge import KnowledgeConfig

    shard_rows = KnowledgeConfig().shard_rows
    shards = -(-KnowledgeManifest.load(reference / "manifest.json").splits["augmented"] // shard_rows)
    kill_after = max(1, shards // 4)
    killed = knowledge(work, "k_resume", "sst2", teacher, args.memory_rows, SST2_DEV, 20,
                       env={**ONE_THREAD, "NAS_KNOWLEDGE_KILL_AFTER_SHARDS": str(kill_after)}, check=False)
    progress = json.loads((out.with_name(out.name + ".partial") / "progress.json").read_text())
    resumed = nas("knowledge", "--task", "sst2", "--teacher", teacher, "--max-train", args.memory_rows, "--max-dev",
                  SST2_DEV, "--augment", 20, "--device", "cpu", "--out", out, env=ONE_THREAD)
    files = sorted(p.name for p in reference.glob("*.npy"))
    identical = all((reference / f).read_bytes() == (out / f).read_bytes() for f in files)
    return {"killed_returncode": killed["returncode"], "killed_seconds": killed["seconds"],
            "shards_done_when_killed": progress.get("augmented_shards"), "shards": shards,
            "resumed_seconds": resumed["seconds"], "arrays_compared": len(files), "identical": identical}


def measure_stored_ids(work: Path, args) -> dict:
    """What a command pays for the 20x training rows' token ids now: opening the folder's arrays."""
    run = measured([PYTHON, __file__, "--load-worker", str(work / "k_mem_x20")])
    if run["returncode"] != 0:
        raise SystemExit(run["output"])
    return json.loads(run["output"].strip().splitlines()[-1])


def load_worker(folder: str) -> None:
    from nas.data.token_arrays import RaggedRows, read_token_arrays

    started = time.perf_counter()
    train, _ = read_token_arrays(Path(folder), "train")
    augmented, _ = read_token_arrays(Path(folder), "augmented")
    joined = RaggedRows.concat([train, augmented])  # what prepare() builds for search and finetune
    print(json.dumps({"rows": len(joined), "seconds": round(time.perf_counter() - started, 2)}))


MEASUREMENTS = {
    "tokenize": measure_tokenize,
    "knowledge_minilm": measure_knowledge_minilm,
    "memory": measure_memory,
    "resume": measure_resume,
    "stored_ids": measure_stored_ids,
    # part B: "finetune": measure_finetune (rows/s of `nas finetune` at 1x and 20x)
}


# ---------------------------------------------------------------- the report


def _full_runs(results: dict) -> str:
    """The time a full 20x build would take at the measured 20x rate (an extrapolation, said as one)."""
    parts = []
    for key, rows in (("mrpc_x20", 3_668 * 21 + 408), ("sst2_x20", SST2_TRAIN * 21 + SST2_DEV)):
        if key in results:
            hours = rows / results[key]["rows_per_s"] / 3600
            parts.append(f"full {key.split('_')[0].upper()} at 20x ({rows:,} rows) would take about {hours:.1f} h")
    return ("extrapolated at the 20x rate, " + "; ".join(parts) + ".") if parts else ""


def feature_bytes(rows: int) -> int:
    """What the old `nas knowledge` held for `rows` rows with MiniLM: every layer's pooled float32 state."""
    return rows * (MINILM["layers"] + 1) * MINILM["hidden"] * 4


def report(state: dict) -> str:
    lines = [
        "# Scale: a 20x transfer set through `nas knowledge`",
        "",
        f"Machine: {state['machine']}, {state['cores']} cores, at times shared with other jobs (timings are "
        f"noisy; treat ratios under 1.5x as ties). Date: {state['date']}. Commands (one per measurement):",
        "",
        *[f"- {name}: `{command}`" for name, command in state.get("commands", {}).items()],
        "",
    ]
    if "tokenize" in state:
        t = state["tokenize"]
        before = t["before"]
        lines += [
            "## Tokenisation: SST-2 train (67,349 sentences, MiniLM tokenizer, max length 64), best of 2",
            "",
            "| how | seconds | rows/s | x before | 1.35M rows (20x SST-2), extrapolated |",
            "| --- | --- | --- | --- | --- |",
        ]
        for mode, name in TOKENIZE_MODES.items():
            r = t[mode]
            chosen = " (**default**)" if mode == state.get("parallel") else ""
            lines.append(f"| {name}{chosen} | {r['seconds']:.2f} | {r['rows_per_s']:,} | "
                         f"{before['seconds'] / r['seconds']:.2f} | {1_346_980 / r['rows_per_s']:.0f} s |")
        lines += ["", "After, tokenisation happens once, in `nas knowledge`; the teacher's forward dominates there."]
        if "stored_ids" in state:
            s = state["stored_ids"]
            lines += ["", f"After, search, finetune and distill tokenise nothing: they open the folder's arrays. For "
                          f"the memory run's {s['rows']:,} train + augmented rows that took {s['seconds']:.2f} s "
                          "(memory-map and join)."]
        lines.append("")
    if "knowledge_minilm" in state:
        lines += [
            "## `nas knowledge` throughput (MiniLM-L6 teacher, CPU)",
            "",
            "Rows/s counts every row the teacher labels (train, dev, augmented) over the build time in "
            "manifest.json (loading excluded); wall time is the whole process. Teachers fine-tuned on 256 rows, "
            "1 epoch (throughput does not depend on accuracy). Subsets of the training rows (their sizes are in the "
            "command): " + _full_runs(state["knowledge_minilm"]) + " The 1x rows/s is lower because the build's "
            "fixed costs (probe training over every layer, the dev split) weigh on fewer rows.",
            "",
            "| task | train rows | augment | rows labelled | build s | rows/s | wall s | peak RSS MB | folder MB |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for key, r in state["knowledge_minilm"].items():
            task, augment = key.split("_x")
            lines.append(f"| {task} | {r['splits']['train']:,} | {augment}x | {sum(r['splits'].values()):,} "
                         f"| {r['build_seconds']} | {r['rows_per_s']} | {r['seconds']} | {r['peak_rss_mb']:,} "
                         f"| {r['folder_bytes'] / 1e6:.1f} |")
        r = state["knowledge_minilm"].get("sst2_x20")
        if r:
            per_augmented = r["folder_bytes"] / sum(r["splits"].values())
            rows = SST2_TRAIN * 21 + SST2_DEV
            lines += ["", f"Size on disk, **extrapolated** (not measured) to full SST-2 at 20x ({rows:,} rows) from the "
                          f"SST-2 20x folder above ({per_augmented:.0f} bytes a row, all files: arrays, TSVs, probes): "
                          f"about {rows * per_augmented / 1e9:.2f} GB."]
        lines.append("")
    if "memory" in state:
        m = state["memory"]
        lines += [
            "## Peak memory as the augmented set grows",
            "",
            "A tiny random teacher (2 layers, width 32) with MiniLM's tokenizer on the first "
            f"{m['x2']['splits']['train']:,} SST-2 rows. The last column is what the old `nas knowledge` held in "
            "features alone for the same rows with MiniLM ((6+1) layers x 384 x 4 bytes a row, all rows at once; "
            f"20x full SST-2: {feature_bytes(SST2_TRAIN * 21 + SST2_DEV) / 1e9:.1f} GB); now the augmented rows' "
            "features live one batch at a time.",
            "",
            "Peak RSS is the `nas knowledge` process's own (wait4); the tokenizer's pool workers hold a chunk each.",
            "",
            "| augment | augmented rows | build s | peak RSS MB | old code's MiniLM features, MB |",
            "| --- | --- | --- | --- | --- |",
        ]
        for key, r in m.items():
            rows = sum(r["splits"].values())
            old = feature_bytes(rows) / 1e6
            lines.append(f"| {key[1:]}x | {r['splits']['augmented']:,} | {r['build_seconds']} | {r['peak_rss_mb']:,} "
                         f"| {old:,.0f} |")
        low, high = m["x2"], m["x20"]
        extra = high["splits"]["augmented"] - low["splits"]["augmented"]
        slope = (high["peak_rss_mb"] - low["peak_rss_mb"]) / extra * 1e5
        lines += ["", f"Growth of the peak: {slope:+.0f} MB per 100,000 more augmented rows (run-to-run noise of a "
                      f"few tens of MB included), against {feature_bytes(100_000) / 1e6:,.0f} MB per 100,000 rows that "
                      "the old code's MiniLM features alone took."]
        lines.append("")
    if "resume" in state:
        r = state["resume"]
        lines += [
            "## Resume after a kill",
            "",
            f"The 20x memory run again, killed with SIGKILL after {r['shards_done_when_killed']} of {r['shards']} "
            f"augmented shards ({r['killed_seconds']} s, exit {r['killed_returncode']}), then the same command: it "
            f"finished in {r['resumed_seconds']} s, and its {r['arrays_compared']} .npy arrays are "
            f"{'byte-identical' if r['identical'] else 'NOT identical'} to the uninterrupted run's.",
            "",
        ]
    lines += [
        "## `nas finetune` rows/s at 1x and 20x",
        "",
        "Part B of issue 10 (the training step) adds this measurement (`measure_finetune`).",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="/tmp/nas-scale", help="teachers, knowledge folders and state.json")
    parser.add_argument("--sst2-rows", type=int, default=100, help="SST-2 training rows for the MiniLM rows")
    parser.add_argument("--mrpc-rows", type=int, default=50, help="MRPC training rows for the MiniLM rows")
    parser.add_argument("--memory-rows", type=int, default=4000, help="SST-2 rows for the memory and resume rows")
    parser.add_argument("--only", nargs="*", choices=sorted(MEASUREMENTS), help="measure only these")
    parser.add_argument("--redo", nargs="*", default=[], choices=sorted(MEASUREMENTS), help="measure these again")
    parser.add_argument("--out", default=str(ROOT / "experiments/results/scale.md"))
    parser.add_argument("--tokenize-worker", help=argparse.SUPPRESS)
    parser.add_argument("--load-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tokenize_worker:
        tokenize_worker(args.tokenize_worker)
        return 0
    if args.load_worker:
        load_worker(args.load_worker)
        return 0

    from nas.data.token_arrays import workers

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    state_path = work / "state.json"
    state = json.loads(state_path.read_text()) if state_path.is_file() else {}
    from nas.data.token_arrays import PARALLEL

    state.update(machine=machine(), cores=workers(), date=datetime.date.today().isoformat(), parallel=PARALLEL)
    command = ("python experiments/scale.py " + " ".join(sys.argv[1:])).strip()
    sizes = f" (sst2-rows {args.sst2_rows}, mrpc-rows {args.mrpc_rows}, memory-rows {args.memory_rows})"
    for name, measure in MEASUREMENTS.items():
        if (args.only and name not in args.only) or (name in state and name not in args.redo):
            continue
        print(f"scale: {name} ...", flush=True)
        started = time.perf_counter()
        state[name] = measure(work, args)
        # Each measurement keeps the command (and sizes) it was made with: a later --redo of another one
        # must not relabel it.
        state.setdefault("commands", {})[name] = command + sizes
        state_path.write_text(json.dumps(state, indent=2))
        print(f"scale: {name} done in {time.perf_counter() - started:.0f}s", flush=True)
    Path(args.out).write_text(report(state))
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
