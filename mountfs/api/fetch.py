"""Materialising a merged tree on local disk: the content cache first, then links or copies.

Bytes always pass through the content cache, where they are verified (CRC-32 of the
zip member while inflating, then SHA-256 and size on insert) before any file
appears in a target folder. Each file is placed right after its bytes are cached,
so a cache smaller than the dataset still works: eviction only takes objects that
are already linked or copied.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import shutil
import threading
import uuid
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from mountfs.api.workspace import Workspace
from mountfs.errors import IntegrityError, ObjectMissingError, StoreUnavailableError, UsageError
from mountfs.progress import progress
from mountfs.snapshot.entries import FILE, LINK, SYMLINK, Entry, is_under
from mountfs.snapshot.reader import iter_member
from mountfs.storage.store import Store, open_link

LINK_MODE = "link"
COPY_MODE = "copy"


def select(
    entries: Iterable[Entry],
    files: Sequence[str] | None = None,
    part: int | None = None,
    num_parts: int | None = None,
) -> list[Entry]:
    """Entries named by path patterns (a folder, a path or a wildcard), then one part of them.

    Parts split the selection, in path order, into ``num_parts`` runs of about
    equal bytes, so N machines can each fetch one part of a large version.
    """
    chosen = list(entries)
    if files:
        pats = [p.strip("/") for p in files]
        chosen = [
            e for e in chosen if any(is_under(e.path, p) or fnmatch.fnmatchcase(e.path, p) for p in pats)
        ]
    if num_parts is not None or part is not None:
        if num_parts is None or part is None or num_parts < 1 or not 0 <= part < num_parts:
            raise UsageError("--part N needs --num-parts M with 0 <= N < M")
        total = sum(e.size for e in chosen) or 1
        out = []
        acc = 0
        for e in chosen:
            if min(acc * num_parts // total, num_parts - 1) == part:
                out.append(e)
            acc += e.size
        chosen = out
    return chosen


class _Placer:
    """Puts verified cache objects at their paths below a target folder."""

    def __init__(self, ws: Workspace, dest: Path, mode: str) -> None:
        self.ws = ws
        self.dest = dest
        self.mode = mode
        self._dirs: set[str] = set()
        self._lock = threading.Lock()
        self.cross_device = False

    def _parent(self, path: str) -> Path:
        target = self.dest / path
        folder = os.path.dirname(path)
        if folder and folder not in self._dirs:
            os.makedirs(self.dest / folder, exist_ok=True)
            with self._lock:
                self._dirs.add(folder)
        return target

    def symlink(self, e: Entry) -> None:
        os.symlink(e.target, self._parent(e.path))

    def place(self, e: Entry) -> bool:
        """False when the object vanished from the cache (evicted by another process)."""
        target = self._parent(e.path)
        # A cache object is shared by every path with its bytes and is 0o444, so an
        # executable file gets its own read-only copy to carry its x bits.
        if self.mode == LINK_MODE and not self.cross_device and not e.mode & 0o111:
            try:
                return self.ws.cache.link_into(e.sha256, target)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EMLINK, errno.EPERM):
                    raise
                self.cross_device = True
        if not self.ws.cache.copy_into(e.sha256, target):
            return False
        self.finish(e, target)
        return True

    def finish(self, e: Entry, target: Path) -> None:
        if self.mode == COPY_MODE:
            os.chmod(target, e.mode & 0o7777)
            os.utime(target, ns=(e.mtime_ns, e.mtime_ns))
        else:
            os.chmod(target, 0o444 | (0o111 if e.mode & 0o111 else 0))

    def write_direct(self, e: Entry, read: Callable[[int, int], bytes]) -> None:
        """Stream a member straight to its target, verified: no second copy through the cache.

        Used for writable copies (any store), where caching the bytes as well would
        only double the writes. The member's CRC-32 is checked before its last block is
        written and its SHA-256 after; a mismatch removes the file, so no wrong content stays.
        """
        import hashlib

        assert e.loc is not None
        target = self._parent(e.path)
        h = hashlib.sha256()
        try:
            with open(target, "wb") as f:
                for block in iter_member(read, e.loc, e.size, name=e.path):
                    h.update(block)
                    f.write(block)
            if h.hexdigest() != e.sha256:
                raise IntegrityError(f"corrupt data for {e.path}: SHA-256 does not match the file table")
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        self.finish(e, target)


SPAN_BYTES = 16 << 20
"""How much of a remote chunk one request may bring: members are read in offset order, so one
ranged GET serves many small members (a request per 10 KiB member would cost more in round
trips than in bytes). 16 MiB is the top of the range S3's guidance gives for ranged GETs;
with 4 workers a get holds at most 64 MiB of windows."""
SPAN_GAP = 256 << 10
"""A span stops before a gap wider than this between the members wanted, so a partial get does
not download what it skips."""


GROUP_BYTES = 48 << 20
"""A worker's share of one chunk in get: small enough that a 512 MiB chunk spreads over all
workers, large enough that each share is read in a few long requests."""


class _SpanReader:
    """``read(offset, length)`` over a remote chunk, served from windows of up to SPAN_BYTES that
    cover the wanted members (sorted by offset) and the small gaps between them."""

    def __init__(self, store: Store, key: str, members: Sequence[Entry]) -> None:
        self._store = store
        self._key = key
        self._ranges = sorted((e.loc.offset, e.loc.offset + e.loc.stored_size) for e in members if e.loc)
        self._start = 0
        self._buf = b""

    def _window_end(self, offset: int, end: int) -> int:
        """Extend [offset, end) over the following members, ending on a member boundary
        unless one member alone is larger than the window."""
        limit = offset + SPAN_BYTES
        for start, stop in self._ranges:
            if stop <= end:
                continue
            if start - end > SPAN_GAP:
                break
            if stop > limit:
                if start < end:
                    end = limit  # inside a member larger than a window
                break
            end = stop
        return end

    def __call__(self, offset: int, length: int) -> bytes:
        rel = offset - self._start
        if rel >= 0 and rel + length <= len(self._buf):
            return self._buf[rel : rel + length]
        end = self._window_end(offset, offset + length)
        self._buf = self._store.read_range(self._key, offset, end - offset)
        self._start = offset
        return self._buf[:length]


def _chunk_reader(store: Store, key: str, members: Sequence[Entry] = ()) -> Callable[[int, int], bytes]:
    local = store.local_path(key)
    if local is None:
        if members:
            return _SpanReader(store, key, members)
        return lambda offset, length: store.read_range(key, offset, length)
    # pread on the local file, bypassing Store: so its errors are translated here, as Store would.
    try:
        fd = os.open(local, os.O_RDONLY)
    except FileNotFoundError:
        raise ObjectMissingError(f"missing in store {store.url}: {key}") from None
    except OSError as exc:
        raise StoreUnavailableError(f"store {store.url} failed on {key}: {exc.strerror}") from exc

    def read(offset: int, length: int) -> bytes:
        try:
            data = os.pread(fd, length, offset)
        except OSError as exc:
            raise StoreUnavailableError(f"store {store.url} failed on {key}: {exc.strerror}") from exc
        if len(data) != length:
            raise IntegrityError(f"short read in {key} at {offset}: chunk truncated")
        return data

    read.close = lambda: os.close(fd)  # type: ignore[attr-defined]
    return read


def fetch_into_cache(ws: Workspace, e: Entry, read: Callable[[int, int], bytes] | None) -> None:
    """Bring one file's bytes into the cache, verified; raises IntegrityError on any mismatch."""
    with ws.cache.writer(e.sha256, e.size) as w:
        if e.kind == LINK:
            with open_link(e.target) as f:
                while block := f.read(1 << 20):
                    w.write(block)
        else:
            if e.loc is None or read is None:
                raise IntegrityError(f"{e.path} has no stored location")
            for block in iter_member(read, e.loc, e.size, name=e.path):
                w.write(block)


