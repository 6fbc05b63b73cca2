"""`nas sweep`: an Optuna multi-objective study over the search settings.

Each trial draws search settings (nas/sweep/sweep_space.py), runs `run_search` into
`OUT/trials/NNNN/search` with `efficiency=latency` against the sweep's latency table and the
trial's latency budget, then a short `run_finetune` into `OUT/trials/NNNN/student`. Its two
objectives are the student's dev metric (maximised) and its latency in ms at the budget's batch
size and length, timed alone right after the finetune (minimised); the latency the table predicts for the derived
genotype is stored beside it. Both run in this process; the storage is the only thing workers
share (nas/sweep/sweep_storage.py says how they split the trials and resume after a kill).

Pruning. Optuna's `trial.report` / `should_prune` raise NotImplementedError in multi-objective
studies (Optuna 4 and 5), so the sweep prunes by its own rule. After each search epoch the trial
stores its point (search dev metric of the derived genotype, latency the table predicts for it)
as the user attribute `epoch_NNN`. From epoch `prune_from_epoch` on, once at least
`prune_min_trials` complete trials stored a point at that epoch, the trial is pruned when at
least `prune_dominated_share` of those points dominate its own (better or equal on both, better
on one): it trails most finished trials at the same stage on both objectives at once, which is
hopeless for a Pareto front, while a trial that is worse only in metric but faster is kept.
The rule compares search-time numbers with search-time numbers only (the finetuned metric and
the measured latency come later and on another scale).

One latency table per hidden size is needed (a table holds one hidden size): `--latency-table`
FILE (repeatable), else measured once at the budget's batch size and sequence length into
`OUT/latency_table.json` (`OUT/latency_table_hH.json` for each H when several are swept),
under a file lock so that workers on one machine measure it once.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from kd.knowledge import Knowledge
from nas.base import atomic
from nas.base.errors import UserError
from nas.data.glue_io import TaskData
from nas.data.model_metrics import METRICS, StudentMetrics
from nas.sweep.pareto import dominated_share
from nas.sweep.sweep_space import SweepConfig, check_fixed_search_settings, default_budgets, sample_settings, trial_search_config
from nas.sweep.sweep_storage import (
    INTERRUPTED, RETRY_OF, SURPLUS, counts, fail_stale_trials, file_lock, heartbeat, is_surplus, open_storage,
    open_study, repeated_trial,
)
from nas.data.models import load_classifier
from nas.deploy.costs import dummy_inputs
from nas.deploy.latency import compare_latency
from nas.deploy.latency_measure import LatencyTableConfig, build_latency_table
from nas.deploy.latency_table import check_compatible, load_latency_table, predict_latency_ms, save_latency_table
from nas.run.config import build, read_config_file
from nas.run.pipeline import split_sets
from nas.sweep.sweep_report import load_baselines, write_reports
from nas.train.distill_data import teacher_embedding_tables
from nas.train.finetune import run_finetune
from nas.train.latency_budget import SearchLatency
from nas.train.loop import NonFiniteLoss
from nas.train.search import CHECKPOINT, SearchConfig, run_search
from nas.train.student_training import FinetuneConfig
from searchspace.embedding_variants import TEACHER_WIDE
from searchspace.genotype import Genotype


@dataclass(frozen=True)
class SweepJob:
    """What one worker needs besides the settings: data, folders, storage, device."""

    data: TaskData
    teacher_dir: Path
    knowledge: Knowledge
    out: Path
    trials: int
    storage_url: str
    study_name: str
    device: torch.device | str
    search: SearchConfig  # the settings every trial shares
    finetune: FinetuneConfig
    sweep: SweepConfig
    latency_tables: tuple[str, ...] = ()
    baselines: str | None = None
    seed: int = 42


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def default_storage(out: Path) -> str:
    return f"sqlite:///{Path(out).resolve() / 'study.db'}"


def run_sweep(job: SweepJob, log=print) -> dict:
    """Run trials until the study holds `job.trials` finished ones (with any other workers), then
    write the reports. Returns {"complete", "pruned", "front" (trial numbers), "ran" (by this worker)}."""

    # `auto` word vectors resolved once, for the tables too: those of given tables, else the task's.
    given = load_latency_table(job.latency_tables[0]).embeddings if job.latency_tables else None
    job = replace(job, search=job.search.for_task(job.data.task, given))
    out = Path(job.out)
    out.mkdir(parents=True, exist_ok=True)
    storage = open_storage(job.storage_url, job.sweep.heartbeat_seconds, job.sweep.grace_seconds)
    baselines = load_baselines(job.baselines) if job.baselines else []
    tables = latency_tables(job, log)
    task = job.data.task
    check_budgets(job, tables, job.sweep.budgets)
    study, budgets = open_study(storage, job.study_name, settings_record(job), job.sweep.budgets or None,
                                make_sampler(job.sweep, job.seed), lambda: reference_budgets(job, tables))
    check_budgets(job, tables, budgets)  # a study's stored budgets may come from another machine's table
    log(f"sweep {task.name}: study {job.study_name!r}, {job.trials} trials, budgets {list(budgets)} ms "
        f"at batch {job.sweep.latency_batch_size}; worker {worker_name()}")

    ran, waiting_said = 0, False
    max_failed = job.sweep.max_failed_trials or job.trials
    while True:
        fail_stale_trials(study)  # a trial whose worker stopped beating is failed and queued again
        tally = counts(study)
        if tally["finished"] >= job.trials:
            break
        if tally["failed"] >= max_failed:
            raise UserError(f"study {job.study_name!r}: {tally['failed']} trials failed (their errors are in "
                            f"{out / 'trials.csv'}); fix the cause or raise --set max_failed_trials")
        if tally["finished"] + tally["running"] >= job.trials and not tally["waiting"]:
            if not waiting_said:
                log(f"sweep: waiting for {tally['running']} running trial(s) of other workers")
                waiting_said = True
            time.sleep(job.sweep.heartbeat_seconds)
            continue
        waiting_said = False
        if run_trial(study, storage, job, tables, budgets, log):
            ran += 1
            write_reports(study, out, metric_name=task.primary_metric, batch_size=job.sweep.latency_batch_size,
                          baselines=baselines)
    summary = write_reports(study, out, metric_name=task.primary_metric, batch_size=job.sweep.latency_batch_size,
                            baselines=baselines)
    return {**summary, "pruned": counts(study)["finished"] - summary["complete"], "ran": ran}


def settings_record(job: SweepJob) -> dict:
    """What every worker of a study must agree on (paths excluded: machines differ)."""
    operational = {"budgets", "budget_fractions", "heartbeat_seconds", "grace_seconds", "max_failed_trials", "sampler",
                   "prune", "prune_from_epoch", "prune_min_trials", "prune_dominated_share"}
    data = job.data
    return {
        "task": data.task.name, "metric": data.task.primary_metric,
        "train_rows": len(data.train), "dev_rows": sum(len(split) for split in data.dev.values()),
        "search": job.search.to_dict(), "finetune": asdict(job.finetune),
        "space": {k: v for k, v in asdict(job.sweep).items() if k not in operational},
        "latency_seq_len": job.sweep.latency_seq_len,
    }


def make_sampler(config: SweepConfig, seed: int):
    """Multi-objective TPE (constant liar, so parallel workers do not draw the running trials'
    settings again) or random. Seeded from --seed and the process id: workers sharing a study must
    not draw the same settings, so a sweep is not repeatable draw for draw; each trial's settings
    are stored instead."""
    import optuna

    mixed = (seed * 1_000_003 + os.getpid()) % 2**32
    if config.sampler == "random":
        return optuna.samplers.RandomSampler(seed=mixed)
    return optuna.samplers.TPESampler(seed=mixed, constant_liar=True)


# ---------------------------------------------------------------- latency tables


def latency_tables(job: SweepJob, log) -> dict:
    """{hidden size: (path, LatencyTable)} for every swept hidden size, checked for this device
    and for an entry at the budget's batch size and length."""

    config = job.sweep
    tables = {}
    for path in job.latency_tables:
        table = load_latency_table(path)
        if table.hidden_size in tables:
            raise UserError(f"--latency-table {path}: a second table for hidden size {table.hidden_size}")
        tables[table.hidden_size] = (Path(path).resolve(), table)
    teacher_width = None  # loaded once, for the first table to measure: it means loading the teacher
    for hidden in config.hidden_sizes:
        if hidden in tables:
            continue
        if job.latency_tables:
            raise UserError(f"--latency-table: no table for hidden size {hidden} (the tables given have "
                            f"{', '.join(map(str, sorted(tables)))}); give one per swept hidden size")
        name = "latency_table.json" if len(config.hidden_sizes) == 1 else f"latency_table_h{hidden}.json"
        path = job.out.resolve() / name
        with file_lock(job.out / ".latency_table.lock"):
            if not path.is_file():
                teacher_width = _teacher_width(job) if teacher_width is None else teacher_width
                _measure_table(path, hidden, job, teacher_width, log)
        tables[hidden] = (path, load_latency_table(path))
    for hidden, (path, table) in tables.items():
        check_compatible(table, job.device, hidden, embeddings=job.search.embeddings)
        table.entry(config.latency_batch_size, config.latency_seq_len)  # UserError when not measured
    return tables


