"""The merged-tree index of a closed version: one read-only SQLite file, built once.

Merging a DAG means reading every ancestor's file table; a closed version never
changes, so the result is stored once per machine and every ``get``, ``list`` and
mount reads it instead. The mount answers lookup, getattr and readdir straight from
the ``nodes`` rows (folders included, with inode numbers), so it never holds a Python
object per file and starts without scanning anything.

Inode numbers are 1 for the root, then 2, 3, ... in path order, so the same version
always gives the same numbers and the kernel may cache them. Folder rows carry mode
0o755 (permission bits only; the FUSE layer adds the type bits), size 0 and the
newest mtime found below them.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mountfs.errors import IntegrityError
from mountfs.snapshot.entries import FILE, LINK, SYMLINK, Entry, Location

FORMAT = "dsmount.tree/2"
SUFFIX = ".tree2.sqlite"
"""File name ending of an index of this format: an older index is simply not found, and rebuilt."""
DIR = "dir"
ROOT_INO = 1
DIR_MODE = 0o755

_TREE_KINDS = (FILE, LINK, SYMLINK)

_SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE nodes(
  ino INTEGER PRIMARY KEY,
  parent INTEGER NOT NULL, name TEXT NOT NULL, path TEXT NOT NULL,
  kind TEXT NOT NULL,
  size INTEGER, sha256 TEXT, mode INTEGER, mtime_ns INTEGER, target TEXT, origin TEXT,
  loc_version TEXT, chunk INTEGER, "offset" INTEGER, stored_size INTEGER, method INTEGER, crc32 INTEGER,
  blocks BLOB);
"""
_INDEXES = """
CREATE UNIQUE INDEX nodes_parent_name ON nodes(parent, name);
CREATE UNIQUE INDEX nodes_path ON nodes(path);
"""
_COLUMNS = (
    "ino, parent, name, path, kind, size, sha256, mode, mtime_ns, target, origin, "
    'loc_version, chunk, "offset", stored_size, method, crc32, blocks'
)
_ENTRY_COLUMNS = (
    'path, kind, size, sha256, mode, mtime_ns, target, origin, loc_version, chunk, "offset", stored_size, '
    "method, crc32, blocks"
)


def _location(version: str, loc: list[Any]) -> Location:
    chunk, offset, stored_size, method, crc32, blocks = loc
    return Location(version, chunk, offset, stored_size, method, crc32, blocks or b"")


def _entry(row: tuple[Any, ...]) -> Entry:
    """Build an Entry from the columns of ``_ENTRY_COLUMNS``, in that order."""
    path, kind, size, sha256, mode, mtime_ns, target, origin, loc_version, *loc = row
    return Entry(
        path=path,
        kind=kind,
        size=size,
        sha256=sha256,
        mode=mode,
        mtime_ns=mtime_ns,
        target=target,
        loc=None if loc_version is None else _location(loc_version, loc),
        origin=origin,
    )


@dataclass(frozen=True, slots=True)
class Node:
    """One row of the index as the FUSE layer needs it: a folder or a tree entry."""

    ino: int
    parent: int
    name: str
    path: str
    kind: str
    """'dir' or an Entry kind."""
    size: int
    mode: int
    """Permission bits only."""
    mtime_ns: int
    target: str
    sha256: str = ""
    origin: str = ""
    loc: Location | None = None

    @property
    def is_dir(self) -> bool:
        return self.kind == DIR

    def entry(self) -> Entry | None:
        if self.kind == DIR:
            return None
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


def _node(row: tuple[Any, ...]) -> Node:
    ino, parent, name, path, kind, size, sha256, mode, mtime_ns, target, origin, loc_version, *loc = row
    return Node(
        ino=ino,
        parent=parent,
        name=name,
        path=path,
        kind=kind,
        size=size,
        mode=mode,
        mtime_ns=mtime_ns,
        target=target or "",
        sha256=sha256 or "",
        origin=origin or "",
        loc=None if loc_version is None else _location(loc_version, loc),
    )


_NO_LOC: tuple[None, ...] = (None,) * 7


