"""`nas run` hands each stage its settings in memory: a preset, the user's file, flags and --set,
resolved as the stage's own command would, with no settings files written to feed the stages."""

import shutil
from pathlib import Path

import pytest

import nas.run.pipeline as pipeline
from kd.knowledge import KnowledgeConfig
from nas.base.commands import COMMAND_NAMES, CONFIG_SECTIONS, RUN_STAGES, SECTION
from nas.train.search import SearchConfig
from nas.train.student_training import FinetuneConfig
from nas.train.teacher import TeacherConfig

ARCH = Path(__file__).parent / "fixtures" / "arch" / "valid" / "minimal.json"


class Stop(Exception):
    pass


@pytest.fixture
def stages(monkeypatch):
    """The pipeline's stage functions replaced by ones that record the settings they are handed;
    finetune stops the run (nothing after it reads settings)."""
    seen = {}

    def teacher(data, config, out, device, checkpoint=None):
        seen["teacher"] = config
        (Path(out) / "metrics.json").write_text("{}")

    def knowledge(teacher_dir, data, config, out, device):
        seen["knowledge"] = config

    def search(data, teacher_dir, knowledge, config, out, device, resume=False):
        seen["search"] = config
        Path(out).mkdir(parents=True, exist_ok=True)
        shutil.copy(ARCH, Path(out) / "arch.json")

    def finetune(arch, data, teacher_dir, knowledge, config, out, device, checkpoint=None):
        seen["finetune"] = config
        raise Stop

    monkeypatch.setattr(pipeline, "train_teacher", teacher)
    monkeypatch.setattr(pipeline, "build_knowledge", knowledge)
    monkeypatch.setattr(pipeline, "Knowledge", lambda folder: None)
    monkeypatch.setattr(pipeline, "run_search", search)
    monkeypatch.setattr(pipeline, "run_finetune", finetune)
    return seen


def run(tiny_glue, out, *extra):
    from nas.commands.cli import build_parser
    from nas.data.tasks import get_task

    args = build_parser(describe_settings=False).parse_args(
        ["run", "--task", "sst2", "--data-dir", str(tiny_glue), "--out", str(out), *map(str, extra)])
    with pytest.raises(Stop):
        pipeline.run_pipeline(get_task("sst2"), args, "cpu", log=lambda *a: None)


def test_each_stage_gets_the_settings_its_own_command_would_resolve(stages, tiny_glue, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("run:\n  max_train: 40\nsearch:\n  epochs: 3\n  max_cells: 2\nfinetune:\n  lr: 0.002\n"
                      "distill:\n  method: vanilla\n")  # another command's section is left alone
    run(tiny_glue, tmp_path / "r", "--preset", "demo", "--config", config, "--seed", 7,
        "--set", "search.epochs=5", "--set", "knowledge.pooling=cls", "--set", "model=minilm")
    # By hand from the files: the preset (demo.yaml), the user's file over it, then --seed and --set.
    assert stages["teacher"] == TeacherConfig(epochs=2, model="minilm", seed=7)
    assert stages["knowledge"] == KnowledgeConfig(augment=0, pooling="cls", seed=7)
    assert stages["search"] == SearchConfig(epochs=5, warmup_epochs=1, max_cells=2, batch_size=64, seed=7)
    assert stages["finetune"] == FinetuneConfig(epochs=4, lr=0.002, seed=7)
    # Nothing was written to hand them over: no settings files in the run folder.
    assert not (tmp_path / "r" / ".settings").exists()
    assert not list((tmp_path / "r").rglob("*.yaml"))


def test_the_speedup5_preset_hands_the_stages_the_recipe_of_the_5x_student(stages, tiny_glue, tmp_path):
    run(tiny_glue, tmp_path / "r", "--preset", "speedup5", "--set", "search.latency_speedup=20")
    assert stages["knowledge"] == KnowledgeConfig(augment_preset="adabert", augment=5)
    assert stages["search"] == SearchConfig(
        epochs=3, latency_speedup=20, latency_batch_size=32, latency_seq_len=0, widths=(64, 96, 128), train_rows=8000,
        selection="perturbation",
        perturbation_rows=128, depth_choice="trial", trial_init="search", trial_depths="halving", trial_choice="budget")
    assert stages["search"].embeddings == "auto"  # resolved by the search for the task
    assert stages["finetune"] == FinetuneConfig(epochs=2)


def test_a_bad_value_names_the_users_file_not_a_copy(stages, tiny_glue, tmp_path):
    from nas.base.errors import UserError

    config = tmp_path / "run.yaml"
    config.write_text("search:\n  epochs: many\n")
    with pytest.raises(UserError) as caught:
        run(tiny_glue, tmp_path / "r", "--config", config)
    assert str(caught.value).startswith(f"{config}: setting 'epochs': expected an integer")
    config.write_text("finetune: 3\n")
    with pytest.raises(UserError, match=f"{config}: finetune: expected a mapping of settings"):
        run(tiny_glue, tmp_path / "r", "--config", config)


def test_one_list_of_command_names_serves_every_reader():
    from nas.commands.cli import COMMANDS, build_parser

    build_parser(describe_settings=False)
    assert tuple(COMMANDS) == COMMAND_NAMES  # every command is registered under a listed name, in the listed order
    assert set(RUN_STAGES) <= set(COMMAND_NAMES) and set(RUN_STAGES) | {"run"} <= CONFIG_SECTIONS
    # A command with a settings class is exactly a command with a settings section.
    assert {name for name, entry in COMMANDS.items() if entry[3]} == set(SECTION)


def test_a_command_outside_the_list_cannot_be_registered():
    from nas.commands.cli import command

    with pytest.raises(ValueError, match="not in nas.base.commands"):
        command("serach", "typo", lambda parser: None)
