"""The genotype: one searched architecture as validated, serialisable data.

An AdaBERT cell has two inputs (nodes 0 and 1), three intermediate nodes (2, 3, 4) with two
in-edges `(op, input)` each, and an output node that combines the intermediate nodes. A
student is `num_cells` such cells stacked.

A student is rebuilt from its genotype alone, so the genotype is plain data: a frozen
dataclass, JSON on disk (`arch.json`), checked field by field on construction and on load
(each problem is one `UserError` line naming the file and the field), never `eval`ed or
pickled.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

from nas.base.atomic import write_bytes
from nas.base.errors import UserError, where
from nas.base.safe_files import key_name, parse_json, read_text
from searchspace.topology import IN_EDGES, NUM_INPUTS, NUM_NODES, NUM_SEARCH_EDGES  # noqa: F401  (re-exported)

# The op vocabularies of `ops.ADABERT_OPS` (a search's default) and `ops.OP_NAMES` (every op of
# the registry), copied so that reading an arch.json needs no torch modules; a test keeps them equal.
DEFAULT_OPS = ("cnn3", "cnn5", "cnn7", "dilated_cnn3", "dilated_cnn5", "dilated_cnn7",
               "avg_pool", "max_pool", "identity", "zero")
KNOWN_OPS = DEFAULT_OPS + ("bigru",)
PARAMETER_FREE_OPS = frozenset({"avg_pool", "max_pool", "identity", "zero"})
ZERO_OP = "zero"
SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = (1,)
DEFAULT_MAX_CELLS = 8
# Upper bounds, so that what validates also compiles (README, "arch.json"): a student is a
# compression of a BERT-family teacher, and the largest of those, BERT-large, is 1024 wide and
# 24 layers deep, so no useful student is wider or deeper; an absurd size (hidden_size 10**30,
# a million cells) would otherwise pass here and fail only when the weights are allocated.
MAX_HIDDEN_SIZE = 1024
MAX_CELLS = 24
# The student's word-vector variants (searchspace/embedding_variants.py), named here so that
# reading an arch.json needs no torch modules; a test keeps the two equal. An arch.json without
# `embeddings` means "pca", the only kind there was before the field: its saved weights are pca's.
EMBEDDING_VARIANTS = ("pca", "frozen_projection", "wide_projection", "factorised")
DEFAULT_EMBEDDINGS = "pca"

REQUIRED_KEYS = ("schema_version", "num_cells", "hidden_size", "cell")
JSON_KEYS = REQUIRED_KEYS + ("embeddings", "ops", "max_cells", "op_logits", "depth_logits", "widths", "width_logits",
                             "costs", "provenance", "extra", "search_weights")
# Op names are written into the compact string form, so they must not contain its separators.
_OP_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Edge(NamedTuple):
    """One kept in-edge of an intermediate node: apply `op` to the output of node `input`."""

    op: str
    input: int


class InvalidGenotype(UserError):
    """A field that fails validation. `field` and `reason` are kept so that a loader can
    re-issue the message under its file name."""

    def __init__(self, field: str | None, reason: str, source: str = "Genotype"):
        self.field, self.reason = field, reason
        super().__init__(f"{where(source, field=field)}: {reason}")


@dataclass(frozen=True)
class Genotype:
    """A searched student: `num_cells` copies of `cell`, hidden size `hidden_size`.

    `cell[i]` holds the two in-edges of node `i + 2`. `op_logits` (one row per search edge,
    in `derive.edge_index()` order, possibly one block of 9 rows per searched cell) and
    `depth_logits` (one per depth 1..max_cells) record what the search saw; `costs`,
    `provenance` and `extra` are read-only JSON-like mappings. `search_weights` is where the
    search left its supernet's weights, a path relative to the arch.json's folder that stays
    inside it (`nas finetune` starts from them). `embeddings` names the word-vector variant
    (`EMBEDDING_VARIANTS`); None, as in every arch.json written before it existed, is "pca".
    """

    num_cells: int
    hidden_size: int
    cell: tuple[tuple[Edge, Edge], ...]
    schema_version: int = SCHEMA_VERSION
    ops: tuple[str, ...] = DEFAULT_OPS
    max_cells: int = DEFAULT_MAX_CELLS
    op_logits: tuple[tuple[float, ...], ...] | None = None
    depth_logits: tuple[float, ...] | None = None
    # Mappings are not hashable, so they take part in equality but not in the hash.
    costs: Mapping[str, Any] | None = field(default=None, hash=False)
    provenance: Mapping[str, Any] | None = field(default=None, hash=False)
    extra: Mapping[str, Any] | None = field(default=None, hash=False)
    # A searched width (searchspace/width.py): the choices, narrowest first, and their logits;
    # `hidden_size` is one of them. Optional: files from searches without a width choice lack them.
    widths: tuple[int, ...] | None = None
    width_logits: tuple[float, ...] | None = None
    search_weights: str | None = None
    embeddings: str | None = None

    def __post_init__(self):
        for name, value in _validated(self).items():
            object.__setattr__(self, name, value)  # frozen: normalise once, here

    # ----- views -----

    def edges(self) -> Iterator[tuple[int, Edge]]:
        """Yield `(node, edge)` for the six kept edges, node by node."""
        for i, node in enumerate(self.cell):
            for edge in node:
                yield NUM_INPUTS + i, edge

    def __str__(self) -> str:
        nodes = " | ".join(f"n{node}: " + " ".join(f"{e.op}({e.input})" for e in edges)
                           for node, edges in enumerate(self.cell, NUM_INPUTS))
        text = f"K={self.num_cells} H={self.hidden_size} | {nodes}"
        return text if self.embeddings is None else f"{text} | embeddings: {self.embeddings}"

    @property
    def embedding_variant(self) -> str:
        """The word-vector variant the student is built with: `embeddings`, or "pca" when unset."""
        return self.embeddings or DEFAULT_EMBEDDINGS

    def parameter_free_share(self, parameter_free=PARAMETER_FREE_OPS) -> float:
        """Share of the six kept edges whose op has no weights: search tends to collapse
        onto skips and pools, so a high share is a warning sign."""
        kept = [edge.op for _, edge in self.edges()]
        return sum(op in parameter_free for op in kept) / len(kept)

    def architecture(self) -> Genotype:
        """The same network without what the search recorded (logits, costs, provenance, weights)."""
        return replace(self, op_logits=None, depth_logits=None, widths=None, width_logits=None,
                       costs=None, provenance=None, extra=None, search_weights=None)

    def canonical(self) -> Genotype:
        """The architecture with each node's in-edges sorted by (input, op).

        A node sums its in-edges, so their order does not change the network; equal
        networks then have equal canonical forms (and `to_string()`s) for de-duplication. An
        explicit "pca" is the absent field's meaning, so it is left out.
        """
        cell = tuple(tuple(sorted(node, key=lambda e: (e.input, e.op))) for node in self.cell)
        embeddings = None if self.embedding_variant == DEFAULT_EMBEDDINGS else self.embeddings
        return replace(self.architecture(), cell=cell, embeddings=embeddings)

    # ----- JSON -----

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data in the fixed key order of `JSON_KEYS`; unset fields are left out."""
        data = {key: _thaw(getattr(self, key)) for key in JSON_KEYS}
        return {key: value for key, value in data.items() if value is not None}

    def to_json(self) -> str:
        return _dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str, source: str = "arch.json") -> Genotype:
        try:
            # Bounded parsing (no int-digit limit, nesting, NaN); duplicates name their key.
            data = parse_json(text, source, object_pairs_hook=_reject_duplicates, non_finite=True)
            if not isinstance(data, dict):
                raise InvalidGenotype(None, f"the top level must be a JSON object, got {_kind(data)}")
            # The version first: a file from a newer release should say so, not list typos.
            if "schema_version" not in data:
                raise InvalidGenotype("schema_version", "missing required field")
            _schema_version(data["schema_version"])
            for key in data:
                if key not in JSON_KEYS:
                    close = difflib.get_close_matches(key, JSON_KEYS, n=1) if len(key) <= 40 else []
                    hint = f"did you mean {close[0]!r}?" if close else "known: " + ", ".join(JSON_KEYS)
                    raise InvalidGenotype(_key(key), f"unknown field ({hint})")
            for key in REQUIRED_KEYS:
                if key not in data:
                    raise InvalidGenotype(key, "missing required field")
            return cls(**data)
        except InvalidGenotype as e:
            raise InvalidGenotype(e.field, e.reason, source) from None

    def save(self, path) -> Path:
        """Write `path` as JSON, atomically."""
        return write_bytes(path, self.to_json() + "\n")

    @classmethod
    def load(cls, path) -> Genotype:
        """Read `path` (a regular UTF-8 file of bounded size) and validate it."""
        return cls.from_json(read_text(path, "an arch.json file"), source=str(path))

    # ----- compact string -----

    def to_string(self) -> str:
        """The architecture in one token, e.g.
        `v1;K=3;H=128;M=8;cell=cnn3~0,max_pool~1|dilated_cnn5~2,identity~0|cnn7~3,avg_pool~2`,
        with `;ops=a,b,...` added when the vocabulary is not `DEFAULT_OPS` and `;emb=NAME` when
        `embeddings` is set. Lossless for the
        architecture: `from_string(g.to_string()) == g.architecture()`.
        """
        cell = "|".join(",".join(f"{e.op}~{e.input}" for e in node) for node in self.cell)
        text = (f"v{self.schema_version};K={self.num_cells};H={self.hidden_size};"
                f"M={self.max_cells};cell={cell}")
        text = text if self.ops == DEFAULT_OPS else f"{text};ops={','.join(self.ops)}"
        return text if self.embeddings is None else f"{text};emb={self.embeddings}"

    @classmethod
    def from_string(cls, text: str, source: str = "arch string") -> Genotype:
        try:
            head, *parts = text.strip().split(";")
            if not re.fullmatch(r"v\d+", head):
                raise InvalidGenotype(None, f"expected 'v1;K=..;H=..;M=..;cell=..', got {_show(text)}")
            found = {}
            for part in parts:
                key, _, value = part.partition("=")
                if key not in _STRING_KEYS or key in found:
                    raise InvalidGenotype(_key(key), "unknown or repeated part "
                                          f"(expected each of {', '.join(_STRING_KEYS)} once)")
                found[key] = value
            for key in ("K", "H", "M", "cell"):
                if key not in found:
                    raise InvalidGenotype(key, "missing part")
            cell = [[_string_edge(edge, f"cell[{i}][{j}]") for j, edge in enumerate(node.split(","))]
                    for i, node in enumerate(found["cell"].split("|"))]
            ops = tuple(found["ops"].split(",")) if "ops" in found else DEFAULT_OPS
            return cls(schema_version=_string_int(head[1:], "v"), num_cells=_string_int(found["K"], "K"),
                       hidden_size=_string_int(found["H"], "H"), max_cells=_string_int(found["M"], "M"),
                       cell=cell, ops=ops, embeddings=found.get("emb"))
        except InvalidGenotype as e:
            raise InvalidGenotype(e.field, e.reason, source) from None


