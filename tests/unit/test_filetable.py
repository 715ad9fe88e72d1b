"""File tables: round trip, determinism, and every corruption class refused."""

from __future__ import annotations

import gzip
import json
import random
import time
from collections.abc import Callable
from typing import Any

import pytest

from mountfs.errors import IntegrityError, UnsafePathError
from mountfs.snapshot.entries import (
    DEFLATED,
    FILE,
    LINK,
    STORED,
    SYMLINK,
    TOMBSTONE,
    Entry,
    Location,
    normalize_path,
)
from mountfs.snapshot.filetable import (
    COLUMNS,
    FILE_TABLE_FORMAT,
    FILE_TABLE_NAME,
    _clean,
    _columns_ok,
    decode_file_table,
    encode_file_table,
)

SHA_A = "a" * 64
SHA_B = "0123456789abcdef" * 4


def entries() -> list[Entry]:
    return [
        Entry(
            "z/last.bin",
            FILE,
            10,
            SHA_A,
            0o644,
            1_700_000_000_000_000_000,
            loc=Location("v0", 2, 123, 10, STORED, 77),
        ),
        Entry(
            "a/text.txt", FILE, 5000, SHA_B, 0o755, -5, loc=Location("v1", 0, 45, 321, DEFLATED, 0xFFFFFFFF)
        ),
        Entry(
            "empty",
            FILE,
            0,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            loc=Location("v1", 0, 9, 0, STORED, 0),
        ),
        Entry("links/remote.csv", LINK, 42, "", target="s3://bucket/remote.csv"),
        Entry("links/latest", SYMLINK, target="../a/text.txt"),
        Entry("old/folder", TOMBSTONE),
        Entry("ünï/名前.txt", FILE, 1, SHA_A, loc=Location("v1", 1, 0, 1, STORED, 5)),
    ]


def doc_of(raw: bytes) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(gzip.decompress(raw))
    return doc


def raw_of(doc: dict[str, Any]) -> bytes:
    return gzip.compress(json.dumps(doc).encode(), mtime=0)


def test_round_trip_every_kind() -> None:
    raw = encode_file_table("v1", entries())
    got = decode_file_table(raw, "v1")
    want = sorted(entries(), key=lambda e: e.path)
    assert [e.path for e in got] == [e.path for e in want]
    for g, w in zip(got, want, strict=True):
        assert g.origin == "v1"
        assert g == Entry(w.path, w.kind, w.size, w.sha256, w.mode, w.mtime_ns, w.target, w.loc, "v1")
    assert {e.kind for e in got} == {FILE, LINK, SYMLINK, TOMBSTONE}


def test_format_is_documented_columnar_gzip() -> None:
    raw = encode_file_table("v1", entries())
    assert FILE_TABLE_NAME == "files.json.gz"
    assert raw[:2] == b"\x1f\x8b"
    assert raw[4:8] == b"\0\0\0\0"  # gzip mtime 0
    doc = doc_of(raw)
    assert doc["format"] == FILE_TABLE_FORMAT == "dsmount.files/1"
    assert doc["version"] == "v1"
    assert doc["count"] == len(entries())
    assert all(len(col) == doc["count"] for col in doc["columns"].values())
    assert doc["columns"]["path"] == sorted(doc["columns"]["path"])
    tomb = doc["columns"]["path"].index("old/folder")
    assert doc["columns"]["chunk"][tomb] is None
    assert doc["columns"]["loc_version"][tomb] is None


def test_encoding_is_deterministic() -> None:
    a = encode_file_table("v1", entries())
    b = encode_file_table("v1", list(reversed(entries())))
    assert a == b
    assert encode_file_table("v2", entries()) != a


def test_empty_table() -> None:
    assert decode_file_table(encode_file_table("v1", []), "v1") == []


def test_encode_refuses_duplicates() -> None:
    e = entries()[0]
    with pytest.raises(ValueError, match="duplicate"):
        encode_file_table("v1", [e, e])


def set_cell(column: str, path: str, value: object) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        doc["columns"][column][doc["columns"]["path"].index(path)] = value

    return change


def drop_last(column: str) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        doc["columns"][column].pop()

    return change


def duplicate_first(doc: dict[str, Any]) -> None:
    for col in doc["columns"].values():
        col.insert(0, col[0])
    doc["count"] += 1


