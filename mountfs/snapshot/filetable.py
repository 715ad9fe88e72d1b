"""A version's file table: only the version's own changes, in ``<data>/<id>/files.json.gz``.

Format ``dsmount.files/1``: gzip (level 6, mtime 0, so the same table gives the same
bytes and the same SHA-256) of a UTF-8 JSON object::

    {"format": "dsmount.files/1", "version": "<id>", "count": n,
     "columns": {"path": [...], "kind": [...], "size": [...], "sha256": [...],
                 "mode": [...], "mtime_ns": [...], "target": [...],
                 "loc_version": [...], "chunk": [...], "offset": [...],
                 "stored_size": [...], "method": [...], "crc32": [...],
                 "blocks": [...]}}

Every column has ``n`` values; row ``i`` across the columns is one entry, rows sorted
by path (strictly: no duplicates). ``kind`` is file, link, symlink or tombstone (a
removed folder is one tombstone). ``sha256`` is 64 lowercase hex digits or "" (files
always have one). The ``loc_*``/``chunk``/``offset``/``stored_size``/``method``/
``crc32`` columns are the member's location (``Location``) and are all null for
entries without one; a file always has one. ``blocks`` (optional: tables written
before it existed lack it) holds, as lowercase hex, the CRC-32 of every 128 KiB block
of a large STORED member (``snapshot.blocks``), "" for every other row. Columnar rather than one object per
entry because JSON of 100,000+ entries then encodes and decodes several times faster
and compresses better (repeated keys are gone).

A table is read from a store that may be damaged or hostile, so decoding checks
everything and raises ``IntegrityError`` (``UnsafePathError`` for paths that could
escape) with a one-line message.
"""

from __future__ import annotations

import gc
import gzip
import io
import itertools
import json
import operator
import re
import zlib
from collections.abc import Iterable
from sys import intern
from typing import Any

from mountfs.errors import IntegrityError, UnsafePathError
from mountfs.snapshot.blocks import block_count, wants_blocks
from mountfs.snapshot.entries import DEFLATED, FILE, KINDS, STORED, Entry, Location, normalize_path

FILE_TABLE_NAME = "files.json.gz"
FILE_TABLE_FORMAT = "dsmount.files/1"
COLUMNS = (
    "path",
    "kind",
    "size",
    "sha256",
    "mode",
    "mtime_ns",
    "target",
    "loc_version",
    "chunk",
    "offset",
    "stored_size",
    "method",
    "crc32",
)
OPTIONAL_COLUMNS = ("blocks",)
_SHA256 = re.compile(r"[0-9a-f]{64}")
_KINDS = frozenset(KINDS)
_METHODS = frozenset((STORED, DEFLATED))


def encode_file_table(version: str, entries: Iterable[Entry]) -> bytes:
    """Serialize a version's changes; the result is deterministic for the same entries."""
    rows = sorted(entries, key=lambda e: e.path)
    cols: dict[str, list[Any]] = {c: [] for c in (*COLUMNS, *OPTIONAL_COLUMNS)}
    prev: str | None = None
    for e in rows:
        if e.path == prev:
            raise ValueError(f"duplicate path in file table of {version}: {e.path!r}")
        prev = e.path
        cols["path"].append(e.path)
        cols["kind"].append(e.kind)
        cols["size"].append(e.size)
        cols["sha256"].append(e.sha256)
        cols["mode"].append(e.mode)
        cols["mtime_ns"].append(e.mtime_ns)
        cols["target"].append(e.target)
        loc = e.loc
        if loc is None:
            for c in ("loc_version", "chunk", "offset", "stored_size", "method", "crc32"):
                cols[c].append(None)
            cols["blocks"].append("")
        else:
            cols["loc_version"].append(loc.version)
            cols["chunk"].append(loc.chunk)
            cols["offset"].append(loc.offset)
            cols["stored_size"].append(loc.stored_size)
            cols["method"].append(loc.method)
            cols["crc32"].append(loc.crc32)
            cols["blocks"].append(loc.blocks.hex())
    # The same JSON as json.dumps(doc), written column by column so that only one
    # column's text is in memory at a time (a 100,000-row table is ~20 MB of JSON).
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=6, mtime=0) as gz:
        head = {"format": FILE_TABLE_FORMAT, "version": version, "count": len(rows)}
        gz.write(_dumps(head)[:-1].encode("utf-8") + b',"columns":{')
        for i, c in enumerate((*COLUMNS, *OPTIONAL_COLUMNS)):
            values = cols.pop(c)
            gz.write((("," if i else "") + _dumps(c) + ":" + _dumps(values)).encode("utf-8"))
            del values
        gz.write(b"}}")
    return out.getvalue()


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _clean(path: str) -> bool:
    """A fast test that ``path`` is already what ``normalize_path`` would return.

    Equivalent to ``normalize_path(path) == path`` for the paths it accepts (tested
    against it); anything it refuses is judged by ``normalize_path`` itself, which
    also words the error. It exists because tables hold 100,000+ paths.
    """
    wrapped = f"/{path}/"
    return not (
        "//" in wrapped
        or "/./" in wrapped
        or "/../" in wrapped
        or "\\" in path
        or "\0" in path
        or path.startswith("..")
    )


