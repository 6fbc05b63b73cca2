"""`nas distill`: train a student with one of the KD baselines and measure it beside the teacher.

Every method trains through `nas.train.loop.train_loop`, one loop per stage of the method (`--epochs`
applies to each stage). In each step the student runs through `kd.adaptor.adapt` for what the
method needs; teacher features that fit in memory (logits, probe logits) come from the knowledge
cache, the others (hidden states, attention maps, values) from running the teacher in the loop
in eval mode under `torch.no_grad()`. The student of the final stage's best epoch is written to
`--out` with the teacher's tokenizer (see `kd.students` for the folder of each kind) and a
`metrics.json` with the keys of `nas finetune`'s, plus "method", "method_options",
"student_spec" and "stages".

Like search and finetune, every method trains on the transfer set: the task's rows plus the
knowledge's augmented rows when it has them (`nas knowledge --augment N` or `--augment-preset`),
labelled by the teacher; `--set use_augmented=false` trains on the task's rows only.
metrics.json says which: "train_rows" (all rows), "augmented_rows" and "augmentation".

A searched student (`--student arch:...`) taught by `probes` or `vanilla` is trained by
`nas finetune`'s code (`run_finetune`, kd=probes or kd=logits), so the two commands cannot
become two recipes for the same student; its metrics.json also holds "finetune_config".
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from kd.adaptor import adapt
from kd.methods import Context, Method, method_class
from kd.students import (BiLSTMClassifier, StudentSpec, build_student, default_lr, default_weight_decay, load_student,
                         parse_student_spec, resolve_spec, save_student)
from nas.base import atomic
from nas.base.errors import UserError
from nas.base.run_info import provenance, tensorboard_writer
from nas.compute.acceleration import adamw, batch_buckets
from nas.data.batching import batch_order, collate, device_batch, model_inputs, to_device
from nas.data.evaluation import evaluate_splits
from nas.data.model_metrics import METRICS, StudentMetrics
from nas.data.models import load_classifier, load_tokenizer
from nas.train.distill_data import DistillData, Targets, prepare
from nas.train.finetune import run_finetune
from nas.train.loop import Hooks, LoopState, linear_warmup_decay, train_loop
from nas.train.student_training import FinetuneConfig, config_dict, measure_against_teacher, student_record

OPTIONS = ("temperature", "alpha", "beta", "layer_map", "replace_base", "replace_rate")
# Methods whose recipe for a searched (`arch:`) student is `nas finetune`'s, with this `kd` mode:
# one code path trains the searched student, whichever command is asked.
SEARCHED_STUDENT_KD = {"probes": "probes", "vanilla": "logits"}
SAMPLE_ROWS = 4  # rows of the one batch both models are first run on, to read their shapes


@dataclass(frozen=True)
class DistillConfig:
    method: str = "vanilla"
    student: str = ""  # a kd.students spec; "" is the method's default student
    epochs: int = 3  # per stage
    batch_size: int = 32
    eval_batch_size: int = 256
    lr: float | None = None  # None: by student kind (kd.students.default_lr)
    weight_decay: float | None = None  # None: by student kind (kd.students.default_weight_decay)
    warmup_ratio: float = 0.1
    # Method options, None for the method's own default (see kd/methods); a method rejects those it does not read.
    temperature: float | None = None
    alpha: float | None = None  # the distillation share against the task loss
    beta: float | None = None  # the weight of an intermediate-layer loss (PKD, DistilBERT)
    layer_map: str | None = None  # uniform, skip, last or student:teacher pairs such as 1:2,2:4
    replace_base: float | None = None  # Theseus: the replacing probability at step 0
    replace_rate: float | None = None  # Theseus: its rise per step (None: reach 1 at the stage's end)
    max_length: int = 0  # 0: the length the knowledge was computed at
    use_augmented: bool = True
    augmented_copies: int = 0  # of each row's augmented copies, how many to train on (0: all the knowledge has)
    latency_repeats: int = 20
    seed: int = 42
    # Speed (nas/compute/acceleration.py). No `compile` or `amp` yet: the methods read hidden states and
    # attentions of many model classes into float32 losses, which neither has been checked on.
    bucket: bool = False  # pad batches to bucket lengths (nas.data.batching.BUCKETS)
    fused_optimizer: bool = True  # fused AdamW where torch has it

    def __post_init__(self):
        method_class(self.method)  # an unknown name is a UserError
        parse_student_spec(self.student_text)
        for name in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise UserError(f"setting {name!r}: expected 1 or more, got {getattr(self, name)}")

    @property
    def student_text(self) -> str:
        return self.student or method_class(self.method).default_student

    def make_method(self) -> Method:
        return method_class(self.method)({name: getattr(self, name) for name in OPTIONS})


# ----- one run's models, data and method

@dataclass
class Session:
    task: object
    data: DistillData
    tokenizer: object
    teacher: torch.nn.Module  # eval mode, frozen
    student: torch.nn.Module
    spec: StudentSpec  # resolved: every key filled in
    method: Method
    models: dict  # stage -> the module the student's record comes from
    device: torch.device
    buckets: tuple[int, ...] = ()  # padded lengths of training batches (nas.data.batching.BUCKETS), or none

    def loss(self, rows: list[int], stage: str):
        """(total loss, {term: float}) of the training rows `rows` in `stage`."""
        batch = device_batch(self.data.train, rows, self.device, self.buckets)
        targets = Targets(*(t.to(self.device) for t in self.data.train_targets.rows(torch.as_tensor(rows))))
        inputs, need, name = model_inputs(batch), self.method.stage_needs(stage), self.method.name
        student_out = adapt(self.models[stage], inputs, need=need, method=name)
        teacher_out = None
        if need:
            self.teacher.eval()
            with torch.no_grad():
                teacher_out = adapt(self.teacher, inputs, need=need, method=name)
        terms = self.method.loss(batch, student_out, teacher_out, targets, stage)
        return sum(terms.values()), {key: value.item() for key, value in terms.items()}

    def logits(self, inputs: dict) -> torch.Tensor:
        return adapt(self.student, inputs).logits  # (B, C)

    @contextlib.contextmanager
    def stage(self, stage: str):
        """Yield the parameters `stage` trains; the student's others are frozen until the stage ends."""
        params = self.method.trainable(self.student, stage)
        keep = {id(p) for p in params}
        before = {p: p.requires_grad for p in self.student.parameters()}
        for p in before:
            p.requires_grad_(id(p) in keep)
        try:
            yield params
        finally:
            for p, flag in before.items():
                p.requires_grad_(flag)
            self.teacher.eval()  # a stage's training model may hold teacher layers in train mode


