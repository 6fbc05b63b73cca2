"""`nas finetune --arch arch.json`: compile the searched student and train it with KD."""

from __future__ import annotations

import dataclasses
import pickle
from dataclasses import replace
from pathlib import Path

import torch

from nas.base import atomic
from nas.base.errors import UserError
from nas.base.run_info import provenance, tensorboard_writer
from nas.base.safe_files import DATA_CAP, one_line, open_regular
from nas.data.model_metrics import METRICS, StudentMetrics
from nas.data.models import load_classifier, load_tokenizer
from nas.deploy.export import onnx_beside
from nas.deploy.model_card import write_model_card
from nas.train.distill_data import prepare, teacher_embedding_tables
from nas.train.search import BEST_WEIGHTS
from nas.train.student_training import (FinetuneConfig, compile_for_teacher, config_dict, measure_against_teacher,
                                        student_record, train_with_kd)
from searchspace.cell_heads import CellHeads
from searchspace.genotype import Genotype, InvalidGenotype
from searchspace.remote_code import write_remote_code
from searchspace.student import AdaBertStudentForSequenceClassification


def initial_weights(config: FinetuneConfig, arch_path: Path, genotype: Genotype) -> Path | None:
    """The search's weights to start from, or None to start from scratch (teacher-initialised embeddings).

    Where they are is what arch.json records (`search_weights`, relative to its folder). The
    file-name lookup, `supernet_best.pt` beside arch.json, is the fallback for files written
    before the record existed.
    """
    recorded = genotype.search_weights
    weights = arch_path.parent / (recorded or BEST_WEIGHTS)
    if config.init == "scratch":
        return None
    if config.init == "search" and not weights.is_file():
        missing = f"{arch_path} records the search's weights at {weights}, not a file" if recorded else \
            f"no {BEST_WEIGHTS} beside {arch_path}"
        raise UserError(f"init=search: {missing} (give a search run's arch.json, or --set init=scratch)")
    if config.init not in ("auto", "search"):
        raise UserError(f"setting 'init': expected auto, search or scratch, got {config.init!r}")
    return weights if weights.is_file() else None


def chosen_embeddings(genotype: Genotype, name: str) -> Genotype:
    """`genotype` with the word-vector variant `--set embeddings=NAME` chose ('' keeps arch.json's),
    named explicitly, so that the student's arch.json records what it was built with. The search's
    size figures (`costs`) are for the variant it had; another variant drops them (metrics.json
    holds the student's measured ones)."""
    chosen = name or genotype.embedding_variant
    try:
        changed = replace(genotype, embeddings=chosen)
    except InvalidGenotype as error:
        raise UserError(f"setting 'embeddings': {error.reason}") from None
    if chosen == genotype.embedding_variant or genotype.costs is None:
        return changed
    sizes = ("params", "params_without_embeddings", "flops")
    return replace(changed, costs={key: value for key, value in genotype.costs.items() if key not in sizes})