def _teacher_width(job: SweepJob) -> int:
    """The width of the teacher's word vectors when the searches' variant is as wide (TEACHER_WIDE), else 0."""
    if job.search.embeddings not in TEACHER_WIDE:
        return 0
    return teacher_embedding_tables(job.teacher_dir, job.data.task)[0].shape[1]


def _measure_table(path: Path, hidden: int, job: SweepJob, teacher_width: int, log) -> None:
    """Measures the sweep's latency table at `hidden` into `path`, framed with the searches' word
    vectors (part of every student's time; `teacher_width` sizes the teacher-wide ones)."""
    config, device, embeddings = job.sweep, job.device, job.search.embeddings
    log(f"sweep: measuring the latency table for hidden size {hidden} on {device} -> {path}")
    table_config = LatencyTableConfig(hidden_size=hidden, batch_sizes=(config.latency_batch_size,),
                                      seq_lens=(config.latency_seq_len,), embeddings=embeddings,
                                      teacher_width=teacher_width)
    save_latency_table(build_latency_table(table_config, device), path)


def _search_latency(job: SweepJob, tables, hidden: int, budget_ms: float):
    """The search's latency model (nas/train/latency_budget.py) for a trial of this hidden size and budget."""

    config = trial_search_config(job.search, {"hidden_size": hidden, "max_cells": max(job.sweep.max_cells_choices),
                                              "latency_budget_ms": budget_ms}, job.sweep, str(tables[hidden][0]))
    return SearchLatency(tables[hidden][1], config, job.data.task.is_pair, config.space.ops, job.device)


