"""dsmount: versioned datasets as differential zip snapshots, mountable as plain files.

Layers, imports only go down (tests/unit/test_layers.py enforces it):

    errors, config, progress        shared by every layer
    storage    fsspec glue, content cache
    snapshot   chunk zips, file tables, manifests
    catalogue  SQLite index of the registry, drafts
    tree       pure DAG merge and diffs, merged-tree index
    api        workspace, fetch, drafts, the mount's read path
    fuse       thin pyfuse3 Operations
    daemon     mount lifecycle, control socket
    facade     mountfs.Dataset (api/dataset.py), the public Python API: its mount() starts a daemon
    cli        the dsmount command

This module is the public facade and re-exports the API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mountfs.errors import MountfsError

if TYPE_CHECKING:
    from mountfs.api.dataset import Dataset
    from mountfs.api.workspace import Workspace

__all__ = ["Dataset", "MountfsError", "Workspace"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Lazy, so that `import mountfs.storage` does not pull in every layer above it.
    if name == "Dataset":
        from mountfs.api.dataset import Dataset

        return Dataset
    if name == "Workspace":
        from mountfs.api.workspace import Workspace

        return Workspace
    raise AttributeError(name)
