"""A saved student folder carries its own code: it loads with `trust_remote_code=True` where this
package cannot be imported, and gives the logits of the package's own model."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from dataclasses import replace

from searchspace.embedding_variants import EMBEDDINGS
from searchspace.genotype import KNOWN_OPS, Edge
from searchspace.random_arch import random_genotypes
from searchspace.remote_code import ENTRY, write_remote_code
from searchspace.student import AdaBertStudentForSequenceClassification, compile_genotype

TEXTS = [["the film was good", "a movie"], ["bad", "the plot was very dull and boring but fun"]]


def save_student(folder, genotype, pair: bool, tokenizer_dir, seed: int = 0):
    torch.manual_seed(seed)
    model = compile_genotype(genotype, vocab_size=40, max_positions=64, num_labels=3, pair=pair,
                             id2label={0: "neg", 1: "mid", 2: "pos"}, teacher_width=24).eval()
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(folder)
    write_remote_code(folder)
    return model


def logits_of(model, tokenizer, pair: bool):
    inputs = tokenizer(*(TEXTS if pair else TEXTS[:1]), return_tensors="pt", padding=True)
    with torch.no_grad():
        return model(**inputs).logits


def logits_of_text(model, tokenizer, texts):
    with torch.no_grad():
        return model(**tokenizer(texts, return_tensors="pt")).logits


@pytest.fixture(scope="module")
def students(tiny_teacher, tmp_path_factory):
    """[(folder, pair, in-package logits)] for random genotypes, single sentences and pairs, and
    every word-vector variant (the first without the field, as arch.json files before it)."""
    root = tmp_path_factory.mktemp("remote_students")
    tokenizer = AutoTokenizer.from_pretrained(tiny_teacher)
    variants = [None, *list(EMBEDDINGS)[1:]]
    out = []
    for i, genotype in enumerate(random_genotypes(13, len(variants), hidden_size=16, max_depth=3, max_cells=3)):
        pair = i % 2 == 1
        genotype = replace(genotype, embeddings=variants[i])
        if i == 1:  # one student with the op no default search offers, built from the folder's code too
            genotype = replace(genotype, ops=KNOWN_OPS, cell=((Edge("bigru", 0), genotype.cell[0][1]), *genotype.cell[1:]))
        model = save_student(root / f"student{i}", genotype, pair, tiny_teacher, seed=i)
        out.append((root / f"student{i}", pair, logits_of(model, tokenizer, pair)))
    return out


def test_the_folder_names_its_code_in_auto_map(students):
    folder = students[0][0]
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"]["AutoModelForSequenceClassification"] == f"{ENTRY}.AdaBertStudentForSequenceClassification"
    # No file of the bundle imports this package by its absolute name.
    for file in folder.glob("*.py"):
        text = file.read_text()
        for package in ("nas", "ops", "searchspace", "kd"):
            assert f"from {package}." not in text and f"from {package} import" not in text, file.name
            assert f"import {package}\n" not in text, file.name


def test_remote_code_gives_the_package_models_logits(students, monkeypatch, tmp_path):
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "modules"))
    for folder, pair, expected in students:
        # In this process the package's registration wins over `auto_map` (transformers prefers
        # explicitly registered classes), so the folder's own class is loaded the way the Auto
        # class would load it elsewhere; the isolated test below goes through the Auto class.
        remote = get_class_from_dynamic_module(f"{ENTRY}.AdaBertStudentForSequenceClassification", str(folder))
        assert remote is not AdaBertStudentForSequenceClassification
        assert remote.__module__.startswith("transformers_modules")
        model = remote.from_pretrained(folder).eval()
        torch.testing.assert_close(logits_of(model, AutoTokenizer.from_pretrained(folder), pair), expected,
                                   rtol=0, atol=1e-6)
    # Importing the folder's code did not replace the package's registration.
    loaded = AutoModelForSequenceClassification.from_pretrained(students[0][0], trust_remote_code=True)
    assert type(loaded) is AdaBertStudentForSequenceClassification


ISOLATED = textwrap.dedent("""
    import json, sys
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    for package in ("nas", "searchspace", "ops"):
        try:
            __import__(package)
        except ImportError:
            pass
        else:
            raise SystemExit(f"{package} is importable: the test is not isolated")
    texts = json.loads(sys.argv[1])
    for folder, pair, expected in json.loads(sys.argv[2]):
        model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
        # Without the flag (transformers asks about the config's code, gets no answer, and still
        # loads the standard tokenizer) as with it.
        tokenizer = AutoTokenizer.from_pretrained(folder)
        assert type(tokenizer) is type(AutoTokenizer.from_pretrained(folder, trust_remote_code=True))
        inputs = tokenizer(*(texts if pair else texts[:1]), return_tensors="pt", padding=True)
        with torch.no_grad():
            logits = model(**inputs).logits
        diff = (logits - torch.tensor(expected)).abs().max().item()
        assert diff < 1e-5, (folder, diff)
        print(folder, diff)
    # A folder made by `nas finetune`, copied elsewhere: the model card's own snippets run as written.
    card_folder = sys.argv[3]
    if card_folder:
        expected = torch.tensor(json.loads(sys.argv[4]))
        for snippet in json.loads(sys.argv[5]):
            scope = {}
            exec(snippet.replace("THIS_FOLDER", card_folder), scope)
            if "session" in scope:  # the ONNX Runtime snippet computes logits itself
                logits = torch.from_numpy(scope["logits"])
            else:
                with torch.no_grad():
                    logits = scope["model"].eval()(**scope["tokenizer"](["a gripping film"], return_tensors="pt")).logits
            diff = (logits - expected).abs().max().item()
            assert diff < 1e-4, (snippet, diff)
            print("card snippet", diff)
    print("ok")
