"""Starting, finding, asking and stopping mount daemons: what the CLI and Dataset.mount call.

Nothing here imports pyfuse3 until a daemon runs in this very process (``-f``), so
every other command works on machines without FUSE.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import select
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from mountfs.daemon import control, mountpoint, state
from mountfs.daemon.logs import fields

from mountfs.errors import MountError, UsageError

log = logging.getLogger("dsmount.daemon")

START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


def prepare(path: str, home: Path, *, allow_nonempty: bool = False) -> str:
    """Canonical mount point, after clearing a stale dsmount mount and refusing a busy one."""
    mp = mountpoint.canonical(path)
    folder = state.state_dir(home, mp)
    st = state.MountState.read(folder)
    info = mountpoint.mounted_at(mp)
    if mountpoint.is_dsmount(info) and is_stale(mp, st):
        log.warning("clearing a stale mount at %s", mp, extra=fields(event="stale", mountpoint=mp))
        mountpoint.lazy_unmount(mp)
        state.release(folder)
    elif st is not None and not state.alive(st):
        state.release(folder)
    mountpoint.check_target(mp, allow_nonempty=allow_nonempty)
    return mp


FUSE_DEVICE = (10, 229)
"""/dev/fuse's major and minor numbers."""


def fuse_fd_of(path: str) -> int | None:
    """N when ``path`` is ``/dev/fd/N``: libfuse's name for a /dev/fuse descriptor that a
    privileged helper opened and mounted (mount(2) with ``fd=N``) for this process."""
    m = re.fullmatch(r"/dev/fd/(\d+)", path)
    return int(m.group(1)) if m else None


def prepare_fd(fd: int, mount_path: str, home: Path) -> str:
    """Canonical mount path for a helper's descriptor ``fd``, after checking that it is an open
    /dev/fuse and that no daemon of this home already serves that path. The mount itself is the
    helper's: nothing at the path is checked or cleared."""
    try:
        st_fd = os.fstat(fd)
    except OSError:
        raise MountError(f"/dev/fd/{fd} is not an open descriptor of this process") from None
    if not stat.S_ISCHR(st_fd.st_mode) or (os.major(st_fd.st_rdev), os.minor(st_fd.st_rdev)) != FUSE_DEVICE:
        raise MountError(f"/dev/fd/{fd} is not /dev/fuse")
    mp = mountpoint.canonical(mount_path)
    folder = state.state_dir(home, mp)
    st = state.MountState.read(folder)
    if st is not None and state.alive(st):
        raise MountError(f"{mp} is already served by a dsmount daemon (pid {st.pid})")
    if st is not None:
        state.release(folder)
    return mp


def start(config: Any, *, timeout: float = START_TIMEOUT) -> subprocess.Popen[bytes]:
    """Run a detached daemon for ``config`` (a MountConfig); return it once the mount answers.

    The daemon is this process's child until this process exits: a long-lived caller
    should ``wait()`` on it after unmounting, so no zombie is left."""
    folder = state.state_dir(Path(config.home), config.mountpoint)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    log_path = folder / "daemon.log"
    read_fd, write_fd = os.pipe()
    try:
        with open(log_path, "ab") as log_file:
            proc = subprocess.Popen(
                [sys.executable, "-m", "mountfs.daemon.main", "--notify-fd", str(write_fd)],
                stdin=subprocess.PIPE,
                stdout=log_file,
                stderr=log_file,
                pass_fds=(write_fd,) if config.fuse_fd is None else (write_fd, config.fuse_fd),
                start_new_session=True,
                close_fds=True,
            )
        os.close(write_fd)
        write_fd = -1
        assert proc.stdin is not None
        try:
            payload = json.dumps(config.to_json()).encode()
        except TypeError as exc:
            proc.kill()
            proc.wait()
            msg = f"storage options must be plain JSON values to mount in the background: {exc}"
            raise UsageError(msg) from None
        proc.stdin.write(payload)
        proc.stdin.close()
        message = _read_line(read_fd, timeout)
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)
    if message == "ready":
        return proc
    if message is None:
        proc.terminate()
        detail = f"no answer within {timeout:.0f} s"
    elif message.startswith("error "):
        detail = message[6:]
    else:
        detail = _last_log_line(log_path) or f"daemon exited with status {proc.wait()}"
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
    raise MountError(f"cannot mount at {config.mountpoint}: {detail}")


def _read_line(fd: int, timeout: float) -> str | None:
    deadline = time.monotonic() + timeout
    buf = b""
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            return None
        part = os.read(fd, 4096)
        if not part:
            return buf.decode("utf-8", "replace").strip() or ""
        buf += part
    return buf.decode("utf-8", "replace").strip()


def _last_log_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def is_stale(path: str, st: state.MountState | None) -> bool:
    """Whether the dsmount mount at ``path`` has no daemon behind it: the kernel says its
    daemon is gone (ENOTCONN, whatever state.json says), or it does not answer and the
    daemon this home started there is not running."""
    err = _statfs_errno(path, 5.0)
    if err in (errno.ENOTCONN, errno.ECONNABORTED):
        return True
    return err is None and not state.alive(st)


