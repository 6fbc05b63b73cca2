"""The student where it is served: an eager and an optimised forward, and their latency beside
the teacher's, every model measured the same way.

Optimised means: eval mode, `torch.inference_mode`, and on CUDA the forward captured by
`torch.compile(mode="reduce-overhead")`, i.e. CUDA graphs, one per input shape (a served batch
is padded to a bucket length, nas.data.batching.BUCKETS, so there are few shapes). At batch 1 both
the student and the teacher are bound by kernel launches, and a graph replays all of a
forward's kernels with one launch. On CPU the optimised forward is eager under inference
mode: torch.compile does make the K=4 student's inference faster there once compiled (1.5x to
2.2x at batch 1/32/256 in experiments/results/serving_latency.md), but every process pays the
compile of each model and shape first, which `nas finetune`'s one-off latency measurement (and
the test suite) would pay on every run. A CPU deployment that serves long enough passes
`mode="default"` to `optimised_forward`.

The teacher gets the same treatment, loaded with `attn_implementation="sdpa"` (fused
attention), so a speed-up is the student's, not a handicap of the teacher's.
"""

from __future__ import annotations

import torch

from nas.compute.acceleration import Captured
from nas.deploy.latency import compare_latency, latency_batches

SERVE_BATCHES = (1, 32, 256)


def serving_mode(device) -> str:
    """The `torch.compile` mode of the optimised forward on `device` ("off": eager)."""
    return "reduce-overhead" if torch.device(device).type == "cuda" else "off"


def eager_forward(model):
    """Logits of `model` on tokenizer outputs, as `nas finetune` always timed them."""
    return lambda inputs: model(**inputs).logits


def optimised_forward(model, device, mode: str | None = None, keep_outputs: bool = True):
    """`model`'s logits through the serving path: inference mode, captured where that helps.

    `mode` overrides `serving_mode(device)`; `keep_outputs=False` skips copying the logits out
    of a CUDA graph's memory, for timing loops that drop them anyway.
    """
    model.eval()
    mode = serving_mode(device) if mode is None else mode
    captured = Captured(eager_forward(model), mode, f"{type(model).__name__} forward")
    if not keep_outputs:
        captured.keep_outputs = False

    def forward(inputs):
        with torch.inference_mode():
            return captured(inputs)

    forward.captured = captured
    return forward


def measure_serving(models: dict, split, device, sizes=SERVE_BATCHES, repeats: int = 20, warmup: int = 5,
                    mode: str | None = None) -> dict:
    """Median ms per forward of each model, eager and optimised, at each batch size of `sizes`.

    Returns {"eager": {name: {"batch_<n>_ms": ms}}, "optimised": {...}, "mode": the compile
    mode used, "capture_failed": {name: reason} for models whose capture fell back to eager}.
    All models and both paths run in this process on the same batches (nas.deploy.latency.compare_latency).
    """

    inputs = latency_batches(split, sizes)
    mode = serving_mode(device) if mode is None else mode
    for model in models.values():
        model.eval()
    eager = compare_latency({name: eager_forward(m) for name, m in models.items()}, inputs, device, warmup, repeats)
    fast = {name: optimised_forward(m, device, mode) for name, m in models.items()}
    optimised = compare_latency(fast, inputs, device, warmup, repeats)
    failed = {name: f.captured.failed for name, f in fast.items() if f.captured.failed}
    return {"eager": eager, "optimised": optimised, "mode": mode, "capture_failed": failed}
