"""Verified byte ranges of a version's files, fetched lazily: the mount's read path.

A read fetches only what it needs and checks it before anyone sees it:

- a STORED member with block CRCs is read by whole ``VERIFY_BLOCK`` blocks straight
  from its chunk (pread on a local store, a ranged GET elsewhere), each block checked
  against its CRC-32; sequential reads grow a read-ahead window so a large file streams
  in few big reads;
- a member of at most one block is read whole and checked against its CRC-32;
- a deflated member (or a large one from a table without block CRCs, or an external
  link) is inflated once into the content cache, which checks size and SHA-256, and is
  then served from there, by any version or dataset holding the same bytes.

Everything here blocks (disk, network, inflate): the FUSE layer calls it from worker
threads, never on its event loop. A corrupt byte raises ``IntegrityError``, which the
mount answers with EIO.
"""

from __future__ import annotations

import logging
import os
import threading
import zlib
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from mountfs.api.fetch import fetch_into_cache
from mountfs.api.workspace import Workspace
from mountfs.errors import IntegrityError, ObjectMissingError, StoreUnavailableError
from mountfs.snapshot.blocks import VERIFY_BLOCK, block_count, block_crc
from mountfs.snapshot.entries import FILE, LINK, STORED, Entry, Location
from mountfs.snapshot.reader import iter_member
from mountfs.tree.index import TreeIndex

log = logging.getLogger("dsmount.read")

COALESCE_BYTES = 1 << 20
"""From a remote store, a small member is fetched with the members stored after it, up to
this span, in one ranged read: listing a folder and reading its files then costs one
round trip per MiB instead of one per file."""
_COALESCE_GAP = 64 << 10
_NEXT_MEMBER = 4096
"""At most a local header (30 bytes, the name, the extra field) lies between a member and the next."""
_NEIGHBOURS = 64
MAX_WINDOW = 8 << 20
"""Read-ahead stops growing here: big enough to stream at disk speed, small per reader."""
_OPEN_CHUNKS = 128


@dataclass
class ReadStats:
    """Counters a mount reports through ``dsmount stats``; updated under one lock."""

    store_reads: int = 0
    store_bytes: int = 0
    served_bytes: int = 0
    block_reads: int = 0
    small_reads: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    cache_fills: int = 0
    buffer_hits: int = 0
    corrupt: int = 0
    coalesced: int = 0
    """Neighbouring members brought into the cache by another member's read."""
    prefetched_files: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {k: v for k, v in vars(self).items() if not k.startswith("_")}


@dataclass
class OpenFile:
    """One open file of the mount: where its bytes come from and what is already verified."""

    entry: Entry
    cache_fd: int = -1
    """A content-cache file holding the whole file, when it is there (verified on insert)."""
    buffer: tuple[int, bytes] = (0, b"")
    """Verified bytes starting at an offset: the last blocks fetched (one tuple, swapped whole)."""
    next_offset: int = 0
    streak: int = 0
    """Bytes read back to back up to ``next_offset``: read-ahead grows with it."""


