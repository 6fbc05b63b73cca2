"""`--set depth_choice=trial`: the searched student's depth and width chosen by short trainings.

Why: under a latency budget the depth and width logits of a short search choose badly. They
favour what learns fastest in a few epochs of weight sharing, shallow and narrow stacks, while
the trained students rank otherwise: on MRPC at one predicted latency, K=2 H=96 cells beat
K=1 H=128, which beat K=4 H=64 (experiments/results/gap.md), and the searched K=8 H=64 and
K=4 H=64 students lost to random architectures of equal latency. So the cell comes from the
search (argmax or perturbation), and its shape from measurement:

1. Candidates: for each searched width (the hidden size alone when the width is not searched),
   the derived cell stacked as deep as the budget allows at that width (the latency table's
   `fit`: as many cells as fit, at most `max_cells`). One candidate per width, each spending the
   whole budget; a width where even one cell is over the budget is left out. With
   `trial_depths=halving` each width also offers that depth's halvings down to one cell: on a
   small training set a deep stack can lose to a shallow one of less latency (on MRPC, stacks of
   7 or 8 cells trained to the majority-class floor while stacks of 2 to 4 did not). With
   `latency_check=measure` each width's deepest stack is first timed whole and moved to the
   deepest that meets the budget when timed (nas/train/latency_check.py), before its halvings.
2. Each candidate is compiled and trained with the finetune's recipe (probe KD) for
   `trial_epochs` on the task's own training rows outside the search's held-out slice (the first
   `trial_rows` of them, when set; with `trial_data=transfer` their augmented copies too, as the
   finetune trains on the whole transfer set), with a seed of its own: from scratch
   (teacher-initialised word vectors), or with `trial_init=search` from the search's best
   weights, each candidate inheriting its own ops, cells and width as the searched student does
   in `nas finetune`.
3. Each is scored on that held-out slice, the rows the architecture steps used, never on dev:
   the final student's dev score then says nothing the choice already read (with
   `trial_data=transfer` also on those rows' copies, labelled by the teacher, and recorded as
   `variants_<metric>`; the choice reads the held-out rows' score). With
   `trial_choice=best` the best score wins, a tie going to the faster; with `budget` the slowest
   candidate within one standard error of the best score wins (`standard_error`): a difference
   the held-out rows cannot resolve does not give away the latency the user allowed. With
   `widest` the widest of those within one standard error wins, at that width the slowest: a
   bet that, where the trials cannot tell shapes apart, the full finetune rewards width. On
   SST-2 at 5x, each run's cell finetuned the same way at two shapes (experiments/results/
   trial_shapes.md): for it, one recurrent search's K=2 H=256, 0.8899 (0.8716 with another
   finetune seed), against the K=7 H=64 `budget` took by 1 ms of predicted latency, 0.8739;
   against it, the next seed's K=1 H=256, 0.8727, against its K=6 H=64, 0.8784, and a
   convolutional run's K=2 H=128, 0.8681, against its K=5 H=64, 0.8704. Hence an option, not
   the preset's choice.

Each trial's score is kept in `shape_trials.json` in the run folder as soon as it is known, so
a resumed search does not train it again.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

from nas.base import atomic
from nas.train.student_training import FinetuneConfig, compile_for_teacher, train_with_kd
from searchspace.cell_heads import CellHeads
from searchspace.genotype import DEFAULT_EMBEDDINGS, Genotype

TRIALS_FILE = "shape_trials.json"
TRIAL_SEED_OFFSET = 1000  # the trials' own seed: their noise is not the final finetune's
BEFORE_SETTING = {"init": "scratch", "depths": "deepest", "data": "task"}  # what a trials file from before these settings ran with
CORRELATIONS = ("pearson", "spearman", "matthews")  # the metrics in [-1, 1] (nas/data/metrics.py)


def shape_candidates(genotype: Genotype, widths, max_cells: int, latency, depths: str = "deepest",
                     check=None, checked: list | None = None) -> list[Genotype]:
    """The cell of `genotype` at each width in `widths`, as deep as `latency.fit` allows (at most
    `max_cells`), and with `depths="halving"` that depth's halvings down to 1 as well: distinct
    candidates, narrowest width first, deepest first within a width. `fit` moves a width whose one
    cell is over the budget to a narrower one (or cheaper ops), so such a width adds no candidate
    of its own. `check(genotype, deepest) -> (genotype, record)` (nas/train/latency_check.py),
    when given, times each width's deepest stack and moves it to the deepest that meets the
    budget when timed: the trials then compare students that fit, each spending the budget; its
    records are appended to `checked`."""
    found = []
    for width in sorted(widths):
        deepest = latency.fit(dataclasses.replace(genotype, hidden_size=width, num_cells=max_cells))
        if deepest.hidden_size != width:
            continue
        if check is not None:
            deepest, record = check(deepest, max_cells)
            if checked is not None:
                checked.append(record)
            if deepest.hidden_size != width:
                continue
        for depth in halvings(deepest.num_cells) if depths == "halving" else (deepest.num_cells,):
            candidate = dataclasses.replace(deepest, num_cells=depth)
            if candidate.canonical() not in {c.canonical() for c in found}:
                found.append(candidate)
    return found  # never empty: the search refused a budget the narrowest width cannot meet


def halvings(depth: int) -> list[int]:
    """`depth`, its half, quarter, ... down to 1: [8, 4, 2, 1], [5, 2, 1]."""
    return [depth >> shift for shift in range(depth.bit_length())]


def trial_config(search_config) -> FinetuneConfig:
    """The finetune's defaults (probe KD) with the search's batch size, γ, dropout and speed settings."""
    return FinetuneConfig(epochs=search_config.trial_epochs, batch_size=search_config.batch_size,
                          eval_batch_size=search_config.eval_batch_size, gamma=search_config.gamma,
                          kd_temperature=search_config.kd_temperature, kd="probes", dropout=search_config.dropout,
                          seed=search_config.seed + TRIAL_SEED_OFFSET, amp=search_config.amp,
                          fused_optimizer=search_config.fused_optimizer)


def trial_scores(genotype: Genotype, data, task, config: FinetuneConfig, device, words, positions, pad_id: int,
                 supernet_weights: dict | None = None, supernet_embeddings: str = DEFAULT_EMBEDDINGS) -> dict:
    """The held-out metrics of `genotype` trained on `data` (see the module docstring), those on
    the held-out rows' copies prefixed `variants_`: from scratch, or from `supernet_weights` (the
    search's best supernet state, of word-vector variant `supernet_embeddings`) when given."""
    student = compile_for_teacher(genotype, task, words, positions, config.dropout, pad_id)
    heads = None  # from scratch: fresh ones, made by train_with_kd
    if supernet_weights is None:
        student.embeddings.init_from_teacher(words, positions if positions is not None else student.embeddings.positions.weight)
    else:
        student.inherit_from_supernet(supernet_weights, supernet_embeddings)
        heads = CellHeads.for_student(student)
        heads.inherit_from_supernet(supernet_weights)
    state, _ = train_with_kd(student, task, data, config, device, heads=heads,
                             description=f"trial {genotype.num_cells}x{genotype.hidden_size}")
    return state.history[state.best_epoch]