def _loc_columns(loc: Location | None) -> tuple[Any, ...]:
    if loc is None:
        return _NO_LOC
    return (loc.version, loc.chunk, loc.offset, loc.stored_size, loc.method, loc.crc32, loc.blocks or None)


def _rows(tree: Mapping[str, Entry]) -> tuple[Iterator[tuple[Any, ...]], int, int]:
    """Every node row in inode order (generated, so a large tree is never held twice),
    the number of rows, and the total size of the entries."""
    dirs: dict[str, int] = {"": 0}  # folder -> newest mtime below it
    for path, entry in tree.items():
        if path != entry.path:
            raise IntegrityError(f"tree key {path!r} holds the entry of {entry.path!r}")
        if entry.kind not in _TREE_KINDS:
            raise IntegrityError(f"{entry.kind} entry {path!r} cannot be part of a merged tree")
        mtime = entry.mtime_ns
        if dirs[""] < mtime:
            dirs[""] = mtime
        i = path.find("/")
        while i != -1:
            folder = path[:i]
            if dirs.get(folder, -1) < mtime:
                dirs[folder] = mtime
            i = path.find("/", i + 1)
    clash = next((p for p in dirs if p in tree), None)
    if clash is not None:
        raise IntegrityError(f"{clash!r} is both a file and a folder in the tree")
    paths = sorted(dirs.keys() | tree.keys())
    inos = {p: n for n, p in enumerate(paths, start=ROOT_INO)}  # '' sorts first: the root is 1
    total = sum(e.size for e in tree.values())

    def generate() -> Iterator[tuple[Any, ...]]:
        for path in paths:
            ino = inos[path]
            cut = path.rfind("/")
            parent = inos[path[:cut]] if cut != -1 else ROOT_INO
            name = path[cut + 1 :]
            e = tree.get(path)
            if e is None:
                yield (ino, parent, name, path, DIR, 0, None, DIR_MODE, dirs[path], None, None, *_NO_LOC)
                continue
            row = (ino, parent, name, path, e.kind, e.size, e.sha256, e.mode, e.mtime_ns, e.target, e.origin)
            yield (*row, *_loc_columns(e.loc))

    return generate(), len(paths), total


