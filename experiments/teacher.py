"""Fine-tune the MiniLM teacher on full SST-2 and MRPC and write experiments/results/teacher.md.

Usage: python experiments/teacher.py [--runs runs/teachers] [--tasks sst2,mrpc] [--force]

Each task's teacher lands in RUNS/TASK; a task whose folder already holds metrics.json is not
trained again, and a stopped one continues from its last epoch checkpoint, unless --force.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = {  # task -> nas teacher flags
    "sst2": ["--epochs", "2"],
    "mrpc": ["--epochs", "3"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default=str(ROOT / "runs/teachers"))
    parser.add_argument("--tasks", default="sst2,mrpc")
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--results", default=str(ROOT / "experiments/results/teacher.md"))
    args = parser.parse_args()

    rows = []
    for task in args.tasks.split(","):
        out = Path(args.runs) / task
        command = [sys.executable, "-m", "nas", "teacher", "--task", task, "--model", "minilm", "--out", str(out), *SETTINGS[task]]
        if args.force or not (out / "metrics.json").is_file():
            print("$", " ".join(command), flush=True)
            # --resume: continue from the epoch checkpoint a stopped session left (SST-2 epochs are long here)
            subprocess.run([*command, *([] if args.force else ["--resume"])], check=True, cwd=ROOT)
        metrics = json.loads((out / "metrics.json").read_text())
        shown = ["nas", *(str(Path(c).relative_to(ROOT)) if c.startswith(str(ROOT)) else c for c in command[3:])]
        rows.append((task, " ".join(shown), metrics))
    write_table(Path(args.results), rows)
    return 0


def write_table(path: Path, rows) -> None:
    lines = [
        "# Teacher fine-tuning (MiniLM, all-MiniLM-L6-v2)",
        "",
        f"Produced by `python experiments/teacher.py` on {time.strftime('%Y-%m-%d')}.",
        "",
        "| task | dev metrics (best epoch) | primary metric by epoch | best epoch / epochs | train rows | wall time (train+eval) | params | machine | date | command |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for task, command, m in rows:
        shown = ", ".join(f"{k} {v:.4f}" for k, v in m["metrics"].items())
        epochs = m["config"]["epochs"]
        by_epoch = ", ".join(f"{h[m['primary_metric']]:.4f}" for h in m["history"])
        lines.append(
            f"| {task} | {shown} | {by_epoch} | {m['best_epoch']} / {epochs} | {m['train_rows']} | {m['train_seconds'] / 60:.1f} min "
            f"| {m['params']:,} | {m['provenance']['machine']} | {m['provenance']['date']} | `{command}` |"
        )
    lines += [
        "",
        "Settings: AdamW, lr 5e-5, batch 32, linear warm-up (10%) and decay, max length 64 (SST-2) / 128 (MRPC),",
        "dynamic padding with length-grouped batches, best epoch on dev kept, seed 42.",
        "Wall times are as measured; a run that shared the two cores with other jobs (tests, other training) is slower",
        "than it would be alone.",
        "For reference (from the issue, not measured here): a plain 1-epoch fine-tune of this backbone on full SST-2",
        "with fixed settings reached 0.891 dev accuracy in 21 minutes on this kind of machine.",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    print(path.read_text())


if __name__ == "__main__":
    raise SystemExit(main())
