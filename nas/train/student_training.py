"""Training any student with KD from the cached teacher knowledge, and measuring it.

Shared by `nas finetune` (the searched student) and the KD baselines: the same loop, the same
evaluation, and the same metrics.json with the student's size, FLOPs and latency measured
beside the teacher's in the same process.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

from kd.losses import probes_kd, regression_distillation, soft_cross_entropy
from nas.base.errors import UserError
from nas.compute.acceleration import Captured, adamw, autocast, batch_buckets, check_speed_settings
from nas.data.batching import batch_order, device_batch, model_inputs
from nas.data.evaluation import evaluate_splits, task_loss
from nas.deploy.costs import count_flops, dummy_inputs, parameter_counts
from nas.deploy.latency import speedups
from nas.deploy.serving import measure_serving
from nas.train.loop import Hooks, linear_warmup_decay, train_loop
from nas.train.stage_checkpoint import EpochCheckpoint
from searchspace.cell_heads import CellHeads
from searchspace.genotype import EMBEDDING_VARIANTS
from searchspace.student import compile_genotype

KD_MODES = ("probes", "logits")


@dataclass(frozen=True)
class FinetuneConfig:
    epochs: int = 3
    batch_size: int = 32
    eval_batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_ratio: float = 0.1
    gamma: float = 0.8  # KD share of the loss, as in the search
    kd_temperature: float = 1.0
    # What the KD term matches. probes: AdaBERT's probe KD, as the search does it: a head per
    # cell (the last is the student's own classifier) against the teacher's layer probes,
    # weighted by probe quality. logits: the final logits against the teacher's (Hinton et al.).
    kd: str = "probes"
    init: str = "auto"  # auto: the search's weights when arch.json records them (older files: supernet_best.pt beside it), else scratch; search; scratch
    dropout: float = 0.1
    embeddings: str = ""  # the student's word-vector variant (searchspace/embedding_variants.py); "": arch.json's
    max_length: int = 0  # 0: the length the knowledge was computed at
    use_augmented: bool = True
    augmented_copies: int = 0  # of each row's augmented copies, how many to train on (0: all the knowledge has)
    latency_repeats: int = 20
    latency_batch_sizes: tuple[int, ...] = (1, 32, 256)  # metrics.json latency, eager and optimised (nas/deploy/serving.py)
    seed: int = 42
    # Speed (nas/compute/acceleration.py). The defaults are exact and deterministic on CPU; on CUDA
    # `--set compile=reduce-overhead --set amp=bf16` captures the step (buckets implied).
    compile: str = "off"  # off, default, reduce-overhead, max-autotune: torch.compile of the student's forward
    amp: str = "off"  # off or bf16: autocast of the forward
    bucket: bool = False  # pad batches to bucket lengths (always on when compiled)
    fused_optimizer: bool = True  # fused AdamW where torch has it (CPU and CUDA)

    def __post_init__(self):
        check_speed_settings(self.compile, self.amp)
        if self.embeddings and self.embeddings not in EMBEDDING_VARIANTS:  # as the settings are read
            raise UserError(f"setting 'embeddings': unknown variant {self.embeddings!r} (known: {', '.join(EMBEDDING_VARIANTS)})")
        if self.kd not in KD_MODES:
            raise UserError(f"setting 'kd': expected {' or '.join(KD_MODES)}, got {self.kd!r}")
        if not 0.0 <= self.gamma <= 1.0:
            raise UserError(f"setting 'gamma': expected a value in [0, 1], got {self.gamma}")


def compile_for_teacher(genotype, task, words: torch.Tensor, positions: torch.Tensor | None, dropout: float,
                        pad_id: int, id2label=None):
    """The student of `genotype` (fresh weights) sized to the teacher's embedding tables `words`
    (V, D) and `positions` (P, D), or 512 positions when the teacher has none."""
    return compile_genotype(genotype, vocab_size=words.shape[0],
                            max_positions=positions.shape[0] if positions is not None else 512,
                            num_labels=task.num_labels, pair=task.is_pair, dropout=dropout, pad_token_id=pad_id,
                            id2label=id2label, teacher_width=words.shape[1])


def kd_loss(student_logits, teacher_logits, labels, task, gamma: float, temperature: float):
    """(1 - γ) · task loss + γ · distillation against the teacher's logits (Hinton et al. 2015)."""
    hard = task_loss(student_logits, labels, task.is_regression)
    if task.is_regression:
        soft = regression_distillation(student_logits, teacher_logits)
    else:
        soft = soft_cross_entropy(student_logits, teacher_logits, temperature)
    # Detached tensors, not floats: `.item()` here would wait for the GPU twice a step; the loop
    # reads them only when it logs.
    return (1 - gamma) * hard + gamma * soft, {"ce": hard.detach(), "kd": soft.detach()}


