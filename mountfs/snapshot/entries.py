"""The entry: one path of a version, as a file table stores it and a merged tree serves it.

One flat record for every kind keeps file tables columnar, merged-tree indexes
simple SQLite rows, and the DAG merge a plain dictionary update.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from mountfs.errors import UnsafePathError

FILE = "file"
"""Bytes stored in a chunk (or referenced in an ancestor's chunk)."""
LINK = "link"
"""An external file: bytes stay at ``target`` (a URL) and are fetched on demand."""
SYMLINK = "symlink"
"""A symbolic link whose target is ``target``; no bytes."""
TOMBSTONE = "tombstone"
"""The path, and everything below it when it is a folder, is removed."""
KINDS = (FILE, LINK, SYMLINK, TOMBSTONE)

STORED = 0
DEFLATED = 8


@dataclass(frozen=True, slots=True)
class Location:
    """Where a file's bytes are: member data of one chunk zip of one version."""

    version: str
    """The version whose data folder holds the chunk (an ancestor for deduplicated files)."""
    chunk: int
    offset: int
    """Offset of the member's data (past its local header) in the chunk."""
    stored_size: int
    method: int
    """STORED (0): the data is the file, readable by byte range. DEFLATED (8): inflate whole."""
    crc32: int
    blocks: bytes = b""
    """CRC-32 of each ``VERIFY_BLOCK`` of a large STORED member, packed (``snapshot.blocks``);
    empty for small or deflated members, which are verified whole."""


@dataclass(frozen=True, slots=True)
class Entry:
    path: str
    kind: str
    size: int = 0
    sha256: str = ""
    mode: int = 0o644
    mtime_ns: int = 0
    target: str = ""
    """Symlink target, or the URL of an external link."""
    loc: Location | None = None
    """None for tombstones, symlinks, links, and files of a draft not uploaded yet."""
    origin: str = ""
    """The version whose file table introduced this entry (set when tables are read)."""


def normalize_path(path: str) -> str:
    """Return the canonical dataset path ('a/b.txt'), rejecting anything that could escape.

    Dataset paths are relative POSIX paths with no '.', '..' or empty parts. Every path
    read from a zip, a file table or the user goes through here, so a crafted archive
    can never name a file outside the folder it is extracted to.
    """
    if not path or "\x00" in path or "\\" in path:
        raise UnsafePathError(f"unsafe dataset path: {path!r}")
    if path.startswith("/"):
        raise UnsafePathError(f"unsafe dataset path (absolute): {path!r}")
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts[:-1]) or parts[-1] in (".", ".."):
        raise UnsafePathError(f"unsafe dataset path: {path!r}")
    norm = posixpath.normpath(path)
    if norm != path.rstrip("/") or norm.startswith(".."):
        raise UnsafePathError(f"unsafe dataset path: {path!r}")
    return norm


def is_under(path: str, folder: str) -> bool:
    """True when ``path`` is ``folder`` itself or lies below it."""
    return path == folder or path.startswith(folder + "/")
