"""The `nas` command line: one subcommand per stage of the pipeline.

Each subcommand is a small function that resolves its settings and calls library code;
`main` turns user errors into one line and exit code 2 (a traceback only with --debug).

The stages are imported inside the subcommand functions on purpose, the one place in the package
that does so: torch, transformers and optuna take seconds to load, and `nas --help`, `nas
validate` or a typo should not wait for the modules of stages they do not run.
"""

from __future__ import annotations

import argparse
import os
import sys

from nas.base import __version__, run_info
from nas.base.commands import COMMAND_NAMES, SECTION
from nas.base.errors import UserError
from nas.base.safe_files import one_line

COMMANDS = {}  # name -> (help, add_arguments, run, settings class as (module, name) or None)


def command(name: str, help: str, add_arguments, settings: tuple[str, str] | None = None):
    """Register a subcommand under a name from `nas.base.commands`; `settings` says where its settings
    dataclass lives, so that `nas NAME --help` lists its keys without importing it otherwise."""
    if name not in COMMAND_NAMES:
        raise ValueError(f"command {name!r} is not in nas.base.commands.COMMANDS")

    def register(run):
        COMMANDS[name] = (help, add_arguments, run, settings)
        return run

    return register


# ---------------------------------------------------------------- shared options


def add_common(parser, *, data=True, training=True):
    parser.add_argument("--out", help="output folder (or file where the command says so)")
    parser.add_argument("--seed", type=int, help="random seed")
    parser.add_argument("--config", help="YAML or JSON settings file")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one setting (repeatable)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: CUDA when present)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    if data:
        parser.add_argument("--task", help="sst2, cola, mrpc, qqp, stsb, mnli, qnli, rte, wnli or custom")
        parser.add_argument("--data-dir", help="GLUE data folder (default: $GLUE_DIR, else ../shared/data/glue)")
        parser.add_argument("--train", help="custom task: training file (.tsv or .csv, with a header)")
        parser.add_argument("--dev", help="custom task: dev file")
        parser.add_argument("--text-columns", help="custom task: one or two text column names, comma separated")
        parser.add_argument("--label-column", help="custom task: label column name")
        parser.add_argument("--labels", help="custom task: label values in order (default: sorted from train), or 'regression'")
    if training:
        parser.add_argument("--epochs", type=int, help="training epochs")
        parser.add_argument("--max-train", type=int, help="use only the first N training rows")
        parser.add_argument("--max-dev", type=int, help="use only the first N dev rows")


def resolve_task(args):
    from nas.data.tasks import get_task

    require(args, "task")
    return get_task(
        args.task, train=args.train, dev=args.dev, text_columns=args.text_columns,
        label_column=args.label_column, labels=args.labels,
    )


def load_data(args, task, with_train=True):
    from nas.data.glue_io import load_task_data
    from nas.data.tasks import resolve_data_dir

    data_dir = None if task.name == "custom" else resolve_data_dir(args.data_dir)
    return load_task_data(task, data_dir, args.max_train, args.max_dev, with_train=with_train)


def require(args, *names) -> None:
    """Options that this command cannot run without (argparse's required=True would print usage too)."""
    for name in names:
        if not getattr(args, name):
            raise UserError(f"--{name.replace('_', '-')} is required")


def require_out(args):
    from pathlib import Path

    require(args, "out")
    return Path(args.out)


def flags(args, *names):
    return {name: getattr(args, name, None) for name in names}


def epoch_checkpoint(out, resume: bool):
    """Where a training command keeps its epoch checkpoints: beside its output folder, which is
    only written when the run finishes. An epoch on a large transfer set is long on a CPU, so every
    run leaves them and `--resume` continues a stopped one; without it a run starts afresh."""
    checkpoint = out.with_name(out.name + ".checkpoint.pt")
    if not resume:
        checkpoint.unlink(missing_ok=True)
    return checkpoint


# ---------------------------------------------------------------- nas teacher


def _teacher_args(parser):
    add_common(parser)
    parser.add_argument("--model", help="backbone: 'minilm' (default, offline), a local HF folder or a hub id")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the epoch checkpoint a stopped run left beside --out (OUT.checkpoint.pt)")


@command("teacher", "fine-tune a Hugging Face backbone on a task (the teacher)", _teacher_args,
         settings=("nas.train.teacher", "TeacherConfig"))
