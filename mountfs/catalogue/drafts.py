"""Drafts and their pending changes: the only part of the catalogue that is not a cache.

A draft lives on one machine until it is closed; its pending rows are what ``add``,
``remove`` and ``sync`` decided and what ``upload`` still has to do. Losing the
catalogue loses these, so every change here is one SQLite transaction and the upload's
progress is recorded in the same transaction as the chunk that carries it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from sys import intern
from typing import Any

from mountfs.errors import DatasetNotFoundError, MountfsError, PathNotFoundError, StateError
from mountfs.snapshot.entries import Entry, Location
from mountfs.snapshot.manifest import ChunkRef

PAGE = 2000
"""Rows per read while streaming pending rows: no read transaction outlives a page."""


@dataclass(frozen=True)
class Draft:
    """A version created and not yet closed; a snapshot of its row (change it with update_draft)."""

    id: str
    project: str
    name: str
    version: str
    parents: tuple[str, ...]
    data_url: str
    chunk_size: int
    created: str
    user: str
    host: str
    tags: tuple[str, ...] = ()
    description: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    oplog: list[dict[str, Any]] = field(default_factory=list)
    chunks: list[ChunkRef] = field(default_factory=list)
    version_auto: bool = False
    """The version number was picked, not asked for: close may move it on if another machine
    claimed it first (explicit numbers fail instead)."""


_DRAFT_FIELDS = frozenset(f.name for f in dataclasses.fields(Draft))
_JSON_FIELDS = frozenset({"parents", "tags", "metadata", "oplog", "chunks"})

_PENDING_COLUMNS = (
    "path, kind, size, sha256, mode, mtime_ns, target, "
    'loc_version, chunk, "offset", stored_size, method, crc32, origin, source, blocks'
)
_PENDING_INSERT = f"INSERT OR REPLACE INTO pending (draft, {_PENDING_COLUMNS}) VALUES ({', '.join('?' * 17)})"


@contextlib.contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction that takes the write lock up front.

    BEGIN IMMEDIATE waits (busy timeout) for other processes' writers; a deferred
    transaction that read first would instead fail at once with 'database is locked'
    when another process committed in between. Nested use joins the outer transaction.
    """
    if conn.in_transaction:
        yield conn
        return
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise MountfsError(f"the catalogue stayed locked by another process: {exc}") from exc
        raise
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        conn.rollback()  # a no-op when the error already ended the transaction
        raise


