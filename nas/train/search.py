"""`nas search`: AdaBERT's differentiable search with knowledge distillation.

Alternating first-order updates: the supernet's weights on a training batch, then the
architecture logits on a batch from a held-out slice of the training set, both minimising

    L = (1 - γ) · L_CE + γ · L_KD + β · L_E

with probes KD against the cached teacher knowledge and the efficiency term of the sampled
path (kd.losses). Each step samples one path (hard Gumbel) so only the sampled op of each edge
and the sampled depth are computed. At the end of each epoch a genotype is derived and scored
on dev with that path fixed; `arch.json` is the best-scoring one after the warm-up.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from kd.losses import efficiency_loss, probes_kd
from nas.base import atomic
from nas.base.errors import UserError
from nas.base.flat_settings import flat_dict, flat_fields, flat_init
from nas.base.run_info import provenance, tensorboard_writer
from nas.compute import distributed
from nas.compute.acceleration import adamw, autocast, batch_buckets, check_speed_settings
from nas.data.batching import batch_order, device_batch, model_inputs
from nas.data.evaluation import evaluate_splits, task_loss
from nas.data.models import load_tokenizer
from nas.deploy.costs import student_costs
from nas.deploy.latency import dev_batch_length
from nas.deploy.latency_table import load_latency_table
from nas.deploy.machine_load import competes, cpu_load
from nas.train.distill_data import prepare, teacher_embedding_tables
from nas.train.figures import depth_figure, op_probability_figure
from nas.train.latency_check import fit_measured, student_timer
from nas.train.perturbation import select_after_search
from nas.train.shape_trials import choose_shape
from nas.train.speedup_budget import keep as keep_teacher_timing, with_speedup_budget
from nas.train.width_latency import any_search_latency, width_efficiency_loss, width_op_costs
from nas.train.loop import Hooks, LoopState, NonFiniteLoss, linear_warmup_decay, train_loop
from ops import OPS
from searchspace.derive import derive_genotype
from searchspace.drawing import render
from searchspace.genotype import DEFAULT_EMBEDDINGS, EMBEDDING_VARIANTS, MAX_CELLS, MAX_HIDDEN_SIZE, ZERO_OP, Genotype
from searchspace.sampler import SAMPLERS, temperature
from searchspace.space import AUTO_EMBEDDINGS, SearchSpace
from searchspace.supernet import SuperNet
from searchspace.topology import KEPT_EDGES

CHECKPOINT = "checkpoint.pt"
BEST_WEIGHTS = "supernet_best.pt"
HISTORY = "history.json"  # per epoch: dev metrics, derived genotype, op and depth probabilities


# The SearchSpace fields that are search settings, named flat (`--set hidden_size=64`). `ops`
# defaults to AdaBERT's ten; `--set ops=...` names others of the registry (e.g. `bigru`).
SPACE_SETTINGS = ("hidden_size", "max_cells", "shared_cells", "dropout", "widths", "embeddings", "ops")


@dataclass(frozen=True, init=False)
class SearchConfig:
    """The search's settings. It holds the `SearchSpace` it searches (`space`); the space's
    settings keep their flat names everywhere: `SearchConfig(hidden_size=64)`, `--set
    hidden_size=64`, `config.hidden_size`, and the flat records of `to_dict()` (config.json,
    provenance, checkpoints), the same keys as before the space was nested
    (nas/base/flat_settings.py)."""

    NESTED = ("space", SPACE_SETTINGS)

    # The word vectors default to `auto`: the variant measured best for the task's kind of input,
    # resolved by `for_task` when the search starts (searchspace/space.py).
    space: SearchSpace = SearchSpace(embeddings=AUTO_EMBEDDINGS)
    gamma: float = 0.8  # KD share of the loss (AdaBERT's default)
    beta: float = 4.0  # efficiency weight (AdaBERT's default)
    kd_temperature: float = 1.0
    epochs: int = 10
    warmup_epochs: int = 1  # epochs with architecture logits frozen
    batch_size: int = 64
    eval_batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_ratio: float = 0.05
    arch_lr: float = 3e-3
    arch_weight_decay: float = 1e-3
    arch_fraction: float = 0.1  # share of the training rows held out for architecture steps
    mode: str = "hard"  # hard: Gumbel single path; soft: every op weighted by softmax
    tau_start: float = 5.0
    tau_floor: float = 0.2
    # Cap on parameter-free edges (pool, identity) among the KEPT_EDGES (6) of the derived cell; 6 = no cap.
    # Without it, hard-Gumbel search with the efficiency term drifts to all-parameter-free cells
    # (the known collapse: on SST-2 the uncapped cell was pool/identity only from epoch 2 on,
    # with arch_lr 3e-3 and 3e-4 alike), so the default keeps at least 4 parameterised edges.
    # The uncapped share is still logged every epoch.
    max_parameter_free: int = 2
    cost_seq_len: int = 64  # sequence length at which op FLOPs are normalised
    max_length: int = 0  # 0: the length the knowledge was computed at
    use_augmented: bool = True
    augmented_copies: int = 0  # of each row's augmented copies, how many to train on (0: all the knowledge has)
    # The search trains on the task's first `train_rows` training rows and their augmented copies
    # (0: all), where the finetune after it takes every row: the cell that brought SST-2's student
    # within 2 points of its teacher was searched on its first 8,000 rows (experiments/results/gap.md),
    # and all 67,349 with their copies are 8.4 times the supernet training.
    train_rows: int = 0
    seed: int = 42
    # Latency instead of params+FLOPs (nas/train/latency_budget.py). "cost": AdaBERT's L_E; "latency":
    # expected latency from a table over the slowest architecture's. A budget (ms, 0 = none) turns
    # L_E into relu(E[latency] / budget - 1), whichever efficiency, and the derived student must fit.
    efficiency: str = "cost"
    latency_table: str = ""  # from `nas latency-table`; empty: measured into the run folder when needed
    latency_budget_ms: float = 0.0
    # The budget as a speed-up over the teacher instead (0: none): the teacher's latency, timed by
    # the search in its own process, over this (nas/train/speedup_budget.py). A budget timed
    # elsewhere, on a busier or quieter machine, is off by as much as the machine's load.
    latency_speedup: float = 0.0
    latency_batch_size: int = 1  # the batch size and length the budget refers to
    # 0: the padded length of the first `latency_batch_size` dev rows, the batch `nas finetune`
    # times student and teacher on (metrics.json): a speed-up depends on the length (the teacher's
    # attention grows with its square), and a student searched for 20x at length 64 measured
    # 18.8x on SST-2's first 32 dev rows (44 tokens).
    latency_seq_len: int = 64
    # The derived student is fitted to budget x (1 - margin): the table's predictions are off by a
    # few percent, and timing noise does the rest (nas/train/latency_budget.py).
    latency_margin: float = 0.05
    # "measure": under a budget the derived student is timed whole before arch.json is written
    # (beside the teacher for a speed-up) and made cheaper while it misses (nas/train/latency_check.py):
    # the table's sum of parts was up to 13% optimistic. "predict": trust the table alone.
    latency_check: str = "measure"
    # How the derived student's depth K is chosen. "logits": the argmax of the depth logits
    # (AdaBERT). "budget": with a latency budget, the deepest K up to max_cells that fits it. The
    # depth logits favour shallow stacks because a shallow path learns fastest in a short search
    # (on SST-2 K=1 wins although the same cell stacked 4 or 8 times scores higher once trained:
    # experiments/results/depth.md), so under a budget the spare latency is better spent on depth.
    depth_choice: str = "logits"
    # "trial": with a latency budget, the depth and width by measurement (nas/train/shape_trials.py):
    # the cell at each searched width, as deep as the budget allows, trained from scratch for
    # `trial_epochs` on the task's own rows (the first `trial_rows`; 0: all) and scored on the
    # held-out slice, never dev.
    trial_epochs: int = 2
    trial_rows: int = 0
    # Where a trial starts: "scratch", or "search": the search's best weights, each candidate
    # inheriting its own ops, cells and width, as the searched student does in `nas finetune`.
    # Which depths: "deepest", the deepest stack that fits at each width; "halving", that depth
    # and its halvings down to 1 (8, 4, 2, 1). On MRPC's 3,668 rows stacks of 7 or 8 cells trained
    # to the majority-class floor while 2 to 4 cells of the same latency did not.
    trial_init: str = "scratch"
    trial_depths: str = "deepest"
    # What a trial trains on. "task": the task's own rows outside the held-out slice. "transfer":
    # those rows and their augmented copies, as the finetune trains on the whole transfer set; the
    # held-out rows' copies are then scored too (teacher-labelled, "variants_<metric>" in the record).
    trial_data: str = "task"
    # Which candidate wins. "best": the best held-out score, a tie to the faster. "budget": the
    # slowest of those within one standard error of the best, i.e. spend the budget unless the
    # trials show it hurts: on SST-2 nine shapes from K=1 H=64 to K=5 H=96 scored within two of
    # 800 held-out rows, and with all 67,349 rows K=3 H=128 then beat K=1 H=64 by a point.
    # "widest": the widest of those within one standard error, at that width the slowest
    # (nas/train/shape_trials.py says why).
    trial_choice: str = "best"
    # How the cell is chosen once the search has trained the supernet. "argmax": the strongest op
    # logits (DARTS' rule, searchspace/derive.py). "perturbation": DARTS-PT's rule, the ops and
    # edges whose removal hurts the supernet's held-out loss most (nas/train/perturbation.py),
    # scored on at most `perturbation_rows` held-out rows.
    selection: str = "argmax"
    perturbation_rows: int = 512
    # Speed (nas/compute/acceleration.py). No `compile`: every step samples another path through the
    # supernet, so a captured graph would be specialised to one path and recaptured each step.
    amp: str = "off"  # off or bf16: autocast of the supernet's forward
    bucket: bool = False  # pad batches to bucket lengths (nas.data.batching.BUCKETS)
    fused_optimizer: bool = True  # fused AdamW for the weights where torch has it

    def __init__(self, space: SearchSpace | None = None, /, **settings):
        flat_init(self, space, **settings)

    # The space's settings read flat, as they were before the space was nested.
    hidden_size = property(lambda self: self.space.hidden_size)
    max_cells = property(lambda self: self.space.max_cells)
    shared_cells = property(lambda self: self.space.shared_cells)
    dropout = property(lambda self: self.space.dropout)
    widths = property(lambda self: self.space.widths)
    ops = property(lambda self: self.space.ops)
    embeddings = property(lambda self: self.space.embeddings)

    @classmethod
    def settings_fields(cls) -> list[tuple[str, object, object]]:
        """(flat name, type, default) of every setting: what `--set` and settings files name."""
        return flat_fields(cls)

    def to_dict(self) -> dict:
        """The flat record of the settings (config.json, provenance, checkpoints). Settings added
        with the width search and perturbation selection are left out at their defaults, so a
        default search records (and a resume compares) the same keys as before they existed."""
        return flat_dict(self, omit_when_default=("widths", "embeddings", "ops", "selection", "perturbation_rows", "augmented_copies",
                                                  "trial_epochs", "trial_rows", "latency_speedup", "trial_init",
                                                  "trial_depths", "trial_choice", "trial_data", "latency_check", "train_rows"))

    def for_task(self, task, table_embeddings: str | None = None) -> SearchConfig:
        """These settings with `auto` word vectors resolved: those a given latency table's frame was
        timed with (`table_embeddings`, read from `latency_table` when not passed), since the search
        refuses a table of other word vectors; else those of `task`'s kind of input."""
        if self.embeddings != AUTO_EMBEDDINGS:
            return self
        if table_embeddings is None and self.latency_table:
            table_embeddings = load_latency_table(self.latency_table).embeddings
        if table_embeddings:
            return replace(self, embeddings=table_embeddings)
        return replace(self, space=self.space.for_inputs(task.is_pair))

    def __post_init__(self):
        check_speed_settings("off", self.amp)
        if self.epochs <= self.warmup_epochs:
            # Otherwise the architecture logits never train and the derived cell is their random
            # start, reported as if searched.
            raise UserError(f"settings 'epochs' ({self.epochs}) and 'warmup_epochs' ({self.warmup_epochs}): the "
                            "architecture trains only after the warm-up, so epochs must exceed warmup_epochs")
        if self.depth_choice not in ("logits", "budget", "trial"):
            raise UserError(f"setting 'depth_choice': expected logits, budget or trial, got {self.depth_choice!r}")
        if self.latency_speedup < 0 or self.latency_speedup and self.latency_budget_ms:
            raise UserError(f"settings 'latency_speedup' ({self.latency_speedup}) and 'latency_budget_ms' "
                            f"({self.latency_budget_ms}): give one budget, a speed-up over the teacher or milliseconds")
        if self.depth_choice != "logits" and self.latency_budget_ms <= 0 and self.latency_speedup <= 0:
            raise UserError(f"setting 'depth_choice': {self.depth_choice} needs a latency budget (--latency-budget MS "
                            "or --speedup X)")
        if self.trial_choice not in ("best", "budget", "widest"):
            raise UserError(f"setting 'trial_choice': expected best, budget or widest, got {self.trial_choice!r}")
        if self.trial_init not in ("scratch", "search") or self.trial_depths not in ("deepest", "halving"):
            raise UserError(f"settings 'trial_init' (scratch or search) and 'trial_depths' (deepest or halving): got "
                            f"{self.trial_init!r}, {self.trial_depths!r}")
        if self.trial_data not in ("task", "transfer"):
            raise UserError(f"setting 'trial_data': expected task or transfer, got {self.trial_data!r}")
        if self.train_rows < 0:
            raise UserError(f"setting 'train_rows': expected 0 (all) or more, got {self.train_rows}")
        if self.trial_epochs < 1 or self.trial_rows < 0:
            raise UserError(f"settings 'trial_epochs' (>= 1) and 'trial_rows' (>= 0, 0 for all) are out of range: "
                            f"{self.trial_epochs}, {self.trial_rows}")
        if not 0.0 <= self.latency_margin < 1.0:
            raise UserError(f"setting 'latency_margin': expected a value in [0, 1), got {self.latency_margin}")
        if self.latency_check not in ("measure", "predict"):
            raise UserError(f"setting 'latency_check': expected measure or predict, got {self.latency_check!r}")
        if self.selection not in ("argmax", "perturbation"):
            raise UserError(f"setting 'selection': expected argmax or perturbation, got {self.selection!r}")
        if self.perturbation_rows < 1:
            raise UserError(f"setting 'perturbation_rows': expected 1 or more, got {self.perturbation_rows}")
        if self.efficiency not in ("cost", "latency"):
            raise UserError(f"setting 'efficiency': expected cost or latency, got {self.efficiency!r}")
        if self.latency_budget_ms < 0 or self.latency_batch_size < 1 or self.latency_seq_len < 0:
            raise UserError("settings 'latency_budget_ms' (>= 0), 'latency_batch_size' (>= 1) and 'latency_seq_len' "
                            "(>= 1, or 0 for the dev batch's length) are out of range")
        if self.embeddings not in (AUTO_EMBEDDINGS, *EMBEDDING_VARIANTS):
            raise UserError(f"setting 'embeddings': unknown variant {self.embeddings!r} (known: {AUTO_EMBEDDINGS}, "
                            f"{', '.join(EMBEDDING_VARIANTS)})")
        if self.mode not in ("hard", "soft"):
            raise UserError(f"setting 'mode': expected hard or soft, got {self.mode!r}")
        if not 0.0 <= self.gamma <= 1.0:
            raise UserError(f"setting 'gamma': expected a value in [0, 1], got {self.gamma}")
        # The genotype's own bounds (searchspace/genotype.py), checked before the search rather
        # than when its arch.json is written at the end.
        if not 1 <= self.max_cells <= MAX_CELLS:
            raise UserError(f"setting 'max_cells': expected 1..{MAX_CELLS}, got {self.max_cells}")
        if not 1 <= self.hidden_size <= MAX_HIDDEN_SIZE:
            raise UserError(f"setting 'hidden_size': expected 1..{MAX_HIDDEN_SIZE}, got {self.hidden_size}")
        if self.widths and (len(set(self.widths)) != len(self.widths) or min(self.widths) < 1
                            or max(self.widths) != self.hidden_size):
            # The supernet is built at hidden_size; each width runs on its leading channels.
            raise UserError(f"setting 'widths': expected distinct hidden sizes whose widest is hidden_size "
                            f"({self.hidden_size}), got {','.join(map(str, self.widths))}")
        unknown = [op for op in self.space.ops if op not in OPS]
        if unknown or len(set(self.space.ops)) != len(self.space.ops) or not set(self.space.ops) - {ZERO_OP}:
            raise UserError(f"setting 'ops': expected distinct ops of the registry, at least one not {ZERO_OP!r} "
                            f"(known: {', '.join(OPS)}), got {','.join(self.space.ops) or 'none'}")
        if not 0.0 < self.arch_fraction < 1.0:
            raise UserError(f"setting 'arch_fraction': expected a value in (0, 1), got {self.arch_fraction}")
        if self.tau_floor <= 0 or self.tau_start <= 0:
            raise UserError("settings 'tau_start' and 'tau_floor' must be positive")


