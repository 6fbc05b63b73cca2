"""Token ids as flat arrays: tokenised once on every core, stored beside the teacher's logits.

A split of N rows is three arrays: the input ids of all rows one after another (int32), their
token types (int8) and N+1 offsets (int64), row i being `flat[offsets[i]:offsets[i+1]]`. On
disk they are `.npy` files that load memory-mapped, so a 1.35M-row transfer set costs its
bytes on disk once instead of ten minutes of tokenising per command and gigabytes of Python
lists per process.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import multiprocessing
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

CHUNK_ROWS = 4096  # rows a worker tokenises at a time: big enough to amortise the pickling
POOL_MIN_ROWS = 16_384  # below this, starting worker processes costs more than it saves
# How the cores are used by default: measured on the 2-core machine (experiments/results/scale.md,
# SST-2 train, best of 2), a process pool ran 1.9x one thread and the fast tokenizer's own
# threads 1.3x, since the pool also spreads the conversion of the tokenizer's Python lists,
# which its threads leave on one core. Below POOL_MIN_ROWS rows, starting the pool costs more.
PARALLEL = "processes"
KINDS = {"input_ids": np.int32, "token_type_ids": np.int8}


class RaggedRows:
    """A sequence of rows of different lengths backed by one flat array (a list of lists, in shape)."""

    def __init__(self, flat: np.ndarray, offsets: np.ndarray):
        self.flat = flat
        self.offsets = offsets  # (N+1,); need not start at 0, so a slice of rows is a view

    @classmethod
    def from_lists(cls, rows, dtype=np.int32) -> RaggedRows:
        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        flat = np.fromiter(itertools.chain.from_iterable(rows), dtype=dtype, count=int(lengths.sum()))
        return cls(flat, np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))

    @classmethod
    def of(cls, rows, dtype=np.int32) -> RaggedRows:
        """`rows` as RaggedRows: itself if it is one, else its lists packed (`from_lists`)."""
        return rows if isinstance(rows, RaggedRows) else cls.from_lists(rows, dtype)

    @classmethod
    def concat(cls, parts) -> RaggedRows:
        """One in-memory array of the rows of every part, in order."""
        flats = [np.asarray(p.flat[p.offsets[0] : p.offsets[-1]]) for p in parts]
        lengths = np.concatenate([p.lengths for p in parts])
        return cls(np.concatenate(flats), np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))

    def take(self, index: np.ndarray) -> RaggedRows:
        """One in-memory array of the rows at `index`, in that order (a gather: rows need not be contiguous)."""
        index = np.asarray(index, dtype=np.int64)
        lengths = self.lengths[index]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        # Each output position reads from its row's start plus its place within the row.
        source = np.repeat(self.offsets[index] - offsets[:-1], lengths) + np.arange(offsets[-1], dtype=np.int64)
        return RaggedRows(np.asarray(self.flat[source]), offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i):
        if isinstance(i, slice):
            start, stop, step = i.indices(len(self))
            if step != 1:
                raise ValueError("RaggedRows: only contiguous slices")
            return RaggedRows(self.flat, self.offsets[start : max(start, stop) + 1])
        # A list, as the tokenizer gives: collate and equality checks treat both forms alike.
        return self.flat[self.offsets[i] : self.offsets[i + 1]].tolist()

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __eq__(self, other) -> bool:
        return len(self) == len(other) and all(a == list(b) for a, b in zip(self, other))

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


# ---------------------------------------------------------------- tokenising on every core

_worker_tokenizer = None


def _set_worker_tokenizer(tokenizer) -> None:
    global _worker_tokenizer
    _worker_tokenizer = tokenizer


def _tokenize_chunk(args) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    first, second, max_length = args
    return tokenize_chunk(_worker_tokenizer, first, second, max_length)


def tokenize_chunk(tokenizer, first, second, max_length: int):
    """(input ids int32, token types int8, lengths int64) of one chunk of rows, flat."""
    encoded = tokenizer(first, second, truncation=True, max_length=max_length, return_token_type_ids=True,
                        return_attention_mask=False)
    ids, types = encoded["input_ids"], encoded["token_type_ids"]
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    total = int(lengths.sum())
    flat_ids = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int32, count=total)
    flat_types = np.fromiter(itertools.chain.from_iterable(types), dtype=np.int8, count=total)
    return flat_ids, flat_types, lengths


def workers() -> int:
    """The cores this process may use (the affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def tokenize_chunks(first, second, tokenizer, max_length: int, processes: int | None = None, how: str | None = None):
    """Yield the flat arrays of consecutive chunks of rows, in row order (see `tokenize_stream`)."""
    n = len(first)
    chunks = ((first[s : s + CHUNK_ROWS], second[s : s + CHUNK_ROWS] if second is not None else None)
              for s in range(0, n, CHUNK_ROWS))
    yield from tokenize_stream(chunks, tokenizer, max_length, processes, how, rows=n)


def tokenize_stream(chunks, tokenizer, max_length: int, processes: int | None = None, how: str | None = None,
                    rows: int | None = None):
    """Tokenise an iterable of (first texts, second texts or None) chunks; yield their flat arrays in order.

    `how`: "threads" (the fast tokenizer's own thread pool, TOKENIZERS_PARALLELISM on for these
    calls), "processes" (a pool of forked processes, a few chunks ahead of the consumer, so a
    streamed input is never all in memory) or "one" (this thread). By default, PARALLEL, or
    threads when `rows` (the number of rows, if known) is too few to pay for a pool.
    """
    if how is None:
        how = "threads" if PARALLEL == "processes" and rows is not None and rows < POOL_MIN_ROWS else PARALLEL
    processes = workers() if processes is None else processes
    if how == "processes" and processes > 1 and "fork" in multiprocessing.get_all_start_methods():
        yield from _in_processes(chunks, tokenizer, max_length, processes)
        return
    for first, second in chunks:
        with _tokenizer_threads(how == "threads" and processes > 1):
            part = tokenize_chunk(tokenizer, first, second, max_length)
        yield part


@contextlib.contextmanager
def _tokenizer_threads(on: bool):
    """The Rust tokenizer reads TOKENIZERS_PARALLELISM at each batch call; nas keeps it off
    elsewhere (forked workers would warn), so it is on only around these calls."""
    previous = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if on else "false"
    try:
        yield
    finally:
        if previous is None:
            del os.environ["TOKENIZERS_PARALLELISM"]
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = previous


def _in_processes(chunks, tokenizer, max_length: int, processes: int):
    # fork: the workers inherit the tokenizer instead of unpickling one each.
    _set_worker_tokenizer(tokenizer)
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("fork")) as pool:
        pending = collections.deque()
        for first, second in chunks:
            pending.append(pool.submit(_tokenize_chunk, (first, second, max_length)))
            if len(pending) >= 2 * processes:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def tokenize(first, second, tokenizer, max_length: int, processes: int | None = None,
             how: str | None = None) -> tuple[RaggedRows, RaggedRows]:
    """Input ids and token types of every row, in memory."""
    parts = list(tokenize_chunks(first, second, tokenizer, max_length, processes, how))
    if not parts:
        empty = np.zeros(1, dtype=np.int64)
        return RaggedRows(np.zeros(0, np.int32), empty), RaggedRows(np.zeros(0, np.int8), empty)
    lengths = np.concatenate([p[2] for p in parts])
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return (RaggedRows(np.concatenate([p[0] for p in parts]), offsets),
            RaggedRows(np.concatenate([p[1] for p in parts]), offsets))


