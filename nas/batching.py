"""Tokenised splits and dynamically padded batches.

Each split is tokenised once, without padding; batches are padded to their own longest row.
Training order groups rows of similar length (shuffled in chunks, sorted inside a chunk), which
cuts padding several-fold on GLUE's short sentences while keeping batches random. The order is
a pure function of (seed, epoch), so a resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from nas.glue_io import Example
from nas.token_arrays import RaggedRows, tokenize

GROUP_CHUNK_BATCHES = 50  # batches per length-sorted chunk


@dataclass
class EncodedSplit:
    input_ids: Sequence  # rows of ids: lists, or `RaggedRows` (flat arrays, possibly memory-mapped)
    token_type_ids: Sequence
    labels: torch.Tensor  # (N,) long, or float for regression
    pad_id: int

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> list[int]:
        if isinstance(self.input_ids, RaggedRows):
            return self.input_ids.lengths.tolist()
        return [len(ids) for ids in self.input_ids]


def encode(examples: list[Example], tokenizer, max_length: int, regression: bool = False) -> EncodedSplit:
    """Tokenise on every core (see nas.token_arrays) into flat arrays."""
    first = [e.text_a for e in examples]
    second = [e.text_b for e in examples] if examples and examples[0].text_b is not None else None
    input_ids, token_type_ids = tokenize(first, second, tokenizer, max_length)
    return EncodedSplit(input_ids, token_type_ids, labels_tensor(examples, regression), tokenizer.pad_token_id or 0)


def labels_tensor(examples: list[Example], regression: bool) -> torch.Tensor:
    dtype = torch.float32 if regression else torch.long
    return torch.tensor([e.label if e.label is not None else -1 for e in examples], dtype=dtype)


def join(parts: list[EncodedSplit]) -> EncodedSplit:
    """The rows of every part in order, as one split (the task's rows, then the augmented ones)."""
    as_rows = lambda rows: rows if isinstance(rows, RaggedRows) else RaggedRows.from_lists(rows)  # noqa: E731
    return EncodedSplit(
        RaggedRows.concat([as_rows(p.input_ids) for p in parts]),
        RaggedRows.concat([as_rows(p.token_type_ids) for p in parts]),
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


def collate(split: EncodedSplit, indices: list[int]) -> dict[str, torch.Tensor]:
    """Pad the rows at `indices` to the longest of them. Returns the tokenizer's keys plus labels and index."""
    if isinstance(split.input_ids, RaggedRows) and isinstance(split.token_type_ids, RaggedRows):
        return _collate_ragged(split, indices)
    width = max(len(split.input_ids[i]) for i in indices)
    input_ids = torch.full((len(indices), width), split.pad_id, dtype=torch.long)
    token_type_ids = torch.zeros((len(indices), width), dtype=torch.long)
    attention_mask = torch.zeros((len(indices), width), dtype=torch.long)
    for row, i in enumerate(indices):
        length = len(split.input_ids[i])
        input_ids[row, :length] = torch.tensor(split.input_ids[i])
        token_type_ids[row, :length] = torch.tensor(split.token_type_ids[i])
        attention_mask[row, :length] = 1
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "token_type_ids": token_type_ids,
        "labels": split.labels[indices],
        "index": torch.tensor(indices, dtype=torch.long),
    }


def _collate_ragged(split: EncodedSplit, indices) -> dict[str, torch.Tensor]:
    """`collate` for rows in flat arrays: the same tensors, gathered without a loop over rows."""
    input_ids, lengths = split.input_ids.padded(indices, split.pad_id)
    token_type_ids, _ = split.token_type_ids.padded(indices, 0)
    attention_mask = torch.arange(input_ids.shape[1])[None, :] < torch.from_numpy(lengths)[:, None]
    return {
        "input_ids": torch.from_numpy(input_ids.astype(np.int64)),
        "attention_mask": attention_mask.long(),
        "token_type_ids": torch.from_numpy(token_type_ids.astype(np.int64)),
        "labels": split.labels[indices],
        "index": torch.tensor(indices, dtype=torch.long),
    }


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
