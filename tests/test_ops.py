"""Behaviour of every registered op: shapes, padding, gradients, and what each op looks at."""

import pytest
import torch

from nas.base.errors import UserError
from ops import ADABERT_OPS, OP_NAMES, OPS, PARAMETER_FREE, build_op
from searchspace.space import SearchSpace

HIDDEN = 8


def _make(name: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_op(name, HIDDEN)


def _padded_batch(lengths, total_len, seed=0):
    """Random real tokens, and large garbage at padded positions so any leak shows."""
    torch.manual_seed(seed)
    x = torch.randn(len(lengths), total_len, HIDDEN)
    mask = torch.arange(total_len)[None, :] < torch.tensor(lengths)[:, None]  # (B, T)
    garbage = 1e3 * torch.randn_like(x)
    x = torch.where(mask[..., None], x, garbage)
    return x, mask


def test_names_and_order_are_the_stable_contract():
    assert ADABERT_OPS == (
        "cnn3", "cnn5", "cnn7", "dilated_cnn3", "dilated_cnn5", "dilated_cnn7",
        "avg_pool", "max_pool", "identity", "zero",
    )  # fmt: skip
    assert OP_NAMES == ADABERT_OPS + ("bigru",)  # ops added later go at the end
    assert tuple(OPS) == OP_NAMES
    assert SearchSpace().ops == ADABERT_OPS  # a search offers AdaBERT's ten unless told otherwise
    assert PARAMETER_FREE == {"avg_pool", "max_pool", "identity", "zero"}
    assert not any(hasattr(spec, "search_wrapper") for spec in OPS.values())  # removed: nothing used it


@pytest.mark.parametrize("name", OP_NAMES)
def test_shape_finite_and_zero_at_padding(name):
    op = _make(name)
    x, mask = _padded_batch([5, 9, 13], 16)
    y = op(x, mask)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()
    assert (y[~mask] == 0).all()


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name", OP_NAMES)
def test_padding_never_leaks(name, train):
    op = _make(name).train(train)
    lengths = [5, 9, 13]
    x, mask = _padded_batch(lengths, 16)
    batched = op(x, mask)
    for i, n in enumerate(lengths):
        alone = op(x[i : i + 1, :n], torch.ones(1, n, dtype=torch.bool))
        torch.testing.assert_close(batched[i, :n], alone[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", OP_NAMES)
def test_no_gradient_reaches_padded_inputs(name):
    op = _make(name)
    x, mask = _padded_batch([5, 9, 13], 16)
    x.requires_grad_(True)
    torch.manual_seed(1)
    y = op(x, mask)
    if not y.requires_grad:  # `zero` returns fresh zeros, cut off from x by design
        assert name == "zero"
        return
    (y * torch.randn_like(x)).sum().backward()
    assert torch.isfinite(x.grad).all()
    assert (x.grad[~mask] == 0).all()


@pytest.mark.parametrize("name", [n for n in OP_NAMES if n not in PARAMETER_FREE])
def test_gradients_reach_every_parameter(name):
    op = _make(name)
    x, mask = _padded_batch([5, 9, 13], 16)
    torch.manual_seed(1)
    # A random projection, not a plain sum: the sum of a LayerNorm output over H is constant,
    # which would leave the conv weights with (near) zero gradient.
    (op(x, mask) * torch.randn_like(x)).sum().backward()
    for pname, p in op.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", [n for n in OP_NAMES if "cnn" in n])
def test_conv_equals_relu_conv1d_layernorm(name):
    """The im2col matrix product computes exactly what `nn.Conv1d` would, forward and backward."""
    op = _make(name)
    x, mask = _padded_batch([5, 9, 13], 16)
    x.requires_grad_(True)
    weights = torch.randn_like(x)
    (op(x, mask) * weights).sum().backward()
    fast_grad, fast_weight_grad = x.grad.clone(), op.conv.weight.grad.clone()
    x.grad, op.conv.weight.grad = None, None
    clean = torch.relu(x * mask[..., None])  # (B, T, H)
    reference = op.norm(op.conv(clean.transpose(1, 2)).transpose(1, 2)) * mask[..., None]  # via (B, H, T)
    (reference * weights).sum().backward()
    torch.testing.assert_close(op(x, mask), reference, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast_grad, x.grad, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(fast_weight_grad, op.conv.weight.grad, atol=1e-4, rtol=1e-4)


# Which input offsets each op's output at t depends on. Written out by hand, independent of
# the implementation, so a conv that forgot its dilation fails here.
RECEPTIVE_OFFSETS = {
    "cnn3": {-1, 0, 1},
    "cnn5": {-2, -1, 0, 1, 2},
    "cnn7": {-3, -2, -1, 0, 1, 2, 3},
    "dilated_cnn3": {-2, 0, 2},
    "dilated_cnn5": {-4, -2, 0, 2, 4},
    "dilated_cnn7": {-6, -4, -2, 0, 2, 4, 6},
    "avg_pool": {-1, 0, 1},
    "max_pool": {-1, 0, 1},
    "identity": {0},
    "zero": set(),
    "bigru": set(range(-8, 9)),  # the whole sentence: test_receptive_field's 17 tokens around 8
}


@pytest.mark.parametrize("name", RECEPTIVE_OFFSETS)
def test_receptive_field(name):
    op = _make(name).eval()
    seq_len, where = 17, 8
    torch.manual_seed(2)
    # Positive inputs and a large positive bump: it passes the convs' ReLU and wins max_pool.
    x = torch.rand(1, seq_len, HIDDEN) + 0.1
    mask = torch.ones(1, seq_len, dtype=torch.bool)
    bumped = x.clone()
    bumped[0, where] += 100.0
    changed = (op(bumped, mask) - op(x, mask)).abs().amax(dim=-1)[0] > 1e-6  # (T,)
    # Output t depends on input t + o, so the bump at `where` moves outputs at where - o.
    expected = {where - o for o in RECEPTIVE_OFFSETS[name]}
    assert set(torch.nonzero(changed).flatten().tolist()) == expected


def test_receptive_table_covers_every_op():
    assert set(RECEPTIVE_OFFSETS) == set(OP_NAMES)


def test_max_pool_never_picks_padding():
    op = _make("max_pool")
    # Real tokens far below zero; padding holds zeros (the natural leak) and large values.
    x = torch.full((1, 6, HIDDEN), -1e4)
    x[0, :3] = torch.tensor([-3e4, -2e4, -1e4])[:, None]
    x[0, 3] = 0.0
    x[0, 4:] = 5e3
    mask = torch.tensor([[True, True, True, False, False, False]])
    y = op(x, mask)[0, :, 0]
    expected = torch.tensor([-2e4, -1e4, -1e4, 0.0, 0.0, 0.0])
    torch.testing.assert_close(y, expected)


def test_avg_pool_hand_computed():
    op = _make("avg_pool")
    x = torch.tensor([1.0, 2.0, 4.0, 8.0, 100.0])[None, :, None].repeat(1, 1, HIDDEN)
    mask = torch.tensor([[True, True, True, True, False]])
    y = op(x, mask)[0, :, 0]
    # Windows of real tokens only: (1+2)/2, (1+2+4)/3, (2+4+8)/3, (4+8)/2; padding -> 0.
    expected = torch.tensor([1.5, 7 / 3, 14 / 3, 6.0, 0.0])
    torch.testing.assert_close(y, expected)


def test_identity_and_zero_values():
    x, mask = _padded_batch([5, 9, 13], 16)
    torch.testing.assert_close(_make("identity")(x, mask), x * mask[..., None])
    assert (_make("zero")(x, mask) == 0).all()


def test_unknown_op_is_a_user_error_naming_it():
    with pytest.raises(UserError, match="'cnn9'") as info:
        build_op("cnn9", HIDDEN)
    assert "dilated_cnn3" in str(info.value)  # lists the known ops


def test_masked_mean_ignores_padding_and_gives_zeros_for_an_empty_row():
    from ops.masking import masked_mean

    x = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, -100.0]], [[5.0, 6.0], [7.0, 8.0], [9.0, 10.0]]])
    mask = torch.tensor([[True, True, False], [False, False, False]])
    assert torch.equal(masked_mean(x, mask), torch.tensor([[2.0, 3.0], [0.0, 0.0]]))


