"""The store contract: one suite, every backend.

Tests use only the ``Store`` interface, so the same class runs on a local folder, fsspec's
memory filesystem and the S3, GCS and Azure emulators (tests/emulators.py), and on any
further URL in ``DSMOUNT_TEST_STORE_URLS`` (space-separated; a real bucket, say).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mountfs.errors import IntegrityError, ObjectMissingError, StoreUnavailableError, UsageError
from mountfs.storage.store import Store, link_info, open_link
from tests.emulators import wanted

BACKENDS = ["local", "memory", *wanted(), *os.environ.get("DSMOUNT_TEST_STORE_URLS", "").split()]


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    kind: str = request.param
    options: dict[str, object] = {}
    if kind == "local":
        url = str(tmp_path / "store")
    elif kind == "memory":
        url = f"memory://dsmount-test-{uuid.uuid4().hex}"
    elif kind in ("s3", "gs", "az"):
        em = request.getfixturevalue("emulators").get(kind)
        url = f"{em.new_bucket()}/dsmount-test"
        options = em.options()
    else:
        url = f"{kind.rstrip('/')}/dsmount-test-{uuid.uuid4().hex}"
    s = Store(url, storage_options=options)
    yield s
    s.delete_prefix("")


def keys(store: Store, prefix: str = "") -> list[str]:
    return [o.key for o in store.list(prefix)]


def write_then_fail(store: Store, key: str) -> None:
    with store.writer(key) as f:
        f.write(b"partial")
        raise RuntimeError("boom")


class TestStoreContract:
    def test_round_trip_and_info(self, store: Store) -> None:
        store.write_bytes("a/b/c.bin", b"hello world")
        assert store.read_bytes("a/b/c.bin") == b"hello world"
        assert store.exists("a/b/c.bin")
        assert not store.exists("a/b")
        info = store.info("a/b/c.bin")
        assert (info.key, info.size) == ("a/b/c.bin", 11)
        assert info.etag

    def test_overwrite_changes_content(self, store: Store) -> None:
        store.write_bytes("k", b"one")
        store.write_bytes("k", b"second")
        assert store.read_bytes("k") == b"second"
        assert store.info("k").size == 6

    @pytest.mark.parametrize(
        ("start", "length", "expected"),
        [(0, 3, b"012"), (4, 3, b"456"), (7, 3, b"789"), (10, 0, b"")],
        ids=["start", "middle", "end", "empty"],
    )
    def test_read_range(self, store: Store, start: int, length: int, expected: bytes) -> None:
        store.write_bytes("r", b"0123456789")
        assert store.read_range("r", start, length) == expected

    def test_read_range_past_end_is_integrity_error(self, store: Store) -> None:
        store.write_bytes("r", b"0123456789")
        with pytest.raises(IntegrityError, match="short read"):
            store.read_range("r", 8, 5)

    def test_open_read_is_seekable(self, store: Store) -> None:
        store.write_bytes("s", bytes(range(256)) * 10)
        with store.open_read("s", block_size=64) as f:
            f.seek(1000)
            assert f.read(4) == bytes([1000 % 256, 1001 % 256, 1002 % 256, 1003 % 256])
            f.seek(0)
            assert f.read(2) == b"\x00\x01"

    def test_exclusive_write_keeps_first(self, store: Store) -> None:
        assert store.write_bytes("x.json", b"first", exclusive=True) is True
        assert store.write_bytes("x.json", b"second", exclusive=True) is False
        assert store.read_bytes("x.json") == b"first"
        assert keys(store) == ["x.json"]

    def test_writer_commits_on_success(self, store: Store) -> None:
        with store.writer("d/w.zip") as f:
            f.write(b"abcdef")
            f.seek(0)
            f.write(b"X")
        assert store.read_bytes("d/w.zip") == b"Xbcdef"

    def test_writer_exception_leaves_nothing(self, store: Store) -> None:
        with pytest.raises(RuntimeError, match="boom"):
            write_then_fail(store, "d/w.zip")
        assert not store.exists("d/w.zip")
        assert keys(store) == []

    def test_put_and_get_file(self, store: Store, tmp_path: Path) -> None:
        src = tmp_path / "src.bin"
        src.write_bytes(os.urandom(300_000))
        store.put_file(src, "p/q.bin")
        dest = tmp_path / "dest.bin"
        store.get_file("p/q.bin", dest)
        assert dest.read_bytes() == src.read_bytes()
        assert keys(store) == ["p/q.bin"]

    def test_list_recursive_sorted_and_prefixed(self, store: Store) -> None:
        for k in ["registry/b.json", "registry/a.json", "v1/chunk-0002.zip", "v1/sub/files.db", "v10/x"]:
            store.write_bytes(k, k.encode())
        assert keys(store) == [
            "registry/a.json",
            "registry/b.json",
            "v1/chunk-0002.zip",
            "v1/sub/files.db",
            "v10/x",
        ]
        assert keys(store, "registry/") == ["registry/a.json", "registry/b.json"]
        assert keys(store, "v1") == ["v1/chunk-0002.zip", "v1/sub/files.db"]
        assert keys(store, "nothing/") == []
        sizes = {o.key: o.size for o in store.list("v1/")}
        assert sizes["v1/sub/files.db"] == len(b"v1/sub/files.db")

    def test_delete_and_delete_prefix(self, store: Store) -> None:
        for k in ["a/1", "a/2", "a/b/3", "ab/4", "c"]:
            store.write_bytes(k, b"x")
        store.delete("c")
        store.delete("c")  # missing is fine
        assert keys(store) == ["a/1", "a/2", "a/b/3", "ab/4"]
        store.delete_prefix("a/")
        assert keys(store) == ["ab/4"]
        store.delete_prefix("missing/")
        store.delete_prefix("")
        assert keys(store) == []

    def test_missing_key_is_object_missing(self, store: Store, tmp_path: Path) -> None:
        calls: list[Callable[[], object]] = [
            lambda: store.read_bytes("no/such"),
            lambda: store.read_range("no/such", 0, 1),
            lambda: store.info("no/such"),
            lambda: store.open_read("no/such"),
            lambda: store.get_file("no/such", tmp_path / "out"),
        ]
        for call in calls:
            with pytest.raises(ObjectMissingError, match="no/such") as exc:
                call()
            assert store.url in str(exc.value)
        assert not store.exists("no/such")

    @pytest.mark.parametrize("bad", ["../x", "/abs", "a//b", "a/../b", "", "a/./b"])
    def test_bad_keys_are_usage_errors(self, store: Store, bad: str) -> None:
        with pytest.raises(UsageError):
            store.write_bytes(bad, b"x")
        with pytest.raises(UsageError):
            store.read_bytes(bad)

    def test_bad_prefix_is_usage_error(self, store: Store) -> None:
        with pytest.raises(UsageError):
            store.list("../")
        with pytest.raises(UsageError):
            store.child("a/../..")

    def test_child_shares_objects(self, store: Store) -> None:
        data = store.child("data")
        data.write_bytes("v1/chunk.zip", b"zip")
        assert keys(store) == ["data/v1/chunk.zip"]
        assert store.read_bytes("data/v1/chunk.zip") == b"zip"
        assert data.url.rstrip("/").endswith("/data")
        assert keys(data) == ["v1/chunk.zip"]


class TestLocalStore:
    def test_local_path_and_normalised_url(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.chdir(tmp_path)
        s = Store("rel/store")
        assert s.is_local
        assert s.url == str(tmp_path / "rel" / "store")
        assert Store(f"file://{tmp_path}/rel/store").url == s.url
        s.write_bytes("a/b", b"x")
        assert s.local_path("a/b") == str(tmp_path / "rel" / "store" / "a" / "b")
        assert Store("memory://elsewhere").local_path("a/b") is None

    def test_no_temp_files_left_or_listed(self, tmp_path: Path) -> None:
        s = Store(str(tmp_path / "s"))
        s.write_bytes("k", b"1")
        s.write_bytes("k", b"2", exclusive=True)
        with pytest.raises(RuntimeError, match="boom"):
            write_then_fail(s, "w")
        (tmp_path / "s" / ".k.tmp-abc123").write_bytes(b"stray")
        assert keys(s) == ["k"]
        assert sorted(os.listdir(tmp_path / "s")) == [".k.tmp-abc123", "k"]

    def test_unusable_store_gives_one_line_store_error(self, tmp_path: Path) -> None:
        blocker = tmp_path / "file"
        blocker.write_bytes(b"not a folder")
        with pytest.raises(StoreUnavailableError) as exc:
            Store(str(blocker / "store"))
        assert "\n" not in str(exc.value)
        assert str(blocker / "store") in str(exc.value)
        s = Store(str(blocker / "store"), create=False)
        with pytest.raises((StoreUnavailableError, ObjectMissingError)) as exc2:
            s.read_bytes("registry/x.json")
        assert "\n" not in str(exc2.value)
        assert "registry/x.json" in str(exc2.value)
        with pytest.raises(StoreUnavailableError):
            s.write_bytes("registry/x.json", b"{}")


class TestLinks:
    def test_local_link(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        (tmp_path / "ext.bin").write_bytes(b"external")
        monkeypatch.chdir(tmp_path)
        size, canonical = link_info("ext.bin")
        assert (size, canonical) == (8, str(tmp_path / "ext.bin"))
        with open_link(canonical) as f:
            assert f.read() == b"external"

    def test_memory_link_and_missing(self) -> None:
        s = Store(f"memory://links-{uuid.uuid4().hex}")
        s.write_bytes("f", b"abc")
        url = f"{s.url}/f"
        assert link_info(url) == (3, url)
        with open_link(url) as f:
            assert f.read() == b"abc"
        with pytest.raises(ObjectMissingError):
            link_info(f"{s.url}/missing")
        with pytest.raises(ObjectMissingError):
            open_link("/no/such/file/anywhere")
        s.delete_prefix("")


class TestSharedWrites:
    """What several machines writing to one store rely on."""

    def test_racing_exclusive_creates_have_one_winner(self, store: Store) -> None:
        import threading

        barrier = threading.Barrier(6)
        wins: list[int] = []

        def race(n: int) -> None:
            barrier.wait()
            if store.write_bytes("claims/v1", f"writer {n}".encode(), exclusive=True):
                wins.append(n)

        threads = [threading.Thread(target=race, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(wins) == 1
        assert store.read_bytes("claims/v1") == f"writer {wins[0]}".encode()

    def test_read_many_returns_bytes_and_per_key_errors(self, store: Store) -> None:
        for i in range(5):
            store.write_bytes(f"m/{i}.json", b"x" * i)
        got = store.read_many([*(f"m/{i}.json" for i in range(5)), "m/missing.json"])
        assert [got[f"m/{i}.json"] for i in range(5)] == [b"x" * i for i in range(5)]
        assert isinstance(got["m/missing.json"], ObjectMissingError)
