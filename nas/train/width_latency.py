"""The search's efficiency terms when the hidden width is searched (`widths`, searchspace/width.py).

Latency: per-op times do not scale with width by any simple rule on a CPU at small batches
(launch overhead dominates a narrow op, FLOPs a wide one), so each width gets its own measured
latency table: `--latency-table FILE` serves the width it was measured at and every other width
is measured into the run folder (`latency_table_w<width>.json`, reused on resume). The expected
latency of a sampled path mixes the per-width expectations by the width weights,

    E[lat] = Σ_w g_w · E_w[lat]   (E_w: kd.losses.expected_latency with width w's table),

and a derived genotype is predicted and fitted with the table of its own width.

Cost (AdaBERT's L_E): each op's parameters and FLOPs at width w, normalised by the registry's
maximum at the widest width, so a narrower width is cheaper; L_E = Σ_w g_w · L_E(costs_w).
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import torch

from kd.losses import efficiency_loss
from nas.base.errors import UserError
from nas.deploy.latency_table import load_latency_table
from nas.train.latency_budget import LatencyTerm, SearchLatency, needs_latency, search_latency, search_table
from ops import OPS


def width_op_costs(ops, widths: tuple[int, ...], seq_len: int) -> torch.Tensor:
    """(W, O): each op's cost at each width, the mean of its parameters and FLOPs, each over the
    registry's maximum at the widest width. With one width this is `normalised_op_costs`."""
    widest = max(widths)
    top_params = max(1.0, max(float(OPS[op].params(widest)) for op in ops))
    top_flops = max(1.0, max(float(OPS[op].flops(widest, seq_len)) for op in ops))
    return torch.tensor([[0.5 * (OPS[op].params(w) / top_params + OPS[op].flops(w, seq_len) / top_flops)
                          for op in ops] for w in widths])


def width_efficiency_loss(path, op_costs: torch.Tensor) -> torch.Tensor:
    """AdaBERT's L_E mixed over the width choice: Σ_w g_w · L_E(op costs at width w)."""
    ops = path.op_weights[: path.depth]
    return sum(g * efficiency_loss(ops, path.depth_weights, op_costs[i])
               for i, g in enumerate(path.width_weights) if g.detach() != 0)


def any_search_latency(config, out: Path, device, pair: bool, ops, processes=None, teacher_width: int = 0):
    """The search's latency side: `search_latency` for one width, `width_search_latency` for several."""
    if needs_latency(config) and config.space.searches_width:
        return width_search_latency(config, out, device, pair, ops, processes, teacher_width)
    return search_latency(config, out, device, pair, ops, processes, teacher_width)


def width_search_latency(config, out: Path, device, pair: bool, ops, processes=None,
                         teacher_width: int = 0) -> WidthLatency:
    """The latency side of a search over widths: one `SearchLatency` per width (see the module docstring)."""
    given = load_latency_table(config.latency_table).hidden_size if config.latency_table else None
    per_width, warned = {}, []

    def warn_once(text: str) -> None:  # a busy CPU is one fact about the search, not one per width
        if not warned:
            warned.append(text)
            print(text, file=sys.stderr)

    for width in config.space.width_choices:
        own = dataclasses.replace(config, hidden_size=width, widths=(),
                                  latency_table=config.latency_table if width == given else "")
        table_file = f"latency_table_w{width}.json"
        table, measured = search_table(own, out, device, processes, table_file, teacher_width, warn_once)
        per_width[width] = SearchLatency(table, own, pair, ops, device, measured, table_file)
    latency = WidthLatency(per_width, config)
    latency.check_reachable()
    return latency


class WidthLatency(LatencyTerm):
    """`SearchLatency`'s interface (nas/train/latency_budget.py) over several widths."""

    def __init__(self, per_width: dict[int, SearchLatency], config):
        self.per_width, self.config = per_width, config
        self.widths = tuple(sorted(per_width))
        narrowest, widest = per_width[self.widths[0]], per_width[self.widths[-1]]
        self.budget_ms, self.target_ms = narrowest.budget_ms, narrowest.target_ms
        self.slowest_ms = widest.slowest_ms  # the widest width's slowest architecture normalises L_E
        self.narrowest = narrowest

    @property
    def is_efficiency_term(self) -> bool:
        return self.narrowest.is_efficiency_term

    @property
    def measured(self) -> bool:
        return any(latency.measured for latency in self.per_width.values())

    def expected_ms(self, path) -> torch.Tensor:
        return sum(g * self.per_width[w].expected_ms(path)
                   for w, g in zip(self.widths, path.width_weights) if g.detach() != 0)

    def predict(self, genotype) -> float:
        return self._of(genotype).predict(genotype)

    def cheapest(self) -> tuple[float, str]:
        fastest, shown = self.narrowest.cheapest()
        return fastest, f"{shown}, H={self.widths[0]}"

    def check_reachable(self) -> None:
        self.narrowest.check_reachable()  # the narrowest width holds the cheapest architecture

    def fit(self, genotype):
        """Within the budget: the derived width if one cell of it fits (then fewer cells, then
        cheaper ops at that width), else the next narrower width that does, else the narrowest."""
        if self.budget_ms <= 0:
            return genotype
        for width in sorted((w for w in self.widths if w <= genotype.hidden_size), reverse=True):
            candidate = dataclasses.replace(genotype, hidden_size=width)
            if self.per_width[width].predict(dataclasses.replace(candidate, num_cells=1)) <= self.target_ms:
                return self.per_width[width].fit(candidate)
        return self.narrowest.fit(dataclasses.replace(genotype, hidden_size=self.widths[0]))

    def cheaper(self, genotype):
        """One step cheaper: at the genotype's own width (`SearchLatency.cheaper`), else one cell
        of the same ops at the next narrower width; None at the narrowest width's cheapest."""
        step = self._of(genotype).cheaper(genotype)
        if step is not None:
            return step
        narrower = [w for w in self.widths if w < genotype.hidden_size]
        return dataclasses.replace(genotype, hidden_size=narrower[-1], num_cells=1) if narrower else None

    def describes(self, device) -> bool:
        return all(latency.describes(device) for latency in self.per_width.values())

    def keep_table(self, out: Path) -> None:
        for latency in self.per_width.values():
            latency.keep_table(out)

    def record(self, genotype, timed_within: bool = False):
        return self._of(genotype).record(genotype, timed_within)

    def _of(self, genotype) -> SearchLatency:
        if genotype.hidden_size not in self.per_width:
            raise UserError(f"hidden_size {genotype.hidden_size} is not one of the searched widths {self.widths}")
        return self.per_width[genotype.hidden_size]
