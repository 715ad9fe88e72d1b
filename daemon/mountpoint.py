"""The mount point as the kernel sees it: what is mounted there, stale mounts, checks.

Whether something is mounted is read from /proc/self/mountinfo, never by stat: a
mount whose daemon died answers every stat with ENOTCONN (and a hung one may never
answer), while mountinfo still lists it. A dead dsmount mount is cleared with a lazy
unmount before anything else happens at that path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from mountfs.errors import MountError

FSTYPE = "fuse.dsmount"
FSNAME = "dsmount"


@dataclass(frozen=True)
class MountInfo:
    mountpoint: str
    fstype: str
    source: str
    options: str


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as three octal digits."""
    if "\\" not in field:
        return field
    out = bytearray()
    raw = field.encode("utf-8", "surrogateescape")
    i = 0
    while i < len(raw):
        if raw[i : i + 1] == b"\\" and raw[i + 1 : i + 4].isdigit() and len(raw[i + 1 : i + 4]) == 3:
            out.append(int(raw[i + 1 : i + 4], 8))
            i += 4
        else:
            out.append(raw[i])
            i += 1
    return out.decode("utf-8", "surrogateescape")


def mounts(mountinfo: str = "/proc/self/mountinfo") -> list[MountInfo]:
    """Every mount of this mount namespace, in mount order."""
    out = []
    with open(mountinfo, encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            left, _, right = line.rstrip("\n").partition(" - ")
            fields = left.split(" ")
            tail = right.split(" ")
            if len(fields) < 6 or len(tail) < 2:
                continue
            out.append(MountInfo(_unescape(fields[4]), tail[0], _unescape(tail[1]), fields[5]))
    return out


def canonical(path: str | os.PathLike[str]) -> str:
    """An absolute path without symlinks, resolved without touching a dead mount at its end."""
    p = os.path.abspath(os.fspath(path))
    parent, name = os.path.split(p)
    return os.path.join(os.path.realpath(parent), name) if name else p


def mounted_at(path: str) -> MountInfo | None:
    """The topmost mount at ``path`` (already canonical), if any."""
    found = None
    for m in mounts():
        if m.mountpoint == path:
            found = m
    return found


def is_dsmount(m: MountInfo | None) -> bool:
    return m is not None and m.fstype == FSTYPE


def answers(path: str) -> bool:
    """Whether the file system at ``path`` answers: statfs, which the kernel never caches
    (a stat may come from its attribute cache long after the daemon died)."""
    try:
        os.statvfs(path)
    except OSError:
        return False
    return True


def lazy_unmount(path: str) -> None:
    """Detach the mount at ``path`` now; open files keep it alive until they close."""
    tool = shutil.which("fusermount3") or shutil.which("fusermount")
    errors = []
    if tool is not None:
        proc = subprocess.run([tool, "-u", "-z", path], capture_output=True, text=True, check=False)
        if proc.returncode == 0:
            return
        errors.append(proc.stderr.strip())
    if os.geteuid() == 0:
        proc = subprocess.run(["umount", "-l", path], capture_output=True, text=True, check=False)
        if proc.returncode == 0:
            return
        errors.append(proc.stderr.strip())
    raise MountError(f"cannot unmount {path}: {'; '.join(e for e in errors if e) or 'no fusermount3'}")


def check_target(path: str, *, allow_nonempty: bool = False) -> None:
    """Refuse a mount point that is missing, not a folder, busy or (by default) not empty."""
    if is_dsmount(mounted_at(path)):
        raise MountError(f"{path} is already a dsmount mount (dsmount unmount {path} first)")
    if mounted_at(path) is not None:
        raise MountError(f"{path} is busy: another file system is mounted there")
    p = Path(path)
    if not p.exists():
        raise MountError(f"mount point {path} does not exist")
    if not p.is_dir():
        raise MountError(f"mount point {path} is not a folder")
    if not allow_nonempty:
        with os.scandir(path) as it:
            if any(True for _ in it):
                raise MountError(f"mount point {path} is not empty")
