"""Deriving a discrete genotype from the search's architecture logits.

Pure functions: they take torch tensors, numpy arrays or nested lists (anything with
`.tolist()`, or a list) and never touch a model. The rule is DARTS' `genotype()` (Liu et al.
2019, https://arxiv.org/abs/1806.09055, section 2.4): per edge, softmax over all ops; an
edge's strength is its largest probability over the ops other than `zero`; each
intermediate node keeps its two strongest in-edges, each with its strongest non-`zero` op.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from nas.base.errors import UserError

from .genotype import DEFAULT_OPS, PARAMETER_FREE_OPS, ZERO_OP, Edge, Genotype
from .topology import IN_EDGES, NODES, NUM_SEARCH_EDGES, SEARCH_EDGES


def edge_index() -> tuple[tuple[int, int], ...]:
    """The `(node, input)` pair of each search edge, in the row order of `op_logits`:
    node 2 from 0, 1; node 3 from 0, 1, 2; node 4 from 0, 1, 2, 3 (9 edges)."""
    return SEARCH_EDGES


def derive_cell(op_logits, ops: Sequence[str] = DEFAULT_OPS, *,
                max_parameter_free: int | None = None,
                parameter_free=PARAMETER_FREE_OPS) -> tuple[tuple[Edge, Edge], ...]:
    """The cell chosen by `op_logits` of shape (9, n_ops), or (B*9, n_ops) / (B, 9, n_ops)
    for B per-cell blocks, which are averaged (mean of the logits) first.

    Each node's edges come strongest first; ties go to the earlier input and earlier op.
    With `max_parameter_free`, if more kept edges than that have a parameter-free op, the
    weakest of those choices are swapped for the best parameterised op on the same edge: a
    guard against the known collapse of differentiable search onto skips and pools.
    """
    probs = [_softmax(row) for row in _mean_block(op_logits, len(ops))]  # (9, n_ops)
    allowed = [k for k, op in enumerate(ops) if op != ZERO_OP]
    if not allowed:
        raise ValueError(f"ops {tuple(ops)} has no op other than {ZERO_OP!r}")
    best = [_argmax(p, allowed) for p in probs]  # (9,) best non-zero op per edge
    index = edge_index()
    kept = {}  # node -> [edge row, ...], strongest first
    for node in NODES:
        rows = [e for e, (n, _) in enumerate(index) if n == node]
        kept[node] = sorted(rows, key=lambda e: -probs[e][best[e]])[:IN_EDGES]  # stable sort
    choice = {e: best[e] for rows in kept.values() for e in rows}
    if max_parameter_free is not None:
        _cap_parameter_free(choice, probs, ops, max_parameter_free, parameter_free)
    return tuple(tuple(Edge(ops[choice[e]], index[e][1]) for e in kept[node]) for node in kept)


def _cap_parameter_free(choice: dict[int, int], probs, ops, cap: int, parameter_free) -> None:
    """Swap, in place, the weakest parameter-free choices until at most `cap` remain."""
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 0:
        raise ValueError(f"max_parameter_free must be an integer >= 0, got {cap!r}")
    free = [e for e, k in choice.items() if ops[k] in parameter_free]
    excess = len(free) - cap
    if excess <= 0:
        return
    weighted = [k for k, op in enumerate(ops) if op not in parameter_free and op != ZERO_OP]
    if not weighted:
        raise ValueError(f"ops {tuple(ops)} has no parameterised op to replace parameter-free ones")
    # The least confident choices go first; sort is stable, so ties go by edge order.
    for e in sorted(free, key=lambda e: probs[e][choice[e]])[:excess]:
        choice[e] = _argmax(probs[e], weighted)


def derive_depth(depth_logits) -> int:
    """The number of cells K = argmax + 1 (ties go to the shallower stack)."""
    logits = _plain(depth_logits)
    if not isinstance(logits, (list, tuple)) or not logits:
        raise ValueError(f"depth_logits must be a non-empty 1-D sequence, got {logits!r}")
    logits = _finite(logits, "depth_logits")
    return _argmax(logits, range(len(logits))) + 1


def derive_width(width_logits, widths: tuple[int, ...]) -> int:
    """The width the search chose: the argmax of the logits (ties go to the narrower width)."""
    logits = _finite(_plain(width_logits), "width_logits")
    if len(logits) != len(widths):
        raise ValueError(f"width_logits has {len(logits)} entries for {len(widths)} widths")
    return widths[_argmax(logits, range(len(logits)))]


def derive_genotype(op_logits, depth_logits, hidden_size: int, ops: Sequence[str] = DEFAULT_OPS,
                    max_cells: int | None = None, *, max_parameter_free: int | None = None,
                    costs=None, provenance=None, extra=None, width_logits=None,
                    widths: tuple[int, ...] | None = None, embeddings: str | None = None) -> Genotype:
    """The genotype the search chose: cell from `op_logits` (per-cell blocks of 9 rows are
    averaged, see `derive_cell`), depth from `depth_logits`. The logits are kept in the
    genotype as they were (all blocks), and `max_cells` defaults to len(depth_logits).
    With `width_logits` over `widths` (a searched width), `hidden_size` is the chosen width.
    `embeddings`: the word-vector variant the supernet trained (None: the default, pca)."""
    if width_logits is not None:
        hidden_size = derive_width(width_logits, tuple(widths))
        width_logits, widths = tuple(_finite(_plain(width_logits), "width_logits")), tuple(widths)
    rows = _rows(op_logits, len(ops))
    num_cells = derive_depth(depth_logits)
    depth = _finite(_plain(depth_logits), "depth_logits")
    return Genotype(num_cells=num_cells, hidden_size=hidden_size,
                    cell=derive_cell(rows, ops, max_parameter_free=max_parameter_free),
                    ops=tuple(ops), max_cells=len(depth) if max_cells is None else max_cells,
                    op_logits=rows, depth_logits=depth, widths=widths if width_logits is not None else None,
                    width_logits=width_logits, costs=costs, provenance=provenance, extra=extra, embeddings=embeddings)


def _plain(values):
    """Nested lists of numbers from a tensor, an array or a sequence."""
    if hasattr(values, "detach"):
        values = values.detach().cpu()
    return values.tolist() if hasattr(values, "tolist") else values


def _rows(op_logits, n_ops: int) -> list[list[float]]:
    """(B*9, n_ops) rows of plain floats from a 2-D or a (B, 9, n_ops) input."""
    rows = _plain(op_logits)
    if rows and isinstance(rows[0], (list, tuple)) and rows[0] and isinstance(rows[0][0], (list, tuple)):
        rows = [row for block in rows for row in block]  # (B, 9, n_ops) -> (B*9, n_ops)
    if (not isinstance(rows, (list, tuple)) or not rows or len(rows) % NUM_SEARCH_EDGES
            or any(not isinstance(row, (list, tuple)) or len(row) != n_ops for row in rows)):
        raise ValueError(f"op_logits must have shape ({NUM_SEARCH_EDGES}*B, {n_ops}) or "
                         f"(B, {NUM_SEARCH_EDGES}, {n_ops}) for {n_ops} ops, got {_shape(rows)}")
    return [_finite(row, "op_logits") for row in rows]


def _shape(values) -> tuple:
    """The shape of nested lists, read along the first items (for error messages)."""
    shape = []
    while isinstance(values, (list, tuple)):
        shape.append(len(values))
        values = values[0] if values else None
    return tuple(shape)


def _mean_block(op_logits, n_ops: int) -> list[list[float]]:
    rows = _rows(op_logits, n_ops)
    blocks = len(rows) // NUM_SEARCH_EDGES
    return [[sum(rows[b * NUM_SEARCH_EDGES + e][k] for b in range(blocks)) / blocks
             for k in range(n_ops)] for e in range(NUM_SEARCH_EDGES)]


def _finite(values: list, name: str) -> list[float]:
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in values):
        raise ValueError(f"{name} must hold numbers, got {values!r}")
    if any(isinstance(x, float) and not math.isfinite(x) for x in values):
        # A user-fixable failure, not a bug: the architecture optimiser diverged.
        raise UserError(f"{name}: contains NaN or inf; the architecture search diverged "
                        "(try a lower architecture learning rate)")
    return [float(x) for x in values]


def _softmax(row: list[float]) -> list[float]:
    top = max(row)  # subtract the max so exp cannot overflow
    exps = [math.exp(x - top) for x in row]
    total = sum(exps)
    return [x / total for x in exps]


def _argmax(values: list[float], candidates) -> int:
    """The candidate index with the largest value; the first one on ties."""
    return max(candidates, key=lambda k: (values[k], -k))
