"""The writable layer of a mount: an upper tree on local disk over a version's read-only tree.

Layout of the overlay folder: ``overlay.db`` (SQLite, WAL, synchronous=FULL) holds one row
per upper path in ``nodes``; ``upper/<id>`` holds the bytes of a row whose data is local.
Data files are named by the row's id, never by path, so a rename is one UPDATE and never
moves bytes; ids come from AUTOINCREMENT and are never reused, so a data file left by a
crash can never be taken for a later row's.

Rows (``overlay_store.Row``): a FILE or LINK row holds its bytes in ``upper/<id>`` or
*references* lower bytes (sha256 + Location, and the lower path they came from); a DIR row
is *opaque* when nothing of the lower below it shows through; a WHITEOUT row hides the
lower path and everything below it. The merged view of a path: the closest row on the way
down decides (a whiteout or non-folder above hides it, an opaque folder above hides the
lower but not rows); with no row at the path, the lower shows unless hidden.

Invariants (every operation keeps them, in one transaction):
- a row's parent is a folder of the merged view; no row lies below a whiteout or a non-folder;
- a whiteout is recorded only where the lower shows something, and only rows make
  changes: ``rm -r`` of a folder of N lower files deletes the upper rows below it and adds
  exactly one whiteout (also when it arrives as N unlinks and an rmdir: removing a folder
  drops the whiteouts below it);
- a non-opaque DIR row is metadata only (a chmod, utimens, or the mtime a folder takes when
  an entry is added or removed, as on a local filesystem): it hides nothing and commits
  nothing, since a version's tree has no folders of its own;
- a renamed folder is *materialised*: in the rename's transaction the lower paths that
  showed under it become reference rows (no bytes copied), its upper rows are re-keyed, the
  new folder is opaque and the old path gets one whiteout. It costs one row per moved lower
  file, once, and keeps every lookup a single indexed query (no redirect chains);
- renamed or copied lower files stay references, so commit stores them without upload.

Write order and crash safety (kill -9 at any point gives the old or the new state of the
operation in flight, and everything acknowledged before it):
- metadata operations are one SQLite transaction each (WAL, synchronous=FULL);
- copy-up streams the lower bytes into ``upper/.tmp-*`` in blocks, fsyncs it, then in
  one transaction records the row and renames the file to ``upper/<id>`` (and fsyncs
  ``upper/``) before COMMIT. A crash before COMMIT leaves a temp or unrecorded file,
  removed by the next open, and the old row;
- writes go straight to the data file (its size and mtime are the truth the view shows:
  the page cache survives kill -9); ``sync`` fsyncs the data and then records size and
  mtime, so an fsync'd or closed file survives power loss too;
- a removal deletes rows first and data files after COMMIT; a crash between leaves
  unrecorded files, removed by the next open;
- ``clear`` is one transaction (all rows go, the pinned lower version changes), then the
  data files are removed: a crash leaves the old overlay or an empty one on the new version.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import suppress
from dataclasses import replace
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

from mountfs.errors import IntegrityError
from mountfs.snapshot.entries import FILE, SYMLINK, Entry, is_under
from mountfs.tree import overlay_changes
from mountfs.tree.index import DIR, DIR_MODE, TreeIndex
from mountfs.tree.overlay_changes import Change
from mountfs.tree.overlay_store import (
    SCHEMA,
    WHITEOUT,
    IndexLower,
    LowerTree,
    Row,
    ancestors,
    fail,
    insert,
    insert_many,
    parent_of,
    ref_row,
)
from mountfs.tree.overlay_view import BLOCK, UPPER, At, Node, OverlayView

FORMAT = "dsmount.overlay/1"
DB_NAME = "overlay.db"
Reader = Callable[[int, int], bytes]
"""read(offset, size) of the lower bytes being copied up; may return fewer bytes, never more."""


_P = ParamSpec("_P")
_T = TypeVar("_T")


def _locked(fn: Callable[Concatenate[Overlay, _P], _T]) -> Callable[Concatenate[Overlay, _P], _T]:
    """Run a mutation under the overlay's lock from its checks to its commit: the FUSE layer calls
    from many threads, and a rename checked against one state must not commit onto another."""

    @functools.wraps(fn)
    def run(self: Overlay, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        with self._lock:
            return fn(self, *args, **kwargs)

    return run


class Overlay(OverlayView):
    """The upper layer of one writable mount: the merged view plus every operation; thread-safe.

    Paths are canonical dataset paths ('a/b.txt', '' for the root), as the FUSE layer builds
    them from a parent's path and a name; they are not validated again here. Every error is
    an OSError with the errno POSIX gives (``overlay_store.fail``).
    """

    # -- opening ------------------------------------------------------------------------------

    @classmethod
    def open(cls, folder: Path, lower: LowerTree | TreeIndex) -> Overlay:
        """Open (or create) the overlay in ``folder`` over ``lower``.

        The overlay records the version it sits on: opening a non-empty overlay over another
        version is refused (its whiteouts and references only mean something over their own
        lower). Leftovers of a crash (temp files, data files no row owns) are removed here.
        """
        folder = Path(folder)
        lower_tree: LowerTree = IndexLower(lower) if isinstance(lower, TreeIndex) else lower
        (folder / UPPER).mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(folder / DB_NAME, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(SCHEMA)
            ov = cls(folder, lower_tree, conn)
            with ov._tx():
                meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
                if meta.get("format", FORMAT) != FORMAT:
                    raise IntegrityError(
                        f"overlay {folder} has format {meta['format']!r}, expected {FORMAT!r}"
                    )
                pinned = meta.get("lower_version")
                busy = conn.execute("SELECT 1 FROM nodes LIMIT 1").fetchone() is not None
                if pinned is not None and pinned != lower_tree.version and busy:
                    raise IntegrityError(
                        f"overlay {folder} holds changes to version {pinned}, not {lower_tree.version}"
                    )
                conn.executemany(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                    [("format", FORMAT), ("lower_version", lower_tree.version)],
                )
            ov._remove_orphans()
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise IntegrityError(f"overlay {folder} is unreadable: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        return ov

    @staticmethod
    def pinned_version(folder: Path) -> str | None:
        """The version an existing overlay sits on (after a commit: the child), None if there is none."""
        return Overlay.read_meta(folder).get("lower_version")

    @staticmethod
    def read_meta(folder: Path) -> dict[str, str]:
        """An overlay's meta without opening it for writing (empty when there is no overlay): a
        mount reads here whether a commit was interrupted before it takes the overlay's lock."""
        db = Path(folder) / DB_NAME
        if not db.is_file():
            return {}
        try:
            conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
            try:
                rows = conn.execute("SELECT key, value FROM meta").fetchall()
            finally:
                conn.close()
        except sqlite3.Error as exc:
            raise IntegrityError(f"overlay {folder} is unreadable: {exc}") from exc
        return {str(k): str(v) for k, v in rows}

    def __enter__(self) -> Overlay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _remove_orphans(self) -> None:
        with self._lock:
            owned = {str(r[0]) for r in self._conn.execute("SELECT id FROM nodes WHERE data = 1")}
        for name in os.listdir(self.upper):
            if name not in owned:
                with suppress(FileNotFoundError):
                    os.unlink(self.upper / name)

    # -- creating ------------------------------------------------------------------------------

    def _new_path(self, path: str) -> At:
        if path == "":
            fail(errno.EEXIST, path)
        self._parent_folder(path)
        at = self._at(path)
        if self._node_of(at) is not None:
            fail(errno.EEXIST, path)
        return at

    def _put_new(self, at: At, row: Row) -> int:
        with self._tx() as conn:
            if at.row is not None:  # a whiteout
                conn.execute("DELETE FROM nodes WHERE id = ?", (at.row.id,))
            rid = insert(conn, row)
            self._touch(conn, parent_of(row.path))
            if row.data:
                fd = os.open(self.data_path(rid), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    os.utime(fd, ns=(row.mtime_ns, row.mtime_ns))
                finally:
                    os.close(fd)
        return rid

    @_locked
    def create(self, path: str, mode: int = 0o644, mtime_ns: int | None = None) -> Node:
        """A new empty regular file whose bytes are local from the start (``Node.data``)."""
        at = self._new_path(path)
        now = time.time_ns() if mtime_ns is None else mtime_ns
        rid = self._put_new(at, Row(0, path, FILE, mode & 0o7777, now, 0, data=True))
        return self._row_node(Row(rid, path, FILE, mode & 0o7777, now, 0, data=True))

    @_locked
    def mkdir(self, path: str, mode: int = DIR_MODE, mtime_ns: int | None = None) -> Node:
        """A new folder; opaque when it takes the place of something the lower still has."""
        at = self._new_path(path)
        now = time.time_ns() if mtime_ns is None else mtime_ns
        row = Row(0, path, DIR, mode & 0o7777, now, 0, opaque=at.lower_shows)
        rid = self._put_new(at, row)
        return Node(path, DIR, 0, row.mode, now, id=rid)

    @_locked
    def symlink(self, path: str, target: str, mtime_ns: int | None = None) -> Node:
        at = self._new_path(path)
        now = time.time_ns() if mtime_ns is None else mtime_ns
        size = len(target.encode())
        rid = self._put_new(at, Row(0, path, SYMLINK, 0o777, now, size, target))
        return Node(path, SYMLINK, size, 0o777, now, target, rid)

    # -- removing ------------------------------------------------------------------------------

    def _touch(self, conn: sqlite3.Connection, folder: str) -> None:
        """Set a folder's mtime to now, as a local filesystem does when an entry is added or removed
        (a lower folder gets a plain, non-opaque row: metadata only, so it hides nothing)."""
        now = time.time_ns()
        if conn.execute(
            "UPDATE nodes SET mtime_ns = ? WHERE path = ? AND kind = ?", (now, folder, DIR)
        ).rowcount:
            return
        node = self.lookup(folder)
        insert(conn, Row(0, folder, DIR, DIR_MODE if node is None else node.mode, now, 0))

    def _remove(self, at: At) -> None:
        with self._tx() as conn:
            dropped = self._delete_tree_rows(conn, at.path)
            if at.lower_shows:
                insert(conn, Row(0, at.path, WHITEOUT, 0, 0, 0))
            self._touch(conn, parent_of(at.path))
        self._drop_data(dropped)

    @_locked
    def unlink(self, path: str) -> None:
        at, node = self._existing(path)
        if node.is_dir:
            fail(errno.EISDIR, path)
        self._remove(at)

    @_locked
    def rmdir(self, path: str) -> None:
        at, node = self._existing(path)
        if not node.is_dir:
            fail(errno.ENOTDIR, path)
        if path == "":
            fail(errno.EBUSY, path)
        if self.listdir(path, limit=1):
            fail(errno.ENOTEMPTY, path)
        self._remove(at)

    @_locked
    def remove_tree(self, path: str) -> None:
        """``rm -r``: the path and everything below it, recorded as one whiteout (or none, when
        the lower never had it), whatever the number of files."""
        at, _ = self._existing(path)
        if path == "":
            fail(errno.EBUSY, path)
        self._remove(at)

    # -- renaming ------------------------------------------------------------------------------

    @_locked
    def rename(self, old: str, new: str, *, replace: bool = True) -> None:
        """POSIX rename(2) (``replace=False``: RENAME_NOREPLACE), one transaction whatever it moves."""
        if old == "" or new == "":
            fail(errno.EBUSY, old or new)
        self._parent_folder(old)  # Linux resolves both parents before looking at the source
        self._parent_folder(new)
        src_at, src = self._existing(old)
        if old == new:
            return
        # Linux checks ancestry before kinds: into its own subtree is EINVAL, onto an ancestor ENOTEMPTY.
        if is_under(new, old):
            fail(errno.EINVAL, new)
        if is_under(old, new):
            fail(errno.ENOTEMPTY, new)
        dst_at = self._at(new)
        dst = self._node_of(dst_at)
        if dst is not None:
            if not replace:
                fail(errno.EEXIST, new)
            if src.is_dir and not dst.is_dir:
                fail(errno.ENOTDIR, new)
            if not src.is_dir and dst.is_dir:
                fail(errno.EISDIR, new)
            if dst.is_dir and self.listdir(new, limit=1):
                fail(errno.ENOTEMPTY, new)
        with self._tx() as conn:
            dropped = self._delete_tree_rows(conn, new)
            if src.is_dir:
                self._move_dir(conn, src_at, src, new)
            elif src_at.row is not None:
                self._move_row(conn, src_at.row, new)
            else:
                assert src_at.under is not None
                insert(conn, ref_row(new, src_at.under, old))
            if src_at.lower_shows:
                insert(conn, Row(0, old, WHITEOUT, 0, 0, 0))
            for folder in {parent_of(old), parent_of(new)}:
                self._touch(conn, folder)
        self._drop_data(dropped)

    @staticmethod
    def _move_row(conn: sqlite3.Connection, r: Row, new: str, *, opaque: bool | None = None) -> None:
        conn.execute(
            "UPDATE nodes SET path = ?, parent = ?, opaque = COALESCE(?, opaque) WHERE id = ?",
            (new, parent_of(new), opaque, r.id),
        )

    def _move_dir(self, conn: sqlite3.Connection, at: At, src: Node, new: str) -> None:
        """Move folder ``at.path`` to ``new``: materialise the lower paths that show under it as
        rows (references, no bytes), re-key its rows, make ``new`` opaque."""
        old = at.path
        below = {r.path: r for r in self._rows_below(old)}
        lower_shows = at.under_dir is not None and not (at.row is not None and at.row.opaque)
        cut = len(old)

        def hidden(path: str) -> bool:
            """A row strictly between ``old`` and ``path`` hides the lower at ``path``."""
            for folder in ancestors(path)[old.count("/") + 2 :]:
                r = below.get(folder)
                if r is not None and (r.kind != DIR or r.opaque):
                    return True
            return False

        lo, hi = old + "/", old + "0"
        conn.execute("DELETE FROM nodes WHERE kind = ? AND path >= ? AND path < ?", (WHITEOUT, lo, hi))
        conn.execute(
            "UPDATE nodes SET path = ? || substr(path, ?), parent = ? || substr(parent, ?) "
            "WHERE path >= ? AND path < ?",
            (new, cut + 1, new, cut + 1, lo, hi),
        )
        if at.row is not None:
            self._move_row(conn, at.row, new, opaque=True)
        else:
            insert(conn, Row(0, new, DIR, src.mode, src.mtime_ns, 0, opaque=True))
        if not lower_shows:
            return

        def materialised() -> Iterator[Row]:
            """Rows for the lower paths that showed under ``old``, streamed: none of them has a row
            (those with one were moved above), so no memory grows with the folder."""
            made: set[str] = set()
            for e in self.lower.iter_entries(old):
                for folder in ancestors(e.path)[old.count("/") + 2 :]:
                    if folder in made or folder in below or hidden(folder):
                        continue
                    made.add(folder)
                    mtime = self.lower.folder(folder) or 0
                    yield Row(0, new + folder[cut:], DIR, DIR_MODE, mtime, 0)
                if e.path not in below and not hidden(e.path):
                    yield ref_row(new + e.path[cut:], e, e.path)

        insert_many(conn, materialised())

    # -- attributes and bytes ------------------------------------------------------------------

    @_locked
    def setattr(self, path: str, *, mode: int | None = None, mtime_ns: int | None = None) -> Node:
        """chmod and utimens. On a lower path this records metadata only: the bytes stay a reference."""
        at, node = self._existing(path)
        new_mode = node.mode if mode is None else mode & 0o7777
        new_mtime = node.mtime_ns if mtime_ns is None else mtime_ns
        with self._tx() as conn:
            r = at.row
            if r is not None:
                conn.execute(
                    "UPDATE nodes SET mode = ?, mtime_ns = ? WHERE id = ?", (new_mode, new_mtime, r.id)
                )
                if r.data and mtime_ns is not None:
                    with suppress(FileNotFoundError):
                        os.utime(self.data_path(r.id), ns=(mtime_ns, mtime_ns))
            elif at.under is not None:
                e = at.under
                insert(conn, replace(ref_row(path, e, path), mode=new_mode, mtime_ns=new_mtime))
            else:
                insert(conn, Row(0, path, DIR, new_mode, new_mtime, 0))
        found = self.lookup(path)
        assert found is not None
        return found

    def copy_up(self, path: str, read: Reader, *, limit: int | None = None) -> Node:
        """Give the file at ``path`` local bytes, streamed from ``read`` (the lower's bytes of
        ``lookup(path).entry``) a block at a time; only the first ``limit`` bytes when set (a
        truncate needs no more). Nothing changes until the final transaction."""
        while True:
            before = self.getattr(path)
            if before.is_dir:
                fail(errno.EISDIR, path)
            if before.kind == SYMLINK:
                fail(errno.EINVAL, path)
            if before.data is not None:
                return before
            n = before.size if limit is None else min(limit, before.size)
            tmp = self.upper / f".tmp-{uuid.uuid4().hex}"
            digest = hashlib.sha256()
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                try:
                    offset = 0
                    while offset < n:
                        block = read(offset, min(BLOCK, n - offset))
                        if not block:
                            fail(errno.EIO, path)
                        block = block[: n - offset]
                        os.pwrite(fd, block, offset)
                        digest.update(block)
                        offset += len(block)
                    os.utime(fd, ns=(before.mtime_ns, before.mtime_ns))
                    os.fsync(fd)
                finally:
                    os.close(fd)
                with self._tx() as conn:
                    at = self._at(path)
                    if self._node_of(at) != before:
                        raise _Retry
                    if at.row is not None:
                        rid = at.row.id
                        conn.execute(
                            "UPDATE nodes SET kind = ?, data = 1, size = ?, target = '', ref_path = '', "
                            "sha256 = '', loc_version = NULL, blocks = NULL WHERE id = ?",
                            (FILE, n, rid),
                        )
                    else:
                        rid = insert(conn, Row(0, path, FILE, before.mode, before.mtime_ns, n, data=True))
                    os.replace(tmp, self.data_path(rid))
                    self._sync_upper_dir()
                    self._cache_hash(conn, rid, digest.hexdigest())
            except _Retry:
                continue
            finally:
                with suppress(FileNotFoundError):
                    os.unlink(tmp)
            found = self.node(rid)
            assert found is not None
            return found

    def truncate(self, path: str, size: int, read: Reader | None = None) -> Node:
        """truncate/extend; a lower file is copied up first, but only the bytes that survive."""
        node = self.getattr(path)
        if node.is_dir:
            fail(errno.EISDIR, path)
        if node.kind == SYMLINK:
            fail(errno.EINVAL, path)
        if size < 0:
            fail(errno.EINVAL, path)
        if node.data is None:
            if read is None and min(size, node.size) > 0:
                raise ValueError("truncating a lower file to a non-zero size needs a reader")
            node = self.copy_up(path, read or _no_read, limit=size)
        with self._lock:
            found = self.node(node.id)
            if found is None or found.data is None:  # removed while its copy-up was streaming
                fail(errno.ENOENT, path)
            os.truncate(found.data, size)
            self._record(node.id)
            found = self.node(node.id)
        assert found is not None
        return found

    def write(self, path: str, offset: int, data: bytes, read: Reader | None = None) -> int:
        """pwrite through the overlay (copying up first); the FUSE layer may instead write to
        ``Node.data`` itself. Durable once ``sync`` returns."""
        node = self.getattr(path)
        if node.is_dir:
            fail(errno.EISDIR, path)
        if node.data is None:
            if read is None and node.size > 0:
                raise ValueError("writing to a lower file needs a reader for its copy-up")
            node = self.copy_up(path, read or _no_read)
        assert node.data is not None
        fd = os.open(node.data, os.O_WRONLY | os.O_CREAT, 0o600)  # O_CREAT: see OverlayView._row_node
        try:
            return os.pwrite(fd, data, offset)
        finally:
            os.close(fd)

    def sync(self, target: str | int, fd: int | None = None) -> None:
        """fsync: the data file (``fd`` if the caller holds one), then its size and mtime in one
        transaction. A target that is gone (unlinked while open) only has its data synced."""
        r = self._row_by_id(target) if isinstance(target, int) else self._at(target, lower=False).row
        if fd is not None:
            os.fsync(fd)
        if r is None or not r.data:
            return
        if fd is None:
            with suppress(FileNotFoundError):
                own = os.open(self.data_path(r.id), os.O_RDONLY)
                try:
                    os.fsync(own)
                finally:
                    os.close(own)
        self._sync_upper_dir()
        self._record(r.id)

    def _record(self, rid: int) -> None:
        try:
            st = os.stat(self.data_path(rid))
        except FileNotFoundError:
            return
        with self._tx() as conn:
            conn.execute(
                "UPDATE nodes SET size = ?, mtime_ns = ? WHERE id = ? AND data = 1",
                (st.st_size, st.st_mtime_ns, rid),
            )
            conn.execute("DELETE FROM hashes WHERE id = ?", (rid,))

    # -- the change set ------------------------------------------------------------------------

    def changes(self, *, hash: bool = False) -> list[Change]:
        """Pending changes for ``dsmount diff`` (see ``overlay_changes.changes``)."""
        return overlay_changes.changes(self, hash=hash)

    def commit_entries(self) -> list[tuple[Entry, str]]:
        """Commit's input: ``(entry, source)`` rows for a draft (see ``overlay_changes.commit_entries``)."""
        return overlay_changes.commit_entries(self)

    def clear(
        self,
        lower: LowerTree | TreeIndex | None = None,
        meta: Mapping[str, str | None] = {},
        *,
        keep: Collection[str] = (),
    ) -> None:
        """Forget every change, in one transaction, and sit on ``lower`` from now on (after a commit:
        the child version, recorded in the same transaction, so a crash leaves the old overlay on
        the old version or an empty one on the child). ``meta`` is applied in the same
        transaction (see ``set_meta``).

        ``keep``: paths whose local bytes stay (files open for writing across a commit: their
        descriptors keep pointing at rows the view still has). Their bytes must equal what
        ``lower`` holds at those paths, so they change nothing until written again."""
        new_lower: LowerTree = (
            self.lower if lower is None else IndexLower(lower) if isinstance(lower, TreeIndex) else lower
        )
        with self._tx() as conn:
            kept = {
                int(r[0])
                for path in keep
                for r in conn.execute(
                    "SELECT id FROM nodes WHERE path = ? AND data = 1 AND kind = ?", (path, FILE)
                )
            }
            dropped = [r[0] for r in conn.execute("SELECT id FROM nodes WHERE data = 1") if r[0] not in kept]
            conn.execute("CREATE TEMP TABLE IF NOT EXISTS kept(id INTEGER PRIMARY KEY)")
            conn.execute("DELETE FROM kept")
            conn.executemany("INSERT INTO kept(id) VALUES (?)", [(i,) for i in kept])
            conn.execute("DELETE FROM nodes WHERE id NOT IN (SELECT id FROM kept)")
            conn.execute("DELETE FROM hashes WHERE id NOT IN (SELECT id FROM kept)")
            conn.execute("UPDATE nodes SET ref_path = '', opaque = 0")
            conn.execute("DELETE FROM kept")
            self._put_meta(conn, {**meta, "lower_version": new_lower.version}, internal=True)
            self.lower = new_lower
        self._drop_data(dropped)  # what a crash leaves here, the next open removes

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, values: Mapping[str, str | None]) -> None:
        """Record (None: forget) caller state next to the overlay, in one transaction: commit can
        note the draft it is building, and ``clear`` forget it atomically with the changes."""
        with self._tx() as conn:
            self._put_meta(conn, values)

    @staticmethod
    def _put_meta(
        conn: sqlite3.Connection, values: Mapping[str, str | None], *, internal: bool = False
    ) -> None:
        for key, value in values.items():
            if key in _OWN_META and not internal:
                raise ValueError(f"overlay meta key {key!r} is the overlay's own")
            if value is None:
                conn.execute("DELETE FROM meta WHERE key = ?", (key,))
            else:
                conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))


_OWN_META = frozenset(("format", "lower_version"))


class _Retry(Exception):
    """The path changed while its copy-up was streaming: start again from its new state."""


def _no_read(offset: int, size: int) -> bytes:
    raise AssertionError("no bytes should be read")


__all__ = [
    "BLOCK",
    "DB_NAME",
    "FORMAT",
    "UPPER",
    "WHITEOUT",
    "Change",
    "IndexLower",
    "LowerTree",
    "Node",
    "Overlay",
    "Reader",
]