# Settings read only once the supernet has trained, by the cell selection and the shape trials: a
# search resumed with other values of them (a finished one included) derives again from the same
# supernet, instead of being refused or trained again.
DERIVATION_SETTINGS = ("selection", "perturbation_rows", "trial_epochs", "trial_rows", "trial_init", "trial_depths",
                       "trial_choice", "trial_data", "latency_check")


def normalised_op_costs(ops, hidden: int, seq_len: int) -> torch.Tensor:
    """Each op's cost in [0, 1]: the mean of its parameters and FLOPs, each over the registry's maximum."""
    params = torch.tensor([float(OPS[op].params(hidden)) for op in ops])
    flops = torch.tensor([float(OPS[op].flops(hidden, seq_len)) for op in ops])
    return 0.5 * (params / params.max().clamp_min(1) + flops / flops.max().clamp_min(1))


class Search:
    """Everything one search run holds: supernet, optimizers, samplers' randomness, data."""

    def __init__(self, config: SearchConfig, task, data, supernet, device, out: Path, writer=None, provenance=None,
                 on_epoch=None, processes=None, latency=None):

        if config.embeddings == AUTO_EMBEDDINGS:  # not resolved by run_search: the supernet's word vectors
            config = replace(config, embeddings=supernet.space.embeddings)
        self.config, self.task, self.data, self.device, self.out = config, task, data, device, out
        # Called with each epoch's history.json record once the epoch is finished; a sweep uses it
        # to report the trial's progress and to stop a hopeless trial by raising.
        self.on_epoch, self.last_record = on_epoch, None
        self.supernet = supernet.to(device)
        # Under torchrun (`processes`, see nas.compute.distributed) the training forwards go through DDP,
        # which averages the weights' gradients across the processes; None in a single process.
        self.processes = processes
        self.model = distributed.wrap(self.supernet, processes)
        self.writer, self.provenance = writer, provenance or {}
        self.sampler = SAMPLERS[config.mode]()
        self.generator = torch.Generator().manual_seed(config.seed + 17)
        if supernet.widths:  # (W, O): the ops' costs at each searched width (nas/train/width_latency.py)
            self.op_costs = width_op_costs(supernet.space.ops, supernet.widths, config.cost_seq_len).to(device)
        else:
            self.op_costs = normalised_op_costs(supernet.space.ops, config.hidden_size, config.cost_seq_len).to(device)
        # Latency table, efficiency term and budget (nas/train/latency_budget.py); None when not asked for.
        self.latency = latency or any_search_latency(config, out, device, task.is_pair, supernet.space.ops, processes)
        # The held-out slice is the tail of the task's own training rows; their augmented variants
        # are left out of weight training too, so architecture steps score text the weights never saw.
        n, original = len(data.train), data.original_rows
        held_out = max(1, int(original * config.arch_fraction))
        if held_out >= original:
            raise UserError(f"too few training rows ({original}) to hold out a slice for architecture steps")
        self.arch_rows = list(range(original - held_out, original))
        self.weight_rows = np.flatnonzero(data.source_rows(np.arange(n)) < original - held_out).tolist()
        # Every row's length, read once from the stored row offsets: building an epoch's batches of
        # a 20x transfer set row by row took seconds, and the held-out batch is rebuilt every step.
        self.row_lengths = self.data.train.lengths
        self.steps_per_epoch = -(-len(self.weight_rows) // config.batch_size)
        self.total_steps = self.steps_per_epoch * config.epochs
        self.weight_optimizer = adamw(self.supernet.weight_parameters(), lr=config.lr, weight_decay=config.weight_decay,
                                      fused=config.fused_optimizer)
        self.arch_optimizer = torch.optim.Adam(
            self.supernet.arch_parameters(), lr=config.arch_lr, betas=(0.5, 0.999), weight_decay=config.arch_weight_decay
        )
        self.scheduler = linear_warmup_decay(self.weight_optimizer, self.total_steps, config.warmup_ratio)
        self.state = LoopState()
        self.best = None  # (metric, genotype dict)
        self.genotypes = []  # derived genotype per epoch

    # ---- batches
    def _rows_batches(self, rows, seed, epoch):
        lengths = [self.row_lengths[i] for i in rows]
        return [[rows[i] for i in batch] for batch in batch_order(lengths, self.config.batch_size, seed, epoch)]

    def epoch_batches(self, epoch: int):
        return self._rows_batches(self.weight_rows, self.config.seed, epoch)

    def arch_batch(self, step: int):
        """The held-out batch for an architecture step: a pure function of the step, for exact resume."""
        per_cycle = -(-len(self.arch_rows) // self.config.batch_size)
        batches = self._rows_batches(self.arch_rows, self.config.seed + 1, step // per_cycle)
        return batches[step % per_cycle]

    # ---- the loss
    def tau(self) -> float:

        return temperature(self.state.step, self.total_steps, self.config.tau_start, self.config.tau_floor)

    def loss(self, rows, model=None, path=None) -> tuple[torch.Tensor, dict]:
        """The loss of training rows `rows` on a sampled path, or on `path` when given."""
        config = self.config
        batch = device_batch(self.data.train, rows, self.device, batch_buckets("off", config.bucket))
        teacher_logits, probe_logits = self.data.train_targets.rows(torch.as_tensor(rows))
        probe_logits = probe_logits.to(self.device, non_blocking=True)
        if path is None:
            path = self.supernet.sample_path(self.sampler, self.tau(), self.generator)
        with autocast(self.device, config.amp):
            final, per_depth = (self.model if model is None else model)(**model_inputs(batch), path=path)
        final, per_depth = final.float(), [logits.float() for logits in per_depth]
        ce = task_loss(final, batch["labels"], self.task.is_regression)
        kd = probes_kd(per_depth, probe_logits, self.data.probe_losses, config.kd_temperature, self.task.is_regression)
        terms = {}
        if self.latency is not None and self.latency.is_efficiency_term:
            efficiency, terms["architecture/expected_latency_ms"] = self.latency.efficiency(path)
        elif path.width_weights is not None:
            efficiency = width_efficiency_loss(path, self.op_costs)
        else:
            efficiency = efficiency_loss(path.op_weights[: path.depth], path.depth_weights, self.op_costs)
        total = (1 - config.gamma) * ce + config.gamma * kd + config.beta * efficiency
        return total, {"ce": ce.item(), "kd": kd.item(), "efficiency": efficiency.item(), "depth": float(path.depth), **terms}

    def step_loss(self, rows, phase: int = 0) -> tuple[torch.Tensor, dict]:
        """The loss of one step's batch `rows` (phase 0: weight step, 1: architecture step).

        A single process computes `loss(rows)`. Under torchrun each process computes its shard of
        `rows`, weighted so that the gradients averaged across processes are those of the whole
        batch, and the value returned is the whole batch's (see distributed.sharded_loss).
        """
        if self.processes is None:
            return self.loss(rows)
        # The architecture step runs the supernet itself, not DDP: it needs only the logits'
        # gradients, which it averages by hand, while DDP would all-reduce every weight's too.
        loss = self.loss if phase == 0 else functools.partial(self.loss, model=self.supernet)
        # Dropout masks from a seed per (rank, step, phase): nothing to restore on resume, and
        # the ranks do not repeat each other's masks. The path's generator is left alone.
        torch.manual_seed(distributed.step_seed(self.config.seed, self.processes.rank, self.state.step, phase))
        return distributed.sharded_loss(loss, rows, self.processes)

    def architecture_step(self, state, _batch):
        if state.epoch < self.config.warmup_epochs:
            return {"architecture/temperature": self.tau()}
        loss, _ = self.step_loss(self.arch_batch(state.step), phase=1)
        if not torch.isfinite(loss):
            raise NonFiniteLoss(f"search stopped: the architecture loss became {loss.item()} at step {state.step}; "
                                "the last good checkpoint is kept")
        self.arch_optimizer.zero_grad(set_to_none=True)
        self.weight_optimizer.zero_grad(set_to_none=True)
        # Gradients for the logits only. Under torchrun this also matters: a backward into the
        # weights outside a DDP step would leave DDP expecting their gradients in the next one.
        loss.backward(inputs=self.supernet.arch_parameters())
        distributed.average_gradients(self.supernet.arch_parameters(), self.processes)
        self.arch_optimizer.step()
        self.weight_optimizer.zero_grad(set_to_none=True)  # the weights learn only from training batches
        return {"architecture/temperature": self.tau(), "loss/arch": loss.item()}

    # ---- evaluation and derivation
    def derive(self, capped: bool = True):

        config = self.config
        cap = config.max_parameter_free if capped and config.max_parameter_free < KEPT_EDGES else None
        widths = self.supernet.widths
        genotype = derive_genotype(
            self.supernet.op_logits.detach().cpu(), self.supernet.depth_logits.detach().cpu(), config.hidden_size,
            self.supernet.space.ops, config.max_cells, max_parameter_free=cap,
            width_logits=self.supernet.width_logits.detach().cpu() if widths else None, widths=widths or None,
            embeddings=config.space.embeddings,
        )
        if config.depth_choice in ("budget", "trial"):
            # fit() below removes what does not fit; `trial` chooses among the widths after the search.
            genotype = replace(genotype, num_cells=config.max_cells)
        # With a latency budget the derived student must fit it: fewer cells, then cheaper ops.
        return self.latency.fit(genotype) if capped and self.latency is not None else genotype

    def dev_metrics(self, genotype) -> dict:
        """The supernet's dev metrics on the one-hot path of `genotype`."""
        path = self.supernet.genotype_path(genotype)
        forward = lambda inputs: self.supernet(**inputs, path=path)[0]  # noqa: E731
        return evaluate_splits(self.task, forward, self.data.dev, self.config.eval_batch_size, self.device, self.supernet)

    def load_best_weights(self) -> None:
        """The best epoch's supernet weights, which `on_best` wrote beside arch.json."""
        self.supernet.load_state_dict(torch.load(self.out / BEST_WEIGHTS, map_location=self.device, weights_only=True))

    def evaluate(self, state) -> dict:
        genotype = self.derive()
        metrics = self.dev_metrics(genotype)
        metrics["parameter_free_share"] = genotype.parameter_free_share()
        metrics["uncapped_parameter_free_share"] = self.derive(capped=False).parameter_free_share()
        metrics["depth"] = genotype.num_cells
        if self.supernet.widths:
            metrics["width"] = genotype.hidden_size
        self.genotypes.append(genotype.to_dict())
        self._log_epoch(state, genotype, metrics)
        self.last_record = self._record_history(state.epoch + 1, genotype, metrics)
        return metrics

    def _record_history(self, epoch: int, genotype, metrics: dict) -> dict:
        """Add this epoch to history.json. The checkpoint keeps only the latest logits, so this file
        is where op probabilities over the epochs survive (the sweep draws them). A resumed run
        redoes the epoch it stopped in, so records from that epoch on are replaced."""
        import json

        path = self.out / HISTORY
        earlier = json.loads(path.read_text())["epochs"][: epoch - 1] if path.is_file() else []
        op_probabilities = torch.softmax(self.supernet.op_logits.detach().cpu(), -1).mean(0)  # (edges, ops), cells averaged
        depth_probabilities = torch.softmax(self.supernet.depth_logits.detach().cpu(), -1)  # (max_cells,)
        record = {
            "epoch": epoch, "metrics": metrics, "genotype": genotype.to_string(),
            "op_probabilities": [[round(p, 5) for p in row] for row in op_probabilities.tolist()],
            "depth_probabilities": [round(p, 5) for p in depth_probabilities.tolist()],
        }
        if self.supernet.widths:
            widths = torch.softmax(self.supernet.width_logits.detach().cpu(), -1).tolist()
            record["width_probabilities"] = {str(w): round(p, 5) for w, p in zip(self.supernet.widths, widths)}
        atomic.write_json(path, {"ops": list(self.supernet.space.ops), "epochs": earlier + [record]})
        return record

    def epoch_finished(self, state, metrics):
        if self.on_epoch is not None and self.last_record is not None:
            self.on_epoch(self.last_record)

    def evaluate_on_main(self, state) -> dict:
        """`evaluate` under torchrun: rank 0 scores dev (and logs, draws, records) while the others
        wait; then every rank holds its metrics and derived genotype, so `best` agrees everywhere."""
        replica = distributed.digest([*self.supernet.state_dict().values(), self.generator.get_state()])
        distributed.check_identical(replica, self.processes, "weights, architecture logits or path generator")
        main = distributed.is_main(self.processes)
        metrics = self.evaluate(state) if main else None
        metrics, genotype = distributed.broadcast_from_main((metrics, self.genotypes[-1] if main else None), self.processes)
        if not main:
            self.genotypes.append(genotype)
        return metrics

    def on_best(self, state, metrics):
        self.best = (metrics[self.task.primary_metric], self.genotypes[-1], state.epoch + 1)
        if distributed.is_main(self.processes):
            atomic.save_torch(self.supernet.state_dict(), self.out / BEST_WEIGHTS)

    def _log_epoch(self, state, genotype, metrics):

        render(genotype, self.out / "cells" / f"epoch_{state.epoch + 1:03d}.dot")
        if self.writer is None:
            return

        epoch = state.epoch + 1
        probs = torch.softmax(self.supernet.op_logits.detach().cpu(), -1)
        self.writer.add_figure("architecture/op_probabilities", op_probability_figure(probs.mean(0), self.supernet.space.ops), epoch)
        depth = torch.softmax(self.supernet.depth_logits.detach().cpu(), -1)
        self.writer.add_figure("architecture/depth_distribution", depth_figure(depth), epoch)
        for k, p in enumerate(depth.tolist(), 1):
            self.writer.add_scalar(f"depth/p_K{k}", p, epoch)
        self.writer.add_scalar("architecture/parameter_free_share", metrics["parameter_free_share"], epoch)
        self.writer.add_scalar("architecture/uncapped_parameter_free_share", metrics["uncapped_parameter_free_share"], epoch)
        self.writer.add_text("architecture/genotype", str(genotype), epoch)

    # ---- checkpoints
    def checkpoint(self, state):
        if not distributed.is_main(self.processes):
            return  # rank 0's checkpoint is every rank's: the replicas are identical
        atomic.save_torch(
            {
                "config": self.config.to_dict(),
                "supernet": self.supernet.state_dict(),
                "weight_optimizer": self.weight_optimizer.state_dict(),
                "arch_optimizer": self.arch_optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "loop": state.to_dict(),
                "generator": self.generator.get_state(),
                "best": self.best,
                "genotypes": self.genotypes,
            },
            self.out / CHECKPOINT,
        )

    def restore(self, path: Path):
        saved = torch.load(path, map_location=self.device, weights_only=False)
        now = self.config.to_dict()
        # A record from before `auto` omitted the word vectors at their old default.
        recorded = {"embeddings": DEFAULT_EMBEDDINGS, **saved["config"]}
        changed = sorted(k for k in recorded.keys() | now.keys()
                         if recorded.get(k) != now.get(k) and k not in DERIVATION_SETTINGS)
        if changed:
            raise UserError(f"{path}: the checkpoint was made with other settings ({', '.join(changed)}); resume with the same ones")
        self.supernet.load_state_dict(saved["supernet"])
        self.weight_optimizer.load_state_dict(saved["weight_optimizer"])
        self.arch_optimizer.load_state_dict(saved["arch_optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.state = LoopState.from_dict(saved["loop"])
        self.generator.set_state(saved["generator"])
        self.best, self.genotypes = saved["best"], saved["genotypes"]

    # ---- the whole run
    def run(self):
        hooks = Hooks(
            loss=self.step_loss,
            epoch_batches=self.epoch_batches,
            evaluate=self.evaluate if self.processes is None else self.evaluate_on_main,
            after_step=self.architecture_step,
            on_best=self.on_best,
            on_epoch_end=self.epoch_finished,
            checkpoint=self.checkpoint,
        )
        self.state = train_loop(
            model=self.supernet, optimizer=self.weight_optimizer, scheduler=self.scheduler, hooks=hooks,
            epochs=self.config.epochs, primary_metric=self.task.primary_metric, state=self.state,
            writer=self.writer, description="search", show_progress=distributed.is_main(self.processes),
            # The warm-up's derived genotypes are the architecture logits' random start: its
            # supernet often scores best on dev (its weights train on every op alike), which
            # made a two-epoch search hand over a random cell as its best.
            best_from_epoch=self.config.warmup_epochs,
        )
        return self.state


def run_search(data, teacher_dir, knowledge, config: SearchConfig, out: Path, device, resume: bool = False,
               on_epoch=None, processes=None):
    """Build everything, search (or resume), and write arch.json with costs and provenance.

    `on_epoch(record)`, if given, is called after each epoch with that epoch's history.json record
    (before its checkpoint is written); an exception it raises stops the search."""

    task = data.task
    config = config.for_task(task)
    if config.train_rows:
        data = replace(data, train=data.train[: config.train_rows])
    if config.latency_seq_len == 0:  # the length of the dev batch the finetune will time
        config = replace(config, latency_seq_len=dev_batch_length(
            data.dev["dev"], load_tokenizer(str(teacher_dir)), config.latency_batch_size,
            config.max_length or knowledge.max_length, task.is_regression))
    # A speed-up over the teacher becomes milliseconds here, the teacher timed just before the tables.
    config, teacher_timing = with_speedup_budget(config, teacher_dir, task, out, device, processes)
    # The teacher's word vectors first: a table of the variants that keep them is timed at their width.
    words, positions = teacher_embedding_tables(teacher_dir, task)
    # The latency table, and a budget no architecture can meet refused, before the data is loaded.
    latency = any_search_latency(config, out, device, task.is_pair, config.space.ops, processes, words.shape[1])
    torch.manual_seed(config.seed)
    tokenizer = load_tokenizer(str(teacher_dir))
    max_length = config.max_length or knowledge.max_length
    distill = prepare(data, knowledge, tokenizer, max_length, config.use_augmented, config.augmented_copies)
    space = config.space
    supernet = SuperNet(space, words.shape[0], positions.shape[0] if positions is not None else 512, task.num_labels,
                        task.is_pair, teacher_width=words.shape[1])
    supernet.embeddings.init_from_teacher(words, positions if positions is not None else supernet.embeddings.positions.weight)

    main = distributed.is_main(processes)  # under torchrun only rank 0 writes; the others only read a checkpoint
    if main:
        out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / CHECKPOINT
    search = Search(config, task, distill, supernet, device, out, on_epoch=on_epoch, processes=processes, latency=latency)
    if resume:
        if not checkpoint.is_file():
            raise UserError(f"--resume: no checkpoint in {out}")
        search.restore(checkpoint)  # refuses other settings before anything in `out` is touched
    distributed.barrier(processes)  # every rank has read the checkpoint before rank 0 may replace it
    info = provenance(task=task.name, teacher=str(Path(teacher_dir).resolve()), knowledge=str(knowledge.folder.resolve()),
                      seed=config.seed, config=config.to_dict())
    if main:
        atomic.write_json(out / "config.json", info)
        if latency is not None:
            latency.keep_table(out)  # a table measured for this run, beside its config
        keep_teacher_timing(teacher_timing, out)
    writer = search.writer = tensorboard_writer(out / "tensorboard") if main else None
    started = time.perf_counter()
    state = search.run()
    if writer is not None:
        writer.close()
    if search.best is None:
        raise UserError("the search finished without a dev score; nothing to derive")
    best_metric, best_genotype, best_epoch = search.best
    selection = {}
    if config.selection == "perturbation":
        distributed.barrier(processes)  # rank 0 has written the best epoch's weights
        best_metric, chosen, record = select_after_search(
            search, Genotype.from_json(json.dumps(best_genotype), source="derived genotype"))
        best_genotype, selection = chosen.to_dict(), {"selection": record}
    checked = latency is not None and latency.budget_ms > 0 and config.latency_check == "measure"
    check = _latency_checker(search, teacher_dir, teacher_timing, words, positions) if checked else None
    if config.depth_choice == "trial":
        best_metric, chosen, record = _shape_by_trials(search, best_genotype, words, positions,
                                                       tokenizer.pad_token_id or 0, check)
        best_genotype, selection = chosen.to_dict(), {**selection, "shape": record}
    if checked:
        best_metric, chosen, record = _checked_latency(search, best_genotype, best_metric, check)
        best_genotype, selection = chosen.to_dict(), {**selection, "latency_check": record}
    genotype = _finalise(best_genotype, supernet, space, task, tokenizer, config, info,
                         extra={"dev_metric": {task.primary_metric: best_metric}, "best_epoch": best_epoch, **selection,
                                "search_seconds": round(time.perf_counter() - started, 1),
                                **({"latency_speedup": teacher_timing} if teacher_timing else {}),
                                "history": state.history, "max_length": max_length,
                                **({"processes": processes.world_size} if processes else {})})
    if latency is not None:
        # Predicted latency and budget; predicted over the budget is an error, unless timed within it.
        genotype = latency.record(genotype, timed_within=bool(genotype.extra.get("latency_check", {}).get("met")))
    if main:
        genotype.save(out / "arch.json")
    distributed.barrier(processes)  # no process reports success before arch.json is written
    return genotype, state


def _shape_by_trials(search, genotype_dict, words, positions, pad_id, check=None):
    """`depth_choice=trial` (nas/train/shape_trials.py) after the search: rank 0 trains the
    candidates (each width's deepest timed by `check` when given), every rank gets its choice.
    Returns (the supernet's dev score at the chosen shape, with the best epoch's weights; the
    genotype; the record for arch.json)."""
    processes = search.processes
    main = distributed.is_main(processes)
    genotype = Genotype.from_json(json.dumps(genotype_dict), source="derived genotype")
    chosen, record = choose_shape(search, genotype, words, positions, pad_id, check) if main else (None, None)
    chosen, record = distributed.broadcast_from_main((chosen, record), processes)
    distributed.barrier(processes)  # rank 0 has written the best epoch's weights
    search.load_best_weights()
    return search.dev_metrics(chosen)[search.task.primary_metric], chosen, record


def _latency_checker(search, teacher_dir, teacher_timing, words, positions):
    """`check(genotype, deepest=0) -> (genotype, record)`: `latency_check=measure`
    (nas/train/latency_check.py) on rank 0, the teacher loaded at the first call; None when the
    latency tables were timed on another machine, whose clock this one's cannot stand in for."""
    latency, config = search.latency, search.config
    if not latency.describes(search.device):
        return None
    speedup = teacher_timing["speedup"] if teacher_timing else 0.0

    @functools.cache
    def timer():  # the teacher loaded once, at the first check
        load = cpu_load() if search.device.type == "cpu" else None
        if competes(load, torch.get_num_threads()):
            print(f"warning: the CPU is busy (load average {load:.1f}) while the search times its student"
                  f"{' beside the teacher' if speedup else ''}: the timings come out slow"
                  f"{', the teacher the more' if speedup else ''}; search on a quiet machine "
                  "(nas/deploy/machine_load.py)", file=sys.stderr)
        return student_timer(teacher_dir, search.task, words, positions, search.device,
                             config.latency_batch_size, config.latency_seq_len, speedup)

    def check(genotype, deepest: int = 0):
        measure = timer()
        load = cpu_load() if search.device.type == "cpu" else None
        checked, record = fit_measured(genotype, latency, measure, speedup, deepest)
        return checked, {**record, **({"load_average": round(load, 2)} if load is not None else {})}
    return check


def _checked_latency(search, genotype_dict, metric: float, check):
    """The derived student timed and stepped down while it misses the budget by `check` on rank 0
    (deeper too under `depth_choice=budget`, which spends the budget on depth), every rank getting
    the result. Returns (the supernet's dev score at the checked student, the student, the record
    for arch.json)."""
    processes = search.processes
    genotype = Genotype.from_json(json.dumps(genotype_dict), source="derived genotype")
    if check is None:
        return metric, genotype, {"rule": "measure", "skipped": "the latency table was timed on another device or "
                                  "thread count; this machine's clock does not check it"}
    checked, record = None, None
    if distributed.is_main(processes):
        deepest = search.config.max_cells if search.config.depth_choice == "budget" else 0
        checked, record = check(genotype, deepest)
    checked, record = distributed.broadcast_from_main((checked, record), processes)
    if checked.canonical().to_string() != genotype.canonical().to_string():
        distributed.barrier(processes)  # rank 0 has written the best epoch's weights
        search.load_best_weights()
        metric = search.dev_metrics(checked)[search.task.primary_metric]
    return metric, checked, record


def _finalise(genotype_dict, supernet, space, task, tokenizer, config, info, extra):
    """Attach the final logits, costs and provenance to the best derived genotype."""
    import dataclasses
    import json


    genotype = Genotype.from_json(json.dumps(genotype_dict), source="derived genotype")
    costs = student_costs(genotype, vocab_size=supernet.embeddings.words.num_embeddings,
                          max_positions=supernet.embeddings.positions.num_embeddings,
                          num_labels=task.num_labels, pair=task.is_pair, seq_len=config.cost_seq_len,
                          teacher_width=supernet.teacher_width)
    return dataclasses.replace(
        genotype,
        op_logits=tuple(tuple(row) for block in supernet.op_logits.detach().cpu().tolist() for row in block),
        depth_logits=tuple(supernet.depth_logits.detach().cpu().tolist()),
        **({"width_logits": tuple(supernet.width_logits.detach().cpu().tolist())} if supernet.widths else {}),
        costs=costs, provenance=info, extra=extra,
        search_weights=BEST_WEIGHTS,  # written beside arch.json by `on_best`; `nas finetune` reads the record
    )
