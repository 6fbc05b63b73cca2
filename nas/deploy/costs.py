"""Parameters and FLOPs of a compiled student, measured on the model itself."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from searchspace.student import compile_genotype


def parameter_counts(model: torch.nn.Module) -> dict:
    """The size figures recorded for every model, in `arch.json` (`costs`) and `metrics.json` alike.

    `params` counts every parameter; `params_without_embeddings` leaves out the token-embedding
    table (`get_input_embeddings()`) and nothing else: that table grows with the vocabulary and
    is a lookup, not computation, and every model here (teacher, searched student, KD baselines)
    has exactly one, so the figure compares across them. Position tables and embedding norms
    are counted, as the rest of the network is. One function, so one name means one number.

    A searched student is counted as served (`for_inference`, as `student_costs` and `nas finetune`'s
    folder hold it): whatever word-vector variant trained it (searchspace/embedding_variants.py),
    its token table is then (vocab, H) and no projection runs. Counted on a student before the fold
    (a training form), a projected variant's table is the one `get_input_embeddings()` returns at
    the width it keeps (the teacher's for frozen_projection and wide_projection, H/2 for
    factorised), its projection counted as computation, and frozen tables as parameters like any
    other: they would be stored and shipped, so `params` is the model's size, not what training moved.
    """
    params = sum(p.numel() for p in model.parameters())
    return {"params": params, "params_without_embeddings": params - model.get_input_embeddings().weight.numel()}


def count_flops(model: torch.nn.Module, inputs: dict) -> int:
    """FLOPs of one forward pass (2·MACs of matmuls and convolutions), as FlopCounterMode counts them."""
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(**inputs)
    return int(counter.get_total_flops())


def dummy_inputs(batch: int, seq_len: int, pair: bool, vocab_size: int = 1000) -> dict:
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(5, min(vocab_size, 1000), (batch, seq_len), generator=generator)
    token_type_ids = torch.zeros_like(input_ids)
    if pair:
        token_type_ids[:, seq_len // 2 :] = 1
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "token_type_ids": token_type_ids}


def student_costs(genotype, *, vocab_size, max_positions, num_labels, pair, seq_len=64, teacher_width=None) -> dict:
    """Params (`parameter_counts`) and FLOPs per sequence of `seq_len` tokens of the student as served
    (`for_inference`; `teacher_width`: as `compile_genotype` takes it, for the word-vector variants
    as wide as the teacher's)."""

    student = compile_genotype(genotype, vocab_size=vocab_size, max_positions=max_positions, num_labels=num_labels,
                               pair=pair, teacher_width=teacher_width).for_inference()
    flops = count_flops(student, dummy_inputs(1, seq_len, pair, vocab_size))
    return {**parameter_counts(student), "flops": flops, "flops_seq_len": seq_len}
