"""Shape trials on the transfer set: do they rank a cell's shapes as the full finetune does?

Usage: OMP_NUM_THREADS=1 python experiments/trial_data.py --run runs/targets/<run folder>
           [--epochs 1] [--report-only]
       (the table: experiments/results/trial_data.md, from trial_data.json beside it)

The search's trials (`depth_choice=trial`, nas/train/shape_trials.py) train each shape of the
searched cell for 2 epochs on 7,200 of the task's rows and score it on 800 held-out ones. On
SST-2 at 5x they ranked a recurrent cell's K=7 H=64 above its K=2 H=256 (0.8813 against 0.8725),
and finetuned on the whole transfer set the order was the other way round, 0.8739 against 0.8899
(experiments/results/trial_shapes.md). The finetune trains on the rows and their teacher-labelled
copies: `trial_data=transfer` has the trials do the same, and scores each shape on the held-out
rows and on their copies (agreement with the teacher, five times as many rows).

For each `--run` (a finished experiments/targets.py run folder), its search folder is copied to
runs/trial_data/<run>/search without its trials and arch.json, and the search is resumed there
with `--set trial_data=transfer --set trial_epochs=<epochs>`: the same supernet, cell and
candidates (the same latency budget, read from the copied teacher timing), only the trials new.
The report puts each candidate's three scores beside the dev metric of its finetune where one
exists (the run's own student, and experiments/results/trial_shapes.json's rows), and says which
shape `trial_choice=budget` takes on each score.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from baselines import nas  # noqa: E402  (experiments/ is this script's folder)
from nas.base import atomic  # noqa: E402
from nas.base.markdown import markdown_cell  # noqa: E402
from nas.run.pipeline import preset_file  # noqa: E402
from nas.train.shape_trials import TRIALS_FILE, chosen_trial, standard_error  # noqa: E402
from searchspace.genotype import Genotype  # noqa: E402
from targets import PRESET, locked  # noqa: E402
from trial_shapes import RESULTS as FINETUNED, run_task  # noqa: E402

RESULTS = ROOT / "experiments/results/trial_data.json"
COPIES = ROOT / "runs/trial_data"
NOT_COPIED = {TRIALS_FILE, "arch.json", "cells", "tensorboard"}  # what the derivation writes again


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", default=[], help="a finished experiments/targets.py run folder (repeatable)")
    parser.add_argument("--epochs", type=int, default=1, help="trial_epochs of the transfer-set trials")
    parser.add_argument("--results", default=str(RESULTS))
    parser.add_argument("--report-only", action="store_true", help="run nothing: rewrite the report from the JSON")
    args = parser.parse_args()
    results = Path(args.results)
    for run in map(Path, [] if args.report_only else args.run):
        search = rederived(run, args.epochs)
        with locked(results) as records:
            records[f"{run.name}/epochs{args.epochs}"] = {
                "run": run.name, "epochs": args.epochs, "command": command_of(search),
                "task_trials": json.loads((run / "search" / TRIALS_FILE).read_text()),
                "transfer_trials": json.loads((search / TRIALS_FILE).read_text()),
            }
    finetunes = json.loads(FINETUNED.read_text()) if FINETUNED.is_file() else {}
    write_report(results.with_suffix(".md"), json.loads(results.read_text()) if results.is_file() else {}, finetunes)
    return 0


def rederived(run: Path, epochs: int) -> Path:
    """The run's search folder copied and derived again with transfer-set trials (unless done)."""
    search = COPIES / run.name / "search"
    if not (search / "arch.json").is_file():
        if not search.is_dir():
            shutil.copytree(run / "search", search, ignore=lambda folder, names: [n for n in names if n in NOT_COPIED])
        recorded = json.loads((run / "search" / "config.json").read_text())
        overrides = [arg for arg in recorded["command"].split() if arg.startswith("search.")]
        sets = [item for setting in overrides for item in ("--set", setting.removeprefix("search."))]
        nas("search", "--task", run_task(run), "--teacher", run / "teacher", "--knowledge", run / "knowledge",
            "--config", preset_file(PRESET), "--seed", recorded["seed"], *sets, "--set", "trial_data=transfer",
            "--set", f"trial_epochs={epochs}", "--out", search, "--resume")
    return search


