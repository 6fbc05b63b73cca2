"""The compiled student: padding, only the chosen ops, Hugging Face save/load, tokenizer
inputs and TorchScript export."""

from __future__ import annotations

import functools
import json

import pytest
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from ops import OP_NAMES, OPS
from searchspace.genotype import KNOWN_OPS, Edge, Genotype
from searchspace.space import SearchSpace
from searchspace.student import (
    AdaBertStudentConfig,
    AdaBertStudentForSequenceClassification,
    compile_genotype,
    export_torchscript,
)
from searchspace.random_arch import random_genotypes as make_random_genotypes
from searchspace.supernet import SuperNet

HIDDEN, MAX_CELLS, VOCAB, POSITIONS, LABELS = 16, 4, 30, 32, 2
CHOOSABLE = tuple(op for op in OP_NAMES if op != "zero")


def random_genotypes(seed: int, count: int, max_cells: int = MAX_CELLS) -> list[Genotype]:
    """Valid genotypes with K in 1..3 (the package's own random cells: two different in-edges per node)."""
    return make_random_genotypes(seed, count, hidden_size=HIDDEN, max_depth=3, max_cells=max_cells)


# The package's random cells, and one with `bigru`, the op a search offers only when told to.
BIGRU = Genotype(
    num_cells=2, hidden_size=HIDDEN, max_cells=MAX_CELLS, ops=KNOWN_OPS,
    cell=((Edge("bigru", 0), Edge("cnn3", 1)), (Edge("bigru", 2), Edge("identity", 0)),
          (Edge("dilated_cnn3", 3), Edge("max_pool", 2))),
)
GENOTYPES = random_genotypes(seed=7, count=5) + [BIGRU]
# One node reading the same input through two different ops: one edge holding two op modules.
SAME_INPUT = Genotype(
    num_cells=2, hidden_size=HIDDEN, max_cells=MAX_CELLS,
    cell=((Edge("cnn3", 0), Edge("max_pool", 0)), (Edge("identity", 2), Edge("dilated_cnn5", 1)),
          (Edge("cnn7", 3), Edge("avg_pool", 2))),
)


def make_student(genotype: Genotype, pair: bool, seed: int = 0, vocab: int = VOCAB):
    torch.manual_seed(seed)
    student = compile_genotype(genotype, vocab_size=vocab, max_positions=POSITIONS, num_labels=LABELS, pair=pair)
    with torch.no_grad():
        for p in student.parameters():  # off the initial LayerNorm scales and zero node weights
            p.add_(0.3 * torch.randn_like(p))
    return student.eval()


def _batches(pair: bool, seed: int):
    """The short row alone (B=1) and padded beside longer rows; pairs as [CLS] a [SEP] b [SEP]
    with token types 0 then 1, padding at the end with mask 0 and token type 0."""
    g = torch.Generator().manual_seed(seed)
    shapes = [(6, 5), (3, 2), (4, 9)] if pair else [(9, 0), (5, 0), (12, 0)]
    extra = 3 if pair else 0
    width = max(a + b + extra for a, b in shapes)
    ids, mask, types = (torch.zeros(3, width, dtype=torch.long) for _ in range(3))
    for row, (a, b) in enumerate(shapes):
        n = a + b + extra
        ids[row, :n] = torch.randint(5, VOCAB, (n,), generator=g)
        mask[row, :n] = 1
        if pair:
            ids[row, 0], ids[row, a + 1], ids[row, n - 1] = 2, 3, 3
            types[row, a + 2 : n] = 1
    n = sum(shapes[1]) + extra
    alone = {"input_ids": ids[1:2, :n], "attention_mask": mask[1:2, :n], "token_type_ids": types[1:2, :n]}
    return alone, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def _op_modules(student):
    """{(cell, edge key, op name)} for every op module the student holds."""
    return {(c, key, op) for c, cell in enumerate(student.cells) for key, ops in cell.edges.items() for op in ops}


# ---------------------------------------------------------------- padding


@pytest.mark.parametrize("pair", [False, True], ids=["single", "pair"])
@pytest.mark.parametrize("index", range(len(GENOTYPES) + 1))
def test_student_padding_never_leaks(index, pair):
    genotype = (GENOTYPES + [SAME_INPUT])[index]
    student = make_student(genotype, pair, seed=index)
    alone, padded = _batches(pair, seed=index)
    with torch.no_grad():
        a = student(**alone).logits
        b = student(**padded).logits
    assert torch.allclose(a[0], b[1], atol=1e-5), (a[0], b[1])


def test_student_padding_with_real_tokenizer_pairs(tiny_teacher):
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_teacher))
    student = make_student(GENOTYPES[0], pair=True, vocab=len(tokenizer))
    first, second = ["good film", "the movie was very dull and boring", "fun"], ["bad", "a story", "the plot is quite lovely"]
    batch = tokenizer(first, second, padding=True, return_tensors="pt")
    assert batch["attention_mask"].min() == 0  # some padding in the batch
    with torch.no_grad():
        together = student(**batch).logits
        for i in range(3):
            alone = student(**tokenizer(first[i], second[i], return_tensors="pt")).logits
            assert torch.allclose(alone[0], together[i], atol=1e-5), i


# ---------------------------------------------------------------- only the chosen ops