def reference_budgets(job: SweepJob, tables) -> tuple[float, ...]:
    """The default budgets: `budget_fractions` of the way from the cheapest student the search can
    derive to the slowest of the space (deepest, widest, the slowest op on every edge), at the
    widest hidden size, so that every default budget can be met at every swept width."""
    latency = _search_latency(job, tables, max(job.sweep.hidden_sizes), 0.0)
    return default_budgets(latency.cheapest()[0], latency.slowest_ms, job.sweep.budget_fractions)


def check_budgets(job: SweepJob, tables, budgets) -> None:
    """Refuse a budget that no architecture can meet at some swept hidden size, before any trial
    (the search would refuse it in every trial that drew it)."""
    for budget in budgets:
        for hidden in job.sweep.hidden_sizes:
            try:
                _search_latency(job, tables, hidden, budget).check_reachable()
            except UserError as error:
                raise UserError(f"--budgets {budget:g}: at hidden size {hidden}: {error}") from None


# ---------------------------------------------------------------- one trial


def run_trial(study, storage, job: SweepJob, tables, budgets, log) -> bool:
    """Ask for a trial and run it unless it is surplus; True when it ran (to any end but Ctrl-C)."""
    import optuna
    from optuna.trial import TrialState


    trial = study.ask()
    try:
        # Beat from the start: a RUNNING trial that never beat is never found stale.
        with heartbeat(storage, trial, job.sweep.heartbeat_seconds):
            if is_surplus(study, trial.number, job.trials):
                trial.set_user_attr(SURPLUS, True)
                study.tell(trial, state=TrialState.FAIL)
                return False
            trial.set_user_attr("worker", worker_name())
            values = objective(trial, study, job, tables, budgets, log)
    except optuna.TrialPruned as pruned:
        study.tell(trial, state=TrialState.PRUNED)
        log(f"trial {trial.number}: pruned ({pruned})")
        return True
    except (NonFiniteLoss, UserError) as error:
        # A setting drawn for this trial can make it fail (a NaN loss at a high β, say); the sweep
        # goes on, and stops when failures reach max_failed_trials.
        trial.set_user_attr("error", str(error))
        study.tell(trial, state=TrialState.FAIL)
        log(f"trial {trial.number}: failed: {error}")
        return True
    except KeyboardInterrupt:
        # Queue the same settings again; the next run resumes this trial's search checkpoint.
        trial.set_user_attr(INTERRUPTED, True)
        study.tell(trial, state=TrialState.FAIL)
        reported = {k: v for k, v in trial.user_attrs.items() if k.startswith("epoch_")}  # epochs the resume skips
        original = repeated_trial(study, trial.number)
        study.enqueue_trial(trial.params, user_attrs={**reported, RETRY_OF: trial.number if original is None else original})
        raise
    except BaseException as error:
        trial.set_user_attr("error", f"{type(error).__name__}: {error}")
        study.tell(trial, state=TrialState.FAIL)
        raise
    study.tell(trial, values)
    return True


