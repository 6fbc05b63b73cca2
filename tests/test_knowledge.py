"""`nas knowledge`: the manifest, float16 memory-mapped arrays that hold the teacher's own logits, the
cache and what invalidates it, the TSV export, and teacher-labelled augmented rows."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_tiny_teacher
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, BertForSequenceClassification

from kd.knowledge import Knowledge
from kd.probes import LayerProbes
from nas.base.errors import UserError
from nas.commands.cli import main
from nas.data.models import folder_hash

ROWS = {"train": 96, "dev": 32, "augmented": 192}
MAX_LENGTH = 64  # the default for one-sentence tasks
TOLERANCE = dict(rtol=1e-2, atol=1e-2)  # float16 keeps about three significant digits




def write_lively_teacher(folder: Path, seed: int) -> Path:
    """A tiny random teacher whose logits differ from row to row and change sign.

    With BERT's default initialiser (std 0.02) a tiny random model gives nearly the same logits
    for every input, which would let a shuffled or misaligned cache pass a comparison.
    """
    write_tiny_teacher(folder)  # the vocabulary, tokenizer and config
    config = AutoConfig.from_pretrained(str(folder))
    config.initializer_range = 0.5
    torch.manual_seed(seed)
    BertForSequenceClassification(config).save_pretrained(folder)
    return folder


def knowledge_args(teacher, data_dir, out, *extra):
    return ["knowledge", "--teacher", teacher, "--task", "sst2", "--data-dir", data_dir, "--out", out,
            "--device", "cpu", *extra]


def manifest(folder) -> dict:
    return json.loads((Path(folder) / "manifest.json").read_text())


def sentences(data_dir: Path, split: str):
    lines = (data_dir / "SST-2" / f"{split}.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return [line.split("\t")[0].strip() for line in lines], [line.split("\t")[1] for line in lines]


def read_tsv(path: Path):
    header, *rows = path.read_text(encoding="utf-8").splitlines()
    return header.split("\t"), [row.split("\t") for row in rows]


@torch.no_grad()
def teacher_outputs(teacher: Path, texts):
    """The teacher's logits (N, C) and mean-pooled hidden states (N, L+1, H), recomputed here."""
    tokenizer = AutoTokenizer.from_pretrained(str(teacher))
    model = AutoModelForSequenceClassification.from_pretrained(str(teacher)).eval()
    inputs = tokenizer(texts, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
    output = model(**inputs, output_hidden_states=True)
    mask = inputs["attention_mask"].unsqueeze(-1).float()  # (N, T, 1)
    pooled = [(h * mask).sum(1) / mask.sum(1) for h in output.hidden_states]  # L+1 of (N, H)
    return output.logits.numpy(), torch.stack(pooled, 1)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return write_lively_teacher(tmp_path_factory.mktemp("lively") / "teacher", seed=3)


@pytest.fixture(scope="module")
def built(teacher, tiny_glue, tmp_path_factory):
    out = tmp_path_factory.mktemp("knowledge") / "k"
    assert main([str(a) for a in knowledge_args(teacher, tiny_glue, out, "--augment", 2)]) == 0
    return out


def test_manifest_says_what_the_knowledge_was_made_from(built, teacher):
    data = manifest(built)
    assert data["task"] == "sst2"
    assert data["teacher_hash"] == folder_hash(teacher)
    assert data["splits"] == ROWS
    assert data["inputs"]["train_rows"] == 96 and data["inputs"]["dev_rows"] == {"dev": 32}
    assert data["inputs"]["augmentation"]["n"] == 2
    assert data["inputs"]["augmentation"]["seed"] == data["inputs"]["config"]["augment_seed"]
    assert {"p_mask", "p_pos_replace", "p_ngram"} <= set(data["inputs"]["augmentation"])
    assert data["inputs"]["config"]["seed"] == 42
    assert data["dtype"] == "float16"
    assert data["num_layers"] == 2 and data["num_labels"] == 2
    model = AutoModelForSequenceClassification.from_pretrained(str(teacher))
    assert data["teacher_params"] == sum(p.numel() for p in model.parameters())
    for kind in ("loss", "accuracy"):
        assert len(data["probes"]["dev"][kind]) == 3  # the embedding output and two layers
    assert all(0.0 <= a <= 1.0 for a in data["probes"]["dev"]["accuracy"])


def test_arrays_are_float16_and_memory_mapped(built):
    knowledge = Knowledge(built)
    assert knowledge.num_teacher_layers == 2
    for name, rows in ROWS.items():
        split = knowledge.split(name)
        assert isinstance(split.logits, np.memmap) and isinstance(split.probe_logits, np.memmap)
        assert split.logits.dtype == np.float16 and split.probe_logits.dtype == np.float16
        assert split.logits.shape == (rows, 2)
        assert split.probe_logits.shape == (rows, 3, 2)
        logits, probe_logits = split.rows([0, rows - 1])
        assert logits.dtype == torch.float32 and probe_logits.shape == (2, 3, 2)
    with pytest.raises(UserError, match="'test'"):
        knowledge.split("test")


@pytest.mark.parametrize("split", ["train", "dev"])
def test_stored_logits_are_the_teachers_own(built, teacher, tiny_glue, split):
    texts, _ = sentences(tiny_glue, split)
    expected, _ = teacher_outputs(teacher, texts)
    assert expected.std(0).min() > 0.1, "the teacher's logits barely vary; the comparison would prove little"
    stored = np.asarray(Knowledge(built).split(split).logits, dtype=np.float32)
    np.testing.assert_allclose(stored, expected, **TOLERANCE)


def test_stored_probe_logits_are_the_saved_probes_applied_to_the_teacher(built, teacher, tiny_glue):
    texts, labels = sentences(tiny_glue, "dev")
    _, features = teacher_outputs(teacher, texts)
    probes = LayerProbes(3, 32, 2)
    probes.load_state_dict(torch.load(built / "probes.pt"))
    with torch.no_grad():
        expected = probes(features).numpy()
    stored = np.asarray(Knowledge(built).split("dev").probe_logits, dtype=np.float32)
    np.testing.assert_allclose(stored, expected, **TOLERANCE)
    # The manifest's per-layer dev accuracy is that of these probe logits (a row may flip on float16 rounding).
    accuracy = (stored.argmax(-1) == np.array(labels, dtype=int)[:, None]).mean(0)
    assert manifest(built)["probes"]["dev"]["accuracy"] == pytest.approx(accuracy.tolist(), abs=1 / 32 + 1e-6)


def test_a_second_run_reuses_the_folder(run_cli, built, teacher, tiny_glue, tmp_path):
    out = tmp_path / "k"
    shutil.copytree(built, out)  # copy2 keeps modification times
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    code, stdout, _ = run_cli(*knowledge_args(teacher, tiny_glue, out, "--augment", 2))
    assert code == 0
    assert "reused" in stdout
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before

    code, stdout, _ = run_cli(*knowledge_args(teacher, tiny_glue, out, "--augment", 2, "--force"))
    assert code == 0 and "reused" not in stdout and "built" in stdout


@pytest.mark.parametrize("change, splits", [
    (("--augment", 1), {"train": 96, "dev": 32, "augmented": 96}),
    (("--augment", 2, "--max-train", 40), {"train": 40, "dev": 32, "augmented": 80}),
    (("--augment", 2, "--set", "p_mask=0.5"), ROWS),
])
def test_changed_inputs_rebuild(run_cli, built, teacher, tiny_glue, tmp_path, change, splits):
    out = tmp_path / "k"
    shutil.copytree(built, out)
    code, stdout, _ = run_cli(*knowledge_args(teacher, tiny_glue, out, *change))
    assert code == 0
    assert "reused" not in stdout
    rebuilt = manifest(out)
    assert rebuilt["key"] != manifest(built)["key"]
    assert rebuilt["splits"] == splits
    assert len(Knowledge(out).split("train")) == splits["train"]


def test_new_teacher_weights_rebuild(run_cli, tiny_glue, tmp_path):
    teacher = write_lively_teacher(tmp_path / "teacher", seed=5)
    out = tmp_path / "k"
    assert run_cli(*knowledge_args(teacher, tiny_glue, out))[0] == 0
    first = manifest(out)
    old_logits = np.array(Knowledge(out).split("dev").logits)

    write_lively_teacher(teacher, seed=6)  # same folder, same config, other weights
    code, stdout, _ = run_cli(*knowledge_args(teacher, tiny_glue, out))
    assert code == 0 and "reused" not in stdout
    second = manifest(out)
    assert second["teacher_hash"] != first["teacher_hash"]
    assert second["key"] != first["key"]
    texts, _ = sentences(tiny_glue, "dev")
    np.testing.assert_allclose(np.asarray(Knowledge(out).split("dev").logits, dtype=np.float32),
                               teacher_outputs(teacher, texts)[0], **TOLERANCE)
    assert not np.allclose(old_logits, Knowledge(out).split("dev").logits, **TOLERANCE)


@pytest.mark.parametrize("split", ["train", "dev"])
def test_export_tsv_has_one_row_per_example(built, tiny_glue, split):
    header, rows = read_tsv(built / f"sst2_{split}_logits.tsv")
    assert header == ["text_a", "label", "logits"]
    texts, labels = sentences(tiny_glue, split)
    assert len(rows) == ROWS[split]
    assert [row[0] for row in rows] == texts
    assert [row[1] for row in rows] == labels
    exported = np.array([[float(v) for v in row[2].split()] for row in rows])
    stored = np.asarray(Knowledge(built).split(split).logits, dtype=np.float32)
    np.testing.assert_allclose(exported, stored, **TOLERANCE)


def test_augmented_rows_are_labelled_by_the_teacher(built, teacher):
    knowledge = Knowledge(built)
    examples = knowledge.augmented_examples()
    stored = np.asarray(knowledge.split("augmented").logits, dtype=np.float32)
    assert len(examples) == ROWS["augmented"]
    assert [e.label for e in examples] == stored.argmax(-1).tolist()
    assert len({e.label for e in examples}) == 2, "one class only; the label check would prove little"
    # The stored logits are the teacher's on the augmented texts themselves.
    recomputed, _ = teacher_outputs(teacher, [e.text_a for e in examples])
    np.testing.assert_allclose(stored, recomputed, **TOLERANCE)

    header, rows = read_tsv(built / "sst2_augmented_logits.tsv")
    assert header == ["text_a", "label", "logits"]
    assert [row[0] for row in rows] == [e.text_a for e in examples]
    assert all(row[1] == "" for row in rows)  # no gold label for an augmented row


def test_augmented_rows_point_at_their_source_rows(built, tiny_glue):
    header, rows = read_tsv(built / "augmented.tsv")
    assert header == ["row", "text_a", "text_b"]
    assert [int(row[0]) for row in rows] == [i // 2 for i in range(ROWS["augmented"])]
    texts, _ = sentences(tiny_glue, "train")
    # Masking, neighbour swaps and n-gram cuts keep the length at or below the source's.
    assert all(len(row[1].split()) <= len(texts[int(row[0])].split()) for row in rows)


def test_a_folder_without_manifest_is_a_user_error(tmp_path):
    (tmp_path / "train.logits.npy").write_bytes(b"")
    with pytest.raises(UserError, match="manifest.json"):
        Knowledge(tmp_path)


def test_a_built_manifest_has_the_keys_of_format_2_in_their_order(built):
    """The manifest is written from a record now; its JSON is what it was (tests/fixtures/knowledge
    holds one written before), so older readers and the reuse key see no difference."""
    old = json.loads((Path(__file__).parent / "fixtures" / "knowledge" / "manifest.json").read_text())
    new = manifest(built)
    assert list(new) == list(old)
    assert list(new["inputs"]) == list(old["inputs"]) and list(new["inputs"]["config"]) == list(old["inputs"]["config"])
    assert list(new["probes"]) == ["dev", "train"] and list(new["probes"]["dev"]) == ["loss", "accuracy"]
