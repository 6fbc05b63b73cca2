"""`nas finetune --arch arch.json`: compile the searched student and train it with KD."""

from __future__ import annotations

from pathlib import Path

import torch

from nas import atomic
from nas.errors import UserError
from nas.search import BEST_WEIGHTS
from nas.student_training import FinetuneConfig, config_dict, measure_against_teacher, student_record, train_with_kd


def initial_weights(config: FinetuneConfig, arch_path: Path) -> Path | None:
    """The search's weights to start from, or None to start from scratch (teacher-initialised embeddings)."""
    weights = arch_path.parent / BEST_WEIGHTS
    if config.init == "scratch":
        return None
    if config.init == "search" and not weights.is_file():
        raise UserError(f"init=search: no {BEST_WEIGHTS} beside {arch_path} (give a search run's arch.json, or --set init=scratch)")
    if config.init not in ("auto", "search"):
        raise UserError(f"setting 'init': expected auto, search or scratch, got {config.init!r}")
    return weights if weights.is_file() else None


def run_finetune(arch_path, data, teacher_dir, knowledge, config: FinetuneConfig, out, device) -> dict:
    from nas.distill_data import prepare, teacher_embedding_tables
    from nas.models import load_classifier, load_tokenizer
    from nas.run_info import provenance, tensorboard_writer
    from searchspace.genotype import Genotype
    from searchspace.student import AdaBertStudentForSequenceClassification, compile_genotype

    task = data.task
    arch_path = Path(arch_path)
    genotype = Genotype.load(arch_path)
    torch.manual_seed(config.seed)
    tokenizer = load_tokenizer(str(teacher_dir))
    max_length = config.max_length or knowledge.max_length
    distill = prepare(data, knowledge, tokenizer, max_length, config.use_augmented)
    words, positions = teacher_embedding_tables(teacher_dir, task)
    student = compile_genotype(
        genotype, vocab_size=words.shape[0], max_positions=positions.shape[0] if positions is not None else 512,
        num_labels=task.num_labels, pair=task.is_pair, dropout=config.dropout,
        pad_token_id=tokenizer.pad_token_id or 0, id2label=dict(enumerate(task.labels)) if task.labels else None,
    )
    weights = initial_weights(config, arch_path)
    if weights is not None:
        try:
            student.inherit_from_supernet(torch.load(weights, map_location="cpu", weights_only=True))
        except (KeyError, RuntimeError) as error:
            raise UserError(f"{weights}: does not fit {arch_path} ({str(error).splitlines()[0]}); use --set init=scratch") from None
    else:
        student.embeddings.init_from_teacher(words, positions if positions is not None else student.embeddings.positions.weight)

    out = Path(out)
    with atomic.staged_folder(out) as staging:
        writer = tensorboard_writer(staging / "tensorboard")

        def save_best(state, metrics):
            student.save_pretrained(staging)
            tokenizer.save_pretrained(staging)

        state, seconds = train_with_kd(student, task, distill, config, device, writer, save_best)
        writer.close()
        best = AdaBertStudentForSequenceClassification.from_pretrained(staging).to(device)
        teacher = load_classifier(str(teacher_dir), task, new_head=False, sdpa=True)
        measured = measure_against_teacher(best, teacher, distill.dev["dev"], device, task.is_pair, config.latency_repeats,
                                           sizes=config.latency_batch_sizes)
        genotype.save(staging / "arch.json")
        result = {
            **student_record(task, state, knowledge, train_seconds=seconds, train_rows=len(distill.train),
                             init="search" if weights is not None else "scratch", genotype=genotype, measured=measured),
            "config": config_dict(config),
            "provenance": provenance(task=task.name, arch=str(arch_path.resolve()), teacher=str(Path(teacher_dir).resolve())),
        }
        atomic.write_json(staging / "metrics.json", result)
    return result