_STRING_KEYS = ("K", "H", "M", "cell", "ops", "emb")


def _string_int(text: str, name: str) -> int:
    # At most 100 digits: int() of a longer string can hit Python's int-string limit.
    if not re.fullmatch(r"-?\d{1,100}", text):
        raise InvalidGenotype(name, f"expected an integer, got {_show(text)}")
    return int(text)


def _string_edge(text: str, name: str) -> list:
    op, sep, source = text.partition("~")
    if not sep:
        raise InvalidGenotype(name, f"expected 'op~input', got {_show(text)}")
    return [op, _string_int(source, name)]


# ----- validation -----

def _validated(g: Genotype) -> dict[str, Any]:
    """Check every field of `g` and return them normalised (tuples, Edges, floats, read-only
    mappings). Raises InvalidGenotype naming the first bad field."""
    out = {"schema_version": _schema_version(g.schema_version), "ops": _ops(g.ops)}
    out["max_cells"] = _int(g.max_cells, "max_cells", low=1, high=MAX_CELLS)
    out["num_cells"] = _int(g.num_cells, "num_cells", low=1, high=out["max_cells"])
    out["hidden_size"] = _int(g.hidden_size, "hidden_size", low=1, high=MAX_HIDDEN_SIZE)
    out["cell"] = _cell(g.cell, out["ops"])
    out["embeddings"] = None if g.embeddings is None else _embeddings(g.embeddings)
    out["op_logits"] = None if g.op_logits is None else _op_logits(g.op_logits, len(out["ops"]), out["max_cells"])
    out["depth_logits"] = None if g.depth_logits is None else _numbers(
        g.depth_logits, "depth_logits", out["max_cells"], "one per depth 1..max_cells")
    out["widths"], out["width_logits"] = _widths(g.widths, g.width_logits, out["hidden_size"])
    for name in ("costs", "provenance", "extra"):
        value = getattr(g, name)
        if value is not None and not isinstance(value, Mapping):
            raise InvalidGenotype(name, f"expected an object, got {_kind(value)}")
        out[name] = None if value is None else _freeze(value, name)
    out["search_weights"] = None if g.search_weights is None else _inside_path(g.search_weights, "search_weights")
    return out


