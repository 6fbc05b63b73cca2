"""Epoch checkpoints for a stage of `nas run` that has none of its own (teacher, finetune).

On a 20x transfer set an epoch of finetuning is long; a `nas run` stopped in the middle of a
stage should not start that stage again. `train_loop` already calls its `checkpoint` hook at
each epoch end and on Ctrl-C; this saves what a resume needs there (weights, optimizer,
schedule, loop state with the RNG, and the best epoch's weights, since the stage's output
folder is rebuilt from scratch when it resumes) and gives it back when the same stage, with
the same settings, starts again. A checkpoint made with other settings is ignored.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import torch

from nas.base import atomic
from nas.base.errors import UserError
from nas.base.safe_files import one_line
from nas.train.loop import LoopState


class EpochCheckpoint:
    def __init__(self, path, model, optimizer, scheduler, settings: dict):
        self.path = Path(path)
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.key = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()
        self.best = None  # the best epoch's weights (CPU), as of the last checkpoint

    def restore(self) -> LoopState | None:
        """The loop state to continue from, with model, optimizer and schedule restored; None to start afresh."""
        if not self.path.is_file():
            return None
        try:
            saved = torch.load(self.path, map_location="cpu", weights_only=False)
        except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError, OSError) as error:
            raise UserError(f"{self.path}: not a readable checkpoint ({one_line(str(error) or type(error).__name__, 120)}); "
                            "remove it to start afresh") from None
        if saved.get("key") != self.key:
            return None
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(saved["scheduler"])
        self.best = saved["best"]
        return LoopState.from_dict(saved["loop"])

    def note_best(self) -> None:
        """Call when the current weights are the best so far."""
        self.best = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}

    def save(self, state: LoopState) -> None:
        """The `train_loop` checkpoint hook."""
        atomic.save_torch({
            "key": self.key,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "loop": state.to_dict(),
            "best": self.best,
        }, self.path)

    def load_best(self) -> None:
        """Put the best epoch's weights back into the model (the stage then saves them)."""
        if self.best is not None:
            self.model.load_state_dict(self.best)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