def materialize(
    ws: Workspace,
    entries: Iterable[Entry],
    dest: Path,
    *,
    mode: str,
    total: int | None = None,
    max_workers: int | None = None,
    show_progress: bool | None = None,
) -> None:
    """Write ``entries`` below ``dest`` (which must exist): hard links into the cache or copies.

    Entries are consumed as a stream: files are grouped by the chunk that holds them and a
    group is handed to a worker once it is a few thousand files long, with a bounded number
    of groups in flight, so a version of any size is fetched in flat memory.
    """
    placer = _Placer(ws, dest, mode)
    chunk_keys: dict[str, dict[int, str]] = {}
    stores: dict[str, Store] = {}
    direct = mode == COPY_MODE
    if total is None:
        entries = list(entries)
        total = sum(e.size for e in entries if e.kind != SYMLINK)

    def locate(version: str) -> None:
        if version not in chunk_keys:
            m = ws.manifest(version)
            chunk_keys[version] = {c.index: c.key for c in m.chunks}
            stores[version] = ws.data_store(m.data_url)

    with progress(total, "fetching", show=show_progress) as advance:

        def ensure(e: Entry, read: Callable[[int, int], bytes] | None) -> None:
            for _attempt in range(3):
                if ws.cache.lookup(e.sha256) is None:
                    fetch_into_cache(ws, e, read)
                if placer.place(e):
                    advance(e.size)
                    return
            raise IntegrityError(f"could not keep {e.path} in the cache long enough to place it")

        def run_chunk(version: str, chunk: int, members: list[Entry]) -> None:
            key = chunk_keys[version].get(chunk)
            if key is None:
                raise IntegrityError(f"version {version} has no chunk {chunk}")
            store = stores[version]
            read = None
            try:
                for e in sorted(members, key=lambda x: x.loc.offset if x.loc else 0):
                    if direct and ws.cache.lookup(e.sha256) is None:
                        # A writable copy is the user's own: writing it through the cache too
                        # would write every byte twice, for a cache the copy never uses.
                        read = read or _chunk_reader(store, key, members)
                        placer.write_direct(e, read)
                        advance(e.size)
                        continue
                    if read is None and ws.cache.lookup(e.sha256) is None:
                        read = _chunk_reader(store, key, members)
                    ensure(e, read)
            finally:
                closer = getattr(read, "close", None)
                if closer is not None:
                    closer()

        def run_links(batch: list[Entry]) -> None:
            for e in batch:
                ensure(e, None)

        workers = max(1, max_workers or 4)
        groups: dict[tuple[str, int], list[Entry]] = defaultdict(list)
        group_bytes: dict[tuple[str, int], int] = defaultdict(int)
        links: list[Entry] = []
        in_flight: deque[Future[None]] = deque()
        with ws.cache.batch(), ThreadPoolExecutor(workers, thread_name_prefix="dsmount-get") as pool:

            def submit(version: str, chunk: int, members: list[Entry]) -> None:
                in_flight.append(pool.submit(run_chunk, version, chunk, members))
                while len(in_flight) > 2 * workers:
                    in_flight.popleft().result()

            try:
                for e in entries:
                    if e.kind == SYMLINK:
                        placer.symlink(e)
                    elif e.kind == LINK:
                        links.append(e)
                    elif e.kind == FILE:
                        if e.loc is None:
                            raise IntegrityError(f"{e.path} has no stored location")
                        locate(e.loc.version)
                        where = (e.loc.version, e.loc.chunk)
                        group = groups[where]
                        group.append(e)
                        group_bytes[where] += e.size
                        # Bounded by files and by bytes, so one big chunk still keeps every
                        # worker busy (its groups are read in parallel, each in order).
                        if len(group) >= 2048 or group_bytes[where] >= GROUP_BYTES:
                            submit(*where, groups.pop(where))
                            group_bytes.pop(where)
                for (version, chunk), members in groups.items():
                    submit(version, chunk, members)
                groups.clear()
                if links:
                    in_flight.append(pool.submit(run_links, links))
                while in_flight:
                    in_flight.popleft().result()
            except BaseException:
                for fut in in_flight:
                    fut.cancel()
                raise


