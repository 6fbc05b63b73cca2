"""The KD output record, the adaptor that fills it from any model, and layer maps as data."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn
from transformers import BertConfig, BertForSequenceClassification, DistilBertConfig, DistilBertForSequenceClassification

from kd.adaptor import adapt, student_forward
from kd.layer_map import LayerMatch, Projection, every_other, last, skip, uniform, validate
from kd.method_losses import hidden_mse, minilm_value_kl
from kd.record import ModelOutputs
from nas.base.errors import UserError
from searchspace.genotype import Edge, Genotype
from searchspace.student import compile_genotype

VOCAB, B, T = 50, 3, 6
MASK = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0]])


def _seeded(build, seed: int = 0):
    """Build under a seed without touching the global RNG the rest of the suite sees."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(0)
    token_types = torch.tensor([[0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 0, 0], [0, 1, 0, 0, 0, 0]])
    return {"input_ids": torch.randint(1, VOCAB, (B, T), generator=g) * MASK, "attention_mask": MASK,
            "token_type_ids": token_types}


@pytest.fixture(scope="module")
def bert():
    config = BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=16, num_labels=3)
    return _seeded(lambda: BertForSequenceClassification(config)).eval()


GENOTYPE = Genotype(
    num_cells=2, hidden_size=16, max_cells=4,
    cell=((Edge("cnn3", 0), Edge("max_pool", 1)), (Edge("identity", 2), Edge("dilated_cnn3", 0)),
          (Edge("avg_pool", 3), Edge("cnn5", 1))),
)


def _student(pair: bool):
    def build():
        model = compile_genotype(GENOTYPE, vocab_size=VOCAB, max_positions=16, num_labels=3, pair=pair)
        with torch.no_grad():  # off the zero node weights and unit LayerNorm scales
            for p in model.parameters():
                p.add_(0.3 * torch.randn_like(p))
        return model.eval()

    return _seeded(build, seed=1)


# ----- the record -----

def test_record_helpers():
    hidden = tuple(torch.arange(B * T * 2, dtype=torch.float32).view(B, T, 2) + i for i in range(3))
    record = ModelOutputs(logits=torch.zeros(B, 2), mask=MASK.bool(), hidden_states=hidden)
    assert record.num_layers == 2
    assert torch.equal(record.cls(-1), hidden[2][:, 0])
    expected = torch.stack([hidden[1][b, : int(MASK[b].sum())].mean(0) for b in range(B)])
    assert torch.allclose(record.mean(1), expected)
    with pytest.raises(ValueError, match="no per-layer"):
        ModelOutputs(logits=torch.zeros(B, 2), mask=MASK.bool()).num_layers


def test_record_rejects_misfits():
    with pytest.raises(ValueError, match="bool"):
        ModelOutputs(logits=torch.zeros(B, 2), mask=MASK)
    with pytest.raises(ValueError, match="does not fit"):
        ModelOutputs(logits=torch.zeros(B, 2), mask=MASK.bool(), hidden_states=(torch.zeros(B, T + 1, 4),))


# ----- the adaptor on a Hugging Face BERT -----

def test_bert_logits_only(bert, inputs):
    record = adapt(bert, inputs)
    assert torch.allclose(record.logits, bert(**inputs).logits)
    assert record.hidden_states is record.attentions is record.values is record.pooled is None
    assert torch.equal(record.mask, MASK.bool())


def test_bert_hidden_states_and_pooled(bert, inputs):
    record = adapt(bert, inputs, need={"hidden_states", "pooled"})
    assert record.num_layers == 2 and len(record.hidden_states) == 3
    assert all(h.shape == (B, T, 32) for h in record.hidden_states)
    reference = bert(**inputs, output_hidden_states=True).hidden_states
    assert all(torch.allclose(a, b) for a, b in zip(record.hidden_states, reference))
    assert torch.allclose(record.pooled, bert.bert.pooler(record.hidden_states[-1]))


