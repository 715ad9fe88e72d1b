"""get's span reader over a remote chunk: few requests for many small members, nothing fetched
across a wide gap, and every read answered with the right bytes."""

from __future__ import annotations

import random
from typing import cast

from mountfs.api.fetch import SPAN_BYTES, SPAN_GAP, _SpanReader
from mountfs.snapshot.entries import FILE, Entry, Location
from mountfs.storage.store import Store


class CountingStore:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.requests: list[tuple[int, int]] = []

    def read_range(self, key: str, start: int, length: int) -> bytes:
        self.requests.append((start, length))
        return self.data[start : start + length]


def member(offset: int, size: int) -> Entry:
    return Entry(f"f{offset}", FILE, size, "0" * 64, loc=Location("v", 0, offset, size, 0, 0))


def test_small_members_share_requests_and_read_right() -> None:
    rnd = random.Random(1)
    blob = rnd.randbytes(40 << 20)
    members, pos = [], 0
    while pos < len(blob) - 70_000:
        size = rnd.randint(1, 64 << 10)
        members.append(member(pos + 60, size))  # a 60-byte header before each member
        pos += 60 + size
    store = CountingStore(blob)
    read = _SpanReader(cast(Store, store), "k", members)
    for e in members:
        assert e.loc is not None
        assert read(e.loc.offset, e.size) == blob[e.loc.offset : e.loc.offset + e.size]
    assert len(store.requests) <= pos // SPAN_BYTES + 2
    fetched = sum(n for _, n in store.requests)
    assert fetched <= pos  # never past the last member


def test_wide_gaps_are_not_fetched() -> None:
    blob = bytes(range(256)) * (64 << 10)
    members = [member(0, 1000), member(1000 + SPAN_GAP + 1, 1000), member(5 << 20, 10)]
    store = CountingStore(blob)
    read = _SpanReader(cast(Store, store), "k", members)
    for e in members:
        assert e.loc is not None
        assert read(e.loc.offset, e.size) == blob[e.loc.offset : e.loc.offset + e.size]
    assert store.requests == [(0, 1000), (1000 + SPAN_GAP + 1, 1000), (5 << 20, 10)]


def test_a_large_member_is_read_in_windows_of_span_bytes() -> None:
    blob = bytes(range(256)) * (128 << 10)  # 32 MiB
    big = member(100, 30 << 20)
    store = CountingStore(blob)
    read = _SpanReader(cast(Store, store), "k", [big])
    got = b"".join(read(100 + i, min(1 << 20, (30 << 20) - i)) for i in range(0, 30 << 20, 1 << 20))
    assert got == blob[100 : 100 + (30 << 20)]
    whole, rest = divmod(30 << 20, SPAN_BYTES)
    assert [n for _, n in store.requests] == [SPAN_BYTES] * whole + ([rest] if rest else [])