def run_finetune(arch_path, data, teacher_dir, knowledge, config: FinetuneConfig, out, device, checkpoint=None,
                 record=None, weights_from: Path | None = None) -> dict:
    """Compile `arch_path`, train it with KD (`config.kd`), write the model folder and metrics.json to `out`.

    This is the one recipe for a searched student: `nas distill` with an `arch:` student and the
    probes or vanilla method comes here too (nas/train/distill.py). `record(state, seconds)`, if
    given, returns keys to add to metrics.json (what `nas distill` records about its method).
    `weights_from`, if given, is the search's weights file to inherit from in place of the one
    arch.json records (`nas sanity` starts every architecture from the searched one's supernet);
    either way arch.json's word-vector variant is taken for the one those weights trained, and a
    student of another (`--set embeddings=`) starts its word vectors from the teacher's."""

    task = data.task
    arch_path = Path(arch_path)
    recorded = Genotype.load(arch_path)  # its word-vector variant is the one its search trained
    genotype = chosen_embeddings(recorded, config.embeddings)
    torch.manual_seed(config.seed)
    tokenizer = load_tokenizer(str(teacher_dir))
    max_length = config.max_length or knowledge.max_length
    distill = prepare(data, knowledge, tokenizer, max_length, config.use_augmented, config.augmented_copies)
    words, positions = teacher_embedding_tables(teacher_dir, task)
    student = compile_for_teacher(genotype, task, words, positions, config.dropout, tokenizer.pad_token_id or 0,
                                  id2label=dict(enumerate(task.labels)) if task.labels else None)
    # Built here, after the student, so their fresh weights come from the same seeded stream
    # whichever command trains it; inherited below with the student's when the search's are used.
    heads = CellHeads.for_student(student) if config.kd == "probes" else None
    weights = initial_weights(config, arch_path, genotype) if weights_from is None else Path(weights_from)
    if weights is not None:
        open_regular(weights, "the search's weights (.pt)", DATA_CAP).close()
        try:
            saved = torch.load(weights, map_location="cpu", weights_only=True)  # no code runs from the file
        except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError, OSError) as error:
            raise UserError(f"{weights}: not a weights file ({one_line(str(error).strip() or type(error).__name__, 120)}); "
                            "use --set init=scratch") from None
        try:
            student.inherit_from_supernet(saved, recorded.embedding_variant)
            if heads is not None:
                heads.inherit_from_supernet(saved)
        except (KeyError, RuntimeError, TypeError, AttributeError) as error:
            raise UserError(f"{weights}: does not fit {arch_path} ({one_line(str(error), 120)}); use --set init=scratch") from None
    if weights is None or genotype.embedding_variant != recorded.embedding_variant:  # not the search's own variant
        student.embeddings.init_from_teacher(words, positions if positions is not None else student.embeddings.positions.weight)

    out = Path(out)
    with atomic.staged_folder(out) as staging:
        writer = tensorboard_writer(staging / "tensorboard")

        def save_best(state, metrics):
            student.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
            write_remote_code(staging)  # after save_pretrained, which rewrites config.json

        state, seconds = train_with_kd(student, task, distill, config, device, writer, save_best, checkpoint=checkpoint,
                                       heads=heads)
        writer.close()
        # The folder holds the student as served: its word vectors folded into one table per kind
        # (`for_inference`), the same logits as the trained form at the size and speed users ship.
        best = AdaBertStudentForSequenceClassification.from_pretrained(staging).for_inference()
        best.save_pretrained(staging)
        write_remote_code(staging)
        best = best.to(device)
        teacher = load_classifier(str(teacher_dir), task, new_head=False, sdpa=True)
        measured = measure_against_teacher(best, teacher, distill.dev["dev"], device, task.is_pair, config.latency_repeats,
                                           sizes=config.latency_batch_sizes)
        # The copy beside the student has no search weights beside it: it does not record any.
        dataclasses.replace(genotype, search_weights=None).save(staging / "arch.json")
        onnx = onnx_beside(best, distill.dev["dev"], staging, config.latency_repeats)  # None without the deploy extra
        result = {
            **student_record(task, state, knowledge, train_seconds=seconds, train_rows=len(distill.train),
                             augmented_rows=len(distill.train) - distill.original_rows,
                             init="search" if weights is not None else "scratch", genotype=genotype, measured=measured),
            "kd": config.kd,
            **({"onnx": onnx} if onnx is not None else {}),
            "config": config_dict(config),
            "provenance": provenance(task=task.name, arch=str(arch_path.resolve()), teacher=str(Path(teacher_dir).resolve())),
            **(record(state, seconds) if record is not None else {}),
        }
        # Through the record, so that what `nas run`, the sweep and the model card read back is checked as written.
        StudentMetrics.from_dict(result, staging / METRICS).save(staging / METRICS)
        write_model_card(staging)
    return result
