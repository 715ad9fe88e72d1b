"""Reading chunk members back: by location, verified, never trusting the zip blindly.

Everything here takes ``read_range(offset, length) -> bytes`` rather than a file, so
the same code serves a local chunk (pread), an object store (ranged GET) and tests.
A member's bytes are only handed out once verified (CRC-32 and size), and names
read from a zip always go through ``normalize_path`` before touching the disk.
"""

from __future__ import annotations

import os
import shutil
import stat
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator

from mountfs.errors import IntegrityError, UnsafePathError
from mountfs.snapshot.entries import DEFLATED, STORED, Location, normalize_path

ReadRange = Callable[[int, int], bytes]

LOCAL_HEADER_SIGNATURE = b"PK\x03\x04"
LOCAL_HEADER_SIZE = 30
_UTF8_FLAG = 0x800


def _local_header(read_range: ReadRange, header_offset: int) -> tuple[int, int, int]:
    """Return (flags, name length, extra length) of the local header at ``header_offset``."""
    head = read_range(header_offset, LOCAL_HEADER_SIZE)
    if len(head) != LOCAL_HEADER_SIZE or head[:4] != LOCAL_HEADER_SIGNATURE:
        raise IntegrityError(f"no zip local header at offset {header_offset}")
    (flags,) = struct.unpack_from("<H", head, 6)
    n, m = struct.unpack_from("<HH", head, 26)
    return flags, n, m


def data_offset(read_range: ReadRange, header_offset: int) -> int:
    """Offset of a member's data, from its local header.

    The local header's extra field may differ in length from the central
    directory's (zip64 fields are reserved locally), so only the local one is
    authoritative for where the data starts.
    """
    _, n, m = _local_header(read_range, header_offset)
    return header_offset + LOCAL_HEADER_SIZE + n + m


def member_name_at(read_range: ReadRange, header_offset: int) -> str:
    """The member name stored in the local header at ``header_offset``, to check a location."""
    flags, n, _ = _local_header(read_range, header_offset)
    raw = read_range(header_offset + LOCAL_HEADER_SIZE, n)
    if len(raw) != n:
        raise IntegrityError(f"truncated zip local header at offset {header_offset}")
    try:
        return raw.decode("utf-8") if flags & _UTF8_FLAG else raw.decode("cp437")
    except UnicodeDecodeError as exc:
        raise IntegrityError(f"undecodable member name at offset {header_offset}") from exc


def iter_member(
    read_range: ReadRange,
    loc: Location,
    size: int,
    *,
    block: int = 1 << 20,
    name: str = "",
) -> Iterator[bytes]:
    """Yield a member's bytes, streaming, and fail before the last block if they are wrong.

    The final block is held back until CRC-32 and size are checked, so a consumer
    that commits on normal completion (a temp file renamed into a cache) never
    commits corrupt data. Inflated output is capped at ``size`` as it goes, so a
    corrupt or crafted member cannot blow up memory or disk.
    """
    what = name or f"member at offset {loc.offset}"

    def corrupt(reason: str) -> IntegrityError:
        return IntegrityError(f"corrupt data for {what} in chunk {loc.chunk} of {loc.version}: {reason}")

    if loc.method not in (STORED, DEFLATED):
        raise corrupt(f"unsupported compression method {loc.method}")
    if loc.method == STORED and loc.stored_size != size:
        raise corrupt(f"stored size {loc.stored_size} != file size {size}")
    inflater = zlib.decompressobj(-15) if loc.method == DEFLATED else None
    crc = 0
    total = 0
    held = b""
    pos = 0
    try:
        while pos < loc.stored_size:
            want = min(block, loc.stored_size - pos)
            raw = read_range(loc.offset + pos, want)
            if len(raw) != want:
                raise corrupt(f"short read ({len(raw)} of {want} bytes at {loc.offset + pos})")
            pos += want
            if inflater is None:
                pieces = [raw]
            else:
                pieces = []
                produced = total
                data = inflater.decompress(raw, block)
                while True:
                    if data:
                        pieces.append(data)
                        produced += len(data)
                        if produced > size:
                            raise corrupt(f"inflates to more than {size} bytes")
                    if not inflater.unconsumed_tail:
                        break
                    data = inflater.decompress(inflater.unconsumed_tail, block)
            for piece in pieces:
                crc = zlib.crc32(piece, crc)
                total += len(piece)
                if held:
                    yield held
                held = piece
        if inflater is not None:
            tail = inflater.flush()
            if tail:
                crc = zlib.crc32(tail, crc)
                total += len(tail)
                if held:
                    yield held
                held = tail
            if not inflater.eof or inflater.unused_data:
                raise corrupt("deflate stream incomplete or followed by junk")
    except zlib.error as exc:
        raise corrupt(f"inflate failed: {exc}") from exc
    if total != size:
        raise corrupt(f"{total} bytes, expected {size}")
    if crc != loc.crc32:
        raise corrupt(f"CRC-32 {crc:08x}, expected {loc.crc32:08x}")
    if held:
        yield held


