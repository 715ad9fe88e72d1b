"""A mount's state folder: who serves it, how to reach the daemon, where it logs.

``<DSMOUNT_HOME>/mounts/<key>/`` where ``key`` is derived from the canonical mount
point, so any command given the mount point finds the daemon without a registry:

    state.json     mount point, version, pid, socket path, options (written atomically);
                   kept when the daemon stops, with pid 0 (nothing else here is ever deleted:
                   a writable overlay lives beside it)
    control.sock   the daemon's Unix socket (mode 0600), removed when the daemon stops
    daemon.log     what a detached daemon logged

Unix socket paths are limited to 107 bytes; when the state folder is deeper than that
the socket lives in a private folder under /tmp instead, and state.json says where.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mountfs.errors import MountError

_SOCKET_MAX = 100


def state_dir(home: Path, mountpoint: str) -> Path:
    key = hashlib.sha256(mountpoint.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return home / "mounts" / key


def socket_path(folder: Path) -> str:
    path = str(folder / "control.sock")
    if len(path.encode()) <= _SOCKET_MAX:
        return path
    private = Path(tempfile.gettempdir()) / f"dsmount-{os.getuid()}"
    private.mkdir(mode=0o700, exist_ok=True)
    if private.stat().st_uid != os.getuid() or private.stat().st_mode & 0o077:
        raise MountError(f"{private} is not a private folder of this user")
    return str(private / f"{folder.name}.sock")


@dataclass
class MountState:
    """What the daemon records about itself (state.json)."""

    mountpoint: str
    version: str
    pid: int
    socket: str
    label: str = ""
    """project/name@version, for people."""
    started: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)

    def write(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = folder / f".state.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(asdict(self), indent=1))
        os.replace(tmp, folder / "state.json")

    @classmethod
    def read(cls, folder: Path) -> MountState | None:
        try:
            raw = json.loads((folder / "state.json").read_text())
            return cls(**raw)
        except (OSError, ValueError, TypeError):
            return None


def all_states(home: Path) -> list[tuple[Path, MountState]]:
    """The mounts this home started that have not stopped cleanly (running, or killed)."""
    root = home / "mounts"
    if not root.is_dir():
        return []
    out = []
    for folder in sorted(root.iterdir()):
        st = MountState.read(folder)
        if st is not None and st.pid != 0:
            out.append((folder, st))
    return out


def pid_alive(pid: int, since: float = 0.0) -> bool:
    """Whether ``pid`` is a live process, and (with ``since``, a daemon's start time) not a
    later process that reused the number: in a restarted container the new daemon often
    gets the very pid the killed one had."""
    if pid <= 0:
        return False
    if pid == os.getpid() and since:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            fields = f.read().rsplit(")", 1)[-1].split()
    except OSError:
        return False
    if fields[0] == "Z":  # a zombie (exited, not yet reaped by its parent) serves nothing
        return False
    return not (since and _born(fields) > since + 0.5)


def started_at(pid: int) -> float:
    """When process ``pid`` started (seconds since the epoch; 0.0 if unknown)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return _born(f.read().rsplit(")", 1)[-1].split())
    except (OSError, ValueError, IndexError):
        return 0.0


def _born(stat_fields: list[str]) -> float:
    """Start time from /proc/PID/stat's fields after the command name (field 22 overall: clock
    ticks after boot), against /proc/uptime (btime in /proc/stat is rounded to the second)."""
    with open("/proc/uptime", encoding="ascii") as f:
        uptime = float(f.read().split()[0])
    return time.time() - (uptime - int(stat_fields[19]) / os.sysconf("SC_CLK_TCK"))


def alive(st: MountState | None) -> bool:
    """Whether the daemon ``st`` describes is still running."""
    return st is not None and pid_alive(st.pid, st.started)


def release(folder: Path, pid: int | None = None) -> None:
    """A daemon is gone: remove its control socket and record pid 0 in state.json.

    Only the socket is deleted: the folder and everything else in it stay (a writable
    overlay lives there). With ``pid``, only that daemon's own state is marked stopped
    (a newer daemon may already have taken the mount point)."""
    st = MountState.read(folder)
    (folder / "control.sock").unlink(missing_ok=True)
    if st is None or (pid is not None and st.pid != pid):
        return
    if st.socket and not st.socket.startswith(str(folder)):
        Path(st.socket).unlink(missing_ok=True)
    if st.pid != 0:
        st.pid = 0
        st.write(folder)