def decode_file_table(raw: bytes, version: str) -> list[Entry]:
    """Parse and fully validate a file table; every entry gets ``origin=version``.

    The cyclic garbage collector is paused while the table is parsed: a table creates
    hundreds of thousands of container objects (none of them cyclic), which would
    trigger dozens of useless collections and cost about a third of the time.
    """
    paused = gc.isenabled()
    gc.disable()
    try:
        return _decode(raw, version)
    finally:
        if paused:
            gc.enable()


def _decode(raw: bytes, version: str) -> list[Entry]:
    where = f"file table of {version}"
    try:
        doc = json.loads(gzip.decompress(raw))
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        raise IntegrityError(f"corrupt {where}: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format") != FILE_TABLE_FORMAT:
        raise IntegrityError(f"corrupt {where}: not a {FILE_TABLE_FORMAT} table")
    if doc.get("version") != version:
        raise IntegrityError(f"corrupt {where}: it belongs to version {doc.get('version')!r}")
    count = doc.get("count")
    cols = doc.get("columns")
    if type(count) is not int or not isinstance(cols, dict):
        raise IntegrityError(f"corrupt {where}: missing count or columns")
    for c in COLUMNS:
        col = cols.get(c)
        if not isinstance(col, list) or len(col) != count:
            raise IntegrityError(f"corrupt {where}: column {c!r} missing or not {count} long")

    blocks = cols.get("blocks")
    if blocks is not None and (not isinstance(blocks, list) or len(blocks) != count):
        raise IntegrityError(f"corrupt {where}: column 'blocks' not {count} long")
    if _columns_ok(cols):
        entries = [
            Entry(
                path,
                intern(kind),
                size,
                sha,
                mode,
                mtime,
                target,
                None if lv is None else Location(intern(lv), chunk, offset, ssize, method, crc),
                version,
            )
            for path, kind, size, sha, mode, mtime, target, lv, chunk, offset, ssize, method, crc in zip(
                *(cols[c] for c in COLUMNS), strict=True
            )
        ]
        return entries if blocks is None else _with_blocks(entries, blocks, where)
    _decode_rows(cols, version, where)
    raise IntegrityError(f"corrupt {where}: inconsistent columns")  # pragma: no cover - rows name the fault


def _with_blocks(entries: list[Entry], blocks: list[Any], where: str) -> list[Entry]:
    """Attach the block CRCs of the rows that have them, checking their shape."""
    for i, text in enumerate(blocks):
        if text == "":
            continue
        e = entries[i]
        if type(text) is not str or e.loc is None or not wants_blocks(e.size, e.loc.method):
            raise IntegrityError(f"corrupt {where}: unexpected block CRCs for {e.path!r}")
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise IntegrityError(f"corrupt {where}: bad block CRCs for {e.path!r}") from None
        if len(raw) != 4 * block_count(e.size):
            raise IntegrityError(f"corrupt {where}: {len(raw) // 4} block CRCs for {e.path!r}")
        loc = e.loc
        entries[i] = Entry(
            e.path,
            e.kind,
            e.size,
            e.sha256,
            e.mode,
            e.mtime_ns,
            e.target,
            Location(loc.version, loc.chunk, loc.offset, loc.stored_size, loc.method, loc.crc32, raw),
            e.origin,
        )
    return entries


def _types(col: list[Any]) -> set[type]:
    return set(map(type, col))


