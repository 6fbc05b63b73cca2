"""What `nas latency-table` times goes through the student's public API (issue 12): the frame is
`without_cells()`, a stack of cells runs with `fixed_choices`; nothing outside the student swaps
its cells."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nas.deploy import latency_measure
from nas.deploy.latency_measure import LatencyTableConfig, build_latency_table, measure_entry
from ops import OP_NAMES
from searchspace.cell import fixed_choices, pair_inputs, run_cells
from searchspace.random_arch import random_genotypes
from searchspace.student import AdaBertStudentForSequenceClassification, compile_genotype

HIDDEN, VOCAB, POSITIONS = 16, 40, 32


def inputs(pair: bool) -> dict:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1, VOCAB, (3, 10), generator=generator)
    mask = torch.ones_like(ids)
    mask[0, 7:] = 0  # padding in one row
    types = torch.zeros_like(ids)
    types[:, 5:] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types if pair else None}


class PassThrough(nn.Module):
    def forward(self, s0, s1, mask0, mask1, mask, choices):
        return s1


@pytest.mark.parametrize("pair", [False, True])
def test_without_cells_is_the_forward_pass_with_pass_through_cells(pair):
    torch.manual_seed(0)
    genotype = random_genotypes(3, 1, hidden_size=HIDDEN, max_depth=3, max_cells=3)[0]
    student = compile_genotype(genotype, vocab_size=VOCAB, max_positions=POSITIONS, num_labels=2, pair=pair).eval()
    before = student(**inputs(pair)).logits
    frame = student.without_cells()
    assert not frame.training and frame.embeddings is student.embeddings and frame.head is student.head
    frame_logits = frame(**inputs(pair)).logits
    assert torch.equal(student(**inputs(pair)).logits, before)  # the student keeps its cells
    # What the latency table used to build by hand: the same student, its cells swapped out.
    student.cells = nn.ModuleList(PassThrough() for _ in student.cells)
    assert torch.allclose(frame_logits, student(**inputs(pair)).logits, atol=1e-6)
    assert not torch.allclose(frame_logits, before, atol=1e-4)  # the cells did count


def test_without_cells_runs_no_cell():
    genotype = random_genotypes(4, 1, hidden_size=HIDDEN, max_depth=2, max_cells=2)[0]
    student = compile_genotype(genotype, vocab_size=VOCAB, max_positions=POSITIONS, num_labels=2, pair=False).eval()
    for cell in student.cells:
        cell.forward = lambda *args: pytest.fail("the frame ran a cell")
    student.without_cells()(**inputs(False))


def test_fixed_choices_run_cells_as_the_compiled_student_does():
    torch.manual_seed(1)
    genotype = random_genotypes(5, 1, hidden_size=HIDDEN, max_depth=3, max_cells=3)[0]
    student = compile_genotype(genotype, vocab_size=VOCAB, max_positions=POSITIONS, num_labels=2, pair=True).eval()
    batch = inputs(True)
    embedded = student.embeddings(batch["input_ids"])
    outputs, mask = run_cells(student.cells, embedded, batch["attention_mask"], batch["token_type_ids"], True,
                              fixed_choices(student.edge_ops), student.depth)
    pair = pair_inputs(mask, batch["token_type_ids"], embedded)
    assert torch.allclose(student.head(outputs[-1], mask, pair), student(**batch).logits, atol=1e-6)


def test_measure_entry_times_the_frame_through_without_cells(monkeypatch):
    calls = []
    original = AdaBertStudentForSequenceClassification.without_cells

    def counting(student):
        frame = original(student)
        frame.register_forward_pre_hook(lambda module, args: calls.append(module.config.pair))
        return frame

    monkeypatch.setattr(AdaBertStudentForSequenceClassification, "without_cells", counting)
    config = LatencyTableConfig(hidden_size=8, batch_sizes=(1,), seq_lens=(4,), warmup=1, repeats=2, min_repeat_ms=0,
                                stack_cells=2)
    entry = measure_entry(config, 1, 4, torch.device("cpu"), torch.Generator().manual_seed(0))
    # One warm-up call, then two rounds of one call each (min_repeat_ms=0: no calibrating call).
    assert sorted(calls) == [False] * 3 + [True] * 3
    assert set(entry.ops_ms) == set(OP_NAMES) and entry.frame_ms > 0 and entry.frame_pair_ms > 0


@pytest.mark.parametrize("load, warned", [(1.0, False), (10000.0, True), (None, False)])
def test_a_table_measured_on_a_busy_cpu_is_warned_and_the_load_kept(load, warned, monkeypatch):
    monkeypatch.setattr(latency_measure, "cpu_load", lambda: load)
    warnings = []
    config = LatencyTableConfig(hidden_size=8, batch_sizes=(1,), seq_lens=(4,), warmup=0, repeats=1, min_repeat_ms=0,
                                stack_cells=1)
    table = build_latency_table(config, torch.device("cpu"), warn=warnings.append)
    assert table.method.get("load_average") == load
    assert len(warnings) == int(warned)
    assert not warned or "busy" in warnings[0] and "quiet machine" in warnings[0]