def read_member_range(read_range: ReadRange, loc: Location, size: int, start: int, length: int) -> bytes:
    """Bytes ``[start, start + length)`` of a STORED member, clamped to its size.

    No CRC can cover a partial range: the caller verifies whole-file blocks (for
    example against the SHA-256 once the file is complete, or by fetching verified
    blocks into the cache) before serving. DEFLATED members raise ValueError: they
    must be inflated whole with ``iter_member``.
    """
    if loc.method != STORED:
        raise ValueError(f"member in chunk {loc.chunk} of {loc.version} is compressed; inflate it whole")
    if start < 0 or length < 0:
        raise ValueError(f"bad range start={start} length={length}")
    if loc.stored_size != size:
        raise IntegrityError(
            f"corrupt location in chunk {loc.chunk} of {loc.version}: stored size {loc.stored_size} != {size}"
        )
    end = min(start + length, size)
    if start >= end:
        return b""
    data = read_range(loc.offset + start, end - start)
    if len(data) != end - start:
        raise IntegrityError(
            f"corrupt data in chunk {loc.chunk} of {loc.version}: short read at {loc.offset + start}"
        )
    return data


def safe_extract(zip_path: str | os.PathLike[str], dest: str | os.PathLike[str]) -> list[str]:
    """Extract a chunk zip under ``dest``; return the paths written (files, not folders).

    Plain zipfile semantics (no permissions restored), except that every name is
    checked with ``normalize_path`` and symlink members are refused, all before
    anything is written, so a crafted zip cannot write outside ``dest``. Written
    folders are also checked to resolve inside ``dest``, so a symlink already there
    cannot redirect the extraction.
    """
    root = os.path.realpath(dest)
    written: list[str] = []
    try:
        with zipfile.ZipFile(zip_path) as zf:
            plan: list[tuple[zipfile.ZipInfo, str]] = []
            for info in zf.infolist():
                norm = normalize_path(info.filename)
                if stat.S_ISLNK(info.external_attr >> 16):
                    raise UnsafePathError(f"refusing symlink member {info.filename!r} in {zip_path}")
                plan.append((info, norm))
            checked: set[str] = set()
            for info, norm in plan:
                target = os.path.join(root, *norm.split("/"))
                folder = target if info.is_dir() else os.path.dirname(target)
                if folder not in checked:
                    os.makedirs(folder, exist_ok=True)
                    real = os.path.realpath(folder)
                    if real != root and not real.startswith(root + os.sep):
                        raise UnsafePathError(f"{info.filename!r} would be written outside {dest}")
                    checked.add(folder)
                if info.is_dir():
                    continue
                if os.path.islink(target):
                    os.unlink(target)  # never write through a link left in dest
                with zf.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                written.append(target)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise IntegrityError(f"corrupt zip {zip_path}: {exc}") from exc
    return written
