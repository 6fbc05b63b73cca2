"""The hidden width as a searched choice: the supernet at a width is the narrower student,
derivation picks the width, arch.json keeps the width logits, and the efficiency terms see width."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from nas.base.errors import UserError
from nas.deploy.latency_table import predict_latency_ms, table_from_dict
from nas.train.search import SearchConfig
from nas.train.width_latency import WidthLatency, width_efficiency_loss, width_op_costs
from nas.train.latency_budget import SearchLatency
from ops import ADABERT_OPS
from searchspace.derive import derive_genotype, derive_width
from searchspace.genotype import DEFAULT_EMBEDDINGS, EMBEDDING_VARIANTS, Genotype, InvalidGenotype
from searchspace.random_arch import random_genotypes
from searchspace.sampler import HardGumbel, SoftMax
from searchspace.space import SearchSpace
from searchspace.student import compile_genotype
from searchspace.supernet import SuperNet
from tests.test_latency_table import EXAMPLE, hand_table
from tests.test_supernet import pair_batches, single_batches

WIDTHS, VOCAB, POSITIONS, LABELS, TEACHER_WIDTH = (8, 12, 16), 30, 32, 3, 20


def width_supernet(pair: bool, seed: int = 0, embeddings: str = DEFAULT_EMBEDDINGS) -> SuperNet:
    torch.manual_seed(seed)
    supernet = SuperNet(SearchSpace(hidden_size=16, max_cells=3, widths=WIDTHS, embeddings=embeddings), VOCAB,
                        POSITIONS, LABELS, pair, teacher_width=TEACHER_WIDTH)
    with torch.no_grad():  # off the initial values (LayerNorm 1, node weights 0), so a misplaced slice shows
        for p in supernet.weight_parameters():
            p.add_(0.3 * torch.randn_like(p))
    return supernet.eval()


@pytest.mark.parametrize("embeddings", EMBEDDING_VARIANTS)
@pytest.mark.parametrize("pair", [False, True], ids=["single", "pair"])
@pytest.mark.parametrize("width", WIDTHS)
def test_the_supernet_at_a_width_is_the_narrower_student(width, pair, embeddings):
    # Every word-vector variant: a factorised table narrows with the width, the others keep the teacher's.
    supernet = width_supernet(pair, seed=width, embeddings=embeddings)
    for index, genotype in enumerate(random_genotypes(width, 3, hidden_size=width, max_depth=3, max_cells=3)):
        genotype = dataclasses.replace(genotype, embeddings=embeddings)
        student = compile_genotype(genotype, vocab_size=VOCAB, max_positions=POSITIONS, num_labels=LABELS, pair=pair,
                                   teacher_width=TEACHER_WIDTH)
        student.inherit_from_supernet(supernet, embeddings)  # the leading `width` channels of every weight
        student.eval()
        _, padded, _ = (pair_batches if pair else single_batches)(seed=index)
        with torch.no_grad():
            expected, _ = supernet(**padded, path=supernet.genotype_path(genotype))
            got = student(**padded).logits
        assert torch.allclose(got, expected, atol=1e-5), (width, index, (got - expected).abs().max())


def test_widths_give_different_networks():
    # The check above could pass if widths were ignored: the narrow and wide runs must differ.
    supernet = width_supernet(False)
    genotype = random_genotypes(0, 1, hidden_size=8, max_depth=2, max_cells=3)[0]
    _, padded, _ = single_batches()
    with torch.no_grad():
        narrow = supernet(**padded, path=supernet.genotype_path(genotype))[0]
        wide = supernet(**padded, path=supernet.genotype_path(dataclasses.replace(genotype, hidden_size=16)))[0]
    assert not torch.allclose(narrow, wide, atol=1e-3)


def test_a_hard_path_runs_one_width_and_its_gradient_reaches_the_width_logits():
    supernet = width_supernet(False).train()
    path = supernet.sample_path(HardGumbel(), 1.0, torch.Generator().manual_seed(0))
    assert int((path.width_weights.detach() != 0).sum()) == 1  # one width computed
    _, padded, _ = single_batches()
    final, _ = supernet(**padded, path=path)
    final.pow(2).sum().backward()
    assert supernet.width_logits.grad is not None and supernet.width_logits.grad.abs().sum() > 0
    assert any(p is supernet.width_logits for p in supernet.arch_parameters())


def test_no_widths_means_no_width_choice():
    supernet = SuperNet(SearchSpace(hidden_size=16, max_cells=2), VOCAB, POSITIONS, LABELS, False)
    assert supernet.widths == () and not hasattr(supernet, "width_logits") and len(supernet.arch_parameters()) == 2
    assert supernet.sample_path(HardGumbel(), 1.0).width_weights is None


# ---------------------------------------------------------------- derivation and arch.json


def test_derive_picks_the_width_of_the_largest_logit():
    assert derive_width([0.1, 2.0, 0.3], WIDTHS) == 12
    assert derive_width([1.0, 1.0, 0.0], WIDTHS) == 8  # ties go to the narrower width
    op_logits, depth_logits = torch.zeros(9, len(ADABERT_OPS)), torch.tensor([0.0, 1.0, 0.0])
    genotype = derive_genotype(op_logits, depth_logits, 16, ADABERT_OPS, width_logits=torch.tensor([0.0, 0.0, 3.0]),
                               widths=WIDTHS)
    assert genotype.hidden_size == 16 and genotype.widths == WIDTHS and genotype.width_logits == (0.0, 0.0, 3.0)
    assert derive_genotype(op_logits, depth_logits, 16, ADABERT_OPS, width_logits=[5.0, 0.0, 0.0],
                           widths=WIDTHS).hidden_size == 8


def test_width_fields_round_trip_and_old_files_load():
    genotype = dataclasses.replace(EXAMPLE, hidden_size=12, widths=WIDTHS, width_logits=(0.5, 1.5, -1.0))
    assert Genotype.from_json(genotype.to_json()) == genotype
    old = json.loads(EXAMPLE.to_json())
    assert "widths" not in old and Genotype.from_json(json.dumps(old)).widths is None
    assert genotype.architecture().widths is None  # a search record, not part of the network


@pytest.mark.parametrize("changes, field", [
    ({"widths": None, "width_logits": (1.0, 2.0, 3.0)}, "width_logits"),
    ({"width_logits": (1.0, 2.0)}, "width_logits"),
    ({"hidden_size": 10}, "hidden_size"),
    ({"widths": (16, 8, 12)}, "widths"),
    ({"widths": (8, 8, 16)}, "widths"),
    ({"width_logits": (1.0, float("nan"), 0.0)}, "width_logits[1]"),
])
def test_bad_width_fields_are_named(changes, field):
    good = dict(hidden_size=12, widths=WIDTHS, width_logits=(0.5, 1.5, -1.0))
    with pytest.raises(InvalidGenotype) as caught:
        dataclasses.replace(EXAMPLE, **{**good, **changes})
    assert caught.value.field == field


# ---------------------------------------------------------------- settings


def test_widths_setting_and_record():
    config = SearchConfig(hidden_size=16, widths=(8, 16))
    assert config.space.width_choices == (8, 16) and config.to_dict()["widths"] == (8, 16)
    assert "widths" not in SearchConfig(hidden_size=16).to_dict()  # records of width-less searches unchanged
    for bad in [(8, 32), (8, 8, 16), (0, 16)]:
        with pytest.raises(UserError, match="setting 'widths'"):
            SearchConfig(hidden_size=16, widths=bad)


# ---------------------------------------------------------------- efficiency terms see width


def test_narrower_widths_cost_less_and_the_cost_term_pulls_towards_them():
    costs = width_op_costs(ADABERT_OPS, (8, 16), 64)  # (W, O)
    conv = ADABERT_OPS.index("cnn3")
    assert costs[0, conv] < costs[1, conv] and costs[1].max() == pytest.approx(1.0)
    # A conv's params and FLOPs grow as H^2 (bias and norm as H): about a quarter at half width.
    assert costs[0, conv] / costs[1, conv] == pytest.approx(0.25, abs=0.02)
    supernet = SuperNet(SearchSpace(hidden_size=16, max_cells=2, widths=(8, 16)), VOCAB, POSITIONS, LABELS, False)
    path = supernet.sample_path(SoftMax(), 1.0)  # every width weighted: L_E = Σ_w p_w · L_E(w)
    width_efficiency_loss(path, costs).backward()
    grad = supernet.width_logits.grad
    assert grad[0] < 0 < grad[1], grad  # raising the narrow width's logit lowers the cost term


HAND_WIDTHS = ((8, 0.5), (16, 1.0))  # (width, scale of test_latency_table's OP_MS)


def scaled_hand_table(width: int, scale: float) -> dict:
    """test_latency_table's hand table at `width`, every time multiplied by `scale`."""
    data = hand_table(hidden=width)
    for item in data["entries"]:
        for key in ("frame_ms", "frame_pair_ms", "embedding_ms", "head_ms", "cell_ms"):
            item[key] *= scale
        item["ops_ms"] = {op: ms * scale for op, ms in item["ops_ms"].items()}
    return data