def _inside_path(value, name: str) -> str:
    """A relative path that stays inside the arch.json's folder: a file the search wrote beside
    it. An absolute path or `..` could make a copied arch.json point at any file on the machine."""
    if not isinstance(value, str):
        raise InvalidGenotype(name, f"expected a file name relative to arch.json's folder, got {_kind(value)}")
    parts = value.replace("\\", "/").split("/")
    if not value or len(value) > 255 or any(ord(c) < 32 for c in value):
        raise InvalidGenotype(name, f"expected a file name of 1..255 printable characters, got {_show(value)}")
    if value.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", value) or ".." in parts or parts[-1] in ("", "."):
        raise InvalidGenotype(name, f"expected a file inside arch.json's folder (a relative path without '..'), "
                              f"got {_show(value)}")
    return value


def _widths(widths, logits, hidden_size: int):
    """The searched widths (distinct, increasing, holding `hidden_size`) and one logit per width."""
    if widths is None:
        if logits is not None:
            raise InvalidGenotype("width_logits", "given without 'widths' (the widths they score)")
        return None, None
    items = _list(widths, "widths", "a list of hidden sizes")
    values = tuple(_int(w, f"widths[{i}]", low=1, high=MAX_HIDDEN_SIZE) for i, w in enumerate(items))
    if not values or list(values) != sorted(set(values)):
        raise InvalidGenotype("widths", f"expected distinct hidden sizes in increasing order, got {_show(list(values))}")
    if hidden_size not in values:
        raise InvalidGenotype("hidden_size", f"{hidden_size} is not one of the searched widths {_show(list(values))}")
    if logits is None:
        return values, None
    return values, _numbers(logits, "width_logits", len(values), "one per width")


