"""Block CRCs: recorded when a chunk is written, carried by file tables, drafts and indexes."""

from __future__ import annotations

import gzip
import json
import random
import zlib
from pathlib import Path

import pytest

from mountfs.errors import IntegrityError
from mountfs.snapshot.blocks import VERIFY_BLOCK, BlockCrcs, block_count, block_crc, of_bytes
from mountfs.snapshot.entries import DEFLATED, FILE, STORED, Entry, Location
from mountfs.snapshot.filetable import decode_file_table, encode_file_table
from mountfs.tree.index import TreeIndex
from tests.unit.test_chunks import csv_lines, pending, write


def test_incremental_equals_whole_whatever_the_pieces() -> None:
    data = random.Random(1).randbytes(3 * VERIFY_BLOCK + 777)
    whole = of_bytes(data)
    assert len(whole) == 4 * block_count(len(data)) == 16
    for i in range(4):
        assert block_crc(whole, i) == zlib.crc32(data[i * VERIFY_BLOCK : (i + 1) * VERIFY_BLOCK])
    rnd = random.Random(2)
    crcs = BlockCrcs()
    pos = 0
    while pos < len(data):
        n = rnd.randint(1, 300_000)
        crcs.update(data[pos : pos + n])
        pos += n
    assert crcs.digest() == whole


def test_exact_multiple_has_no_empty_tail() -> None:
    assert len(of_bytes(b"x" * (2 * VERIFY_BLOCK))) == 8


def test_chunk_records_blocks_of_large_stored_members_only(tmp_path: Path) -> None:
    rnd = random.Random(3)
    files = {
        "big.bin": rnd.randbytes(3 << 20),  # streamed path
        "mid.bin": rnd.randbytes(VERIFY_BLOCK * 2 + 5),  # small-file path, still stored
        "tiny.bin": rnd.randbytes(1000),  # one block or less: verified by the member CRC
        "text.csv": csv_lines(2 << 20),  # deflated: inflated whole
    }
    pend = [pending(tmp_path, p, d) for p, d in sorted(files.items())]
    path, result = write(tmp_path, pend)
    raw = path.read_bytes()
    by_path = {e.path: e for e in result.entries}
    for name in ("big.bin", "mid.bin"):
        loc = by_path[name].loc
        assert loc is not None
        assert loc.method == STORED
        data = files[name]
        assert len(loc.blocks) == 4 * block_count(len(data))
        for i in range(block_count(len(data))):
            stored = raw[loc.offset + i * VERIFY_BLOCK : loc.offset + min((i + 1) * VERIFY_BLOCK, len(data))]
            assert block_crc(loc.blocks, i) == zlib.crc32(stored)
    tiny = by_path["tiny.bin"].loc
    text = by_path["text.csv"].loc
    assert tiny is not None
    assert tiny.blocks == b""
    assert text is not None
    assert text.method == DEFLATED
    assert text.blocks == b""


def _big_entry(blocks: bytes, size: int = 3 * VERIFY_BLOCK) -> Entry:
    return Entry(
        "d/big.bin",
        FILE,
        size=size,
        sha256="a" * 64,
        loc=Location("v0", 0, 100, size, STORED, 123, blocks),
    )


def test_file_table_round_trip_keeps_blocks() -> None:
    blocks = of_bytes(random.Random(4).randbytes(3 * VERIFY_BLOCK))
    small = Entry("a.txt", FILE, size=3, sha256="b" * 64, loc=Location("v0", 0, 10, 3, STORED, 9))
    got = decode_file_table(encode_file_table("v1", [_big_entry(blocks), small]), "v1")
    assert got[1].loc is not None
    assert got[1].loc.blocks == blocks
    assert got[0].loc is not None
    assert got[0].loc.blocks == b""


def test_tables_without_the_blocks_column_still_decode() -> None:
    blocks = of_bytes(b"z" * (3 * VERIFY_BLOCK))
    doc = json.loads(gzip.decompress(encode_file_table("v1", [_big_entry(blocks)])))
    del doc["columns"]["blocks"]
    (got,) = decode_file_table(gzip.compress(json.dumps(doc).encode()), "v1")
    assert got.loc is not None
    assert got.loc.blocks == b""


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("00", "block CRCs"),  # wrong count
        ("zz" * 12, "bad block CRCs"),
        (12, "unexpected block CRCs"),
    ],
)
def test_bad_blocks_are_integrity_errors(value: object, message: str) -> None:
    doc = json.loads(
        gzip.decompress(encode_file_table("v1", [_big_entry(of_bytes(b"q" * 3 * VERIFY_BLOCK))]))
    )
    doc["columns"]["blocks"] = [value]
    with pytest.raises(IntegrityError, match=message):
        decode_file_table(gzip.compress(json.dumps(doc).encode()), "v1")


def test_blocks_on_a_deflated_member_are_refused() -> None:
    e = _big_entry(b"")
    assert e.loc is not None
    deflated = Entry(e.path, FILE, e.size, e.sha256, loc=Location("v0", 0, 100, 50, DEFLATED, 1))
    doc = json.loads(gzip.decompress(encode_file_table("v1", [deflated])))
    doc["columns"]["blocks"] = ["00" * 12]
    with pytest.raises(IntegrityError, match="unexpected block CRCs"):
        decode_file_table(gzip.compress(json.dumps(doc).encode()), "v1")


def test_tree_index_keeps_blocks(tmp_path: Path) -> None:
    blocks = of_bytes(random.Random(5).randbytes(3 * VERIFY_BLOCK))
    e = _big_entry(blocks)
    TreeIndex.build(tmp_path / "t.sqlite", "v1", {e.path: e})
    with TreeIndex.open(tmp_path / "t.sqlite") as index:
        got = index.get(e.path)
        node = index.lookup(index.lookup(1, "d").ino, "big.bin")  # type: ignore[union-attr]
    assert got is not None
    assert got.loc is not None
    assert got.loc.blocks == blocks
    assert node is not None
    assert node.loc is not None
    assert node.loc.blocks == blocks
