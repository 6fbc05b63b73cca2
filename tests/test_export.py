"""ONNX and TorchScript exports of random students equal PyTorch within 1e-4, for single
sentences and pairs, at batch sizes and lengths other than the traced ones; `nas export` checks
before it writes and says what to install when the ONNX packages are missing."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from nas.data.batching import EncodedSplit
from nas.deploy.export import export_model, onnx_runner, torch_runner
from searchspace.random_arch import random_genotypes
from searchspace.student import compile_genotype

HAS_ORT = importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None
FORMATS = ["torchscript", pytest.param("onnx", marks=pytest.mark.skipif(not HAS_ORT, reason="needs the deploy extra"))]
VOCAB = 50
GENOTYPES = random_genotypes(7, 4, hidden_size=16, max_depth=4, max_cells=4)


def random_split(rng: torch.Generator, rows: int, pair: bool) -> EncodedSplit:
    """Rows of random lengths 1..12 (pairs: two segments marked by token_type_ids)."""
    ids, types = [], []
    for _ in range(rows):
        length = int(torch.randint(1, 13, (1,), generator=rng))
        ids.append(torch.randint(5, VOCAB, (length,), generator=rng).tolist())
        cut = int(torch.randint(0, length + 1, (1,), generator=rng)) if pair else length
        types.append([0] * cut + [1] * (length - cut))
    return EncodedSplit(ids, types, torch.zeros(rows), 0)


def fresh_batch(rng: torch.Generator, batch: int, length: int, pair: bool) -> dict:
    """A padded batch at a shape the export never saw: random row lengths up to `length`."""
    ids = torch.randint(5, VOCAB, (batch, length), generator=rng)
    lengths = torch.randint(1, length + 1, (batch,), generator=rng)
    lengths[0] = length
    mask = (torch.arange(length)[None] < lengths[:, None]).long()  # (B, T)
    types = ((torch.arange(length)[None] >= (lengths[:, None] // 2)) & mask.bool()).long() if pair else torch.zeros_like(ids)
    return {"input_ids": ids * mask, "attention_mask": mask, "token_type_ids": types}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("index", range(len(GENOTYPES)))
def test_export_equals_pytorch_on_random_genotypes(fmt, index, tmp_path):
    pair = index % 2 == 1
    torch.manual_seed(index)
    model = compile_genotype(GENOTYPES[index], vocab_size=VOCAB, max_positions=64, num_labels=3, pair=pair).eval()
    rng = torch.Generator().manual_seed(index)
    out = tmp_path / f"student.{fmt}"
    check = export_model(model, random_split(rng, 20, pair), fmt, out, tolerance=1e-4)
    assert out.is_file() and check["max_abs_difference"] <= 1e-4
    exported = onnx_runner(out.read_bytes()) if fmt == "onnx" else torch_runner(torch.jit.load(str(out)))
    reference = torch_runner(model)
    for batch, length in ((1, 1), (1, 23), (5, 7), (32, 40)):
        inputs = fresh_batch(rng, batch, length, pair)
        expected = reference(inputs)
        assert expected.shape == (batch, 3)
        torch.testing.assert_close(exported(inputs), expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("task", ["sst2", "mrpc"])
def test_nas_export_writes_the_file_and_a_report(finetuned, tiny_glue, run_cli, tmp_path, fmt, task):
    out = tmp_path / f"student.{fmt}"
    code, text, err = run_cli("export", "--model", finetuned[task], "--format", fmt, "--out", out,
                              "--data-dir", tiny_glue, "--repeats", 2)
    assert code == 0, err
    report = json.loads(out.with_name(out.name + ".json").read_text())
    assert report["check"]["max_abs_difference"] <= 1e-4 and report["check"]["rows_checked"] == 32
    # The teacher recorded in metrics.json is timed beside PyTorch and the export.
    assert set(report["latency_ms"]) == {"pytorch", fmt, "teacher (pytorch)"}
    for timings in report["latency_ms"].values():
        assert timings["batch_1_ms"] > 0 and timings["batch_32_ms"] > 0
    assert f"{report['check']['max_abs_difference']:.2e}" in text


def test_an_export_that_does_not_match_is_not_written(finetuned, tiny_glue, run_cli, tmp_path):
    out = tmp_path / "student.pt"
    # A negative tolerance no difference can meet: the check's failure path.
    code, _, err = run_cli("export", "--model", finetuned["sst2"], "--format", "torchscript", "--out", out,
                           "--data-dir", tiny_glue, "--tolerance", "-1")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "not written" in err
    assert not out.exists() and not list(tmp_path.iterdir())


def test_without_the_onnx_packages_it_says_what_to_install(finetuned, run_cli, tmp_path, monkeypatch):
    import nas.deploy.export

    monkeypatch.setattr(nas.deploy.export, "DEPLOY_PACKAGES", {"onnx_not_installed_here": "onnx", "onnxruntime": "onnxruntime"})
    code, _, err = run_cli("export", "--model", finetuned["sst2"], "--format", "onnx", "--out", tmp_path / "s.onnx")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "adabert-nas[deploy]" in err and "onnx" in err


def test_bad_export_arguments_are_one_line_errors(finetuned, run_cli, tmp_path):
    code, _, err = run_cli("export", "--model", finetuned["sst2"], "--format", "tflite", "--out", tmp_path / "x")
    assert code == 2 and "onnx or torchscript" in err
    code, _, err = run_cli("export", "--model", tmp_path, "--format", "torchscript", "--out", tmp_path / "x")
    assert code == 2 and "no config.json" in err