class ContentReader:
    """Serves verified reads for one mount; safe to call from many threads at once."""

    def __init__(self, ws: Workspace, stats: ReadStats | None = None, index: TreeIndex | None = None) -> None:
        self.ws = ws
        self.index = index
        """The mounted version's index, to find a member's neighbours; None reads files alone."""
        self.stats = stats or ReadStats()
        self._lock = threading.Lock()
        self._chunks: OrderedDict[tuple[str, int], Callable[[int, int], bytes]] = OrderedDict()
        self._fds: dict[tuple[str, int], int] = {}
        self._filling: dict[str, threading.Lock] = {}
        self._local: dict[str, bool] = {}
        self._chunk_end: dict[tuple[str, int], int] = {}
        """Per remote chunk, where the last member fetched from it ended: a read that starts
        there is a scan in storage order, the one pattern where fetching neighbours pays."""
        self._closed = False

    # ----- where bytes come from -----------------------------------------------------------

    def _chunk_reader(self, loc: Location) -> Callable[[int, int], bytes]:
        """A ``read(offset, length)`` over the chunk holding ``loc``: pread on a local store."""
        key = (loc.version, loc.chunk)
        with self._lock:
            read = self._chunks.get(key)
            if read is not None:
                self._chunks.move_to_end(key)
                return read
            m = self.ws.manifest(loc.version)
            ref = next((c for c in m.chunks if c.index == loc.chunk), None)
            if ref is None:
                raise IntegrityError(f"version {loc.version} has no chunk {loc.chunk}")
            store = self.ws.data_store(m.data_url)
            local = store.local_path(ref.key)
            if local is not None:
                try:
                    fd = os.open(local, os.O_RDONLY | os.O_CLOEXEC)
                except FileNotFoundError:
                    raise ObjectMissingError(f"missing in store {store.url}: {ref.key}") from None
                except OSError as exc:
                    msg = f"store {store.url} failed on {ref.key}: {exc.strerror}"
                    raise StoreUnavailableError(msg) from exc
                self._fds[key] = fd
                read = _pread_reader(fd, store.url, ref.key)
            else:
                chunk_key = ref.key
                read = lambda offset, length: store.read_range(chunk_key, offset, length)  # noqa: E731
            self._chunks[key] = read
            while len(self._chunks) > _OPEN_CHUNKS:
                old, _ = self._chunks.popitem(last=False)
                old_fd = self._fds.pop(old, None)
                if old_fd is not None:
                    os.close(old_fd)
            return read

    def _is_local(self, e: Entry) -> bool:
        """Whether the file's chunk is on a local store (small remote files go to the cache)."""
        if e.loc is None:
            return False
        with self._lock:
            local = self._local.get(e.loc.version)
            if local is None:
                m = self.ws.manifest(e.loc.version)
                local = self._local[e.loc.version] = self.ws.data_store(m.data_url).is_local
            return local

    def _fetch(self, loc: Location, start: int, length: int) -> bytes:
        data = self._chunk_reader(loc)(loc.offset + start, length)
        self.stats.add(store_reads=1, store_bytes=len(data))
        if len(data) != length:
            raise IntegrityError(f"short read in chunk {loc.chunk} of {loc.version} at {loc.offset + start}")
        return data

    # ----- open / read / release -----------------------------------------------------------

    def open_now(self, entry: Entry) -> OpenFile | None:
        """``open`` when it needs no I/O (a file read in place from a known local chunk), else None.

        The FUSE layer calls this on its event loop: most opens of a local store then
        cost no thread hop at all.
        """
        if entry.kind not in (FILE, LINK) or entry.size == 0:
            return OpenFile(entry)
        loc = entry.loc
        if loc is not None and _in_place(entry) and self._local.get(loc.version) is True:
            return OpenFile(entry)
        return None

    def open(self, entry: Entry) -> OpenFile:
        """Prepare reads of ``entry``; uses the content cache when it already has the bytes."""
        h = OpenFile(entry)
        if entry.kind not in (FILE, LINK) or entry.size == 0:
            return h
        if _in_place(entry) and self._is_local(entry):
            return h  # read in place from a local chunk: the cache would only add a copy
        path = self.ws.cache.lookup(entry.sha256)
        if path is not None:
            try:
                h.cache_fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                self.stats.add(cache_hits=1)
            except FileNotFoundError:  # evicted between lookup and open: fetch again on read
                pass
        return h

    def buffered(self, h: OpenFile, offset: int, size: int) -> bytes | None:
        """The requested bytes if they are already verified in memory (no I/O), else None."""
        end = min(offset + size, h.entry.size)
        if offset >= end:
            return b""
        start, data = h.buffer
        if start <= offset and end <= start + len(data):
            h.streak = h.streak + (end - offset) if offset == h.next_offset else end - offset
            h.next_offset = end
            self.stats.add(buffer_hits=1, served_bytes=end - offset)
            return data[offset - start : end - start]
        return None

    def read(self, h: OpenFile, offset: int, size: int) -> bytes:
        """``size`` bytes at ``offset`` (fewer at the end of the file), verified."""
        e = h.entry
        end = min(offset + size, e.size)
        if offset >= end:
            return b""
        hit = self.buffered(h, offset, size)
        if hit is not None:
            return hit
        h.streak = h.streak + (end - offset) if offset == h.next_offset else end - offset
        if h.cache_fd >= 0:
            data = os.pread(h.cache_fd, end - offset, offset)
        elif _direct(e) and (e.size > VERIFY_BLOCK or self._is_local(e)):
            data = self._read_direct(h, offset, end)
        elif _in_place(e) and self._is_local(e):
            data = self._read_inflated(h, offset, end)
        else:
            self._fill_cache(h)
            data = os.pread(h.cache_fd, end - offset, offset)
        if len(data) != end - offset:
            raise IntegrityError(f"{e.path}: short read at {offset}")
        h.next_offset = end
        self.stats.add(served_bytes=len(data))
        return data

    def release(self, h: OpenFile) -> None:
        if h.cache_fd >= 0:
            os.close(h.cache_fd)
            h.cache_fd = -1
        h.buffer = (0, b"")

    def _read_inflated(self, h: OpenFile, offset: int, end: int) -> bytes:
        """A small deflated member of a local chunk, inflated in memory and checked (CRC-32, size).

        Writing it to the content cache would cost a file, a rename and a database row per
        file for bytes the kernel's page cache keeps anyway (the mount uses keep_cache)."""
        e = h.entry
        assert e.loc is not None
        try:
            data = b"".join(iter_member(self._counting_reader(e), e.loc, e.size, name=e.path))
        except IntegrityError as exc:
            raise self._corrupt(e, str(exc)) from exc
        h.buffer = (0, data)
        self.stats.add(small_reads=1)
        return data[offset:end]

    def _read_direct(self, h: OpenFile, offset: int, end: int) -> bytes:
        """Blocks of a STORED member, verified one by one, with a growing read-ahead."""
        e = h.entry
        loc = e.loc
        assert loc is not None
        if not loc.blocks:  # one block at most: the member CRC covers it
            data = self._fetch(loc, 0, e.size)
            if zlib.crc32(data) != loc.crc32:
                raise self._corrupt(e, "CRC-32 mismatch")
            h.buffer = (0, data)
            self.stats.add(small_reads=1)
            return data[offset:end]
        # Read ahead an eighth of what was read back to back: nothing for a random read, and
        # little waste for a short sequential one (the kernel reads ahead as well).
        ahead = min(MAX_WINDOW, h.streak // 8)
        first = offset // VERIFY_BLOCK
        last = min(block_count(e.size), -(-(end + ahead) // VERIFY_BLOCK))
        start = first * VERIFY_BLOCK
        data = self._fetch(loc, start, min(last * VERIFY_BLOCK, e.size) - start)
        view = memoryview(data)
        for i in range(first, last):
            piece = view[(i - first) * VERIFY_BLOCK : (i - first + 1) * VERIFY_BLOCK]
            if zlib.crc32(piece) != block_crc(loc.blocks, i):
                raise self._corrupt(e, f"CRC-32 mismatch in block {i}")
        h.buffer = (start, data)
        self.stats.add(block_reads=last - first)
        return data[offset - start : end - start]

    def _fill_cache(self, h: OpenFile) -> None:
        """Inflate (or download) the whole file into the content cache once, then open it."""
        e = h.entry
        with self._lock:
            lock = self._filling.setdefault(e.sha256, threading.Lock())
        with lock:
            path = self.ws.cache.lookup(e.sha256)
            if path is None:
                self.stats.add(cache_misses=1)
                read = None if e.kind == LINK else self._coalesced_reader(e) or self._counting_reader(e)
                try:
                    fetch_into_cache(self.ws, e, read)
                except IntegrityError as exc:
                    raise self._corrupt(e, str(exc)) from exc
                self.stats.add(cache_fills=1)
                path = self.ws.cache.lookup(e.sha256)
                if path is None:
                    raise IntegrityError(f"{e.path}: evicted from the cache as it was filled")
            h.cache_fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        with self._lock:
            self._filling.pop(e.sha256, None)

    def _coalesced_reader(self, e: Entry) -> Callable[[int, int], bytes] | None:
        """For a small member of a remote chunk: fetch it and the uncached members stored right
        after it in one read, put those neighbours in the cache, and serve ``e`` from the buffer."""
        loc = e.loc
        if self.index is None or loc is None or loc.stored_size >= COALESCE_BYTES or self._is_local(e):
            return None
        key = (loc.version, loc.chunk)
        with self._lock:
            last = self._chunk_end.get(key)
            self._chunk_end[key] = loc.offset + loc.stored_size
        if last is None or not 0 <= loc.offset - last <= _NEXT_MEMBER:
            return None  # random access: neighbours fetched now would mostly be waste
        group: list[Entry] = []
        end = loc.offset + loc.stored_size
        for n in self.index.files_after(e.path, _NEIGHBOURS):
            nl = n.loc
            if nl is None or (nl.version, nl.chunk) != (loc.version, loc.chunk):
                break
            if nl.offset < end or nl.offset - end > _COALESCE_GAP:
                break
            if nl.offset + nl.stored_size - loc.offset > COALESCE_BYTES:
                break
            end = nl.offset + nl.stored_size
            if self.ws.cache.lookup(n.sha256) is None:
                group.append(n)
        if not group:
            return None
        base = loc.offset
        buf = self._fetch(loc, 0, end - base)
        with self._lock:
            self._chunk_end[key] = end

        def read(offset: int, length: int) -> bytes:
            return buf[offset - base : offset - base + length]

        for n in group:
            try:
                fetch_into_cache(self.ws, n, read)
            except IntegrityError as exc:  # a neighbour's problem: reported when it is read itself
                log.warning("not caching neighbour %s: %s", n.path, exc)
                continue
            self.stats.add(coalesced=1)
        return read

    def _counting_reader(self, e: Entry) -> Callable[[int, int], bytes]:
        assert e.loc is not None
        read = self._chunk_reader(e.loc)

        def counted(offset: int, length: int) -> bytes:
            data = read(offset, length)
            self.stats.add(store_reads=1, store_bytes=len(data))
            return data

        return counted

    def _corrupt(self, e: Entry, reason: str) -> IntegrityError:
        self.stats.add(corrupt=1)
        where = f"chunk {e.loc.chunk} of {e.loc.version}" if e.loc else e.target
        log.error("corrupt data for %s (%s): %s", e.path, where, reason)
        return IntegrityError(f"corrupt data for {e.path} in {where}: {reason}")

    # ----- warming -------------------------------------------------------------------------

    def prefetch(
        self, entries: Iterable[Entry], *, workers: int = 4, stop: threading.Event | None = None
    ) -> tuple[int, int]:
        """Read and verify every file once so later reads are served from caches.

        Members read in place are read through (the page cache keeps them); the others are
        filled into the content cache. Returns (files, bytes) warmed; ``stop`` ends early.
        """
        done = [0, 0]
        count_lock = threading.Lock()

        def warm(e: Entry) -> None:
            if stop is not None and stop.is_set():
                return
            h = self.open(e)
            try:
                pos = 0
                while pos < e.size:
                    pos += len(self.read(h, pos, MAX_WINDOW)) or e.size
            finally:
                self.release(h)
            with count_lock:
                done[0] += 1
                done[1] += e.size
            self.stats.add(prefetched_files=1)

        in_flight: deque[Future[None]] = deque()
        with ThreadPoolExecutor(workers, thread_name_prefix="dsmount-prefetch") as pool:
            for e in entries:
                if e.kind in (FILE, LINK):
                    in_flight.append(pool.submit(warm, e))
                    while len(in_flight) > 4 * workers:
                        in_flight.popleft().result()
            while in_flight:
                in_flight.popleft().result()
        return done[0], done[1]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()
            self._chunks.clear()


INFLATE_IN_MEMORY = 1 << 20
"""Deflated members up to this size are inflated in memory when their chunk is local;
larger ones (up to 4 MiB: bigger files are always stored) go through the content cache."""


def _in_place(e: Entry) -> bool:
    """Whether a file can be served from its chunk without going through the content cache."""
    loc = e.loc
    if e.kind != FILE or loc is None:
        return False
    return _direct(e) or (loc.method != STORED and e.size <= INFLATE_IN_MEMORY)


def _direct(e: Entry) -> bool:
    """Whether the file is read in place from its chunk rather than through the cache."""
    loc = e.loc
    return (
        e.kind == FILE
        and loc is not None
        and loc.method == STORED
        and (bool(loc.blocks) or e.size <= VERIFY_BLOCK)
    )


def _pread_reader(fd: int, url: str, key: str) -> Callable[[int, int], bytes]:
    def read(offset: int, length: int) -> bytes:
        try:
            return os.pread(fd, length, offset)
        except OSError as exc:
            raise StoreUnavailableError(f"store {url} failed on {key}: {exc.strerror}") from exc

    return read
