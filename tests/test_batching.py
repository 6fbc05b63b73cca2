"""Tokenising splits, padding batches, and the (seed, epoch) -> batch order contract."""

import random

import numpy as np
import pytest
import torch
from transformers import BertTokenizerFast

from nas.data import batching
from nas.data.batching import EncodedSplit, batch_order, batches, collate, encode, model_inputs
from nas.data.glue_io import Example

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ["the", "cat", "sat", "on", "mat", "a", "dog", "ran", "far", "away", "."]
PAD, UNK, CLS, SEP = 0, 1, 2, 3
ID = {word: index for index, word in enumerate(SPECIAL + WORDS)}  # every word is one token


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vocab")
    (folder / "vocab.txt").write_text("\n".join(SPECIAL + WORDS) + "\n")
    # from_pretrained(folder), not BertTokenizerFast(vocab_file=...): transformers 5 ignores
    # that keyword and silently builds an empty vocabulary.
    tokenizer = BertTokenizerFast.from_pretrained(str(folder), do_lower_case=True)
    assert tokenizer.get_vocab() == ID
    return tokenizer


def _ids(text: str) -> list[int]:
    return [ID.get(word, UNK) for word in text.lower().replace(".", " .").split()]


def test_encode_single_sentences(tokenizer):
    examples = [Example("The cat sat.", None, 1), Example("a dog", None, 0), Example("zebra", None, 1)]
    split = encode(examples, tokenizer, max_length=32)
    assert split.input_ids == [
        [CLS, *_ids("the cat sat ."), SEP],
        [CLS, ID["a"], ID["dog"], SEP],
        [CLS, UNK, SEP],
    ]
    assert split.token_type_ids == [[0] * 6, [0] * 4, [0] * 3]
    assert split.labels.dtype == torch.long and split.labels.tolist() == [1, 0, 1]
    assert split.pad_id == PAD and len(split) == 3 and split.lengths == [6, 4, 3]


def test_encode_pairs(tokenizer):
    examples = [Example("the cat", "sat on the mat", 2), Example("a dog ran", "far away", 0)]
    split = encode(examples, tokenizer, max_length=32)
    assert split.input_ids[0] == [CLS, ID["the"], ID["cat"], SEP, *_ids("sat on the mat"), SEP]
    assert split.token_type_ids[0] == [0, 0, 0, 0, 1, 1, 1, 1, 1]
    assert split.input_ids[1] == [CLS, *_ids("a dog ran"), SEP, ID["far"], ID["away"], SEP]
    assert split.token_type_ids[1] == [0] * 5 + [1] * 3
    assert split.labels.tolist() == [2, 0]


def test_encode_regression_and_unlabelled(tokenizer):
    split = encode([Example("the cat", "a dog", 3.8), Example("a", "the", 0.5)], tokenizer, 16, regression=True)
    assert split.labels.dtype == torch.float32
    assert split.labels.tolist() == pytest.approx([3.8, 0.5])
    unlabelled = encode([Example("the cat", None, None)], tokenizer, 16)
    assert unlabelled.labels.tolist() == [-1]


def test_encode_truncates_to_max_length(tokenizer):
    long = " ".join(["the cat sat on the mat"] * 5)  # 30 words
    single = encode([Example(long, None, 0)], tokenizer, max_length=8)
    assert single.input_ids[0] == [CLS, *_ids(long)[:6], SEP]
    pair = encode([Example(long, long, 0)], tokenizer, max_length=10)
    assert len(pair.input_ids[0]) == 10 and pair.input_ids[0].count(SEP) == 2
    assert pair.input_ids[0][0] == CLS and pair.input_ids[0][-1] == SEP


def _split(lengths, labels=None) -> EncodedSplit:
    """Rows whose token ids are 10*row + position + 1 (never the pad id), with given lengths."""
    ids = [[10 * row + k + 1 for k in range(length)] for row, length in enumerate(lengths)]
    types = [[k % 2 for k in range(length)] for length in lengths]
    labels = torch.tensor(labels if labels is not None else list(range(len(lengths))))
    return EncodedSplit(ids, types, labels, pad_id=0)


def test_collate_pads_to_the_longest_row_and_keeps_index():
    split = _split([2, 5, 3, 1], labels=[7, 8, 9, 6])
    batch = collate(split, [3, 0, 2])
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "labels", "index"}
    assert batch["input_ids"].tolist() == [[31, 0, 0], [1, 2, 0], [21, 22, 23]]  # width 3, not 5
    assert batch["attention_mask"].tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    assert batch["token_type_ids"].tolist() == [[0, 0, 0], [0, 1, 0], [0, 1, 0]]
    assert batch["labels"].tolist() == [6, 7, 9]
    assert batch["index"].tolist() == [3, 0, 2]
    for key in ("input_ids", "attention_mask", "token_type_ids", "index"):
        assert batch[key].dtype == torch.long
    assert set(model_inputs(batch)) == {"input_ids", "attention_mask", "token_type_ids"}


def test_collate_uses_the_split_pad_id():
    split = _split([1, 2])
    split.pad_id = 99
    assert collate(split, [0, 1])["input_ids"].tolist() == [[1, 99], [11, 12]]


def test_collate_float_labels():
    split = _split([1, 1], labels=[0.5, 4.25])
    assert collate(split, [1, 0])["labels"].tolist() == [4.25, 0.5]


def _lengths(n: int, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(1, 60) for _ in range(n)]