def command_of(search: Path) -> str:
    return json.loads((search / "config.json").read_text())["command"]


def write_report(path: Path, records: dict, finetunes: dict) -> None:
    lines = ["# Shape trials on the transfer set", "",
             "Produced by `python experiments/trial_data.py --run <targets run folder>` (module docstring). "
             "For each run: the searched cell's candidate shapes as its search tried them (`task`: 2 epochs on "
             "7,200 task rows) and as `trial_data=transfer` tries them (the same rows and their 5 copies each), "
             "scored on the search's 800 held-out rows and, for the transfer trials, on those rows' copies "
             "(agreement with the teacher); beside them the dev metric of the shape's finetune (the preset's "
             "settings, from the search's weights) where one was run. **bold**: the shape `trial_choice=budget` "
             "takes on that score. All on this CPU (2 cores, one torch thread each).", ""]
    for record in records.values():
        task_trials, transfer_trials = record["task_trials"]["trials"], record["transfer_trials"]["trials"]
        metric = next(key for key in task_trials[0] if key.startswith("held_out_"))
        copies = metric.replace("held_out_", "variants_")
        dev = {finetune["genotype"].split(" | ")[0]: finetune["score"] for key, finetune in finetunes.items()
               if finetune["run"] == record["run"]}
        held_out = record["transfer_trials"]["held_out_rows"]
        per_row = record["transfer_trials"]["rows"] // record["task_trials"]["rows"] - 1  # copies per task row
        picks = {name: _budget_pick(trials, key, rows)
                 for name, trials, key, rows in (("task", task_trials, metric, held_out),
                                                 ("transfer", transfer_trials, metric, held_out),
                                                 ("copies", transfer_trials, copies, held_out * per_row))}
        lines += [f"## {record['run']}", "", f"Command: `{record['command']}`", "",
                  "| shape | predicted b=32 ms | task trial, held out | transfer trial, held out | transfer trial, copies "
                  "| finetuned dev | transfer trial seconds |", "| --- | --- | --- | --- | --- | --- | --- |"]
        by_shape = {trial["genotype"]: trial for trial in task_trials}
        for trial in transfer_trials:
            shape = _shape(trial["genotype"])
            before = by_shape.get(trial["genotype"], {})
            scores = [_bold(before.get(metric), picks["task"] == trial["genotype"]),
                      _bold(trial[metric], picks["transfer"] == trial["genotype"]),
                      _bold(trial.get(copies), picks["copies"] == trial["genotype"])]
            finetuned = dev.get(shape)
            lines.append("| " + " | ".join(markdown_cell(str(cell)) for cell in (
                shape, trial["predicted_ms"], *scores, "-" if finetuned is None else f"{finetuned:.4f}",
                trial["seconds"])) + " |")
        lines.append("")
    atomic.write_text(path, "\n".join(lines) + "\n")


def _budget_pick(trials: list[dict], key: str, rows: int) -> str | None:
    """The genotype `trial_choice=budget` takes when the trials are scored by `key` over `rows` rows."""
    if not trials or key not in trials[0]:
        return None
    top = max(trial[key] for trial in trials)
    return trials[chosen_trial(trials, key, standard_error(key.split("_")[-1], top, rows))]["genotype"]


def _shape(genotype: str) -> str:
    parsed = Genotype.from_string(genotype)
    return f"K={parsed.num_cells} H={parsed.hidden_size}"


def _bold(score: float | None, chosen: bool) -> str:
    if score is None:
        return "-"
    return f"**{score:.4f}**" if chosen else f"{score:.4f}"


if __name__ == "__main__":
    sys.exit(main())
