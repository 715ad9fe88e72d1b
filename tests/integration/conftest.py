"""Fixtures shared by the API integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mountfs.api.workspace import Workspace
from tests.integration.api_fixtures import open_ws


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    """A workspace with its own home and store under tmp_path, closed after the test."""
    w = open_ws(tmp_path)
    yield w
    w.close()
