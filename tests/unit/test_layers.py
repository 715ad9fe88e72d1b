"""Imports only go down the layers: a module may import its own layer and those below it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED = {"errors", "config", "progress"}
LAYERS = ["storage", "snapshot", "catalogue", "tree", "api", "fuse", "daemon", "facade", "ui", "cli"]
FOLDERS = {"mountfs": None, "daemon": "daemon", "cli": "cli"}
FACADE = "mountfs.api.dataset"
"""mountfs.Dataset sits above the daemon (its mount() starts one) and below the web UI and the CLI."""


def _layer_of_module(module: str) -> int | None:
    parts = module.split(".")
    if module == FACADE:
        return LAYERS.index("facade")
    if parts[0] != "mountfs" or len(parts) < 2:
        return None
    if parts[1] in SHARED:
        return -1
    return LAYERS.index(parts[1]) if parts[1] in LAYERS else None


def _sources() -> list[tuple[Path, int]]:
    out = []
    for path in sorted((ROOT / "mountfs").rglob("*.py")):
        rel = path.relative_to(ROOT / "mountfs").parts
        if len(rel) == 1:
            layer = -1 if path.stem in SHARED else None
            if path.stem == "__init__":
                continue  # the facade re-exports the API lazily
        elif rel == ("api", "dataset.py"):
            layer = LAYERS.index("facade")
        else:
            layer = LAYERS.index(rel[0])
        if layer is not None:
            out.append((path, layer))
    for folder in ("daemon", "cli"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            out.append((path, LAYERS.index(folder)))
    return out


@pytest.mark.parametrize(("path", "layer"), _sources(), ids=lambda v: str(v) if isinstance(v, Path) else None)
def test_imports_only_go_down(path: Path, layer: int) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            target = _layer_of_module(name)
            if target is None:
                continue
            assert target <= layer, (
                f"{path.relative_to(ROOT)} (layer {LAYERS[layer] if layer >= 0 else 'shared'}) imports {name}"
            )


def test_every_layer_folder_is_known() -> None:
    found = {p.name for p in (ROOT / "mountfs").iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert found <= set(LAYERS), found - set(LAYERS)


def test_shared_modules_import_no_layer() -> None:
    for stem in SHARED:
        tree = ast.parse((ROOT / "mountfs" / f"{stem}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                target = _layer_of_module(node.module)
                assert target is None or target == -1, f"{stem}.py imports {node.module}"
