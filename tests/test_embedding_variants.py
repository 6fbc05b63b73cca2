"""Every word-vector variant (searchspace/embedding_variants.py), by the registry: it compiles,
saves and loads, exports, counts its parameters right and trains what it should; `pca` stays
what the student always had; the variants at least as wide as the student start where pca starts."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import replace

import pytest
import torch

from nas.compute.acceleration import adamw
from nas.data.batching import EncodedSplit
from nas.deploy.costs import parameter_counts
from nas.deploy.export import export_model, onnx_bytes
from searchspace.embedding_variants import EMBEDDINGS, build_embeddings, factorised_rank, table_width
from searchspace.embeddings import StudentEmbeddings
from searchspace.genotype import EMBEDDING_VARIANTS, Genotype
from searchspace.random_arch import random_genotypes
from searchspace.space import SearchSpace
from searchspace.student import AdaBertStudentForSequenceClassification, compile_genotype
from searchspace.supernet import SuperNet

HIDDEN, TEACHER_WIDTH, VOCAB, POSITIONS, LABELS = 16, 24, 40, 32, 2
VARIANTS = tuple(EMBEDDINGS)
BASE = random_genotypes(3, 1, hidden_size=HIDDEN, max_depth=2, max_cells=2)[0]
HAS_ORT = importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None


def teacher_tables(seed: int = 0):
    """A (VOCAB, TEACHER_WIDTH) word table with a few dominant directions, and a position table."""
    g = torch.Generator().manual_seed(seed)
    scales = torch.linspace(3.0, 0.1, TEACHER_WIDTH)
    words = torch.randn(VOCAB, TEACHER_WIDTH, generator=g) * scales + 0.5
    positions = 0.2 * torch.randn(POSITIONS, TEACHER_WIDTH, generator=g)
    return words, positions


def student(variant: str | None, pair: bool = False, seed: int = 0):
    torch.manual_seed(seed)
    genotype = replace(BASE, embeddings=variant)
    model = compile_genotype(genotype, vocab_size=VOCAB, max_positions=POSITIONS, num_labels=LABELS, pair=pair,
                             teacher_width=TEACHER_WIDTH)
    model.embeddings.init_from_teacher(*teacher_tables())
    return model


def batch(pair: bool = False, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (3, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    types = torch.zeros_like(ids)
    if pair:
        types[:, 4:] = 1
    return {"input_ids": ids * mask, "attention_mask": mask, "token_type_ids": types * mask}


def test_the_registry_and_the_genotype_name_the_same_variants():
    assert VARIANTS == EMBEDDING_VARIANTS
    assert VARIANTS[0] == "pca"


# ---------------------------------------------------------------- pca is what the student always had


def test_an_arch_without_the_field_builds_pca_exactly_as_before():
    assert BASE.embeddings is None and BASE.embedding_variant == "pca"
    implicit, explicit = student(None), student("pca")
    assert type(implicit.embeddings) is StudentEmbeddings
    assert implicit.config.embedding_width == HIDDEN
    # The same module names, shapes and values: an old saved student's weights still fit.
    a, b = implicit.state_dict(), explicit.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert set(k for k in a if k.startswith("embeddings.")) == {
        "embeddings.words.weight", "embeddings.positions.weight", "embeddings.norm.weight", "embeddings.norm.bias"}


def test_an_old_saved_student_without_the_width_loads(tmp_path):
    model = student(None).eval()
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    del config["embedding_width"]  # as a folder saved before the field existed
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = AdaBertStudentForSequenceClassification.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(loaded(**batch()).logits, model(**batch()).logits)


# ---------------------------------------------------------------- every variant


@pytest.mark.parametrize("variant", VARIANTS)
def test_table_widths(variant):
    expected = {"pca": HIDDEN, "frozen_projection": TEACHER_WIDTH, "wide_projection": TEACHER_WIDTH,
                "factorised": factorised_rank(HIDDEN)}[variant]
    assert table_width(variant, HIDDEN, TEACHER_WIDTH) == expected
    model = student(variant)
    assert model.config.embedding_width == expected
    assert model.get_input_embeddings().weight.shape == (VOCAB, expected)
    assert model.embeddings.positions.weight.shape == (POSITIONS, expected)


@pytest.mark.parametrize("variant", ["frozen_projection", "wide_projection"])
def test_teacher_wide_variants_need_the_teachers_width(variant):
    with pytest.raises(ValueError, match="teacher_width"):
        compile_genotype(replace(BASE, embeddings=variant), vocab_size=VOCAB, max_positions=POSITIONS,
                         num_labels=LABELS, pair=False)


@pytest.mark.parametrize("pair", [False, True], ids=["single", "pair"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_save_pretrained_round_trip_and_padding(variant, pair, tmp_path):
    model = student(variant, pair).eval()
    with torch.no_grad():
        for p in model.parameters():  # off the initial LayerNorm scales and zero node weights
            p.add_(0.3 * torch.randn_like(p))
    model.save_pretrained(tmp_path)
    loaded = AdaBertStudentForSequenceClassification.from_pretrained(tmp_path).eval()
    assert loaded.config.arch.embedding_variant == variant
    assert type(loaded.embeddings) is type(model.embeddings)
    inputs = batch(pair)
    # A loaded frozen table stays frozen (from_pretrained's fresh parameters forget requires_grad).
    loaded.train()
    loaded(**inputs, labels=torch.tensor([0, 1, 0])).loss.backward()
    frozen = variant == "frozen_projection"
    for table in (loaded.embeddings.words, loaded.embeddings.positions):
        assert (table.weight.grad is None) == frozen
    loaded.eval()
    with torch.no_grad():
        assert torch.equal(loaded(**inputs).logits, model(**inputs).logits)
        # Row 1 alone gives what it gives padded among the others.
        alone = {k: v[1:2, :6] for k, v in inputs.items()}
        torch.testing.assert_close(model(**alone).logits[0], model(**inputs).logits[1], rtol=0, atol=1e-5)


@pytest.mark.parametrize("pair", [False, True], ids=["single", "pair"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_the_served_student_gives_the_trained_ones_logits_from_one_table(variant, pair, tmp_path):
    """`for_inference` folds a projected variant's tables into one (vocab, H) table: the same logits
    (padding included), the small table saved and loaded back as such, the genotype's variant kept."""
    model = student(variant, pair).eval()
    with torch.no_grad():
        for p in model.parameters():  # off the initial LayerNorm scales and zero node weights
            p.add_(0.3 * torch.randn_like(p))
    served = model.for_inference()
    if variant == "pca":
        assert served is model  # nothing to fold
    assert type(served.embeddings) is StudentEmbeddings and not served.training
    assert served.get_input_embeddings().weight.shape == (VOCAB, HIDDEN)
    assert served.config.arch.embedding_variant == variant
    inputs = batch(pair)
    with torch.no_grad():
        torch.testing.assert_close(served(**inputs).logits, model(**inputs).logits, rtol=0, atol=1e-5)
    served.save_pretrained(tmp_path)
    loaded = AdaBertStudentForSequenceClassification.from_pretrained(tmp_path).eval()
    assert type(loaded.embeddings) is StudentEmbeddings and loaded.for_inference() is loaded
    with torch.no_grad():
        assert torch.equal(loaded(**inputs).logits, served(**inputs).logits)
    # The trained student is left as it was.
    assert type(model.embeddings) is type(student(variant).embeddings)