def _schema_version(value) -> int:
    version = _int(value, "schema_version", low=0)
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        supported = ", ".join(map(str, SUPPORTED_SCHEMA_VERSIONS))
        raise InvalidGenotype("schema_version", f"unsupported schema_version {version} "
                              f"(supported: {supported}); was it written by a newer release?")
    return version


def _int(value, name: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):  # bool is an int in Python
        raise InvalidGenotype(name, f"expected an integer, got {_kind(value)}")
    if value < low or (high is not None and value > high):
        allowed = f"{low}..{high}" + {"num_cells": " (max_cells)", "max_cells": ", BERT-large's depth",
                                       "hidden_size": ", BERT-large's width"}.get(name, "")
        raise InvalidGenotype(name, f"{_show(value)} is out of range (allowed: "
                              f"{allowed if high is not None else f'>= {low}'})")
    return value


def _embeddings(value) -> str:
    if not isinstance(value, str):
        raise InvalidGenotype("embeddings", f"expected a variant name like 'pca', got {_kind(value)}")
    if value not in EMBEDDING_VARIANTS:
        raise InvalidGenotype("embeddings", f"unknown variant {_show(value)} (known: {', '.join(EMBEDDING_VARIANTS)})")
    return value


def _list(value, name: str, what: str = "a list") -> list | tuple:
    if not isinstance(value, (list, tuple)):
        raise InvalidGenotype(name, f"expected {what}, got {_kind(value)}")
    return value


