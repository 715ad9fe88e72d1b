"""Chunk zips: written from real files, checked by unzip, read back by location."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

import mountfs.snapshot.chunks as chunks_module
from mountfs.errors import FileChangedError, IntegrityError, PathNotFoundError, UnsafePathError
from mountfs.snapshot.chunks import (
    ChunkResult,
    PendingFile,
    choose_method,
    plan_chunks,
    write_chunk,
)
from mountfs.snapshot.entries import DEFLATED, FILE, STORED
from mountfs.snapshot.reader import (
    data_offset,
    iter_member,
    member_name_at,
    read_member_range,
    safe_extract,
)

UNZIP = "/usr/bin/unzip"


def pending(root: Path, path: str, data: bytes, mode: int = 0o644) -> PendingFile:
    src = root / "src" / path
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_bytes(data)
    src.chmod(mode)
    st = src.stat()
    return PendingFile(path, str(src), len(data), hashlib.sha256(data).hexdigest(), mode, st.st_mtime_ns)


def csv_lines(size: int) -> bytes:
    return b"".join(b"%d,%d,label_%d\n" % (i, i * 7, i % 5) for i in range(400_000))[:size]


def mixed_files(root: Path) -> dict[str, tuple[PendingFile, bytes]]:
    rnd = random.Random(7)
    contents = {
        "empty.txt": b"",
        "docs/readme.txt": b"hello dataset, hello zip\n" * 40,
        "data/random.bin": rnd.randbytes(100 << 10),
        "data/big/compressible.csv": csv_lines(5 << 20),
        "ünïcode/名前/файл.txt": "unicode content ✓\n".encode() * 30,
        "bin/tool.sh": b"#!/bin/sh\necho hi\n" * 10,
        "a/b/c/d/deep.bin": rnd.randbytes(3000),
    }
    out = {}
    for path, data in contents.items():
        mode = 0o755 if path == "bin/tool.sh" else 0o644
        out[path] = (pending(root, path, data, mode), data)
    return out


def pread_of(path: Path) -> Callable[[int, int], bytes]:
    data = path.read_bytes()
    return lambda offset, length: data[offset : offset + length]


def write(tmp_path: Path, files: list[PendingFile], name: str = "chunk-0000.zip") -> tuple[Path, ChunkResult]:
    out_path = tmp_path / name
    with open(out_path, "w+b") as out:
        result = write_chunk(out, files, version="v1", chunk=3)
    return out_path, result


def unzip_test(path: Path) -> None:
    proc = subprocess.run([UNZIP, "-t", str(path)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mixed_chunk_round_trip(tmp_path: Path) -> None:
    files = mixed_files(tmp_path)
    ordered = sorted((p for p, _ in files.values()), key=lambda f: f.path)
    calls: list[int] = []
    out_path = tmp_path / "c.zip"
    with open(out_path, "w+b") as out:
        result = write_chunk(out, ordered, version="v1", chunk=3, progress=calls.append)
    unzip_test(out_path)
    raw = out_path.read_bytes()
    assert result.size == len(raw)
    assert result.sha256 == hashlib.sha256(raw).hexdigest()
    assert sum(calls) == sum(len(d) for _, d in files.values())

    by_path = {e.path: e for e in result.entries}
    assert [e.path for e in result.entries] == [f.path for f in ordered]
    methods = {e.path: e.loc.method for e in result.entries if e.loc is not None}
    assert methods["empty.txt"] == STORED
    assert methods["docs/readme.txt"] == DEFLATED
    assert methods["data/random.bin"] == STORED
    assert methods["data/big/compressible.csv"] == STORED  # > 4 MiB: byte-range readable

    read = pread_of(out_path)
    rnd = random.Random(1)
    with zipfile.ZipFile(out_path) as zf:
        infos = {i.filename: i for i in zf.infolist()}
    for path, (pf, data) in files.items():
        e = by_path[path]
        assert (e.kind, e.size, e.sha256, e.mode, e.mtime_ns, e.origin) == (
            FILE,
            pf.size,
            pf.sha256,
            pf.mode,
            pf.mtime_ns,
            "v1",
        )
        loc = e.loc
        assert loc is not None
        assert (loc.version, loc.chunk) == ("v1", 3)
        info = infos[path]
        assert member_name_at(read, info.header_offset) == path
        assert data_offset(read, info.header_offset) == loc.offset
        assert loc.crc32 == zlib.crc32(data)
        assert (info.external_attr >> 16) & 0o777 == pf.mode
        assert b"".join(iter_member(read, loc, e.size, block=4096)) == data
        if loc.method == STORED:
            assert raw[loc.offset : loc.offset + e.size] == data
            for _ in range(20):
                start = rnd.randrange(0, e.size + 10)
                length = rnd.randrange(0, 70_000)
                assert read_member_range(read, loc, e.size, start, length) == data[start : start + length]
        else:
            with pytest.raises(ValueError, match="compressed"):
                read_member_range(read, loc, e.size, 0, 10)

    dest = tmp_path / "out"
    written = safe_extract(out_path, dest)
    assert len(written) == len(files)
    for path, (_, data) in files.items():
        assert (dest / path).read_bytes() == data


def test_many_chunks_from_a_plan(tmp_path: Path) -> None:
    files = [pending(tmp_path, f"d/{i:03d}.txt", b"x%03d\n" % i * (i + 1)) for i in range(50)]
    plan = plan_chunks(files, 2000)
    assert len(plan) > 1
    seen = []
    for n, group in enumerate(plan):
        path, result = write(tmp_path, group, f"chunk-{n}.zip")
        unzip_test(path)
        read = pread_of(path)
        for e, f in zip(result.entries, group, strict=True):
            assert e.loc is not None
            assert b"".join(iter_member(read, e.loc, e.size)) == Path(f.source).read_bytes()
            seen.append(e.path)
    assert seen == sorted(f.path for f in files)


def test_zip64_headers_read_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chunks_module, "ZIP64_THRESHOLD", 0)
    files = mixed_files(tmp_path)
    path, result = write(tmp_path, sorted((p for p, _ in files.values()), key=lambda f: f.path))
    unzip_test(path)
    read = pread_of(path)
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("data/random.bin")
    header_extra = read(info.header_offset + 28, 2)
    assert int.from_bytes(header_extra, "little") >= 20  # the zip64 extra is in the local header
    for e in result.entries:
        assert e.loc is not None
        assert b"".join(iter_member(read, e.loc, e.size)) == files[e.path][1]


def test_mtime_is_clamped_into_zip_range(tmp_path: Path) -> None:
    old = pending(tmp_path, "old.txt", b"old")
    future = pending(tmp_path, "future.txt", b"future")
    files = [
        PendingFile(old.path, old.source, old.size, old.sha256, old.mode, -(10**18)),
        PendingFile(future.path, future.source, future.size, future.sha256, future.mode, 10**20),
    ]
    path, _ = write(tmp_path, files)
    unzip_test(path)
    with zipfile.ZipFile(path) as zf:
        assert zf.getinfo("old.txt").date_time[0] == 1980
        assert zf.getinfo("future.txt").date_time[0] == 2107


@pytest.mark.parametrize("change", ["rewrite", "grow", "shrink"])
def test_changed_source_is_refused(tmp_path: Path, change: str) -> None:
    small = pending(tmp_path, "small.txt", b"a" * 100)
    big = pending(tmp_path, "big.bin", os.urandom(chunks_module.BLOCK + 500))
    for pf in (small, big):
        data = Path(pf.source).read_bytes()
        new = {
            "rewrite": bytes([data[0] ^ 1]) + data[1:],
            "grow": data + b"!",
            "shrink": data[:-1],
        }[change]
        Path(pf.source).write_bytes(new)
        with pytest.raises(FileChangedError, match=f"{pf.path} changed since it was added"):
            write(tmp_path, [pf])


def test_missing_source_is_path_not_found(tmp_path: Path) -> None:
    pf = pending(tmp_path, "gone.txt", b"soon gone")
    Path(pf.source).unlink()
    with pytest.raises(PathNotFoundError, match=r"gone\.txt"):
        write(tmp_path, [pf])


def test_duplicate_paths_are_a_caller_bug(tmp_path: Path) -> None:
    pf = pending(tmp_path, "x.txt", b"x")
    with pytest.raises(ValueError, match="duplicate"):
        write(tmp_path, [pf, pf])


@pytest.mark.parametrize("method", [STORED, DEFLATED])
def test_flipped_byte_is_integrity_error(tmp_path: Path, method: int) -> None:
    data = (b"compressible line\n" * 3000) if method == DEFLATED else os.urandom(300_000)
    path, result = write(tmp_path, [pending(tmp_path, "f.bin", data)])
    (e,) = result.entries
    assert e.loc is not None
    assert e.loc.method == method
    raw = bytearray(path.read_bytes())
    raw[e.loc.offset + e.loc.stored_size // 2] ^= 0x40
    read = pread_of_bytes(bytes(raw))
    got: list[bytes] = []
    with pytest.raises(IntegrityError, match=r"corrupt data for .* in chunk 3 of v1"):
        got.extend(iter_member(read, e.loc, e.size, block=8192))
    assert sum(map(len, got)) < e.size  # the last block was held back


def pread_of_bytes(raw: bytes) -> Callable[[int, int], bytes]:
    return lambda offset, length: raw[offset : offset + length]


def test_truncated_chunk_and_wrong_size_are_integrity_errors(tmp_path: Path) -> None:
    data = os.urandom(50_000)
    path, result = write(tmp_path, [pending(tmp_path, "f.bin", data)])
    (e,) = result.entries
    assert e.loc is not None
    raw = path.read_bytes()
    short = pread_of_bytes(raw[: e.loc.offset + 1000])
    with pytest.raises(IntegrityError, match="short read"):
        list(iter_member(short, e.loc, e.size))
    with pytest.raises(IntegrityError, match="short read"):
        read_member_range(short, e.loc, e.size, 0, 5000)
    with pytest.raises(IntegrityError):
        list(iter_member(pread_of_bytes(raw), e.loc, e.size + 1))
    with pytest.raises(IntegrityError, match="no zip local header"):
        data_offset(pread_of_bytes(raw), e.loc.offset)


def test_deflate_bomb_is_capped(tmp_path: Path) -> None:
    data = b"\0" * 2_000_000
    path, result = write(tmp_path, [pending(tmp_path, "zeros.bin", data)])
    (e,) = result.entries
    assert e.loc is not None
    assert e.loc.method == DEFLATED
    with pytest.raises(IntegrityError, match="inflates to more than 1000 bytes"):
        list(iter_member(pread_of(path), e.loc, 1000))


def crafted_zip(path: Path, names: list[str], symlink: str | None = None) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ok.txt", b"fine")
        for name in names:
            info = zipfile.ZipInfo("placeholder")
            info.filename = name  # bypass ZipInfo's own cleaning, as a hostile writer would
            zf.writestr(info, b"evil")
        if symlink is not None:
            info = zipfile.ZipInfo(symlink)
            info.create_system = 3
            info.external_attr = (0o120777) << 16
            zf.writestr(info, b"/etc/passwd")


@pytest.mark.parametrize("name", ["../evil", "/abs/evil", "a/../../evil", "a\\..\\evil", "a/./b"])
def test_safe_extract_refuses_crafted_names(tmp_path: Path, name: str) -> None:
    zpath = tmp_path / "bad.zip"
    crafted_zip(zpath, [name])
    dest = tmp_path / "x" / "dest"
    dest.mkdir(parents=True)
    before = sorted(p for p in tmp_path.rglob("*"))
    with pytest.raises(UnsafePathError):
        safe_extract(zpath, dest)
    assert sorted(p for p in tmp_path.rglob("*")) == before  # nothing written anywhere
    assert not Path("/abs/evil").exists()


def test_safe_extract_refuses_symlink_members(tmp_path: Path) -> None:
    zpath = tmp_path / "link.zip"
    crafted_zip(zpath, [], symlink="passwd")
    dest = tmp_path / "dest"
    with pytest.raises(UnsafePathError, match="symlink"):
        safe_extract(zpath, dest)
    assert not dest.exists() or not any(dest.iterdir())


def test_safe_extract_does_not_follow_links_in_dest(tmp_path: Path) -> None:
    zpath = tmp_path / "ok.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("sub/file.txt", b"data")
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "sub").symlink_to(outside)
    with pytest.raises(UnsafePathError, match="outside"):
        safe_extract(zpath, dest)
    assert not (outside / "file.txt").exists()


def test_safe_extract_reports_crc_errors(tmp_path: Path) -> None:
    path, result = write(tmp_path, [pending(tmp_path, "r.bin", os.urandom(10_000))])
    (e,) = result.entries
    assert e.loc is not None
    raw = bytearray(path.read_bytes())
    raw[e.loc.offset + 5] ^= 1
    path.write_bytes(raw)
    with pytest.raises(IntegrityError, match="corrupt zip"):
        safe_extract(path, tmp_path / "dest")


def pf(path: str, size: int) -> PendingFile:
    return PendingFile(path, "/nonexistent/" + path, size, "0" * 64, 0o644, 0)


@pytest.mark.parametrize(
    ("sizes", "chunk_size", "expected"),
    [
        ({"a": 1, "b": 1, "c": 1}, 2, [["a", "b"], ["c"]]),
        ({"c": 1, "a": 1, "b": 1}, 3, [["a", "b", "c"]]),  # sorted by path
        ({"a": 5, "b": 5}, 10, [["a", "b"]]),  # exactly full
        ({"a": 5, "b": 6}, 10, [["a"], ["b"]]),
        ({"a": 1, "big": 100, "c": 1}, 10, [["a"], ["big"], ["c"]]),  # oversized file alone
        ({"big": 100}, 10, [["big"]]),
        ({"a": 4, "b": 4, "c": 4}, -1, [["a", "b", "c"]]),  # clearml's -1
        ({"a": 4, "b": 4}, 0, [["a", "b"]]),
        ({}, 10, []),
        ({"d/x": 3, "d.txt": 3, "d/y": 3, "e": 3}, 6, [["d.txt", "d/x"], ["d/y", "e"]]),
        ({"z": 0, "y": 0, "x": 0}, 1, [["x", "y", "z"]]),  # empty files pack together
    ],
)
def test_plan_chunks(sizes: dict[str, int], chunk_size: int, expected: list[list[str]]) -> None:
    plan = plan_chunks([pf(p, s) for p, s in sizes.items()], chunk_size)
    assert [[f.path for f in group] for group in plan] == expected


@pytest.mark.parametrize(
    ("size", "sample", "expected"),
    [
        (0, b"", STORED),
        (100, b"", STORED),
        (2000, b"abc" * 600, DEFLATED),
        (5, b"hello", STORED),  # too small to shrink
        (65536, random.Random(3).randbytes(65536), STORED),  # random
        (300, random.Random(4).randbytes(300), STORED),  # random, below the screen size
        (4 << 20, b"\0" * 65536, DEFLATED),  # exactly the limit
        ((4 << 20) + 1, b"\0" * 65536, STORED),  # large: byte-range readable
        (10 << 30, b"a" * 100, STORED),
        (70000, b"A" * 70000, DEFLATED),  # sample is cut to 64 KiB internally
        (1000, zlib.compress(b"text " * 1000), STORED),  # already compressed
        (
            1024,
            bytes(random.Random(5).randrange(0, 256) for _ in range(60)) + random.Random(6).randbytes(964),
            STORED,
        ),
    ],
)
def test_choose_method(size: int, sample: bytes, expected: int) -> None:
    assert choose_method(size, sample) == expected
