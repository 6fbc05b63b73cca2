"""Student specs, the students they build from a teacher, their folders, and the BiLSTM under the adaptor."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import BertForSequenceClassification

from kd.adaptor import adapt
from kd.layer_map import every_other, uniform
from kd.students import (BiLSTMClassifier, build_student, load_student, parse_student_spec,
                         resolve_spec, save_student)
from nas.base.errors import UserError
from nas.data.models import load_tokenizer
from nas.data.tasks import get_task
from nas.deploy.costs import parameter_counts
from nas.train.distill_data import teacher_embedding_tables
from searchspace.embeddings import principal_projection, teacher_tables

ARCH = {"schema_version": 1, "num_cells": 2, "hidden_size": 16,
        "cell": [[["cnn3", 0], ["max_pool", 1]], [["dilated_cnn5", 2], ["identity", 0]], [["cnn7", 3], ["avg_pool", 2]]]}


@pytest.fixture(scope="module")
def teacher(tiny_teacher):
    return BertForSequenceClassification.from_pretrained(tiny_teacher).eval()


@pytest.fixture(scope="module")
def tokenizer(tiny_teacher):
    return load_tokenizer(str(tiny_teacher))


# ----- the teacher's tables, read in one place

def test_teacher_tables_are_detached_copies_of_the_word_and_position_tables(teacher):
    words, positions = teacher_tables(teacher)
    assert torch.equal(words, teacher.bert.embeddings.word_embeddings.weight)
    assert torch.equal(positions, teacher.bert.embeddings.position_embeddings.weight)
    assert not words.requires_grad and not positions.requires_grad
    words.zero_()  # a copy: the teacher keeps its table
    assert teacher.bert.embeddings.word_embeddings.weight.abs().sum() > 0


def test_a_teacher_without_learned_positions_gives_none(teacher):
    class Rotary(torch.nn.Module):  # a base model whose embeddings hold only a word table
        def __init__(self):
            super().__init__()
            self.embeddings = torch.nn.Module()
            self.embeddings.word_embeddings = teacher.bert.embeddings.word_embeddings

    model = torch.nn.Module()
    model.base_model = Rotary()
    model.get_input_embeddings = lambda: model.base_model.embeddings.word_embeddings
    words, positions = teacher_tables(model)
    assert positions is None and torch.equal(words, teacher.get_input_embeddings().weight)


def test_search_and_the_kd_students_read_the_same_tables(teacher, tiny_teacher, tokenizer):
    """`nas search`/`nas finetune` load the tables from the teacher folder; `nas distill` students
    from the loaded teacher: one helper, the same tables."""
    words, positions = teacher_embedding_tables(str(tiny_teacher), get_task("sst2"))
    assert torch.equal(words, teacher_tables(teacher)[0]) and torch.equal(positions, teacher_tables(teacher)[1])
    lstm = build_student(parse_student_spec("bilstm:hidden=8"), teacher, get_task("sst2"), tokenizer)
    width = lstm.words.embedding_dim
    expected = words if width == words.shape[1] else words @ principal_projection(words, width)
    assert torch.allclose(lstm.words.weight, expected, atol=1e-5)


# ----- specs

@pytest.mark.parametrize("text", [
    "transformer", "transformer:layers=4,hidden=256,heads=4,ffn=1024", "transformer:layers=2,init=random",
    "bilstm:hidden=300", "bilstm:hidden=16,layers=2,embeddings=frozen", "arch:runs/x/arch.json",
])
def test_spec_text_round_trips(text):
    spec = parse_student_spec(text)
    assert str(spec) == text
    assert parse_student_spec(str(spec)) == spec


def test_spec_keys_in_any_order_give_one_spec():
    assert parse_student_spec("transformer:ffn=64,layers=2") == parse_student_spec("transformer:layers=2,ffn=64")


@pytest.mark.parametrize("text, fragment", [
    ("lstm:hidden=3", "unknown kind 'lstm'"),
    ("transformer:depth=3", "unknown key 'depth'"),
    ("bilstm:heads=2", "unknown key 'heads'"),
    ("transformer:layers=two", "layers must be a positive integer"),
    ("transformer:layers=0", "layers must be a positive integer"),
    ("transformer:init=copy", "init must be one of teacher, random"),
    ("transformer:layers", "expected key=value"),
    ("transformer:hidden=30,heads=4", "not a multiple of heads=4"),
    ("arch:", "give the architecture file"),
])
def test_bad_specs_are_one_line_errors(text, fragment):
    with pytest.raises(UserError, match=fragment) as error:
        parse_student_spec(text)
    assert "\n" not in str(error.value)


def test_left_out_keys_come_from_the_teacher(teacher):
    assert str(resolve_spec(parse_student_spec("transformer"), teacher)) == \
        "transformer:layers=1,hidden=32,heads=2,ffn=64,init=teacher"
    narrow = resolve_spec(parse_student_spec("transformer:hidden=16"), teacher)
    assert (narrow.get("heads"), narrow.get("ffn"), narrow.get("init")) == (2, 32, "random")
    assert resolve_spec(parse_student_spec("transformer:hidden=15"), teacher).get("heads") == 1  # 2 does not divide 15
    assert str(resolve_spec(parse_student_spec("bilstm"), teacher)) == "bilstm:hidden=300,layers=1,embeddings=trainable"
    with pytest.raises(UserError, match="init=teacher needs the teacher's widths"):
        resolve_spec(parse_student_spec("transformer:hidden=16,init=teacher"), teacher)


# ----- transformer students

def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize("init_layers, source", [(uniform, 1), (lambda s, t: every_other(t), 0)])
def test_teacher_init_copies_the_mapped_layers(teacher, tokenizer, init_layers, source):
    student = build_student(parse_student_spec("transformer:layers=1"), teacher, get_task("sst2"), tokenizer,
                            init_layers=init_layers)
    assert student.config.num_hidden_layers == 1
    assert _same(student.bert.encoder.layer[0], teacher.bert.encoder.layer[source])
    assert not _same(student.bert.encoder.layer[0], teacher.bert.encoder.layer[1 - source])
    for name in ("embeddings", "pooler"):
        assert _same(getattr(student.bert, name), getattr(teacher.bert, name))
    assert _same(student.classifier, teacher.classifier)


def test_a_map_outside_the_teacher_is_refused(teacher, tokenizer):
    from kd.layer_map import LayerMatch

    with pytest.raises(UserError, match="teacher layer 5 is outside"):
        build_student(parse_student_spec("transformer:layers=1"), teacher, get_task("sst2"), tokenizer,
                      init_layers=lambda s, t: (LayerMatch(1, 5),))


def test_a_narrower_student_starts_from_projected_teacher_embeddings(teacher, tokenizer):
    student = build_student(parse_student_spec("transformer:layers=2,hidden=16,heads=2,ffn=32"), teacher,
                            get_task("sst2"), tokenizer)
    words = teacher.get_input_embeddings().weight.detach()
    expected = words @ principal_projection(words, 16)
    assert torch.allclose(student.get_input_embeddings().weight, expected, atol=1e-5)
    assert student.config.hidden_size == 16 and student.config.vocab_size == teacher.config.vocab_size
    sizes = parameter_counts(student)  # the figure metrics.json records: the projected table is the whole difference
    assert sizes["params"] - sizes["params_without_embeddings"] == words.shape[0] * 16


def test_transformer_student_folder_round_trips(teacher, tokenizer, tmp_path):
    spec = resolve_spec(parse_student_spec("transformer:layers=1"), teacher)
    student = build_student(spec, teacher, get_task("mrpc"), tokenizer).eval()
    save_student(student, spec, tmp_path)
    inputs = tokenizer(["a good film"], ["a bad plot"], return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(load_student(tmp_path).eval()(**inputs).logits, student(**inputs).logits)


# ----- the searched student

def test_searched_student_from_arch_json(teacher, tokenizer, tmp_path):
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps(ARCH))
    student = build_student(parse_student_spec(f"arch:{arch}"), teacher, get_task("sst2"), tokenizer).eval()
    words = teacher.get_input_embeddings().weight.detach()
    assert torch.allclose(student.get_input_embeddings().weight, words @ principal_projection(words, 16), atol=1e-5)
    record = adapt(student, tokenizer(["the film was good"], return_tensors="pt"), need={"hidden_states"})
    assert record.num_layers == 2 and record.hidden_states[-1].shape[-1] == 16
    save_student(student, parse_student_spec(f"arch:{arch}"), tmp_path / "saved")
    assert type(load_student(tmp_path / "saved")).__name__ == "AdaBertStudentForSequenceClassification"


def test_missing_arch_file_is_a_user_error(teacher, tokenizer, tmp_path):
    with pytest.raises(UserError):
        build_student(parse_student_spec(f"arch:{tmp_path / 'none.json'}"), teacher, get_task("sst2"), tokenizer)


# ----- the BiLSTM student

@pytest.fixture(scope="module")
def pair_lstm(teacher, tokenizer):
    torch.manual_seed(0)
    return build_student(parse_student_spec("bilstm:hidden=8"), teacher, get_task("mrpc"), tokenizer).eval()


def test_bilstm_starts_from_the_teacher_word_embeddings(pair_lstm, teacher):
    assert torch.equal(pair_lstm.words.weight, teacher.get_input_embeddings().weight)
    frozen = BiLSTMClassifier(10, 4, 3, 1, 2, pair=False, freeze_embeddings=True)
    assert not frozen.words.weight.requires_grad and frozen.lstm.weight_hh_l0.requires_grad


def test_bilstm_pair_encodes_each_sentence_alone(pair_lstm, tokenizer):
    pair = tokenizer(["the film was good", "a plot"], ["a bad story", "the very dull movie was bad"],
                     return_tensors="pt", padding=True)
    logits = pair_lstm(**pair).logits
    assert logits.shape == (2, 2)
    # Row 0's first sentence, tokenised alone ([CLS] a [SEP] -> the same tokens the pair's segment A holds).
    alone = tokenizer(["the film was good"], return_tensors="pt")
    keep_a = pair["attention_mask"].bool() & ~pair["token_type_ids"].bool()
    h_pair = pair_lstm.encode(pair["input_ids"], keep_a)[0]
    h_alone = pair_lstm.encode(alone["input_ids"], alone["attention_mask"].bool())[0]
    assert torch.allclose(h_pair, h_alone, atol=1e-6)


def test_bilstm_ignores_padding(teacher, tokenizer):
    torch.manual_seed(0)
    single = build_student(parse_student_spec("bilstm:hidden=8"), teacher, get_task("sst2"), tokenizer).eval()
    short = tokenizer(["a good film"], return_tensors="pt")
    padded = tokenizer(["a good film", "the very dull movie was quite bad and boring"], return_tensors="pt", padding=True)
    with torch.no_grad():
        assert torch.allclose(single(**short).logits[0], single(**padded).logits[0], atol=1e-6)


def test_adaptor_reads_the_bilstm_logits_and_refuses_layers(pair_lstm, tokenizer):
    inputs = tokenizer(["a good film"], ["a bad plot"], return_tensors="pt")
    record = adapt(pair_lstm, inputs)
    assert torch.equal(record.logits, pair_lstm(**inputs).logits)
    assert record.mask.dtype == torch.bool and record.hidden_states is None
    with pytest.raises(UserError, match="BiLSTMClassifier cannot give attention maps, which minilm needs"):
        adapt(pair_lstm, inputs, need={"attentions"}, method="minilm")


def test_bilstm_folder_round_trips(pair_lstm, tokenizer, tmp_path):
    spec = parse_student_spec("bilstm:hidden=8")
    save_student(pair_lstm, spec, tmp_path)
    assert json.loads((tmp_path / "student.json").read_text())["spec"] == "bilstm:hidden=8"
    inputs = tokenizer(["a good film"], ["a bad plot"], return_tensors="pt")
    loaded = load_student(tmp_path).eval()
    assert torch.equal(loaded(**inputs).logits, pair_lstm(**inputs).logits)


def test_bilstm_recurrent_flops():
    model = BiLSTMClassifier(10, 4, 3, layers=2, num_labels=2, pair=False)
    # Per token, layer 1: 2 directions · 4 gates · 2·(4 + 3)·3; layer 2 reads 2·3 inputs: 2·4·2·(6 + 3)·3.
    assert model.recurrent_flops(5) == 5 * (2 * 4 * 2 * 7 * 3 + 2 * 4 * 2 * 9 * 3)