def _ops(value) -> tuple[str, ...]:
    ops = _list(value, "ops", "a list of op names")
    if not ops:
        raise InvalidGenotype("ops", "must not be empty")
    for i, op in enumerate(ops):
        if not isinstance(op, str) or not _OP_NAME.fullmatch(op):
            raise InvalidGenotype(f"ops[{i}]", f"expected an op name like 'cnn3', got {_kind(op)}")
        if op not in KNOWN_OPS:
            # The compiled student builds its ops from the registry: a name it lacks would pass
            # here and fail only when the weights are built.
            raise InvalidGenotype(f"ops[{i}]", f"{_show(op)} is not an op of the registry "
                                  f"(known: {', '.join(KNOWN_OPS)})")
        if op in ops[:i]:
            raise InvalidGenotype(f"ops[{i}]", f"op {op!r} is listed twice")
    return tuple(ops)


def _cell(value, ops: tuple[str, ...]) -> tuple[tuple[Edge, Edge], ...]:
    cell = _list(value, "cell", "a list of nodes")
    if len(cell) != NUM_NODES:
        raise InvalidGenotype("cell", f"expected {NUM_NODES} intermediate nodes "
                              f"(n2, n3, n4), got {len(cell)}")
    nodes = []
    for i, node in enumerate(cell):
        name, index = f"cell[{i}]", NUM_INPUTS + i
        node = _list(node, name, "a list of in-edges")
        if len(node) != IN_EDGES:
            raise InvalidGenotype(name, f"node n{index} must have exactly {IN_EDGES} "
                                  f"in-edges, got {len(node)}")
        edges = tuple(_edge(e, f"{name}[{j}]", index, ops) for j, e in enumerate(node))
        if edges[0] == edges[1]:
            # The compiled student holds one module per (op, input) of a node, so a repeated
            # in-edge would be ambiguous: two copies of the op, or one op counted twice?
            raise InvalidGenotype(name, f"node n{index} lists the in-edge "
                                  f"[{edges[0].op!r}, {edges[0].input}] twice")
        nodes.append(edges)
    return tuple(nodes)


def _edge(value, name: str, node: int, ops: tuple[str, ...]) -> Edge:
    pair = _list(value, name, "an [op, input] pair")
    if len(pair) != 2:
        raise InvalidGenotype(name, f"expected an [op, input] pair, got {len(pair)} items")
    op, source = pair
    if not isinstance(op, str):
        raise InvalidGenotype(name, f"op must be a string, got {_kind(op)}")
    if op == ZERO_OP:
        raise InvalidGenotype(name, f"op {ZERO_OP!r} is not allowed in a cell: it would be a "
                              "dead edge, and a derived cell never keeps it")
    if op not in ops:
        known = ", ".join(o for o in ops if o != ZERO_OP)
        raise InvalidGenotype(name, f"unknown op {_show(op)} (known: {known})")
    if isinstance(source, bool) or not isinstance(source, int):
        raise InvalidGenotype(name, f"input must be an integer node index, got {_kind(source)}")
    if not 0 <= source < node:
        raise InvalidGenotype(name, f"input {source} is not an earlier node "
                              f"(node n{node} can read nodes 0..{node - 1})")
    return Edge(op, source)


