"""The import graph points down (issue 12): each layer imports only itself and the layers below.

The layers, lowest first. `nas/__init__.py` and `nas/__main__.py` are the facade above them all:
`import nas` registers the student with transformers' Auto classes and `python -m nas` runs the
command line, so they may import anything and nothing may import them. Imports inside functions
count too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("nas.base", "ops", "searchspace", "nas.data", "nas.compute", "kd", "nas.deploy", "nas.train",
          "nas.run", "nas.sweep", "nas.commands")
FACADE = "nas"


def layer_of(module: str) -> str | None:
    """The layer a dotted module name belongs to, FACADE for `nas` itself, None for outside modules."""
    parts = module.split(".")
    if parts[0] == "nas":
        return f"nas.{parts[1]}" if len(parts) > 1 and f"nas.{parts[1]}" in LAYERS else FACADE
    return parts[0] if parts[0] in LAYERS else None


def module_name(path: Path) -> str:
    name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    return name.removesuffix(".__init__")


def imported(path: Path) -> list[str]:
    """Every module a file imports, anywhere in it (`from a import b` counts as `a.b`: b may be a module)."""
    module = module_name(path)
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".")[: -node.level] if not path.name == "__init__.py" else module.split(".")[: len(module.split(".")) - node.level + 1]
                base = ".".join(package + ([node.module] if node.module else []))
            names += [f"{base}.{alias.name}" for alias in node.names]
    return names


def package_edges() -> dict[tuple[str, str], list[str]]:
    """{(importing layer, imported layer): ["file -> module", ...]} between different layers."""
    edges: dict[tuple[str, str], list[str]] = {}
    for package in ("nas", "ops", "searchspace", "kd"):
        for path in sorted((ROOT / package).rglob("*.py")):
            source = layer_of(module_name(path))
            for name in imported(path):
                target = layer_of(name)
                if target is not None and target != source:
                    edges.setdefault((source, target), []).append(f"{path.relative_to(ROOT)} -> {name}")
    return edges


def test_every_import_points_down():
    upward = [f"{a} -> {b}: {where[0]}" for (a, b), where in package_edges().items()
              if b == FACADE or (a != FACADE and LAYERS.index(b) > LAYERS.index(a))]
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)


def test_no_two_packages_import_each_other():
    edges = package_edges()
    mutual = sorted({tuple(sorted(pair)) for pair in edges if pair[::-1] in edges})
    assert not mutual, mutual


@pytest.mark.parametrize("layer", [layer for layer in LAYERS if layer.startswith("nas.")])
def test_every_nas_layer_is_a_folder(layer):
    assert (ROOT / layer.replace(".", "/") / "__init__.py").is_file()


def test_nas_has_no_loose_modules():
    """Everything under nas/ belongs to a layer, so the folder tree shows the architecture."""
    loose = {p.name for p in (ROOT / "nas").glob("*.py")} - {"__init__.py", "__main__.py"}
    assert not loose, loose


if __name__ == "__main__":  # python tests/test_layering.py: print the graph
    for (a, b), where in sorted(package_edges().items()):
        print(f"{a} -> {b} ({len(where)})")