# ---------------------------------------------------------------- on disk


def write_token_arrays(folder: Path, name: str, chunks) -> int:
    """Stream chunks from `tokenize_chunks` into `{name}.input_ids.npy`, `.token_type_ids.npy`, `.offsets.npy`.

    The flat arrays go to raw files as the chunks come, then become `.npy` files by a copy
    behind a header, so memory holds one chunk, never the split. Each file appears by rename.
    Returns the number of rows.
    """
    folder = Path(folder)
    raw = {kind: folder / f".{name}.{kind}.raw" for kind in KINDS}
    handles = {kind: open(path, "wb") for kind, path in raw.items()}
    lengths = []
    try:
        for ids, types, chunk_lengths in chunks:
            handles["input_ids"].write(ids.tobytes())
            handles["token_type_ids"].write(types.tobytes())
            lengths.append(chunk_lengths)
    finally:
        for handle in handles.values():
            handle.close()
    lengths = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    for kind, dtype in KINDS.items():
        _raw_to_npy(raw[kind], folder / f"{name}.{kind}.npy", np.dtype(dtype), int(offsets[-1]))
    _save_npy(folder / f"{name}.offsets.npy", offsets)
    return len(lengths)


def _raw_to_npy(raw: Path, path: Path, dtype: np.dtype, count: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as out, open(raw, "rb") as source:
        header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (count,)}
        np.lib.format.write_array_header_1_0(out, header)
        shutil.copyfileobj(source, out, 1 << 24)
    os.replace(tmp, path)
    raw.unlink()


def _save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        np.save(handle, array)
    os.replace(tmp, path)


def has_token_arrays(folder: Path, name: str) -> bool:
    return all((Path(folder) / f"{name}.{kind}.npy").is_file() for kind in (*KINDS, "offsets"))


def read_token_arrays(folder: Path, name: str) -> tuple[RaggedRows, RaggedRows]:
    """The stored ids and token types of a split, memory-mapped."""
    load = lambda kind: np.load(Path(folder) / f"{name}.{kind}.npy", mmap_mode="r")  # noqa: E731
    offsets = load("offsets")
    return RaggedRows(load("input_ids"), offsets), RaggedRows(load("token_type_ids"), offsets)
