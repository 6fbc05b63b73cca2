"""A step that is not launch-bound: fused AdamW, bf16 autocast, and a captured forward.

The three training commands (search, finetune, distill) and the serving path take their speed
settings from here, so every one of them means the same thing:

  * `fused_optimizer`: AdamW's update as one fused kernel per parameter group instead of a
    dozen multi-tensor passes. On CUDA this is the usual `fused=True`; on CPU (torch >= 2.4)
    it is also ~5x faster, which matters because the student's 30k x 128 embedding table is
    most of its parameters (experiments/results/throughput.md). Same maths, float rounding.
  * `amp`: "bf16" runs the forward under `torch.autocast` in bfloat16 (float32 master weights,
    the loss in float32). bf16 needs no loss scaling, unlike float16.
  * `compile`: a `torch.compile` mode for the student's forward (and so its backward).
    "reduce-overhead" captures CUDA graphs, one per input shape, which is why a compiled step
    pads its batches to a few bucket lengths (nas.data.batching.BUCKETS). Where capture fails the
    step falls back to eager once, with a warning, and carries on.

Defaults keep CPU runs as they were: eager, float32, batches padded to their longest row.
"""

from __future__ import annotations

import contextlib
import warnings

import torch

from nas.base.errors import UserError
from nas.data.batching import BUCKETS

COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")
AMP_MODES = ("off", "bf16")


def check_speed_settings(compile_mode: str, amp: str) -> None:
    """Reject unknown modes early, naming the setting (called from the configs' __post_init__)."""
    if compile_mode not in COMPILE_MODES:
        raise UserError(f"setting 'compile': expected one of {', '.join(COMPILE_MODES)}, got {compile_mode!r}")
    if amp not in AMP_MODES:
        raise UserError(f"setting 'amp': expected one of {', '.join(AMP_MODES)}, got {amp!r}")


def batch_buckets(compile_mode: str, bucket: bool) -> tuple[int, ...]:
    """Bucket lengths for training batches: always when the step is compiled (one capture per
    shape), else only when asked, since on CPU the extra padding is pure cost."""

    return BUCKETS if bucket or compile_mode != "off" else ()


def adamw(params, *, lr: float, weight_decay: float, fused: bool = True, **extra) -> torch.optim.AdamW:
    """AdamW, fused where this torch supports it for these parameters, else the default kernels."""
    params = list(params)
    if fused:
        try:
            return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True, **extra)
        except (RuntimeError, TypeError, ValueError):
            pass  # e.g. parameters on a device without a fused kernel: the default is correct too
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, **extra)


def autocast(device, amp: str):
    """The forward's autocast context: bf16 when asked, else nothing."""
    if amp == "off":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


class Captured:
    """`fn` run through `torch.compile(mode=...)`, or eager where compiling it fails.

    The first failure (a graph break torch cannot handle, a missing compiler, a capture error)
    is reported once and the eager function is used from then on, so a run never dies of its
    speed setting. With "reduce-overhead" (CUDA graphs) outputs live in the graph's own memory
    and the next replay overwrites them, so they are cloned before they are handed out.
    """

    def __init__(self, fn, mode: str, name: str = "step"):
        self.fn, self.mode, self.name = fn, mode, name
        self.compiled = None if mode == "off" else torch.compile(fn, mode=None if mode == "default" else mode, dynamic=False)
        self.failed: str | None = None
        self.keep_outputs = True  # False: hand out graph memory uncopied (timing loops that drop it)

    @property
    def active(self) -> bool:
        return self.compiled is not None

    def __call__(self, *args, **kwargs):
        if self.compiled is None:
            return self.fn(*args, **kwargs)
        try:
            if self.mode == "reduce-overhead":
                torch.compiler.cudagraph_mark_step_begin()  # a new iteration: earlier outputs are consumed
            out = self.compiled(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 (any compiler failure means: run eager)
            self.failed = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            warnings.warn(f"torch.compile of the {self.name} failed ({self.failed}); running eager", stacklevel=2)
            self.compiled = None
            return self.fn(*args, **kwargs)
        if self.mode == "reduce-overhead" and self.keep_outputs:
            out = _clone_tensors(out)
        return out


def _clone_tensors(value):
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, (tuple, list)):
        return type(value)(_clone_tensors(v) for v in value)
    if isinstance(value, dict):
        return {k: _clone_tensors(v) for k, v in value.items()}
    return value