def unsort(doc: dict[str, Any]) -> None:
    for col in doc["columns"].values():
        col.reverse()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(format="dsmount.files/9"), "not a dsmount.files/1"),
        (lambda d: d.update(version="other"), "belongs to version 'other'"),
        (lambda d: d.update(count=99), "column 'path'"),
        (lambda d: d["columns"].pop("crc32"), "column 'crc32'"),
        (drop_last("size"), "column 'size'"),
        (set_cell("kind", "empty", "dir"), "unknown kind 'dir'"),
        (duplicate_first, "duplicate path"),
        (unsort, "not sorted"),
        (set_cell("sha256", "empty", "xyz"), "bad sha256"),
        (set_cell("sha256", "empty", "A" * 64), "bad sha256"),
        (set_cell("sha256", "empty", ""), "bad sha256"),
        (set_cell("size", "empty", -1), "bad size"),
        (set_cell("size", "empty", True), "bad size"),
        (set_cell("size", "empty", 1.5), "bad size"),
        (set_cell("offset", "empty", -3), "bad location"),
        (set_cell("method", "empty", 12), "bad location"),
        (set_cell("crc32", "empty", 1 << 32), "bad location"),
        (set_cell("loc_version", "empty", None), "bad location"),
        (
            lambda d: [
                set_cell(c, "empty", None)(d)
                for c in ("loc_version", "chunk", "offset", "stored_size", "method", "crc32")
            ],
            "has no location",
        ),
        (set_cell("chunk", "old/folder", 0), "has a location"),
        (set_cell("target", "links/latest", 5), "bad target"),
        (set_cell("path", "empty", 7), "not a string"),
    ],
)
def test_corruption_is_integrity_error(change: Callable[[dict[str, Any]], object], message: str) -> None:
    doc = doc_of(encode_file_table("v1", entries()))
    change(doc)
    with pytest.raises(IntegrityError, match=message) as info:
        decode_file_table(raw_of(doc), "v1")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("path", ["../x", "/abs", "a/../../b", "a\\b", "a//b", "a/./b", "trailing/", "nul\0"])
def test_unsafe_paths_are_refused(path: str) -> None:
    doc = doc_of(encode_file_table("v1", entries()))
    doc["columns"]["path"][0] = path
    with pytest.raises(UnsafePathError):
        decode_file_table(raw_of(doc), "v1")


def test_wrong_version_id() -> None:
    raw = encode_file_table("v1", entries())
    with pytest.raises(IntegrityError, match="file table of v2"):
        decode_file_table(raw, "v2")


@pytest.mark.parametrize(
    "damage",
    [
        lambda raw: raw[: len(raw) // 2],
        lambda raw: raw[:-1],
        lambda raw: raw[:20] + bytes([raw[20] ^ 0xFF]) + raw[21:],
        lambda raw: raw[:-6] + bytes([raw[-6] ^ 1]) + raw[-5:],  # CRC of the gzip member
        lambda raw: b"",
        lambda raw: b"not gzip at all",
        lambda raw: gzip.compress(b"{not json"),
        lambda raw: gzip.compress(b"[1, 2]"),
        lambda raw: gzip.compress(b"\xff\xfe"),
    ],
)
def test_damaged_bytes_are_integrity_errors(damage: Callable[[bytes], bytes]) -> None:
    raw = encode_file_table("v1", entries())
    with pytest.raises(IntegrityError, match="file table of v1"):
        decode_file_table(damage(raw), "v1")


def test_decode_100k_entries_is_fast() -> None:
    big = [
        Entry(
            f"d{i // 1000:03d}/f{i:06d}.bin",
            FILE,
            i,
            f"{i:064x}",
            0o644,
            i * 1000,
            loc=Location("v1", i // 5000, i * 100, i, STORED, i),
        )
        for i in range(100_000)
    ]
    raw = encode_file_table("v1", big)
    t = time.perf_counter()
    got = decode_file_table(raw, "v1")
    elapsed = time.perf_counter() - t
    assert got[12345] == Entry(
        big[12345].path, FILE, 12345, f"{12345:064x}", 0o644, 12345000, "", big[12345].loc, "v1"
    )
    assert len(got) == 100_000
    assert elapsed < 1.5, f"decode took {elapsed:.2f}s"  # about 0.5 s here; generous for loaded CI


def test_fast_path_check_agrees_with_normalize_path() -> None:
    rnd = random.Random(11)
    alphabet = ["a", "b", ".", "..", "/", "\\", "\0", "é"]
    for _ in range(20_000):
        path = "".join(rnd.choice(alphabet) for _ in range(rnd.randrange(0, 8)))
        try:
            clean = normalize_path(path) == path
        except UnsafePathError:
            clean = False
        assert _clean(path) == clean, path
        fast = _columns_ok(
            {
                **{c: [None] for c in COLUMNS},
                "path": [path],
                "kind": ["tombstone"],
                "size": [0],
                "mode": [0],
                "mtime_ns": [0],
                "target": [""],
                "sha256": [""],
            }
        )
        assert fast == clean, path
