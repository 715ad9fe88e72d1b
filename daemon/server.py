"""The mount daemon: pyfuse3 on trio, a control socket, signals, and a clean exit.

One process serves one mount. It reports readiness only once the kernel has asked it
something and it answered (a stat of the mount's root from a worker thread), so
``dsmount mount`` returns when the mount really works. SIGTERM, SIGINT, SIGHUP and an
``unmount`` request stop the FUSE loop, unmount and exit 0, within a bound: requests
still running after STOP_GRACE are cancelled, and if the process is still busy after
STOP_LIMIT (a request stuck in a worker thread) the mount is detached lazily and the
process exits anyway. A kill -9 leaves a dead mount that the next mount or unmount at
that path clears.

With ``fuse_fd`` set, a privileged helper has opened /dev/fuse and mounted it (mount(2)
with ``fd=N``); the daemon serves that descriptor (libfuse's ``/dev/fd/N`` mount point)
and neither mounts nor unmounts: the mount belongs to the helper.
"""

from __future__ import annotations

import fcntl
import logging
import os
import resource
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import pyfuse3
import trio
from mountfs.daemon import commit, control, launch, mountpoint, state
from mountfs.daemon.logs import fields

from mountfs.api.content import ContentReader, ReadStats
from mountfs.api.workspace import Workspace
from mountfs.errors import MountError, MountfsError
from mountfs.fuse.operations import ReadOnlyOperations
from mountfs.fuse.stats import OpStats
from mountfs.fuse.writable import WritableOperations
from mountfs.tree.overlay import Overlay

log = logging.getLogger("dsmount.daemon")

READY_TIMEOUT = 30.0
STOP_GRACE = 1.5
"""Seconds requests still running at a stop request get to finish before they are cancelled."""
STOP_LIMIT = 4.0
"""Seconds after a stop request at which the mount is detached and the process exits, whatever still runs."""
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


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
    fuse_fd: int | None = None
    """A /dev/fuse descriptor a helper opened and mounted at ``mountpoint``: serve it, mount nothing."""
    writable: bool = False
    overlay: str = ""
    """With ``writable``: the overlay folder (default: ``overlay/`` in the mount's state folder)."""
    notice: str = ""
    """Why ``version`` is not the one asked for (a writable overlay carries on at its last commit)."""
    storage_options: dict[str, Any] = field(default_factory=dict, repr=False)
    """fsspec options given to the Workspace in Python; handed over the stdin pipe, never written
    or logged (they may hold credentials)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class StopRequested(BaseException):
    """A stop signal arrived before anything was mounted: nothing to undo, exit 0."""


class StopSignals:
    """SIGTERM, SIGINT and SIGHUP outside the FUSE loop (which has its own receiver).

    Before the mount is made a signal ends the process at once (``StopRequested``);
    from the moment the mount is being made it is only remembered, and the loop stops as
    soon as it runs, so a signal can never leave a mount behind without its daemon.
    """

    def __init__(self) -> None:
        self.received: list[int] = []
        self.mounting = False

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                signal.signal(signum, self._handler)

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)
        if not self.mounting:
            raise StopRequested(signum)


class _Operations(ReadOnlyOperations):
    """The read-only operations, noting when the kernel's INIT arrived (readiness without a path)."""

    initialized: threading.Event

    def init(self) -> None:
        super().init()
        self.initialized.set()


class _WritableOperations(WritableOperations):
    """The writable operations, noting when the kernel's INIT arrived."""

    initialized: threading.Event

    def init(self) -> None:
        super().init()
        self.initialized.set()


def lock_overlay(folder: Path) -> int:
    """Take the overlay folder for this process (flock on ``folder/lock``, released when the process
    ends, kill -9 included): two daemons writing one overlay would corrupt each other's view."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(folder / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise MountError(f"overlay {folder} is in use by another mount") from None
    return fd


def overlay_folder(config: MountConfig) -> Path:
    """Where a writable mount keeps its overlay: ``--overlay``, else the mount's state folder."""
    if config.overlay:
        return Path(config.overlay)
    return state.state_dir(Path(config.home), config.mountpoint) / "overlay"


