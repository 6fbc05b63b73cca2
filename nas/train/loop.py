"""The one training loop: teacher fine-tuning, architecture search, student finetuning and
every KD baseline run through `train_loop`.

What differs between them comes in as small hooks: the loss, an extra step after each weight
update (the architecture step of the search), evaluation, what to do with a new best, and how
to checkpoint. The loop owns the bookkeeping those share: epochs and steps, gradient clipping,
the schedule, TensorBoard scalars, the progress bar, stopping on a non-finite loss, a
checkpoint on Ctrl-C, and resuming in the middle of an epoch with the same batches and random
state as a run that was never interrupted.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
from dataclasses import dataclass, field
from typing import Callable

import torch
from tqdm.auto import tqdm

from nas.base.errors import UserError


class NonFiniteLoss(UserError):
    """The loss became NaN or infinite; the run stops and keeps its last good checkpoint."""


@dataclass
class LoopState:
    epoch: int = 0  # epochs finished
    step: int = 0  # optimizer steps taken
    batch_in_epoch: int = 0  # batches of the current epoch already consumed
    best: float | None = None
    best_epoch: int = -1
    history: list = field(default_factory=list)  # one dict of dev metrics per epoch
    rng: torch.Tensor | None = None  # torch's CPU generator state at the last checkpoint

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict) -> "LoopState":
        return cls(**data)


@dataclass
class Hooks:
    loss: Callable  # (batch) -> (loss tensor, {term name: float})
    epoch_batches: Callable  # (epoch) -> sequence of batches, the same for the same epoch
    evaluate: Callable | None = None  # (state) -> {metric: value}
    after_step: Callable | None = None  # (state, batch) -> {scalar: value} | None
    on_epoch_start: Callable | None = None  # (state) -> None
    on_best: Callable | None = None  # (state, metrics) -> None
    on_epoch_end: Callable | None = None  # (state, metrics) -> None
    checkpoint: Callable | None = None  # (state) -> None; also called on Ctrl-C


def train_loop(
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    hooks: Hooks,
    epochs: int,
    primary_metric: str | None,
    scheduler=None,
    state: LoopState | None = None,
    max_grad_norm: float | None = 1.0,
    writer=None,
    log_every: int = 20,
    description: str = "train",
    show_progress: bool = True,  # False: no progress bar (the other processes of a torchrun search)
    best_from_epoch: int = 0,  # earlier epochs are scored and logged but cannot be the best (a search's warm-up)
) -> LoopState:
    state = state or LoopState()
    if state.rng is not None:
        torch.set_rng_state(state.rng)
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    try:
        while state.epoch < epochs:
            if hooks.on_epoch_start:
                hooks.on_epoch_start(state)
            batches = hooks.epoch_batches(state.epoch)
            progress = tqdm(
                total=len(batches), initial=state.batch_in_epoch, desc=f"{description} {state.epoch + 1}/{epochs}",
                leave=False, dynamic_ncols=True, disable=None if show_progress else True,
            )
            # ---- weight steps
            for batch in batches[state.batch_in_epoch :]:
                with _whole_step():
                    _step(model, optimizer, scheduler, hooks, state, batch, parameters, max_grad_norm, writer, log_every, progress)
            progress.close()
            # ---- evaluation and bookkeeping at the end of the epoch
            metrics = hooks.evaluate(state) if hooks.evaluate else {}
            state.history.append(metrics)
            if writer is not None:
                for name, value in metrics.items():
                    if isinstance(value, (int, float)):
                        writer.add_scalar(f"dev/{name}", value, state.epoch + 1)
            eligible = state.epoch >= best_from_epoch
            if primary_metric and metrics and eligible and (state.best is None or metrics[primary_metric] > state.best):
                state.best, state.best_epoch = metrics[primary_metric], state.epoch
                if hooks.on_best:
                    hooks.on_best(state, metrics)
            state.epoch += 1
            state.batch_in_epoch = 0
            if hooks.on_epoch_end:
                hooks.on_epoch_end(state, metrics)
            if hooks.checkpoint:
                state.rng = torch.get_rng_state()
                hooks.checkpoint(state)
    except KeyboardInterrupt:
        if hooks.checkpoint:
            state.rng = torch.get_rng_state()
            hooks.checkpoint(state)
        raise
    return state


def _step(model, optimizer, scheduler, hooks, state, batch, parameters, max_grad_norm, writer, log_every, progress):
    """One weight update plus the after-step hook (the search's architecture update)."""
    model.train()
    loss, terms = hooks.loss(batch)
    value = loss.item()  # the step's one wait for the device: the check and the progress bar share it
    if not math.isfinite(value):
        raise NonFiniteLoss(
            f"training stopped: the loss became {value} at step {state.step}; "
            "the last good checkpoint is kept"
        )
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if max_grad_norm:
        torch.nn.utils.clip_grad_norm_(parameters, max_grad_norm)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    state.step += 1
    state.batch_in_epoch += 1
    extra = hooks.after_step(state, batch) if hooks.after_step else None
    if writer is not None and state.step % log_every == 0:
        # Terms may be floats or detached tensors (read only here, so unlogged steps never wait).
        for name, term in {"loss/total": value, **terms, **(extra or {})}.items():
            writer.add_scalar(name if "/" in name else f"loss/{name}", float(term), state.step)
        if scheduler is not None:
            writer.add_scalar("lr", scheduler.get_last_lr()[0], state.step)
    progress.set_postfix(loss=f"{value:.4f}", refresh=False)
    progress.update()


@contextlib.contextmanager
def _whole_step():
    """Let Ctrl-C land between steps, never inside one.

    A checkpoint taken half-way through a step (weights updated, architecture not yet) would
    make a resumed run diverge from an uninterrupted one, so SIGINT is held until the step ends.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: pending.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if pending:
        raise KeyboardInterrupt


def linear_warmup_decay(optimizer, total_steps: int, warmup_ratio: float):
    """Linear warm-up to the base rate over `warmup_ratio` of the steps, then linear decay to zero."""
    warmup = max(1, int(total_steps * warmup_ratio)) if warmup_ratio > 0 else 0

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
