"""The manifest: registry/<id>.json, the object whose presence makes a version exist.

Content fields (parents, chunks, file table, stats) never change once written.
Descriptive fields (state, project, name, description, tags, metadata) may be
rewritten whole by publish, rename, move and set-description; the object is always
replaced atomically, so a reader sees the old manifest or the new one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from mountfs.errors import IntegrityError

MANIFEST_FORMAT = "dsmount.manifest/1"
CLOSED = "closed"
PUBLISHED = "published"
DRAFT = "draft"


@dataclass(frozen=True)
class ChunkRef:
    index: int
    key: str
    """Key of the chunk under the version's data URL, e.g. '<id>/chunk-0000.zip'."""
    size: int
    sha256: str


@dataclass(frozen=True)
class ObjectRef:
    key: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Stats:
    files: int = 0
    """Entries (files, links, symlinks) in the merged tree."""
    bytes: int = 0
    """Logical bytes of the merged tree."""
    added: int = 0
    modified: int = 0
    removed: int = 0
    added_bytes: int = 0
    modified_bytes: int = 0
    removed_bytes: int = 0
    stored_bytes: int = 0
    """Bytes of this version's own chunks and file table in the data location."""
    reused: int = 0
    """Files written as references to bytes already stored (renames, copies)."""


@dataclass(frozen=True)
class Manifest:
    id: str
    project: str
    name: str
    version: str
    parents: tuple[str, ...]
    state: str
    created: str
    closed: str
    user: str
    host: str
    data_url: str
    """Where this version's chunks and file table live (``--storage``); no credentials."""
    chunks: tuple[ChunkRef, ...]
    file_table: ObjectRef
    stats: Stats
    tags: tuple[str, ...] = ()
    description: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    oplog: tuple[dict[str, Any], ...] = ()
    published: str = ""

    def to_json(self) -> bytes:
        doc = asdict(self)
        doc = {"format": MANIFEST_FORMAT, **doc}
        return json.dumps(doc, indent=1, sort_keys=False).encode()

    @classmethod
    def from_json(cls, raw: bytes, where: str = "manifest") -> Manifest:
        try:
            doc = json.loads(raw)
            if doc.pop("format", None) != MANIFEST_FORMAT:
                raise ValueError("unknown format")
            return cls(
                id=doc["id"],
                project=doc["project"],
                name=doc["name"],
                version=doc["version"],
                parents=tuple(doc["parents"]),
                state=doc["state"],
                created=doc["created"],
                closed=doc["closed"],
                user=doc["user"],
                host=doc["host"],
                data_url=doc["data_url"],
                chunks=tuple(ChunkRef(**c) for c in doc["chunks"]),
                file_table=ObjectRef(**doc["file_table"]),
                stats=Stats(**doc["stats"]),
                tags=tuple(doc.get("tags", ())),
                description=doc.get("description", ""),
                metadata=dict(doc.get("metadata", {})),
                oplog=tuple(doc.get("oplog", ())),
                published=doc.get("published", ""),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise IntegrityError(f"corrupt {where}: {exc}") from exc