class Daemon:
    """Owns the workspace, the operations and the control handlers of one mount."""

    def __init__(self, config: MountConfig) -> None:
        self.config = config
        self.ws = Workspace(
            config.store,
            home=config.home,
            cache_size=config.cache_size,
            storage_options=config.storage_options or None,
        )
        self.index = self.ws.tree(config.version)
        self.read_stats = ReadStats()
        self.reader = ContentReader(self.ws, self.read_stats, index=self.index)
        self.overlay: Overlay | None = None
        self._overlay_lock = -1
        self.ops: _Operations | _WritableOperations
        if config.writable:
            self._overlay_lock = lock_overlay(overlay_folder(config))
            self.overlay = Overlay.open(overlay_folder(config), self.index)
            self.ops = _WritableOperations(
                self.overlay, self.reader, uid=config.uid, gid=config.gid, stats=OpStats()
            )
        else:
            self.ops = _Operations(self.index, self.reader, uid=config.uid, gid=config.gid, stats=OpStats())
        self.ops.initialized = threading.Event()
        self.folder = state.state_dir(Path(config.home), config.mountpoint)
        self.started = time.time()
        self.ready = False
        self.prefetch_state: dict[str, Any] = {}
        self._stop_prefetch = threading.Event()
        self._fuse_scope: trio.CancelScope | None = None
        self._stopping = False
        self._finished = threading.Event()
        self._nursery: trio.Nursery | None = None

    @property
    def owns_mount(self) -> bool:
        """Whether this process made the kernel mount (and so unmounts it), not a helper."""
        return self.config.fuse_fd is None

    def fuse_target(self) -> str:
        """What libfuse is given: the mount point, or ``/dev/fd/N`` for a helper's descriptor."""
        return self.config.mountpoint if self.owns_mount else f"/dev/fd/{self.config.fuse_fd}"

    def options(self) -> set[str]:
        opts = {f"fsname={mountpoint.FSNAME}", "subtype=dsmount", "default_permissions", "noatime"}
        if not self.config.writable:
            opts.add("ro")
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
                **self._overlay_stats(),
            }
        if op == "diff":
            return await self._diff()
        if op == "commit":
            return await self._commit(commit.CommitRequest.from_json(req))
        if op == "unmount":
            self.stop("unmount request")
            return {"ok": True}
        if op == "prefetch":
            paths = req.get("paths") or []
            if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
                raise MountError("prefetch paths must be a list of strings")
            assert self._nursery is not None
            self._nursery.start_soon(self._prefetch, paths)
            return {"ok": True}
        raise MountError(f"unknown request {op!r}")

    def _overlay_stats(self) -> dict[str, Any]:
        if not isinstance(self.ops, WritableOperations):
            return {}
        files, nbytes = self.ops.copied_up
        return {"copied_up": {"files": files, "bytes": nbytes}, "inodes": self.ops.inodes()}

    async def _diff(self) -> dict[str, Any]:
        ov = self.overlay
        if ov is None:
            raise MountError(f"{self.config.mountpoint} is not a writable mount (mount it with --writable)")
        changes = await trio.to_thread.run_sync(ov.changes)
        return {
            "mountpoint": self.config.mountpoint,
            "version": self.config.version,
            "changes": [c.as_dict() for c in changes],
        }

    async def _commit(self, request: commit.CommitRequest) -> dict[str, Any]:
        """Freeze changes, make the child version, move the mount onto it; reads go on throughout."""
        ov = self.overlay
        if ov is None or not isinstance(self.ops, WritableOperations):
            raise MountError(f"{self.config.mountpoint} is not a writable mount (mount it with --writable)")
        parent = self.config.version
        async with self.ops.frozen():
            # files open for writing keep their local bytes (equal to the child's) across the commit
            keep = self.ops.open_for_writing()
            try:
                result = await trio.to_thread.run_sync(self._build_commit, request, keep)
            finally:
                if ov.lower.version != self.config.version:
                    await trio.to_thread.run_sync(self._repin, ov.lower.version)
        answer: dict[str, Any] = {"mountpoint": self.config.mountpoint, "parent": parent}
        if result is None:
            return {**answer, "committed": False, "id": None}
        log.info(
            "committed %d change(s) of %s as %s/%s@%s (%s) in %.2f s",
            result.changes,
            parent,
            result.project,
            result.name,
            result.version,
            result.id,
            result.seconds,
            extra=fields(event="committed", **result.as_dict()),
        )
        return {**answer, **result.as_dict()}

    def _build_commit(self, request: commit.CommitRequest, keep: list[str]) -> commit.CommitResult | None:
        assert self.overlay is not None
        ws = Workspace(
            self.config.store,
            home=self.config.home,
            cache_size=self.config.cache_size,
            storage_options=self.config.storage_options or None,
        )
        try:
            return commit.build(ws, self.overlay, request, self.ws.tree, keep=keep)
        finally:
            ws.close()

    def _repin(self, version: str) -> None:
        """Serve ``version`` from now on (the overlay already sits on it): paths and inodes stay
        as they are, since the child's tree is what the mount showed, so the kernel's caches
        hold nothing stale and nothing needs invalidating."""
        m = self.ws.manifest(version)
        self.index = self.ws.tree(version)
        self.reader.index = self.index
        self.config.version = version
        self.config.label = f"{m.project}/{m.name}@{m.version}"
        self._write_state()

    def _write_state(self) -> None:
        state.MountState(
            mountpoint=self.config.mountpoint,
            version=self.config.version,
            pid=os.getpid(),
            socket=state.socket_path(self.folder),
            label=self.config.label,
            started=self.started,
            options={
                "allow_other": self.config.allow_other,
                "writable": self.config.writable,
                "fuse_fd": self.config.fuse_fd,
            },
        ).write(self.folder)

    def status(self) -> dict[str, Any]:
        return {
            "mountpoint": self.config.mountpoint,
            "version": self.config.version,
            "label": self.config.label,
            "pid": os.getpid(),
            "state": "stopping" if self._stopping else "mounted" if self.ready else "starting",
            "ready": self.ready,
            "writable": self.config.writable,
            "overlay": str(overlay_folder(self.config)) if self.config.writable else None,
            "fuse_fd": self.config.fuse_fd,
            "started": self.started,
            "uptime_s": round(time.time() - self.started, 3),
            "files": self.index.count(),
            "bytes": self.index.total_bytes(),
            "open_files": self.ops.open_files(),
            "rss_bytes": _rss(),
            "prefetch": dict(self.prefetch_state),
        }

    def stop(self, reason: str) -> None:
        """Stop serving (from the trio loop): the FUSE loop ends, then run() unmounts and exits.

        Bounded: requests still running after STOP_GRACE are cancelled; if the process has
        not finished after STOP_LIMIT, a watchdog thread detaches the mount and exits."""
        if self._stopping:
            return
        self._stopping = True
        self.ready = False
        log.info("stopping: %s", reason, extra=fields(event="stopping", reason=reason))
        self._stop_prefetch.set()
        threading.Thread(target=self._watchdog, name="dsmount-stop", daemon=True).start()
        pyfuse3.terminate()
        if self._fuse_scope is not None:
            self._fuse_scope.deadline = trio.current_time() + STOP_GRACE

    def _watchdog(self) -> None:
        if self._finished.wait(STOP_LIMIT):
            return
        path = self.config.mountpoint
        log.warning(
            "still busy %.0f s after the stop request: detaching %s and exiting",
            STOP_LIMIT,
            path,
            extra=fields(event="forced_exit", mountpoint=path, limit_s=STOP_LIMIT),
        )
        try:
            if self.owns_mount and mountpoint.is_dsmount(mountpoint.mounted_at(path)):
                mountpoint.lazy_unmount(path)
            state.release(self.folder, os.getpid())
        except (MountfsError, OSError) as exc:
            log.error("%s", exc)
        logging.shutdown()
        os._exit(0)

    def finish(self) -> None:
        """After the FUSE loop: unmount (our own mount only), close everything, release the state."""
        try:
            pyfuse3.close(unmount=self.owns_mount)
            if isinstance(self.ops, WritableOperations):
                self.ops.close()
            if self._overlay_lock >= 0:
                os.close(self._overlay_lock)
            self.reader.close()
            self.ws.close()
            state.release(self.folder, os.getpid())
        finally:
            self._finished.set()
        path = self.config.mountpoint
        if self.owns_mount:
            log.info("unmounted %s", path, extra=fields(event="unmounted", mountpoint=path))
        else:
            log.info(
                "stopped serving %s (/dev/fd/%d): the helper that mounted it unmounts it",
                path,
                self.config.fuse_fd,
                extra=fields(event="released", mountpoint=path, fuse_fd=self.config.fuse_fd),
            )

    # ----- tasks ---------------------------------------------------------------------------

    async def _signals(self, early: StopSignals) -> None:
        with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
            if early.received:  # arrived while mounting: stop as soon as the loop runs
                self.stop(f"received {signal.Signals(early.received[0]).name}")
                return
            async for signum in signals:
                self.stop(f"received {signal.Signals(signum).name}")
                return

    async def _await_ready(self, notify: int | None, t0: float) -> None:
        path = self.config.mountpoint
        # A helper's mount may live in another mount namespace than this process: then the
        # kernel's INIT, answered by this loop, is the sign that the mount is served.
        visible = self.owns_mount or mountpoint.mounted_at(path) is not None

        def probe() -> bool:
            deadline = time.monotonic() + READY_TIMEOUT
            while time.monotonic() < deadline:
                if not visible:
                    if self.ops.initialized.wait(0.05):
                        return True
                    continue
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
            self.stop("the mount did not answer")
            return
        if self._stopping:
            return
        self.ready = True
        if visible:
            _raise_readahead(path)
        seconds = round(time.time() - (state.started_at(os.getpid()) or t0), 3)
        log.info(
            "mounted %s (%s) at %s, ready %.2f s after start",
            self.config.label or self.config.version,
            self.config.version,
            path,
            seconds,
            extra=fields(
                event="ready",
                mountpoint=path,
                version=self.config.version,
                label=self.config.label,
                ready_s=seconds,  # since the process started
                fuse_fd=self.config.fuse_fd,
            ),
        )
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
            log.error("prefetch failed: %s", exc, extra=fields(event="prefetch_failed"))
            self.prefetch_state = {"running": False, "error": str(exc)}
            return
        seconds = round(time.monotonic() - started, 3)
        self.prefetch_state = {"running": False, "files": files, "bytes": nbytes, "seconds": seconds}
        log.info(
            "prefetched %d files (%d bytes)",
            files,
            nbytes,
            extra=fields(event="prefetched", files=files, bytes=nbytes, seconds=seconds),
        )

    async def main(self, notify: int | None, early: StopSignals, t0: float) -> None:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        sock = state.socket_path(self.folder)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._signals, early)
            await nursery.start(control.serve, sock, self.handle)
            self._write_state()
            nursery.start_soon(self._await_ready, notify, t0)
            with trio.CancelScope() as self._fuse_scope:
                await pyfuse3.main(min_tasks=4, max_tasks=64)
            if self._fuse_scope.cancelled_caught:
                log.warning(
                    "requests still running %.1f s after the stop request were cancelled",
                    STOP_GRACE,
                    extra=fields(event="requests_cancelled"),
                )
            nursery.cancel_scope.cancel()  # the FUSE loop ended: unmounted, by us or from outside


