"""A mount's state folder: who serves it, how to reach the daemon, where it logs.

``<DSMOUNT_HOME>/mounts/<key>/`` where ``key`` is derived from the canonical mount
point, so any command given the mount point finds the daemon without a registry:

    state.json     mount point, version, pid, socket path, options (written atomically)
    control.sock   the daemon's Unix socket (mode 0600)
    daemon.log     what a detached daemon logged

Unix socket paths are limited to 107 bytes; when the state folder is deeper than that
the socket lives in a private folder under /tmp instead, and state.json says where.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
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
    root = home / "mounts"
    if not root.is_dir():
        return []
    out = []
    for folder in sorted(root.iterdir()):
        st = MountState.read(folder)
        if st is not None:
            out.append((folder, st))
    return out


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) is not serving anything.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def clear(folder: Path, st: MountState | None) -> None:
    """Remove the state files of a daemon that is gone."""
    for name in ("state.json", "control.sock"):
        (folder / name).unlink(missing_ok=True)
    if st is not None and st.socket and not st.socket.startswith(str(folder)):
        Path(st.socket).unlink(missing_ok=True)