def test_bert_attentions_switch_to_eager_for_the_call_only(bert, inputs):
    assert bert.config._attn_implementation == "sdpa"
    record = adapt(bert, inputs, need={"attentions"}, method="MiniLM")
    assert bert.config._attn_implementation == "sdpa"
    assert len(record.attentions) == 2 and all(a.shape == (B, 2, T, T) for a in record.attentions)
    for attention in record.attentions:
        assert torch.allclose(attention.sum(-1), torch.ones(B, 2, T))
        assert (attention * ~MASK.bool()[:, None, None, :]).abs().max() < 1e-6  # padded keys get nothing
    assert torch.allclose(record.logits, bert(**inputs).logits, atol=1e-5)


def test_bert_that_gives_no_attention_maps(bert, inputs, monkeypatch):
    monkeypatch.setattr(bert, "set_attn_implementation", lambda implementation: None)  # stays sdpa
    before = _hooks(bert)
    with pytest.raises(UserError, match="BertForSequenceClassification cannot give attention maps, which MiniLM "
                                        "needs .load it with attn_implementation='eager'."):
        adapt(bert, inputs, need={"attentions", "values"}, method="MiniLM")
    assert _hooks(bert) == before


def _hooks(model):
    return [(name, list(m._forward_hooks)) for name, m in model.named_modules()]


def test_bert_projections_by_hooks_that_are_removed(bert, inputs):
    before = _hooks(bert)
    record = adapt(bert, inputs, need={"hidden_states", "values", "queries", "keys"})
    for name in ("values", "queries", "keys"):
        assert [tuple(v.shape) for v in getattr(record, name)] == [(B, 2, T, 16)] * 2
    layer = bert.bert.encoder.layer[1].attention.self
    expected = layer.value(record.hidden_states[1]).view(B, T, 2, 16).transpose(1, 2)  # (B, heads, T, d)
    assert torch.allclose(record.values[1], expected)
    assert _hooks(bert) == before


def test_distilbert_layout(inputs):
    config = DistilBertConfig(vocab_size=VOCAB, dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                              max_position_embeddings=16)
    model = _seeded(lambda: DistilBertForSequenceClassification(config)).eval()
    plain = {k: v for k, v in inputs.items() if k != "token_type_ids"}
    record = adapt(model, plain, need={"values", "attentions", "hidden_states"})
    assert len(record.hidden_states) == 3 and [v.shape for v in record.values] == [(B, 2, T, 16)] * 2


def test_unknown_need_is_a_bug(bert, inputs):
    with pytest.raises(ValueError, match="unknown"):
        adapt(bert, inputs, need={"attention"})


# ----- the adaptor on the AdaBERT student -----