@pytest.mark.parametrize("variant", ["frozen_projection", "wide_projection"])
def test_variants_as_wide_as_the_teacher_start_where_pca_starts(variant):
    """Their projection starts at the teacher's top principal directions: the same vectors as pca's."""
    ids = batch()["input_ids"]
    pca, other = student("pca").embeddings.eval(), student(variant).embeddings.eval()
    assert torch.equal(other.words.weight, teacher_tables()[0])  # the teacher's own table, unchanged
    with torch.no_grad():
        torch.testing.assert_close(other(ids), pca(ids), rtol=0, atol=1e-4)


def test_the_factorised_table_is_pcas_leading_directions():
    ids = batch()["input_ids"]
    pca, factorised = student("pca").embeddings.eval(), student("factorised").embeddings.eval()
    rank = factorised_rank(HIDDEN)
    with torch.no_grad():
        before_norm = lambda e: e.words(ids) + e.positions.weight[: ids.shape[1]]  # noqa: E731  (B, T, width)
        full, short = before_norm(pca), factorised.projection(before_norm(factorised))  # (B, T, H)
    torch.testing.assert_close(short[..., :rank], full[..., :rank], rtol=0, atol=1e-4)
    assert short[..., rank:].abs().max() < 1e-4  # the projection starts as [I | 0], up to rounding


@pytest.mark.parametrize("variant", VARIANTS)
def test_parameter_counts_leave_out_the_token_table_only(variant):
    model = student(variant)
    width = model.config.embedding_width
    counts = parameter_counts(model)
    assert counts["params"] == sum(p.numel() for p in model.parameters())
    assert counts["params"] - counts["params_without_embeddings"] == VOCAB * width
    projection = 0 if variant == "pca" else width * HIDDEN
    rest = sum(p.numel() for name, p in model.named_parameters() if not name.startswith("embeddings."))
    assert counts["params_without_embeddings"] == rest + POSITIONS * width + 2 * HIDDEN + projection


