"""Writing chunk zips: a version's new bytes, as standard zip files any ``unzip`` reads.

Each chunk is written once, streamed from the local sources, and described by
``Entry`` records that point straight at each member's data. Those locations are
what let a mount read a stored member by byte range instead of unpacking the zip,
so they are taken from the local headers actually written, never from the central
directory (whose extra fields may differ in length).
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from mountfs.errors import FileChangedError, PathNotFoundError
from mountfs.snapshot.blocks import BlockCrcs, of_bytes, wants_blocks
from mountfs.snapshot.entries import DEFLATED, FILE, STORED, Entry, Location
from mountfs.snapshot.reader import data_offset

BLOCK = 1 << 20
"""Bytes read from a source at a time: bounded memory whatever the file size."""
SAMPLE = 64 << 10
"""Prefix of a file deflated to decide whether compression pays."""
_SCREEN = 512
_SCREEN_DISTINCT = 200
LARGE = 4 << 20
"""Files above this are always stored, so any byte range can be read in place."""
ZIP64_THRESHOLD = 1 << 31
"""Members at least this large get zip64 headers up front (zipfile cannot add them later)."""
HASH_BLOCK = 4 << 20

_MIN_DATE = (1980, 1, 1, 0, 0, 0)
_MAX_DATE = (2107, 12, 31, 23, 59, 58)
_PROGRESS_EVERY = 1 << 20


@dataclass(frozen=True, slots=True)
class PendingFile:
    """A file of a draft waiting to be zipped, with what ``add`` recorded about it."""

    path: str
    """Dataset path, already normalized."""
    source: str
    """Absolute local path the bytes are read from."""
    size: int
    sha256: str
    """Hash recorded at add time; the bytes zipped must still match it."""
    mode: int
    mtime_ns: int


@dataclass(frozen=True)
class ChunkResult:
    entries: list[Entry]
    """One FILE entry per member, located in this chunk, in zip order."""
    size: int
    """Bytes of the zip."""
    sha256: str
    """SHA-256 of the whole zip, recorded in the manifest to verify downloads."""


MAX_MEMBERS = 16384
"""Members per chunk at most: zipfile keeps every member's header in memory until the
central directory is written, so this bounds the memory of writing many small files,
and it lets several chunks of small files be written in parallel."""


def plan_chunks(
    files: Sequence[PendingFile], chunk_size: int, max_members: int = MAX_MEMBERS
) -> list[list[PendingFile]]:
    """Group files into chunks of about ``chunk_size`` bytes (and ``max_members``), in path order.

    Path order keeps a folder in few chunks, so fetching or mounting one folder
    touches few objects. A chunk always holds at least one file (an oversized file
    is alone); ``chunk_size <= 0`` (clearml's -1) means a single chunk.
    """
    ordered = sorted(files, key=lambda f: f.path)
    if not ordered:
        return []
    if chunk_size <= 0:
        chunk_size = 1 << 62
    chunks: list[list[PendingFile]] = []
    current: list[PendingFile] = []
    filled = 0
    for f in ordered:
        if current and (filled + f.size > chunk_size or len(current) >= max_members):
            chunks.append(current)
            current = []
            filled = 0
        current.append(f)
        filled += f.size
    chunks.append(current)
    return chunks


def choose_method(size: int, sample: bytes | bytearray | memoryview) -> int:
    """Pick STORED or DEFLATED for a member from its size and first bytes.

    Large files are stored so they stay readable by byte range (a mount never has to
    inflate gigabytes to serve one read); empty and incompressible files are stored
    because deflate would only cost time. A level-1 deflate of the first 64 KiB
    predicts whether the real deflate saves at least 10 %.

    Deflating random bytes is slow here (about 30 MB/s for small inputs, more than
    hashing and writing them), so random-looking data is screened out first: more than
    200 distinct byte values in the first 512 bytes (random data has about 221; text,
    small integers and UTF-16 have far fewer). Float arrays that pass the screen
    deflate by less than 10 % anyway, so the screen rarely changes the outcome; when
    it does, it costs space, never correctness.
    """
    if size <= 0 or size > LARGE:
        return STORED
    head = memoryview(sample)[:SAMPLE]
    if not head.nbytes:
        return STORED
    if head.nbytes >= _SCREEN and len(set(bytes(head[:_SCREEN]))) > _SCREEN_DISTINCT:
        return STORED
    return DEFLATED if len(zlib.compress(head, 1)) < 0.9 * head.nbytes else STORED


def _date_time(mtime_ns: int) -> tuple[int, int, int, int, int, int]:
    """Zip timestamps are local time and cover 1980..2107 only; clamp instead of failing."""
    try:
        t = time.localtime(mtime_ns / 1e9)
    except (OverflowError, OSError, ValueError):
        return _MIN_DATE if mtime_ns < 0 else _MAX_DATE
    dt = (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec)
    if dt < _MIN_DATE:
        return _MIN_DATE
    if dt > _MAX_DATE:
        return _MAX_DATE
    return dt


def _range_reader(out: BinaryIO) -> Callable[[int, int], bytes]:
    """pread on the zip's descriptor: no seeks, so the buffered object is left alone."""
    try:
        fd = out.fileno()
    except (AttributeError, OSError, ValueError):
        fd = -1
    if fd >= 0:
        return lambda offset, length: os.pread(fd, length, offset)

    def read(offset: int, length: int) -> bytes:
        out.seek(offset)
        return out.read(length)

    return read


def _cannot_read(f: PendingFile, exc: OSError) -> PathNotFoundError:
    return PathNotFoundError(f"cannot read {f.source} (for {f.path}): {exc.strerror or exc}")


def _changed(f: PendingFile) -> FileChangedError:
    return FileChangedError(f"{f.path} changed since it was added ({f.source}); add it again")


def _zinfo(f: PendingFile, method: int) -> zipfile.ZipInfo:
    zinfo = zipfile.ZipInfo(f.path, _date_time(f.mtime_ns))
    zinfo.create_system = 3
    zinfo.external_attr = (stat.S_IFREG | stat.S_IMODE(f.mode)) << 16
    zinfo.file_size = f.size
    zinfo.compress_type = method  # deflate at zlib's default level, 6
    return zinfo


def _read_small(f: PendingFile) -> bytes:
    """The whole bytes of a file of at most one block, checked against what ``add`` saw.

    Small files take this path (one open, one read, one hash, no streaming state)
    because per-file overhead, not bytes, dominates folders of many small files.
    """
    try:
        fd = os.open(f.source, os.O_RDONLY)
    except OSError as exc:
        raise _cannot_read(f, exc) from exc
    try:
        parts = []
        got = 0
        while got <= f.size:
            part = os.read(fd, f.size + 1 - got)
            if not part:
                break
            parts.append(part)
            got += len(part)
    except OSError as exc:
        raise _cannot_read(f, exc) from exc
    finally:
        os.close(fd)
    data = parts[0] if len(parts) == 1 else b"".join(parts)
    if len(data) != f.size or hashlib.sha256(data).hexdigest() != f.sha256:
        raise _changed(f)
    return data


def _stream_member(zf: zipfile.ZipFile, f: PendingFile, buf: bytearray, tick: Callable[[int], None]) -> bytes:
    """Stream a file larger than a block into the zip, checking it is still the file ``add`` saw.

    Returns the member's block CRCs (empty when it is deflated)."""
    try:
        src = open(f.source, "rb", buffering=0)  # noqa: SIM115 - closed below, around a long body
    except OSError as exc:
        raise _cannot_read(f, exc) from exc
    view = memoryview(buf)
    digest = hashlib.sha256()
    count = 0
    try:
        try:
            n = src.readinto(buf) or 0
        except OSError as exc:
            raise _cannot_read(f, exc) from exc
        zinfo = _zinfo(f, choose_method(f.size, view[: min(n, SAMPLE)]))
        crcs = BlockCrcs() if wants_blocks(f.size, zinfo.compress_type) else None
        with zf.open(zinfo, "w", force_zip64=f.size >= ZIP64_THRESHOLD) as w:
            while n:
                block = view[:n]
                digest.update(block)
                if crcs is not None:
                    crcs.update(block)
                w.write(block)
                count += n
                tick(n)
                if count > f.size:
                    break
                try:
                    n = src.readinto(buf) or 0
                except OSError as exc:
                    raise _cannot_read(f, exc) from exc
    finally:
        src.close()
    if count != f.size or digest.hexdigest() != f.sha256:
        raise _changed(f)
    return b"" if crcs is None else crcs.digest()


def write_chunk(
    out: BinaryIO,
    files: Sequence[PendingFile],
    *,
    version: str,
    chunk: int,
    progress: Callable[[int], None] | None = None,
) -> ChunkResult:
    """Write ``files`` as one zip into ``out`` (an empty, seekable 'w+b' local file).

    Hashing and CRC run in C with the GIL released, so callers may write several
    chunks in threads. ``progress`` receives byte counts in batches of about 1 MiB
    (per-file calls would cost more than the zipping of small files).
    """
    seen: set[str] = set()
    for f in files:
        if f.path in seen:
            raise ValueError(f"duplicate path in chunk {chunk}: {f.path!r}")
        seen.add(f.path)

    pending = 0

    def tick(n: int) -> None:
        nonlocal pending
        pending += n
        if pending >= _PROGRESS_EVERY and progress is not None:
            progress(pending)
            pending = 0

    out.seek(0)
    out.truncate()
    buf = bytearray(BLOCK)
    blocks: dict[str, bytes] = {}
    with zipfile.ZipFile(out, "w", allowZip64=True) as zf:
        for f in files:
            if f.size > BLOCK:
                crcs = _stream_member(zf, f, buf, tick)
                if crcs:
                    blocks[f.path] = crcs
                continue
            data = _read_small(f)
            zinfo = _zinfo(f, choose_method(f.size, data))
            if wants_blocks(f.size, zinfo.compress_type):
                blocks[f.path] = of_bytes(data)
            with zf.open(zinfo, "w", force_zip64=f.size >= ZIP64_THRESHOLD) as w:
                w.write(data)
            tick(f.size)
        infos = zf.infolist()
    if pending and progress is not None:
        progress(pending)

    read = _range_reader(out)
    entries = [
        Entry(
            path=f.path,
            kind=FILE,
            size=f.size,
            sha256=f.sha256,
            mode=f.mode,
            mtime_ns=f.mtime_ns,
            loc=Location(
                version=version,
                chunk=chunk,
                offset=data_offset(read, zi.header_offset),
                stored_size=zi.compress_size,
                method=zi.compress_type,
                crc32=zi.CRC,
                blocks=blocks.get(f.path, b""),
            ),
            origin=version,
        )
        for f, zi in zip(files, infos, strict=True)
    ]

    digest = hashlib.sha256()
    total = 0
    out.seek(0)
    while block := out.read(HASH_BLOCK):
        digest.update(block)
        total += len(block)
    return ChunkResult(entries=entries, size=total, sha256=digest.hexdigest())
