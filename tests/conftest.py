"""Fixtures for the CLI tests: the real ``dsmount`` executable in a subprocess, and the library
opened on the same home, so a test acts as a user would and checks through the API.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from mountfs import Workspace
from tests.emulators import emulators  # noqa: F401  (a session fixture for every test folder)

DSMOUNT = Path(sys.executable).with_name("dsmount")
"""The console script installed next to the interpreter running the tests."""

_ENV_VARS = ("DSMOUNT_HOME", "DSMOUNT_STORE", "DSMOUNT_CACHE_DIR", "DSMOUNT_CACHE_SIZE", "DSMOUNT_COMMAND")


class Run(NamedTuple):
    rc: int
    out: str
    err: str


class Dsm:
    """Runs ``dsmount`` with DSMOUNT_HOME=<home> and no progress bars; unpacks as (rc, stdout, stderr)."""

    def __init__(self, home: Path, cwd: Path) -> None:
        self.home = home
        self.cwd = cwd
        base = {k: v for k, v in os.environ.items() if k not in _ENV_VARS}
        self.env = {**base, "DSMOUNT_HOME": str(home), "DSMOUNT_NO_PROGRESS": "1"}

    def __call__(self, *args: object, rc: int | None = 0, env: Mapping[str, str] | None = None) -> Run:
        """Run one command; unless ``rc`` is None, assert its exit code (0 by default)."""
        proc = subprocess.run(
            [str(DSMOUNT), *(str(a) for a in args)],
            cwd=self.cwd,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        result = Run(proc.returncode, proc.stdout, proc.stderr)
        if rc is not None:
            assert result.rc == rc, f"dsmount {' '.join(map(str, args))} -> {result.rc}\n{result.err}"
        return result

    def json(self, *args: object) -> Any:
        """Run a command with --json (added here) and parse its stdout."""
        return json.loads(self(*args, "--json").out)

    def new_id(self, *create_args: object) -> str:
        """``dsmount create ... --json`` and the new version's id."""
        return str(self.json("create", *create_args)["id"])


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def dsm(tmp_path: Path, home: Path) -> Dsm:
    return Dsm(home, tmp_path)


@pytest.fixture
def workspace(home: Path) -> Iterator[Workspace]:
    """The library on the same home and store as ``dsm``; call refresh() after the CLI changed things."""
    ws = Workspace(str(home / "store"), home=home)
    try:
        yield ws
    finally:
        ws.close()


MakeTree = Callable[..., Path]


def write_tree(root: Path, files: Mapping[str, bytes | str]) -> Path:
    """Create ``files`` (relative path -> content) below ``root``, and return ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content.encode() if isinstance(content, str) else content)
    return root


@pytest.fixture
def make_tree(tmp_path: Path) -> MakeTree:
    """``make_tree({"a/b.txt": "text", ...}, name="src")``: a data folder below tmp_path."""
    counter = iter(range(1_000_000))

    def make(files: Mapping[str, bytes | str], name: str | None = None) -> Path:
        return write_tree(tmp_path / (name or f"data{next(counter)}"), files)

    return make
