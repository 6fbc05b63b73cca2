"""`nas run`: teacher -> knowledge -> search -> finetune -> plot -> report, in one command.

Each stage writes its own folder under the run folder and is skipped when that folder already
holds a finished result, so an interrupted `nas run` picks up where it stopped; inside a stage
it continues from the last finished epoch (teacher, search, finetune, kept in `.resume/` and the
search folder) or shard of augmented rows (knowledge, kept in `knowledge.partial/`).
Each stage function is called with its settings resolved in memory (preset, `--config`, flags,
`--set STAGE.KEY=VALUE`; `config.resolve`), and records them in its own output folder.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from kd.knowledge import Knowledge, KnowledgeConfig, build_knowledge, read_manifest
from nas.base import atomic
from nas.base.commands import RUN_STAGES
from nas.base.errors import UserError
from nas.base.safe_files import show_value
from nas.data.glue_io import load_task_data
from nas.data.model_metrics import METRICS, StudentMetrics, TeacherMetrics
from nas.data.tasks import resolve_data_dir
from nas.run.config import read_config_file, resolve
from nas.train.finetune import run_finetune
from nas.train.search import SearchConfig, run_search
from nas.train.student_training import FinetuneConfig
from nas.train.teacher import TeacherConfig, train_teacher
from searchspace.drawing import render
from searchspace.genotype import Genotype


@dataclass(frozen=True)
class RunConfig:
    max_train: int | None = None
    max_dev: int | None = None
    model: str = "minilm"


def preset_file(name: str) -> Path:
    path = resources.files("nas.run") / "presets" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.name.removesuffix(".yaml") for p in (resources.files("nas.run") / "presets").iterdir())
        raise UserError(f"--preset {name}: unknown preset (known: {', '.join(known)})")
    return Path(str(path))


def split_sets(sets) -> dict[str, list[str]]:
    """`--set search.epochs=2` goes to the search stage; keys without a stage go to `run`."""
    routed: dict[str, list[str]] = {}
    for pair in sets or ():
        key, _, _ = pair.partition("=")
        section, dot, _ = key.partition(".")
        if dot:
            routed.setdefault(section, []).append(pair[len(section) + 1 :])
        else:
            routed.setdefault("run", []).append(pair)
    return routed


def stage_layers(files) -> dict[str, list[tuple[str, dict]]]:
    """{section: [(file, its settings for the section), ...]}: a preset first, then the user's file on
    top of it. The stages get them in memory (`config.resolve`), each value named by the file it came from."""
    layers: dict[str, list[tuple[str, dict]]] = {}
    for file in files:
        for section, data in read_config_file(file).items():
            if section not in ("run", *RUN_STAGES):
                continue  # a file for `nas run` may also hold the sections of other commands
            if not isinstance(data, dict):
                raise UserError(f"{file}: {section}: expected a mapping of settings, got {show_value(data)}")
            layers.setdefault(section, []).append((str(file), data))
    return layers


def run_pipeline(task, args, device, log=print) -> dict:

    files = [preset_file(args.preset)] if args.preset else []
    if args.config:
        files.append(Path(args.config))
    sets = split_sets(args.set)
    unknown = set(sets) - {"run", *RUN_STAGES}
    if unknown:
        raise UserError(f"--set: unknown stage {sorted(unknown)[0]!r} (use {', '.join(f'{s}.' for s in RUN_STAGES)})")
    layers = stage_layers(files)

    def settings(cls, section, flags=None):
        return resolve(cls, section, layers.get(section, []), flags, sets.get(section))

    run = settings(RunConfig, "run", {"max_train": args.max_train, "max_dev": args.max_dev})
    seed = {"seed": args.seed} if args.seed is not None else {}
    out = Path(args.out)
    data_dir = None if task.name == "custom" else resolve_data_dir(args.data_dir)
    data = load_task_data(task, data_dir, run.max_train, run.max_dev)
    timings = {}
    resume_dir = out / ".resume"  # epoch checkpoints of the teacher and finetune stages while they run

    teacher_dir = out / "teacher"
    teacher_config = settings(TeacherConfig, "teacher", {"model": run.model, **seed})
    started = time.perf_counter()
    if not (teacher_dir / METRICS).is_file():
        log(f"[1/5] teacher: fine-tuning {teacher_config.model} on {len(data.train)} rows")
        with atomic.staged_folder(teacher_dir) as staging:
            train_teacher(data, teacher_config, staging, device, checkpoint=resume_dir / "teacher.pt")
    (resume_dir / "teacher.pt").unlink(missing_ok=True)
    timings["teacher"] = time.perf_counter() - started

    knowledge_dir = out / "knowledge"
    started = time.perf_counter()
    knowledge_config = settings(KnowledgeConfig, "knowledge", {**seed, "augment": getattr(args, "augment", None),
                                                               "augment_preset": getattr(args, "augment_preset", None)})
    augment = knowledge_config.augment_settings(task.name).n
    log("[2/5] knowledge: caching teacher logits and layer probes" + (f" and {augment}x augmented rows" if augment else ""))
    # A stopped build left <knowledge>.partial behind; the same settings continue it shard by shard.
    build_knowledge(teacher_dir, data, knowledge_config, knowledge_dir, device)
    knowledge = Knowledge(knowledge_dir)
    timings["knowledge"] = time.perf_counter() - started

    search_dir = out / "search"
    started = time.perf_counter()
    search_config = settings(SearchConfig, "search", seed)
    if not (search_dir / "arch.json").is_file():
        resume = (search_dir / "checkpoint.pt").is_file()
        log(f"[3/5] search: {search_config.epochs} epochs{' (resuming)' if resume else ''}")
        run_search(data, teacher_dir, knowledge, search_config, search_dir, device, resume=resume)
    genotype = Genotype.load(search_dir / "arch.json")
    timings["search"] = time.perf_counter() - started

    student_dir = out / "student"
    started = time.perf_counter()
    if not (student_dir / METRICS).is_file():
        log(f"[4/5] finetune: {genotype}")
        run_finetune(search_dir / "arch.json", data, teacher_dir, knowledge, settings(FinetuneConfig, "finetune", seed),
                     student_dir, device, checkpoint=resume_dir / "finetune.pt")
    (resume_dir / "finetune.pt").unlink(missing_ok=True)
    timings["finetune"] = time.perf_counter() - started

    log("[5/5] plot and report")
    drawing = _draw(render, genotype, out / "cell")
    result = {"timings": timings, "drawing": str(drawing), **_report(out, task, genotype, read_manifest(knowledge_dir), timings)}
    return result


def _draw(render, genotype, stem: Path) -> Path:
    import shutil

    return render(genotype, stem.with_suffix(".svg" if shutil.which("dot") else ".dot"))


def _report(out: Path, task, genotype, manifest, timings) -> dict:
    student = StudentMetrics.load(out / "student" / METRICS)
    teacher_metrics = TeacherMetrics.load(out / "teacher" / METRICS).metrics
    metric = task.primary_metric
    s, t = student.student, student.teacher
    lines = [
        f"# nas run: {task.name}",
        "",
        f"Searched cell: `{genotype}`",
        "",
        "| model | dev " + metric + " | params | params w/o embeddings | FLOPs (64 tokens) | latency b=1 (ms) | latency b=32 (ms) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        f"| teacher | {teacher_metrics[metric]:.4f} | {t.params:,} | {t.params_without_embeddings:,} | {t.flops:,} "
        f"| {t.ms(1):.2f} | {t.ms(32):.2f} |",
        f"| student | {student.metrics[metric]:.4f} | {s.params:,} | {s.params_without_embeddings:,} | {s.flops:,} "
        f"| {s.ms(1):.2f} | {s.ms(32):.2f} |",
        "",
        f"Student speed-up over the teacher: {student.speedup_at(1)}x at batch 1, "
        f"{student.speedup_at(32)}x at batch 32 (measured side by side on {student.latency_device}, "
        f"{student.latency_threads} threads); {student.compression}x fewer parameters.",
        "",
        "Stage wall times: " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()) + ".",
        f"Teacher knowledge on disk: {manifest.bytes / 1e6:.2f} MB.",
        "",
    ]
    atomic.write_text(out / "report.md", "\n".join(lines))
    return {"report": str(out / "report.md"), "student": student, "teacher_metrics": teacher_metrics}