def run_teacher(args):
    from nas.base import atomic
    from nas.run.config import build
    from nas.data.models import pick_device, quiet_transformers
    from nas.train.teacher import TeacherConfig, train_teacher

    quiet_transformers()
    config = build(TeacherConfig, "teacher", args.config, flags(args, "model", "epochs", "seed"), args.set)
    task = resolve_task(args)
    out = require_out(args)
    data = load_data(args, task)
    checkpoint = epoch_checkpoint(out, args.resume)
    with atomic.staged_folder(out) as staging:
        result = train_teacher(data, config, staging, pick_device(args.device), checkpoint=checkpoint)
    checkpoint.unlink(missing_ok=True)
    shown = ", ".join(f"{k}={v:.4f}" for k, v in result.metrics.items())
    print(f"teacher {task.name}: {shown} (epoch {result.best_epoch}, {result.train_seconds:.0f}s) -> {out}")


# ---------------------------------------------------------------- nas knowledge


def _knowledge_args(parser):
    add_common(parser)
    parser.add_argument("--teacher", help="fine-tuned teacher folder (from `nas teacher`)")
    parser.add_argument("--augment", type=int, help="teacher-labelled augmented variants per training row (default 0)")
    parser.add_argument("--augment-preset", help="an augmentation preset: tang2019, adabert or tinybert "
                                                 "(kd/augment_presets.yaml); explicit settings override it")
    parser.add_argument("--mlm", metavar="MODEL_DIR",
                        help="a masked language model proposing substitute words (augment_source=mlm)")
    parser.add_argument("--force", action="store_true", help="rebuild even when the cached knowledge matches")


@command("knowledge", "cache the teacher's logits and per-layer probe logits for distillation", _knowledge_args,
         settings=("kd.knowledge", "KnowledgeConfig"))
def run_knowledge(args):
    from kd.knowledge import KnowledgeConfig, build_knowledge, read_manifest
    from nas.run.config import build
    from nas.data.models import pick_device, quiet_transformers

    quiet_transformers()
    require(args, "teacher")
    config = build(KnowledgeConfig, "knowledge", args.config, flags(args, "augment", "augment_preset", "mlm", "seed"),
                   args.set)
    task = resolve_task(args)
    out = require_out(args)
    data = load_data(args, task)
    if args.force and read_manifest(out):
        (out / "manifest.json").unlink()
    manifest = build_knowledge(args.teacher, data, config, out, pick_device(args.device))
    dev = manifest.probes_dev
    probes = ", ".join(f"{a:.3f}" for a in (dev.accuracy if dev.accuracy is not None else dev.loss))
    state = "reused" if manifest.reused else f"built in {manifest.seconds:.0f}s"
    print(f"knowledge {task.name}: {manifest.splits} rows, {state}; probe dev by layer: {probes} -> {out}")


# ---------------------------------------------------------------- nas search


def _search_args(parser):
    add_common(parser)
    parser.add_argument("--teacher", help="fine-tuned teacher folder (its tokenizer and embeddings are used)")
    parser.add_argument("--knowledge", help="knowledge folder from `nas knowledge`")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    parser.add_argument("--latency-budget", dest="latency_budget_ms", type=float, metavar="MS",
                        help="latency budget in ms at latency_batch_size and latency_seq_len (default 1 and 64); "
                             "the derived student is predicted to fit it")
    parser.add_argument("--speedup", dest="latency_speedup", type=float, metavar="X",
                        help="latency budget as X times faster than the teacher, which the search times itself "
                             "(instead of --latency-budget)")
    parser.add_argument("--latency-table", dest="latency_table", metavar="FILE",
                        help="latency table from `nas latency-table` (default: measured into --out when needed)")


@command("search", "differentiable architecture search with knowledge distillation; writes arch.json", _search_args,
         settings=("nas.train.search", "SearchConfig"))
