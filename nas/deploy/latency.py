"""Inference latency, measured side by side: the models being compared run in the same process,
on the same inputs, interleaved repeat by repeat, so machine noise hits them alike."""

from __future__ import annotations

import functools

import torch

from nas.data.batching import EncodedSplit, collate, encode, model_inputs, to_device
from nas.deploy.timing import interleaved_medians


def dev_batch_length(examples: list, tokenizer, batch_size: int, max_length: int, regression: bool = False) -> int:
    """The padded length of the batch of the first `batch_size` dev `examples` (cycled when fewer),
    the batch `measure_serving` times student and teacher on (`latency_batches`)."""
    split = encode(examples[:batch_size], tokenizer, max_length, regression)
    return latency_batches(split, (batch_size,))[batch_size]["input_ids"].shape[1]


def latency_batches(split: EncodedSplit, sizes=(1, 32)) -> dict[int, dict]:
    """The first rows of a (dev) split as model inputs, one batch per size; a split with fewer
    rows than a size is cycled, so a batch of 256 has 256 rows even on a tiny dev set."""
    return {size: model_inputs(collate(split, [i % len(split) for i in range(size)])) for size in sizes}


@torch.no_grad()
def compare_latency(models: dict, inputs: dict[int, dict], device, warmup: int = 5, repeats: int = 20) -> dict:
    """Median milliseconds per forward pass: {model name: {"batch_<size>_ms": ms}}.

    `models` maps a name to a callable taking the tokenizer's keys. Timed by the one timing
    loop (nas/deploy/timing.py): warm-up calls, then rounds of one call each, the models taking
    turns, the median over rounds; on CUDA the clock is read after a device synchronisation.
    """
    results = {name: {} for name in models}
    for size, batch in inputs.items():
        batch = to_device(batch, device)
        calls = {name: functools.partial(forward, batch) for name, forward in models.items()}
        ms = interleaved_medians(calls, device, warmup=calls_at(size, warmup), repeats=calls_at(size, repeats))
        for name, value in ms.items():
            results[name][f"batch_{size}_ms"] = round(value, 3)
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
