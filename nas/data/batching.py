"""Tokenised splits and dynamically padded batches.

Each split is tokenised once, without padding; batches are padded to their own longest row.
Training order groups rows of similar length (shuffled in chunks, sorted inside a chunk), which
cuts padding several-fold on GLUE's short sentences while keeping batches random. The order is
a pure function of (seed, epoch), so a resumed run sees exactly the batches it would have seen.

One data path serves search, finetuning and distillation (`device_batch`): the rows are packed
once into flat tensors, so a batch is a few vectorised gathers rather than a tensor per row
(at batch 512 that loop, not the GPU, set the pace). Optionally a batch is padded up to a
length from a small fixed set (`BUCKETS`): a compiled or CUDA-graph-captured step is specialised
to its input shapes, and a handful of shapes means a handful of captures instead of one per
batch length. On CUDA batches are built in pinned memory and copied without blocking.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from nas.data.glue_io import Example
from nas.data.token_arrays import RaggedRows, tokenize

GROUP_CHUNK_BATCHES = 50  # batches per length-sorted chunk
# Padded lengths of a bucketed batch. Powers of two: at most twice a batch's longest row, mostly
# far less, since GLUE rows are short and the batches are length-grouped.
BUCKETS: tuple[int, ...] = (8, 16, 32, 64, 128, 256, 512)


@dataclass
class EncodedSplit:
    input_ids: Sequence  # rows of ids: lists, or `RaggedRows` (flat arrays, possibly memory-mapped)
    token_type_ids: Sequence
    labels: torch.Tensor  # (N,) long, or float for regression
    pad_id: int
    _packed: tuple | None = field(default=None, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> list[int]:
        if isinstance(self.input_ids, RaggedRows):
            return self.input_ids.lengths.tolist()
        return [len(ids) for ids in self.input_ids]

    def packed(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(ids, token types, row starts, row lengths): every row end to end in two flat tensors,
        built on first use. The rows are read-only once a split is made."""
        if self._packed is None:
            ids, types = RaggedRows.of(self.input_ids, np.int32), RaggedRows.of(self.token_type_ids, np.int8)
            # One in-memory copy in the stored dtypes (int32 ids, int8 types: a quarter and an
            # eighth of int64), widened per batch; a memory-mapped split is read once here.
            flat = lambda rows: torch.from_numpy(np.array(rows.flat[rows.offsets[0] : rows.offsets[-1]]))  # noqa: E731
            starts = torch.from_numpy((ids.offsets[:-1] - ids.offsets[0]).astype(np.int64))
            self._packed = (flat(ids), flat(types), starts, torch.from_numpy(ids.lengths.astype(np.int64)))
        return self._packed

    def take(self, index) -> EncodedSplit:
        """The rows at `index` (int array), in that order, as a new in-memory split."""
        index = np.asarray(index, dtype=np.int64)
        return EncodedSplit(RaggedRows.of(self.input_ids).take(index), RaggedRows.of(self.token_type_ids).take(index),
                            self.labels[torch.from_numpy(index)], self.pad_id)


def encode(examples: list[Example], tokenizer, max_length: int, regression: bool = False) -> EncodedSplit:
    """Tokenise on every core (see nas.data.token_arrays) into flat arrays."""
    first = [e.text_a for e in examples]
    second = [e.text_b for e in examples] if examples and examples[0].text_b is not None else None
    input_ids, token_type_ids = tokenize(first, second, tokenizer, max_length)
    return EncodedSplit(input_ids, token_type_ids, labels_tensor(examples, regression), tokenizer.pad_token_id or 0)


def labels_tensor(examples: list[Example], regression: bool) -> torch.Tensor:
    dtype = torch.float32 if regression else torch.long
    return torch.tensor([e.label if e.label is not None else -1 for e in examples], dtype=dtype)