def run_search_command(args):
    from kd.knowledge import Knowledge
    from nas.compute import distributed
    from nas.run.config import build
    from nas.data.models import pick_device, quiet_transformers
    from nas.train.latency_check import kept_timing
    from nas.train.search import SearchConfig, run_search

    quiet_transformers()
    require(args, "teacher", "knowledge")
    config = build(SearchConfig, "search", args.config, flags(args, "epochs", "seed", "latency_budget_ms", "latency_speedup", "latency_table"), args.set)
    task = resolve_task(args)
    out = require_out(args)
    data = load_data(args, task)
    # Under `torchrun --nproc_per_node N -m nas search` the N processes run one search together.
    with distributed.joined(args.device) as processes:
        device = processes.device if processes else pick_device(args.device)
        genotype, _ = run_search(data, args.teacher, Knowledge(args.knowledge), config, out, device, args.resume,
                                 processes=processes)
    if not distributed.is_main(processes):
        return
    metric, costs = genotype.extra["dev_metric"], genotype.costs
    latency = (f" | predicted {costs['predicted_latency_ms']:.3f} ms at batch {costs['latency_batch_size']}, "
               f"length {costs['latency_seq_len']}" if "predicted_latency_ms" in costs else "")
    timed = kept_timing(genotype.extra.get("latency_check", {}), genotype)
    if timed:  # the measured check's own timing of the kept student (nas/train/latency_check.py)
        latency += f", timed {timed['student_ms']:.3f} ms" + (
            f" ({timed['speedup']:.2f}x the teacher beside it)" if "speedup" in timed else "")
    print(f"search {task.name}: {genotype} | dev {metric} | params {costs['params']:,}{latency} -> {out / 'arch.json'}")


# ---------------------------------------------------------------- nas finetune


def _finetune_args(parser):
    add_common(parser)
    parser.add_argument("--arch", help="arch.json (from `nas search`, or written by hand)")
    parser.add_argument("--teacher", help="fine-tuned teacher folder (tokenizer, embeddings, latency baseline)")
    parser.add_argument("--knowledge", help="knowledge folder from `nas knowledge`")


def _finetune_command_args(parser):
    _finetune_args(parser)
    parser.add_argument("--resume", action="store_true",
                        help="continue from the epoch checkpoint a stopped run left beside --out (OUT.checkpoint.pt)")


@command("finetune", "compile arch.json into a student, train it with KD, measure it beside the teacher", _finetune_command_args,
         settings=("nas.train.student_training", "FinetuneConfig"))
def run_finetune_command(args):
    from kd.knowledge import Knowledge
    from nas.run.config import build
    from nas.data.model_metrics import METRICS, StudentMetrics
    from nas.train.finetune import run_finetune
    from nas.data.models import pick_device, quiet_transformers
    from nas.train.student_training import FinetuneConfig
    from searchspace.genotype import Genotype

    quiet_transformers()
    require(args, "arch", "teacher", "knowledge")
    Genotype.load(args.arch)  # a bad arch.json fails before any data is read
    config = build(FinetuneConfig, "finetune", args.config, flags(args, "epochs", "seed"), args.set)
    task = resolve_task(args)
    out = require_out(args)
    data = load_data(args, task)
    checkpoint = epoch_checkpoint(out, args.resume)
    run_finetune(args.arch, data, args.teacher, Knowledge(args.knowledge), config, out, pick_device(args.device),
                 checkpoint=checkpoint)
    checkpoint.unlink(missing_ok=True)
    result = StudentMetrics.load(out / METRICS)
    shown = ", ".join(f"{k}={v:.4f}" for k, v in result.metrics.items())
    print(f"finetune {task.name}: {shown}; {result.student.params:,} params; "
          f"{result.speedup_at(1)}x / {result.speedup_at(32)}x faster than the teacher at batch 1 / 32 -> {out}")


# ---------------------------------------------------------------- nas sanity


def _sanity_args(parser):
    _finetune_args(parser)
    parser.add_argument("--random", type=int, default=5, help="random architectures to compare with (default 5)")
    parser.add_argument("--tolerance", type=float, default=0.10,
                        help="their predicted latency within this share of the searched one's (default 0.10)")
    parser.add_argument("--latency-table", dest="latency_tables", action="append", default=[], metavar="FILE",
                        help="the search's latency table, one per width (default: those beside arch.json)")
    parser.add_argument("--max-tries", type=int, default=20000, help="random draws before giving up (default 20000)")


@command("sanity", "finetune the searched architecture and random ones of equal predicted latency the same way "
         "(from scratch, or --set init=search: all from the search's supernet); writes sanity.md: does the search "
         "beat chance?", _sanity_args,
         settings=("nas.train.student_training", "FinetuneConfig"))
