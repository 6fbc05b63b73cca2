"""metrics.json as typed records: files written before the records existed (nas teacher, nas
finetune, nas distill) load, save back to the same bytes, and a malformed field is one line
naming the file and the field."""

import json
from pathlib import Path

import pytest

from nas.base.errors import UserError
from nas.data.model_metrics import Measured, StudentMetrics, TeacherMetrics

# Written by the code before the records (a tiny teacher, a hand-written cell, a BiLSTM distilled);
# only the temporary folders in them were replaced by /runs.
FIXTURES = Path(__file__).parent / "fixtures" / "metrics"
FILES = [(TeacherMetrics, "teacher_metrics.json"), (StudentMetrics, "student_metrics.json"),
         (StudentMetrics, "distilled_metrics.json")]


@pytest.mark.parametrize("record, name", FILES, ids=[name for _, name in FILES])
def test_an_old_file_loads_and_saves_back_to_the_same_bytes(record, name, tmp_path):
    loaded = record.load(FIXTURES / name)
    path = loaded.save(tmp_path / "metrics.json")
    assert path.read_bytes() == (FIXTURES / name).read_bytes()
    assert record.load(path) == loaded


def test_the_fields_read_between_stages():
    teacher = TeacherMetrics.load(FIXTURES / "teacher_metrics.json")
    assert teacher.task == "sst2" and teacher.metrics == {"accuracy": 0.5} and teacher.max_length == 64
    student = StudentMetrics.load(FIXTURES / "student_metrics.json")
    assert student.student.params == 10824 and student.teacher.flops == 2099328
    assert student.student.ms(32) == 21.068 and student.student.latency_ms == {1: 11.87, 32: 21.068, 256: 30.691}
    assert student.speedup_at(1) == 1.12 and student.compression == 2.16 and student.onnx["file"] == "model.onnx"
    assert student.extra == {}
    distilled = StudentMetrics.load(FIXTURES / "distilled_metrics.json")
    assert distilled.extra["method"] == "vanilla" and distilled.genotype is None and distilled.onnx is None


def test_round_trip_of_records_made_in_code(tmp_path):
    student = StudentMetrics(task="rte", metrics={"accuracy": 0.75}, student=Measured(10, 8, 100, {1: 0.5}),
                             teacher=Measured(40, 30, 900, {1: 2.0}), speedup={"batch_1_speedup": 4.0},
                             extra={"method": "pkd-skip"})
    assert StudentMetrics.load(student.save(tmp_path / "s.json")) == student
    teacher = TeacherMetrics(task="rte", metrics={"accuracy": 0.5}, max_length=128)
    assert TeacherMetrics.load(teacher.save(tmp_path / "t.json")) == teacher
    assert json.loads((tmp_path / "t.json").read_text()) == {"task": "rte", "metrics": {"accuracy": 0.5}, "max_length": 128}


def _spoilt(name: str, change) -> dict:
    data = json.loads((FIXTURES / name).read_text())
    change(data)
    return data


MALFORMED = [
    ("student_metrics.json", lambda d: d["student"].update(params="many"), "student.params"),
    ("student_metrics.json", lambda d: d["teacher"].update(batch_32_ms=None), "teacher.batch_32_ms"),
    ("student_metrics.json", lambda d: d["metrics"].update(accuracy="0.6"), "metrics.accuracy"),
    ("student_metrics.json", lambda d: d.pop("teacher"), "teacher"),
    ("student_metrics.json", lambda d: d.update(speedup=[1.0]), "speedup"),
    ("student_metrics.json", lambda d: d.update(latency_threads=-1), "latency_threads"),
    ("teacher_metrics.json", lambda d: d.update(max_length="64"), "max_length"),
    ("teacher_metrics.json", lambda d: d["dev_rows"].update(dev=-8), "dev_rows.dev"),
    ("teacher_metrics.json", lambda d: d.update(history={}), "history"),
]


@pytest.mark.parametrize("name, change, field", MALFORMED, ids=[f"{n.split('_')[0]}-{f}" for n, _, f in MALFORMED])
def test_a_malformed_field_is_one_line_naming_file_and_field(name, change, field, tmp_path):
    record = TeacherMetrics if name.startswith("teacher") else StudentMetrics
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(_spoilt(name, change)))
    with pytest.raises(UserError) as raised:
        record.load(path)
    message = str(raised.value)
    assert "\n" not in message and message.startswith(f"{path}: {field}: "), message