def make_session(task_data, teacher_dir, knowledge, config: DistillConfig, device) -> Session:
    """Load the teacher, join the data with the knowledge, build the student and set the method up.

    Everything a user can get wrong (the student spec, a layer map outside a model's depth, a
    student that cannot give what the method needs) fails here, before any output is written.
    """

    task = task_data.task
    torch.manual_seed(config.seed)
    method = config.make_method()
    tokenizer = load_tokenizer(str(teacher_dir))
    teacher = load_classifier(str(teacher_dir), task, new_head=False).to(device).eval().requires_grad_(False)
    data = prepare(task_data, knowledge, tokenizer, config.max_length or knowledge.max_length, config.use_augmented,
                   config.augmented_copies)
    spec = resolve_spec(parse_student_spec(config.student_text), teacher)
    student = build_student(spec, teacher, task, tokenizer, init_layers=method.init_layers).to(device)

    # One sample batch through both models: the method reads the shapes it needs from the records.
    needs = frozenset().union(*(method.stage_needs(stage) for stage in method.stages))
    inputs = model_inputs(to_device(collate(data.train, list(range(min(SAMPLE_ROWS, len(data.train))))), device))
    with torch.no_grad():
        student_out = adapt(student.eval(), inputs, need=needs, method=method.name)
        teacher_out = adapt(teacher, inputs, need=needs, method=method.name)
    context = Context(
        teacher_layers=knowledge.num_teacher_layers, num_labels=task.num_labels, regression=task.is_regression,
        probe_losses=tuple(data.probe_losses), pooling=knowledge.manifest.inputs.pooling,
    )
    method.setup(student_out, teacher_out, context).to(device)
    models = {stage: method.training_model(student, teacher, stage) for stage in method.stages}
    return Session(task, data, tokenizer, teacher, student, spec, method, models, device, batch_buckets("off", config.bucket))


# ----- training