def run_sanity_command(args):
    from kd.knowledge import Knowledge
    from nas.data.models import pick_device, quiet_transformers
    from nas.run.config import build
    from nas.train.sanity import run_sanity
    from nas.train.student_training import FinetuneConfig
    from searchspace.genotype import Genotype

    quiet_transformers()
    require(args, "arch", "teacher", "knowledge")
    Genotype.load(args.arch)  # a bad arch.json fails before any data is read
    if args.random < 2 or not 0 < args.tolerance < 1 or args.max_tries < 1:
        raise UserError("--random must be 2 or more (a standard deviation needs two), --tolerance in (0, 1), --max-tries >= 1")
    config = build(FinetuneConfig, "finetune", args.config, flags(args, "epochs", "seed"), args.set)
    task = resolve_task(args)
    out = require_out(args)
    data = load_data(args, task)
    summary = run_sanity(args.arch, data, args.teacher, Knowledge(args.knowledge), config, out, pick_device(args.device),
                         count=args.random, tolerance=args.tolerance, seed=args.seed or 0, tables=args.latency_tables,
                         max_tries=args.max_tries)
    verdict = "beats" if summary["beats_random"] else "does not beat"
    print(f"sanity {task.name}: searched {summary['searched']:.4f} vs random {summary['random_mean']:.4f} ± "
          f"{summary['random_std']:.4f} ({summary['gain_points']:+.2f} points): the search {verdict} chance -> "
          f"{out / 'sanity.md'}")


# ---------------------------------------------------------------- nas distill


def _distill_args(parser):
    add_common(parser)
    parser.add_argument("--method", help="KD baseline: vanilla, probes, bilstm, pkd-skip, pkd-last, distilbert, "
                                         "tinybert, minilm or theseus (default vanilla)")
    parser.add_argument("--student", help="student spec: transformer:layers=4,hidden=256,heads=4,ffn=1024[,init=teacher|random], "
                                          "bilstm:hidden=300[,layers=1] or arch:PATH/arch.json (default: the method's)")
    parser.add_argument("--teacher", help="fine-tuned teacher folder (tokenizer, weights, latency baseline)")
    parser.add_argument("--knowledge", help="knowledge folder from `nas knowledge`")


@command("distill", "train a student with a KD baseline method, measure it beside the teacher", _distill_args,
         settings=("nas.train.distill", "DistillConfig"))
def run_distill_command(args):
    from nas.train.distill import DistillConfig, run_distill
    from kd.knowledge import Knowledge
    from nas.run.config import build
    from nas.data.models import pick_device, quiet_transformers

    quiet_transformers()
    require(args, "teacher", "knowledge")
    config = build(DistillConfig, "distill", args.config, flags(args, "method", "student", "epochs", "seed"), args.set)
    task = resolve_task(args)
    out = require_out(args)
    data = load_data(args, task)
    result = run_distill(data, args.teacher, Knowledge(args.knowledge), config, out, pick_device(args.device))
    shown = ", ".join(f"{k}={v:.4f}" for k, v in result.metrics.items())
    augmented = result.extra.get("augmented_rows")
    rows = f"{result.train_rows} rows" + (f" ({augmented} augmented)" if augmented else "")
    print(f"distill {result.extra['method']} {task.name}: {shown}; {rows}; student {result.extra['student_spec']}, "
          f"{result.student.params:,} params; {result.speedup_at(1)}x / {result.speedup_at(32)}x "
          f"faster than the teacher at batch 1 / 32 -> {out}")


# ---------------------------------------------------------------- nas validate / nas plot


def _validate_args(parser):
    parser.add_argument("file", help="arch.json to check")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


@command("validate", "check an arch.json and print a one-line summary", _validate_args)
def run_validate(args):
    from searchspace.genotype import Genotype

    genotype = Genotype.load(args.file)
    print(f"{args.file}: valid: {genotype}")


