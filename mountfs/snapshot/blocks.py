"""Per-block CRC-32s of stored members, so a byte range can be verified on its own.

A member's CRC-32 covers the whole member, so checking it means reading all of it:
a mount serving 1 MiB from the middle of a 200 MiB file would have to fetch the other
199 MiB first. Each STORED member larger than one block therefore also records the
CRC-32 of every ``VERIFY_BLOCK`` bytes (the last block may be short). A reader fetches
whole blocks, checks each, and only then serves bytes from them. Deflated members are
inflated whole and checked against the member CRC instead, so they carry none.
"""

from __future__ import annotations

import struct
import zlib

VERIFY_BLOCK = 128 << 10
"""Bytes covered by one block CRC: small enough that a random read over-fetches little,
large enough that the table stays small (32 bytes of hex per MiB)."""


def wants_blocks(size: int, method: int) -> bool:
    """Whether a member gets block CRCs: STORED (0) and larger than one block."""
    return method == 0 and size > VERIFY_BLOCK


def block_count(size: int) -> int:
    return -(-size // VERIFY_BLOCK)


class BlockCrcs:
    """CRC-32 of each block of a stream fed in pieces of any size."""

    __slots__ = ("_crc", "_crcs", "_fill")

    def __init__(self) -> None:
        self._crcs: list[int] = []
        self._crc = 0
        self._fill = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view:
            take = min(len(view), VERIFY_BLOCK - self._fill)
            self._crc = zlib.crc32(view[:take], self._crc)
            self._fill += take
            view = view[take:]
            if self._fill == VERIFY_BLOCK:
                self._crcs.append(self._crc)
                self._crc = 0
                self._fill = 0

    def digest(self) -> bytes:
        """The CRCs packed big-endian, 4 bytes per block."""
        crcs = self._crcs + ([self._crc] if self._fill else [])
        return struct.pack(f">{len(crcs)}I", *crcs)


def of_bytes(data: bytes | bytearray | memoryview) -> bytes:
    crcs = BlockCrcs()
    crcs.update(data)
    return crcs.digest()


def block_crc(blocks: bytes, index: int) -> int:
    """The recorded CRC-32 of block ``index``."""
    (crc,) = struct.unpack_from(">I", blocks, 4 * index)
    return int(crc)
