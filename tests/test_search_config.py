"""SearchConfig holds its SearchSpace, yet reads, writes and is set with the flat names of before."""

import dataclasses

import pytest

from nas.base.errors import UserError
from nas.data.tasks import get_task
from nas.run.config import build
from nas.train.search import SearchConfig
from ops import ADABERT_OPS
from searchspace.space import SearchSpace

# The record's keys before the space was nested (config.json, provenance, checkpoints): a resumed
# run compares them, and readers of old run folders rely on them.
RECORD_KEYS = (
    "hidden_size", "max_cells", "shared_cells", "dropout", "gamma", "beta", "kd_temperature", "epochs",
    "warmup_epochs", "batch_size", "eval_batch_size", "lr", "weight_decay", "warmup_ratio", "arch_lr",
    "arch_weight_decay", "arch_fraction", "mode", "tau_start", "tau_floor", "max_parameter_free", "cost_seq_len",
    "max_length", "use_augmented", "seed", "efficiency", "latency_table", "latency_budget_ms", "latency_batch_size",
    "latency_seq_len", "latency_margin", "depth_choice", "amp", "bucket", "fused_optimizer",
)


def test_the_config_holds_a_search_space():
    config = SearchConfig(hidden_size=16, max_cells=3, dropout=0.2, beta=1.0)
    assert isinstance(config.space, SearchSpace)
    assert config.space == SearchSpace(hidden_size=16, max_cells=3, dropout=0.2, embeddings="auto")
    assert (config.hidden_size, config.max_cells, config.dropout, config.beta) == (16, 3, 0.2, 1.0)
    assert SearchConfig(SearchSpace(hidden_size=16)).hidden_size == 16


def test_the_record_is_flat_with_the_keys_of_before():
    record = SearchConfig(hidden_size=16).to_dict()
    assert tuple(record) == RECORD_KEYS
    assert record["hidden_size"] == 16 and "space" not in record
    assert SearchConfig(**record) == SearchConfig(hidden_size=16)  # a record rebuilds its config


def test_replace_and_settings_use_the_flat_names():
    config = dataclasses.replace(SearchConfig(), max_cells=4, gamma=0.5)
    assert config.space.max_cells == 4 and config.gamma == 0.5
    built = build(SearchConfig, "search", None, {"epochs": 2}, ["hidden_size=32", "shared_cells=false"])
    assert built.space == SearchSpace(hidden_size=32, shared_cells=False, embeddings="auto") and built.epochs == 2


@pytest.mark.parametrize("task, resolved", [("sst2", "frozen_projection"), ("mrpc", "pca")])
def test_auto_word_vectors_resolve_by_the_task_kind_of_input(task, resolved):
    config = SearchConfig(hidden_size=16)
    assert config.embeddings == "auto" and "embeddings" not in config.to_dict()  # the default, as every setting
    chosen = config.for_task(get_task(task))
    assert chosen.embeddings == resolved and chosen.to_dict()["embeddings"] == resolved
    assert chosen.for_task(get_task(task)) == chosen
    named = SearchConfig(embeddings="factorised").for_task(get_task(task))
    assert named.embeddings == "factorised"  # a variant the settings name is kept


def test_the_settings_list_auto_as_the_word_vectors_default():
    defaults = {name: default for name, _, default in SearchConfig.settings_fields()}
    assert defaults["embeddings"] == "auto" and defaults["hidden_size"] == SearchSpace().hidden_size


def test_the_space_itself_is_not_a_setting():
    with pytest.raises(Exception, match="unknown setting 'space'"):
        build(SearchConfig, "search", None, {}, ["space=3"])


def test_the_ops_setting_names_the_spaces_ops_and_is_recorded_only_when_set():
    assert SearchConfig().space.ops == ADABERT_OPS and "ops" not in SearchConfig().to_dict()
    built = build(SearchConfig, "search", None, {}, ["ops=cnn3,identity,zero,bigru"])
    assert built.space.ops == ("cnn3", "identity", "zero", "bigru")
    assert built.to_dict()["ops"] == built.ops == built.space.ops
    assert SearchConfig(**built.to_dict()) == built


@pytest.mark.parametrize("ops", ["cnn3,conv9", "cnn3,cnn3", "zero"])
def test_ops_outside_the_registry_repeated_or_only_zero_are_refused(ops):
    with pytest.raises(UserError, match="setting 'ops'.*bigru"):  # the message lists the registry
        build(SearchConfig, "search", None, {}, [f"ops={ops}"])


def test_newer_settings_are_recorded_only_when_set():
    record = SearchConfig(widths=(64, 128), selection="perturbation", perturbation_rows=64, train_rows=8000).to_dict()
    assert set(record) == {*RECORD_KEYS, "widths", "selection", "perturbation_rows", "train_rows"}
    assert record["selection"] == "perturbation"
    assert record["widths"] == (64, 128) and record["perturbation_rows"] == 64
    assert SearchConfig(**record).to_dict() == record


@pytest.mark.parametrize("epochs, warmup", [(1, 1), (2, 3), (0, 0)])
def test_a_search_that_would_never_train_its_architecture_is_refused(epochs, warmup):
    # The logits stay frozen through the warm-up: such a search derives their random start.
    with pytest.raises(UserError, match=r"'epochs' \(\d+\) and 'warmup_epochs' \(\d+\)"):
        SearchConfig(epochs=epochs, warmup_epochs=warmup)
    SearchConfig(epochs=warmup + 1, warmup_epochs=warmup)


def test_train_rows_below_zero_is_refused():
    with pytest.raises(UserError, match="'train_rows'"):
        SearchConfig(train_rows=-1)
