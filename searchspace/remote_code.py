"""The student's modelling code, written into its saved folder so it loads without this package.

Hugging Face loads a custom model from the `.py` files in its folder when the config's `auto_map`
names them and the caller passes `trust_remote_code=True`. Rather than keep a second copy of
the model by hand, the files are generated at save time from this package's own modules: the
student module and every module of this package it imports, found by following its imports.
Each is copied unchanged except for those imports, which become relative ones to its flat
sibling (`ops.registry` -> `ops_registry.py`), because transformers copies a model's files into
one flat package and follows only `from .name import ...` lines. So the folder's code is the
package's code of the day it was saved, and a test checks both give the same logits.
"""

from __future__ import annotations

import ast
import importlib.util
import json
from pathlib import Path

from nas.base import atomic

ROOT_MODULE = "searchspace.student"
ENTRY = "modeling_adabert_student"  # the file `auto_map` points at
CLASSES = {"AutoConfig": "AdaBertStudentConfig", "AutoModelForSequenceClassification": "AdaBertStudentForSequenceClassification"}
OWN_PACKAGES = ("nas", "ops", "searchspace", "kd")


def flat_name(module: str) -> str:
    """`ops.registry` -> `ops_registry`: one folder holds every file, so the dots go."""
    return module.replace(".", "_")


def _source(module: str) -> str:
    """The source text of one of this package's modules."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ImportError(f"cannot find the source of {module}")
    return Path(spec.origin).read_text(encoding="utf-8")


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def _own(module: str) -> bool:
    return module.split(".")[0] in OWN_PACKAGES


def _rewrite(node: ast.stmt) -> tuple[str, list[str]]:
    """One import statement of this package's modules as relative imports; also the modules it needs."""
    if isinstance(node, ast.Import):
        # `import ops.registry` would bind the name `ops`, which no flat file can provide; our
        # modules do not use this form, and a new one that does fails here rather than at load.
        raise ValueError(f"line {node.lineno}: write `from {node.names[0].name} import ...` for a bundled module")
    module = node.module
    names = [(alias.name, alias.asname) for alias in node.names]
    submodules = [(n, a) for n, a in names if _is_module(f"{module}.{n}")]
    attributes = [(n, a) for n, a in names if (n, a) not in submodules]
    lines, needed = [], []
    if attributes:
        shown = ", ".join(n if a is None else f"{n} as {a}" for n, a in attributes)
        lines.append(f"from .{flat_name(module)} import {shown}")
        needed.append(module)
    if submodules:
        lines.append("from . import " + ", ".join(f"{flat_name(f'{module}.{n}')} as {a or n}" for n, a in submodules))
        needed += [f"{module}.{n}" for n, _ in submodules]
    return "\n".join(lines), needed


def bundle(root: str = ROOT_MODULE) -> dict[str, str]:
    """{file name: source} for `root` and every module of this package it imports, imports made relative."""
    files, pending, seen = {}, [root], set()
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        text = _source(module)
        lines = text.splitlines(keepends=True)
        # Replace from the bottom up so the line numbers of earlier imports stay right.
        imports = [n for n in ast.walk(ast.parse(text)) if isinstance(n, (ast.Import, ast.ImportFrom))
                   and getattr(n, "level", 0) == 0 and any(_own(m) for m in _imported(n))]
        for node in sorted(imports, key=lambda n: n.lineno, reverse=True):
            indent = lines[node.lineno - 1][: len(lines[node.lineno - 1]) - len(lines[node.lineno - 1].lstrip())]
            replacement, needed = _rewrite(node)
            tail = lines[node.end_lineno - 1][node.end_col_offset:]  # keeps a trailing comment
            lines[node.lineno - 1: node.end_lineno] = [indent + replacement.replace("\n", "\n" + indent) + tail]
            pending += needed
        files[flat_name(module) + ".py"] = "".join(lines)
    files[ENTRY + ".py"] = _entry(sorted(seen), files)
    return files


def _imported(node) -> list[str]:
    return [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]


def _entry(modules: list[str], files: dict[str, str]) -> str:
    """The file `auto_map` names: it re-exports the two classes and imports one name from every
    other bundled file, because transformers copies only the files such `from .x import` lines name."""
    lines = ['"""Generated from the adabert-nas package when this model was saved; edit the package, not this."""', ""]
    lines.append(f"from .{flat_name(ROOT_MODULE)} import {', '.join(CLASSES.values())}  # noqa: F401")
    for module in modules:
        if module == ROOT_MODULE:
            continue
        first = _first_definition(files[flat_name(module) + ".py"])
        lines.append(f"from .{flat_name(module)} import {first} as _{flat_name(module)}  # noqa: F401")
    return "\n".join(lines) + "\n"


def _first_definition(text: str) -> str:
    """The first class, function or variable a module defines at its top level."""
    for node in ast.parse(text).body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            return node.name
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            target = node.targets[0] if isinstance(node, ast.Assign) else node.target
            if isinstance(target, ast.Name):
                return target.id
    raise ValueError("a bundled module defines nothing at its top level")


def write_remote_code(folder) -> list[str]:
    """Write the student's code into a saved student folder and point its config's `auto_map` at it."""
    folder = Path(folder)
    files = bundle()
    for name, text in files.items():
        atomic.write_text(folder / name, text)
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["auto_map"] = {auto: f"{ENTRY}.{cls}" for auto, cls in CLASSES.items()}
    atomic.write_text(config_path, json.dumps(config, indent=2, sort_keys=True) + "\n")
    return sorted(files)