def _notify(fd: int | None, message: str) -> None:
    if fd is None:
        if message != "ready":
            log.error("%s", message.removeprefix("error "), extra=fields(event="error"))
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


def _clear_stale(path: str, home: Path) -> None:
    """Detach a dead dsmount mount at ``path`` (its daemon was killed): the last check before
    mounting, in the daemon itself, so a sidecar restarted after a kill -9 mounts again."""
    if not mountpoint.is_dsmount(mountpoint.mounted_at(path)):
        return
    if launch.is_stale(path, state.MountState.read(state.state_dir(home, path))):
        log.warning("clearing a stale mount at %s", path, extra=fields(event="stale", mountpoint=path))
        mountpoint.lazy_unmount(path)


def run(config: MountConfig, notify: int | None = None, signals: StopSignals | None = None) -> int:
    """Mount, serve until told to stop, unmount. Returns the exit status.

    ``signals``: the stop-signal handlers already installed by a foreground caller (so a
    signal during its setup counts); installed here otherwise."""
    t0 = time.time()
    if signals is None:
        signals = StopSignals()
        signals.install()
    path = config.mountpoint
    try:
        if config.fuse_fd is None:  # a helper's mount (/dev/fd/N) is already at the path
            _clear_stale(path, Path(config.home))
            mountpoint.check_target(path, allow_nonempty=config.allow_nonempty)
        daemon = Daemon(config)
        signals.mounting = True  # from here a signal is acted on once the loop runs
        pyfuse3.init(daemon.ops, daemon.fuse_target(), daemon.options())
    except StopRequested as stop:
        name = signal.Signals(stop.args[0]).name
        log.info("stopped before mounting (%s)", name, extra=fields(event="stopped", signal=name))
        return 0
    except (MountfsError, RuntimeError, OSError) as exc:
        _notify(notify, f"error {exc}")
        return 7
    try:
        trio.run(daemon.main, notify, signals, t0)
    finally:
        daemon.finish()
    return 0
