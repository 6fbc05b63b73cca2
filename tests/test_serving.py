"""The serving path: optimised logits equal eager ones, latency measured both ways for every
model, and the batches it times have the rows their size says."""

import pytest
import torch

from nas.data.batching import EncodedSplit
from nas.deploy.latency import latency_batches
from nas.deploy.serving import measure_serving, optimised_forward, serving_mode
from searchspace.genotype import Genotype
from searchspace.student import compile_genotype

GENOTYPE = "v1;K=1;H=16;M=4;cell=cnn3~1,cnn3~0|identity~1,identity~0|dilated_cnn3~2,max_pool~0"


def _student(seed):
    torch.manual_seed(seed)
    return compile_genotype(Genotype.from_string(GENOTYPE), vocab_size=40, max_positions=32, num_labels=2, pair=False)


def _split(rows=5):
    ids = [[1 + (i + j) % 30 for j in range(3 + i % 4)] for i in range(rows)]
    return EncodedSplit(ids, [[0] * len(row) for row in ids], torch.zeros(rows, dtype=torch.long), pad_id=0)


def test_serving_mode_captures_on_cuda_only():
    assert serving_mode(torch.device("cpu")) == "off"
    assert serving_mode("cuda:0") == "reduce-overhead"


def test_optimised_forward_gives_the_eager_logits():
    model = _student(0).eval()
    batch = latency_batches(_split(), (4,))[4]
    with torch.no_grad():
        expected = model(**batch).logits
    got = optimised_forward(model, torch.device("cpu"))(batch)
    torch.testing.assert_close(got, expected)
    assert not got.requires_grad


def test_latency_batches_cycle_a_small_split_to_the_full_size():
    batches = latency_batches(_split(5), (1, 12))
    assert batches[1]["input_ids"].shape[0] == 1 and batches[12]["input_ids"].shape[0] == 12
    assert torch.equal(batches[12]["input_ids"][5], batches[12]["input_ids"][0])  # row 5 is row 0 again


def test_measure_serving_times_every_model_both_ways():
    models = {"student": _student(0), "teacher": _student(1)}
    result = measure_serving(models, _split(), torch.device("cpu"), sizes=(1, 3), repeats=2, warmup=1)
    assert result["mode"] == "off" and result["capture_failed"] == {}
    for path in ("eager", "optimised"):
        for name in models:
            assert set(result[path][name]) == {"batch_1_ms", "batch_3_ms"}
            assert all(ms > 0 for ms in result[path][name].values())


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_graph_serving_gives_the_eager_logits_on_every_call():
    device = torch.device("cuda")
    model = _student(0).to(device).eval()
    batches = {size: {k: v.to(device) for k, v in b.items()} for size, b in latency_batches(_split(), (1, 4)).items()}
    forward = optimised_forward(model, device)
    outputs = [(size, forward(batch)) for _ in range(3) for size, batch in batches.items()]
    assert forward.captured.failed is None, forward.captured.failed
    with torch.no_grad():
        for size, got in outputs:  # kept across replays: each is its own copy
            torch.testing.assert_close(got, model(**batches[size]).logits, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("size, calls, expected", [(1, 20, 20), (32, 20, 20), (64, 20, 10), (256, 20, 3), (256, 5, 3),
                                                   (4096, 20, 3), (256, 2, 2)])
def test_large_batches_are_timed_over_about_as_many_rows_as_batch_32(size, calls, expected):
    from nas.deploy.latency import calls_at

    assert calls_at(size, calls) == expected
