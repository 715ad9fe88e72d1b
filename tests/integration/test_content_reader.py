"""The mount's read path on a remote (fsspec memory://) store: ranged, coalesced, verified."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mountfs import Dataset
from mountfs.api.content import ContentReader
from mountfs.api.workspace import Workspace
from mountfs.errors import IntegrityError
from mountfs.snapshot.blocks import VERIFY_BLOCK
from tests.integration.api_fixtures import write_files


@pytest.fixture
def remote(tmp_path: Path) -> Iterator[tuple[Workspace, str, dict[str, bytes]]]:
    rnd = random.Random(11)
    files = {f"imgs/f{i:03d}.bin": rnd.randbytes(rnd.randint(100, 3000)) for i in range(40)}
    files["big.bin"] = rnd.randbytes(2 << 20)
    files["notes.txt"] = b"a note, compressible " * 400
    ws = Workspace(f"memory://dsmount-test-{uuid.uuid4().hex}/store", home=tmp_path / "home")
    ds = Dataset.create(dataset_name="r", dataset_project="p", workspace=ws)
    ds.add_files(write_files(tmp_path / "src", files))
    ds.finalize(auto_upload=True)
    assert not ws.store.is_local
    yield ws, ds.id, files
    ws.close()


def read_all(reader: ContentReader, ws: Workspace, vid: str, path: str) -> bytes:
    e = ws.tree(vid).get(path)
    assert e is not None
    h = reader.open(e)
    try:
        return reader.read(h, 0, e.size + 1)
    finally:
        reader.release(h)


def test_a_scan_in_storage_order_fetches_neighbours_together(
    remote: tuple[Workspace, str, dict[str, bytes]],
) -> None:
    ws, vid, files = remote
    reader = ContentReader(ws, index=ws.tree(vid))
    assert read_all(reader, ws, vid, "imgs/f000.bin") == files["imgs/f000.bin"]
    assert reader.stats.snapshot()["coalesced"] == 0  # one read is not a scan yet
    assert read_all(reader, ws, vid, "imgs/f001.bin") == files["imgs/f001.bin"]
    second = reader.stats.snapshot()
    assert second["store_reads"] == 2
    assert second["coalesced"] >= 28  # the next members came in the same read
    for i in range(2, 30):
        path = f"imgs/f{i:03d}.bin"
        assert read_all(reader, ws, vid, path) == files[path]
    after = reader.stats.snapshot()
    assert after["store_reads"] == 2  # all served from the content cache
    assert after["cache_hits"] >= 28


def test_random_reads_fetch_only_their_own_members(
    remote: tuple[Workspace, str, dict[str, bytes]],
) -> None:
    ws, vid, files = remote
    reader = ContentReader(ws, index=ws.tree(vid))
    picked = [f"imgs/f{i:03d}.bin" for i in (17, 3, 29, 8, 21)]
    for path in picked:
        assert read_all(reader, ws, vid, path) == files[path]
    stats = reader.stats.snapshot()
    assert stats["coalesced"] == 0
    assert stats["store_reads"] == len(picked)
    assert stats["store_bytes"] == sum(len(files[p]) for p in picked)


def test_without_an_index_each_file_is_fetched_alone(remote: tuple[Workspace, str, dict[str, bytes]]) -> None:
    ws, vid, files = remote
    reader = ContentReader(ws)
    for i in range(3):
        path = f"imgs/f{i:03d}.bin"
        assert read_all(reader, ws, vid, path) == files[path]
    assert reader.stats.snapshot()["store_reads"] == 3


def test_a_range_of_a_large_member_fetches_only_its_blocks(
    remote: tuple[Workspace, str, dict[str, bytes]],
) -> None:
    ws, vid, files = remote
    reader = ContentReader(ws, index=ws.tree(vid))
    e = ws.tree(vid).get("big.bin")
    assert e is not None
    h = reader.open(e)
    assert reader.read(h, 1_000_000, 1000) == files["big.bin"][1_000_000:1_001_000]
    assert reader.stats.snapshot()["store_bytes"] <= 2 * VERIFY_BLOCK
    reader.release(h)


def test_a_corrupt_neighbour_is_not_cached_and_fails_alone(
    remote: tuple[Workspace, str, dict[str, bytes]],
) -> None:
    ws, vid, files = remote
    index = ws.tree(vid)
    victim = index.get("imgs/f005.bin")
    assert victim is not None
    assert victim.loc is not None
    m = ws.manifest(vid)
    key = next(c.key for c in m.chunks if c.index == victim.loc.chunk)
    store = ws.data_store(m.data_url)
    raw = bytearray(store.read_bytes(key))
    raw[victim.loc.offset + 3] ^= 0xFF
    store.write_bytes(key, bytes(raw))
    reader = ContentReader(ws, index=index)
    assert read_all(reader, ws, vid, "imgs/f000.bin") == files["imgs/f000.bin"]
    assert ws.cache.lookup(victim.sha256) is None
    with pytest.raises(IntegrityError, match=r"imgs/f005\.bin"):
        read_all(reader, ws, vid, "imgs/f005.bin")
    assert read_all(reader, ws, vid, "imgs/f006.bin") == files["imgs/f006.bin"]
    assert reader.stats.snapshot()["corrupt"] == 1
