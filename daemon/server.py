"""The mount daemon: pyfuse3 on trio, a control socket, signals, and a clean exit.

One process serves one mount. It reports readiness only once the kernel has asked it
something and it answered (a stat of the mount's root from a worker thread), so
``dsmount mount`` returns when the mount really works. SIGTERM, SIGINT and an
``unmount`` request stop the FUSE loop, unmount and exit 0; a kill -9 leaves a dead
mount that the next mount or unmount at that path clears.
"""

from __future__ import annotations

import logging
import os
import resource
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyfuse3
import trio
from mountfs.daemon import control, mountpoint, state

from mountfs.api.content import ContentReader, ReadStats
from mountfs.api.workspace import Workspace
from mountfs.errors import MountError, MountfsError
from mountfs.fuse.operations import ReadOnlyOperations
from mountfs.fuse.stats import OpStats

log = logging.getLogger("dsmount.daemon")

READY_TIMEOUT = 30.0


@dataclass
class MountConfig:
    """Everything the daemon needs, passed from the CLI as JSON (no secrets: those stay in env)."""

    mountpoint: str
    version: str
    store: str
    home: str
    cache_size: int
    label: str = ""
    allow_other: bool = False
    uid: int | None = None
    gid: int | None = None
    prefetch: bool = False
    prefetch_paths: list[str] = field(default_factory=list)
    allow_nonempty: bool = False
    debug: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Daemon:
    """Owns the workspace, the operations and the control handlers of one mount."""

    def __init__(self, config: MountConfig) -> None:
        self.config = config
        self.ws = Workspace(config.store, home=config.home, cache_size=config.cache_size)
        self.index = self.ws.tree(config.version)
        self.read_stats = ReadStats()
        self.reader = ContentReader(self.ws, self.read_stats, index=self.index)
        self.ops = ReadOnlyOperations(
            self.index, self.reader, uid=config.uid, gid=config.gid, stats=OpStats()
        )
        self.folder = state.state_dir(Path(config.home), config.mountpoint)
        self.started = time.time()
        self.ready = False
        self.prefetch_state: dict[str, Any] = {}
        self._stop_prefetch = threading.Event()
        self._cancel: trio.CancelScope | None = None

    def options(self) -> set[str]:
        opts = {f"fsname={mountpoint.FSNAME}", "subtype=dsmount", "ro", "default_permissions", "noatime"}
        if self.config.allow_other:
            opts.add("allow_other")
        return opts

    # ----- control requests ----------------------------------------------------------------

    async def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        op = req.get("op")
        if op == "status":
            return self.status()
        if op == "stats":
            return {
                **self.status(),
                "ops": self.ops.stats.snapshot(),
                "reads": self.read_stats.snapshot(),
                "cache_bytes": await trio.to_thread.run_sync(self.ws.cache.usage),
            }
        if op == "unmount":
            self.stop()
            return {"ok": True}
        if op == "prefetch":
            paths = req.get("paths") or []
            if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
                raise MountError("prefetch paths must be a list of strings")
            assert self._nursery is not None
            self._nursery.start_soon(self._prefetch, paths)
            return {"ok": True}
        raise MountError(f"unknown request {op!r}")

    def status(self) -> dict[str, Any]:
        return {
            "mountpoint": self.config.mountpoint,
            "version": self.config.version,
            "label": self.config.label,
            "pid": os.getpid(),
            "state": "mounted" if self.ready else "starting",
            "ready": self.ready,
            "writable": False,
            "started": self.started,
            "uptime_s": round(time.time() - self.started, 3),
            "files": self.index.count(),
            "bytes": self.index.total_bytes(),
            "open_files": self.ops.open_files(),
            "rss_bytes": _rss(),
            "prefetch": dict(self.prefetch_state),
        }

    def stop(self) -> None:
        log.info("unmounting %s", self.config.mountpoint)
        self._stop_prefetch.set()
        pyfuse3.terminate()

    # ----- tasks ---------------------------------------------------------------------------

    async def _signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                log.info("received %s", signal.Signals(signum).name)
                self.stop()
                return

    async def _await_ready(self, notify: int | None) -> None:
        path = self.config.mountpoint

        def probe() -> bool:
            deadline = time.monotonic() + READY_TIMEOUT
            while time.monotonic() < deadline:
                try:
                    if os.stat(path).st_ino == pyfuse3.ROOT_INODE:
                        return True
                except OSError:
                    pass
                time.sleep(0.005)
            return False

        ok = await trio.to_thread.run_sync(probe, abandon_on_cancel=True)
        if not ok:
            _notify(notify, f"error the mount at {path} did not answer within {READY_TIMEOUT:.0f} s")
            self.stop()
            return
        self.ready = True
        _raise_readahead(path)
        log.info("mounted %s (%s) at %s", self.config.label or self.config.version, self.config.version, path)
        _notify(notify, "ready")
        if self.config.prefetch:
            assert self._nursery is not None
            self._nursery.start_soon(self._prefetch, self.config.prefetch_paths)

    async def _prefetch(self, paths: list[str]) -> None:
        started = time.monotonic()
        self.prefetch_state = {"running": True, "files": 0, "bytes": 0}

        def run() -> tuple[int, int]:
            if not paths:
                entries = self.index.iter_entries()
                return self.reader.prefetch(entries, stop=self._stop_prefetch)
            files = bytes_ = 0
            for p in paths:
                n, b = self.reader.prefetch(self.index.iter_entries(p.strip("/")), stop=self._stop_prefetch)
                files += n
                bytes_ += b
            return files, bytes_

        try:
            files, nbytes = await trio.to_thread.run_sync(run, abandon_on_cancel=True)
        except MountfsError as exc:
            log.error("prefetch failed: %s", exc)
            self.prefetch_state = {"running": False, "error": str(exc)}
            return
        self.prefetch_state = {
            "running": False,
            "files": files,
            "bytes": nbytes,
            "seconds": round(time.monotonic() - started, 3),
        }
        log.info("prefetched %d files (%d bytes)", files, nbytes)

    _nursery: trio.Nursery | None = None

    async def main(self, notify: int | None) -> None:
        sock = state.socket_path(self.folder)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(control.serve, sock, self.handle)
            state.MountState(
                mountpoint=self.config.mountpoint,
                version=self.config.version,
                pid=os.getpid(),
                socket=sock,
                label=self.config.label,
                started=self.started,
                options={"allow_other": self.config.allow_other, "writable": False},
            ).write(self.folder)
            nursery.start_soon(self._signals)
            nursery.start_soon(self._await_ready, notify)
            await pyfuse3.main(min_tasks=4, max_tasks=64)
            nursery.cancel_scope.cancel()  # the FUSE loop ended: unmounted, by us or from outside


