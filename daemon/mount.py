"""Mounting a closed version from Python or the CLI, and the handle that comes back.

``Mount`` is what ``Dataset.mount()`` returns: a context manager that unmounts on
exit, with ``status()``, ``stats()`` and ``prefetch()`` over the control socket.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mountfs.daemon import commit as commits
from mountfs.daemon import launch, state
from mountfs.daemon.server import MountConfig, lock_overlay

from mountfs.api.workspace import Workspace
from mountfs.errors import IntegrityError, MountError, NotClosedError, UsageError
from mountfs.snapshot.manifest import CLOSED, PUBLISHED
from mountfs.tree.index import TreeIndex


@dataclass
class Mount:
    """A running mount daemon serving ``path``."""

    path: str
    version: str
    home: Path
    pid: int
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    notice: str = ""
    """Why a writable mount serves another version than asked (it carries on at its last commit)."""

    def status(self) -> dict[str, Any]:
        return launch.status(self.home, self.path)[0]

    def stats(self) -> dict[str, Any]:
        return launch.ask(self.home, self.path, "stats")

    def prefetch(self, paths: Sequence[str] = ()) -> None:
        """Warm the cache with these paths (all files when empty), in the background."""
        launch.ask(self.home, self.path, "prefetch", paths=list(paths))

    def diff(self) -> list[dict[str, Any]]:
        """A writable mount's pending changes (``dsmount diff``): dicts with status, path, kind, ..."""
        changes: list[dict[str, Any]] = launch.ask(self.home, self.path, "diff")["changes"]
        return changes

    def commit(
        self,
        *,
        name: str | None = None,
        version: str | None = None,
        tags: Sequence[str] | None = None,
        description: str | None = None,
        close: bool = True,
    ) -> dict[str, Any]:
        """``dsmount commit``: the overlay's changes become a child version and the mount serves it.

        Returns what the daemon answered: ``committed`` (False when there was nothing to
        commit), ``id`` and ``version`` of the child, ``parent``, ``changes``, ``files``, ..."""
        answer = commit(
            self.home, self.path, name=name, version=version, tags=tags, description=description, close=close
        )
        if answer.get("committed") and answer.get("closed"):
            self.version = str(answer["id"])
        return answer

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


def commit(
    home: Path,
    path: str | os.PathLike[str],
    *,
    name: str | None = None,
    version: str | None = None,
    tags: Sequence[str] | None = None,
    description: str | None = None,
    close: bool = True,
) -> dict[str, Any]:
    """Ask the daemon serving ``path`` to commit (as long as it takes: an upload may be large)."""
    mp = os.fspath(path)
    try:
        return launch.ask(
            home,
            mp,
            "commit",
            timeout=None,
            name=name,
            version=version,
            tags=None if tags is None else list(tags),
            description=description,
            close=close,
        )
    except MountError as exc:
        if "answer" not in str(exc):
            raise
        raise MountError(
            f"the daemon of {mp} stopped during the commit ({exc}): mount it again with --writable, "
            "which finishes or undoes the commit"
        ) from None


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
    mount_path: str | os.PathLike[str] | None = None,
    writable: bool = False,
    overlay: str | os.PathLike[str] | None = None,
) -> MountConfig:
    """Check the version and the mount point, build the merged-tree index, and describe the mount.

    ``path`` may be ``/dev/fd/N``: a /dev/fuse descriptor that a privileged helper opened
    and mounted (mount(2) with ``fd=N``) at ``mount_path``, which names the mount for
    status and unmount.

    ``writable`` adds an overlay (``overlay``, default ``overlay/`` in the mount's state
    folder, so it survives restarts); an overlay holding changes to another version is refused."""
    if overlay is not None and not writable:
        raise UsageError("--overlay is the folder of a --writable mount: add --writable")
    m = ws.manifest(version_id)
    if m.state not in (CLOSED, PUBLISHED):
        raise NotClosedError(f"version {version_id} is a draft: close it before mounting it")
    fuse_fd = launch.fuse_fd_of(os.fspath(path))
    if fuse_fd is not None:
        if mount_path is None:
            raise UsageError(f"{path} needs --mount-path PATH: where the helper mounted that descriptor")
        mp = launch.prepare_fd(fuse_fd, os.fspath(mount_path), ws.settings.home)
    elif mount_path is not None:
        raise UsageError("--mount-path names where a /dev/fd/N descriptor is mounted: give the descriptor")
    else:
        mp = launch.prepare(os.fspath(path), ws.settings.home, allow_nonempty=allow_nonempty)
    folder = ""
    notice = ""
    if writable:
        folder = str(Path(overlay).resolve()) if overlay is not None else ""
        where = Path(folder) if folder else state.state_dir(ws.settings.home, mp) / "overlay"
        version_id, notice = _resume(ws, where, version_id)
        m = ws.manifest(version_id)
    index = ws.tree(version_id)  # built here, with errors on this terminal, not in the daemon's log
    if writable:
        _check_overlay(where, index)
    return MountConfig(
        mountpoint=mp,
        version=version_id,
        store=ws.store.url,
        home=str(ws.settings.home),
        storage_options=dict(ws.storage_options),
        cache_size=ws.settings.cache_size,
        label=label or f"{m.project}/{m.name}@{m.version}",
        allow_other=allow_other,
        uid=uid,
        gid=gid,
        prefetch=prefetch,
        prefetch_paths=list(prefetch_paths),
        allow_nonempty=allow_nonempty,
        debug=debug,
        fuse_fd=fuse_fd,
        writable=writable,
        overlay=folder,
        notice=notice,
    )