def width_latency(budget: float) -> WidthLatency:
    """Hand tables: width 8 takes half the times of width 16 (test_latency_table's OP_MS)."""
    per_width = {}
    for width, scale in HAND_WIDTHS:
        config = SearchConfig(hidden_size=width, max_cells=3, latency_budget_ms=budget, latency_margin=0.0)
        per_width[width] = SearchLatency(table_from_dict(scaled_hand_table(width, scale)), config, False, ADABERT_OPS,
                                         torch.device("cpu"))
    return WidthLatency(per_width, SearchConfig(hidden_size=16, widths=(8, 16), max_cells=3, latency_budget_ms=budget))


def test_expected_latency_mixes_the_widths_tables():
    latency = width_latency(budget=0.0)
    supernet = SuperNet(SearchSpace(hidden_size=16, max_cells=3, widths=(8, 16)), VOCAB, POSITIONS, LABELS, False)
    for width in (8, 16):
        genotype = dataclasses.replace(EXAMPLE, hidden_size=width)
        path = supernet.genotype_path(genotype)
        assert latency.expected_ms(path).item() == pytest.approx(latency.predict(genotype))
        assert latency.predict(genotype) == pytest.approx(
            predict_latency_ms(latency.per_width[width].table, genotype, 1, 64))
    assert latency.predict(dataclasses.replace(EXAMPLE, hidden_size=8)) == pytest.approx(35.5 / 2)