def train_stage(session: Session, stage: str, config: DistillConfig, *, epoch_offset: int = 0, writer=None,
                on_best=None) -> tuple[LoopState, float]:
    """Train `stage` for `config.epochs` epochs through the one loop; returns its state and seconds."""
    data, method = session.data, session.method
    steps = -(-len(data.train) // config.batch_size) * config.epochs
    with session.stage(stage) as params:
        weight_decay = config.weight_decay if config.weight_decay is not None else default_weight_decay(session.spec)
        optimizer = adamw(params, lr=config.lr or default_lr(session.spec), weight_decay=weight_decay,
                          fused=config.fused_optimizer)
        hooks = Hooks(
            loss=lambda rows: session.loss(rows, stage),
            epoch_batches=lambda epoch: batch_order(data.train.lengths, config.batch_size, config.seed, epoch_offset + epoch),
            evaluate=lambda state: evaluate_splits(session.task, session.logits, data.dev, config.eval_batch_size,
                                                   session.device, session.student),
            after_step=lambda state, batch: method.after_step(state.step, steps, stage),
            on_best=on_best,
        )
        started = time.perf_counter()
        state = train_loop(model=session.models[stage], optimizer=optimizer, hooks=hooks, epochs=config.epochs,
                           scheduler=linear_warmup_decay(optimizer, steps, config.warmup_ratio),
                           primary_metric=session.task.primary_metric, writer=writer,
                           description=f"{method.name} {stage}")
    return state, time.perf_counter() - started


def finetune_config(config: DistillConfig, method: Method, spec: StudentSpec) -> FinetuneConfig:
    """The `nas finetune` settings that train a searched student as `config` asks (SEARCHED_STUDENT_KD)."""
    return FinetuneConfig(
        kd=SEARCHED_STUDENT_KD[method.name], gamma=method.options["alpha"], kd_temperature=method.options["temperature"],
        epochs=config.epochs, batch_size=config.batch_size, eval_batch_size=config.eval_batch_size,
        lr=config.lr or default_lr(spec),
        weight_decay=config.weight_decay if config.weight_decay is not None else default_weight_decay(spec),
        warmup_ratio=config.warmup_ratio, max_length=config.max_length, use_augmented=config.use_augmented,
        augmented_copies=config.augmented_copies, latency_repeats=config.latency_repeats, seed=config.seed,
        bucket=config.bucket, fused_optimizer=config.fused_optimizer,
    )


def _distill_searched(task_data, teacher_dir, knowledge, config: DistillConfig, method: Method, spec: StudentSpec,
                      out, device) -> StudentMetrics:
    """A searched student with probes or vanilla KD: `nas finetune`'s training, with distill's records added."""
    finetune = finetune_config(config, method, spec)

    def record(state, seconds) -> dict:
        return {
            "method": method.name,
            "method_options": method.options,
            "student_spec": str(spec),
            "stages": [{"name": "train", "epochs": config.epochs, "steps": state.step, "best_epoch": state.best_epoch + 1,
                        "train_seconds": round(seconds, 1), "history": state.history}],
            "config": asdict(config),
            "finetune_config": config_dict(finetune),
            "provenance": provenance(task=task_data.task.name, method=method.name, student=str(spec),
                                     teacher=str(Path(teacher_dir).resolve())),
        }

    run_finetune(spec.path, task_data, teacher_dir, knowledge, finetune, out, device, record=record)
    return StudentMetrics.load(Path(out) / METRICS)


def run_distill(task_data, teacher_dir, knowledge, config: DistillConfig, out, device) -> StudentMetrics:
    """Distil, keep the final stage's best epoch, measure it beside the teacher; returns metrics.json's record."""

    spec = parse_student_spec(config.student_text)
    if spec.kind == "arch" and config.method in SEARCHED_STUDENT_KD:
        return _distill_searched(task_data, teacher_dir, knowledge, config, config.make_method(), spec, out, device)
    session = make_session(task_data, teacher_dir, knowledge, config, device)
    task, method, spec = session.task, session.method, session.spec
    with atomic.staged_folder(Path(out)) as staging:

        def save_best(state, metrics):
            save_student(session.student, spec, staging)
            session.tokenizer.save_pretrained(staging)

        stages = []
        for index, stage in enumerate(method.stages):
            final = index == len(method.stages) - 1
            writer = tensorboard_writer(staging / "tensorboard" / stage)
            state, seconds = train_stage(session, stage, config, epoch_offset=index * config.epochs, writer=writer,
                                         on_best=save_best if final else None)
            writer.close()
            stages.append({"name": stage, "epochs": config.epochs, "steps": state.step, "best_epoch": state.best_epoch + 1,
                           "train_seconds": round(seconds, 1), "history": state.history})
        best = load_student(staging)
        if hasattr(best, "for_inference"):  # a searched architecture: saved as served, as `nas finetune` saves it
            best = best.for_inference()
            save_student(best, spec, staging)
        best = best.to(device)
        measured = measure_against_teacher(best, session.teacher, session.data.dev["dev"], device, task.is_pair,
                                           config.latency_repeats)
        if isinstance(best, BiLSTMClassifier):  # the FLOP counter does not see nn.LSTM's matmuls
            measured["student"]["flops"] += best.recurrent_flops(measured["flops_seq_len"])
        genotype = None
        if spec.kind == "arch":
            genotype = best.config.arch
            genotype.save(staging / "arch.json")
        result = StudentMetrics.from_dict({
            **student_record(task, state, knowledge, train_seconds=sum(s["train_seconds"] for s in stages),
                             train_rows=len(session.data.train),
                             augmented_rows=len(session.data.train) - session.data.original_rows, init=spec.get("init", "scratch"), genotype=genotype,
                             measured=measured),
            "method": method.name,
            "method_options": method.options,
            "student_spec": str(spec),
            "stages": stages,
            "config": asdict(config),
            "provenance": provenance(task=task.name, method=method.name, student=str(spec),
                                     teacher=str(Path(teacher_dir).resolve())),
        }, staging / METRICS)  # checked as a later reader would check it
        result.save(staging / METRICS)
    return result
