"""A latency table records the word vectors its frame was timed with (a projected variant adds a
matmul per token): it is built, kept, read back and checked with them, and predicts only
genotypes that have them."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import pytest
import torch

from nas.base.errors import UserError
from nas.deploy.latency_measure import LatencyTableConfig, build_latency_table, measure_entry
from nas.deploy.latency_table import check_compatible, load_latency_table, predict_latency_ms, table_from_dict
from nas.train.latency_budget import _fits
from searchspace.genotype import EMBEDDING_VARIANTS
from searchspace.student import AdaBertStudentForSequenceClassification
from tests.test_latency_table import EXAMPLE, hand_table

TEACHER_WIDTH = 24
QUICK = dict(hidden_size=8, batch_sizes=(1,), seq_lens=(4,), warmup=0, repeats=1, min_repeat_ms=0, stack_cells=1)
CPU = torch.device("cpu")


@pytest.mark.parametrize("embeddings", EMBEDDING_VARIANTS)
def test_the_frame_is_timed_with_the_tables_word_vectors(embeddings, monkeypatch):
    frames = []
    original = AdaBertStudentForSequenceClassification.without_cells

    def kept(student):
        frames.append(student)
        return original(student)

    monkeypatch.setattr(AdaBertStudentForSequenceClassification, "without_cells", kept)
    config = LatencyTableConfig(**QUICK, embeddings=embeddings, teacher_width=TEACHER_WIDTH)
    measure_entry(config, 1, 4, CPU, torch.Generator().manual_seed(0))
    assert frames and {frame.config.arch.embedding_variant for frame in frames} == {embeddings}
    # As served: every variant's word vectors folded into one table as wide as the cells.
    assert frames[0].get_input_embeddings().embedding_dim == 8
    assert frames[0].config.folded_embeddings == (embeddings != "pca")


def test_a_table_keeps_its_variant_and_reads_it_back(tmp_path):
    table = build_latency_table(LatencyTableConfig(**QUICK, embeddings="frozen_projection", teacher_width=TEACHER_WIDTH), CPU)
    saved = table.to_dict()
    assert saved["embeddings"] == "frozen_projection" and saved["teacher_width"] == TEACHER_WIDTH
    again = table_from_dict(json.loads(json.dumps(saved)))
    assert (again.embeddings, again.teacher_width) == ("frozen_projection", TEACHER_WIDTH)
    # pca's tables write no field, as every table before it: an old table reads as pca.
    pca = build_latency_table(LatencyTableConfig(**QUICK), CPU).to_dict()
    assert "embeddings" not in pca and "teacher_width" not in pca
    assert table_from_dict(hand_table()).embeddings == "pca"


def test_a_genotype_of_other_word_vectors_is_not_predicted():
    table = table_from_dict({**hand_table(), "embeddings": "frozen_projection"})
    frozen = dataclasses.replace(EXAMPLE, embeddings="frozen_projection")
    assert predict_latency_ms(table, frozen, 1, 64) > 0
    with pytest.raises(UserError, match="embeddings 'frozen_projection' differ from the genotype's 'pca'"):
        predict_latency_ms(table, EXAMPLE, 1, 64)


def test_a_search_does_not_take_a_table_of_other_word_vectors():
    table = table_from_dict(hand_table(), "kept.json")
    with pytest.raises(UserError, match="kept.json: embeddings are 'pca' but this run uses 'factorised'"):
        check_compatible(table, CPU, 16, embeddings="factorised")
    config = SimpleNamespace(hidden_size=16, embeddings="frozen_projection", latency_batch_size=1, latency_seq_len=64)
    assert not _fits(table, config, CPU, TEACHER_WIDTH)  # a run folder's table of other word vectors is measured again
    frozen = table_from_dict({**hand_table(), "embeddings": "frozen_projection", "teacher_width": TEACHER_WIDTH})
    assert _fits(frozen, config, CPU, TEACHER_WIDTH) and not _fits(frozen, config, CPU, 2 * TEACHER_WIDTH)


@pytest.mark.parametrize("field, value, message", [
    ("embeddings", "glove", "embeddings: expected one of pca"),
    ("teacher_width", -1, "teacher_width: expected a width"),
])
def test_a_bad_variant_field_is_a_one_line_error(tmp_path, field, value, message):
    path = tmp_path / "table.json"
    path.write_text(json.dumps({**hand_table(), field: value}))
    with pytest.raises(UserError, match=f"table.json: {message}"):
        load_latency_table(path)


def test_a_teacher_wide_variant_needs_the_teachers_width():
    with pytest.raises(UserError, match="setting 'teacher_width'"):
        LatencyTableConfig(**QUICK, embeddings="wide_projection")
    with pytest.raises(UserError, match="setting 'embeddings': unknown variant 'glove'"):
        LatencyTableConfig(**QUICK, embeddings="glove")


@pytest.mark.parametrize("embeddings, loads", [("frozen_projection", 1), ("pca", 0)])
def test_a_sweep_loads_the_teacher_once_for_all_its_tables(embeddings, loads, tmp_path, monkeypatch):
    from nas.sweep import sweep

    loaded, widths = [], []
    monkeypatch.setattr(sweep, "teacher_embedding_tables",
                        lambda teacher_dir, task: loaded.append(teacher_dir) or (torch.zeros(5, TEACHER_WIDTH), None))

    def build(config, device):  # the hand table at the width and word vectors asked for, without timing anything
        widths.append(config.teacher_width)
        extra = {"embeddings": config.embeddings, "teacher_width": config.teacher_width} if config.teacher_width else {}
        return table_from_dict({**hand_table(config.hidden_size), **extra})

    monkeypatch.setattr(sweep, "build_latency_table", build)
    job = SimpleNamespace(sweep=SimpleNamespace(hidden_sizes=(16, 32, 48), latency_batch_size=1, latency_seq_len=64),
                          latency_tables=[], out=tmp_path, device=CPU, search=SimpleNamespace(embeddings=embeddings),
                          teacher_dir="teacher", data=SimpleNamespace(task=None))
    tables = sweep.latency_tables(job, log=lambda line: None)
    assert sorted(tables) == [16, 32, 48] and len(loaded) == loads
    assert widths == [TEACHER_WIDTH if loads else 0] * 3