@pytest.mark.parametrize("index", range(len(GENOTYPES) + 1))
def test_student_holds_only_the_chosen_ops(index):
    genotype = (GENOTYPES + [SAME_INPUT])[index]
    student = compile_genotype(genotype, vocab_size=VOCAB, max_positions=POSITIONS, num_labels=LABELS, pair=False)
    chosen = {(f"{node}_{edge.input}", edge.op) for node, edge in genotype.edges()}
    assert len(student.cells) == genotype.num_cells
    assert _op_modules(student) == {(c, key, op) for c in range(genotype.num_cells) for key, op in chosen}
    for cell in student.cells:
        assert sum(len(ops) for ops in cell.edges.values()) == len(chosen)
    zero_type = type(OPS["zero"].factory(HIDDEN))
    assert not any(isinstance(m, (SuperNet, zero_type)) for m in student.modules())
    assert not any("heads" in name for name, _ in student.named_parameters())  # one head, not one per depth

    assert sum(p.numel() for p in student.parameters()) < supernet_weight_count()


@functools.lru_cache(maxsize=None)
def supernet_weight_count() -> int:
    supernet = SuperNet(SearchSpace(hidden_size=HIDDEN, max_cells=MAX_CELLS), VOCAB, POSITIONS, LABELS, pair=False)
    return sum(p.numel() for p in supernet.weight_parameters())


def test_same_input_through_two_ops_is_one_edge_with_two_modules():
    student = compile_genotype(SAME_INPUT, vocab_size=VOCAB, max_positions=POSITIONS, num_labels=LABELS, pair=False)
    assert set(student.cells[0].edges["2_0"]) == {"cnn3", "max_pool"}


@pytest.mark.parametrize("genotype", [GENOTYPES[0], BIGRU], ids=["random", "bigru"])
def test_student_parameter_count_matches_the_op_cost_model(genotype):
    # Cells hold exactly their ops' parameters plus the three node weights.
    student = compile_genotype(genotype, vocab_size=VOCAB, max_positions=POSITIONS, num_labels=LABELS, pair=False)
    per_cell = sum(OPS[edge.op].params(HIDDEN) for _, edge in genotype.edges()) + 3
    for cell in student.cells:
        assert sum(p.numel() for p in cell.parameters()) == per_cell


# ---------------------------------------------------------------- Hugging Face integration


@pytest.mark.parametrize("genotype", [GENOTYPES[1], BIGRU], ids=["random", "bigru"])
@pytest.mark.parametrize("pair", [False, True], ids=["single", "pair"])
def test_save_pretrained_round_trip(tmp_path, pair, genotype):
    student = make_student(genotype, pair)
    student.save_pretrained(tmp_path)
    loaded = AutoModelForSequenceClassification.from_pretrained(str(tmp_path)).eval()
    assert type(loaded) is AdaBertStudentForSequenceClassification
    assert loaded.config.arch == genotype
    assert Genotype.from_json(json.dumps(loaded.config.genotype)) == genotype
    assert loaded.config.pair is pair
    _, padded = _batches(pair, seed=0)
    with torch.no_grad():
        assert torch.equal(loaded(**padded).logits, student(**padded).logits)


def test_auto_config_resolves_the_model_type(tmp_path):
    assert isinstance(AutoConfig.for_model("adabert_student"), AdaBertStudentConfig)
    make_student(GENOTYPES[2], pair=False).save_pretrained(tmp_path)
    config = AutoConfig.from_pretrained(str(tmp_path))
    assert type(config) is AdaBertStudentConfig and config.model_type == "adabert_student"
    assert config.arch == GENOTYPES[2]


def test_forward_takes_tokenizer_outputs_and_labels_give_a_loss(tiny_teacher):
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_teacher))
    student = make_student(GENOTYPES[3], pair=True, vocab=len(tokenizer)).train()
    batch = tokenizer(["good film", "awful plot"], ["a fun story", "dull"], padding=True, return_tensors="pt")
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids"}
    labels = torch.tensor([1, 0])
    out = student(**batch, labels=labels)
    assert out.logits.shape == (2, LABELS)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert out.loss.item() == pytest.approx(torch.nn.functional.cross_entropy(out.logits, labels).item(), abs=1e-6)
    out.loss.backward()
    assert student.embeddings.words.weight.grad is not None
    assert student(**batch).loss is None
    loss, logits = student(**batch, labels=labels, return_dict=False)
    assert logits.shape == (2, LABELS) and loss.ndim == 0


def test_regression_student_uses_mse():
    genotype = GENOTYPES[0]
    student = compile_genotype(genotype, vocab_size=VOCAB, max_positions=POSITIONS, num_labels=1, pair=False).eval()
    _, padded = _batches(False, seed=0)
    labels = torch.tensor([0.5, 2.0, -1.0])
    out = student(**padded, labels=labels)
    assert out.logits.shape == (3, 1)
    expected = ((out.logits.squeeze(-1) - labels) ** 2).mean()
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-6)


# Tracing is deprecated in favour of torch.export, and warns about the fixed loop over the
# three node weights (a constant count, so the trace is right for any batch shape).
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning", "ignore:Iterating over a tensor")
@pytest.mark.parametrize("pair", [False, True], ids=["single", "pair"])
def test_torchscript_export_round_trip(tmp_path, pair):
    student = make_student(GENOTYPES[4], pair)
    _, example = _batches(pair, seed=0)
    export_torchscript(student, example, tmp_path / "student.pt")
    loaded = torch.jit.load(str(tmp_path / "student.pt"))
    with torch.no_grad():
        assert torch.allclose(loaded(**example), student(**example).logits, atol=1e-6)
        # Another batch size and length than the traced example.
        alone, _ = _batches(pair, seed=5)
        assert torch.allclose(loaded(**alone), student(**alone).logits, atol=1e-6)
