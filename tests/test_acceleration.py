"""The fast step: compiled and autocast forwards equal eager, the fused optimizer equals the
default one, bucketed batches equal dynamic ones up to padding, and a failed capture falls back."""

import pytest
import torch

from nas.base.errors import UserError
from nas.compute.acceleration import Captured, adamw, autocast, batch_buckets, check_speed_settings
from nas.data.batching import BUCKETS, EncodedSplit, bucket_width, collate
from searchspace.genotype import Genotype
from searchspace.student import compile_genotype



def cuda(test):
    """Marked `cuda` (experiments/gpu_check.sh runs `-m cuda`) and skipped without a GPU."""
    return pytest.mark.cuda(pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")(test))


GENOTYPE = "v1;K=1;H=16;M=4;cell=cnn3~1,cnn3~0|identity~1,identity~0|dilated_cnn3~2,max_pool~0"


def _student(seed=0):
    torch.manual_seed(seed)
    return compile_genotype(Genotype.from_string(GENOTYPE), vocab_size=50, max_positions=64, num_labels=2, pair=True)


def _batch(batch=4, width=16, seed=0):
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([width, width - 3, 5, 9][:batch])
    mask = (torch.arange(width)[None] < lengths[:, None]).long()  # (B, T)
    ids = torch.randint(1, 50, (batch, width), generator=generator) * mask
    types = (torch.arange(width)[None] >= (lengths[:, None] // 2)).long() * mask
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def _train_step(model, forward, inputs, labels):
    """One step's loss and gradients through `forward` (eager or captured)."""
    model.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(forward(inputs).float(), labels)
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def _assert_step_matches(mode, device, amp="off", tolerance=1e-4):
    model = _student().to(device).eval()  # eval: no dropout, whose compiled RNG differs from eager's
    inputs = {k: v.to(device) for k, v in _batch().items()}
    labels = torch.tensor([0, 1, 1, 0], device=device)
    eager = lambda batch: model(**batch).logits  # noqa: E731
    captured = Captured(eager, mode, "test forward")

    def fast(batch):
        with autocast(device, amp):
            return captured(batch)

    reference = _train_step(model, eager, inputs, labels)
    got = _train_step(model, fast, inputs, labels)
    got = _train_step(model, fast, inputs, labels)  # a second call: a CUDA graph's replay, not its recording
    assert captured.failed is None, captured.failed
    torch.testing.assert_close(got[0], reference[0], atol=tolerance, rtol=tolerance)
    for name, grad in reference[1].items():
        torch.testing.assert_close(got[1][name], grad, atol=tolerance * 10, rtol=tolerance * 10, msg=name)


def test_compiled_step_equals_eager_on_cpu():
    """torch.compile (inductor, C++ on CPU) of the student's forward and backward: the same loss and gradients."""
    pytest.importorskip("torch._inductor")
    model = _student().eval()  # eval: dropout off, so eager and compiled draw no random masks
    inputs, labels = _batch(), torch.tensor([0, 1, 1, 0])
    eager = lambda batch: model(**batch).logits  # noqa: E731
    captured = Captured(eager, "default", "test forward")
    reference = _train_step(model, eager, inputs, labels)
    got = _train_step(model, captured, inputs, labels)
    if captured.failed is not None:
        pytest.skip(f"torch.compile does not work on this machine: {captured.failed}")
    torch.testing.assert_close(got[0], reference[0], atol=1e-5, rtol=1e-5)
    for name, grad in reference[1].items():
        torch.testing.assert_close(got[1][name], grad, atol=1e-4, rtol=1e-4, msg=name)


def test_a_failed_capture_falls_back_to_eager_once():
    calls = []

    def forward(x):
        calls.append(x)
        return x * 2

    captured = Captured(forward, "default", "test forward")
    captured.compiled = lambda x: (_ for _ in ()).throw(RuntimeError("no compiler here"))
    with pytest.warns(UserWarning, match="no compiler here"):
        assert captured(torch.ones(2)).tolist() == [2.0, 2.0]
    assert not captured.active and "RuntimeError" in captured.failed
    assert captured(torch.ones(1)).tolist() == [2.0]  # eager from now on, no second warning


def test_fused_adamw_equals_the_default_update():
    updated = []
    for fused in (False, True):
        torch.manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(7, 5)), torch.nn.Parameter(torch.randn(5))]
        optimizer = adamw(params, lr=1e-2, weight_decay=1e-2, fused=fused)
        for step in range(3):
            for p in params:
                p.grad = torch.full_like(p, 0.1 * (step + 1))
            optimizer.step()
        updated.append([p.detach().clone() for p in params])
    for default, fused in zip(*updated):
        torch.testing.assert_close(fused, default, atol=1e-6, rtol=1e-6)


def test_bf16_autocast_is_close_to_float32_on_cpu():
    model = _student().eval()
    inputs = _batch()
    with torch.no_grad():
        reference = model(**inputs).logits
        with autocast(torch.device("cpu"), "bf16"):
            fast = model(**inputs).logits
    assert fast.dtype == torch.bfloat16
    torch.testing.assert_close(fast.float(), reference, atol=5e-2, rtol=5e-2)


def test_bucketed_batches_give_the_same_logits_as_dynamic_ones():
    ids = [[5, 6, 7], [8, 9], [10, 11, 12, 13, 14, 15, 16, 17, 18]]
    split = EncodedSplit(ids, [[0] * len(row) for row in ids], torch.tensor([0, 1, 0]), pad_id=0)
    dynamic, bucketed = collate(split, [0, 1, 2]), collate(split, [0, 1, 2], BUCKETS)
    assert dynamic["input_ids"].shape[1] == 9 and bucketed["input_ids"].shape[1] == 16
    model = _student().eval()
    keys = ("input_ids", "attention_mask", "token_type_ids")
    with torch.no_grad():
        a = model(**{k: dynamic[k] for k in keys}).logits
        b = model(**{k: bucketed[k] for k in keys}).logits
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_bucket_width_and_settings():
    assert [bucket_width(n, BUCKETS) for n in (1, 8, 9, 33, 512, 600)] == [8, 8, 16, 64, 512, 600]
    assert bucket_width(13, ()) == 13
    assert batch_buckets("off", False) == () and batch_buckets("reduce-overhead", False) == BUCKETS
    with pytest.raises(UserError, match="'compile'"):
        check_speed_settings("fast", "off")
    with pytest.raises(UserError, match="'amp'"):
        check_speed_settings("off", "fp8")


@cuda
def test_cuda_graph_step_with_bf16_matches_eager():
    _assert_step_matches("reduce-overhead", torch.device("cuda"), amp="bf16", tolerance=3e-2)


@cuda
def test_cuda_compiled_step_float32_matches_eager():
    _assert_step_matches("default", torch.device("cuda"), tolerance=1e-3)
