"""The pieces of the overlay that are not its operations: the lower-tree protocol, the
SQLite schema and row codec, and the one errno helper.

Kept apart so ``overlay.py`` reads as the POSIX rules and nothing else.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol

from mountfs.snapshot.entries import FILE, LINK, SYMLINK, Entry, Location
from mountfs.tree.index import DIR, ROOT_INO, TreeIndex

WHITEOUT = "whiteout"
"""A row kind: the path, and everything of the lower below it, is gone."""
UPPER_KINDS = (FILE, LINK, SYMLINK, DIR, WHITEOUT)


def fail(code: int, path: str) -> NoReturn:
    """Raise the OSError every overlay operation raises, so the FUSE layer maps one type to FUSEError."""
    raise OSError(code, os.strerror(code), path)


def parent_of(path: str) -> str:
    return path.rpartition("/")[0]


def ancestors(path: str) -> list[str]:
    """Proper ancestor folders of ``path``, the root ('') first."""
    if path == "":
        return []
    out = [""]
    i = path.find("/")
    while i != -1:
        out.append(path[:i])
        i = path.find("/", i + 1)
    return out


def join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


class LowerTree(Protocol):
    """What the overlay reads from the version under it (``IndexLower`` adapts a TreeIndex).

    The lower never changes while an overlay sits on it, so answers may be cached.
    """

    @property
    def version(self) -> str: ...

    def get(self, path: str) -> Entry | None:
        """The file, link or symlink at ``path``; None for folders and absent paths."""
        ...

    def folder(self, path: str) -> int | None:
        """The mtime_ns of the folder at ``path`` ('' is the root), None if it is not a folder."""
        ...

    def list_dir(self, path: str, after: str = "") -> Iterator[tuple[str, Entry | None, int]]:
        """(name, entry or None for a folder, mtime_ns) of the children named after ``after``, by name."""
        ...

    def iter_entries(self, prefix: str = "") -> Iterator[Entry]:
        """Entries at or below ``prefix`` in path order."""
        ...


class IndexLower:
    """A TreeIndex as a LowerTree: the index answers by inode, the overlay asks by path.

    Folder inodes are cached per path: the index is immutable, so the cache is never stale,
    and only folders are cached, so it grows with the folders touched, not the files.
    """

    def __init__(self, index: TreeIndex) -> None:
        self.index = index
        self._inos: dict[str, int] = {"": ROOT_INO}

    @property
    def version(self) -> str:
        return self.index.version

    def get(self, path: str) -> Entry | None:
        return self.index.get(path) if path else None

    def _folder_ino(self, path: str) -> int | None:
        ino = self._inos.get(path)
        if ino is not None:
            return ino
        parent = self._folder_ino(parent_of(path))
        if parent is None:
            return None
        node = self.index.lookup(parent, path.rpartition("/")[2])
        if node is None or not node.is_dir:
            return None
        if len(self._inos) < 65536:
            self._inos[path] = node.ino
        return node.ino

    def folder(self, path: str) -> int | None:
        ino = self._folder_ino(path)
        if ino is None:
            return None
        node = self.index.node(ino)
        return None if node is None else node.mtime_ns

    def list_dir(self, path: str, after: str = "") -> Iterator[tuple[str, Entry | None, int]]:
        ino = self._folder_ino(path)
        if ino is None:
            return
        while True:
            page = self.index.children(ino, after, 1000)
            for node in page:
                yield node.name, node.entry(), node.mtime_ns
            if len(page) < 1000:
                return
            after = page[-1].name

    def iter_entries(self, prefix: str = "") -> Iterator[Entry]:
        return self.index.iter_entries(prefix)


SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS nodes(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  path TEXT NOT NULL UNIQUE, parent TEXT NOT NULL,
  kind TEXT NOT NULL, mode INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, size INTEGER NOT NULL,
  target TEXT NOT NULL DEFAULT '', opaque INTEGER NOT NULL DEFAULT 0, data INTEGER NOT NULL DEFAULT 0,
  ref_path TEXT NOT NULL DEFAULT '', sha256 TEXT NOT NULL DEFAULT '', origin TEXT NOT NULL DEFAULT '',
  loc_version TEXT, chunk INTEGER, "offset" INTEGER, stored_size INTEGER, method INTEGER, crc32 INTEGER,
  blocks BLOB);
CREATE INDEX IF NOT EXISTS nodes_parent ON nodes(parent, path);
CREATE TABLE IF NOT EXISTS hashes(
  id INTEGER PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL,
  sha256 TEXT NOT NULL)
"""

