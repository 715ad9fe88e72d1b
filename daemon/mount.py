"""Mounting a closed version from Python or the CLI, and the handle that comes back.

``Mount`` is what ``Dataset.mount()`` returns: a context manager that unmounts on
exit, with ``status()``, ``stats()`` and ``prefetch()`` over the control socket.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mountfs.daemon import launch
from mountfs.daemon.server import MountConfig

from mountfs.api.workspace import Workspace
from mountfs.errors import NotClosedError
from mountfs.snapshot.manifest import CLOSED, PUBLISHED


@dataclass
class Mount:
    """A running mount daemon serving ``path``."""

    path: str
    version: str
    home: Path
    pid: int
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def status(self) -> dict[str, Any]:
        return launch.status(self.home, self.path)[0]

    def stats(self) -> dict[str, Any]:
        return launch.ask(self.home, self.path, "stats")

    def prefetch(self, paths: Sequence[str] = ()) -> None:
        """Warm the cache with these paths (all files when empty), in the background."""
        launch.ask(self.home, self.path, "prefetch", paths=list(paths))

    def unmount(self) -> None:
        launch.unmount(self.home, self.path)
        if self.process is not None:
            self.process.wait(timeout=launch.STOP_TIMEOUT)  # reap our child: no zombie left

    def __enter__(self) -> Mount:
        return self

    def __exit__(self, *exc: object) -> None:
        self.unmount()

    def __fspath__(self) -> str:
        return self.path


def config_for(
    ws: Workspace,
    version_id: str,
    path: str | os.PathLike[str],
    *,
    label: str = "",
    allow_other: bool = False,
    uid: int | None = None,
    gid: int | None = None,
    prefetch: bool = False,
    prefetch_paths: Sequence[str] = (),
    allow_nonempty: bool = False,
    debug: bool = False,
) -> MountConfig:
    """Check the version and the mount point, build the merged-tree index, and describe the mount."""
    m = ws.manifest(version_id)
    if m.state not in (CLOSED, PUBLISHED):
        raise NotClosedError(f"version {version_id} is a draft: close it before mounting it")
    mp = launch.prepare(os.fspath(path), ws.settings.home, allow_nonempty=allow_nonempty)
    ws.tree(version_id)  # built here, with errors on this terminal, not in the daemon's log
    return MountConfig(
        mountpoint=mp,
        version=version_id,
        store=ws.store.url,
        home=str(ws.settings.home),
        cache_size=ws.settings.cache_size,
        label=label or f"{m.project}/{m.name}@{m.version}",
        allow_other=allow_other,
        uid=uid,
        gid=gid,
        prefetch=prefetch,
        prefetch_paths=list(prefetch_paths),
        allow_nonempty=allow_nonempty,
        debug=debug,
    )


def mount(ws: Workspace, version_id: str, path: str | os.PathLike[str], **options: Any) -> Mount:
    """Start a detached daemon; returns once the mount answers (MountError otherwise)."""
    timeout = float(options.pop("timeout", launch.START_TIMEOUT))
    config = config_for(ws, version_id, path, **options)
    proc = launch.start(config, timeout=timeout)
    return Mount(config.mountpoint, version_id, ws.settings.home, proc.pid, proc)


def run_foreground(config: MountConfig) -> int:
    """Serve the mount in this process until SIGTERM, SIGINT or ``dsmount unmount``."""
    from mountfs.daemon import server
    from mountfs.daemon.main import configure_logging

    configure_logging(config.debug)
    return server.run(config, None)