def test_fit_goes_narrower_before_it_gives_up_ops():
    # EXAMPLE at width 16: K=1 12.5 ms; at width 8 everything halves: K=3 17.75 ms, K=2 12 ms.
    # Budget 12: one cell at width 16 (12.5) is over, so width 8, where K=2 (12) fits.
    fitted = width_latency(budget=12.0).fit(EXAMPLE)
    assert (fitted.hidden_size, fitted.num_cells, fitted.cell) == (8, 2, EXAMPLE.cell)
    assert width_latency(budget=13.0).fit(EXAMPLE).hidden_size == 16  # K=1 at width 16 fits 13
    tight = width_latency(budget=10.0).fit(EXAMPLE)  # width 8: K=2 (12) over, K=1 (6.25)
    assert (tight.hidden_size, tight.num_cells, tight.cell) == (8, 1, EXAMPLE.cell)
    assert width_latency(budget=100.0).fit(EXAMPLE) == EXAMPLE


# ---------------------------------------------------------------- a search over widths


def test_a_tiny_search_over_widths_writes_the_width_choice(prepared, tiny_glue, tmp_path):
    from nas.commands.cli import main

    teacher, knowledge = prepared["sst2"]
    out = tmp_path / "search"
    assert main(["search", "--task", "sst2", "--data-dir", str(tiny_glue), "--teacher", str(teacher),
                 "--knowledge", str(knowledge), "--out", str(out), "--device", "cpu", "--epochs", "1", "--seed", "0",
                 "--set", "hidden_size=16", "--set", "widths=8,16", "--set", "max_cells=2",
                 "--set", "warmup_epochs=0"]) == 0
    arch = Genotype.load(out / "arch.json")
    assert arch.widths == (8, 16) and len(arch.width_logits) == 2 and arch.hidden_size in (8, 16)
    assert arch.width_logits != (0.0, 0.0)  # the architecture steps moved them
    assert json.loads((out / "config.json").read_text())["config"]["widths"] == [8, 16]
    epochs = json.loads((out / "history.json").read_text())["epochs"]
    assert set(epochs[-1]["width_probabilities"]) == {"8", "16"}


def test_a_busy_cpu_is_warned_once_for_the_search_not_once_per_width(tmp_path, monkeypatch, capsys):
    from nas.deploy import latency_measure
    from nas.train.width_latency import width_search_latency

    hand = table_from_dict(hand_table()).entry(1, 64)
    monkeypatch.setattr(latency_measure, "cpu_load", lambda: 1000.0)  # far more runnable threads than cores
    monkeypatch.setattr(latency_measure, "measure_entry", lambda *args: hand)
    config = SearchConfig(hidden_size=16, widths=(8, 16), max_cells=3, embeddings=DEFAULT_EMBEDDINGS)
    latency = width_search_latency(config, tmp_path, torch.device("cpu"), False, ADABERT_OPS)
    assert latency.widths == (8, 16) and latency.measured
    err = capsys.readouterr().err
    assert err.count("warning: the CPU is busy") == 1, err