def objective(trial, study, job: SweepJob, tables, budgets, log) -> tuple[float, float]:
    """Search, finetune, measure: (dev metric, measured latency in ms)."""

    task, config = job.data.task, job.sweep
    folder = job.out / "trials" / f"{trial.number:04d}"
    sampled = sample_settings(trial, config, budgets)
    table_path, table = tables[sampled["hidden_size"]]
    search_config = trial_search_config(job.search, sampled, config, str(table_path))
    earlier = repeated_trial(study, trial.number)
    atomic.write_json(folder / "trial.json", {"trial": trial.number, "study": job.study_name, "worker": worker_name(),
                                              "settings": sampled, "repeats": earlier})
    trial.set_user_attr("folder", str(folder.resolve()))
    search_dir = folder / "search"
    resume = _adopt_earlier_attempt(job.out, earlier, search_dir)
    shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sampled.items())
    log(f"trial {trial.number}: {'resuming trial ' + str(earlier) + ', ' if resume else ''}{shown}")

    def predicted(genotype) -> float:
        return predict_latency_ms(table, genotype, config.latency_batch_size, config.latency_seq_len, pair=task.is_pair)

    after_epoch = epoch_reporter(trial, study, config, task.primary_metric, predicted)
    try:
        run_search(job.data, job.teacher_dir, job.knowledge, search_config, search_dir, job.device,
                   resume=resume, on_epoch=after_epoch)
    except UserError as error:
        if not resume or "other settings" not in str(error):
            raise
        log(f"trial {trial.number}: cannot resume trial {earlier} ({error}); starting afresh")
        run_search(job.data, job.teacher_dir, job.knowledge, search_config, search_dir, job.device,
                   on_epoch=after_epoch)
    arch = search_dir / "arch.json"
    genotype = Genotype.load(arch)
    run_finetune(arch, job.data, job.teacher_dir, job.knowledge, job.finetune, folder / "student", job.device)
    result = StudentMetrics.load(folder / "student" / METRICS)
    metric = float(result.metrics[task.primary_metric])
    measured = time_student(folder / "student", task, config.latency_batch_size, config.latency_seq_len, job.device)
    predicted_ms = (genotype.costs or {}).get("predicted_latency_ms") or round(predicted(genotype), 4)
    trial.set_user_attr("result", {
        "metric": metric, "latency_ms": measured, "predicted_ms": predicted_ms,
        "params": result.student.params, "flops": result.student.flops,
        "genotype": genotype.to_string(), "genotype_text": str(genotype), "metrics": result.metrics,
    })
    log(f"trial {trial.number}: dev {task.primary_metric} {metric:.4f}, {measured:.3f} ms measured, "
        f"{predicted_ms:.3f} ms predicted (budget {sampled['latency_budget_ms']:g} ms): {genotype}")
    return metric, measured


def time_student(folder: Path, task, batch_size: int, seq_len: int, device, repeats: int = 30) -> float:
    """The student's median ms per forward pass at the budget's batch size and length, every token
    real, timed alone. `nas finetune` times it beside the teacher on the first dev rows (their own
    length, caches shared with the teacher), which is noisier and not the budget's setting."""

    student = load_classifier(str(folder), task, new_head=False).eval().to(device)
    inputs = dummy_inputs(batch_size, seq_len, task.is_pair, student.get_input_embeddings().num_embeddings)
    timed = compare_latency({"student": lambda batch: student(**batch).logits}, {batch_size: inputs}, device,
                            warmup=5, repeats=repeats)
    return float(timed["student"][f"batch_{batch_size}_ms"])