""")


def card_snippets(folder) -> list[str]:
    """The model card's Python blocks that load the model without this package."""
    blocks = re.findall(r"```python\n(.*?)```", (folder / "README.md").read_text(), flags=re.S)
    return [block for block in blocks if "import nas" not in block]


@pytest.mark.slow
def test_the_folder_loads_where_the_package_is_not_importable(students, finetuned, tmp_path):
    # -S skips site: no .pth file runs, so the editable install of this package is not on the
    # path; only the folder holding torch and transformers is given back. The cwd is elsewhere.
    site_packages = sysconfig.get_paths()["purelib"]
    chosen = [(str(folder), pair, expected.tolist()) for folder, pair, expected in students]  # every variant
    shipped = tmp_path / "shipped"
    shutil.copytree(finetuned["mrpc"], shipped)
    model = AutoModelForSequenceClassification.from_pretrained(shipped).eval()
    expected = logits_of_text(model, AutoTokenizer.from_pretrained(shipped), ["a gripping film"])
    snippets = card_snippets(shipped)
    assert len(snippets) == (2 if (shipped / "model.onnx").is_file() else 1)
    env = {"PYTHONPATH": site_packages, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1",
           "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-S", "-c", ISOLATED, json.dumps(TEXTS), json.dumps(chosen), str(shipped),
                             json.dumps(expected.tolist()), json.dumps(snippets)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("ok")
    assert result.stdout.count("card snippet") == len(snippets)


def test_bundling_follows_imports_so_a_new_module_cannot_be_forgotten():
    from searchspace.remote_code import bundle

    files = bundle()
    # Every module the student's forward needs, found from searchspace.student alone.
    for name in ("searchspace_cell.py", "searchspace_embeddings.py", "searchspace_embedding_variants.py",
                 "searchspace_projected_embeddings.py", "searchspace_genotype.py", "ops.py",
                 "ops_registry.py", "ops_conv.py", "ops_pool.py", "ops_trivial.py", "ops_recurrent.py", "ops_masking.py"):
        assert name in files
    assert "searchspace_supernet.py" not in files  # nothing of the search comes along


@pytest.mark.slow
@pytest.mark.parametrize("statement", [
    # `import nas` alone makes the Auto classes know the student.
    "import nas; from transformers import AutoConfig, AutoModelForSequenceClassification as M; "
    "c = AutoConfig.for_model('adabert_student'); assert type(c).__module__ == 'searchspace.student'; "
    "assert M._model_mapping[type(c)].__name__ == 'AdaBertStudentForSequenceClassification'",
    # Modules that import nas.* while they load still import first (no half-built module is read).
    "import searchspace.genotype",
    "import ops; import nas",
])
def test_import_nas_registers_the_student_and_leaves_no_import_cycle(statement):
    result = subprocess.run([sys.executable, "-c", statement], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_nas_command_does_not_import_transformers_models_for_validate():
    """`nas validate` stays quick: the command registers the student only where a model is loaded,
    so transformers' model code (seconds to import) is not imported to check an arch.json."""
    arch = sorted((Path(__file__).parent / "fixtures" / "arch" / "valid").glob("*.json"))[0]
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "nas", "validate", str(arch)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "nas.commands.cli" in imported  # the measurement itself works
    assert "transformers.modeling_utils" not in imported and "searchspace.student" not in imported