def choose_shape(search, genotype: Genotype, words, positions, pad_id: int, check=None) -> tuple[Genotype, dict]:
    """(the best candidate shape of `genotype`'s cell, the record for arch.json's extra); `check`:
    see `shape_candidates`."""
    config, task = search.config, search.task
    widths = search.supernet.widths or (config.hidden_size,)
    timed = []
    candidates = shape_candidates(genotype, widths, config.max_cells, search.latency, config.trial_depths, check, timed)
    task_rows = [i for i in search.weight_rows if i < search.data.original_rows]
    if config.trial_rows:
        task_rows = task_rows[: config.trial_rows]
    transfer = config.trial_data == "transfer"
    train_rows = task_rows + (search.data.variants_of(task_rows).tolist() if transfer else [])
    data = search.data.held_out(train_rows, search.arch_rows, variants=transfer)
    trial = trial_config(config)
    kept = Path(search.out) / TRIALS_FILE
    settings = {"epochs": trial.epochs, "rows": len(train_rows), "held_out_rows": len(search.arch_rows), "seed": trial.seed,
                "init": config.trial_init, "depths": config.trial_depths, "data": config.trial_data}
    done = _earlier_trials(kept, settings)
    weights = None
    if config.trial_init == "search":
        search.load_best_weights()
        weights = search.supernet.state_dict()  # read only: each student copies its slices out
    metric = f"held_out_{task.primary_metric}"
    trials = []
    for candidate in candidates:
        key = candidate.to_string()
        if key not in done:
            started = time.perf_counter()
            scores = trial_scores(candidate, data, task, trial, search.device, words, positions, pad_id, weights,
                                  config.embeddings)
            on_copies = f"variants_{task.primary_metric}"
            done[key] = {"genotype": key, "predicted_ms": round(search.latency.predict(candidate), 4),
                         metric: scores[task.primary_metric], **({on_copies: scores[on_copies]} if on_copies in scores else {}),
                         "seconds": round(time.perf_counter() - started, 1)}
        trials.append(done[key])
        atomic.write_json(kept, {**settings, "trials": trials})
    top = max(trial[metric] for trial in trials)
    error = standard_error(task.primary_metric, top, len(search.arch_rows)) if config.trial_choice != "best" else 0.0
    choice = {"choice": config.trial_choice, **({"standard_error": round(error, 6)} if error else {})}
    widths = [candidate.hidden_size for candidate in candidates] if config.trial_choice == "widest" else None
    return candidates[chosen_trial(trials, metric, error, widths)], {"rule": "trial", **settings, **choice, "trials": trials,
                                                                     **({"latency_check": timed} if timed else {})}


