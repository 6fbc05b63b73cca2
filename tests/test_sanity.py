"""`nas sanity`: random architectures within 10% of the searched one's predicted latency, the
verdict rule, bounded rejection sampling, and a tiny end-to-end run."""

from __future__ import annotations

import dataclasses
import json

import pytest

from nas.base.errors import UserError
from nas.deploy.latency_table import table_from_dict
from nas.train.sanity import LatencyModel, sample_within, summarise
from searchspace.genotype import EMBEDDING_VARIANTS
from tests.test_latency_table import EXAMPLE, hand_table


def scaled_table(width: int, scale: float, embeddings: str = "pca"):
    data = {**hand_table(hidden=width), "embeddings": embeddings}
    for item in data["entries"]:
        for key in ("frame_ms", "frame_pair_ms", "embedding_ms", "head_ms", "cell_ms"):
            item[key] *= scale
        item["ops_ms"] = {op: ms * scale for op, ms in item["ops_ms"].items()}
    return table_from_dict(data)


LATENCY = LatencyModel({8: scaled_table(8, 0.5), 16: scaled_table(16, 1.0)}, batch_size=1, seq_len=64, pair=False)
SEARCHED = dataclasses.replace(EXAMPLE, num_cells=2, widths=(8, 16), width_logits=(0.0, 1.0))  # H=16: 24 ms


def test_randoms_are_predicted_within_ten_percent_and_vary_depth_width_and_cell():
    found = sample_within(SEARCHED, LATENCY, 8, tolerance=0.10, seed=1)
    target = LATENCY.predict(SEARCHED)
    assert len(found) == 8 and len({g.canonical() for g, _ in found}) == 8
    for genotype, predicted in found:
        assert predicted == pytest.approx(LATENCY.predict(genotype))
        assert abs(predicted - target) <= 0.10 * target
        assert genotype.canonical() != SEARCHED.canonical()
    assert len({g.hidden_size for g, _ in found}) == 2 and len({g.num_cells for g, _ in found}) >= 2


@pytest.mark.parametrize("embeddings", EMBEDDING_VARIANTS)
def test_randoms_have_the_searched_architectures_word_vectors(embeddings):
    # The check compares architectures: each random one is built with the variant the search trained.
    reference = dataclasses.replace(SEARCHED, embeddings=embeddings)
    latency = LatencyModel({8: scaled_table(8, 0.5, embeddings), 16: scaled_table(16, 1.0, embeddings)},
                           batch_size=1, seq_len=64, pair=False)
    assert {g.embedding_variant for g, _ in sample_within(reference, latency, 3, seed=2)} == {embeddings}


def test_sampling_gives_up_after_its_tries_with_a_clear_error():
    with pytest.raises(UserError, match=r"found \d+ of 5 random architectures .* in 300 tries"):
        sample_within(SEARCHED, LATENCY, 5, tolerance=1e-9, max_tries=300)


def test_a_missing_table_is_named():
    with pytest.raises(UserError, match="no latency table for hidden size 16"):
        LatencyModel({8: LATENCY.tables[8]}, 1, 64, False).predict(EXAMPLE)


@pytest.mark.parametrize("searched, beats", [(0.90, True), (0.81, False), (0.803, False)])
def test_the_verdict_needs_one_std_and_half_a_point(searched, beats):
    # Randoms: mean 0.80, std 0.02. 0.81 is 1 point up but within a std; 0.803 is neither.
    summary = summarise(searched, [0.78, 0.80, 0.82], points=100.0)
    assert summary["random_mean"] == pytest.approx(0.80) and summary["random_std"] == pytest.approx(0.02)
    assert summary["beats_random"] is beats
    assert summary["gain_points"] == pytest.approx((searched - 0.80) * 100)