def _resume(ws: Workspace, folder: Path, version_id: str) -> tuple[str, str]:
    """Settle a commit a crash interrupted, and carry on at the overlay's newest commit."""
    try:
        lock = lock_overlay(folder)
    except OSError as exc:
        raise MountError(f"cannot use {folder} as an overlay: {exc.strerror}") from None
    try:
        return commits.resume(ws, folder, version_id)
    except IntegrityError as exc:
        raise MountError(str(exc)) from None
    finally:
        os.close(lock)


def _check_overlay(folder: Path, index: TreeIndex) -> None:
    """Open (or create) the overlay once here, so a refusal is one line on this terminal."""
    from mountfs.tree.overlay import Overlay

    try:
        os.close(lock_overlay(folder))
        Overlay.open(folder, index).close()
    except IntegrityError as exc:
        other = Overlay.pinned_version(folder) if "holds changes" in str(exc) else None
        hint = f": mount {other} --writable to see them, or give another --overlay" if other else ""
        raise MountError(f"{exc}{hint}") from None
    except OSError as exc:
        raise MountError(f"cannot use {folder} as an overlay: {exc.strerror}") from None


def mount(ws: Workspace, version_id: str, path: str | os.PathLike[str], **options: Any) -> Mount:
    """Start a detached daemon; returns once the mount answers (MountError otherwise)."""
    timeout = float(options.pop("timeout", launch.START_TIMEOUT))
    config = config_for(ws, version_id, path, **options)
    proc = launch.start(config, timeout=timeout)
    return Mount(config.mountpoint, config.version, ws.settings.home, proc.pid, proc, notice=config.notice)


def foreground(
    ws: Workspace,
    version_id: str,
    path: str | os.PathLike[str],
    *,
    log_format: str = "text",
    before_serving: Callable[[], None] | None = None,
    **options: Any,
) -> int:
    """Serve the mount in this process, logging to stdout, until SIGTERM, SIGINT or ``dsmount unmount``.

    What a container's sidecar runs: stop signals are handled from the start (one that
    arrives while the index is being built ends the process with status 0), a stale mount
    at the path is cleared, and the exit status is 0 after a requested stop.
    ``before_serving`` runs once the mount is described (the CLI closes its workspace)."""
    from mountfs.daemon import server
    from mountfs.daemon.logs import configure_logging, fields

    configure_logging(bool(options.get("debug")), log_format)
    signals = server.StopSignals()
    signals.install()
    try:
        config = config_for(ws, version_id, path, **options)
        if config.notice:
            server.log.warning("%s", config.notice, extra=fields(event="resumed", version=config.version))
        if before_serving is not None:
            before_serving()
        return server.run(config, None, signals)
    except server.StopRequested as stop:
        server.log.info(
            "stopped before mounting (%s)",
            signal.Signals(stop.args[0]).name,
            extra=fields(event="stopped"),
        )
        return 0