def chosen_trial(trials: list[dict], metric: str, error: float = 0.0, widths: list[int] | None = None) -> int:
    """The index of the winning trial among those scoring within `error` of the best: the slowest
    (0: the best, a tie going to the faster), or with `widths` (each trial's hidden size) the
    widest, at that width the slowest (see the module docstring)."""
    top = max(trial[metric] for trial in trials)
    close = [i for i, trial in enumerate(trials) if trial[metric] >= top - error]
    if widths is not None:
        return max(close, key=lambda i: (widths[i], trials[i]["predicted_ms"], trials[i][metric]))
    if error == 0.0:
        return min(close, key=lambda i: trials[i]["predicted_ms"])
    return max(close, key=lambda i: (trials[i]["predicted_ms"], trials[i][metric]))


def standard_error(metric: str, score: float, rows: int) -> float:
    """One standard error of a held-out `score` over `rows` rows, by the usual approximations: a
    correlation's (1 - r²) / √(rows - 1) (Pearson, Spearman, Matthews), else a share's binomial
    √(s (1 - s) / rows) (accuracy exactly; F1 taken as a share of the same rows)."""
    if metric in CORRELATIONS:
        return (1.0 - min(score * score, 1.0)) / math.sqrt(max(rows - 1, 1))
    share = min(max(score, 0.0), 1.0)
    return math.sqrt(share * (1.0 - share) / max(rows, 1))


def _earlier_trials(path: Path, settings: dict) -> dict:
    """{genotype string: trial record} of the trials a stopped run of the same settings finished."""
    saved = json.loads(path.read_text()) if path.is_file() else {}
    if any(saved.get(key, BEFORE_SETTING.get(key)) != value for key, value in settings.items()):
        return {}
    return {trial["genotype"]: trial for trial in saved["trials"]}