def prepare_target(target: Path, overwrite: bool) -> None:
    """An empty folder to write into; an existing non-empty one only with ``overwrite``."""
    if target.exists() and not target.is_dir():
        raise UsageError(f"{target} exists and is not a folder")
    if target.is_dir() and any(target.iterdir()):
        if not overwrite:
            raise UsageError(f"{target} is not empty; use --overwrite to replace its contents")
        shutil.rmtree(target)
    target.mkdir(parents=True, exist_ok=True)


def cached_copy(
    ws: Workspace,
    version_id: str,
    entries: Iterable[Entry],
    selection_key: str,
    *,
    total: int | None = None,
    max_workers: int | None = None,
    show_progress: bool | None = None,
) -> Path:
    """The read-only cached copy of a version (or of a selection): built once, then reused.

    Built in a temporary folder and renamed into place, so its existence means it
    is complete; two processes building at once both succeed and one copy wins.
    """
    final = ws.copies_dir / (version_id + (f"-{selection_key}" if selection_key else ""))
    if final.is_dir():
        return final
    tmp = ws.copies_dir / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        materialize(
            ws,
            entries,
            tmp,
            mode=LINK_MODE,
            total=total,
            max_workers=max_workers,
            show_progress=show_progress,
        )
        try:
            os.rename(tmp, final)
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            _rmtree(tmp)
    except BaseException:
        _rmtree(tmp)
        raise
    return final


def _rmtree(path: Path) -> None:
    def onerror(func: Callable[..., object], p: str, _exc: object) -> None:
        os.chmod(os.path.dirname(p), 0o755)
        func(p)

    shutil.rmtree(path, onerror=onerror)


def verify_folder(
    entries: Iterable[Entry],
    folder: Path,
    *,
    skip_hash: bool = False,
    max_workers: int | None = None,
    show_progress: bool | None = None,
) -> list[str]:
    """Paths whose local file is missing or differs (size, or SHA-256 unless ``skip_hash``).

    Hashing runs in threads over batches, as in `add`; the result is in path order.
    """
    from mountfs.api.scan import sha256_file

    def check(e: Entry) -> bool:
        p = folder / e.path
        try:
            if e.kind == SYMLINK:
                return os.readlink(p) == e.target
            st = p.stat()
        except OSError:
            return False
        if st.st_size != e.size:
            return False
        return skip_hash or sha256_file(str(p))[0] == e.sha256

    todo = list(entries)
    total = len(todo) if skip_hash else sum(e.size for e in todo)
    with progress(total, "verifying", unit="file" if skip_hash else "B", show=show_progress) as advance:

        def batch(part: list[Entry]) -> list[str]:
            bad = [e.path for e in part if not check(e)]
            advance(len(part) if skip_hash else sum(e.size for e in part))
            return bad

        parts = [todo[i : i + 256] for i in range(0, len(todo), 256)]
        workers = max(1, min(max_workers or os.cpu_count() or 2, len(parts)))
        with ThreadPoolExecutor(workers, thread_name_prefix="dsmount-verify") as pool:
            return [path for bad in pool.map(batch, parts) for path in bad]