def join(parts: list[EncodedSplit]) -> EncodedSplit:
    """The rows of every part in order, as one split (the task's rows, then the augmented ones)."""
    return EncodedSplit(
        RaggedRows.concat([RaggedRows.of(p.input_ids) for p in parts]),
        RaggedRows.concat([RaggedRows.of(p.token_type_ids) for p in parts]),
        torch.cat([p.labels for p in parts]),
        parts[0].pad_id,
    )


def batch_order(lengths, batch_size: int, seed: int, epoch: int, shuffle: bool = True) -> list[list[int]]:
    """Row indices of each batch for one epoch."""
    n = len(lengths)
    if not shuffle:
        return [list(range(start, min(start + batch_size, n))) for start in range(0, n, batch_size)]
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(n, generator=generator).tolist()
    chunk = batch_size * GROUP_CHUNK_BATCHES
    grouped = []
    for start in range(0, n, chunk):
        grouped += sorted(order[start : start + chunk], key=lambda i: lengths[i])
    batches = [grouped[start : start + batch_size] for start in range(0, n, batch_size)]
    # Shuffle the batches themselves so lengths do not rise steadily through each chunk.
    perm = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in perm]


def bucket_width(longest: int, buckets) -> int:
    """The smallest bucket that holds `longest` tokens; `longest` itself without buckets or past them."""
    return next((b for b in sorted(buckets) if b >= longest), longest)


def collate(split: EncodedSplit, indices: list[int], buckets=()) -> dict[str, torch.Tensor]:
    """Pad the rows at `indices` to the longest of them (or up to its bucket, see `BUCKETS`).
    Returns the tokenizer's keys plus labels and index."""
    ids, types, starts, lengths = split.packed()
    index = torch.as_tensor(indices, dtype=torch.long)
    row_lengths = lengths[index]  # (B,)
    width = bucket_width(int(row_lengths.max()), buckets)
    offsets = torch.arange(width)  # (T,)
    real = offsets[None, :] < row_lengths[:, None]  # (B, T)
    # Padded positions read the row's first token and are overwritten: any in-range index will do.
    where = torch.where(real, starts[index, None] + offsets[None, :], starts[index, None])  # (B, T)
    return {
        "input_ids": torch.where(real, ids[where].long(), split.pad_id),
        "attention_mask": real.long(),
        "token_type_ids": torch.where(real, types[where].long(), 0),
        "labels": split.labels[index],
        "index": index,
    }


def device_batch(split: EncodedSplit, indices: list[int], device, buckets=()) -> dict[str, torch.Tensor]:
    """`collate` on `device`: the one way search, finetuning and distillation build a training batch.

    On CUDA the batch is pinned first, so the copies are truly asynchronous and the next batch
    is built while the GPU still works on this one.
    """
    batch = collate(split, indices, buckets)
    if torch.device(device).type == "cuda":
        batch = {key: value.pin_memory() for key, value in batch.items()}
    return to_device(batch, device)


def batches(split: EncodedSplit, batch_size: int, seed: int = 0, epoch: int = 0, shuffle: bool = True):
    for indices in batch_order(split.lengths, batch_size, seed, epoch, shuffle):
        yield collate(split, indices)


def inference_batches(split: EncodedSplit, batch_size: int):
    """Batches of rows sorted by length, for inference: far less padding than file order.

    Each batch carries `index`, the row numbers, so results can be put back in row order
    (see `in_row_order`).
    """
    lengths = split.lengths
    order = sorted(range(len(split)), key=lengths.__getitem__)
    for start in range(0, len(order), batch_size):
        yield collate(split, order[start : start + batch_size])


def in_row_order(parts: list[torch.Tensor], indices: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate per-batch results and undo the length sort."""
    values, index = torch.cat(parts), torch.cat(indices)
    out = torch.empty_like(values)
    out[index] = values
    return out


def to_device(batch: dict, device) -> dict:
    return {key: value.to(device, non_blocking=True) for key, value in batch.items()}


def model_inputs(batch: dict) -> dict:
    """What a Hugging Face model's forward takes: the tokenizer's keys only."""
    return {key: batch[key] for key in ("input_ids", "attention_mask", "token_type_ids") if key in batch}
