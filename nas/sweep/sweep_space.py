"""The settings of `nas sweep` and the search space it samples each trial's search settings from.

Swept search settings, each drawn by the Optuna sampler per trial:

| search setting      | how it is drawn                     | sweep setting that bounds it      |
| ---                 | ---                                 | ---                               |
| `beta`              | log-uniform in [low, high]          | `beta_range` (0.5, 16)            |
| `gamma`             | uniform in [low, high]              | `gamma_range` (0.5, 0.95)         |
| `tau_start`         | log-uniform in [low, high]          | `tau_start_range` (1, 10)         |
| `arch_lr`           | log-uniform in [low, high]          | `arch_lr_range` (3e-4, 1e-2)      |
| `hidden_size`       | one of the choices                  | `hidden_sizes` (64, 128, 256)     |
| `max_cells`         | one of the choices                  | `max_cells_choices` (4, 8)        |
| `latency_budget_ms` | one of the sweep's budgets          | `--budgets`, else `budget_fractions` |

Default budgets lie `budget_fractions` (0.1, 0.25, 0.5) of the way from the cheapest student the
search can derive to the slowest one of the space, both predicted by the latency table at the
widest swept hidden size.

A range whose two ends are equal fixes that setting (it is then not sampled). Every other search
setting is fixed for the whole sweep (`--set search.KEY=VALUE`), and every trial searches with
`efficiency=latency` against the sweep's one latency table.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from nas.base.errors import UserError

# The batch sizes `nas finetune` times the student at (metrics.json: batch_1_ms, batch_32_ms);
# the measured objective is read from there, so a budget can only refer to one of them.
TIMED_BATCH_SIZES = (1, 32)


@dataclass(frozen=True)
class SweepConfig:
    beta_range: tuple[float, ...] = (0.5, 16.0)
    gamma_range: tuple[float, ...] = (0.5, 0.95)
    tau_start_range: tuple[float, ...] = (1.0, 10.0)
    arch_lr_range: tuple[float, ...] = (3e-4, 1e-2)
    hidden_sizes: tuple[int, ...] = (64, 128, 256)
    max_cells_choices: tuple[int, ...] = (4, 8)
    # Latency budgets in ms at latency_batch_size. Empty: these fractions of the way from the
    # cheapest student the search can derive to the slowest of the space (deepest, widest, the
    # slowest op on every edge), by the latency table.
    budgets: tuple[float, ...] = ()
    budget_fractions: tuple[float, ...] = (0.1, 0.25, 0.5)
    latency_batch_size: int = 1
    latency_seq_len: int = 64
    finetune_epochs: int = 1
    sampler: str = "tpe"  # tpe (multi-objective TPE) or random
    # Pruning (see nas/sweep/sweep.py): from this search epoch on, stop a trial whose (dev metric,
    # predicted latency) is dominated by at least `prune_dominated_share` of the completed trials'
    # points at the same epoch, once at least `prune_min_trials` completed trials reached it.
    prune: bool = True
    prune_from_epoch: int = 2
    prune_min_trials: int = 4
    prune_dominated_share: float = 0.5
    # A RUNNING trial whose worker sent no heartbeat for grace_seconds is marked failed and retried.
    heartbeat_seconds: int = 60
    grace_seconds: int = 180
    max_failed_trials: int = 0  # stop the sweep after this many failed trials; 0: as many as --trials

    def __post_init__(self):
        for name in ("beta_range", "gamma_range", "tau_start_range", "arch_lr_range"):
            value = getattr(self, name)
            if len(value) != 2 or not 0 < value[0] <= value[1]:
                raise UserError(f"setting {name!r}: expected LOW,HIGH with 0 < LOW <= HIGH, got {value}")
        if self.gamma_range[1] > 1:
            raise UserError(f"setting 'gamma_range': gamma is a share, at most 1, got {self.gamma_range}")
        for name in ("hidden_sizes", "max_cells_choices"):
            value = getattr(self, name)
            if not value or min(value) < 1:
                raise UserError(f"setting {name!r}: expected one or more positive integers, got {value}")
        if any(b <= 0 for b in self.budgets):
            raise UserError(f"setting 'budgets': expected positive milliseconds, got {self.budgets}")
        if not self.budgets and (not self.budget_fractions or not all(0 < f <= 1 for f in self.budget_fractions)):
            raise UserError(f"setting 'budget_fractions': expected fractions in (0, 1], got {self.budget_fractions}")
        if self.latency_batch_size not in TIMED_BATCH_SIZES:
            raise UserError(f"setting 'latency_batch_size': expected one of {TIMED_BATCH_SIZES} (the batch sizes "
                            f"nas finetune times the student at), got {self.latency_batch_size}")
        if self.sampler not in ("tpe", "random"):
            raise UserError(f"setting 'sampler': expected tpe or random, got {self.sampler!r}")
        if not 0 < self.prune_dominated_share <= 1:
            raise UserError(f"setting 'prune_dominated_share': expected a value in (0, 1], got {self.prune_dominated_share}")
        if self.heartbeat_seconds < 1 or self.grace_seconds <= self.heartbeat_seconds:
            raise UserError("settings 'heartbeat_seconds' and 'grace_seconds': expected 1 <= heartbeat < grace, got "
                            f"{self.heartbeat_seconds} and {self.grace_seconds}")
        if self.finetune_epochs < 1 or self.latency_seq_len < 1 or self.prune_from_epoch < 1:
            raise UserError("settings 'finetune_epochs', 'latency_seq_len' and 'prune_from_epoch' must be 1 or more")


# Search settings that each trial draws; fixing one of them with --set search.KEY would be overruled.
SWEPT_SEARCH_SETTINGS = ("beta", "gamma", "tau_start", "arch_lr", "hidden_size", "max_cells", "latency_budget_ms")
# Search settings the sweep sets itself from its own settings and its latency table.
SWEEP_OWNED_SEARCH_SETTINGS = ("efficiency", "latency_table", "latency_batch_size", "latency_seq_len")


def sample_settings(trial, config: SweepConfig, budgets) -> dict:
    """Draw one trial's swept search settings through the Optuna `trial` (`suggest_*`)."""

    def ranged(name, bounds, log):
        low, high = bounds
        return low if low == high else trial.suggest_float(name, low, high, log=log)

    return {
        "beta": ranged("beta", config.beta_range, log=True),
        "gamma": ranged("gamma", config.gamma_range, log=False),
        "tau_start": ranged("tau_start", config.tau_start_range, log=True),
        "arch_lr": ranged("arch_lr", config.arch_lr_range, log=True),
        "hidden_size": trial.suggest_categorical("hidden_size", list(config.hidden_sizes)),
        "max_cells": trial.suggest_categorical("max_cells", list(config.max_cells_choices)),
        "latency_budget_ms": trial.suggest_categorical("latency_budget_ms", list(budgets)),
    }


