"""The content cache: store bytes kept on this machine, addressed by SHA-256, shared by every version.

Several processes (a `get`, two mounts, a CLI `verify`) use one cache at once, so every change to
``objects/`` (publishing an entry, dropping a stale one, evicting) happens inside one SQLite write
transaction: the database lock is the cache lock, and its rows always describe the files.
Bytes are hashed as they arrive and only a verified temp file is renamed into place, so an entry
is never corrupt when it appears; afterwards each entry's (size, mtime_ns, inode) recorded at
insert is compared on every lookup, which catches anything that rewrites the file (objects are
0o444, so writing one needs a chmod first) at the cost of one stat, not a re-hash.

Entries are not fsynced: a crash can lose recent entries' data, which costs a refetch, while an
fsync per file would make a `get` of many small files disk-bound.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

from mountfs.errors import IntegrityError, UsageError

_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_TEMP_MAX_AGE = 3600.0
_FLUSH_INTERVAL = 0.5
_ROW = "SELECT size, mtime_ns, ino FROM objects WHERE sha = ?"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    sha TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    last_used INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS objects_lru ON objects (last_used);
CREATE TABLE IF NOT EXISTS usage (id INTEGER PRIMARY KEY CHECK (id = 0), total INTEGER NOT NULL);
INSERT OR IGNORE INTO usage VALUES (0, (SELECT COALESCE(SUM(size), 0) FROM objects));
CREATE TRIGGER IF NOT EXISTS usage_ins AFTER INSERT ON objects
    BEGIN UPDATE usage SET total = total + NEW.size WHERE id = 0; END;
CREATE TRIGGER IF NOT EXISTS usage_del AFTER DELETE ON objects
    BEGIN UPDATE usage SET total = total - OLD.size WHERE id = 0; END;
CREATE TRIGGER IF NOT EXISTS usage_upd AFTER UPDATE OF size ON objects
    BEGIN UPDATE usage SET total = total - OLD.size + NEW.size WHERE id = 0; END;
"""
_BATCH_ROWS = 256


def _check_sha(sha256: str) -> str:
    if not _SHA_RE.match(sha256):
        raise UsageError(f"not a lowercase hex SHA-256: {sha256!r}")
    return sha256