def epoch_reporter(trial, study, config: SweepConfig, metric: str, predicted):
    """The search's per-epoch callback: store the epoch's point (search dev metric, predicted
    latency of the derived genotype) and op probabilities on the trial, then prune it if hopeless
    (see the module docstring) by raising optuna.TrialPruned, which stops the search."""

    def after_epoch(record):
        epoch, genotype = record["epoch"], Genotype.from_string(record["genotype"])
        point = (record["metrics"][metric], predicted(genotype))
        trial.set_user_attr(f"epoch_{epoch:03d}", {
            "dev": point[0], "predicted_ms": round(point[1], 4), "genotype": record["genotype"], "ops": list(genotype.ops),
            "op_probabilities": record["op_probabilities"], "depth_probabilities": record["depth_probabilities"],
        })
        if config.prune and epoch >= config.prune_from_epoch:
            share, count = hopeless_share(study, epoch, point, config.prune_min_trials)
            if share >= config.prune_dominated_share:
                trial.set_user_attr("pruned_at_epoch", epoch)
                raise _pruned(epoch, point, share, count)

    return after_epoch


def hopeless_share(study, epoch: int, point, min_trials: int) -> tuple[float, int]:
    """(share of complete trials' points at `epoch` that dominate `point`, how many there were);
    the share is 0 when fewer than `min_trials` complete trials reached that epoch."""
    from optuna.trial import TrialState

    key = f"epoch_{epoch:03d}"
    others = [(t.user_attrs[key]["dev"], t.user_attrs[key]["predicted_ms"])
              for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if key in t.user_attrs]
    if len(others) < max(1, min_trials):
        return 0.0, len(others)
    return dominated_share(point, others), len(others)


def _pruned(epoch, point, share, count):
    import optuna

    return optuna.TrialPruned(f"epoch {epoch}: dev {point[0]:.4f} at {point[1]:.3f} ms predicted is dominated by "
                              f"{share:.0%} of {count} complete trials at that epoch")


def _adopt_earlier_attempt(out: Path, earlier: int | None, search_dir: Path) -> bool:
    """Copy the search folder of the trial this one repeats, when it has a checkpoint to resume;
    copied, not shared, in case that worker is alive after all and still writing."""

    if earlier is None:
        return False
    source = out / "trials" / f"{earlier:04d}" / "search"
    if not (source / CHECKPOINT).is_file():
        return False
    shutil.rmtree(search_dir, ignore_errors=True)
    shutil.copytree(source, search_dir)
    return True


# ---------------------------------------------------------------- settings from the command line


def sweep_settings(config_file, sets, *, epochs=None, seed=None, budgets=None):
    """(SweepConfig, SearchConfig, FinetuneConfig) from a settings file and --set.

    `--set search.KEY=V` and `--set finetune.KEY=V` (or `search:` / `finetune:` sections of the
    file) fix those stages' settings for every trial; other keys are sweep settings. --epochs is
    the search's, the finetune runs `finetune_epochs`.
    """

    routed = split_sets(sets)
    unknown = set(routed) - {"run", "search", "finetune"}
    if unknown:
        raise UserError(f"--set: unknown stage {sorted(unknown)[0]!r} (use search.KEY, finetune.KEY, or a sweep setting)")
    sections = read_config_file(config_file) if config_file else {}
    fixed_search = {**(sections.get("search") or {}), **dict(pair.partition("=")[::2] for pair in routed.get("search", []))}
    check_fixed_search_settings(fixed_search)

    def stage_file(section):  # the file's section for a stage, only if it has one
        return config_file if isinstance(sections.get(section), dict) else None

    seeded = {"seed": seed} if seed is not None else {}
    sweep = build(SweepConfig, "sweep", config_file, {"budgets": budgets}, routed.get("run"))
    search = build(SearchConfig, "search", stage_file("search"), {"epochs": epochs, **seeded}, routed.get("search"))
    finetune = build(FinetuneConfig, "finetune", stage_file("finetune"), {"epochs": sweep.finetune_epochs, **seeded},
                     routed.get("finetune"))
    return sweep, search, finetune
