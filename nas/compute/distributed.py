"""One search on several processes: torchrun + DistributedDataParallel.

`torchrun --nproc_per_node N -m nas search ...` starts N copies of `nas search`, and torchrun
tells each one its place through the environment (WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR,
MASTER_PORT). Together they take the same steps as one process would:

  * every process samples the same architecture path: the Gumbel generator is seeded alike
    everywhere, drawn from in the same order, and restored from the one checkpoint on resume;
  * each takes a contiguous slice of the step's batch (`shard`), so the slices make up the
    batch a single process would have used;
  * each weights its loss so that DDP's average of the gradients is the gradient of the whole
    batch's mean loss (`sharded_loss`);
  * rank 0 alone scores dev and writes; the others wait for its metrics (`broadcast_from_main`).

The helpers the search calls on every run (`wrap`, `average_gradients`, `barrier`, ...) take
`processes=None` for a plain single-process run and then do nothing, so the search need not ask
which kind of run it is.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import threading
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from nas.base.errors import UserError

# How long a process waits in a collective before giving up. Rank 0 scores the whole dev set
# (minutes on a CPU for the larger GLUE tasks) while the others wait in a broadcast, and the
# defaults (10 to 30 minutes) would end a long search there. A process that dies is noticed by
# torchrun, which stops the others at once, so a long timeout does not prolong failures.
GROUP_TIMEOUT = timedelta(hours=2)


@dataclass(frozen=True)
class Processes:
    """This process's place among those torchrun started."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def is_main(processes: Processes | None) -> bool:
    """Whether this process writes: rank 0, or the only process."""
    return processes is None or processes.is_main


class StoppedByLauncher(SystemExit):
    """torchrun stops the other processes with SIGTERM when one fails. Raising this instead of
    dying on the spot lets an atomic write in progress remove its temporary file; unlike Ctrl-C it
    writes no checkpoint, so the last complete one stays."""

    def __init__(self):
        super().__init__(128 + signal.SIGTERM)


def _stop(signum, frame):
    raise StoppedByLauncher()


# ---------------------------------------------------------------- joining the group


def launch_from_environment() -> tuple[int, int, int] | None:
    """(rank, local rank, world size) when torchrun started more than one process, else None."""
    if os.environ.get("WORLD_SIZE") is None:
        return None
    world = _integer_variable("WORLD_SIZE")
    if world <= 1:
        return None
    rank, local = _integer_variable("RANK"), _integer_variable("LOCAL_RANK")
    if not 0 <= rank < world or local < 0:
        raise UserError(f"environment variables RANK={rank}, LOCAL_RANK={local}: "
                        f"expected 0 <= RANK < WORLD_SIZE={world}")
    return rank, local, world


def _integer_variable(name: str) -> int:
    raw = os.environ.get(name)
    if raw is None:
        raise UserError(f"environment variable WORLD_SIZE is set but {name} is not; "
                        "start several processes with torchrun")
    try:
        return int(raw)
    except ValueError:
        raise UserError(f"environment variable {name}={raw!r}: expected an integer") from None


def process_device(requested: str | None, local_rank: int) -> torch.device:
    """The device of one of several processes: the CPU, or the GPU numbered LOCAL_RANK."""
    requested = requested or "auto"
    if requested == "cpu":
        return torch.device("cpu")
    if requested == "auto" and not torch.cuda.is_available():
        return torch.device("cpu")
    if requested not in ("auto", "cuda"):
        raise UserError(f"--device {requested}: under torchrun each process takes cuda:LOCAL_RANK; "
                        "pass --device cuda, cpu or auto")
    if not torch.cuda.is_available():
        raise UserError("--device cuda: CUDA is not available on this machine")
    if local_rank >= torch.cuda.device_count():
        raise UserError(f"LOCAL_RANK={local_rank}: this machine has {torch.cuda.device_count()} CUDA device(s); "
                        "start at most that many processes per machine")
    return torch.device("cuda", local_rank)


@contextlib.contextmanager
def joined(requested_device: str | None):
    """Join torchrun's process group (gloo on CPU, nccl on CUDA) and yield this process's
    `Processes`; yield None, and do nothing, when torchrun did not start several processes."""
    launch = launch_from_environment()
    if launch is None:
        yield None
        return
    rank, local_rank, world = launch
    device = process_device(requested_device, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=GROUP_TIMEOUT)
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _stop) if on_main_thread else None
    try:
        yield Processes(rank, local_rank, world, device)
    finally:
        if on_main_thread:
            signal.signal(signal.SIGTERM, previous)
    # Only after a clean finish: after a failure a peer may be gone, tearing NCCL down with a
    # collective in flight can block, and the process is about to exit anyway.
    dist.destroy_process_group()