def _statfs_errno(path: str, timeout: float) -> int | None:
    """The errno of a statfs of ``path`` (0 when it answers), None if no answer within ``timeout``."""
    result: list[int] = []

    def probe() -> None:
        try:
            os.statvfs(path)
            result.append(0)
        except OSError as exc:
            result.append(exc.errno or -1)

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout)
    return result[0] if result else None


def is_dead(path: str, timeout: float = 5.0) -> bool:
    """Whether the mount at ``path`` has no daemon behind it.

    statfs is never answered from the kernel's caches (a stat may be, for a day), so it
    reaches the daemon: ENOTCONN means it is gone; a mount served by a daemon of another
    home answers. No answer within ``timeout`` counts as dead too.
    """
    err = _statfs_errno(path, timeout)
    return err is None or err in (errno.ENOTCONN, errno.ECONNABORTED)


def _answers_within(path: str, timeout: float) -> bool:
    """stat the mount's root in a thread, so a hung mount cannot hang the caller."""
    result: list[bool] = []
    t = threading.Thread(target=lambda: result.append(mountpoint.answers(path)), daemon=True)
    t.start()
    t.join(timeout)
    return bool(result and result[0])


def status(home: Path, path: str | None = None, *, timeout: float = 5.0) -> list[dict[str, Any]]:
    """The state of one mount point, or of every mount this home knows about."""
    if path is not None:
        mp = mountpoint.canonical(path)
        folder = state.state_dir(home, mp)
        return [_status_of(folder, state.MountState.read(folder), mp, timeout)]
    return [_status_of(folder, st, st.mountpoint, timeout) for folder, st in state.all_states(home)]


def _status_of(folder: Path, st: state.MountState | None, mp: str, timeout: float) -> dict[str, Any]:
    info = mountpoint.mounted_at(mp)
    base: dict[str, Any] = {"mountpoint": mp, "ready": False}
    if st is None or not state.alive(st):
        if not mountpoint.is_dsmount(info):
            base["state"] = "not mounted"
        else:
            base["state"] = "stale" if is_dead(mp, timeout) else "served by another dsmount home"
        return base
    try:
        answer = control.request(st.socket, "status", timeout=timeout)
    except MountError as exc:
        return {**base, "state": "not answering", "pid": st.pid, "version": st.version, "error": str(exc)}
    # Ready = the daemon says so, its mount is here (in this mount namespace) and answers. A
    # helper's mount (/dev/fd/N) may be invisible to this namespace: then the daemon's word counts.
    here = mountpoint.mounted_at(mp) is not None or answer.get("fuse_fd") is not None
    answer["ready"] = bool(answer.get("ready")) and here and _answers_within(mp, timeout)
    if not answer["ready"] and answer.get("state") == "mounted":
        answer["state"] = "not answering" if here else "not in this mount namespace"
    return answer


def _daemon_of(home: Path, path: str) -> tuple[str, state.MountState]:
    mp = mountpoint.canonical(path)
    st = state.MountState.read(state.state_dir(home, mp))
    if st is None or not state.alive(st):
        raise MountError(f"no dsmount daemon serves {mp}")
    return mp, st


def ask(home: Path, path: str, op: str, **args: Any) -> dict[str, Any]:
    _, st = _daemon_of(home, path)
    return control.request(st.socket, op, **args)


def unmount(home: Path, path: str, *, timeout: float = STOP_TIMEOUT) -> str:
    """Stop the daemon serving ``path`` (or clear a dead mount there); returns what was done."""
    mp = mountpoint.canonical(path)
    folder = state.state_dir(home, mp)
    st = state.MountState.read(folder)
    info = mountpoint.mounted_at(mp)
    if st is not None and state.alive(st):
        try:
            control.request(st.socket, "unmount", timeout=timeout)
        except MountError:
            os.kill(st.pid, 15)  # not answering: SIGTERM unmounts too
        deadline = time.monotonic() + timeout
        while state.alive(st) and time.monotonic() < deadline:
            time.sleep(0.02)
        if state.alive(st):
            raise MountError(f"the daemon of {mp} (pid {st.pid}) did not stop within {timeout:.0f} s")
        if mountpoint.is_dsmount(mountpoint.mounted_at(mp)):
            mountpoint.lazy_unmount(mp)  # a helper's mount (/dev/fd/N), left dead by its daemon
        state.release(folder)
        return "unmounted"
    if mountpoint.is_dsmount(info):
        if not is_dead(mp):
            raise MountError(f"{mp} is served by a dsmount daemon of another home (use its --home)")
        mountpoint.lazy_unmount(mp)
        state.release(folder)
        return "cleared a stale mount"
    if st is not None:
        state.release(folder)
    if info is not None:
        raise MountError(f"{mp} is not a dsmount mount ({info.fstype})")
    raise MountError(f"nothing is mounted at {mp}")