@pytest.mark.parametrize("n, batch_size", [(1, 4), (7, 3), (64, 8), (103, 16), (1000, 4)])
@pytest.mark.parametrize("shuffle", [True, False])
def test_every_row_once_per_epoch(n, batch_size, shuffle):
    for seed, epoch in [(0, 0), (0, 1), (3, 7)]:
        order = batch_order(_lengths(n), batch_size, seed, epoch, shuffle)
        flat = [i for batch in order for i in batch]
        assert sorted(flat) == list(range(n))
        assert len(order) == -(-n // batch_size)  # ceil: only one batch may be short
        assert sum(len(batch) < batch_size for batch in order) <= 1
        assert all(0 < len(batch) <= batch_size for batch in order)


def test_empty_split_has_no_batches():
    assert batch_order([], 4, 0, 0) == []
    assert batch_order([], 4, 0, 0, shuffle=False) == []


def test_order_is_a_function_of_seed_and_epoch():
    lengths = _lengths(300)
    first = batch_order(lengths, 8, seed=5, epoch=2)
    torch.manual_seed(123)  # the global RNG must not matter
    random.seed(123)
    assert batch_order(lengths, 8, seed=5, epoch=2) == first
    assert batch_order(lengths, 8, seed=5, epoch=3) != first
    assert batch_order(lengths, 8, seed=6, epoch=2) != first
    epochs = [batch_order(lengths, 8, seed=5, epoch=e) for e in range(4)]
    assert len({str(order) for order in epochs}) == 4


def test_unshuffled_order_is_sequential():
    assert batch_order([5, 1, 9, 2, 2, 7, 3], 3, seed=1, epoch=4, shuffle=False) == [[0, 1, 2], [3, 4, 5], [6]]


def _padding(order, lengths) -> int:
    """Pad tokens added when each batch is padded to its longest row."""
    return sum(max(lengths[i] for i in batch) * len(batch) - sum(lengths[i] for i in batch) for batch in order)


def test_length_grouping_cuts_padding():
    lengths = _lengths(800, seed=1)
    batch_size = 8
    grouped = sum(_padding(batch_order(lengths, batch_size, 0, epoch), lengths) for epoch in range(3))
    rng = random.Random(0)
    ungrouped = 0
    for _ in range(3):
        order = list(range(len(lengths)))
        rng.shuffle(order)
        ungrouped += _padding([order[s : s + batch_size] for s in range(0, len(order), batch_size)], lengths)
    # Lengths uniform on 1..60: a random batch of 8 pads ~20 tokens a row; sorted chunks of 400
    # rows pad well under one.
    assert grouped * 10 < ungrouped


def test_grouped_batches_are_not_in_length_order():
    """Batches are shuffled after grouping, so lengths do not rise steadily through an epoch."""
    lengths = list(range(1, 401))
    order = batch_order(lengths, 4, seed=0, epoch=0)
    longest = [max(lengths[i] for i in batch) for batch in order]
    assert longest != sorted(longest) and longest != sorted(longest, reverse=True)


def test_chunks_are_sorted_inside_only():
    # With 2 batches per chunk, each batch holds rows from one chunk of the epoch's permutation.
    lengths = _lengths(40)
    original = batching.GROUP_CHUNK_BATCHES
    try:
        batching.GROUP_CHUNK_BATCHES = 2
        order = batch_order(lengths, 5, seed=0, epoch=0)
    finally:
        batching.GROUP_CHUNK_BATCHES = original
    for batch in order:
        assert [lengths[i] for i in batch] == sorted(lengths[i] for i in batch)


def test_batches_yields_collated_batches():
    lengths = _lengths(23)
    split = _split(lengths)
    seen = []
    for batch in batches(split, 5, seed=1, epoch=0):
        assert batch["input_ids"].shape[1] == max(lengths[i] for i in batch["index"].tolist())
        assert batch["labels"].tolist() == batch["index"].tolist()
        seen += batch["index"].tolist()
    assert sorted(seen) == list(range(23))
    sequential = [b["index"].tolist() for b in batches(split, 5, shuffle=False)]
    assert sequential == batch_order(lengths, 5, 0, 0, shuffle=False)


def test_inference_batches_sort_by_length_and_results_come_back_in_row_order():
    from nas.data.batching import EncodedSplit, in_row_order, inference_batches

    ids = [[1] * n for n in (5, 2, 9, 3, 7)]
    split = EncodedSplit(ids, [[0] * len(row) for row in ids], torch.zeros(5, dtype=torch.long), pad_id=0)
    batches = list(inference_batches(split, 2))
    assert [b["index"].tolist() for b in batches] == [[1, 3], [0, 4], [2]]
    assert [b["input_ids"].shape[1] for b in batches] == [3, 7, 9]
    # A per-row result (here: each row's length) lands back at its row.
    lengths = [b["attention_mask"].sum(1) for b in batches]
    assert in_row_order(lengths, [b["index"] for b in batches]).tolist() == [5, 2, 9, 3, 7]


def test_collate_of_flat_arrays_equals_collate_of_lists():
    from nas.data.token_arrays import RaggedRows

    rng = random.Random(0)
    ids = [[rng.randrange(1, 50) for _ in range(rng.randint(1, 12))] for _ in range(40)]
    types = [[int(i > len(row) // 2) for i in range(len(row))] for row in ids]
    labels = torch.arange(40)
    lists = EncodedSplit(ids, types, labels, pad_id=0)
    flat = EncodedSplit(RaggedRows.from_lists(ids), RaggedRows.from_lists(types, np.int8), labels, pad_id=0)
    for indices in ([3], [0, 5, 9], list(range(40)), [39, 1, 17, 17]):
        a, b = collate(lists, indices), collate(flat, indices)
        assert a.keys() == b.keys()
        for key in a:
            assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key
