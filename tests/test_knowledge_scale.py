"""The knowledge folder at scale: token ids stored once and reused, a build that resumes to the
same bytes after it was stopped (killed included), augmented features never held, autocast on CUDA."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_knowledge import knowledge_args, write_lively_teacher

from kd.knowledge import Knowledge
import kd.knowledge
import kd.teacher_pass
from nas.base.errors import UserError
from nas.commands.cli import main
from nas.data.batching import encode
from nas.data.glue_io import Example, load_task_data
from nas.data.models import load_tokenizer
from nas.data.tasks import get_task
from nas.data.token_arrays import RaggedRows, read_token_arrays, tokenize, tokenize_chunks, write_token_arrays
import nas.data.token_arrays
from nas.train.distill_data import prepare

SHARDS = ("--set", "shard_rows=40")  # 192 augmented rows: 5 shards, the last one short


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return write_lively_teacher(tmp_path_factory.mktemp("lively") / "teacher", seed=3)


def build(teacher, data_dir, out, *extra) -> int:
    return main([str(a) for a in knowledge_args(teacher, data_dir, out, "--augment", 2, *SHARDS, *extra)])


@pytest.fixture(scope="module")
def built(teacher, tiny_glue, tmp_path_factory):
    out = tmp_path_factory.mktemp("k") / "k"
    assert build(teacher, tiny_glue, out) == 0
    return out


def arrays(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.npy"))}


# ---------------------------------------------------------------- token ids: round trip and reuse


def test_ragged_rows_behave_like_lists():
    rows = [[5, 6, 7], [], [8], [9, 10]]
    ragged = RaggedRows.from_lists(rows)
    assert len(ragged) == 4 and list(ragged) == rows and ragged == rows
    assert ragged.lengths.tolist() == [3, 0, 1, 2]
    assert ragged[1:3] == [[], [8]] and ragged[2:] == [[8], [9, 10]]
    assert RaggedRows.concat([ragged[2:], ragged[:1]]) == [[8], [9, 10], [5, 6, 7]]
    assert ragged.take([3, 0, 3, 1]) == [[9, 10], [5, 6, 7], [9, 10], []]
    assert ragged[1:].take([2, 0]) == [[9, 10], []]  # a view whose offsets do not start at 0


def test_stored_arrays_round_trip(tmp_path, teacher):
    tokenizer = load_tokenizer(str(teacher))
    first = ["the film was good", "bad", "a movie and a plot", "x"] * 5
    second = ["the story", "good fun", "a", "the film"] * 5
    ids, types = tokenize(first, second, tokenizer, 8)
    expected = tokenizer(first, second, truncation=True, max_length=8)
    assert ids == expected["input_ids"] and types == expected["token_type_ids"]
    rows = write_token_arrays(tmp_path, "s", tokenize_chunks(first, second, tokenizer, 8))
    stored_ids, stored_types = read_token_arrays(tmp_path, "s")
    assert rows == 20 and isinstance(stored_ids.flat, np.memmap) and stored_ids.flat.dtype == np.int32
    assert stored_ids == expected["input_ids"] and stored_types == expected["token_type_ids"]


@pytest.mark.parametrize("how", ["threads", "processes"])
def test_every_core_tokenises_like_one(teacher, monkeypatch, how):
    monkeypatch.setattr(nas.data.token_arrays, "CHUNK_ROWS", 7)
    monkeypatch.setattr(nas.data.token_arrays, "POOL_MIN_ROWS", 0)
    tokenizer = load_tokenizer(str(teacher))
    texts = [" ".join(["the film was good"] * (i % 9)) for i in range(50)]
    pooled = list(tokenize_chunks(texts, None, tokenizer, 16, processes=2, how=how))
    alone = list(tokenize_chunks(texts, None, tokenizer, 16, processes=1, how="one"))
    assert len(pooled) == 8
    for a, b in zip(pooled, alone):
        assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_the_folder_holds_every_splits_ids(built, teacher, tiny_glue):
    knowledge = Knowledge(built)
    tokenizer = load_tokenizer(str(teacher))
    data = load_task_data(get_task("sst2"), tiny_glue, None, None)
    augmented = knowledge.augmented_examples()
    for name, examples in (("train", data.train), ("dev", data.dev["dev"]), ("augmented", augmented)):
        stored, _ = read_token_arrays(built, name)
        assert stored == encode(examples, tokenizer, knowledge.max_length).input_ids
        assert knowledge.manifest.splits[name] == len(stored)
    assert knowledge.manifest.format_version == 2 and knowledge.manifest.pad_id == tokenizer.pad_token_id


class Tokenised(Exception):
    pass


def no_tokenizer(*args, **kwargs):
    raise Tokenised("the tokenizer was called")


def test_prepare_reads_the_ids_without_tokenising(built, teacher, tiny_glue, monkeypatch):
    data = load_task_data(get_task("sst2"), tiny_glue, 60, None)
    knowledge = Knowledge(built)
    tokenizer = load_tokenizer(str(teacher))
    expected = prepare(data, knowledge, tokenizer, knowledge.max_length + 1)  # another length: tokenised again
    monkeypatch.setattr(nas.data.token_arrays, "tokenize_chunk", no_tokenizer)
    distill = prepare(data, knowledge, tokenizer, knowledge.max_length)
    assert len(distill.train) == 60 * 3 and distill.original_rows == 60
    assert distill.train.input_ids == expected.train.input_ids  # every row shorter than either length
    assert torch.equal(distill.train.labels, expected.train.labels)
    assert distill.dev["dev"].input_ids == expected.dev["dev"].input_ids
    with pytest.raises(Tokenised):  # the spy does catch a tokenizer call
        prepare(data, knowledge, tokenizer, knowledge.max_length + 1)


def test_prepare_keeps_the_first_copies_of_each_row(built, teacher, tiny_glue):
    data = load_task_data(get_task("sst2"), tiny_glue, 60, None)
    knowledge, tokenizer = Knowledge(built), load_tokenizer(str(teacher))
    every = prepare(data, knowledge, tokenizer, knowledge.max_length)
    first = prepare(data, knowledge, tokenizer, knowledge.max_length, copies=1)
    assert len(first.train) == 60 * 2 and first.original_rows == 60
    kept = list(range(60)) + [60 + 2 * row for row in range(60)]  # each row's first of its 2 copies
    assert first.train.input_ids == [every.train.input_ids[i] for i in kept]
    assert first.train.token_type_ids == [every.train.token_type_ids[i] for i in kept]
    assert torch.equal(first.train.labels, every.train.labels[kept])
    assert torch.equal(first.train_targets.probe_logits, every.train_targets.probe_logits[kept])
    assert prepare(data, knowledge, tokenizer, knowledge.max_length, copies=2).train.input_ids == every.train.input_ids
    for copies in (3, -1):
        with pytest.raises(UserError, match=rf"setting 'augmented_copies': expected 0 \(all\) to 2 .* got {copies}"):
            prepare(data, knowledge, tokenizer, knowledge.max_length, copies=copies)


def test_search_and_distill_commands_never_tokenise(prepared, tiny_glue, tmp_path, monkeypatch, run_cli):
    teacher, knowledge = prepared["mrpc"]
    monkeypatch.setattr(nas.data.token_arrays, "tokenize_chunk", no_tokenizer)
    common = ("--task", "mrpc", "--data-dir", tiny_glue, "--teacher", teacher, "--knowledge", knowledge,
              "--device", "cpu", "--max-train", 32, "--max-dev", 16, "--epochs", 1)
    code, _, err = run_cli("search", *common, "--out", tmp_path / "search", "--set", "max_cells=2",
                           "--set", "hidden_size=8", "--set", "batch_size=16", "--set", "warmup_epochs=0")
    assert code == 0, err
    code, _, err = run_cli("distill", "--method", "vanilla", *common, "--out", tmp_path / "distill",
                           "--set", "latency_repeats=2")
    assert code == 0, err


def test_a_format_1_folder_asks_for_a_rebuild(built, tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    manifest = json.loads((built / "manifest.json").read_text())
    (old / "manifest.json").write_text(json.dumps({**manifest, "format_version": 1}))
    with pytest.raises(UserError, match="rerun `nas knowledge`") as error:
        Knowledge(old)
    assert "\n" not in str(error.value)


# ---------------------------------------------------------------- resume to the same bytes


class Stop(Exception):
    pass


def test_a_stopped_build_resumes_to_the_same_arrays(built, teacher, tiny_glue, tmp_path, monkeypatch):
    out = tmp_path / "k"

    def stop_after(shards):
        def hook(done):
            if done == shards:
                raise Stop

        return hook

    monkeypatch.setattr(kd.knowledge, "after_shard", stop_after(2))
    with pytest.raises(Stop):
        build(teacher, tiny_glue, out)
    assert not out.exists() and json.loads((tmp_path / "k.partial" / "progress.json").read_text())["augmented_shards"] == 2

    seen = []
    real = kd.teacher_pass.run_teacher
    monkeypatch.setattr(kd.knowledge, "run_teacher", lambda model, split, *a, **k: seen.append(len(split)) or real(model, split, *a, **k))
    monkeypatch.setattr(kd.knowledge, "after_shard", lambda done: None)
    assert build(teacher, tiny_glue, out) == 0
    assert seen == [40, 40, 32], "a resumed build runs only the shards it had not finished"
    assert not (tmp_path / "k.partial").exists()
    assert arrays(out) == arrays(built)
    assert (out / "augmented.tsv").read_bytes() == (built / "augmented.tsv").read_bytes()


@pytest.mark.slow
def test_a_killed_process_resumes_to_the_same_arrays(built, teacher, tiny_glue, tmp_path):
    """A real SIGKILL (as the out-of-memory killer sends), then `nas knowledge` again."""
    out = tmp_path / "k"
    command = [sys.executable, "-m", "nas", *map(str, knowledge_args(teacher, tiny_glue, out, "--augment", 2, *SHARDS))]
    env = {**os.environ, "NAS_KNOWLEDGE_KILL_AFTER_SHARDS": "3", "OMP_NUM_THREADS": "1"}
    killed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr
    assert json.loads((tmp_path / "k.partial" / "progress.json").read_text())["augmented_shards"] == 3
    del env["NAS_KNOWLEDGE_KILL_AFTER_SHARDS"]
    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert arrays(out) == arrays(built)


def test_other_inputs_start_the_staging_folder_afresh(teacher, tiny_glue, tmp_path, monkeypatch):
    out = tmp_path / "k"
    monkeypatch.setattr(kd.knowledge, "after_shard", lambda done: (_ for _ in ()).throw(Stop()))
    with pytest.raises(Stop):
        build(teacher, tiny_glue, out)
    monkeypatch.setattr(kd.knowledge, "after_shard", lambda done: None)
    assert build(teacher, tiny_glue, out, "--set", "p_mask=0.5") == 0
    assert Knowledge(out).manifest.inputs.augmentation["p_mask"] == 0.5
    assert len(Knowledge(out).split("augmented")) == 192


# ---------------------------------------------------------------- memory: augmented features never held


def test_augmented_features_are_never_materialised(teacher, tiny_glue, tmp_path, monkeypatch):
    """Whole-split features (N x layers x hidden) come back only for the task's own rows; the
    augmented rows go through in shards, reduced to probe logits inside each batch."""
    calls = []
    real = kd.teacher_pass.run_teacher

    def spy(model, split, batch_size, device, pooling="mean", head=None):
        logits, second = real(model, split, batch_size, device, pooling, head)
        calls.append((len(split), head is not None, tuple(second.shape)))
        return logits, second

    monkeypatch.setattr(kd.knowledge, "run_teacher", spy)  # where the build looks it up
    assert build(teacher, tiny_glue, tmp_path / "k", "--augment", 6) == 0  # 576 augmented rows
    features = [rows for rows, reduced, _ in calls if not reduced]
    assert sorted(features) == [32, 96]  # dev and train, nothing else
    reduced = [(rows, shape) for rows, is_reduced, shape in calls if is_reduced]
    assert sum(rows for rows, _ in reduced) == 576 and max(rows for rows, _ in reduced) <= 40
    assert all(shape[1:] == (3, 2) for _, shape in reduced)  # (rows, layers, classes): no hidden axis


# ---------------------------------------------------------------- CUDA: autocast against float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_autocast_teacher_pass_matches_float32(teacher):
    from kd.teacher_pass import run_teacher
    from nas.data.models import load_classifier

    model = load_classifier(str(teacher), get_task("sst2"), new_head=False).cuda()
    tokenizer = load_tokenizer(str(teacher))
    texts = [" ".join(["the film was good and the plot"] * (1 + i % 5)) for i in range(64)]
    split = encode([Example(t, None, 0) for t in texts], tokenizer, 64)
    fast, fast_features = run_teacher(model, split, 16, "cuda")  # autocast: bfloat16 (or float16)
    exact, exact_features = run_teacher(model.cpu(), split, 16, "cpu")  # float32
    assert exact.std() > 0.1
    torch.testing.assert_close(fast, exact, rtol=5e-2, atol=5e-2)
    torch.testing.assert_close(fast_features, exact_features, rtol=5e-2, atol=5e-2)
