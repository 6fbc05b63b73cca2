"""Every registered KD method, on the tiny teacher: it trains its student and never the teacher.

The registry is the test matrix: a newly registered method is tested by `test_every_method_*`
without another line here (give it a tiny student in TINY if its default is too big).
"""

from __future__ import annotations

import math

import pytest
import torch

from kd.knowledge import Knowledge
from kd.method_losses import vanilla_kd_loss
from kd.methods import METHODS, parse_layer_map
from kd.methods.theseus import groups
from nas.base.errors import UserError
from nas.train.distill import DistillConfig, make_session
from tiny_students import TINY
from nas.data.glue_io import load_task_data
from nas.data.tasks import get_task

# Theseus starts at p = 1 here, so the successor certainly runs in both steps.
OPTIONS = {"theseus": {"replace_base": 1.0}}
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def sst2(prepared, tiny_glue):
    teacher, knowledge = prepared["sst2"]
    return load_task_data(get_task("sst2"), tiny_glue, max_train=16, max_dev=8), teacher, Knowledge(knowledge)


def session_for(sst2, method: str, student: str | None = None, **options):
    data, teacher, knowledge = sst2
    config = DistillConfig(method=method, student=student if student is not None else TINY.get(method, ""),
                           **{**OPTIONS.get(method, {}), **options})
    return make_session(data, teacher, knowledge, config, CPU)


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_trains_its_student_and_never_the_teacher(sst2, name):
    torch.manual_seed(0)
    session = session_for(sst2, name)
    for stage in session.method.stages:
        with session.stage(stage) as params:
            optimizer = torch.optim.AdamW(params, lr=1e-3)
            before = [p.detach().clone() for p in params]
            for step, rows in enumerate((list(range(8)), list(range(8, 16))), 1):
                session.models[stage].train()
                loss, terms = session.loss(rows, stage)
                assert torch.isfinite(loss) and terms and all(math.isfinite(v) for v in terms.values()), terms
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grads = [p.grad for p in session.student.parameters() if p.grad is not None]
                assert grads and any(g.abs().sum() > 0 for g in grads), f"{name} {stage}: no gradient reached the student"
                assert all(torch.isfinite(g).all() for g in grads)
                assert all(p.grad is None for p in session.teacher.parameters()), f"{name} {stage}: the teacher got gradients"
                optimizer.step()
                session.method.after_step(step, 2, stage)
            assert any(not torch.equal(old, new) for old, new in zip(before, params))
    assert not session.teacher.training


def test_vanilla_terms_add_up_to_the_published_loss(sst2):
    session = session_for(sst2, "vanilla", alpha=0.3, temperature=2.0)
    torch.manual_seed(0)
    logits, teacher, labels = torch.randn(5, 2), torch.randn(5, 2), torch.tensor([0, 1, 1, 0, 1])
    terms = session.method.mixed({"kd": session.method.soft(logits, teacher)}, session.method.hard(logits, labels))
    assert set(terms) == {"kd", "ce"}
    assert torch.allclose(sum(terms.values()), vanilla_kd_loss(logits, teacher, labels, alpha=0.3, temperature=2.0))


def test_only_the_stages_that_need_teacher_features_run_the_teacher(sst2):
    method = session_for(sst2, "tinybert").method
    assert method.stage_needs("intermediate") == {"hidden_states", "attentions"}
    assert method.stage_needs("prediction") == frozenset()
    assert METHODS["vanilla"]().stage_needs("train") == frozenset()


@pytest.mark.parametrize("method, student, options, fragment", [
    ("pkd-skip", "transformer:layers=2", {"layer_map": "1:7"}, "teacher layer 7 is outside the teacher's layers 0..2"),
    ("tinybert", "transformer:layers=2", {"layer_map": "3:1"}, "student layer 3 is outside the student's layers 0..2"),
    ("pkd-skip", "transformer:layers=1", {}, "at least 2 layers"),
    ("minilm", "transformer:hidden=16,heads=1", {}, "the student has 1 heads, the teacher 2"),
    ("tinybert", "transformer:hidden=16,heads=4", {}, "the student has 4 heads, the teacher 2"),
    ("probes", "bilstm:hidden=8", {}, "BiLSTMClassifier cannot give hidden states, which probes needs"),
    ("theseus", "transformer:layers=1,hidden=16", {}, "hidden_size (16) must equal the teacher's (32)"),
    ("theseus", "bilstm:hidden=8", {}, "use a transformer student"),
])
def test_misfits_are_one_line_errors_before_training(sst2, method, student, options, fragment):
    with pytest.raises(UserError, match=fragment.replace("(", r"\(").replace(")", r"\)")) as error:
        session_for(sst2, method, student, **options)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("settings, fragment", [
    ({"method": "nope"}, "unknown KD method 'nope'"),
    ({"student": "gru:hidden=3"}, "unknown kind 'gru'"),
    ({"beta": 1.0}, "setting 'beta' is not used by method vanilla"),
    ({"method": "minilm", "layer_map": "skip"}, "setting 'layer_map' is not used by method minilm"),
    ({"alpha": 1.5}, "between 0 and 1"),
])
def test_bad_settings_fail_when_the_config_is_made(settings, fragment):
    with pytest.raises(UserError, match=fragment):
        DistillConfig(**settings).make_method()


def test_layer_map_text():
    assert [(m.student, m.teacher) for m in parse_layer_map("skip", 3, 6)] == [(1, 2), (2, 4)]
    assert [(m.student, m.teacher) for m in parse_layer_map("1:2, 2:6", 2, 6)] == [(1, 2), (2, 6)]
    with pytest.raises(UserError, match="student:teacher pairs"):
        parse_layer_map("1-2", 2, 6)


def test_theseus_groups_and_schedule():
    assert [(m.student, m.teacher) for m in groups(3, 6)] == [(1, 2), (2, 4), (3, 6)]
    with pytest.raises(UserError, match="must divide the teacher's 6"):
        groups(4, 6)
    method = METHODS["theseus"]({"replace_base": 0.5})
    method.hybrid = type("Hybrid", (), {})()
    assert method.after_step(0, 10, "replacing")["theseus/replace_probability"] == 0.5
    assert method.after_step(10, 10, "replacing")["theseus/replace_probability"] == 1.0
    assert method.after_step(3, 10, "finetune") is None


@pytest.mark.parametrize("probability, source", [(0.0, "teacher"), (1.0, "student")])
def test_theseus_hybrid_runs_the_predecessor_or_the_successor(sst2, probability, source):
    session = session_for(sst2, "theseus", "transformer:layers=1")
    hybrid = session.models["replacing"].eval()
    hybrid.probability = probability
    inputs = {"input_ids": torch.tensor([[2, 5, 17, 8, 3]]), "attention_mask": torch.ones(1, 5, dtype=torch.long)}
    with torch.no_grad():
        expected = getattr(session, source)(**inputs).logits
        assert torch.allclose(hybrid(**inputs).logits, expected, atol=1e-5)
    assert len(session.student.bert.encoder.layer) == 1  # the drawn layers were put back