@pytest.mark.parametrize("variant", VARIANTS)
def test_training_moves_what_the_variant_trains(variant):
    model = student(variant).train()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = adamw(model.parameters(), lr=1e-2, weight_decay=0.1)  # as train_with_kd builds it
    for _ in range(2):
        optimizer.zero_grad()
        model(**batch(), labels=torch.tensor([0, 1, 0])).loss.backward()
        optimizer.step()
    moved = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    tables = {"embeddings.words.weight", "embeddings.positions.weight"}
    if variant == "frozen_projection":
        assert not tables & moved  # neither trained nor weight-decayed
        assert "embeddings.projection.weight" in moved
    else:
        assert tables <= moved
    assert any(name.startswith("cells.") for name in moved)


@pytest.mark.parametrize("trained", VARIANTS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_inherit_from_the_supernet_takes_only_its_own_variants_embeddings(variant, trained):
    torch.manual_seed(1)
    supernet = SuperNet(SearchSpace(hidden_size=HIDDEN, max_cells=2, embeddings=trained), VOCAB, POSITIONS, LABELS,
                        pair=False, teacher_width=TEACHER_WIDTH)
    with torch.no_grad():  # off the initial values, so that a copy and a kept table differ
        for p in supernet.parameters():
            p.add_(0.3 * torch.randn_like(p))
    model = student(variant)
    own = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("embeddings.")}
    model.inherit_from_supernet(supernet, trained)
    source = supernet.state_dict()
    for name, value in model.state_dict().items():
        if name.startswith("embeddings."):
            expected = source[name] if variant == trained else own[name]
            assert torch.equal(value, expected), name
        elif name.startswith("cells."):
            assert torch.equal(value, source[name]), name


@pytest.mark.parametrize("variant", VARIANTS)
def test_build_embeddings_gives_b_t_hidden(variant):
    width = table_width(variant, HIDDEN, TEACHER_WIDTH)
    module = build_embeddings(variant, VOCAB, POSITIONS, HIDDEN, width, dropout=0.0)
    assert module(torch.randint(0, VOCAB, (2, 7))).shape == (2, 7, HIDDEN)


# ---------------------------------------------------------------- export


def split(pair: bool) -> EncodedSplit:
    g = torch.Generator().manual_seed(5)
    ids = [torch.randint(5, VOCAB, (int(n),), generator=g).tolist() for n in torch.randint(1, 12, (12,), generator=g)]
    types = [[0] * (len(row) // 2) + [int(pair)] * (len(row) - len(row) // 2) for row in ids]
    return EncodedSplit(ids, types, torch.zeros(len(ids)), 0)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning", "ignore:Iterating over a tensor")
@pytest.mark.parametrize("fmt", ["torchscript", pytest.param("onnx", marks=pytest.mark.skipif(
    not HAS_ORT, reason="needs the deploy extra"))])
@pytest.mark.parametrize("variant", VARIANTS)
def test_export_matches_pytorch(variant, fmt, tmp_path):
    model = student(variant, pair=True).eval()
    check = export_model(model, split(True), fmt, tmp_path / f"student.{fmt}", tolerance=1e-4)
    assert check["max_abs_difference"] <= 1e-4


@pytest.mark.skipif(not HAS_ORT, reason="needs the deploy extra")
@pytest.mark.parametrize("variant", VARIANTS)
def test_onnx_holds_the_token_table_once(variant):
    import onnx
    from onnx import numpy_helper

    model = student(variant).eval()
    example = {k: v for k, v in batch().items()}
    graph = onnx.load_from_string(onnx_bytes(model, example)).graph
    tables = [t for t in graph.initializer if tuple(t.dims) == (VOCAB, model.config.embedding_width)]
    assert len(tables) == 1
    assert torch.equal(torch.from_numpy(numpy_helper.to_array(tables[0]).copy()), model.get_input_embeddings().weight)
    # No parameter stored twice: the file holds at most the model's parameters and a few small constants.
    stored = sum(int(torch.tensor(list(t.dims)).prod()) for t in graph.initializer)
    assert stored < parameter_counts(model)["params"] + 10 * HIDDEN * HIDDEN


# ---------------------------------------------------------------- the genotype field


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_field_round_trips_through_json_and_the_string_form(variant):
    genotype = replace(BASE, embeddings=variant)
    assert Genotype.from_json(genotype.to_json()) == genotype
    assert json.loads(genotype.to_json())["embeddings"] == variant
    assert genotype.to_string().endswith(f";emb={variant}")
    assert Genotype.from_string(genotype.to_string()) == genotype.architecture()
    assert str(genotype).endswith(f"| embeddings: {variant}")
    assert "embeddings" not in json.loads(BASE.to_json()) and ";emb=" not in BASE.to_string()


def test_an_explicit_pca_is_canonically_the_absent_field():
    assert replace(BASE, embeddings="pca").canonical() == BASE.canonical()
    assert replace(BASE, embeddings="pca").canonical().to_string() == BASE.canonical().to_string()
    assert replace(BASE, embeddings="factorised").canonical() != BASE.canonical()
