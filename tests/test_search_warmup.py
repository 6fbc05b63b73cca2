"""A search's warm-up epochs (architecture logits frozen at their random start) are scored and
logged but never chosen as its best: their derived genotype was never searched."""

from __future__ import annotations

import json

import torch
from test_search import search_args

from nas.commands.cli import main
from nas.train.loop import Hooks, train_loop


def test_epochs_before_best_from_epoch_cannot_be_the_best():
    model = torch.nn.Linear(1, 1)
    scores = iter([0.9, 0.5, 0.7])  # the first epoch scores highest
    chosen = []
    hooks = Hooks(loss=lambda batch: (model(batch).sum(), {}), epoch_batches=lambda epoch: [torch.ones(1, 1)],
                  evaluate=lambda state: {"accuracy": next(scores)},
                  on_best=lambda state, metrics: chosen.append(state.epoch))
    state = train_loop(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.0), hooks=hooks, epochs=3,
                       primary_metric="accuracy", best_from_epoch=1, show_progress=False)
    assert chosen == [1, 2] and (state.best, state.best_epoch) == (0.7, 2)
    assert [m["accuracy"] for m in state.history] == [0.9, 0.5, 0.7]  # still scored and logged


def test_a_search_never_derives_from_its_warm_up(prepared, tiny_glue, tmp_path):
    out = tmp_path / "search"
    assert main(search_args(prepared, tiny_glue, "sst2", out, "--set", "warmup_epochs=1")) == 0
    arch = json.loads((out / "arch.json").read_text())
    history = json.loads((out / "history.json").read_text())["epochs"]
    assert arch["extra"]["best_epoch"] == 2 and len(history) == 2
