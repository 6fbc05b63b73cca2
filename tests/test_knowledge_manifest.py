"""The knowledge manifest as a typed record: a manifest written before the record existed loads,
saves back to the same bytes and keeps its reuse key; a malformed field is one line naming it."""

import json
import shutil
from pathlib import Path

import pytest

from kd.knowledge import Knowledge, manifest_key
from kd.knowledge_manifest import KnowledgeManifest, ProbeScores
from nas.base.errors import UserError

# Written by `nas knowledge --augment 1` (tiny teacher) before manifests were records; only the
# teacher's folder was replaced by a fixed path.
OLD = Path(__file__).parent / "fixtures" / "knowledge" / "manifest.json"


def test_a_manifest_from_before_the_record_loads_with_its_fields():
    manifest = KnowledgeManifest.load(OLD)
    assert manifest.task == "sst2" and manifest.format_version == 2
    assert manifest.splits == {"train": 24, "dev": 8, "augmented": 24}
    assert manifest.inputs.max_length == 64 and manifest.inputs.labels == ("0", "1")
    assert manifest.inputs.variants == 1 and manifest.inputs.pooling == "mean"
    assert manifest.probes_dev.accuracy == (0.625, 0.5, 0.625) and len(manifest.probes_dev.loss) == 3
    assert manifest.teacher_dev_metrics == {"accuracy": 0.5} and manifest.bytes == 4943


def test_it_saves_back_to_the_same_bytes_and_keeps_its_reuse_key(tmp_path):
    manifest = KnowledgeManifest.load(OLD)
    manifest.save(tmp_path / "manifest.json")
    assert (tmp_path / "manifest.json").read_bytes() == OLD.read_bytes()
    # `nas knowledge` reuses a folder whose stored key matches the inputs' hash: it still does.
    assert manifest_key(manifest) == manifest.key


def test_round_trip_of_a_minimal_manifest(tmp_path):
    minimal = KnowledgeManifest(task="rte", inputs=KnowledgeManifest.load(OLD).inputs, splits={"train": 3},
                                num_layers=2, pad_id=0, probes_dev=ProbeScores((0.5, 0.25, 0.125)))
    path = minimal.save(tmp_path / "manifest.json")
    assert KnowledgeManifest.load(path) == minimal
    written = json.loads(path.read_text())
    assert "accuracy" not in written["probes"]["dev"] and "seconds" not in written  # unknown stays unwritten


def test_knowledge_reads_it_through_attributes(tmp_path):
    shutil.copy(OLD, tmp_path / "manifest.json")
    knowledge = Knowledge(tmp_path)
    assert knowledge.task == "sst2" and knowledge.max_length == 64 and knowledge.num_teacher_layers == 2
    assert knowledge.probe_dev_loss == list(knowledge.manifest.probes_dev.loss)
    with pytest.raises(UserError, match="knowledge covers 24 train rows but 25 were asked for"):
        knowledge.check_rows("train", 25)


def _broken(change) -> dict:
    data = json.loads(OLD.read_text())
    change(data)
    return data


MALFORMED = [
    (lambda d: d["inputs"].update(train_rows=-1), "inputs.train_rows"),
    (lambda d: d["inputs"]["dev_rows"].update(dev="8"), "inputs.dev_rows.dev"),
    (lambda d: d["inputs"].update(augmentation=[1]), "inputs.augmentation"),
    (lambda d: d["probes"]["train"].update(loss="low"), "probes.train.loss"),
    (lambda d: d["teacher_dev_metrics"].update(accuracy="high"), "teacher_dev_metrics.accuracy"),
    (lambda d: d.update(key=7), "key"),
    (lambda d: d.update(teacher_params=-3), "teacher_params"),
    (lambda d: d.update(seconds="soon"), "seconds"),
    (lambda d: d.pop("pad_id"), "pad_id"),
]


@pytest.mark.parametrize("change, field", MALFORMED, ids=[f for _, f in MALFORMED])
def test_a_malformed_field_is_one_line_naming_file_and_field(change, field, tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(_broken(change)))
    with pytest.raises(UserError) as raised:
        KnowledgeManifest.load(path)
    message = str(raised.value)
    assert "\n" not in message and message.startswith(f"{path}: {field}: "), message
