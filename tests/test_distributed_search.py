"""`nas search` on several processes (torchrun + DDP over gloo): sharding, gradients equal to a
single process's for the same global batch, exact resume, and a two-process search end to end.

The gradient and resume checks fork two gloo processes with torch.multiprocessing on a tiny
synthetic task (no teacher; forked, they start with everything imported, in well under a second
rather than the several seconds each fresh interpreter takes to import torch); the end-to-end check
launches `python -m torch.distributed.run --nproc_per_node 2 -m nas search` on the tiny GLUE fixture.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from nas.base.errors import UserError
from nas.compute import distributed
from nas.compute.distributed import Processes, shard
from nas.data.batching import EncodedSplit
from nas.data.tasks import get_task
from nas.train.distill_data import DistillData, Targets
from nas.train.search import Search, SearchConfig
from searchspace.genotype import Genotype
from searchspace.space import SearchSpace
from searchspace.supernet import SuperNet

CHECKOUT = Path(__file__).resolve().parent.parent
CPU = torch.device("cpu")


# ---------------------------------------------------------------- sharding and the environment


@pytest.mark.parametrize("size", [0, 1, 2, 3, 7, 64])
@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_shards_cover_the_batch_in_order_and_differ_by_at_most_one_row(size, world):
    rows = list(range(100, 100 + size))
    shards = [shard(rows, rank, world) for rank in range(world)]
    assert sum(shards, []) == rows
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1
    assert sizes == sorted(sizes, reverse=True)  # the extra rows go to the first ranks


def test_a_plain_run_is_single_process(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.launch_from_environment() is None
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert distributed.launch_from_environment() is None  # torchrun --nproc_per_node 1


def test_launch_environment_is_read_and_checked(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed.launch_from_environment() == (3, 1, 4)
    monkeypatch.setenv("RANK", "three")
    with pytest.raises(UserError, match="RANK='three'"):
        distributed.launch_from_environment()
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(UserError, match="RANK=4"):
        distributed.launch_from_environment()
    monkeypatch.delenv("RANK")
    with pytest.raises(UserError, match="RANK is not"):
        distributed.launch_from_environment()


def test_each_process_takes_its_own_gpu_or_the_cpu():
    assert distributed.process_device("cpu", 1) == CPU
    with pytest.raises(UserError, match="cuda:LOCAL_RANK"):
        distributed.process_device("cuda:0", 1)
    if not torch.cuda.is_available():
        assert distributed.process_device("auto", 1) == CPU
        with pytest.raises(UserError, match="not available"):
            distributed.process_device("cuda", 0)


def test_other_commands_refuse_to_run_under_torchrun(monkeypatch, tmp_path, run_cli):
    monkeypatch.setenv("WORLD_SIZE", "2")
    code, _, err = run_cli("validate", tmp_path / "arch.json")
    assert code == 2
    assert "only `nas search`" in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------- two gloo processes vs one


def tiny_search(processes, out: Path, dropout: float = 0.0, seed: int = 0):
    """A Search on 25 synthetic rows of 3..12 tokens (no teacher needed): 20 for weight steps in
    batches of 7 (7, 7, 6 rows), 5 held out for architecture steps (shards of 3 and 2)."""
    generator = torch.Generator().manual_seed(seed)
    rows = 25
    lengths = torch.randint(3, 13, (rows,), generator=generator).tolist()
    ids = [[2] + torch.randint(5, 30, (n - 1,), generator=generator).tolist() for n in lengths]
    train = EncodedSplit(ids, [[0] * n for n in lengths], torch.arange(rows) % 2, 0)
    targets = Targets(torch.randn(rows, 2, generator=generator), torch.randn(rows, 3, 2, generator=generator))
    data = DistillData(train, targets, {"dev": train}, [0.7, 0.6, 0.5], rows)
    config = SearchConfig(hidden_size=16, max_cells=3, dropout=dropout, batch_size=7, arch_fraction=0.2,
                          warmup_epochs=0, epochs=2)
    torch.manual_seed(seed)
    supernet = SuperNet(SearchSpace(16, 3, dropout=dropout), 30, 64, 2, False)
    return Search(config, get_task("sst2"), data, supernet, CPU, out, processes=processes)


def gradient_record(search, batches) -> dict:
    """Loss, terms and every gradient (None where a parameter was not used) of one weight step
    on each batch in turn, then the architecture logits' gradients of one architecture step."""
    record = {"weights": []}
    for rows in batches:
        search.weight_optimizer.zero_grad(set_to_none=True)
        loss, terms = search.step_loss(rows)
        loss.backward()
        grads = {name: None if p.grad is None else p.grad.clone() for name, p in search.supernet.named_parameters()
                 if name not in ("op_logits", "depth_logits")}
        record["weights"].append((loss.item(), terms, grads))
    search.state.step = 1
    search.architecture_step(search.state, None)
    record["arch"] = [p.grad.clone() for p in search.supernet.arch_parameters()]
    return record


