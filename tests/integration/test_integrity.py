"""Damaged or hostile stores: wrong bytes are never served, bad paths never written, errors are typed."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mountfs import Dataset
from mountfs.errors import (
    IntegrityError,
    ObjectMissingError,
    StoreError,
    UnsafePathError,
)
from mountfs.snapshot.entries import DEFLATED, FILE, STORED, Entry
from mountfs.snapshot.filetable import decode_file_table, encode_file_table
from tests.integration.api_fixtures import (
    cache_objects_ok,
    open_ws,
    sha256_of,
    workspace,
    write_files,
)


@dataclass
class Built:
    root: Path
    src: Path
    ds: Dataset
    doc: dict[str, object]
    table: dict[str, Entry]

    @property
    def store(self) -> Path:
        return self.root / "store"

    @property
    def manifest_path(self) -> Path:
        return self.store / "registry" / f"{self.ds.id}.json"

    def chunk_path(self, entry: Entry) -> Path:
        assert entry.loc is not None
        return self.store / "data" / self.ds.id / f"chunk-{entry.loc.chunk:04d}.zip"


@pytest.fixture
def built(tmp_path: Path) -> Iterator[Built]:
    rng = random.Random(3)
    src = write_files(
        tmp_path / "src",
        {
            "a_first.txt": "first file, fine\n" * 20,
            "big.bin": rng.randbytes(300_000),
            "text.txt": "compressible line\n" * 3000,
            "z_last.txt": "last file, fine\n" * 20,
        },
    )
    with workspace(tmp_path) as ws:
        ds = Dataset.create("ds", "proj", workspace=ws)
        ds.add_files(src)
        ds.close()
        m = ws.manifest(ds.id)
        raw = (tmp_path / "store" / "data" / m.file_table.key).read_bytes()
        table = {e.path: e for e in decode_file_table(raw, ds.id)}
        doc = json.loads((tmp_path / "store" / "registry" / f"{ds.id}.json").read_text())
        yield Built(tmp_path, src, ds, doc, table)


def _flip(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x5A
    path.write_bytes(bytes(raw))


def _assert_no_wrong_content(target: Path, src: Path) -> None:
    if not target.exists():
        return
    for p in target.rglob("*"):
        if p.is_file():
            rel = p.relative_to(target)
            assert p.read_bytes() == (src / rel).read_bytes(), f"{rel} holds wrong bytes"


@pytest.mark.parametrize(("name", "method"), [("big.bin", STORED), ("text.txt", DEFLATED)])
@pytest.mark.parametrize("how", ["mutable", "local"])
def test_flipped_byte_never_served(built: Built, name: str, method: int, how: str) -> None:
    e = built.table[name]
    assert e.loc is not None
    assert e.loc.method == method
    _flip(built.chunk_path(e), e.loc.offset + e.loc.stored_size // 2)
    target = built.root / "target"
    with workspace(built.root, home="cold") as cold:  # nothing cached: the bytes come from the store
        ds = Dataset.get(built.ds.id, workspace=cold)

        def fetch() -> str:
            return ds.get_mutable_local_copy(target) if how == "mutable" else ds.get_local_copy()

        with pytest.raises(IntegrityError, match=name):
            fetch()
        assert not (target / name).exists()
        _assert_no_wrong_content(target, built.src)
        assert list((built.root / "cold" / "copies").iterdir()) == []  # no half-made read-only copy
        cache_objects_ok(cold.settings.cache_dir)
        sha = e.sha256
        assert not (cold.settings.cache_dir / "objects" / sha[:2] / sha).exists()
        # The other files are still served (the damage is confined to one member).
        ok = Path(ds.get_mutable_local_copy(built.root / "partial", files=["a_first.txt", "z_last.txt"]))
        assert (ok / "z_last.txt").read_bytes() == (built.src / "z_last.txt").read_bytes()


def test_tampered_file_table(built: Built) -> None:
    ft = built.store / "data" / built.ds.id / "files.json.gz"
    entries = list(built.table.values())
    forged = [
        Entry(e.path, e.kind, e.size, e.sha256, 0o777, e.mtime_ns, e.target, e.loc, "") for e in entries
    ]
    ft.write_bytes(encode_file_table(built.ds.id, forged))  # valid table, but not the one the manifest names
    with workspace(built.root, home="cold") as cold:
        ds = Dataset.get(built.ds.id, workspace=cold)
        with pytest.raises(IntegrityError, match="does not match its manifest"):
            ds.list_files()
        with pytest.raises(IntegrityError):
            ds.get_mutable_local_copy(built.root / "target")
        assert not (built.root / "target").exists() or not any((built.root / "target").iterdir())
    # Garbage instead of a table: same error, never a traceback from gzip or json.
    ft.write_bytes(b"not gzip at all")
    with workspace(built.root, home="cold2") as cold, pytest.raises(IntegrityError):
        Dataset.get(built.ds.id, workspace=cold).get_local_copy()


def test_corrupt_manifest(built: Built) -> None:
    built.manifest_path.write_text('{"format": "dsmount.manifest/1", "id": ')
    for home in ("home", "cold"):  # the machine that built it, and a new one
        with workspace(built.root, home=home) as ws:
            with pytest.raises(IntegrityError) as info:
                ws.refresh()
            assert "\n" not in str(info.value)
            assert built.ds.id in str(info.value)
            with pytest.raises(IntegrityError):
                Dataset.get(built.ds.id, workspace=ws).get_local_copy()
    # Valid JSON, wrong shape.
    built.manifest_path.write_text(json.dumps({**built.doc, "chunks": "nope"}))
    with workspace(built.root, home="cold3") as ws, pytest.raises(IntegrityError) as info:
        Dataset.list_datasets(workspace=ws)
    assert "\n" not in str(info.value)


def test_missing_chunk(built: Built) -> None:
    chunk = built.chunk_path(built.table["big.bin"])
    chunk.unlink()
    with workspace(built.root, home="cold") as cold:
        ds = Dataset.get(built.ds.id, workspace=cold)
        with pytest.raises(ObjectMissingError) as info:
            ds.get_mutable_local_copy(built.root / "target")
        assert isinstance(info.value, StoreError)
        assert "\n" not in str(info.value)
        with pytest.raises(ObjectMissingError):
            ds.get_local_copy()
    # A missing file table is the same kind of error.
    (built.store / "data" / built.ds.id / "files.json.gz").unlink()
    with workspace(built.root, home="cold2") as cold, pytest.raises(ObjectMissingError):
        Dataset.get(built.ds.id, workspace=cold).list_files()


def _rewrite_table(built: Built, entries: list[Entry]) -> None:
    raw = encode_file_table(built.ds.id, entries)
    (built.store / "data" / built.ds.id / "files.json.gz").write_bytes(raw)
    table_ref = dict(built.doc["file_table"])  # type: ignore[call-overload]
    table_ref.update(size=len(raw), sha256=hashlib.sha256(raw).hexdigest())
    doc = {**built.doc, "file_table": table_ref}
    built.manifest_path.write_text(json.dumps(doc))


@pytest.mark.parametrize("evil", ["../evil", "a/../../evil", "/tmp/evil-abs", "ok/./evil"])
def test_crafted_path_never_escapes(built: Built, evil: str) -> None:
    good = built.table["a_first.txt"]
    forged = Entry(evil, FILE, good.size, good.sha256, 0o644, good.mtime_ns, "", good.loc, "")
    _rewrite_table(built, [*built.table.values(), forged])
    before = sorted(str(p) for p in built.root.rglob("*"))
    target = built.root / "deep" / "target"
    with workspace(built.root, home="cold") as cold:
        ds = Dataset.get(built.ds.id, workspace=cold)
        with pytest.raises(UnsafePathError):
            ds.get_mutable_local_copy(target)
        with pytest.raises(UnsafePathError):
            ds.get_local_copy()
    after = {str(p) for p in built.root.rglob("*")}
    assert not [p for p in after - set(before) if "evil" in p]
    assert not Path("/tmp/evil-abs").exists()
    assert not (built.root / "deep" / "evil").exists()


def test_unreadable_store_location(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("a file where the store should be")
    with pytest.raises(StoreError) as info:
        open_ws(tmp_path, store=not_a_folder)
    assert "\n" not in str(info.value)
    with pytest.raises(StoreError):
        open_ws(tmp_path, home="h2", store=not_a_folder / "below")


def test_unreadable_chunk_and_registry(built: Built) -> None:
    chunk = built.chunk_path(built.table["big.bin"])
    size = chunk.stat().st_size
    chunk.unlink()
    chunk.mkdir()  # something there, but not readable as an object
    with workspace(built.root, home="cold") as cold:
        ds = Dataset.get(built.ds.id, workspace=cold)
        with pytest.raises(StoreError):
            ds.get_mutable_local_copy(built.root / "target")
    shutil.rmtree(chunk)
    chunk.write_bytes(b"\0" * size)  # right size, wrong bytes
    with workspace(built.root, home="cold2") as cold:
        with pytest.raises(IntegrityError):
            Dataset.get(built.ds.id, workspace=cold).get_mutable_local_copy(built.root / "target2")
        assert sha256_of(chunk) != built.doc["chunks"][0]["sha256"]  # type: ignore[index]
    # A registry entry that cannot be read (a symlink loop): a StoreError, not an OSError.
    built.manifest_path.unlink()
    built.manifest_path.symlink_to(built.manifest_path.name)
    with workspace(built.root, home="cold3") as cold:
        with pytest.raises(StoreError) as info:
            Dataset.list_datasets(workspace=cold)
        assert "\n" not in str(info.value)
