"""`nas export`: a classifier folder as one ONNX or TorchScript file, checked before it is written.

Both formats take `input_ids`, `attention_mask` and `token_type_ids` (int64, shape (batch,
length), both dynamic) and return `logits` (batch, labels). The model is traced on a batch of
real dev rows, then run against PyTorch on every dev row read (length-sorted batches and
single rows, so several lengths and batch sizes are compared); the file is written only when
the largest absolute difference is within the tolerance. ONNX uses the TorchScript-based
exporter (`dynamo=False`): it keeps batch and length symbolic for this model, and needs only
the `onnx` package; the check and the timing need `onnxruntime`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import tempfile
import warnings
from pathlib import Path

import torch

from nas.base import atomic
from nas.base.errors import UserError
from nas.data.batching import EncodedSplit, collate, model_inputs
from nas.deploy.latency import compare_latency, latency_batches
from searchspace.student import _LogitsOnly

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
DEPLOY_PACKAGES = {"onnx": "onnx", "onnxruntime": "onnxruntime"}
INSTALL_HINT = "pip install 'adabert-nas[deploy]' (or: pip install onnx onnxruntime)"


def require_onnx() -> None:
    """The ONNX packages are an optional extra; say in one line how to get them."""
    missing = [package for module, package in DEPLOY_PACKAGES.items() if importlib.util.find_spec(module) is None]
    if missing:
        raise UserError(f"--format onnx needs {', '.join(missing)}: {INSTALL_HINT}")


def encode_rows(tokenizer, texts: list[tuple[str, ...]], max_length: int) -> EncodedSplit:
    """Rows as the batching module's split, so batches are built as in training."""
    first = [t[0] for t in texts]
    second = [t[1] for t in texts] if len(texts[0]) == 2 else None
    encoded = tokenizer(first, second, truncation=True, max_length=max_length, return_token_type_ids=True)
    return EncodedSplit(encoded["input_ids"], encoded["token_type_ids"], torch.zeros(len(texts)), tokenizer.pad_token_id or 0)