# ---------------------------------------------------------------- one step's batch


def shard(rows: list, rank: int, world_size: int) -> list:
    """This rank's contiguous slice of a step's rows; the first `len(rows) % world_size` ranks
    take one row more. Batches are length-sorted (nas.data.batching), so a slice of neighbours pads
    no wider than the whole batch would, and the longest slice holds the shortest rows."""
    base, extra = divmod(len(rows), world_size)
    start = rank * base + min(rank, extra)
    return rows[start : start + base + (rank < extra)]


def step_seed(seed: int, rank: int, step: int, phase: int) -> int:
    """A seed for the dropout masks of one (rank, step, phase): a function of where the run is,
    so no random state has to survive a resume, and no two ranks draw the same masks."""
    return (((seed * 1_000_003 + step) * 4 + phase) * 65_537 + rank) % (2**63)


def sharded_loss(loss_fn, rows: list, processes: Processes):
    """`loss_fn(rows) -> (mean loss, {term: float})` on this process's shard of the step's `rows`.

    With n_r of the B rows on rank r (B = Σ_r n_r) and L_r the mean loss of its shard:

        value     L = Σ_r (n_r / B) · L_r, the mean over all B rows, the same on every rank
                  (the loop's log and its NaN check then agree everywhere), and each term alike;
        gradient  that of (N · n_r / B) · L_r, so DDP's average over the N ranks is
                  (1/N) Σ_r N · (n_r / B) · ∇L_r = ∇L, the gradient of the whole batch.

    A rank whose shard is empty (a last batch smaller than N) runs the batch's first row with
    weight 0: it must still join DDP's all-reduce, with the same path and so the same
    parameters used. Returns (loss, terms) like `loss_fn`.
    """
    mine = shard(rows, processes.rank, processes.world_size)
    local, terms = loss_fn(mine or rows[:1])
    # n_r · value, summed over ranks. A NaN times 0 stays NaN, so a non-finite loss on any rank
    # makes the sum non-finite on every rank and they all stop together.
    values = torch.tensor([local.item(), *terms.values()], dtype=torch.float64, device=processes.device) * len(mine)
    dist.all_reduce(values)
    values = (values / len(rows)).tolist()
    weighted = local * (processes.world_size * len(mine) / len(rows))
    # Value of the whole batch, gradient of this rank's weighted shard.
    total = weighted - weighted.detach() + values[0]
    return total, dict(zip(terms, values[1:]))


# ---------------------------------------------------------------- gradients


def wrap(model: torch.nn.Module, processes: Processes | None) -> torch.nn.Module:
    """The model itself in a single process; under torchrun, DDP around it, which averages the
    gradients of the weights across the ranks during backward.

    find_unused_parameters: each step runs only the sampled op of each edge and the sampled
    depth, so most parameters get no gradient; DDP finds which from the autograd graph. The
    path is the same on every rank, so the unused ones are unused everywhere and keep no
    gradient (None), as in a single process, and AdamW skips them alike. static_graph would be
    wrong here: it assumes the same parameters are used in every step.
    """
    if processes is None:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [processes.device.index] if processes.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=True)


def average_gradients(parameters, processes: Processes | None) -> None:
    """Average `parameters`' gradients over the ranks in place (those without one are skipped
    alike everywhere, since every rank used the same path)."""
    if processes is None:
        return
    for parameter in parameters:
        if parameter.grad is not None:
            dist.all_reduce(parameter.grad)
            parameter.grad /= processes.world_size


# ---------------------------------------------------------------- waiting for rank 0


def broadcast_from_main(value, processes: Processes | None):
    """Rank 0's `value` (any picklable object) on every rank; the others wait here for it."""
    if processes is None:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0, device=processes.device)
    return box[0]


def barrier(processes: Processes | None) -> None:
    if processes is None:
        return
    if processes.device.type == "cuda":
        dist.barrier(device_ids=[processes.device.index])
    else:
        dist.barrier()


def digest(tensors) -> str:
    """A short hash of the exact bytes of `tensors` (an iterable of tensors)."""
    sha = hashlib.sha256()
    for tensor in tensors:
        sha.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return sha.hexdigest()[:16]


def check_identical(value: str, processes: Processes | None, what: str) -> None:
    """Stop with an error if `value` (a digest) differs between the ranks: a replica that
    drifted would make every later step of the search wrong without any other sign."""
    if processes is None:
        return
    values = [None] * processes.world_size
    dist.all_gather_object(values, value)
    if len(set(values)) > 1:
        raise RuntimeError(f"the processes' {what} differ ({', '.join(values)}); the replicas drifted apart")