def equivalence_batches(search):
    """An odd batch (shards of 4 and 3 rows, padded to different widths) and a one-row batch (an
    empty shard on rank 1)."""
    batch = search.epoch_batches(0)[0]
    assert len(batch) == 7 and len({len(search.data.train.input_ids[i]) for i in batch}) > 1
    return [batch, batch[:1]]


def interrupt_after_step(search, step: int) -> None:
    original = search.architecture_step

    def wrapper(state, batch):
        result = original(state, batch)
        if state.step == step:
            raise KeyboardInterrupt
        return result

    search.architecture_step = wrapper  # run() reads the hook from the instance


def _worker(rank: int, world: int, store: str, root: str) -> None:
    """One of two gloo processes: the gradient record, then an uninterrupted run and an
    interrupted-and-resumed one with dropout on, everything saved under `root`."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=120))
    processes = Processes(rank, rank, world, CPU)
    root = Path(root)
    with pytest.raises(RuntimeError, match="drifted apart"):  # the end-of-epoch replica check can fail
        distributed.check_identical(f"rank {rank}", processes, "test values")

    search = tiny_search(processes, root / "unused")
    torch.save(gradient_record(search, equivalence_batches(search)), root / f"grads_rank{rank}.pt")

    tiny_search(processes, root / "straight", dropout=0.1).run()
    interrupted = tiny_search(processes, root / "resumed", dropout=0.1)
    interrupt_after_step(interrupted, 4)  # the middle of epoch 2 (3 weight steps per epoch)
    with pytest.raises(KeyboardInterrupt):
        interrupted.run()
    dist.barrier()
    resumed = tiny_search(processes, root / "resumed", dropout=0.1)
    resumed.restore(root / "resumed" / "checkpoint.pt")
    dist.barrier()
    resumed.run()
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> Path:
    """The single-process gradient record, then `_worker` on two gloo processes; returns the
    folder they wrote. (The single process goes first: its first optimizer imports torch._dynamo,
    seconds that the forked processes then inherit instead of paying twice.)"""
    import torch.multiprocessing as mp

    root = tmp_path_factory.mktemp("two_processes")
    single = tiny_search(None, root / "single")
    torch.save(gradient_record(single, equivalence_batches(single)), root / "grads_single.pt")
    mp.start_processes(_worker, args=(2, str(root / "store"), str(root)), nprocs=2, join=True, start_method="fork")
    return root


@pytest.mark.slow
def test_two_processes_average_to_the_single_process_gradient(two_processes):
    expected = torch.load(two_processes / "grads_single.pt", weights_only=False)
    ranks = [torch.load(two_processes / f"grads_rank{r}.pt", weights_only=False) for r in (0, 1)]

    for got in ranks:
        for (loss, terms, grads), (loss1, terms1, grads1) in zip(got["weights"], expected["weights"]):
            assert loss == pytest.approx(loss1, rel=1e-6)
            assert terms == pytest.approx(terms1, rel=1e-6)
            assert {k for k, g in grads.items() if g is None} == {k for k, g in grads1.items() if g is None}
            assert any(g is None for g in grads.values()) and any(g is not None for g in grads.values())
            for name, grad in grads.items():
                if grad is not None:
                    torch.testing.assert_close(grad, grads1[name], rtol=1e-5, atol=1e-7, msg=name)
        for grad, grad1 in zip(got["arch"], expected["arch"]):
            torch.testing.assert_close(grad, grad1, rtol=1e-5, atol=1e-7)
    # The replicas hold bitwise the same averaged gradients.
    for (_, _, a), (_, _, b) in zip(ranks[0]["weights"], ranks[1]["weights"]):
        assert all((a[k] is None and b[k] is None) or torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(a, b) for a, b in zip(ranks[0]["arch"], ranks[1]["arch"]))


@pytest.mark.slow
def test_gradients_would_differ_without_the_shard_weights(two_processes, tmp_path):
    """The check above can fail: a plain DDP average of the shards' mean losses (4 and 3 rows
    weighed alike) is not the 7-row batch's gradient."""
    single = tiny_search(None, tmp_path)
    rows = equivalence_batches(single)[0]
    shard_grads = []
    for part in (shard(rows, 0, 2), shard(rows, 1, 2)):
        single.generator.set_state(torch.Generator().manual_seed(single.config.seed + 17).get_state())
        single.weight_optimizer.zero_grad(set_to_none=True)
        single.loss(part)[0].backward()
        shard_grads.append(single.supernet.heads[0].out.weight.grad.clone())
    naive = (shard_grads[0] + shard_grads[1]) / 2
    got = torch.load(two_processes / "grads_rank0.pt", weights_only=False)["weights"][0][2]["heads.0.out.weight"]
    assert not torch.allclose(naive, got, rtol=1e-3, atol=1e-6)