def probes_kd_loss(student_logits, per_cell_logits, probe_logits, labels, probe_losses, task, gamma: float,
                   temperature: float):
    """(1 - γ) · task loss + γ · AdaBERT's probe KD (`kd.losses.probes_kd`), as the search computes it.

    student_logits: (B, C), the student's own classifier, which is the head of its last cell;
    per_cell_logits: K - 1 tensors (B, C), the heads of the cells below it (`CellHeads`);
    probe_logits: (B, L+1, C) the teacher's probes; probe_losses: their L+1 dev losses.
    """
    hard = task_loss(student_logits, labels, task.is_regression)
    soft = probes_kd([*per_cell_logits, student_logits], probe_logits, probe_losses, temperature, task.is_regression)
    return (1 - gamma) * hard + gamma * soft, {"ce": hard.detach(), "kd": soft.detach()}


def probes_forward(student, heads):
    """inputs -> (the student's logits (B, C), a tuple of K - 1 per-cell head logits (B, C)).

    One function, so a captured graph (`compile`) holds the heads too; plain tuples of tensors
    out, which capture and `Captured`'s output copies handle."""

    def forward(inputs):
        states = student.cell_outputs(**inputs)
        return student.classify(states), tuple(heads(states.per_cell, states.mask, states.pair))

    return forward


class _WithHeads(torch.nn.Module):
    """The student and its per-cell heads as one module, for what treats the trained weights as
    one (train mode, the epoch checkpoint); the student alone is evaluated and saved."""

    def __init__(self, student, heads):
        super().__init__()
        self.student, self.heads = student, heads