def _op_logits(value, n_ops: int, max_cells: int) -> tuple[tuple[float, ...], ...]:
    rows = _list(value, "op_logits", "a list of rows")
    if not rows or len(rows) % NUM_SEARCH_EDGES or len(rows) > NUM_SEARCH_EDGES * max_cells:
        raise InvalidGenotype("op_logits", f"expected a positive multiple of {NUM_SEARCH_EDGES} "
                              f"rows (one per search edge, per searched cell), at most "
                              f"{NUM_SEARCH_EDGES * max_cells} ({NUM_SEARCH_EDGES} x max_cells), got {len(rows)}")
    return tuple(_numbers(row, f"op_logits[{i}]", n_ops, "one per op") for i, row in enumerate(rows))


def _numbers(value, name: str, length: int, what: str) -> tuple[float, ...]:
    row = _list(value, name, "a list of numbers")
    if len(row) != length:
        raise InvalidGenotype(name, f"expected {length} numbers ({what}), got {len(row)}")
    for i, x in enumerate(row):
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
            raise InvalidGenotype(f"{name}[{i}]", f"expected a finite number, got {_kind(x)}")
    return tuple(float(x) for x in row)


def _freeze(value, name: str):
    """A read-only deep copy of JSON-like data (objects become sorted read-only mappings,
    lists become tuples), so that a frozen genotype stays frozen all the way down."""
    if isinstance(value, Mapping):
        for key in value:
            if not isinstance(key, str):
                raise InvalidGenotype(name, f"keys must be strings, got {_kind(key)}")
        return MappingProxyType({key: _freeze(value[key], f"{name}.{_key(key)}") for key in sorted(value)})
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(x, f"{name}[{i}]") for i, x in enumerate(value))
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidGenotype(name, f"expected a finite number, got {value}")
    if value is None or isinstance(value, (str, int, float)):
        return value
    raise InvalidGenotype(name, f"expected JSON data, got a {type(value).__name__}")


def _thaw(value):
    if isinstance(value, Mapping):
        return {key: _thaw(x) for key, x in value.items()}
    if isinstance(value, tuple):
        return [_thaw(x) for x in value]
    return value


def _reject_duplicates(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise InvalidGenotype(_key(key), "duplicate key")
        seen[key] = value
    return seen


def _kind(value) -> str:
    """`value` described in JSON's terms, for messages: 'a boolean (true)'."""
    if value is None:
        return "null"
    kind = ("a boolean" if isinstance(value, bool) else "an integer" if isinstance(value, int)
            else "a number" if isinstance(value, float) else "a string" if isinstance(value, str)
            else "a list" if isinstance(value, (list, tuple)) else "an object"
            if isinstance(value, Mapping) else f"a {type(value).__name__}")
    return kind if isinstance(value, (list, tuple, Mapping)) else f"{kind} ({_show(value)})"


def _key(key: str) -> str:
    """A key as a field name: bare when plain and short, else quoted (a long one by its start,
    so that a 100,000-character key does not make a 100,000-character error line)."""
    return key_name(key)


def _show(value, limit: int = 40) -> str:
    """A short one-line rendering of a user's value (JSON where possible)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 256:
        return f"an integer of about {int(value.bit_length() * 0.30103):,} digits"  # str() has a digit limit
    try:
        text = repr(value) if isinstance(value, str) else json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ----- output -----

_WIDTH = 88


def _dumps(value, level: int = 0) -> str:
    """JSON with a two-space indent, except that a list holding no objects goes on one line
    when it is flat (a logit row) or short (a cell node), so files stay readable."""
    flat = json.dumps(value, allow_nan=False)
    if not isinstance(value, (dict, list)):
        return flat
    if isinstance(value, list):
        nested = [x for x in value if isinstance(x, (dict, list))]
        if not nested or (len(flat) + 2 * level <= _WIDTH and not _has_object(value)):
            return flat
    if not value:
        return flat
    pad, inner = "  " * level, "  " * (level + 1)
    if isinstance(value, dict):
        items = [f"{inner}{json.dumps(k)}: {_dumps(v, level + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    return "[\n" + ",\n".join(inner + _dumps(v, level + 1) for v in value) + f"\n{pad}]"


def _has_object(value) -> bool:
    if isinstance(value, dict):
        return True
    return isinstance(value, list) and any(_has_object(x) for x in value)
