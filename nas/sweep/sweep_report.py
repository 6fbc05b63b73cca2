"""What a sweep leaves in its folder, built from the Optuna study alone (so any worker, on any
machine sharing the storage, writes the same files):

    pareto.md             the Pareto-optimal trials: settings, budget, predicted and measured
                          latency, dev metric, params, FLOPs, genotype
    trials.csv            every trial, whatever its state
    pareto.png            dev metric against measured latency, front, budgets, KD baselines
    op_probabilities.png  op probabilities per edge over the search epochs, Pareto trials
    pareto_cells.png      the derived cells of the Pareto trials side by side
    tensorboard/          the same three figures
"""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

from nas.base import atomic
from nas.base.errors import UserError
from nas.base.markdown import markdown_cell
from nas.base.safe_files import read_json, show_value
from nas.sweep.pareto import pareto_front
from nas.sweep.sweep_figures import cells_figure, op_history_figure, pareto_figure, save_png
from nas.sweep.sweep_storage import SURPLUS
from searchspace.genotype import Genotype

SETTING_COLUMNS = ("beta", "gamma", "tau_start", "arch_lr", "hidden_size", "max_cells")
MAX_DRAWN_TRIALS = 4  # op-probability rows and cells drawn: the Pareto trials, best metric first


def load_baselines(path) -> list[dict]:
    """A JSON list of {"name", "latency_ms", "metric"} (extra keys are ignored), checked entry by entry."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"--baselines {path}: no such file")
    data = read_json(path, "a baselines file (JSON)")
    if not isinstance(data, list):
        raise UserError(f"{path}: expected a JSON list of {{name, latency_ms, metric}}")
    out = []
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise UserError(f"{path}: [{i}]: expected an object with name, latency_ms, metric")
        for key, kinds in (("name", (str,)), ("latency_ms", (int, float)), ("metric", (int, float))):
            if not isinstance(item.get(key), kinds) or isinstance(item.get(key), bool):
                raise UserError(f"{path}: [{i}].{key}: missing or of the wrong type ({show_value(item.get(key))})")
        if item["latency_ms"] <= 0:
            raise UserError(f"{path}: [{i}].latency_ms: expected a positive number, got {item['latency_ms']}")
        out.append({"name": item["name"], "latency_ms": float(item["latency_ms"]), "metric": float(item["metric"])})
    return out


def finished_rows(study) -> list[dict]:
    """One row per complete trial: its settings and what the sweep stored about its result."""
    from optuna.trial import TrialState

    rows = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        result = trial.user_attrs.get("result")
        if result is None:
            continue
        rows.append({"trial": trial.number, **{k: trial.params.get(k) for k in SETTING_COLUMNS},
                     "budget_ms": trial.params.get("latency_budget_ms"), **result})
    return rows


def epoch_histories(trial) -> list[dict]:
    """The per-epoch records a trial stored (user attributes epoch_001, epoch_002, ...), in order."""
    keys = sorted(k for k in trial.user_attrs if k.startswith("epoch_"))
    return [trial.user_attrs[k] for k in keys]


def write_reports(study, out: Path, *, metric_name: str, batch_size: int, baselines=(), tensorboard: bool = True) -> dict:
    """Write every file of the module docstring into `out`; returns {"complete", "front"}."""

    rows = finished_rows(study)
    points = [(row["metric"], row["latency_ms"]) for row in rows]
    front = pareto_front(points)
    budgets = tuple(study.user_attrs.get("budgets", ()))
    atomic.write_text(out / "pareto.md", pareto_markdown(study, rows, front, metric_name, batch_size, budgets))
    atomic.write_text(out / "trials.csv", trials_csv(study))


    drawn = sorted(front, key=lambda i: -rows[i]["metric"])[:MAX_DRAWN_TRIALS]
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    histories, ops = [], None
    for i in drawn:
        epochs = epoch_histories(trials[rows[i]["trial"]])
        if epochs:
            ops = ops or epochs[0]["ops"]
            histories.append((f"trial {rows[i]['trial']}", [e["op_probabilities"] for e in epochs]))
    figures = {
        "pareto": pareto_figure(points, front, [f"#{row['trial']}" for row in rows], budgets=budgets,
                                baselines=baselines, metric_name=metric_name, batch_size=batch_size),
        "op_probabilities": op_history_figure(histories, ops or ()),
        "pareto_cells": cells_figure([(f"trial {rows[i]['trial']}: {rows[i]['metric']:.4f}, {rows[i]['latency_ms']:.2f} ms",
                                       Genotype.from_string(rows[i]["genotype"])) for i in drawn]),
    }
    for name, figure in figures.items():
        save_png(figure, out / f"{name}.png")
    if tensorboard:
        from nas.base.run_info import tensorboard_writer

        writer = tensorboard_writer(out / "tensorboard")
        for name, figure in figures.items():
            writer.add_figure(f"sweep/{name}", figure, global_step=len(rows))  # closes the figure
        writer.close()
    else:
        from nas.train.figures import plt

        for figure in figures.values():
            plt.close(figure)
    return {"complete": len(rows), "front": [rows[i]["trial"] for i in front]}


def pareto_markdown(study, rows, front, metric_name, batch_size, budgets) -> str:
    from optuna.trial import TrialState

    states = [t.state for t in study.get_trials(deepcopy=False) if not t.user_attrs.get(SURPLUS)]
    count = {s: states.count(s) for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)}
    settings = study.user_attrs.get("settings", {})
    lines = [
        f"# Sweep `{study.study_name}`: Pareto-optimal trials",
        "",
        f"Task {settings.get('task', '?')}, dev {metric_name} (maximised) against the student's latency at batch "
        f"{batch_size} in ms (minimised), measured by `nas finetune` (metrics.json, median of timed repeats on "
        f"the first dev rows); predicted latency from the sweep's latency table at the budget's batch size and "
        f"{settings.get('latency_seq_len', '?')} tokens.  ",
        f"Latency budgets: {', '.join(f'{b:g}' for b in budgets)} ms.  ",
        f"Trials: {count[TrialState.COMPLETE]} complete, {count[TrialState.PRUNED]} pruned, "
        f"{count[TrialState.FAIL]} failed, {count[TrialState.RUNNING]} running.  ",
        f"Written: {time.strftime('%Y-%m-%d %H:%M %Z')}",
        "",
        f"| trial | dev {metric_name} | measured ms | predicted ms | budget ms | params | FLOPs | β | γ | τ start "
        "| arch lr | H | Kmax | genotype |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for i in front:
        r = rows[i]
        lines.append(
            f"| {r['trial']} | {r['metric']:.4f} | {r['latency_ms']:.3f} | {r['predicted_ms']:.3f} | {r['budget_ms']:g} "
            f"| {r['params']:,} | {r['flops']:,} | {_number(r['beta'])} | {_number(r['gamma'])} | {_number(r['tau_start'])} "
            f"| {_number(r['arch_lr'])} | {r['hidden_size']} | {r['max_cells']} | `{markdown_cell(r['genotype_text'])}` |")
    if not front:
        lines.append("| (no trial finished yet) | | | | | | | | | | | | | |")
    return "\n".join(lines) + "\n"


def _number(value) -> str:
    return "" if value is None else f"{value:.4g}"


CSV_COLUMNS = ("trial", "state", "worker", *SETTING_COLUMNS, "budget_ms", "metric", "latency_ms", "predicted_ms",
               "params", "flops", "search_epochs", "pruned_at_epoch", "error", "genotype")


def trials_csv(study) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for trial in study.get_trials(deepcopy=False):
        if trial.user_attrs.get(SURPLUS):
            continue
        result = trial.user_attrs.get("result") or {}
        writer.writerow({
            "trial": trial.number, "state": trial.state.name.lower(), "worker": trial.user_attrs.get("worker", ""),
            **{k: trial.params.get(k, "") for k in SETTING_COLUMNS}, "budget_ms": trial.params.get("latency_budget_ms", ""),
            **{k: result.get(k, "") for k in ("metric", "latency_ms", "predicted_ms", "params", "flops")},
            "search_epochs": len(epoch_histories(trial)), "pruned_at_epoch": trial.user_attrs.get("pruned_at_epoch", ""),
            "error": trial.user_attrs.get("error", ""), "genotype": result.get("genotype_text", ""),
        })
    return buffer.getvalue()