def _stamp(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def _stat_or_none(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


class CacheWriter:
    """Hashes and counts while writing, so verification costs no second read."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, b: bytes) -> None:
        self._f.write(b)
        self._hash.update(b)
        self.size += len(b)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


class ContentCache:
    """Bounded in bytes (LRU, checked on insert); safe for several processes and threads.

    An object larger than ``max_bytes`` is still inserted, since the caller needs it now; it
    then evicts everything else and is itself the first to go on the next insert.
    """

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = Path(root)
        self.max_bytes = int(max_bytes)
        self._objects = self.root / "objects"
        self._tmp = self.root / "tmp"
        self._db = self.root / "cache.db"
        self._objects.mkdir(parents=True, exist_ok=True)
        self._tmp.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        # Objects renamed into place whose rows are not committed yet (inside batch()).
        self._queued: dict[str, tuple[int, int, int, int]] = {}
        self._queue_lock = threading.Lock()
        self._batch_depth = 0
        self._pending: dict[str, int] = {}
        self._pending_lock = threading.Lock()
        self._last_flush = time.monotonic()
        conn = self._conn()
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(_SCHEMA)
        self._remove_old_temps()

    # -- plumbing -----------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        """One connection per thread: sqlite3 connections must not be shared across threads."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self._db, timeout=30.0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    @contextmanager
    def _write_txn(self) -> Iterator[sqlite3.Connection]:
        """The cache-wide lock: file changes made inside are serialised with every other process's."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _remove_old_temps(self) -> None:
        cutoff = time.time() - _TEMP_MAX_AGE
        for entry in os.scandir(self._tmp):
            with suppress(FileNotFoundError):
                if entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)

    def _flush(self) -> None:
        with self._pending_lock:
            pending, self._pending = self._pending, {}
            self._last_flush = time.monotonic()
        if not pending:
            return
        try:
            with self._write_txn() as conn:
                conn.executemany(
                    "UPDATE objects SET last_used = max(last_used, ?) WHERE sha = ?",
                    [(t, sha) for sha, t in pending.items()],
                )
        except sqlite3.OperationalError:
            # Recency is advisory; keep it for the next flush rather than fail a read.
            with self._pending_lock:
                for sha, t in pending.items():
                    self._pending[sha] = max(t, self._pending.get(sha, 0))

    def _touch(self, sha256: str) -> None:
        self._pending[sha256] = time.time_ns()
        if time.monotonic() - self._last_flush >= _FLUSH_INTERVAL:
            self._flush()

    def _drop_if_stale(self, sha256: str) -> None:
        """Re-check under the lock: another process may have replaced the entry since we looked."""
        path = self.path_for(sha256)
        with self._write_txn() as conn:
            row = conn.execute(_ROW, (sha256,)).fetchone()
            st = _stat_or_none(path)
            if row is not None and st is not None and _stamp(st) == tuple(row):
                return
            conn.execute("DELETE FROM objects WHERE sha = ?", (sha256,))
            if st is not None:
                path.unlink(missing_ok=True)

    # -- reading ------------------------------------------------------------------------------

    def path_for(self, sha256: str) -> Path:
        return self._objects / sha256[:2] / _check_sha(sha256)

    def lookup(self, sha256: str) -> Path | None:
        """The entry's path if it is still exactly what was inserted; a stale entry is dropped."""
        path = self.path_for(sha256)
        queued = self._queued.get(sha256)
        row = queued[:3] if queued is not None else self._conn().execute(_ROW, (sha256,)).fetchone()
        if row is None:
            return None  # a file without a row is an insert in progress or a crash's leftover
        st = _stat_or_none(path)
        if st is not None and _stamp(st) == tuple(row):
            self._touch(sha256)
            return path
        self._drop_if_stale(sha256)
        return None

    def link_into(self, sha256: str, dest: Path) -> bool:
        """Hard-link the entry to dest; False if it is gone (evicted), EXDEV goes up for a copy fallback."""
        path = self.lookup(sha256)
        if path is None:
            return False
        try:
            os.link(path, dest)
        except FileNotFoundError:
            if path.exists():
                raise  # dest's folder is missing: the caller's problem, not an eviction
            return False
        return True

    def copy_into(self, sha256: str, dest: Path, mode: int = 0o644) -> bool:
        """A writable copy of the entry; False if it is gone (evicted)."""
        path = self.lookup(sha256)
        if path is None:
            return False
        try:
            shutil.copyfile(path, dest)
        except FileNotFoundError:
            if path.exists():
                raise
            return False
        os.chmod(dest, mode)
        return True

    def usage(self) -> int:
        row = self._conn().execute("SELECT total FROM usage WHERE id = 0").fetchone()
        return int(row[0])

    def verify(self, sha256: str) -> bool:
        """Re-hash the entry fully; a mismatching entry is dropped so it is never served."""
        path = self.path_for(sha256)
        h = hashlib.sha256()
        try:
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
        except FileNotFoundError:
            return False
        if h.hexdigest() == sha256:
            return True
        with self._write_txn() as conn:
            conn.execute("DELETE FROM objects WHERE sha = ?", (sha256,))
            path.unlink(missing_ok=True)
        return False

    # -- writing ------------------------------------------------------------------------------

    @contextmanager
    def writer(self, sha256: str, size: int) -> Iterator[CacheWriter]:
        """Stream bytes in; they become an entry only if their SHA-256 and size are the expected ones."""
        _check_sha(sha256)
        tmp = self._tmp / f"{os.getpid()}-{secrets.token_hex(8)}.tmp"
        f: BinaryIO = open(tmp, "xb")  # noqa: SIM115 - closed in finally, after the rename decision
        try:
            w = CacheWriter(f)
            yield w
            f.close()
            digest = w.hexdigest()
            if w.size != size or digest != sha256:
                raise IntegrityError(
                    f"cache insert rejected: expected {size} bytes with sha256 {sha256}, "
                    f"got {w.size} bytes with sha256 {digest}"
                )
            self._publish(sha256, tmp)
        finally:
            f.close()
            tmp.unlink(missing_ok=True)

    def _publish(self, sha256: str, tmp: Path) -> None:
        os.chmod(tmp, 0o444)
        final = self.path_for(sha256)
        final.parent.mkdir(exist_ok=True)
        now = time.time_ns()
        if self._batch_depth > 0:
            # Inside batch(): rename now (the caller links the file next), commit rows in groups.
            os.replace(tmp, final)
            stamp = _stamp(os.stat(final))
            with self._queue_lock:
                self._queued[sha256] = (*stamp, now)
                full = len(self._queued) >= _BATCH_ROWS
            if full:
                self._commit_queued(keep=sha256)
            return
        with self._write_txn() as conn:
            row = conn.execute(_ROW, (sha256,)).fetchone()
            st = _stat_or_none(final)
            if row is not None and st is not None and _stamp(st) == tuple(row):
                # Another process got here first with the same bytes: keep theirs.
                conn.execute("UPDATE objects SET last_used = ? WHERE sha = ?", (now, sha256))
            else:
                os.replace(tmp, final)
                size, mtime_ns, ino = _stamp(os.stat(final))
                conn.execute(
                    "INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?, ?)",
                    (sha256, size, mtime_ns, ino, now),
                )
        self._evict(0, keep=sha256)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group inserts: rows are committed a few hundred at a time, eviction checked per group.

        A `get` of 100,000 small files would otherwise pay one write transaction per file.
        Entries are usable (lookup, link_into) as soon as they are inserted, committed or not.
        """
        with self._queue_lock:
            self._batch_depth += 1
        try:
            yield
        finally:
            with self._queue_lock:
                self._batch_depth -= 1
            self._commit_queued()

    def _commit_queued(self, keep: str | None = None) -> None:
        """Commit queued rows; ``keep`` (the object the caller is about to link) is not evicted."""
        with self._queue_lock:
            queued = dict(self._queued)
        if not queued:
            return
        with self._write_txn() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?, ?)",
                [(sha, *row) for sha, row in queued.items()],
            )
        with self._queue_lock:
            for sha in queued:
                self._queued.pop(sha, None)
        self._evict(0, keep=keep)

    def insert_file(self, sha256: str, src: Path) -> Path:
        with open(src, "rb") as f, self.writer(sha256, os.fstat(f.fileno()).st_size) as w:
            while chunk := f.read(1 << 20):
                w.write(chunk)
        return self.path_for(sha256)

    # -- space --------------------------------------------------------------------------------

    def evict(self, need: int = 0) -> int:
        """Free least-recently-used entries until ``need`` more bytes fit; returns the bytes freed."""
        return self._evict(need, keep=None)

    def _evict(self, need: int, keep: str | None) -> int:
        conn = self._conn()
        total = int(conn.execute("SELECT total FROM usage WHERE id = 0").fetchone()[0])
        if total + need <= self.max_bytes:
            return 0  # the common case costs one indexed read, not a scan
        self._flush()  # so this process's own recent reads count
        freed = 0
        with self._write_txn() as conn:
            total = int(conn.execute("SELECT total FROM usage WHERE id = 0").fetchone()[0])
            cursor = conn.execute("SELECT sha, size FROM objects ORDER BY last_used, sha")
            victims = []
            for sha, size in cursor:
                if total + need <= self.max_bytes:
                    break
                if sha == keep:
                    continue
                victims.append(sha)
                total -= size
                freed += size
            cursor.close()
            for sha in victims:
                conn.execute("DELETE FROM objects WHERE sha = ?", (sha,))
                self.path_for(sha).unlink(missing_ok=True)
        return int(freed)

    def clear(self) -> None:
        with self._pending_lock:
            self._pending.clear()
        with self._write_txn() as conn:
            conn.execute("DELETE FROM objects")
            for sub in os.scandir(self._objects):
                if sub.is_dir(follow_symlinks=False):
                    shutil.rmtree(sub.path)
                else:
                    os.unlink(sub.path)

    def close(self) -> None:
        """Flush pending rows and recency updates and close every thread's connection."""
        self._commit_queued()
        self._flush()
        with self._conns_lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            conn.close()
        self._local = threading.local()

    def __enter__(self) -> ContentCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
