"""The pair head (searchspace/cell.py: ClassifierHead with pair=True): it compares the two
sentences, narrows like every other layer, and a student saved before it existed still loads."""

from __future__ import annotations

import json

import torch

from searchspace.alignment import unmatched
from searchspace.cell import ClassifierHead, pair_inputs, segment_masks
from searchspace.student import AdaBertStudentConfig, AdaBertStudentForSequenceClassification, compile_genotype
from tests.test_supernet import GENOTYPES, LABELS, POSITIONS, VOCAB, make_supernet, pair_batches

HIDDEN = 16


def _pair_rows():
    """x (2, 8, H) over 8 real tokens, their word vectors (2, 8, H); token types split them 3 + 5 and 6 + 2."""
    torch.manual_seed(0)
    x, words = torch.randn(2, 8, HIDDEN), torch.randn(2, 8, HIDDEN)
    mask = torch.ones(2, 8, dtype=torch.bool)
    types = torch.zeros(2, 8, dtype=torch.long)
    types[0, 3:], types[1, 6:] = 1, 1
    return x, words, mask, types


def test_only_the_pair_head_reads_where_one_sentence_ends():
    # The same tokens split at another place: one mean over both sentences cannot see it.
    x, words, mask, types = _pair_rows()
    moved = torch.zeros_like(types)
    moved[:, 4:] = 1
    split, other = pair_inputs(mask, types, words), pair_inputs(mask, moved, words)
    torch.manual_seed(1)
    plain, pair = ClassifierHead(HIDDEN, LABELS).eval(), ClassifierHead(HIDDEN, LABELS, pair=True).eval()
    with torch.no_grad():
        assert torch.equal(plain(x, mask, split), plain(x, mask, other))
        assert not torch.allclose(pair(x, mask, split), pair(x, mask, other))


def test_the_pair_head_reads_each_sentence_mean_and_their_comparison():
    x, words, mask, types = _pair_rows()
    head = ClassifierHead(HIDDEN, LABELS, pair=True).eval()
    first, second = segment_masks(mask, types)
    u = (x * first.unsqueeze(-1)).sum(1) / first.sum(1, keepdim=True)
    v = (x * second.unsqueeze(-1)).sum(1) / second.sum(1, keepdim=True)
    # The split layers are one layer over the concatenation [u, v, |u - v|, u * v, unmatched words].
    weight = torch.cat([head.dense.weight, *(layer.weight for layer in head.compare)], dim=1)  # (H, 5H)
    features = torch.cat([u, v, (u - v).abs(), u * v, unmatched(words, first, second)], dim=1)
    expected = head.out(torch.tanh(features @ weight.T + head.dense.bias))
    with torch.no_grad():
        assert torch.allclose(head(x, mask, pair_inputs(mask, types, words)), expected, atol=1e-6)


def test_a_narrower_pair_head_is_the_leading_slices():
    x, words, mask, types = _pair_rows()
    wide, narrow = ClassifierHead(HIDDEN, LABELS, pair=True).eval(), ClassifierHead(8, LABELS, pair=True).eval()
    with torch.no_grad():
        for name, tensor in narrow.state_dict().items():
            tensor.copy_(wide.state_dict()[name][tuple(slice(0, n) for n in tensor.shape)])
        pair = pair_inputs(mask, types, words[..., :8])
        assert torch.allclose(wide(x[..., :8], mask, pair), narrow(x[..., :8], mask, pair), atol=1e-6)


def test_compiled_students_get_the_head_of_their_task():
    genotype = GENOTYPES[0]
    for pair in (False, True):
        student = compile_genotype(genotype, vocab_size=VOCAB, max_positions=POSITIONS, num_labels=LABELS, pair=pair)
        assert student.config.pair_head is pair and (student.head.compare is not None) is pair


def test_a_pair_student_saved_before_the_pair_head_loads_as_it_was(tmp_path):
    # Its config.json has no `pair_head`; its weights are the plain head's.
    student = compile_genotype(GENOTYPES[1], vocab_size=VOCAB, max_positions=POSITIONS, num_labels=LABELS, pair=True)
    old_config = student.config.to_dict()
    del old_config["pair_head"]
    old = AdaBertStudentForSequenceClassification(AdaBertStudentConfig(**old_config)).eval()
    assert old.head.compare is None
    old.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    del saved["pair_head"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    loaded = AdaBertStudentForSequenceClassification.from_pretrained(tmp_path).eval()
    batch, _, _ = pair_batches()
    with torch.no_grad():
        assert loaded.head.compare is None and torch.allclose(loaded(**batch).logits, old(**batch).logits, atol=1e-6)


def test_a_student_inherits_from_a_pair_supernet_saved_before_the_pair_head():
    # That checkpoint has no `compare` layers: they start fresh, everything else is copied.
    genotype = GENOTYPES[2]
    state = {k: v for k, v in make_supernet(pair=True).state_dict().items() if ".compare." not in k}
    student = compile_genotype(genotype, vocab_size=VOCAB, max_positions=POSITIONS, num_labels=LABELS, pair=True)
    student.inherit_from_supernet(state)
    head = f"heads.{genotype.num_cells - 1}."
    assert torch.equal(student.head.dense.weight, state[head + "dense.weight"])
    assert torch.equal(student.embeddings.words.weight, state["embeddings.words.weight"])


def test_unmatched_is_symmetric_and_small_where_each_sentence_finds_itself_in_the_other():
    torch.manual_seed(3)
    sentence, other = torch.randn(1, 4, HIDDEN) * 4, torch.randn(1, 4, HIDDEN) * 4
    first = torch.tensor([[True] * 4 + [False] * 4])
    second = ~first
    copied, unrelated = torch.cat([sentence, sentence.flip(1)], 1), torch.cat([sentence, other], 1)  # (1, 8, H)
    assert torch.allclose(unmatched(unrelated, first, second), unmatched(unrelated, second, first))
    gap_copied, gap_unrelated = unmatched(copied, first, second).norm(), unmatched(unrelated, first, second).norm()
    assert gap_copied < 0.1 * gap_unrelated, (gap_copied, gap_unrelated)


def test_unmatched_ignores_padding_even_without_a_second_sentence():
    torch.manual_seed(4)
    x = torch.randn(1, 6, HIDDEN)
    first = torch.tensor([[True, True, True, False, False, False]])
    second = torch.tensor([[False, False, False, True, True, False]])  # the last position is padding
    padded = x.clone()
    padded[0, 5] = 100.0
    assert torch.allclose(unmatched(x, first, second), unmatched(padded, first, second), atol=1e-6)
    # No second sentence (a pair model fed all-zero token types): finite, and blind to padding.
    nothing = torch.zeros_like(second)
    assert torch.isfinite(unmatched(x, first, nothing)).all()
    assert torch.allclose(unmatched(x, first, nothing), unmatched(padded, first, nothing), atol=1e-6)
