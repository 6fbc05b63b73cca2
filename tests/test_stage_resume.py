"""`nas run`'s teacher and finetune stages continue from their last finished epoch after a stop,
and end where an uninterrupted run ends (the finetune stage inside `nas run`: test_run_augmented.py)."""

import pytest
import torch
from safetensors.torch import load_file

from nas.data.glue_io import load_task_data
from nas.data.tasks import get_task
from nas.train.stage_checkpoint import EpochCheckpoint
import nas.train.stage_checkpoint
from nas.train.teacher import TeacherConfig, train_teacher
import nas.train.teacher


class Stop(KeyboardInterrupt):
    pass


def stop_once_after_epoch(monkeypatch, name: str, epoch: int):
    """Ctrl-C right after the checkpoint of `epoch` epochs of the stage whose checkpoint file is `name`."""
    real = EpochCheckpoint.save
    fired = []

    def save(self, state):
        real(self, state)
        if self.path.name == name and state.epoch == epoch and not fired:
            fired.append(True)
            raise Stop

    monkeypatch.setattr(nas.train.stage_checkpoint.EpochCheckpoint, "save", save)
    return fired


def test_a_stopped_teacher_resumes_to_the_uninterrupted_weights(tiny_glue, tiny_teacher, tmp_path, monkeypatch):
    data = load_task_data(get_task("sst2"), tiny_glue, 48, 16)
    config = TeacherConfig(model=str(tiny_teacher), epochs=3, batch_size=8, lr=1e-3)
    (tmp_path / "whole").mkdir()
    whole = train_teacher(data, config, tmp_path / "whole", "cpu")

    checkpoint = tmp_path / "teacher.pt"
    fired = stop_once_after_epoch(monkeypatch, "teacher.pt", 1)
    (tmp_path / "stopped").mkdir()
    with pytest.raises(Stop):
        train_teacher(data, config, tmp_path / "stopped", "cpu", checkpoint=checkpoint)
    assert fired and checkpoint.is_file()
    (tmp_path / "resumed").mkdir()  # a new output folder, as `nas run` gives a stage it starts again
    starts = []
    real = nas.train.teacher.train_loop
    monkeypatch.setattr(nas.train.teacher, "train_loop", lambda **kw: (starts.append(kw["state"].epoch), real(**kw))[1])
    resumed = train_teacher(data, config, tmp_path / "resumed", "cpu", checkpoint=checkpoint)
    assert starts == [1]  # it continued; a restart from scratch would end the same, so this is what tells
    assert resumed.history == whole.history and resumed.best_epoch == whole.best_epoch
    a, b = load_file(str(tmp_path / "whole" / "model.safetensors")), load_file(str(tmp_path / "resumed" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_checkpoint_of_other_settings_is_ignored(tiny_glue, tiny_teacher, tmp_path, monkeypatch):
    data = load_task_data(get_task("sst2"), tiny_glue, 48, 16)
    checkpoint = tmp_path / "teacher.pt"
    stop_once_after_epoch(monkeypatch, "teacher.pt", 1)
    (tmp_path / "a").mkdir()
    with pytest.raises(Stop):
        train_teacher(data, TeacherConfig(model=str(tiny_teacher), epochs=2, batch_size=8), tmp_path / "a", "cpu",
                      checkpoint=checkpoint)
    (tmp_path / "b").mkdir()
    other = train_teacher(data, TeacherConfig(model=str(tiny_teacher), epochs=2, batch_size=8, lr=1e-3),
                          tmp_path / "b", "cpu", checkpoint=checkpoint)
    assert len(other.history) == 2
