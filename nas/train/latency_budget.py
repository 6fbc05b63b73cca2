"""Latency in the search: the efficiency term from a latency table, the check that a budget
can be met at all, and fitting the derived genotype into the budget.

`SearchConfig` (nas/train/search.py) chooses the term:

  * `efficiency="cost"`, no budget: AdaBERT's L_E from parameters and FLOPs (kd.losses.efficiency_loss);
  * `efficiency="latency"`, no budget: L_E = E[lat] / (the slowest architecture's latency), in (0, 1];
  * `latency_budget_ms > 0`: L_E = relu(E[lat] / target - 1), target = budget·(1 - latency_margin), a hinge that leaves the search free
    while the sampled architecture fits and pushes back once it does not, whichever `efficiency`.

The term is weighted by β (`beta`) in every case, as AdaBERT's L_E is.

E[lat] is `kd.losses.expected_latency` at (`latency_batch_size`, `latency_seq_len`). A derived
genotype over the budget loses cells (the deepest K that fits), and if one cell is still too
slow its slowest ops are swapped for the next cheaper ones, within the parameter-free cap.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from kd.losses import expected_latency, latency_budget_penalty
from nas.base.errors import UserError
from nas.deploy.latency_table import (EDGES_PER_CELL, LatencyTable, cell_latency_ms, check_compatible,
                               device_differences, load_latency_table, predict_latency_ms, save_latency_table, table_from_dict)
from ops import PARAMETER_FREE
from searchspace.genotype import Edge
from searchspace.topology import NUM_INPUTS

TABLE_FILE = "latency_table.json"  # a table the search measured itself, in its run folder


def needs_latency(config) -> bool:
    """A table is needed for the latency term, for a budget, or because one was given (to record
    the derived student's predicted latency beside AdaBERT's cost term)."""
    return config.efficiency == "latency" or config.latency_budget_ms > 0 or bool(config.latency_table)


def search_latency(config, out: Path, device, pair: bool, ops, processes=None,
                   teacher_width: int = 0) -> SearchLatency | None:
    """The latency side of a search, or None when the config asks for none.

    The table is `config.latency_table`, else the one in the run folder if it fits (a resumed
    run reuses it), else one measured now at the budget's batch size and length (saved by
    `keep_table`; under torchrun, `processes`, rank 0 measures it for all). A budget below the
    cheapest architecture the search could derive is refused here, before any training.
    `teacher_width`: the teacher's word vectors' width, which a table of the variants that keep
    them is measured with.
    """
    if not needs_latency(config):
        return None
    table, measured = search_table(config, out, device, processes, teacher_width=teacher_width)
    latency = SearchLatency(table, config, pair, ops, device, measured)
    latency.check_reachable()
    return latency


def search_table(config, out: Path, device, processes=None, table_file: str = TABLE_FILE,
                 teacher_width: int = 0, warn=None) -> tuple[LatencyTable, bool]:
    """(the latency table at `config.hidden_size`, whether it was measured now): see `search_latency`.
    `warn`: told when a table is measured on a busy CPU (default: stderr)."""
    table, measured = None, False
    kept = Path(out) / table_file
    if config.latency_table:
        table = load_latency_table(config.latency_table)
    elif kept.is_file():
        table = load_latency_table(kept)
        table = table if _fits(table, config, device, teacher_width) else None
    if table is None:
        from nas.compute import distributed
        from nas.deploy.latency_measure import LatencyTableConfig, build_latency_table

        # Under torchrun one process measures and every process searches with its table.
        measure = LatencyTableConfig(hidden_size=config.hidden_size, batch_sizes=(config.latency_batch_size,),
                                     seq_lens=(config.latency_seq_len,), embeddings=config.embeddings,
                                     teacher_width=teacher_width)
        data = build_latency_table(measure, device, warn=warn).to_dict() if distributed.is_main(processes) else None
        table = table_from_dict(distributed.broadcast_from_main(data, processes), f"{Path(out) / table_file} (measured)")
        measured = True
    check_compatible(table, device, config.hidden_size, embeddings=config.embeddings)
    return table, measured


def _fits(table: LatencyTable, config, device, teacher_width: int) -> bool:
    """Whether a table left in the run folder (by an earlier or interrupted run) serves this one."""
    return (table.device["type"] == device.type and table.hidden_size == config.hidden_size
            and table.embeddings == config.embeddings and table.teacher_width in (0, teacher_width)
            and config.latency_seq_len in table.seq_lens(config.latency_batch_size))


class LatencyTerm:
    """The efficiency term from a predictor's expected latency, shared by one table
    (`SearchLatency`) and one table per searched width (nas/train/width_latency.py): the budget's
    hinge when there is a budget, else the latency relative to the slowest architecture's.
    Subclasses give `expected_ms(path)`, `budget_ms`, `target_ms` and `slowest_ms`."""

    def efficiency(self, path) -> tuple[torch.Tensor, float]:
        """(L_E, E[lat] in ms) for a sampled path (see the module docstring)."""
        expected = self.expected_ms(path)
        if self.budget_ms > 0:
            return latency_budget_penalty(expected, self.target_ms), expected.item()
        return expected / self.slowest_ms, expected.item()


class SearchLatency(LatencyTerm):
    """One search's latency table read at its budget's batch size and length: the efficiency
    term, the budget check, fitting derived genotypes, and what arch.json records."""

    def __init__(self, table: LatencyTable, config, pair: bool, ops, device, measured: bool = False,
                 table_file: str = TABLE_FILE):
        self.table, self.config, self.pair, self.ops, self.measured = table, config, pair, tuple(ops), measured
        self.table_file = table_file  # where keep_table saves a table measured by this run
        self.batch_size, self.seq_len = config.latency_batch_size, config.latency_seq_len
        self.budget_ms = config.latency_budget_ms
        # What derivation aims at: the budget less a safety margin, since the table predicts a
        # student within a few percent (experiments/results/latency_predictor.md) and a student
        # derived to land exactly on the budget is over it half the time when timed again.
        self.target_ms = self.budget_ms * (1 - config.latency_margin)
        self.max_parameter_free = config.max_parameter_free if config.max_parameter_free < EDGES_PER_CELL else None
        entry = table.entry(self.batch_size, self.seq_len)
        missing = [op for op in self.ops if op not in entry.ops_ms]
        if missing:
            raise UserError(f"{table.source}: no timing for op {missing[0]!r}")
        self.entry = entry
        self.op_ms = {op: entry.ops_ms[op] for op in self.ops}
        self.op_ms_vector = torch.tensor([self.op_ms[op] for op in self.ops], device=device)  # (O,)
        self.frame_ms = entry.frame_pair_ms if pair else entry.frame_ms
        # The slowest architecture: every cell, every edge on the slowest op (normalises L_E).
        self.slowest_ms = self.frame_ms + config.max_cells * (entry.cell_ms + EDGES_PER_CELL * max(self.op_ms.values()))

    # ---- the efficiency term
    @property
    def is_efficiency_term(self) -> bool:
        """Latency replaces AdaBERT's cost term when asked to or under a budget; a table given
        only to record the predicted latency leaves the cost term in place."""
        return self.config.efficiency == "latency" or self.budget_ms > 0

    def expected_ms(self, path) -> torch.Tensor:
        return expected_latency(path.op_weights, path.depth_weights, self.op_ms_vector,
                                self.entry.cell_ms, self.frame_ms, EDGES_PER_CELL)

    # ---- derivation
    def predict(self, genotype) -> float:
        return predict_latency_ms(self.table, genotype, self.batch_size, self.seq_len, self.pair)

    def cheapest(self) -> tuple[float, str]:
        """The fastest architecture derivation could give: one cell of the cheapest non-`zero`
        ops, with at most `max_parameter_free` parameter-free edges. (ms, description)"""
        free = min(((ms, op) for op, ms in self.op_ms.items() if op in PARAMETER_FREE and op != "zero"), default=None)
        weighted = min(((ms, op) for op, ms in self.op_ms.items() if op not in PARAMETER_FREE), default=None)
        cap = EDGES_PER_CELL if self.max_parameter_free is None else self.max_parameter_free
        mixes = []
        for n_free in {0, cap}:  # the cost is linear in the number of parameter-free edges: an end is cheapest
            parts = [(EDGES_PER_CELL - n_free, weighted), (n_free, free)]
            if any(n and best is None for n, best in parts):
                continue
            ops_ms = sum(n * best[0] for n, best in parts if n)
            shown = " + ".join(f"{best[1]} x{n}" for n, best in parts if n)
            mixes.append((self.frame_ms + self.entry.cell_ms + ops_ms, f"K=1, {shown}"))
        return min(mixes)

    def check_reachable(self) -> None:
        if self.budget_ms <= 0:
            return
        fastest, shown = self.cheapest()
        if self.target_ms < fastest:
            cap = "" if self.max_parameter_free is None else f" with at most {self.max_parameter_free} parameter-free edges"
            margin = f" less the {self.config.latency_margin:.0%} latency_margin" if self.config.latency_margin else ""
            raise UserError(
                f"latency budget {self.budget_ms:g} ms{margin} is below the cheapest architecture the search can derive{cap}: "
                f"{fastest:.3f} ms ({shown}) at batch {self.batch_size}, length {self.seq_len} by {self.table.source}; "
                "raise the budget" + (" or max_parameter_free" if cap else ""))

    def fit(self, genotype):
        """`genotype` within the budget: the deepest K that fits; if one cell is still too slow,
        its slowest ops give way to the next cheaper ones (parameter-free cap kept)."""
        if self.budget_ms <= 0 or self.predict(genotype) <= self.target_ms:
            return genotype
        for depth in range(genotype.num_cells - 1, 0, -1):
            shallower = dataclasses.replace(genotype, num_cells=depth)
            if self.predict(shallower) <= self.target_ms:
                return shallower
        genotype = dataclasses.replace(genotype, num_cells=1)
        while self.predict(genotype) > self.target_ms:
            swapped = self._swap_slowest(genotype)
            if swapped is None:
                fastest, _ = self.cheapest()
                raise UserError(f"the derived genotype {genotype} is predicted at {self.predict(genotype):.3f} ms, over "
                                f"the latency budget of {self.budget_ms:g} ms (aiming at {self.target_ms:.3f} ms), and no op can be swapped for a cheaper "
                                f"one (the cheapest architecture: {fastest:.3f} ms)")
            genotype = swapped
        return genotype

    def cheaper(self, genotype):
        """One step cheaper than `genotype`, for the measured check (nas/train/latency_check.py):
        one cell fewer, or at one cell its slowest op given way as in `fit`; None when no op can."""
        if genotype.num_cells > 1:
            return dataclasses.replace(genotype, num_cells=genotype.num_cells - 1)
        return self._swap_slowest(genotype)

    def describes(self, device) -> bool:
        """Whether the table was timed on this machine as the search runs on it (device type and
        name, CPU threads): only then can timing the student here check what the table predicts."""
        return not device_differences(self.table, device)

    def _swap_slowest(self, genotype):
        """One op swap: on the slowest edge that allows one, the next cheaper op; None if none can.

        A node's two in-edges must differ, so when the cheaper op would repeat the other in-edge
        the edge takes it from the lowest other input instead; then any cell can reach the
        cheapest ops, and a budget `check_reachable` accepted is always met."""
        cell = [list(node) for node in genotype.cell]
        free = sum(edge.op in PARAMETER_FREE for node in cell for edge in node)
        slots = sorted(((-self.op_ms[edge.op], i, j) for i, node in enumerate(cell) for j, edge in enumerate(node)))
        for _, i, j in slots:
            edge, other = cell[i][j], cell[i][1 - j]
            cheaper = sorted(((ms, op) for op, ms in self.op_ms.items() if ms < self.op_ms[edge.op] and op != "zero"),
                             reverse=True)  # the closest cheaper op first
            for _, op in cheaper:
                adds_free = op in PARAMETER_FREE and edge.op not in PARAMETER_FREE
                if adds_free and self.max_parameter_free is not None and free + 1 > self.max_parameter_free:
                    continue
                inputs = [edge.input] + [k for k in range(NUM_INPUTS + i) if k != edge.input]
                source = next(k for k in inputs if (op, k) != tuple(other))  # node i + 2 has >= 2 inputs
                cell[i][j] = Edge(op, source)
                return dataclasses.replace(genotype, cell=tuple(tuple(node) for node in cell))
        return None

    # ---- the record
    def keep_table(self, out: Path) -> None:
        """Save a table measured by this run into its folder, so a resume and readers find it."""
        if self.measured:
            save_latency_table(self.table, Path(out) / self.table_file)
            self.measured = False

    def record(self, genotype, timed_within: bool = False):
        """`genotype` with its predicted latency in `costs` and the budget in `extra`; a
        prediction over the budget is an error (derivation should have prevented it) unless the
        student was timed within the budget (`timed_within`, nas/train/latency_check.py): the
        clock overrules the table's sum."""
        predicted = self.predict(genotype)
        if self.budget_ms > 0 and predicted > self.target_ms and not timed_within:
            raise UserError(f"the derived genotype {genotype} is predicted at {predicted:.3f} ms, over the latency "
                            f"budget of {self.budget_ms:g} ms less its margin ({self.target_ms:.3f} ms)")
        costs = {**(genotype.costs or {}), "predicted_latency_ms": round(predicted, 4),
                 "latency_batch_size": self.batch_size, "latency_seq_len": self.seq_len,
                 "latency_cell_ms": round(cell_latency_ms(self.entry, genotype, self.table.source), 4)}
        extra = {**(genotype.extra or {}), "efficiency": "latency_budget" if self.budget_ms > 0 else self.config.efficiency,
                 "latency_budget_ms": self.budget_ms, "latency_margin": self.config.latency_margin,
                 "depth_choice": self.config.depth_choice,
                 "latency_table": {"file": self.config.latency_table or self.table_file, **dict(self.table.device)}}
        return dataclasses.replace(genotype, costs=costs, extra=extra)