def create_draft_schema(db: Any) -> None:
    """Tables for drafts; ``db`` is a sqlite_utils.Database inside a write transaction."""
    db["drafts"].create(
        {
            "id": str,
            "project": str,
            "name": str,
            "version": str,
            "parents": str,
            "data_url": str,
            "chunk_size": int,
            "created": str,
            "user": str,
            "host": str,
            "tags": str,
            "description": str,
            "metadata": str,
            "oplog": str,
            "chunks": str,
            "version_auto": int,
        },
        pk="id",
        not_null=["project", "name", "version", "created"],
        if_not_exists=True,
    )
    db["drafts"].create_index(["project", "name"], if_not_exists=True)
    # Raw SQL because sqlite-utils cannot say WITHOUT ROWID: clustering rows on
    # (draft, path) makes the path-ordered stream a sequential read and halves the
    # storage of 100,000-row drafts (no separate primary-key index).
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS pending (
            draft TEXT NOT NULL,
            path TEXT NOT NULL,
            kind TEXT NOT NULL,
            size INTEGER NOT NULL,
            sha256 TEXT NOT NULL,
            mode INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            target TEXT NOT NULL,
            loc_version TEXT,
            chunk INTEGER,
            "offset" INTEGER,
            stored_size INTEGER,
            method INTEGER,
            crc32 INTEGER,
            origin TEXT NOT NULL,
            source TEXT NOT NULL,
            blocks BLOB,
            PRIMARY KEY (draft, path)
        ) WITHOUT ROWID
        """
    )
    if "version_auto" not in {row[1] for row in db.execute("PRAGMA table_info(drafts)")}:
        db.execute("ALTER TABLE drafts ADD COLUMN version_auto INTEGER DEFAULT 0")  # before shared stores
    if "blocks" not in {row[1] for row in db.execute("PRAGMA table_info(pending)")}:
        db.execute("ALTER TABLE pending ADD COLUMN blocks BLOB")  # catalogues made before block CRCs
    # Partial index: upload walks only the files still to send, in path order, and this
    # index shrinks as record_upload clears their source.
    db.execute("CREATE INDEX IF NOT EXISTS pending_not_uploaded ON pending (draft, path) WHERE source != ''")


def _draft_row(d: Draft) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for name in _DRAFT_FIELDS:
        value = getattr(d, name)
        row[name] = _encode(name, value) if name in _JSON_FIELDS else value
    row["version_auto"] = int(d.version_auto)
    return row


def _encode(name: str, value: Any) -> str:
    if name == "chunks":
        value = [dataclasses.asdict(c) if isinstance(c, ChunkRef) else c for c in value]
    elif name in ("parents", "tags"):
        value = list(value)
    return json.dumps(value)


def _row_draft(row: sqlite3.Row | tuple[Any, ...], names: Sequence[str]) -> Draft:
    doc = dict(zip(names, row, strict=True))
    return Draft(
        id=doc["id"],
        project=doc["project"],
        name=doc["name"],
        version=doc["version"],
        parents=tuple(json.loads(doc["parents"])),
        data_url=doc["data_url"],
        chunk_size=doc["chunk_size"],
        created=doc["created"],
        user=doc["user"],
        host=doc["host"],
        tags=tuple(json.loads(doc["tags"])),
        description=doc["description"],
        metadata=json.loads(doc["metadata"]),
        oplog=json.loads(doc["oplog"]),
        chunks=[ChunkRef(**c) for c in json.loads(doc["chunks"])],
        version_auto=bool(doc.get("version_auto")),
    )


def _entry_params(draft: str, e: Entry, source: str) -> tuple[Any, ...]:
    loc = e.loc
    if loc is None:
        return (draft, e.path, e.kind, e.size, e.sha256, e.mode, e.mtime_ns, e.target,
                None, None, None, None, None, None, e.origin, source, None)  # fmt: skip
    return (draft, e.path, e.kind, e.size, e.sha256, e.mode, e.mtime_ns, e.target,
            loc.version, loc.chunk, loc.offset, loc.stored_size, loc.method, loc.crc32,
            e.origin, source, loc.blocks or None)  # fmt: skip


def _row_entry(r: tuple[Any, ...]) -> tuple[Entry, str]:
    (path, kind, size, sha256, mode, mtime_ns, target,
     loc_version, chunk, offset, stored_size, method, crc32, origin, source, blocks) = r  # fmt: skip
    # Kinds and version ids repeat on every row: interning keeps one copy each, which is
    # most of the difference between 150 MB and 230 MB for a 100,000-file draft.
    loc = (
        None
        if loc_version is None
        else Location(intern(loc_version), chunk, offset, stored_size, method, crc32, blocks or b"")
    )
    return Entry(path, intern(kind), size, sha256, mode, mtime_ns, target, loc, intern(origin)), source


class DraftsMixin:
    """Draft and pending-row storage; mixed into Catalogue, which owns the connection."""

    _db: Any
    _conn: sqlite3.Connection

    def create_draft(self, d: Draft) -> None:
        with write_transaction(self._conn):
            if self._conn.execute("SELECT 1 FROM drafts WHERE id = ?", (d.id,)).fetchone():
                raise StateError(f"draft {d.id} already exists")
            self._db["drafts"].insert(_draft_row(d))

    def draft(self, version_id: str) -> Draft | None:
        cur = self._conn.execute("SELECT * FROM drafts WHERE id = ?", (version_id,))
        row = cur.fetchone()
        return None if row is None else _row_draft(row, [c[0] for c in cur.description])

    def drafts(self) -> list[Draft]:
        cur = self._conn.execute("SELECT * FROM drafts ORDER BY created, id")
        names = [c[0] for c in cur.description]
        return [_row_draft(r, names) for r in cur.fetchall()]

    def update_draft(self, version_id: str, **fields: Any) -> None:
        bad = set(fields) - (_DRAFT_FIELDS - {"id"})
        if bad:
            raise TypeError(f"update_draft: not a changeable draft field: {', '.join(sorted(bad))}")
        if not fields:
            return
        sets = ", ".join(f"{name} = ?" for name in fields)
        values = [_encode(n, v) if n in _JSON_FIELDS else v for n, v in fields.items()]
        with write_transaction(self._conn):
            cur = self._conn.execute(f"UPDATE drafts SET {sets} WHERE id = ?", (*values, version_id))
            if cur.rowcount == 0:
                raise DatasetNotFoundError(f"no draft {version_id}")

    def append_oplog(self, version_id: str, record: dict[str, Any]) -> None:
        # json_insert '$[#]' appends in one statement: no read-modify-write race.
        with write_transaction(self._conn):
            cur = self._conn.execute(
                "UPDATE drafts SET oplog = json_insert(oplog, '$[#]', json(?)) WHERE id = ?",
                (json.dumps(record), version_id),
            )
            if cur.rowcount == 0:
                raise DatasetNotFoundError(f"no draft {version_id}")

    def delete_draft(self, version_id: str) -> None:
        with write_transaction(self._conn):
            self._conn.execute("DELETE FROM pending WHERE draft = ?", (version_id,))
            self._conn.execute("DELETE FROM drafts WHERE id = ?", (version_id,))

    # --- pending rows ---

    def _require_draft(self, version_id: str) -> None:
        if not self._conn.execute("SELECT 1 FROM drafts WHERE id = ?", (version_id,)).fetchone():
            raise DatasetNotFoundError(f"no draft {version_id}")

    def put_pending(self, version_id: str, rows: Iterable[tuple[Entry, str]]) -> None:
        with write_transaction(self._conn):
            self._require_draft(version_id)
            self._conn.executemany(
                _PENDING_INSERT, (_entry_params(version_id, e, source) for e, source in rows)
            )

    def delete_pending(self, version_id: str, paths: Iterable[str]) -> None:
        with write_transaction(self._conn):
            self._conn.executemany(
                "DELETE FROM pending WHERE draft = ? AND path = ?", ((version_id, p) for p in paths)
            )

    def delete_pending_under(self, version_id: str, folder: str) -> int:
        """Remove ``folder`` and every path below it; returns the number of rows removed.

        The range 'folder/' <= path < 'folder0' ('0' follows '/') selects exactly the
        paths below the folder through the primary-key index, with none of LIKE's
        wildcard or case pitfalls.
        """
        with write_transaction(self._conn):
            if not folder:
                cur = self._conn.execute("DELETE FROM pending WHERE draft = ?", (version_id,))
            else:
                cur = self._conn.execute(
                    "DELETE FROM pending WHERE draft = ? AND (path = ? OR (path >= ? AND path < ?))",
                    (version_id, folder, folder + "/", folder + "0"),
                )
            return cur.rowcount

    def pending(self, version_id: str, *, only_not_uploaded: bool = False) -> Iterator[tuple[Entry, str]]:
        """Stream rows in path order, a page at a time.

        Pages are read by key, not through one open cursor, so the caller may write
        (record_upload) while iterating and no read transaction pins the WAL. A row
        changed concurrently is seen as of the page that reads it.
        """
        extra = " AND source != ''" if only_not_uploaded else ""
        first = f"SELECT {_PENDING_COLUMNS} FROM pending WHERE draft = ?{extra} ORDER BY path LIMIT {PAGE}"
        rest = (
            f"SELECT {_PENDING_COLUMNS} FROM pending WHERE draft = ? AND path > ?{extra} "
            f"ORDER BY path LIMIT {PAGE}"
        )
        rows = self._conn.execute(first, (version_id,)).fetchall()
        while True:
            for r in rows:
                yield _row_entry(r)
            if len(rows) < PAGE:
                return
            rows = self._conn.execute(rest, (version_id, rows[-1][0])).fetchall()

    def pending_bytes(self, version_id: str, *, only_not_uploaded: bool = False) -> int:
        """Total size of the pending rows (for progress: how much an upload has to write)."""
        where = "draft = ?" + (" AND source != ''" if only_not_uploaded else "")
        row = self._conn.execute(f"SELECT COALESCE(SUM(size), 0) FROM pending WHERE {where}", (version_id,))
        return int(row.fetchone()[0])

    def pending_count(self, version_id: str, *, only_not_uploaded: bool = False) -> int:
        where = "draft = ?" + (" AND source != ''" if only_not_uploaded else "")
        row = self._conn.execute(f"SELECT count(*) FROM pending WHERE {where}", (version_id,)).fetchone()
        return int(row[0])

    def record_upload(self, version_id: str, entries: Sequence[Entry], chunk: ChunkRef | None) -> None:
        """Mark ``entries`` uploaded and append ``chunk``: all of it or none of it.

        Upload's crash-safety point: before this commits, the files are still pending and
        a resumed upload sends them again (the orphan chunk is left to gc); after it, they
        are done and the chunk is part of the draft.
        """
        params: list[tuple[Any, ...]] = []
        for e in entries:
            loc = e.loc
            if loc is None:
                raise StateError(f"record_upload: {e.path!r} has no location")
            params.append(
                (
                    loc.version,
                    loc.chunk,
                    loc.offset,
                    loc.stored_size,
                    loc.method,
                    loc.crc32,
                    loc.blocks or None,
                    version_id,
                    e.path,
                )
            )
        with write_transaction(self._conn):
            self._require_draft(version_id)
            cur = self._conn.executemany(
                'UPDATE pending SET loc_version = ?, chunk = ?, "offset" = ?, stored_size = ?, '
                "method = ?, crc32 = ?, blocks = ?, source = '' WHERE draft = ? AND path = ?",
                params,
            )
            if cur.rowcount != len(params):
                missing = [
                    p[-1]
                    for p in params
                    if not self._conn.execute(
                        "SELECT 1 FROM pending WHERE draft = ? AND path = ?", (version_id, p[-1])
                    ).fetchone()
                ]
                raise PathNotFoundError(
                    f"not pending in draft {version_id}: {', '.join(map(repr, missing[:5]))}"
                )
            if chunk is not None:
                self._conn.execute(
                    "UPDATE drafts SET chunks = json_insert(chunks, '$[#]', json(?)) WHERE id = ?",
                    (json.dumps(dataclasses.asdict(chunk)), version_id),
                )