def train_with_kd(model, task, data, config: FinetuneConfig, device, writer=None, on_best=None, description="finetune",
                  checkpoint=None, heads=None):
    """Train `model` (a classifier taking tokenizer outputs) on `data` (DistillData) and keep its best epoch.

    With `config.kd == "probes"`, `model` is a compiled student and `heads` its `CellHeads`
    (trained with it; fresh ones when None). `checkpoint`: a file for epoch checkpoints
    (`nas run`), from which a stopped run continues."""
    torch.manual_seed(config.seed)
    model.to(device)
    probes = config.kd == "probes"
    if probes:
        heads = (heads if heads is not None else CellHeads.for_student(model)).to(device)
        probe_losses = tuple(data.probe_losses)
    trained = _WithHeads(model, heads) if probes else model
    optimizer = adamw(trained.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=config.fused_optimizer)
    steps = -(-len(data.train) // config.batch_size) * config.epochs
    scheduler = linear_warmup_decay(optimizer, steps, config.warmup_ratio)
    forward = lambda inputs: model(**inputs).logits  # noqa: E731
    resume = None
    if checkpoint is not None:
        resume = EpochCheckpoint(checkpoint, trained, optimizer, scheduler, {"config": asdict(config), "rows": len(data.train)})
    resumed_state = resume.restore() if resume else None

    def best(state, metrics):
        if resume:
            resume.note_best()
        if on_best:
            on_best(state, metrics)

    # Training runs the captured forward on bucketed batches; evaluation stays eager, since its
    # length-sorted batches come in many shapes and run once an epoch.
    captured = Captured(probes_forward(model, heads) if probes else forward, config.compile, "student forward")
    buckets = batch_buckets(config.compile, config.bucket)

    def loss(rows):
        batch = device_batch(data.train, rows, device, buckets)
        if probes:
            probe_logits = data.train_targets.probe_logits[torch.as_tensor(rows)].to(device, non_blocking=True)
            with autocast(device, config.amp):
                logits, per_cell = captured(model_inputs(batch))
            return probes_kd_loss(logits.float(), [x.float() for x in per_cell], probe_logits, batch["labels"],
                                  probe_losses, task, config.gamma, config.kd_temperature)
        teacher_logits = data.train_targets.logits[torch.as_tensor(rows)].to(device, non_blocking=True)
        with autocast(device, config.amp):
            logits = captured(model_inputs(batch))
        return kd_loss(logits.float(), teacher_logits, batch["labels"], task, config.gamma, config.kd_temperature)

    hooks = Hooks(
        loss=loss,
        epoch_batches=lambda epoch: batch_order(data.train.lengths, config.batch_size, config.seed, epoch),
        evaluate=lambda state: evaluate_splits(task, forward, data.dev, config.eval_batch_size, device, model),
        on_best=best,
        checkpoint=resume.save if resume else None,
    )
    started = time.perf_counter()
    state = train_loop(model=trained, optimizer=optimizer, scheduler=scheduler, hooks=hooks, epochs=config.epochs,
                       primary_metric=task.primary_metric, writer=writer, description=description, state=resumed_state)
    if resume and on_best and state.best_epoch >= 0:  # a resumed run's output folder is new: save the best again
        resume.load_best()
        on_best(state, state.history[state.best_epoch])
    return state, time.perf_counter() - started


def measure_against_teacher(student, teacher, dev_split, device, pair: bool, repeats: int, seq_len: int = 64,
                            sizes=(1, 32, 256)) -> dict:
    """Params, FLOPs and latency of student and teacher, measured in one process the same way:
    eager (the top-level `batch_<n>_ms`) and through the serving path (`optimised`, nas/deploy/serving.py)."""

    student.eval()
    teacher.eval().to(device)
    serving = measure_serving({"student": student, "teacher": teacher}, dev_split, device, tuple(sizes), repeats)
    latency, optimised = serving["eager"], serving["optimised"]
    counts = {}
    for name, model in (("student", student), ("teacher", teacher)):
        embedding = model.get_input_embeddings()
        cpu_model = model.to("cpu")
        counts[name] = {
            **parameter_counts(cpu_model),  # the same figures as arch.json's costs
            "flops": count_flops(cpu_model, dummy_inputs(1, seq_len, pair, embedding.num_embeddings)),
        }
        model.to(device)
    return {
        "flops_seq_len": seq_len,
        "latency_device": str(device),
        "latency_threads": torch.get_num_threads(),
        "student": {**counts["student"], **latency["student"]},
        "teacher": {**counts["teacher"], **latency["teacher"]},
        "speedup": speedups(latency, "teacher")["student"],
        "optimised": {
            "mode": serving["mode"], "capture_failed": serving["capture_failed"],
            "student": optimised["student"], "teacher": optimised["teacher"],
            "speedup": speedups(optimised, "teacher")["student"],
        },
        "compression": round(counts["teacher"]["params"] / counts["student"]["params"], 2),
    }


def student_record(task, state, knowledge, *, train_seconds, train_rows, init, genotype, measured,
                   augmented_rows: int = 0) -> dict:
    """The part of metrics.json that `nas finetune` and `nas distill` share, so their results compare.

    `train_rows` counts every row trained on; `augmented_rows` those of them from the knowledge's
    augmented transfer set (`augmentation` then records how it was made)."""
    augmentation = knowledge.manifest.inputs.augmentation if augmented_rows else None
    return {
        "task": task.name,
        "primary_metric": task.primary_metric,
        "metrics": state.history[state.best_epoch],
        "teacher_metrics": knowledge.manifest.teacher_dev_metrics,
        "best_epoch": state.best_epoch + 1,
        "history": state.history,
        "train_seconds": round(train_seconds, 1),
        "train_rows": train_rows,
        "augmented_rows": augmented_rows,
        "augmentation": augmentation,
        "init": init,
        "genotype": str(genotype) if genotype is not None else None,
        **measured,
    }


def config_dict(config) -> dict:
    return asdict(config)