def _columns_ok(cols: dict[str, list[Any]]) -> bool:
    """Validate whole columns with C-level builtins: the common, valid case in a few ms.

    Any doubt returns False and the row-by-row check finds and words the fault.
    """
    paths = cols["path"]
    if not paths:
        return True
    if _types(paths) != {str}:
        return False
    joined = "\0".join(paths)
    if joined.count("\0") != len(paths) - 1 or "\\" in joined or ("\0" + joined).find("\0..") >= 0:
        return False
    slashed = "/" + joined.replace("\0", "/") + "/"
    if "//" in slashed or "/./" in slashed or "/../" in slashed:
        return False
    if not all(map(operator.lt, paths, itertools.islice(paths, 1, None))):
        return False
    kinds = cols["kind"]
    if not set(kinds) <= _KINDS:
        return False
    for c in ("size", "mode"):
        if _types(cols[c]) != {int} or min(cols[c]) < 0:
            return False
    if (
        _types(cols["mtime_ns"]) != {int}
        or _types(cols["target"]) != {str}
        or _types(cols["sha256"]) != {str}
    ):
        return False
    sha_ok = _SHA256.fullmatch
    if not all(map(sha_ok, filter(None, cols["sha256"]))):
        return False
    has_loc = [v is not None for v in cols["loc_version"]]
    if [k == FILE for k in kinds] != has_loc:
        return False
    if not all(sha for sha, k in zip(cols["sha256"], kinds, strict=True) if k == FILE):
        return False
    present = [v for v in cols["loc_version"] if v is not None]
    if _types(present) - {str} or "" in present:
        return False
    for c in ("chunk", "offset", "stored_size", "method", "crc32"):
        col = cols[c]
        if [v is not None for v in col] != has_loc:
            return False
        values = [v for v in col if v is not None]
        if values and (_types(values) != {int} or min(values) < 0):
            return False
    methods = {v for v in cols["method"] if v is not None}
    crcs = [v for v in cols["crc32"] if v is not None]
    return methods <= _METHODS and (not crcs or max(crcs) <= 0xFFFFFFFF)


def _decode_rows(cols: dict[str, list[Any]], version: str, where: str) -> list[Entry]:
    """Row by row, checking each value: slow, but it names the first bad row."""
    out: list[Entry] = []
    append = out.append
    prev = ""
    sha_ok = _SHA256.fullmatch
    kinds = _KINDS
    methods = _METHODS
    for path, kind, size, sha, mode, mtime, target, lv, chunk, offset, ssize, method, crc in zip(
        *(cols[c] for c in COLUMNS), strict=True
    ):
        if type(path) is not str:
            raise IntegrityError(f"corrupt {where}: path {path!r} is not a string")
        if not _clean(path):
            try:
                norm = normalize_path(path)
            except UnsafePathError as exc:
                raise UnsafePathError(f"corrupt {where}: {exc}") from exc
            if norm != path:
                raise UnsafePathError(f"corrupt {where}: path {path!r} is not normalized")
        if path <= prev:
            what = "duplicate path" if path == prev else "paths not sorted at"
            raise IntegrityError(f"corrupt {where}: {what} {path!r}")
        prev = path
        if kind not in kinds:
            raise IntegrityError(f"corrupt {where}: unknown kind {kind!r} for {path!r}")
        if not (type(size) is int and size >= 0 and type(mode) is int and mode >= 0 and type(mtime) is int):
            raise IntegrityError(f"corrupt {where}: bad size, mode or mtime for {path!r}")
        if type(sha) is not str or (sha and not sha_ok(sha)) or (kind == FILE and not sha):
            raise IntegrityError(f"corrupt {where}: bad sha256 {sha!r} for {path!r}")
        if type(target) is not str:
            raise IntegrityError(f"corrupt {where}: bad target for {path!r}")
        if (
            lv is None
            and chunk is None
            and offset is None
            and ssize is None
            and method is None
            and crc is None
        ):
            if kind == FILE:
                raise IntegrityError(f"corrupt {where}: file {path!r} has no location")
            append(Entry(path, kind, size, sha, mode, mtime, target, None, version))
            continue
        if kind != FILE:
            raise IntegrityError(f"corrupt {where}: {kind} {path!r} has a location")
        if not (
            type(lv) is str
            and lv
            and type(chunk) is int
            and chunk >= 0
            and type(offset) is int
            and offset >= 0
            and type(ssize) is int
            and ssize >= 0
            and type(method) is int
            and method in methods
            and type(crc) is int
            and 0 <= crc <= 0xFFFFFFFF
        ):
            raise IntegrityError(f"corrupt {where}: bad location for {path!r}")
        append(
            Entry(
                path,
                kind,
                size,
                sha,
                mode,
                mtime,
                target,
                Location(intern(lv), chunk, offset, ssize, method, crc),
                version,
            )
        )
    return out
