"""The read side of the overlay: the merged view of the upper rows over the lower tree, and the
plumbing every operation shares (transactions, row queries, the state of one path).

``overlay.py`` adds the operations; the rules both follow are in its docstring.
"""

from __future__ import annotations

import errno
import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from mountfs.snapshot.entries import FILE, SYMLINK, Entry
from mountfs.tree.index import DIR, DIR_MODE
from mountfs.tree.overlay_store import (
    COLUMNS,
    WHITEOUT,
    LowerTree,
    Row,
    ancestors,
    fail,
    join,
    parent_of,
    row_from,
)

UPPER = "upper"
BLOCK = 1 << 20
"""Copy-up and hashing move this much at a time: memory stays flat whatever the file size."""

RACY_NS = 2_000_000_000
"""A data file changed less than this long ago is hashed again next time (see ``sha256_of``)."""
HASH_INSERT = "INSERT OR REPLACE INTO hashes(id, size, mtime_ns, ctime_ns, sha256) VALUES (?, ?, ?, ?, ?)"


@dataclass(frozen=True, slots=True)
class Node:
    """A path of the merged view, with what the FUSE layer needs to answer and read it."""

    path: str
    kind: str
    """DIR, FILE, LINK or SYMLINK."""
    size: int
    mode: int
    """Permission bits only."""
    mtime_ns: int
    target: str = ""
    id: int = 0
    """The upper row's id (stable across renames); 0 for a path served by the lower alone."""
    data: Path | None = None
    """The upper data file holding the bytes; None when the bytes are the lower's (``entry``)."""
    entry: Entry | None = None
    """For a FILE or LINK without ``data``: the lower bytes to read (its ``loc``), under this path."""
    ref_path: str = ""
    """For a reference: the lower path the bytes were first seen at."""

    @property
    def is_dir(self) -> bool:
        return self.kind == DIR


@dataclass(slots=True)
class At:
    """Everything the rules need about one path, from one query of its rows and the lower."""

    path: str
    row: Row | None
    """The upper row at the path, whiteouts included."""
    dead: bool
    """An ancestor is a whiteout or not a folder: nothing can exist here."""
    under: Entry | None
    """The lower entry at the path, when the lower shows at this depth (whatever the row at the path is)."""
    under_dir: int | None
    """The lower folder's mtime at the path, under the same condition."""

    @property
    def lower_shows(self) -> bool:
        return self.under is not None or self.under_dir is not None