def _plot_args(parser):
    parser.add_argument("file", help="arch.json to draw")
    parser.add_argument("--out", help="output .svg, .png, .pdf or .dot (default: beside the file, .svg or .dot)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


@command("plot", "draw the cell and the stack of K cells (graphviz)", _plot_args)
def run_plot(args):
    import shutil
    from pathlib import Path

    from searchspace.drawing import cell_graph, check_graph, render
    from searchspace.genotype import Genotype

    genotype = Genotype.load(args.file)
    check_graph(cell_graph(genotype), source=args.file)
    out = Path(args.out) if args.out else Path(args.file).with_suffix(".svg" if shutil.which("dot") else ".dot")
    written = render(genotype, out)
    print(f"{args.file}: drew {genotype} -> {written}")


# ---------------------------------------------------------------- nas latency-table


def _latency_table_args(parser):
    add_common(parser, data=False, training=False)


@command("latency-table", "time every op, the cell overhead, embeddings and head on a device; writes a JSON "
         "table for latency prediction and budgets (--out FILE)", _latency_table_args,
         settings=("nas.deploy.latency_measure", "LatencyTableConfig"))
def run_latency_table(args):
    import time

    from nas.run.config import build
    from nas.deploy.latency_measure import LatencyTableConfig, build_latency_table
    from nas.deploy.latency_table import save_latency_table
    from nas.data.models import pick_device

    config = build(LatencyTableConfig, SECTION["latency-table"], args.config, flags(args, "seed"), args.set)
    out = require_out(args)
    device = pick_device(args.device)
    started = time.perf_counter()
    table = build_latency_table(config, device)
    save_latency_table(table, out)
    shown = table.device
    print(f"latency-table {shown['type']} ({shown['name']}, {shown['threads']} threads): batch sizes "
          f"{', '.join(map(str, config.batch_sizes))} x lengths {', '.join(map(str, sorted(config.seq_lens)))} "
          f"in {time.perf_counter() - started:.0f}s -> {out}")


# ---------------------------------------------------------------- nas run


def _run_args(parser):
    add_common(parser)
    parser.add_argument("--preset", help="a packaged settings preset, e.g. demo (an SST-2 subset, minutes on a CPU)")
    parser.add_argument("--augment", type=int,
                        help="teacher-labelled variants per training row; search and finetune train on them too")
    parser.add_argument("--augment-preset", help="an augmentation preset for the knowledge stage: tang2019, adabert, tinybert")


@command("run", "the whole pipeline: teacher -> knowledge -> search -> finetune -> plot -> report", _run_args,
         settings=("nas.run.pipeline", "RunConfig"))
def run_run(args):
    from nas.data.models import pick_device, quiet_transformers
    from nas.run.pipeline import run_pipeline

    quiet_transformers()
    task = resolve_task(args)
    out = require_out(args)
    if args.epochs is not None:
        raise UserError("nas run: set epochs per stage, e.g. --set search.epochs=3")
    result = run_pipeline(task, args, pick_device(args.device))
    print((out / "report.md").read_text())
    print(f"run {task.name}: report {result['report']}, cell drawing {result['drawing']}")


# ---------------------------------------------------------------- nas sweep


def _sweep_args(parser):
    add_common(parser)
    parser.add_argument("--teacher", help="fine-tuned teacher folder (from `nas teacher`)")
    parser.add_argument("--knowledge", help="knowledge folder from `nas knowledge`")
    parser.add_argument("--trials", type=int, help="trials in total, over all workers sharing the study")
    parser.add_argument("--storage", help="Optuna storage URL (default: sqlite:///OUT/study.db); workers with the "
                                          "same --storage and --study share the trials")
    parser.add_argument("--study", help="study name (default: adabert-TASK)")
    parser.add_argument("--budgets", help="latency budgets in ms at latency_batch_size, comma separated "
                                          "(default: budget_fractions of the largest student's predicted latency)")
    parser.add_argument("--latency-table", action="append", default=[], metavar="FILE",
                        help="latency table from `nas latency-table`, one per swept hidden size (repeatable; "
                             "default: measured into OUT)")
    parser.add_argument("--baselines", help="JSON list of {name, latency_ms, metric}: KD baselines drawn in pareto.png")


@command("sweep", "Optuna multi-objective sweep of search settings: dev metric vs measured latency", _sweep_args,
         settings=("nas.sweep.sweep_space", "SweepConfig"))
def run_sweep_command(args):
    from pathlib import Path

    from kd.knowledge import Knowledge
    from nas.data.models import pick_device, quiet_transformers
    from nas.sweep.sweep import SweepJob, default_storage, run_sweep, sweep_settings
    from nas.sweep.sweep_storage import open_storage

    quiet_transformers()
    require(args, "teacher", "knowledge", "trials")
    if args.trials < 1:
        raise UserError(f"--trials: expected 1 or more, got {args.trials}")
    sweep, search, finetune = sweep_settings(args.config, args.set, epochs=args.epochs, seed=args.seed, budgets=args.budgets)
    task = resolve_task(args)
    out = require_out(args)
    out.mkdir(parents=True, exist_ok=True)
    storage_url = args.storage or default_storage(out)
    open_storage(storage_url, sweep.heartbeat_seconds, sweep.grace_seconds)  # a bad URL fails before any work
    job = SweepJob(
        data=load_data(args, task), teacher_dir=Path(args.teacher), knowledge=Knowledge(args.knowledge), out=out,
        trials=args.trials, storage_url=storage_url, study_name=args.study or f"adabert-{task.name}",
        device=pick_device(args.device), search=search, finetune=finetune, sweep=sweep,
        latency_tables=tuple(args.latency_table), baselines=args.baselines, seed=search.seed,
    )
    result = run_sweep(job)
    print(f"sweep {task.name}: {result['complete']} trials complete, {result['pruned']} pruned ({result['ran']} run by "
          f"this worker); Pareto-optimal: "
          f"{', '.join(map(str, result['front'])) or 'none'} -> {out / 'pareto.md'}")


# ---------------------------------------------------------------- nas predict / nas export

# Their own modules, which register with `command` when imported here (after `command` exists).
from nas.commands import export_cli, predict_cli  # noqa: E402,F401


# ---------------------------------------------------------------- entry point


def build_parser(describe_settings: bool = True) -> argparse.ArgumentParser:
    """The parser; `describe_settings` adds each command's settings to its --help (it imports the
    command modules, which takes seconds, so `main` asks for it only when help is wanted)."""
    parser = argparse.ArgumentParser(
        prog="nas",
        description="Compress a fine-tuned BERT-family teacher into a small task-adaptive student "
        "by differentiable architecture search with knowledge distillation (AdaBERT).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, add_arguments, _, _) in COMMANDS.items():
        epilog = settings_epilog(name) if describe_settings else None
        add_arguments(sub.add_parser(name, help=help_text, description=help_text, epilog=epilog,
                                     formatter_class=argparse.RawDescriptionHelpFormatter))
    return parser


def settings_epilog(name: str) -> str | None:
    import dataclasses
    import importlib
    import textwrap

    if COMMANDS[name][3] is None:
        return None
    module, cls = COMMANDS[name][3]
    from nas.run.config import settings_fields

    fields = settings_fields(getattr(importlib.import_module(module), cls))
    shown = ", ".join(f"{name}={default}" for name, _, default in fields if default is not dataclasses.MISSING)
    extra = {
        "run": " `nas run` also takes the other stages' settings as --set STAGE.KEY=VALUE.",
        "sweep": " --set search.KEY=VALUE and --set finetune.KEY=VALUE fix those stages' settings for every trial.",
    }.get(name, "")
    return "settings (--set KEY=VALUE, or keys in --config FILE), with defaults:\n" + textwrap.fill(
        shown + "." + extra, width=100, initial_indent="  ", subsequent_indent="  ")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    parser = build_parser(describe_settings=bool({"-h", "--help"} & set(argv)))
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    run = COMMANDS[args.command][2]
    previous, run_info.INVOCATION = run_info.INVOCATION, argv
    try:
        # torchrun sets WORLD_SIZE; N copies of another command would race on the same output.
        if args.command != "search" and os.environ.get("WORLD_SIZE", "1") != "1":
            raise UserError("only `nas search` runs on several processes; start the other commands without torchrun")
        run(args)
    except UserError as error:
        if getattr(args, "debug", False):
            raise
        # One line, of bounded length, whatever the user's input put into the message.
        print(one_line(f"nas {args.command}: error: {error}"), file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        if getattr(args, "debug", False):
            raise
        print(f"nas {args.command}: interrupted; nothing half-written was left behind", file=sys.stderr)
        return 130
    finally:
        run_info.INVOCATION = previous  # so library calls made later in this process do not claim this command
    return 0
