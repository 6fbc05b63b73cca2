"""The candidate ops of the search space, by stable name.

Importing `ops` imports every op file, so all ops are registered before anyone looks them up.
"""

# Imported for their registrations, in the order of OP_NAMES: AdaBERT's ops first.
from ops import conv, pool, trivial  # noqa: F401
from ops import recurrent  # noqa: F401,I001
from ops.registry import ADABERT_OPS, OP_NAMES, OPS, OpSpec, build_op, op_flops, op_params

# An op file that forgot an op, or registered in another order, would silently shift every
# architecture weight's meaning; fail on import instead.
if tuple(OPS) != OP_NAMES:
    raise RuntimeError(f"registered ops {tuple(OPS)} differ from declared OP_NAMES {OP_NAMES}")

PARAMETER_FREE: frozenset[str] = frozenset(name for name, spec in OPS.items() if spec.parameter_free)

__all__ = ["OPS", "OP_NAMES", "ADABERT_OPS", "OpSpec", "build_op", "op_params", "op_flops", "PARAMETER_FREE"]
