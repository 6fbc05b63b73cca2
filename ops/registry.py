"""The one op registry: every candidate op, its factory and its cost model, by stable name.

The supernet and the compiled student both build ops only through `build_op`, so the op a
genotype names is the same module in search and in the final network. Each op file registers
its ops with `register_op`; `import ops` imports those files, so the registry is always full.

Cost model convention (`OpSpec.params`, `OpSpec.flops`):
    params(hidden)          exactly `sum(p.numel() for p in module.parameters())`.
    flops(hidden, seq_len)  FLOPs for ONE sequence of `seq_len` tokens (batch 1), counted as
                            2 * multiply-accumulates of convolutions / matmuls only.
                            Elementwise ops, activations, pooling and norms count 0. This is
                            the convention of `torch.utils.flop_counter.FlopCounterMode`, so
                            the model can be checked against it.
"""

from dataclasses import dataclass
from typing import Callable

from torch import nn

from nas.base.errors import UserError

# The stable op names in their stable order. Architecture weights and genotypes index ops by
# this order, so it is declared here once instead of following whichever file was imported
# first; `ops/__init__.py` checks that exactly these ops were registered, in this order.
# AdaBERT's ten ops, the search space every search offers unless told otherwise.
ADABERT_OPS: tuple[str, ...] = (
    "cnn3",
    "cnn5",
    "cnn7",
    "dilated_cnn3",
    "dilated_cnn5",
    "dilated_cnn7",
    "avg_pool",
    "max_pool",
    "identity",
    "zero",
)
# Every registered op: AdaBERT's, then those a search offers only when its `ops` setting names
# them (ops/recurrent.py). New ops go at the end, so the indices of older ones never move.
OP_NAMES: tuple[str, ...] = ADABERT_OPS + ("bigru",)


@dataclass(frozen=True)
class OpSpec:
    """One candidate op.

    Every module built by `factory(hidden)` has `forward(x, mask)` with `x: (B, T, H)` float,
    `mask: (B, T)` bool (True = real token), returning `(B, T, H)` that is exactly zero at
    padded positions and does not depend on how much padding the batch has.
    """

    name: str
    factory: Callable[[int], nn.Module]  # hidden size -> module
    parameter_free: bool
    params: Callable[[int], int]  # hidden -> parameter count
    flops: Callable[[int, int], int]  # (hidden, seq_len) -> FLOPs for one sequence


OPS: dict[str, OpSpec] = {}


def register_op(
    name: str,
    *,
    parameter_free: bool,
    params: Callable[[int], int],
    flops: Callable[[int, int], int],
) -> Callable[[Callable[[int], nn.Module]], Callable[[int], nn.Module]]:
    """Decorator registering `factory(hidden) -> nn.Module` under `name` with its cost model.

    Also usable as a call, `register_op(name, ...)(factory)`, for ops made in a loop.
    """

    def decorator(factory: Callable[[int], nn.Module]) -> Callable[[int], nn.Module]:
        # Registration mistakes are bugs in this package, not user input: plain exceptions.
        if name not in OP_NAMES:
            raise ValueError(f"op {name!r} is not declared in ops.registry.OP_NAMES")
        if name in OPS:
            raise ValueError(f"op {name!r} is registered twice")
        OPS[name] = OpSpec(name, factory, parameter_free, params, flops)
        return factory

    return decorator


def op_spec(name: str) -> OpSpec:
    """The spec of op `name`; an unknown name is the user's mistake (e.g. in an arch.json)."""
    try:
        return OPS[name]
    except KeyError:
        raise UserError(f"unknown op {name!r}; known ops: {', '.join(OP_NAMES)}") from None


def build_op(name: str, hidden: int) -> nn.Module:
    """A fresh module of op `name` for hidden size `hidden`."""
    return op_spec(name).factory(hidden)


def op_params(name: str, hidden: int) -> int:
    """Parameter count of op `name` at hidden size `hidden`."""
    return op_spec(name).params(hidden)


def op_flops(name: str, hidden: int, seq_len: int) -> int:
    """FLOPs of op `name` on one sequence of `seq_len` tokens (see the module docstring)."""
    return op_spec(name).flops(hidden, seq_len)