class OverlayView:
    """The merged view and the shared plumbing; thread-safe (one lock around the database)."""

    def __init__(self, folder: Path, lower: LowerTree, conn: sqlite3.Connection) -> None:
        self.folder = folder
        self.upper = folder / UPPER
        self.lower = lower
        self._conn = conn
        self._lock = threading.RLock()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- plumbing ------------------------------------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, under the lock; IMMEDIATE, so it never fails half-way upgrading a lock."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def data_path(self, rid: int) -> Path:
        return self.upper / str(rid)

    def _rows_at(self, paths: list[str]) -> dict[str, Row]:
        marks = ", ".join("?" * len(paths))
        with self._lock:
            cur = self._conn.execute(f"SELECT {COLUMNS} FROM nodes WHERE path IN ({marks})", paths)
            return {r.path: r for r in map(row_from, cur)}

    def _rows_below(self, path: str) -> list[Row]:
        """Rows strictly below folder ``path``, in path order."""
        with self._lock:
            if path == "":
                cur = self._conn.execute(f"SELECT {COLUMNS} FROM nodes WHERE path != '' ORDER BY path")
            else:
                cur = self._conn.execute(
                    f"SELECT {COLUMNS} FROM nodes WHERE path >= ? AND path < ? ORDER BY path",
                    (path + "/", path + "0"),  # '0' follows '/': exactly the paths below
                )
            return [row_from(r) for r in cur]

    def _row_by_id(self, rid: int) -> Row | None:
        with self._lock:
            found = self._conn.execute(f"SELECT {COLUMNS} FROM nodes WHERE id = ?", (rid,)).fetchone()
        return None if found is None else row_from(found)

    def _at(self, path: str, *, lower: bool = True) -> At:
        chain = ancestors(path)
        rows = self._rows_at([*chain, path])
        dead = hidden = False
        for folder in chain:
            r = rows.get(folder)
            if r is None:
                continue
            if r.kind != DIR:
                dead = True
                break
            if r.opaque:
                hidden = True
        at = At(path, rows.get(path), dead, None, None)
        if dead or hidden or (not lower and at.row is not None):
            return at
        at.under = self.lower.get(path)
        if at.under is None:
            at.under_dir = self.lower.folder(path)
        return at

    def _node_of(self, at: At) -> Node | None:
        r = at.row
        if at.dead:
            return None
        if r is not None:
            return None if r.kind == WHITEOUT else self._row_node(r)
        if at.under is not None:
            e = at.under
            return Node(
                e.path, e.kind, e.size, e.mode, e.mtime_ns, e.target, entry=None if e.kind == SYMLINK else e
            )
        if at.under_dir is not None or at.path == "":
            return Node(at.path, DIR, 0, DIR_MODE, at.under_dir or 0)
        return None

    def _row_node(self, r: Row) -> Node:
        if r.kind == DIR:
            return Node(r.path, DIR, 0, r.mode, r.mtime_ns, id=r.id)
        if r.kind == SYMLINK:
            return Node(r.path, SYMLINK, r.size, r.mode, r.mtime_ns, r.target, id=r.id)
        if r.data:
            data = self.data_path(r.id)
            try:
                st = os.stat(data)
                size, mtime = st.st_size, st.st_mtime_ns
            except FileNotFoundError:  # only after power loss before the bytes were ever synced
                size, mtime = 0, r.mtime_ns
            return Node(r.path, FILE, size, r.mode, mtime, id=r.id, data=data)
        return Node(r.path, r.kind, r.size, r.mode, r.mtime_ns, r.target, r.id, None, r.entry(), r.ref_path)

    def _parent_folder(self, path: str) -> None:
        """Raise what POSIX raises when ``path``'s parent is not a folder: ENOTDIR if something on
        the way is a non-folder, ENOENT if something is missing."""
        parent = self.lookup(parent_of(path))
        if parent is not None and parent.is_dir:
            return
        for folder in [*ancestors(path)[1:], parent_of(path)]:
            node = self.lookup(folder)
            if node is None:
                fail(errno.ENOENT, path)
            if not node.is_dir:
                fail(errno.ENOTDIR, path)
        fail(errno.ENOENT, path)

    def _existing(self, path: str) -> tuple[At, Node]:
        at = self._at(path)
        node = self._node_of(at)
        if node is None:
            self._parent_folder(path)
            fail(errno.ENOENT, path)
        return at, node

    def _drop_data(self, ids: list[int]) -> None:
        for rid in ids:
            with suppress(FileNotFoundError):
                os.unlink(self.data_path(rid))

    def _delete_tree_rows(self, conn: sqlite3.Connection, path: str) -> list[int]:
        """Delete the row at ``path`` and every row below it; return the ids whose data files to drop."""
        where = "(path = ? OR (path >= ? AND path < ?))"
        params = (path, path + "/", path + "0")
        ids = [r[0] for r in conn.execute(f"SELECT id FROM nodes WHERE data = 1 AND {where}", params)]
        conn.execute(f"DELETE FROM nodes WHERE {where}", params)
        return ids

    def _sync_upper_dir(self) -> None:
        fd = os.open(self.upper, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- the merged view -----------------------------------------------------------------------

    def lookup(self, path: str) -> Node | None:
        return self._node_of(self._at(path, lower=False))

    def getattr(self, path: str) -> Node:
        return self._existing(path)[1]

    def node(self, rid: int) -> Node | None:
        """The merged node of upper row ``rid`` (an open file's handle keeps its id across renames)."""
        r = self._row_by_id(rid)
        return None if r is None or r.kind == WHITEOUT else self._row_node(r)

    def readlink(self, path: str) -> str:
        node = self.getattr(path)
        if node.kind != SYMLINK:
            fail(errno.EINVAL, path)
        return node.target

    def listdir(self, path: str, after: str = "", limit: int = 0) -> list[Node]:
        """Children of folder ``path`` named after ``after``, by name (at most ``limit`` if set).

        Two sorted streams merged (the lower's children and the upper rows), so paging
        through a huge folder stays linear.
        """
        at, node = self._existing(path)
        if not node.is_dir:
            fail(errno.ENOTDIR, path)
        lower_shows = (at.under_dir is not None or path == "") and not (at.row is not None and at.row.opaque)
        lower_iter = self.lower.list_dir(path, after) if lower_shows else iter(())
        out: list[Node] = []
        with self._lock:  # the cursor is read as the listing goes: a page costs its size, not the folder's
            cur = self._conn.execute(
                f"SELECT {COLUMNS} FROM nodes WHERE parent = ? AND path > ? AND path != '' ORDER BY path",
                (path, join(path, after) if after else ""),
            )
            upper = map(row_from, cur)
            urow = next(upper, None)
            nxt = next(lower_iter, None)
            while (limit == 0 or len(out) < limit) and (urow is not None or nxt is not None):
                if urow is not None:
                    uname = urow.path.rpartition("/")[2]
                    if nxt is None or uname <= nxt[0]:
                        if nxt is not None and nxt[0] == uname:
                            nxt = next(lower_iter, None)
                        if urow.kind != WHITEOUT:
                            out.append(self._row_node(urow))
                        urow = next(upper, None)
                        continue
                assert nxt is not None
                name, e, mtime = nxt
                child = join(path, name)
                if e is None:
                    out.append(Node(child, DIR, 0, DIR_MODE, mtime))
                else:
                    entry = e if e.kind != SYMLINK else None
                    out.append(Node(child, e.kind, e.size, e.mode, e.mtime_ns, e.target, entry=entry))
                nxt = next(lower_iter, None)
        return out

    # -- hashing -------------------------------------------------------------------------------

    def _cache_hash(self, conn: sqlite3.Connection, rid: int, sha: str) -> None:
        st = os.stat(self.data_path(rid))
        conn.execute(
            HASH_INSERT,
            (rid, st.st_size, st.st_mtime_ns, st.st_ctime_ns, sha),
        )

    def sha256_of(self, rid: int) -> str:
        """SHA-256 of data file ``rid``, streamed, cached per version of the file (its size, mtime
        and ctime; ``sync`` and ``truncate`` drop the entry).

        File times come from a coarse clock (a few ms), so a write just after the hash can leave
        all three unchanged. As git does with "racily clean" files, a hash is cached only when
        the file's last change is older than ``RACY_NS``: any later write then gets a later ctime.
        """
        data = self.data_path(rid)
        st = os.stat(data)
        key = (st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        with self._lock:
            found = self._conn.execute(
                "SELECT size, mtime_ns, ctime_ns, sha256 FROM hashes WHERE id = ?", (rid,)
            ).fetchone()
        if found is not None and tuple(found[:3]) == key:
            return str(found[3])
        digest = hashlib.sha256()
        with open(data, "rb") as f:
            while block := f.read(BLOCK):
                digest.update(block)
        sha = digest.hexdigest()
        after = os.stat(data)
        settled = time.time_ns() - after.st_ctime_ns > RACY_NS
        if settled and (after.st_size, after.st_mtime_ns, after.st_ctime_ns) == key:
            with self._tx() as conn:
                if conn.execute("SELECT 1 FROM nodes WHERE id = ? AND data = 1", (rid,)).fetchone():
                    conn.execute(HASH_INSERT, (rid, *key, sha))
        return sha

    def rows(self) -> list[Row]:
        """Every upper row, in path order."""
        return [*self._rows_at([""]).values(), *self._rows_below("")]

    def check(self) -> list[str]:
        """The invariants of the module docstring, as a list of what breaks them (empty: sound).

        For tests and for a ``doctor``-style command; it reads every row, so it is not for hot paths.
        """
        problems: list[str] = []
        rows = self.rows()
        for r in rows:
            if r.path == "":
                if r.kind != DIR or r.opaque:
                    problems.append("the root row is not a plain folder")
                continue
            at = self._at(r.path)
            if at.dead:
                problems.append(f"{r.path}: a row below a whiteout or a non-folder")
            parent = self.lookup(parent_of(r.path))
            if parent is None or not parent.is_dir:
                problems.append(f"{r.path}: its parent is not a folder of the merged view")
            if r.kind == WHITEOUT and not at.lower_shows:
                problems.append(f"{r.path}: a whiteout over nothing of the lower")
            if r.data and not self.data_path(r.id).is_file():
                problems.append(f"{r.path}: data file {r.id} is missing")
            if r.kind not in (DIR, WHITEOUT, SYMLINK) and not r.data and not r.sha256:
                problems.append(f"{r.path}: a reference without a hash")
        owned = {str(r.id) for r in rows if r.data}
        problems += [f"upper/{name}: owned by no row" for name in sorted(set(os.listdir(self.upper)) - owned)]
        return problems

    def is_empty(self) -> bool:
        with self._lock:
            return self._conn.execute("SELECT 1 FROM nodes LIMIT 1").fetchone() is None