def trial_search_config(base, sampled: dict, config: SweepConfig, latency_table: str):
    """The SearchConfig of one trial: the sweep's fixed settings, the drawn ones, latency efficiency."""
    return dataclasses.replace(
        base, **sampled, efficiency="latency", latency_table=latency_table,
        latency_batch_size=config.latency_batch_size, latency_seq_len=config.latency_seq_len,
    )


def check_fixed_search_settings(search_sets: dict) -> None:
    """Refuse --set search.KEY for settings the sweep draws or owns, naming where to set them instead."""
    for key in search_sets:
        name = key.replace("-", "_")
        if name in SWEPT_SEARCH_SETTINGS:
            where = "--budgets" if name == "latency_budget_ms" else f"--set {_range_setting(name)}=..."
            raise UserError(f"--set search.{key}: the sweep draws {name} per trial; bound it with {where}")
        if name in SWEEP_OWNED_SEARCH_SETTINGS:
            raise UserError(f"--set search.{key}: the sweep sets {name} itself "
                            "(latency_batch_size / latency_seq_len are sweep settings; --latency-table FILE)")


def _range_setting(name: str) -> str:
    return {"hidden_size": "hidden_sizes", "max_cells": "max_cells_choices"}.get(name, f"{name}_range")


def default_budgets(cheapest_ms: float, slowest_ms: float, fractions) -> tuple[float, ...]:
    """Budgets `fractions` of the way from the cheapest to the slowest student's latency, rounded
    to microseconds so that every worker of a study names the same categorical choices."""
    return tuple(sorted({round(cheapest_ms + f * (slowest_ms - cheapest_ms), 3) for f in fractions}))