COLUMNS = (
    "id, path, kind, mode, mtime_ns, size, target, opaque, data, ref_path, sha256, origin, "
    'loc_version, chunk, "offset", stored_size, method, crc32, blocks'
)
_INSERT_COLUMNS = COLUMNS.replace("id, path,", "path, parent,", 1)


@dataclass(frozen=True, slots=True)
class Row:
    """One record of the upper layer.

    A FILE or LINK row holds its bytes either in the data file ``upper/<id>`` (``data``) or
    as a reference to lower bytes (``sha256`` + ``loc``, and ``ref_path``, the lower path
    they were first seen at, so a rename can be told from a copy). A DIR row is ``opaque``
    when no lower path below it shows through.
    """

    id: int
    path: str
    kind: str
    mode: int
    mtime_ns: int
    size: int
    target: str = ""
    opaque: bool = False
    data: bool = False
    ref_path: str = ""
    sha256: str = ""
    origin: str = ""
    loc: Location | None = None

    def entry(self) -> Entry:
        """The lower bytes this reference row points at, under the row's own path and metadata."""
        return Entry(
            path=self.path,
            kind=self.kind,
            size=self.size,
            sha256=self.sha256,
            mode=self.mode,
            mtime_ns=self.mtime_ns,
            target=self.target,
            loc=self.loc,
            origin=self.origin,
        )


def row_from(values: tuple[Any, ...]) -> Row:
    (rid, path, kind, mode, mtime_ns, size, target, opaque, data, ref_path, sha256, origin, lv, *loc) = values
    location = None
    if lv is not None:
        chunk, offset, stored_size, method, crc32, blocks = loc
        location = Location(lv, chunk, offset, stored_size, method, crc32, blocks or b"")
    return Row(
        rid,
        path,
        kind,
        mode,
        mtime_ns,
        size,
        target,
        bool(opaque),
        bool(data),
        ref_path,
        sha256,
        origin,
        location,
    )


def ref_row(path: str, e: Entry, ref_path: str) -> Row:
    """A row pointing at the lower bytes of ``e`` from ``path`` (a lower file renamed or chmod-ed)."""
    return Row(
        0,
        path,
        e.kind,
        e.mode,
        e.mtime_ns,
        e.size,
        e.target,
        False,
        False,
        ref_path,
        e.sha256,
        e.origin,
        e.loc,
    )


def _params(r: Row) -> tuple[Any, ...]:
    loc = r.loc
    loc_cols: tuple[Any, ...] = (
        (None,) * 7
        if loc is None
        else (loc.version, loc.chunk, loc.offset, loc.stored_size, loc.method, loc.crc32, loc.blocks or None)
    )
    return (
        r.path,
        parent_of(r.path),
        r.kind,
        r.mode,
        r.mtime_ns,
        r.size,
        r.target,
        int(r.opaque),
        int(r.data),
        r.ref_path,
        r.sha256,
        r.origin,
        *loc_cols,
    )


_INSERT = f"INSERT INTO nodes({_INSERT_COLUMNS}) VALUES ({', '.join('?' * 19)})"


def insert(conn: sqlite3.Connection, r: Row) -> int:
    """Insert ``r`` (its id ignored) and return the new id; ids are never reused (AUTOINCREMENT),
    so a data file left over from a crash can never be taken for a new row's."""
    rid = conn.execute(_INSERT, _params(r)).lastrowid
    assert rid is not None
    return rid


def insert_many(conn: sqlite3.Connection, rows: Iterable[Row]) -> None:
    conn.executemany(_INSERT, map(_params, rows))