def check_batches(split: EncodedSplit, batch_size: int = 8, singles: int = 4) -> list[dict]:
    """Length-sorted batches over every row, plus a few rows alone (batch 1, unpadded)."""
    order = sorted(range(len(split)), key=lambda i: split.lengths[i])
    batches = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
    batches += [[i] for i in order[:: max(1, len(order) // singles)][:singles]]
    return [model_inputs(collate(split, rows)) for rows in batches]


def full_inputs(batch: dict) -> tuple[torch.Tensor, ...]:
    ids = batch["input_ids"]
    return ids, batch.get("attention_mask", torch.ones_like(ids)), batch.get("token_type_ids", torch.zeros_like(ids))


@contextlib.contextmanager
def quiet_tracing():
    """The tracers warn that their TorchScript path is deprecated and that iterating over the
    cell's three node weights is traced as three steps, which it always is; the check that
    follows every export is what says whether the trace is right."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def onnx_bytes(model, example: dict) -> bytes:

    wrapped = _LogitsOnly(model).eval()
    buffer = io.BytesIO()
    axes = {name: {0: "batch", 1: "length"} for name in INPUTS}
    with quiet_tracing():
        torch.onnx.export(wrapped, full_inputs(example), buffer, input_names=list(INPUTS), output_names=["logits"],
                          dynamic_axes={**axes, "logits": {0: "batch"}}, opset_version=17, dynamo=False)
    model.eval()  # the exporter puts the wrapper back in its former mode, which is eval; be explicit
    return buffer.getvalue()


def onnx_runner(data: bytes, threads: int | None = None):
    """A callable (batch dict -> logits tensor) running the ONNX model with ONNX Runtime on the CPU."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    # As many threads as torch uses, and no spinning: by default ONNX Runtime's idle threads keep
    # spinning after a call, which takes the cores from the PyTorch model timed right after it
    # (a batch-1 student measured 190 ms beside it, 3 ms alone).
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    # The exporter drops inputs the graph never reads (token_type_ids of a single-sentence student).
    names = [i.name for i in session.get_inputs()]

    def run(batch: dict) -> torch.Tensor:
        values = dict(zip(INPUTS, full_inputs(batch)))
        return torch.from_numpy(session.run(None, {name: values[name].numpy() for name in names})[0])

    run.input_names = names
    return run


def torch_runner(model):
    def run(batch: dict) -> torch.Tensor:
        with torch.inference_mode():
            return model(*full_inputs(batch)) if isinstance(model, torch.jit.ScriptModule) else model(**batch).logits

    return run


def max_difference(reference, candidate, batches: list[dict]) -> float:
    return max((reference(b).float() - candidate(b).float()).abs().max().item() for b in batches)


def export_model(model, split: EncodedSplit, fmt: str, out: Path, tolerance: float) -> dict:
    """Export `model` (eval, CPU), check it on `split`'s rows, write `out` only if it matches."""
    batches = check_batches(split)
    example = model_inputs(collate(split, list(range(min(8, len(split))))))
    reference = torch_runner(model)
    if fmt == "onnx":
        data = onnx_bytes(model, example)
        candidate = onnx_runner(data)
        difference = max_difference(reference, candidate, batches)
        inputs = candidate.input_names
    else:
        from searchspace.student import export_torchscript

        # export_torchscript saves as it traces: into a temporary file beside `out`, renamed if it passes.
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
        os.close(fd)
        try:
            with quiet_tracing():
                export_torchscript(model, example, tmp)
                difference = max_difference(reference, torch_runner(torch.jit.load(tmp)), batches)
            data = Path(tmp).read_bytes()
        finally:
            os.unlink(tmp)
        inputs = list(INPUTS)
    if not difference <= tolerance:
        raise UserError(f"{out}: not written: the {fmt} export differs from PyTorch by {difference:.3g} on the dev rows "
                        f"(tolerance {tolerance:g})")
    atomic.write_bytes(out, data)
    return {"format": fmt, "out": str(out), "inputs": inputs, "rows_checked": len(split),
            "batches_checked": len(batches), "max_abs_difference": difference, "tolerance": tolerance,
            "bytes": len(data)}


def measure(runners: dict, split: EncodedSplit, repeats: int) -> dict:
    """Median ms per forward pass at batch 1 and 32 on the first dev rows, every runner interleaved."""

    return compare_latency(runners, latency_batches(split), torch.device("cpu"), repeats=repeats)


CHECK_ROWS = 256  # dev rows an export beside a student is checked on: several lengths, seconds at most


def first_rows(split: EncodedSplit, count: int) -> EncodedSplit:
    return EncodedSplit(split.input_ids[:count], split.token_type_ids[:count], split.labels[:count], split.pad_id)


def onnx_available() -> bool:
    return all(importlib.util.find_spec(module) is not None for module in DEPLOY_PACKAGES)


def onnx_beside(model, split: EncodedSplit, folder: Path, repeats: int, tolerance: float = 1e-4) -> dict | None:
    """`model.onnx` in a student folder when the deploy extra is installed (else None), with its
    check and its ONNX Runtime latency beside the PyTorch model's, for metrics.json.

    A mismatch is recorded rather than raised: the student itself is fine, only the ONNX file is
    missing (and the record says why)."""
    if not onnx_available():
        return None
    model = model.to("cpu").eval()
    split = first_rows(split, CHECK_ROWS)
    out = Path(folder) / "model.onnx"
    try:
        check = export_model(model, split, "onnx", out, tolerance)
    except UserError as error:
        return {"file": None, "error": str(error)}
    latency = measure({"pytorch": torch_runner(model), "onnxruntime": onnx_runner(out.read_bytes())}, split, repeats)
    return {"file": out.name, "inputs": check["inputs"], "max_abs_difference": check["max_abs_difference"],
            "rows_checked": check["rows_checked"], "latency_ms": latency, "latency_device": "cpu"}