class TreeIndex:
    """Read access to one version's merged-tree index; safe to share between threads."""

    def __init__(self, path: Path, version: str, count: int, total_bytes: int) -> None:
        self.path = path
        self.version = version
        self._count = count
        self._total_bytes = total_bytes
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._closed = False

    @staticmethod
    def build(path: Path, version: str, tree: Mapping[str, Entry]) -> None:
        """Write the index of ``tree`` to ``path`` atomically.

        The file appears complete or not at all (written aside, then renamed), so the
        durability pragmas can be off; builders racing on one version write identical
        content and the last rename wins.
        """
        rows, n_rows, total = _rows(tree)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            conn = sqlite3.connect(tmp_name, isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode=OFF")
                conn.execute("PRAGMA synchronous=OFF")
                conn.execute("BEGIN")
                for statement in _split(_SCHEMA):
                    conn.execute(statement)
                conn.executemany(f"INSERT INTO nodes({_COLUMNS}) VALUES ({', '.join('?' * 18)})", rows)
                for statement in _split(_INDEXES):
                    conn.execute(statement)
                meta = {
                    "version": version,
                    "format": FORMAT,
                    "entries": str(len(tree)),
                    "dirs": str(n_rows - len(tree)),
                    "bytes": str(total),
                }
                conn.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", meta.items())
                conn.execute("COMMIT")
            finally:
                conn.close()
            os.replace(tmp_name, path)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise

    @classmethod
    def open(cls, path: Path) -> TreeIndex:
        path = Path(path)
        if not path.is_file():
            raise IntegrityError(f"merged-tree index {path} is missing")
        index = cls(path, "", 0, 0)
        try:
            meta = dict(index._conn().execute("SELECT key, value FROM meta").fetchall())
            if meta.get("format") != FORMAT:
                raise IntegrityError(
                    f"merged-tree index {path} has format {meta.get('format')!r}, expected {FORMAT!r}"
                )
            index.version = meta["version"]
            index._count = int(meta["entries"])
            index._total_bytes = int(meta["bytes"])
        except (sqlite3.Error, KeyError, ValueError) as exc:
            index.close()
            raise IntegrityError(f"merged-tree index {path} is unreadable: {exc}") from exc
        except BaseException:
            index.close()
            raise
        return index

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise IntegrityError(f"merged-tree index {self.path} is closed")
            uri = f"{self.path.resolve().as_uri()}?mode=ro&immutable=1"
            # One connection per thread; check_same_thread is off only so close() can close them all.
            conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
            # A mount may run dozens of worker threads, each with its own connection: keep each
            # page cache small (the file is immutable, so the OS page cache serves repeats).
            conn.execute("PRAGMA cache_size = -512")
            with self._lock:
                self._connections.append(conn)
            self._local.conn = conn
        return conn

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        try:
            return self._conn().execute(sql, params)
        except sqlite3.Error as exc:
            raise IntegrityError(f"merged-tree index {self.path} is unreadable: {exc}") from exc

    def get(self, path: str) -> Entry | None:
        """The file, link or symlink at ``path``; None for folders, the root and absent paths."""
        row = self._query(f"SELECT {_ENTRY_COLUMNS} FROM nodes WHERE path = ? AND kind != ?", (path, DIR))
        found = row.fetchone()
        return None if found is None else _entry(found)

    def get_many(self, paths: Sequence[str]) -> dict[str, Entry]:
        """The entries at those of ``paths`` that are files, links or symlinks.

        One query per few hundred paths: comparing a folder of 100,000 files against a
        version costs a fraction of a second instead of 100,000 round trips.
        """
        out: dict[str, Entry] = {}
        for i in range(0, len(paths), 500):
            part = paths[i : i + 500]
            marks = ", ".join("?" * len(part))
            sql = f"SELECT {_ENTRY_COLUMNS} FROM nodes WHERE path IN ({marks}) AND kind != ?"
            for row in self._query(sql, (*part, DIR)):
                e = _entry(row)
                out[e.path] = e
        return out

    def is_dir(self, path: str) -> bool:
        if path == "":
            return True
        cur = self._query("SELECT 1 FROM nodes WHERE path = ? AND kind = ?", (path, DIR))
        return cur.fetchone() is not None

    def iter_entries(self, prefix: str = "") -> Iterator[Entry]:
        """Entries at or below ``prefix`` (a folder, or '' for all) in path order, read lazily."""
        if prefix == "":
            cur = self._query(f"SELECT {_ENTRY_COLUMNS} FROM nodes WHERE kind != ? ORDER BY ino", (DIR,))
        else:
            cur = self._query(
                f"SELECT {_ENTRY_COLUMNS} FROM nodes WHERE kind != ? AND "
                "(path = ? OR (path >= ? AND path < ?)) ORDER BY path",
                (DIR, prefix, prefix + "/", prefix + "0"),  # '0' follows '/': the range is 'prefix/...'
            )
        try:
            for row in cur:
                yield _entry(row)
        except sqlite3.Error as exc:
            raise IntegrityError(f"merged-tree index {self.path} is unreadable: {exc}") from exc

    def to_tree(self) -> dict[str, Entry]:
        return {e.path: e for e in self.iter_entries()}

    def count(self) -> int:
        """Number of files, links and symlinks (folders not counted)."""
        return self._count

    def total_bytes(self) -> int:
        """Sum of the entries' sizes (an external link counts its recorded size)."""
        return self._total_bytes

    def node(self, ino: int) -> Node | None:
        found = self._query(f"SELECT {_COLUMNS} FROM nodes WHERE ino = ?", (ino,)).fetchone()
        return None if found is None else _node(found)

    def lookup(self, parent_ino: int, name: str) -> Node | None:
        if name == "":  # the root is its own parent, under the empty name: never a child
            return None
        found = self._query(
            f"SELECT {_COLUMNS} FROM nodes WHERE parent = ? AND name = ?", (parent_ino, name)
        ).fetchone()
        return None if found is None else _node(found)

    def children(self, ino: int, after_name: str = "", limit: int = 1000) -> list[Node]:
        """Up to ``limit`` children of folder ``ino`` named after ``after_name``, by name.

        Paging by name rather than by offset keeps readdir linear in a huge folder.
        """
        cur = self._query(
            f"SELECT {_COLUMNS} FROM nodes WHERE parent = ? AND name > ? ORDER BY name LIMIT ?",
            (ino, after_name, limit),
        )
        return [_node(row) for row in cur]

    def files_after(self, path: str, limit: int = 32) -> list[Entry]:
        """Up to ``limit`` files following ``path`` in path order: the order chunks are written
        in, so these are the members most likely stored right after it."""
        cur = self._query(
            f"SELECT {_ENTRY_COLUMNS} FROM nodes WHERE path > ? AND kind = ? ORDER BY path LIMIT ?",
            (path, FILE, limit),
        )
        return [_entry(row) for row in cur]

    def children_after(self, ino: int, after_ino: int = 0, limit: int = 256) -> list[Node]:
        """Up to ``limit`` children of folder ``ino`` that follow child ``after_ino`` (0: from the start).

        Siblings' inode numbers are in name order (both follow path order), so a child's
        inode is a stable readdir cookie: the listing resumes right after it.
        """
        cur = self._query(
            f"SELECT {_COLUMNS} FROM nodes WHERE parent = ? AND name > "
            "COALESCE((SELECT name FROM nodes WHERE ino = ? AND parent = ?), '') ORDER BY name LIMIT ?",
            (ino, after_ino, ino, limit),
        )
        return [_node(row) for row in cur]

    def folder_ino(self, path: str) -> int | None:
        """The inode of the folder at ``path`` ('' is the root); None when it is not a folder."""
        if path == "":
            return ROOT_INO
        found = self._query("SELECT ino FROM nodes WHERE path = ? AND kind = ?", (path, DIR)).fetchone()
        return None if found is None else int(found[0])

    def child_counts(self, ino: int) -> tuple[int, int]:
        """(children, of which folders) of folder ``ino``: two index-only counts."""
        total = self._query("SELECT COUNT(*) FROM nodes WHERE parent = ? AND ino != ?", (ino, ROOT_INO))
        dirs = self._query(
            "SELECT COUNT(*) FROM nodes WHERE parent = ? AND ino != ? AND kind = ?", (ino, ROOT_INO, DIR)
        )
        return int(total.fetchone()[0]), int(dirs.fetchone()[0])

    def children_page(self, ino: int, offset: int, limit: int, folders: int) -> list[Node]:
        """Children of folder ``ino`` listed folders first, then by name, from ``offset`` (a page of
        a browsable listing). ``folders`` is how many children are folders (``child_counts``): a
        folder of files alone is paged by the ``(parent, name)`` index with no filter."""
        rows: list[Node] = []
        if offset < folders:
            cur = self._query(
                f"SELECT {_COLUMNS} FROM nodes WHERE parent = ? AND ino != ? AND kind = ? "
                "ORDER BY name LIMIT ? OFFSET ?",
                (ino, ROOT_INO, DIR, limit, offset),
            )
            rows.extend(_node(r) for r in cur)
        if len(rows) < limit:
            rest = (limit - len(rows), max(0, offset - folders))
            params: tuple[Any, ...]
            if folders == 0:
                sql, params = "parent = ? AND ino != ?", (ino, ROOT_INO, *rest)
            else:
                sql, params = "parent = ? AND ino != ? AND kind != ?", (ino, ROOT_INO, DIR, *rest)
            cur = self._query(
                f"SELECT {_COLUMNS} FROM nodes WHERE {sql} ORDER BY name LIMIT ? OFFSET ?", params
            )
            rows.extend(_node(r) for r in cur)
        return rows

    def close(self) -> None:
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()
        self._local = threading.local()

    def __enter__(self) -> TreeIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _split(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