@pytest.mark.parametrize("pair", [False, True])
def test_student_replay_matches_its_forward(pair, inputs):
    student = _student(pair)
    record = adapt(student, inputs, need={"hidden_states", "pooled"})
    assert torch.equal(record.logits, student(**inputs).logits)
    assert record.num_layers == GENOTYPE.num_cells
    assert all(h.shape == (B, T, 16) for h in record.hidden_states)
    assert torch.allclose(record.pooled, record.mean(-1))
    logits, hidden, mask = student_forward(student, inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"])
    assert torch.equal(logits, record.logits) and torch.equal(mask, MASK.bool())


@pytest.mark.parametrize("need", ["attentions", "values"])
def test_student_has_no_attention(need, inputs):
    with pytest.raises(UserError) as error:
        adapt(_student(False), inputs, need={need}, method="MiniLM")
    message = str(error.value)
    assert "AdaBertStudentForSequenceClassification cannot give" in message and "MiniLM" in message
    assert "\n" not in message


# ----- the adaptor on anything else -----

class _Bag(nn.Module):
    def __init__(self, wrap):
        super().__init__()
        self.embed = nn.EmbeddingBag(VOCAB, 3)
        self.wrap = wrap

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        return self.wrap(self.embed(input_ids))  # (B, 3)


@pytest.mark.parametrize("wrap", [lambda x: x, lambda x: SimpleNamespace(logits=x)], ids=["tensor", "object"])
def test_plain_module_gives_logits(wrap, inputs):
    model = _seeded(lambda: _Bag(wrap))
    record = adapt(model, inputs)
    assert torch.equal(record.logits, model.embed(inputs["input_ids"]))
    with pytest.raises(UserError, match="_Bag cannot give hidden states, which PKD needs"):
        adapt(model, inputs, need={"hidden_states"}, method="PKD")


def test_plain_module_without_logits(inputs):
    with pytest.raises(UserError, match="neither logits"):
        adapt(_seeded(lambda: _Bag(lambda x: (x,))), inputs)


# ----- records plug into the method losses -----

def test_records_of_different_models_feed_the_losses(bert, inputs):
    student = _student(False)
    s = adapt(student, inputs, need={"hidden_states"})
    t = adapt(bert, inputs, need={"hidden_states", "values"})
    projection = _seeded(lambda: Projection(16, 32))
    for match in validate(uniform(s.num_layers, t.num_layers), s.num_layers, t.num_layers):
        loss = hidden_mse(s.hidden_states[match.student], t.hidden_states[match.teacher], s.mask, projection)
        assert torch.isfinite(loss)
    small = BertConfig(vocab_size=VOCAB, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=16, max_position_embeddings=16)
    narrow = adapt(_seeded(lambda: BertForSequenceClassification(small)).eval(), inputs, need={"values"})
    assert torch.isfinite(minilm_value_kl(narrow.values[-1], t.values[-1], t.mask))


# ----- layer maps -----

def _teachers(matches):
    return [(m.student, m.teacher) for m in matches]


@pytest.mark.parametrize("student, teacher, expected", [
    (6, 12, [2, 4, 6, 8, 10, 12]), (4, 12, [3, 6, 9, 12]), (3, 6, [2, 4, 6]), (8, 6, [1, 2, 3, 3, 4, 5, 6, 6]),
])
def test_uniform(student, teacher, expected):
    assert _teachers(uniform(student, teacher)) == list(enumerate(expected, 1))


@pytest.mark.parametrize("student, teacher, expected", [
    (6, 12, [2, 4, 6, 8, 10]), (4, 12, [3, 6, 9]), (3, 6, [2, 4]), (5, 12, [2, 4, 6, 8]), (1, 12, []),
])
def test_pkd_skip_never_takes_the_top(student, teacher, expected):
    assert _teachers(skip(student, teacher)) == list(enumerate(expected, 1))


@pytest.mark.parametrize("student, teacher, expected", [
    (6, 12, [7, 8, 9, 10, 11]), (4, 12, [9, 10, 11]), (3, 6, [4, 5]),
])
def test_pkd_last(student, teacher, expected):
    assert _teachers(last(student, teacher)) == list(enumerate(expected, 1))


def test_every_other():
    assert _teachers(every_other(12)) == [(0, 0), (1, 1), (2, 3), (3, 5), (4, 7), (5, 9), (6, 11)]
    assert _teachers(every_other(6)) == [(0, 0), (1, 1), (2, 3), (3, 5)]


def test_maps_are_valid_for_their_depths():
    for builder in (uniform, skip, last):
        for student, teacher in ((6, 12), (4, 12), (3, 6)):
            assert validate(builder(student, teacher), student, teacher)
    assert validate(every_other(12), 6, 12)
    assert validate([LayerMatch(0, 0)], 1, 1) == (LayerMatch(0, 0),)


@pytest.mark.parametrize("match, pattern", [
    (LayerMatch(7, 12), "student layer 7 is outside the student's layers 0..6"),
    (LayerMatch(3, 13), "teacher layer 13 is outside the teacher's layers 0..12"),
    (LayerMatch(-1, 2), "student layer -1"),
])
def test_validate_names_the_bad_match(match, pattern):
    with pytest.raises(UserError, match=pattern) as error:
        validate([LayerMatch(1, 2), match], 6, 12)
    assert "layer match 1" in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("builder", [skip, last])
def test_pkd_maps_need_a_shallower_student(builder):
    with pytest.raises(UserError, match="deeper"):
        builder(8, 6)


def test_projection():
    same = Projection(8, 8)
    assert not list(same.parameters())
    x = torch.randn(2, 3, 8, generator=torch.Generator().manual_seed(0))
    assert same(x) is x
    wider = _seeded(lambda: Projection(8, 12))
    assert wider(x).shape == (2, 3, 12)
