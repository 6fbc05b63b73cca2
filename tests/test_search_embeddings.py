"""A search of another word-vector variant (`--set embeddings=NAME`): the supernet trains that
variant's word vectors, arch.json records it, and the student inherits them only when it keeps it."""

from __future__ import annotations

import json

import pytest
import torch

from nas.commands.cli import main
from nas.deploy.latency_table import load_latency_table
from searchspace.genotype import Genotype
from searchspace.student import AdaBertStudentForSequenceClassification


@pytest.fixture(scope="module")
def frozen_search(prepared, tiny_glue, tmp_path_factory):
    out = tmp_path_factory.mktemp("frozen_search") / "search"
    teacher, knowledge = prepared["sst2"]
    assert main(["search", "--task", "sst2", "--data-dir", tiny_glue, "--teacher", teacher, "--knowledge", knowledge,
                 "--out", out, "--epochs", 2, "--set", "hidden_size=16", "--set", "max_cells=2",
                 "--set", "warmup_epochs=1", "--set", "embeddings=frozen_projection",
                 "--set", "efficiency=latency", "--set", "latency_seq_len=8"]) == 0
    return out


def teacher_word_table(teacher) -> torch.Tensor:
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(teacher).get_input_embeddings().weight.detach()


def test_the_search_trains_and_records_the_variant(frozen_search, prepared):
    arch = Genotype.load(frozen_search / "arch.json")
    assert arch.embeddings == "frozen_projection"
    assert json.loads((frozen_search / "config.json").read_text())["config"]["embeddings"] == "frozen_projection"
    weights = torch.load(frozen_search / "supernet_best.pt", weights_only=True)
    teacher = teacher_word_table(prepared["sst2"][0])
    # The teacher's own table, never trained; the projection into the cells is what the search trained.
    assert torch.equal(weights["embeddings.words.weight"], teacher.float())
    assert weights["embeddings.projection.weight"].shape == (16, teacher.shape[1])
    # arch.json's sizes are the student's as served: the teacher-wide table and the projection
    # folded into one token table as wide as the cells.
    assert arch.costs["params"] - arch.costs["params_without_embeddings"] == teacher.shape[0] * arch.hidden_size
    # Its latency table timed the frame with these word vectors, at the teacher's width.
    table = load_latency_table(frozen_search / "latency_table.json")
    assert (table.embeddings, table.teacher_width) == ("frozen_projection", teacher.shape[1])
    assert arch.costs["predicted_latency_ms"] > 0


def finetuned_student(prepared, tiny_glue, arch, out, *extra):
    teacher, knowledge = prepared["sst2"]
    # lr 0: the weights the student starts from are the ones it saves.
    assert main(["finetune", "--task", "sst2", "--data-dir", tiny_glue, "--teacher", teacher, "--knowledge", knowledge,
                 "--arch", arch, "--out", out, "--epochs", 1, "--set", "latency_repeats=1", "--set", "lr=0",
                 "--set", "init=search", *extra]) == 0
    return AdaBertStudentForSequenceClassification.from_pretrained(out)


def test_the_student_of_the_searched_variant_inherits_the_trained_projection(frozen_search, prepared, tiny_glue,
                                                                             tmp_path):
    weights = torch.load(frozen_search / "supernet_best.pt", weights_only=True)
    student = finetuned_student(prepared, tiny_glue, frozen_search / "arch.json", tmp_path / "student")
    # Saved as served, folded: the teacher's table through the projection the search trained.
    folded = weights["embeddings.words.weight"] @ weights["embeddings.projection.weight"].T
    torch.testing.assert_close(student.embeddings.words.weight.detach(), folded)


def test_a_student_of_another_variant_of_the_same_shapes_keeps_its_own(frozen_search, prepared, tiny_glue, tmp_path):
    # wide_projection's tables and projection have the frozen variant's shapes: only the variant
    # recorded in arch.json tells that the supernet's projection was not trained for it.
    weights = torch.load(frozen_search / "supernet_best.pt", weights_only=True)
    student = finetuned_student(prepared, tiny_glue, frozen_search / "arch.json", tmp_path / "student",
                                "--set", "embeddings=wide_projection")
    # Served folded: its table is not the teacher's through the search's projection.
    searched = weights["embeddings.words.weight"] @ weights["embeddings.projection.weight"].T
    assert student.embeddings.words.weight.shape == searched.shape
    assert not torch.allclose(student.embeddings.words.weight.detach(), searched, atol=1e-3)


def test_a_resume_with_another_variant_is_refused(frozen_search, prepared, tiny_glue, tmp_path, run_cli):
    import shutil

    copy = tmp_path / "search"
    shutil.copytree(frozen_search, copy)
    teacher, knowledge = prepared["sst2"]
    code, out, err = run_cli("search", "--task", "sst2", "--data-dir", tiny_glue, "--teacher", teacher,
                             "--knowledge", knowledge, "--out", copy, "--epochs", 2, "--set", "hidden_size=16",
                             "--set", "max_cells=2", "--set", "warmup_epochs=1", "--set", "embeddings=pca", "--resume")
    assert code == 2 and "embeddings" in err and len(err.strip().splitlines()) == 1, err


def test_an_unknown_variant_is_a_one_line_error(prepared, tiny_glue, tmp_path, run_cli):
    teacher, knowledge = prepared["sst2"]
    code, out, err = run_cli("search", "--task", "sst2", "--data-dir", tiny_glue, "--teacher", teacher,
                             "--knowledge", knowledge, "--out", tmp_path / "search", "--epochs", 2,
                             "--set", "embeddings=glove")
    assert code == 2 and "setting 'embeddings'" in err and "glove" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "search").exists()