def _gru_reference(op, x: torch.Tensor) -> torch.Tensor:
    """What `bigru` computes on one unpadded sentence x (1, T, H): `nn.GRU` forward, and over the
    reversed sentence put back in order."""
    ahead = op.forward_gru(x)[0]
    behind = op.backward_gru(x.flip(1))[0].flip(1)
    return torch.cat([ahead, behind], -1)


@pytest.mark.parametrize("hidden", [8, 7])  # an odd width gives the backward direction the odd unit
def test_bigru_is_a_gru_each_way_over_each_sentence(hidden):
    torch.manual_seed(0)
    op = build_op("bigru", hidden).eval()
    lengths = [3, 6]
    x = torch.randn(2, 6, hidden)
    mask = torch.arange(6)[None, :] < torch.tensor(lengths)[:, None]
    batched = op(x, mask)
    for i, n in enumerate(lengths):
        torch.testing.assert_close(batched[i, :n], _gru_reference(op, x[i : i + 1, :n])[0], atol=1e-5, rtol=1e-5)


def test_bigru_at_a_narrower_width_is_the_op_built_there_with_the_leading_slices():
    from ops.recurrent import GATES

    torch.manual_seed(0)
    wide, narrow = build_op("bigru", 8), build_op("bigru", 6)
    for name in ("forward_gru", "backward_gru"):
        big, small = getattr(wide, name), getattr(narrow, name)
        built, units = big.hidden_size, small.hidden_size
        rows = torch.cat([torch.arange(g * built, g * built + units) for g in range(GATES)])
        with torch.no_grad():
            small.weight_ih_l0.copy_(big.weight_ih_l0[rows, :6])
            small.weight_hh_l0.copy_(big.weight_hh_l0[rows, :units])
            small.bias_ih_l0.copy_(big.bias_ih_l0[rows])
            small.bias_hh_l0.copy_(big.bias_hh_l0[rows])
    x, mask = torch.randn(2, 5, 6), torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    torch.testing.assert_close(wide(x, mask), narrow(x, mask), atol=1e-6, rtol=1e-6)
