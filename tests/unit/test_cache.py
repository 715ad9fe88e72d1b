"""The content cache against a real folder, and against several real processes at once."""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest

from mountfs.errors import IntegrityError, UsageError
from mountfs.storage.cache import ContentCache


def blob(i: int, size: int = 1000) -> tuple[str, bytes]:
    data = (hashlib.sha256(str(i).encode()).digest() * (size // 32 + 1))[:size]
    return hashlib.sha256(data).hexdigest(), data


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[ContentCache]:
    c = ContentCache(tmp_path / "cache", max_bytes=10_000)
    yield c
    c.close()


def put(cache: ContentCache, i: int, size: int = 1000) -> str:
    sha, data = blob(i, size)
    with cache.writer(sha, len(data)) as w:
        w.write(data[:100])
        w.write(data[100:])
    return sha


def test_insert_then_lookup(cache: ContentCache) -> None:
    sha = put(cache, 1)
    path = cache.lookup(sha)
    assert path == cache.path_for(sha)
    assert path.read_bytes() == blob(1)[1]
    assert path.stat().st_mode & 0o777 == 0o444
    assert cache.usage() == 1000
    assert cache.verify(sha)
    assert cache.lookup(blob(2)[0]) is None


@pytest.mark.parametrize(
    ("declared_sha", "declared_size", "payload"),
    [
        pytest.param(blob(1)[0], 1000, blob(2)[1], id="wrong-bytes"),
        pytest.param(blob(1)[0], 999, blob(1)[1], id="wrong-size"),
        pytest.param(blob(1)[0], 1000, blob(1)[1][:-1] + b"\x00", id="one-byte-off"),
    ],
)
def test_corrupt_insert_is_rejected(
    cache: ContentCache, declared_sha: str, declared_size: int, payload: bytes
) -> None:
    with pytest.raises(IntegrityError, match="rejected"), cache.writer(declared_sha, declared_size) as w:
        w.write(payload)
    assert cache.lookup(declared_sha) is None
    assert not cache.path_for(declared_sha).exists()
    assert cache.usage() == 0
    assert os.listdir(cache.root / "tmp") == []


def test_exception_inside_writer_stores_nothing(cache: ContentCache) -> None:
    sha, data = blob(1)

    def write_then_fail() -> None:
        with cache.writer(sha, len(data)) as w:
            w.write(data)
            raise KeyError("caller failed")

    with pytest.raises(KeyError):
        write_then_fail()
    assert cache.lookup(sha) is None
    assert os.listdir(cache.root / "tmp") == []


def test_bad_sha_is_usage_error(cache: ContentCache) -> None:
    with pytest.raises(UsageError):
        cache.lookup("ABC")
    with pytest.raises(UsageError), cache.writer("../" + "0" * 61, 1):
        pass


def test_tampered_object_is_dropped(cache: ContentCache) -> None:
    sha = put(cache, 1)
    path = cache.path_for(sha)
    path.chmod(0o644)
    with open(path, "r+b") as f:
        f.write(b"evil")
    assert cache.lookup(sha) is None
    assert not path.exists()
    assert cache.usage() == 0


def test_file_removed_behind_our_back(cache: ContentCache) -> None:
    sha = put(cache, 1)
    cache.path_for(sha).unlink()
    assert cache.lookup(sha) is None
    assert cache.usage() == 0


def test_verify_detects_same_stat_corruption(cache: ContentCache) -> None:
    sha = put(cache, 1)
    path = cache.path_for(sha)
    st = path.stat()
    path.chmod(0o644)
    path.write_bytes(b"\x00" * st.st_size)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert not cache.verify(sha)
    assert cache.lookup(sha) is None


def test_lru_eviction_respects_recency(cache: ContentCache) -> None:
    shas = [put(cache, i, 2500) for i in range(4)]  # exactly the 10_000 budget
    assert cache.usage() == 10_000
    assert cache.lookup(shas[0]) is not None  # 0 becomes most recent; 1 is now the oldest
    new = put(cache, 10, 2500)
    assert cache.lookup(shas[1]) is None
    assert not cache.path_for(shas[1]).exists()
    assert all(cache.lookup(s) is not None for s in (shas[0], shas[2], shas[3], new))
    assert cache.usage() == 10_000
    assert cache.evict(need=5000) == 5000
    assert cache.usage() == 5000
    assert cache.lookup(shas[2]) is None  # 2 and 3 were least recent after 0's refresh and the reads above
    assert cache.lookup(new) is not None


def test_object_larger_than_budget_is_kept_alone(cache: ContentCache) -> None:
    small = put(cache, 1)
    big = put(cache, 2, 25_000)
    assert cache.lookup(big) is not None
    assert cache.lookup(small) is None
    assert cache.usage() == 25_000
    again = put(cache, 3)
    assert cache.lookup(big) is None
    assert cache.lookup(again) is not None


def test_reinsert_same_object_keeps_one_entry(cache: ContentCache) -> None:
    sha = put(cache, 1)
    ino = cache.path_for(sha).stat().st_ino
    put(cache, 1)
    assert cache.usage() == 1000
    assert cache.path_for(sha).stat().st_ino == ino


def test_insert_file(cache: ContentCache, tmp_path: Path) -> None:
    sha, data = blob(7, 5000)
    src = tmp_path / "src"
    src.write_bytes(data)
    assert cache.insert_file(sha, src).read_bytes() == data
    with pytest.raises(IntegrityError):
        cache.insert_file(blob(8)[0], src)


def test_link_and_copy_into(cache: ContentCache, tmp_path: Path) -> None:
    sha = put(cache, 1)
    linked = tmp_path / "linked"
    assert cache.link_into(sha, linked)
    assert linked.stat().st_ino == cache.path_for(sha).stat().st_ino
    copied = tmp_path / "copied"
    assert cache.copy_into(sha, copied)
    assert copied.read_bytes() == blob(1)[1]
    assert copied.stat().st_mode & 0o777 == 0o644
    assert copied.stat().st_ino != linked.stat().st_ino
    assert cache.lookup(sha) is not None  # linking did not make the entry look tampered
    missing = blob(2)[0]
    assert not cache.link_into(missing, tmp_path / "l2")
    assert not cache.copy_into(missing, tmp_path / "c2")
    with pytest.raises(FileNotFoundError):
        cache.link_into(sha, tmp_path / "no" / "such" / "dir")


def test_link_into_passes_exdev_up(cache: ContentCache, tmp_path: Path) -> None:
    sha = put(cache, 1)
    with (
        mock.patch("os.link", side_effect=OSError(errno.EXDEV, "cross-device")),
        pytest.raises(OSError, match="cross-device") as exc,
    ):
        cache.link_into(sha, tmp_path / "x")
    assert exc.value.errno == errno.EXDEV


def test_recency_survives_close_and_reopen(tmp_path: Path) -> None:
    c = ContentCache(tmp_path / "c", max_bytes=3000)
    shas = [put(c, i) for i in range(3)]
    assert c.lookup(shas[0]) is not None
    c.close()
    c2 = ContentCache(tmp_path / "c", max_bytes=3000)
    put(c2, 9)
    assert c2.lookup(shas[0]) is not None
    assert c2.lookup(shas[1]) is None
    c2.clear()
    assert c2.usage() == 0
    assert list((tmp_path / "c" / "objects").iterdir()) == []
    c2.close()


def test_old_orphan_temps_are_removed(tmp_path: Path) -> None:
    ContentCache(tmp_path / "c", 1000).close()
    old, fresh = tmp_path / "c" / "tmp" / "1-old.tmp", tmp_path / "c" / "tmp" / "2-new.tmp"
    old.write_bytes(b"x")
    fresh.write_bytes(b"x")
    os.utime(old, (0, 0))
    ContentCache(tmp_path / "c", 1000).close()
    assert not old.exists()
    assert fresh.exists()


WORKER = textwrap.dedent(
    """
    import hashlib, sys
    from pathlib import Path
    from mountfs.storage.cache import ContentCache

    root, first, count, budget = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    cache = ContentCache(Path(root), budget)
    for rnd in range(3):
        for i in range(first, first + count):
            size = 500 + (i * 977) % 4000
            data = (hashlib.sha256(str(i).encode()).digest() * (size // 32 + 1))[:size]
            sha = hashlib.sha256(data).hexdigest()
            path = cache.lookup(sha)
            if path is None:
                with cache.writer(sha, size) as w:
                    w.write(data)
            elif path.read_bytes() != data:
                sys.exit(f"served wrong bytes for {i}")
    cache.close()
    """
)


@pytest.mark.slow
def test_concurrent_processes_keep_the_cache_consistent(tmp_path: Path) -> None:
    root, budget = tmp_path / "shared", 40_000
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(root), str(p * 15), "40", str(budget)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for p in range(4)
    ]
    for p in procs:
        _out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    cache = ContentCache(root, budget)
    try:
        files = {f.name for f in (root / "objects").rglob("*") if f.is_file()}
        assert files, "nothing survived eviction"
        assert all(cache.verify(sha) for sha in files)
        assert all(cache.lookup(sha) is not None for sha in files)  # every file has a matching row
        assert cache.usage() == sum(cache.path_for(sha).stat().st_size for sha in files)
        assert cache.usage() <= budget + 4500
        assert os.listdir(root / "tmp") == []
    finally:
        cache.close()


def _disk_bytes(cache: ContentCache) -> int:
    return sum(p.stat().st_size for p in (cache.root / "objects").rglob("*") if p.is_file())


def test_batch_inserts_are_usable_at_once_and_committed_at_the_end(tmp_path: Path) -> None:
    c = ContentCache(tmp_path / "cache", max_bytes=1_000_000)
    shas = []
    with c.batch():
        for i in range(600):  # more than one group of rows
            shas.append(put(c, i))
            assert c.lookup(shas[-1]) is not None  # usable before its row is committed
    other = ContentCache(tmp_path / "cache", max_bytes=1_000_000)  # another process's view
    assert all(other.lookup(s) is not None for s in shas)
    assert other.usage() == 600 * 1000 == _disk_bytes(other)
    other.close()
    c.close()


def test_usage_counter_tracks_inserts_evictions_and_drops(tmp_path: Path) -> None:
    c = ContentCache(tmp_path / "cache", max_bytes=5_500)
    with c.batch():
        for i in range(20):
            put(c, i)
    assert c.usage() <= 5_500
    assert c.usage() == _disk_bytes(c)
    for i in range(20, 30):
        put(c, i)
    assert c.usage() == _disk_bytes(c) <= 5_500
    victim = put(c, 99)
    path = c.path_for(victim)
    os.chmod(path, 0o644)
    path.write_bytes(b"tampered")
    assert c.lookup(victim) is None
    assert c.usage() == _disk_bytes(c)
    c.close()