def test_a_tiny_sanity_check_runs_end_to_end(prepared, tiny_glue, tmp_path):
    from nas.commands.cli import main

    teacher, knowledge = prepared["sst2"]
    table = tmp_path / "table.json"
    table.write_text(json.dumps(hand_table(hidden=16)))
    arch = tmp_path / "arch.json"
    dataclasses.replace(EXAMPLE, num_cells=2).save(arch)
    out = tmp_path / "sanity"
    args = ["sanity", "--task", "sst2", "--data-dir", str(tiny_glue), "--teacher", str(teacher), "--knowledge",
            str(knowledge), "--arch", str(arch), "--out", str(out), "--device", "cpu", "--random", "2",
            "--latency-table", str(table), "--epochs", "1", "--set", "latency_repeats=1",
            "--set", "latency_batch_sizes=1"]
    assert main(args) == 0
    summary = json.loads((out / "sanity.json").read_text())
    assert [row["name"] for row in summary["rows"]] == ["searched", "random_0", "random_1"]
    assert summary["finetune"]["init"] == "scratch"
    target = summary["rows"][0]["predicted_ms"]
    assert all(abs(row["predicted_ms"] - target) <= 0.10 * target for row in summary["rows"])
    assert "Beats random" in (out / "sanity.md").read_text()
    for name in ("searched", "random_0", "random_1"):
        assert json.loads((out / name / "metrics.json").read_text())["init"] == "scratch"
    # A second run reuses the finished finetunes and writes the same verdict.
    assert main(args) == 0
    assert json.loads((out / "sanity.json").read_text())["rows"] == summary["rows"]


def test_init_search_starts_every_architecture_from_the_supernet_and_is_not_mixed_with_scratch(
        prepared, searched, tiny_glue, tmp_path, run_cli):
    teacher, knowledge = prepared["sst2"]
    arch = searched["sst2"] / "arch.json"
    table = tmp_path / "table.json"
    # Timed with the search's word vectors (`auto`: the tiny teacher's own, 32 wide, on SST-2), as the check asks.
    table.write_text(json.dumps({**hand_table(hidden=16), "embeddings": "frozen_projection", "teacher_width": 32}))
    out = tmp_path / "sanity"
    args = ["sanity", "--task", "sst2", "--data-dir", tiny_glue, "--teacher", teacher, "--knowledge", knowledge,
            "--arch", arch, "--out", out, "--device", "cpu", "--random", "2", "--latency-table", table, "--epochs", "1",
            "--set", "latency_repeats=1", "--set", "latency_batch_sizes=1", "--set", "use_augmented=false"]
    code, _, err = run_cli(*args, "--set", "init=search")
    assert code == 0, err
    summary = json.loads((out / "sanity.json").read_text())
    assert summary["finetune"]["init"] == "search" and len(summary["rows"]) == 3
    for row in summary["rows"]:
        assert json.loads((out / row["name"] / "metrics.json").read_text())["init"] == "search", row["name"]
    assert "from the search's supernet" in (out / "sanity.md").read_text()
    # The same folder asked from scratch would mix two starts in one verdict: refused, nothing rewritten.
    before = (out / "sanity.json").read_text()
    code, _, err = run_cli(*args)
    assert code == 2 and "finetuned with init=search" in err and len(err.strip().splitlines()) == 1
    assert (out / "sanity.json").read_text() == before


def test_init_search_without_the_search_weights_is_a_one_line_error(prepared, tiny_glue, tmp_path, run_cli):
    teacher, knowledge = prepared["sst2"]
    arch = tmp_path / "arch.json"
    dataclasses.replace(EXAMPLE, num_cells=2).save(arch)
    table = tmp_path / "table.json"
    table.write_text(json.dumps(hand_table(hidden=16)))
    code, _, err = run_cli("sanity", "--task", "sst2", "--data-dir", tiny_glue, "--teacher", teacher, "--knowledge",
                           knowledge, "--arch", arch, "--out", tmp_path / "sanity", "--device", "cpu", "--random", "2",
                           "--latency-table", table, "--epochs", "1", "--set", "init=search")
    assert code == 2 and "init=search" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "sanity").exists()
