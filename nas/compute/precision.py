"""Number formats for running models: float32 weights to train, autocast to infer on CUDA.

A Hugging Face checkpoint is often stored in float16 or bfloat16. Training those weights in
their own dtype overflows at the first step (AdamW's update underflows, the loss turns NaN),
so every model is loaded in float32 ("master weights"). Inference on CUDA then runs under
autocast, which keeps that speed without giving up the float32 copy; on CPU nothing changes.
"""

from __future__ import annotations

import contextlib

import torch


def autocast_dtype(device) -> torch.dtype | None:
    """bfloat16 where the GPU has it (no overflow: float32's range), else float16; None off CUDA."""
    if torch.device(device).type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def inference_autocast(device):
    """A context for a model's forward at inference: autocast on CUDA, a no-op elsewhere."""
    dtype = autocast_dtype(device)
    return torch.autocast("cuda", dtype=dtype) if dtype is not None else contextlib.nullcontext()