def _notify(fd: int | None, message: str) -> None:
    if fd is None:
        if message != "ready":
            log.error("%s", message.removeprefix("error "))
        return
    try:
        os.write(fd, message.encode("utf-8", "replace") + b"\n")
        os.close(fd)
    except OSError:
        pass


READAHEAD_KB = 16384
"""Kernel read-ahead for the mount: the default 128 KiB makes a cold sequential read cost one
FUSE round trip per 128 KiB; 16 MiB lets the kernel ask for 1 MiB requests well ahead."""


def _raise_readahead(path: str) -> None:
    """Best effort (needs write access to sysfs, so usually root): never fatal."""
    try:
        dev = os.stat(path).st_dev
        knob = Path(f"/sys/class/bdi/{os.major(dev)}:{os.minor(dev)}/read_ahead_kb")
        knob.write_text(str(READAHEAD_KB))
        log.debug("read-ahead of %s set to %d KiB", path, READAHEAD_KB)
    except OSError as exc:
        log.debug("read-ahead of %s left as it was: %s", path, exc)


def _rss() -> int:
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run(config: MountConfig, notify: int | None = None) -> int:
    """Mount, serve until told to stop, unmount. Returns the exit status."""
    path = config.mountpoint
    existing = mountpoint.mounted_at(path)
    if mountpoint.is_dsmount(existing) and not mountpoint.answers(path):
        log.warning("clearing a stale mount at %s", path)
        mountpoint.lazy_unmount(path)
    try:
        mountpoint.check_target(path, allow_nonempty=config.allow_nonempty)
        daemon = Daemon(config)
        pyfuse3.init(daemon.ops, path, daemon.options())
    except (MountfsError, RuntimeError, OSError) as exc:
        _notify(notify, f"error {exc}")
        return 7
    try:
        trio.run(daemon.main, notify)
    finally:
        pyfuse3.close(unmount=True)
        daemon.reader.close()
        daemon.ws.close()
        state.clear(daemon.folder, state.MountState.read(daemon.folder))
        log.info("unmounted %s", path)
    return 0
