"""The machine-local catalogue: an SQLite index of the registry, plus this machine's drafts.

The registry's manifests are the truth; the ``versions`` table is a cache of them that
makes search, list and reference resolution one local query instead of a listing of the
store. Drafts exist only here (see drafts.py). One file serves several CLI processes at
once: WAL lets readers run beside a writer, and every write takes the lock up front and
waits up to 30 s for it rather than failing with 'database is locked'.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from mountfs.catalogue.drafts import Draft, DraftsMixin, create_draft_schema, write_transaction
from mountfs.catalogue.refs import parse_ref, version_rank_key, version_sort_key
from mountfs.errors import (
    AmbiguousReferenceError,
    DatasetNotFoundError,
    MountfsError,
    StateError,
    UsageError,
)
from mountfs.snapshot.manifest import DRAFT, Manifest

__all__ = ["Catalogue", "Draft", "VersionRow"]

SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 30.0
CACHE_KIB = 8 * 1024  # page cache; larger buys little and counts against the 150 MB budget
MAX_CANDIDATES = 5
"""Ids shown in an ambiguity error: enough to pick from, short enough for one line."""

_ROW_COLUMNS = "id, project, name, version, {state}, created, tags, description, parents, {files}, {bytes}"


@dataclass(frozen=True, slots=True)
class VersionRow:
    """One line of search or list output, for closed versions and drafts alike.

    ``files`` and ``bytes`` are the merged tree's totals from the manifest; they are 0 for
    drafts, whose merged tree is only computed when they are closed.
    """

    id: str
    project: str
    name: str
    version: str
    state: str
    created: str
    tags: tuple[str, ...]
    description: str
    parents: tuple[str, ...]
    files: int
    bytes: int
    is_draft: bool

    def as_dict(self) -> dict[str, Any]:
        """The row as ``dsmount search --json`` prints it (Dataset.list_datasets' keys)."""
        return {
            "id": self.id,
            "project": self.project,
            "name": self.name,
            "version": self.version,
            "tags": list(self.tags),
            "created": self.created,
            "state": self.state,
            "files": self.files,
            "bytes": self.bytes,
            "parents": list(self.parents),
            "description": self.description,
        }


class Catalogue(DraftsMixin):
    """Index of the registry plus drafts, in one SQLite file.

    Use one instance from one thread at a time; run as many processes on the same file
    as you like.
    """

    def __init__(self, path: Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._conn = sqlite3.connect(
            str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        try:
            self._db = sqlite_utils.Database(self._conn)
            self._enable_wal()
            # NORMAL in WAL mode survives a killed process; only a power cut may drop the
            # last commits, which for a cache plus drafts is an acceptable trade for speed.
            self._conn.execute("PRAGMA synchronous=NORMAL")
            # A page cache that holds a large draft's pending rows (a bound, not an allocation).
            self._conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            with write_transaction(self._conn):
                self._create_schema()
        except BaseException:
            self._conn.close()
            raise

    def _enable_wal(self) -> None:
        """Switch a new file to WAL, retrying: SQLite answers a concurrent switch with
        'database is locked' at once instead of calling the busy handler."""
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                if self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal":
                    return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
            if time.monotonic() > deadline:
                raise MountfsError(f"catalogue {self.path} stayed locked for {BUSY_TIMEOUT_S:.0f} s")
            time.sleep(0.02)

    def _create_schema(self) -> None:
        found = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if found > SCHEMA_VERSION:
            raise StateError(
                f"catalogue {self.path} was written by a newer dsmount (schema {found} > {SCHEMA_VERSION})"
            )
        if found == SCHEMA_VERSION:
            return
        db = self._db
        db["versions"].create(
            {
                "id": str,
                "project": str,
                "name": str,
                "version": str,
                "state": str,
                "created": str,
                "closed": str,
                "published": str,
                "user": str,
                "host": str,
                "tags": str,
                "description": str,
                "parents": str,
                "files": int,
                "bytes": int,
                "data_url": str,
                "etag": str,
                "manifest": str,
            },
            pk="id",
            not_null=["project", "name", "version", "state", "created", "manifest"],
            if_not_exists=True,
        )
        db["versions"].create_index(["project", "name"], if_not_exists=True)
        db["versions"].create_index(["name"], if_not_exists=True)
        db["versions"].create_index(["created"], if_not_exists=True)
        create_draft_schema(db)
        db["state"].create({"key": str, "value": str}, pk="key", if_not_exists=True)
        self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Catalogue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Group several calls into one commit (e.g. close: upsert the manifest, delete the draft)."""
        with write_transaction(self._conn):
            yield

    # --- the index of the registry ---

    def upsert_manifest(self, m: Manifest, etag: str) -> None:
        self.upsert_manifests([(m, etag)])

    def upsert_manifests(self, items: Iterable[tuple[Manifest, str]]) -> None:
        """Index many manifests in one transaction (a registry refresh)."""
        rows = [_manifest_row(m, etag) for m, etag in items]
        if rows:
            with write_transaction(self._conn):
                self._db["versions"].upsert_all(rows, pk="id")

    def remove_version(self, version_id: str) -> None:
        with write_transaction(self._conn):
            self._conn.execute("DELETE FROM versions WHERE id = ?", (version_id,))

    def etags(self) -> dict[str, str]:
        return {r[0]: r[1] for r in self._conn.execute("SELECT id, etag FROM versions")}

    def manifest(self, version_id: str) -> Manifest | None:
        row = self._conn.execute("SELECT manifest FROM versions WHERE id = ?", (version_id,)).fetchone()
        if row is None:
            return None
        return Manifest.from_json(row[0].encode(), where=f"catalogue entry of {version_id}")

    def search(
        self,
        *,
        ids: Sequence[str] | None = None,
        project: str | None = None,
        name: str | None = None,
        tags: Sequence[str] | None = None,
        version: str | None = None,
        only_completed: bool = True,
        recursive_project: bool = True,
        include_drafts: bool = False,
    ) -> list[VersionRow]:
        """clearml-data's list_datasets over the local index.

        ``project`` matches exactly, plus its sub-projects unless ``recursive_project`` is
        False. ``name`` matches as a case-insensitive substring first; failing that, as a
        case-insensitive regular expression when it compiles as one. Every tag in ``tags``
        must be present, and a tag written '-tag' must be absent. Drafts are listed when
        ``include_drafts`` is set or ``only_completed`` is False (clearml's in-progress
        versions are our drafts, which only this machine knows).
        """
        where: list[str] = []
        params: list[Any] = []
        if ids is not None:
            if not ids:
                return []
            where.append(f"id IN ({', '.join('?' * len(ids))})")
            params.extend(ids)
        if project is not None:
            if recursive_project:
                where.append("(project = ? OR substr(project, 1, ?) = ?)")
                params.extend([project, len(project) + 1, project + "/"])
            else:
                where.append("project = ?")
                params.append(project)
        if version is not None:
            where.append("version = ?")
            params.append(version)
        for tag in tags or ():
            negate = tag.startswith("-")
            bare = tag[1:] if negate else tag
            if not bare:
                raise UsageError(f"empty tag in {tag!r}")
            exists = "EXISTS (SELECT 1 FROM json_each(tags) WHERE value = ?)"
            where.append(f"NOT {exists}" if negate else exists)
            params.append(bare)
        rows = self._select_rows(
            " AND ".join(where) or "1", params, drafts=include_drafts or not only_completed
        )
        if name is not None:
            matches = _name_matcher(name)
            rows = [r for r in rows if matches(r.name)]
        rows.sort(key=lambda r: (r.project, r.name, version_sort_key(r.version, r.created), r.id))
        return rows

    def _select_rows(self, where: str, params: Sequence[Any], *, drafts: bool) -> list[VersionRow]:
        closed_cols = _ROW_COLUMNS.format(state="state", files="files", bytes="bytes")
        out = [
            _version_row(r, False)
            for r in self._conn.execute(f"SELECT {closed_cols} FROM versions WHERE {where}", params)
        ]
        if drafts:
            draft_cols = _ROW_COLUMNS.format(state=f"'{DRAFT}'", files="0", bytes="0")
            out.extend(
                _version_row(r, True)
                for r in self._conn.execute(f"SELECT {draft_cols} FROM drafts WHERE {where}", params)
            )
        return out

    def resolve(self, ref: str, *, include_drafts: bool = True) -> str:
        """The full id a reference names, or a one-line error saying why none or which ones."""
        r = parse_ref(ref)
        tables = ("versions", "drafts") if include_drafts else ("versions",)
        if r.kind == "id":
            for table in tables:
                if self._conn.execute(f"SELECT 1 FROM {table} WHERE id = ?", (r.value,)).fetchone():
                    return r.value
            raise DatasetNotFoundError(f"no dataset version matches {ref!r}")
        if r.kind == "prefix":
            # The range form of "starts with" uses the primary-key index; ids are lower-case hex.
            found: list[str] = []
            for table in tables:
                found.extend(
                    row[0]
                    for row in self._conn.execute(
                        f"SELECT id FROM {table} WHERE id >= ? AND id < ? ORDER BY id LIMIT ?",
                        (r.value, r.value + "~", MAX_CANDIDATES + 1),
                    )
                )
            return _one(ref, sorted(set(found)), "id prefix")
        rows = self._select_rows(
            "project = ? AND name = ?" + (" AND version = ?" if r.version else ""),
            [r.project, r.name, *([r.version] if r.version else [])],
            drafts=include_drafts,
        )
        if r.version:
            return _one(ref, sorted(row.id for row in rows), "version")
        if not rows:
            raise DatasetNotFoundError(f"no dataset version matches {ref!r}")
        return max(rows, key=lambda row: version_rank_key(row.version, row.created)).id

    def children(self, version_id: str) -> list[str]:
        sql = "SELECT id, created FROM {t} WHERE EXISTS (SELECT 1 FROM json_each(parents) WHERE value = ?)"
        rows = [
            *self._conn.execute(sql.format(t="versions"), (version_id,)),
            *self._conn.execute(sql.format(t="drafts"), (version_id,)),
        ]
        return [row[0] for row in sorted(rows, key=lambda row: (row[1], row[0]))]

    def versions_of(self, project: str, name: str) -> list[VersionRow]:
        rows = self._select_rows("project = ? AND name = ?", [project, name], drafts=True)
        rows.sort(key=lambda r: (version_sort_key(r.version, r.created), r.id))
        return rows

    def latest_version_string(self, project: str, name: str) -> str | None:
        """The version ``project/name`` without ``@version`` resolves to (drafts included)."""
        rows = self._select_rows("project = ? AND name = ?", [project, name], drafts=True)
        if not rows:
            return None
        return max(rows, key=lambda r: version_rank_key(r.version, r.created)).version

    # --- small state ---

    def get_state(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_state(self, key: str, value: str | None) -> None:
        with write_transaction(self._conn):
            if value is None:
                self._conn.execute("DELETE FROM state WHERE key = ?", (key,))
            else:
                self._conn.execute(
                    "INSERT INTO state (key, value) VALUES (?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (key, value),
                )


def _manifest_row(m: Manifest, etag: str) -> dict[str, Any]:
    return {
        "id": m.id,
        "project": m.project,
        "name": m.name,
        "version": m.version,
        "state": m.state,
        "created": m.created,
        "closed": m.closed,
        "published": m.published,
        "user": m.user,
        "host": m.host,
        "tags": json.dumps(list(m.tags)),
        "description": m.description,
        "parents": json.dumps(list(m.parents)),
        "files": m.stats.files,
        "bytes": m.stats.bytes,
        "data_url": m.data_url,
        "etag": etag,
        "manifest": m.to_json().decode(),
    }


def _version_row(r: tuple[Any, ...], is_draft: bool) -> VersionRow:
    id_, project, name, version, state, created, tags, description, parents, files, nbytes = r
    return VersionRow(
        id=id_,
        project=project,
        name=name,
        version=version,
        state=state,
        created=created,
        tags=tuple(json.loads(tags)),
        description=description or "",
        parents=tuple(json.loads(parents)),
        files=files or 0,
        bytes=nbytes or 0,
        is_draft=is_draft,
    )


def _name_matcher(pattern: str) -> Callable[[str], bool]:
    folded = pattern.casefold()
    try:
        regex: re.Pattern[str] | None = re.compile(pattern, re.IGNORECASE)
    except re.error:
        regex = None

    def match(name: str) -> bool:
        return folded in name.casefold() or (regex is not None and regex.search(name) is not None)

    return match


def _one(ref: str, ids: list[str], what: str) -> str:
    if not ids:
        raise DatasetNotFoundError(f"no dataset version matches {ref!r}")
    if len(ids) > 1:
        shown = ", ".join(ids[:MAX_CANDIDATES])
        more = ", ..." if len(ids) > MAX_CANDIDATES else ""
        raise AmbiguousReferenceError(f"{what} {ref!r} matches several versions: {shown}{more}")
    return ids[0]