@pytest.mark.slow
def test_a_resumed_two_process_search_matches_an_uninterrupted_one(two_processes):
    straight = torch.load(two_processes / "straight" / "checkpoint.pt", weights_only=False)
    resumed = torch.load(two_processes / "resumed" / "checkpoint.pt", weights_only=False)
    assert straight["loop"]["epoch"] == resumed["loop"]["epoch"] == 2
    assert all(torch.equal(straight["supernet"][k], resumed["supernet"][k]) for k in straight["supernet"])
    assert torch.equal(straight["generator"], resumed["generator"])
    assert straight["genotypes"] == resumed["genotypes"]
    assert straight["loop"]["history"] == resumed["loop"]["history"]
    # Only rank 0 wrote: one checkpoint, and nothing left from temporary files.
    assert not [p for p in (two_processes / "resumed").rglob("*") if p.name.endswith(".tmp")]


# ---------------------------------------------------------------- torchrun end to end


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_torchrun_two_process_search_writes_a_valid_arch_json(prepared, tiny_glue, tmp_path):
    teacher, knowledge = prepared["sst2"]
    out = tmp_path / "search"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
        "--master_port", str(free_port()), "-m", "nas", "search", "--task", "sst2", "--data-dir", str(tiny_glue),
        "--teacher", str(teacher), "--knowledge", str(knowledge), "--out", str(out), "--device", "cpu",
        "--epochs", "2", "--set", "hidden_size=16", "--set", "max_cells=3", "--set", "warmup_epochs=0",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=CHECKOUT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr

    genotype = Genotype.load(out / "arch.json")
    assert genotype.extra["processes"] == 2
    assert genotype.max_cells == 3 and len(genotype.extra["history"]) == 2
    assert genotype.provenance["config"]["batch_size"] == 64  # the global batch, as in one process
    assert done.stdout.count("search sst2:") == 1  # rank 0 alone reports
    assert len(list((out / "tensorboard").glob("events.out.tfevents.*"))) == 1  # and alone logs
    assert sorted(p.name for p in (out / "cells").iterdir()) == ["epoch_001.dot", "epoch_002.dot"]
    assert torch.load(out / "checkpoint.pt", weights_only=False)["loop"]["epoch"] == 2
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


@pytest.mark.slow
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_torchrun_one_process_cuda_search_with_the_fast_step(prepared, tiny_glue, tmp_path):
    """torchrun on one GPU, bf16 autocast and bucketed batches: a valid arch.json (experiments/gpu_check.sh)."""
    teacher, knowledge = prepared["sst2"]
    out = tmp_path / "search"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1", "--master_addr", "127.0.0.1",
        "--master_port", str(free_port()), "-m", "nas", "search", "--task", "sst2", "--data-dir", str(tiny_glue),
        "--teacher", str(teacher), "--knowledge", str(knowledge), "--out", str(out), "--device", "cuda",
        "--epochs", "2", "--set", "hidden_size=16", "--set", "max_cells=3", "--set", "warmup_epochs=0",
        "--set", "amp=bf16", "--set", "bucket=true",
    ]
    done = subprocess.run(command, cwd=CHECKOUT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    genotype = Genotype.load(out / "arch.json")
    assert genotype.max_cells == 3 and len(genotype.extra["history"]) == 2
