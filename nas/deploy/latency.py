"""Inference latency, measured side by side: the models being compared run in the same process,
on the same inputs, interleaved repeat by repeat, so machine noise hits them alike."""

from __future__ import annotations

import statistics
import time

import torch

from nas.data.batching import EncodedSplit, collate, model_inputs, to_device


def latency_batches(split: EncodedSplit, sizes=(1, 32)) -> dict[int, dict]:
    """The first rows of a (dev) split as model inputs, one batch per size; a split with fewer
    rows than a size is cycled, so a batch of 256 has 256 rows even on a tiny dev set."""
    return {size: model_inputs(collate(split, [i % len(split) for i in range(size)])) for size in sizes}


def synchronise(device) -> None:
    """Wait for the device's queued work, so a clock read afterwards counts it (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def compare_latency(models: dict, inputs: dict[int, dict], device, warmup: int = 5, repeats: int = 20) -> dict:
    """Median milliseconds per forward pass: {model name: {"batch_<size>_ms": ms}}.

    `models` maps a name to a callable taking the tokenizer's keys. On CUDA the clock is read
    after a device synchronisation, so queued kernels are counted.
    """
    results = {name: {} for name in models}
    for size, batch in inputs.items():
        batch = to_device(batch, device)
        calls, rounds = calls_at(size, warmup), calls_at(size, repeats)
        for forward in models.values():
            for _ in range(calls):
                forward(batch)
        timings = {name: [] for name in models}
        for _ in range(rounds):
            for name, forward in models.items():
                synchronise(device)
                start = time.perf_counter()
                forward(batch)
                synchronise(device)
                timings[name].append((time.perf_counter() - start) * 1000)
        for name, values in timings.items():
            results[name][f"batch_{size}_ms"] = round(statistics.median(values), 3)
    return results


def calls_at(size: int, calls: int, reference: int = 32, least: int = 3) -> int:
    """Calls to make at batch `size`: `calls` up to batch `reference`, then fewer, so a large batch
    is timed over about as many rows as batch 32 (a CPU teacher takes seconds per batch of 256,
    and twenty of them, eager and optimised, would outlast the finetune), but never under `least`."""
    if size <= reference or calls <= least:
        return calls
    return max(least, calls * reference // size)


def speedups(latency: dict, baseline: str) -> dict:
    """How many times faster than `baseline` each other model is, per batch size."""
    out = {}
    for name, values in latency.items():
        if name == baseline:
            continue
        out[name] = {key.replace("_ms", "_speedup"): round(latency[baseline][key] / value, 2) for key, value in values.items() if value}
    return out
