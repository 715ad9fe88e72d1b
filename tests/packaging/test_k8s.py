"""The container image and Kubernetes packaging, checked without a cluster or Docker engine."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"
INSTALL_HINT = "run `bash scripts/install_k8s_tools.sh` (CI does)"


def tool(name: str) -> str:
    """A command-line tool from .venv/bin or PATH; a missing tool fails the test, never skips it."""
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: {INSTALL_HINT}")
    return found


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def test_dockerfile_passes_hadolint() -> None:
    result = run(tool("hadolint"), str(PACKAGING / "Dockerfile"))
    assert result.returncode == 0, result.stdout + result.stderr
