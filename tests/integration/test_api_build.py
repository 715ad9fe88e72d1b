"""Building versions through the Python API: create, add, remove, sync, upload, close, dedup, merges."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import pytest

from mountfs import Dataset, Workspace
from mountfs.errors import (
    DirtyError,
    IntegrityError,
    NotClosedError,
    UsageError,
    VersionClosedError,
)
from mountfs.snapshot.entries import DEFLATED, FILE, STORED, SYMLINK, TOMBSTONE, Entry
from mountfs.snapshot.filetable import decode_file_table
from mountfs.snapshot.reader import read_member_range
from tests.integration.api_fixtures import (
    assert_store_consistent,
    tree_state,
    unzip_test,
    workspace,
    write_files,
    zip_names,
)


def build(
    ws: Workspace,
    src: Path | None,
    *,
    name: str = "ds",
    project: str | None = "proj",
    parents: Sequence[str | Dataset] = (),
    chunk_size: int | None = None,
) -> Dataset:
    ds = Dataset.create(name, project, parent_datasets=list(parents), chunk_size=chunk_size, workspace=ws)
    if src is not None:
        ds.add_files(src)
    ds.close()
    return ds


def table_of(ws: Workspace, ds: Dataset) -> list[Entry]:
    """The version's own file table, read straight from the store folder and decoded."""
    m = ws.manifest(ds.id)
    raw = (Path(m.data_url) / m.file_table.key).read_bytes()
    return decode_file_table(raw, ds.id)


def data_folder(ws: Workspace, ds: Dataset) -> Path:
    return Path(ws.manifest(ds.id).data_url) / ds.id


# ----- create --------------------------------------------------------------------------------


def test_create_names_versions_and_parents(ws: Workspace, tmp_path: Path) -> None:
    src = write_files(tmp_path / "src", {"a.txt": "a"})
    first = Dataset.create("ds", "proj", dataset_tags=["t1", "t2"], description="d", workspace=ws)
    assert (first.name, first.project, first.version, first.state) == ("ds", "proj", "1.0.0", "draft")
    assert first.tags == ["t1", "t2"]
    assert first.description == "d"
    first.add_files(src)
    first.close()
    assert first.state == "closed"
    assert first.is_final()

    second = Dataset.create("ds", "proj", parent_datasets=[first], workspace=ws)
    assert second.version == "1.0.1"
    second.close()
    explicit = Dataset.create("ds", "proj", dataset_version="2.0.0", workspace=ws)
    assert explicit.version == "2.0.0"
    with pytest.raises(UsageError, match=r"already has a version 2\.0\.0"):
        Dataset.create("ds", "proj", dataset_version="2.0.0", workspace=ws)
    with pytest.raises(UsageError, match=r"already has a version 1\.0\.0"):
        Dataset.create("ds", "proj", dataset_version="1.0.0", workspace=ws)
    explicit.close()
    assert Dataset.create("ds", "proj", workspace=ws).version == "2.0.1"

    # The project comes from the last parent.
    other = build(ws, src, name="other", project="elsewhere")
    child = Dataset.create("child", None, parent_datasets=[first.id, other.id], workspace=ws)
    assert child.project == "elsewhere"
    assert child.parents == [first.id, other.id]
    with pytest.raises(UsageError):
        Dataset.create("orphan", None, workspace=ws)

    # A draft cannot be a parent.
    draft = Dataset.create("d2", "proj", workspace=ws)
    with pytest.raises(NotClosedError):
        Dataset.create("d3", "proj", parent_datasets=[draft], workspace=ws)
    with pytest.raises(NotClosedError):
        Dataset.create("d3", "proj", parent_datasets=[draft.id], workspace=ws)
    # A closed version cannot change.
    with pytest.raises(VersionClosedError):
        first.add_files(src)


# ----- add_files -----------------------------------------------------------------------------


@pytest.fixture
def src_tree(tmp_path: Path) -> Path:
    return write_files(
        tmp_path / "src",
        {
            "top.txt": "top",
            "1.csv": "a,b\n",
            "2.csv": "c,d\n",
            "sub/x.txt": "x",
            "sub/x.csv": "x,y\n",
            "sub/deep/y.txt": "y",
        },
    )


def _added(ws: Workspace, path: Path | str, **kwargs: object) -> tuple[int, list[str]]:
    ds = Dataset.create("ds", "proj", workspace=ws)
    n = ds.add_files(path, **kwargs)  # type: ignore[arg-type]
    files = ds.list_files()
    ds.discard()
    return n, files


def test_add_files_forms(ws: Workspace, src_tree: Path) -> None:
    assert _added(ws, src_tree / "top.txt") == (1, ["top.txt"])
    assert _added(ws, src_tree / "sub") == (3, ["deep/y.txt", "x.csv", "x.txt"])
    assert _added(ws, str(src_tree / "*.csv")) == (2, ["1.csv", "2.csv"])
    assert _added(ws, src_tree, wildcard="*.csv") == (3, ["1.csv", "2.csv", "sub/x.csv"])
    assert _added(ws, src_tree, wildcard=["*.csv", "y.txt"])[1] == [
        "1.csv",
        "2.csv",
        "sub/deep/y.txt",
        "sub/x.csv",
    ]
    assert _added(ws, src_tree / "sub", local_base_folder=src_tree)[1] == [
        "sub/deep/y.txt",
        "sub/x.csv",
        "sub/x.txt",
    ]
    assert _added(ws, src_tree / "sub" / "x.txt", local_base_folder=src_tree)[1] == ["sub/x.txt"]
    assert _added(ws, src_tree / "sub", dataset_path="data/v1")[1] == [
        "data/v1/deep/y.txt",
        "data/v1/x.csv",
        "data/v1/x.txt",
    ]
    assert _added(ws, src_tree, recursive=False) == (3, ["1.csv", "2.csv", "top.txt"])
    with pytest.raises(UsageError):
        _added(ws, src_tree, local_base_folder=src_tree / "sub")


def test_symlinks_inside_kept_outside_stored(ws: Workspace, tmp_path: Path) -> None:
    outside = write_files(tmp_path / "outside", {"secret.txt": "outside bytes"})
    src = write_files(tmp_path / "src", {"data/real.txt": "real", "other.txt": "other"})
    os.symlink("real.txt", src / "data" / "inner")
    os.symlink("../other.txt", src / "data" / "up_inside")
    os.symlink(outside / "secret.txt", src / "abs_out")
    os.symlink("../outside/secret.txt", src / "rel_out")
    ds = build(ws, src)
    kinds = {e.path: e.kind for e in ds.file_entries}
    assert kinds == {
        "abs_out": FILE,
        "data/inner": SYMLINK,
        "data/real.txt": FILE,
        "data/up_inside": SYMLINK,
        "other.txt": FILE,
        "rel_out": FILE,
    }
    assert ds.file_entries_dict["data/inner"].target == "real.txt"
    out = Path(ds.get_mutable_local_copy(tmp_path / "out"))
    assert os.readlink(out / "data" / "inner") == "real.txt"
    assert os.readlink(out / "data" / "up_inside") == "../other.txt"
    assert (out / "data" / "up_inside").read_text() == "other"
    for name in ("abs_out", "rel_out"):
        assert not (out / name).is_symlink()
        assert (out / name).read_text() == "outside bytes"


def test_unchanged_not_recorded_modified_counted(ws: Workspace, tmp_path: Path) -> None:
    src = write_files(tmp_path / "src", {"a.txt": "a", "b.txt": "b", "c/d.txt": "d"})
    v1 = build(ws, src)
    v2 = Dataset.create("ds", "proj", parent_datasets=[v1], workspace=ws)
    assert v2.add_files(src) == 0
    assert ws.catalogue.pending_count(v2.id) == 0
    (src / "b.txt").write_text("B changed")
    (src / "new.txt").write_text("new")
    assert v2.add_files(src) == 2
    assert v2.add_files(src) == 0  # the draft already holds them
    os.chmod(src / "a.txt", 0o600)
    assert v2.add_files(src / "a.txt") == 1  # a mode change is a change
    v2.close()
    assert v2.list_modified_files() == ["a.txt", "b.txt"]
    assert v2.list_added_files() == ["new.txt"]
    stats = ws.manifest(v2.id).stats
    assert (stats.added, stats.modified, stats.removed, stats.files) == (1, 2, 0, 4)
    assert sorted(e.path for e in table_of(ws, v2)) == ["a.txt", "b.txt", "new.txt"]


def test_external_files_fetched_and_verified(ws: Workspace, tmp_path: Path) -> None:
    ext = write_files(tmp_path / "ext", {"one.bin": os.urandom(5000), "sub/two.txt": "two"})
    ds = Dataset.create("ds", "proj", workspace=ws)
    assert ds.add_external_files(str(ext), dataset_path="remote") == 2
    ds.add_files(write_files(tmp_path / "src", {"local.txt": "local"}))
    ds.close()
    assert [e.path for e in ds.link_entries] == ["remote/one.bin", "remote/sub/two.txt"]
    assert ds.link_entries_dict["remote/one.bin"].target == str(ext / "one.bin")
    assert [e.path for e in ds.file_entries] == ["local.txt"]
    assert ws.manifest(ds.id).chunks[0].key.endswith("chunk-0000.zip")
    for chunk in data_folder(ws, ds).glob("chunk-*.zip"):
        assert zip_names(chunk) == ["local.txt"]  # links are not copied into the store
    out = Path(ds.get_mutable_local_copy(tmp_path / "out"))
    assert (out / "remote" / "one.bin").read_bytes() == (ext / "one.bin").read_bytes()
    assert (out / "remote" / "sub" / "two.txt").read_text() == "two"
    assert ds.verify_dataset_hash(out) == []

    # The bytes were hashed at add time: a changed external file is never served.
    (ext / "sub" / "two.txt").write_text("tampered")
    with workspace(tmp_path, home="cold") as cold:
        again = Dataset.get(ds.id, workspace=cold)
        with pytest.raises(IntegrityError):
            again.get_mutable_local_copy(tmp_path / "out2")
        assert not (tmp_path / "out2" / "remote" / "sub" / "two.txt").exists()

    # remove_files by link URL.
    child = Dataset.create("ds", "proj", parent_datasets=[ds], workspace=ws)
    assert child.remove_files(str(ext / "one.bin")) == 1
    child.close()
    assert child.list_files() == ["local.txt", "remote/sub/two.txt"]


# ----- remove_files and sync_folder ----------------------------------------------------------


def test_remove_file_and_folder_tombstones(ws: Workspace, tmp_path: Path) -> None:
    files = {f"f/{i}.txt": f"{i}" for i in range(5)}
    files |= {"f/g/deep.txt": "deep", "x.txt": "x", "y.log": "y", "k/z.log": "z", "k/keep.txt": "k"}
    v1 = build(ws, write_files(tmp_path / "src", files))
    v2 = Dataset.create("ds", "proj", parent_datasets=[v1], workspace=ws)
    assert v2.remove_files("f") == 6
    assert v2.remove_files("x.txt") == 1
    assert v2.remove_files("*.log") == 2  # recursive: file names in any folder
    assert v2.remove_files("nothing*") == 0
    v2.close()
    assert v2.list_files() == ["k/keep.txt"]
    table = table_of(ws, v2)
    assert [(e.path, e.kind) for e in table] == [
        ("f", TOMBSTONE),
        ("k/z.log", TOMBSTONE),
        ("x.txt", TOMBSTONE),
        ("y.log", TOMBSTONE),
    ]
    assert v2.list_removed_files() == sorted(set(files) - {"k/keep.txt"})
    assert not list(data_folder(ws, v2).glob("chunk-*"))

    v3 = Dataset.create("ds", "proj", parent_datasets=[v1], workspace=ws)
    assert v3.remove_files("*.log", recursive=False) == 1  # only the top-level one
    v3.close()
    assert "k/z.log" in v3.list_files()
    assert "y.log" not in v3.list_files()


def test_remove_pending_only_leaves_no_tombstone(ws: Workspace, tmp_path: Path) -> None:
    v1 = build(ws, write_files(tmp_path / "src", {"a.txt": "a"}))
    v2 = Dataset.create("ds", "proj", parent_datasets=[v1], workspace=ws)
    v2.add_files(write_files(tmp_path / "more", {"new/b.txt": "b"}))
    assert v2.remove_files("new") == 1
    v2.close()
    assert table_of(ws, v2) == []
    assert v2.list_files() == ["a.txt"]


def test_sync_folder_counts(ws: Workspace, tmp_path: Path) -> None:
    src = write_files(tmp_path / "src", {"a.txt": "a", "b.txt": "b", "c/d.txt": "d", "c/e.txt": "e"})
    v1 = build(ws, src)
    (src / "a.txt").unlink()
    (src / "c" / "e.txt").unlink()
    (src / "b.txt").write_text("b2")
    write_files(src, {"n1.txt": "n1", "c/n2.txt": "n2", "c/n3.txt": "n3"})
    v2 = Dataset.create("ds", "proj", parent_datasets=[v1], workspace=ws)
    assert v2.sync_folder(src) == (2, 3, 1)
    assert v2.sync_folder(src) == (0, 0, 0)
    v2.close()
    out = Path(v2.get_mutable_local_copy(tmp_path / "out"))
    assert tree_state(out) == tree_state(src)
    assert v2.list_removed_files() == ["a.txt", "c/e.txt"]

    # Below a dataset path, only that part of the dataset mirrors the folder.
    other = write_files(tmp_path / "other", {"only.txt": "only"})
    v3 = Dataset.create("ds", "proj", parent_datasets=[v2], workspace=ws)
    assert v3.sync_folder(other, dataset_path="c") == (3, 1, 0)
    v3.close()
    assert v3.list_files() == ["b.txt", "c/only.txt", "n1.txt"]
    assert [(e.path, e.kind) for e in table_of(ws, v3)] == [
        ("c/d.txt", TOMBSTONE),
        ("c/n2.txt", TOMBSTONE),
        ("c/n3.txt", TOMBSTONE),
        ("c/only.txt", FILE),
    ]
    with pytest.raises(UsageError):
        Dataset.create("ds", "proj", workspace=ws).sync_folder(other / "only.txt")


# ----- upload, finalize, close ---------------------------------------------------------------


def test_upload_finalize_and_dirty(ws: Workspace, tmp_path: Path) -> None:
    src = write_files(tmp_path / "src", {"a.txt": "a" * 100, "b.bin": os.urandom(3000)})
    ds = Dataset.create("ds", "proj", workspace=ws)
    ds.add_files(src)
    assert ds.is_dirty()
    with pytest.raises(DirtyError):
        ds.finalize()
    assert ds.finalize(raise_on_error=False) is False
    assert ds.state == "draft"
    ds.upload()
    assert not ds.is_dirty()
    assert ds.finalize() is True
    assert ds.state == "closed"
    assert ds.list_files() == ["a.txt", "b.bin"]

    auto = Dataset.create("ds", "proj", workspace=ws)
    auto.add_files(src)
    assert auto.finalize(auto_upload=True) is True
    manual = Dataset.create("ds", "proj", workspace=ws)
    manual.add_files(src)
    with pytest.raises(DirtyError):
        manual.close(upload=False)
    manual.close()
    assert manual.is_final()
    assert_store_consistent(tmp_path / "store")


def test_chunks_in_path_order(ws: Workspace, tmp_path: Path) -> None:
    files = {f"d{i // 10}/f{i:03d}.txt": (f"line {i}\n" * 50) for i in range(60)}
    src = write_files(tmp_path / "src", files)
    ds = Dataset.create("ds", "proj", chunk_size=3000, workspace=ws)
    ds.add_files(src)
    ds.close()
    m = ws.manifest(ds.id)
    assert len(m.chunks) >= 5
    assert ds.get_num_chunks() == len(m.chunks)
    assert [c.index for c in m.chunks] == list(range(len(m.chunks)))
    names: list[str] = []
    for c in m.chunks:
        path = Path(m.data_url) / c.key
        assert path.stat().st_size == c.size
        unzip_test(path)
        chunk_names = zip_names(path)
        assert chunk_names
        names.extend(chunk_names)
    assert names == sorted(files)  # path order across chunks
    # Every member's recorded location is what the zip says.
    for e in table_of(ws, ds):
        assert e.loc is not None
        with zipfile.ZipFile(Path(m.data_url) / m.chunks[e.loc.chunk].key) as zf:
            info = zf.getinfo(e.path)
            assert (info.compress_type, info.CRC, info.compress_size) == (
                e.loc.method,
                e.loc.crc32,
                e.loc.stored_size,
            )
    assert_store_consistent(tmp_path / "store")


# ----- dedup ---------------------------------------------------------------------------------


def test_dedup_renames_and_copies(ws: Workspace, tmp_path: Path) -> None:
    files = {f"old/{i:03d}.bin": os.urandom(200 + i) for i in range(100)}
    src = write_files(tmp_path / "src", files)
    v1 = build(ws, src)
    v1_stored = ws.manifest(v1.id).stats.stored_bytes
    assert v1_stored > sum(len(b) for b in files.values())

    renamed = tmp_path / "renamed"
    os.rename(src / "old", renamed)
    v2 = Dataset.create("ds", "proj", parent_datasets=[v1], workspace=ws)
    assert v2.remove_files("old") == 100
    assert v2.add_files(renamed, dataset_path="new") == 100
    v2.close()
    m2 = ws.manifest(v2.id)
    assert m2.chunks == ()
    assert m2.stats.reused == 100
    assert [p.name for p in data_folder(ws, v2).iterdir()] == ["files.json.gz"]
    assert m2.stats.stored_bytes == m2.file_table.size
    assert m2.stats.stored_bytes < v1_stored // 5
    table = table_of(ws, v2)
    assert [(e.path, e.kind) for e in table][:1] == [("new/000.bin", FILE)]
    assert ("old", TOMBSTONE) in [(e.path, e.kind) for e in table]
    assert all(e.loc is not None and e.loc.version == v1.id for e in table if e.kind == FILE)
    out = Path(v2.get_mutable_local_copy(tmp_path / "out"))
    assert tree_state(out / "new", mtimes=False) == tree_state(renamed, mtimes=False)

    # A copy of a stored file and two identical new files: each byte string stored once.
    dup = os.urandom(4000)
    extra = write_files(
        tmp_path / "extra", {"copy.bin": files["old/007.bin"], "dup1.bin": dup, "dup2.bin": dup}
    )
    v3 = Dataset.create("ds", "proj", parent_datasets=[v2], workspace=ws)
    assert v3.add_files(extra) == 3
    v3.close()
    m3 = ws.manifest(v3.id)
    assert len(m3.chunks) == 1
    assert zip_names(Path(m3.data_url) / m3.chunks[0].key) == ["dup1.bin"]
    assert m3.stats.reused == 1  # copy.bin points into v1's chunk
    out3 = Path(v3.get_mutable_local_copy(tmp_path / "out3"))
    assert (out3 / "dup2.bin").read_bytes() == dup
    assert (out3 / "copy.bin").read_bytes() == files["old/007.bin"]


def test_large_incompressible_file_stored_and_range_readable(ws: Workspace, tmp_path: Path) -> None:
    big = os.urandom(5 << 20)
    src = write_files(tmp_path / "src", {"big.bin": big, "text.txt": "compressible " * 2000})
    ds = build(ws, src)
    m = ws.manifest(ds.id)
    entries = {e.path: e for e in table_of(ws, ds)}
    loc = entries["big.bin"].loc
    assert loc is not None
    assert loc.method == STORED
    assert loc.stored_size == len(big)
    text_loc = entries["text.txt"].loc
    assert text_loc is not None
    assert text_loc.method == DEFLATED
    chunk = Path(m.data_url) / m.chunks[loc.chunk].key
    with zipfile.ZipFile(chunk) as zf:
        assert zf.getinfo("big.bin").compress_type == zipfile.ZIP_STORED
    fd = os.open(chunk, os.O_RDONLY)
    try:

        def read(offset: int, length: int) -> bytes:
            return os.pread(fd, length, offset)

        for start, length in [(0, 10), (1 << 20, 4096), (len(big) - 7, 100), (12345, 1)]:
            assert read_member_range(read, loc, len(big), start, length) == big[start : start + length]
    finally:
        os.close(fd)
    out = Path(ds.get_mutable_local_copy(tmp_path / "out"))
    assert (out / "big.bin").read_bytes() == big


# ----- merges --------------------------------------------------------------------------------


def test_multi_parent_later_parent_wins(ws: Workspace, tmp_path: Path) -> None:
    a = build(ws, write_files(tmp_path / "a", {"x.txt": "x from a", "y.txt": "y"}), name="a")
    b = build(ws, write_files(tmp_path / "b", {"x.txt": "x from b", "z/z.txt": "z"}), name="b")
    ab = build(ws, None, name="m", parents=[a, b])
    ba = build(ws, None, name="m", parents=[b, a])
    out_ab = Path(ab.get_mutable_local_copy(tmp_path / "ab"))
    out_ba = Path(ba.get_mutable_local_copy(tmp_path / "ba"))
    assert (out_ab / "x.txt").read_text() == "x from b"
    assert (out_ba / "x.txt").read_text() == "x from a"
    assert ab.list_files() == ba.list_files() == ["x.txt", "y.txt", "z/z.txt"]
    assert ab.get_dependency_graph() == {ab.id: [a.id, b.id], a.id: [], b.id: []}
    # A merge with no changes of its own stores an empty table and no chunk.
    assert table_of(ws, ab) == []
    with workspace(tmp_path, home="cold") as cold:  # rebuilt from the store's tables alone
        assert Dataset.get(ab.id, workspace=cold).list_files() == ab.list_files()
        assert (Path(Dataset.get(ba.id, workspace=cold).get_local_copy()) / "x.txt").read_text() == "x from a"


def test_diamond_with_tombstones(ws: Workspace, tmp_path: Path) -> None:
    root = build(ws, write_files(tmp_path / "r", {"a.txt": "a", "b.txt": "b", "dir/c.txt": "c"}))
    left = Dataset.create("ds", "proj", parent_datasets=[root], workspace=ws)
    left.remove_files("a.txt")
    left.remove_files("dir")
    left.close()
    right = Dataset.create("ds", "proj", parent_datasets=[root], workspace=ws)
    right.add_files(write_files(tmp_path / "rr", {"b.txt": "b from right"}))
    right.close()
    assert left.list_files() == ["b.txt"]

    # Tombstones act within their own version: the later parent's tree still has a.txt.
    d1 = build(ws, None, parents=[left, right])
    assert d1.list_files() == ["a.txt", "b.txt", "dir/c.txt"]
    assert (Path(d1.get_local_copy()) / "b.txt").read_text() == "b from right"
    d2 = build(ws, None, parents=[right, left])
    assert d2.list_files() == ["a.txt", "b.txt", "dir/c.txt"]
    assert (Path(d2.get_local_copy()) / "b.txt").read_text() == "b"

    # The merge version's own tombstone does remove.
    d3 = Dataset.create("ds", "proj", parent_datasets=[left, right], workspace=ws)
    d3.remove_files("dir")
    d3.close()
    assert d3.list_files() == ["a.txt", "b.txt"]
    assert [(e.path, e.kind) for e in table_of(ws, d3)] == [("dir", TOMBSTONE)]
    graph = d3.get_dependency_graph()
    assert graph == {d3.id: [left.id, right.id], left.id: [root.id], right.id: [root.id], root.id: []}
    with workspace(tmp_path, home="cold") as cold:
        for ds in (d1, d2, d3):
            assert Dataset.get(ds.id, workspace=cold).list_files() == ds.list_files()


def test_remove_then_readd(ws: Workspace, tmp_path: Path) -> None:
    src = write_files(tmp_path / "src", {"f/x.txt": "x", "f/y.txt": "y", "g.txt": "g"})
    v1 = build(ws, src)
    v2 = Dataset.create("ds", "proj", parent_datasets=[v1], workspace=ws)
    v2.remove_files("f")
    assert v2.list_files() == ["g.txt"]
    assert v2.add_files(src / "f" / "x.txt", dataset_path="f") == 1
    v2.close()
    assert v2.list_files() == ["f/x.txt", "g.txt"]
    assert v2.list_removed_files() == ["f/y.txt"]
    assert ws.manifest(v2.id).chunks == ()  # x.txt's bytes are the parent's
    v3 = Dataset.create("ds", "proj", parent_datasets=[v2], workspace=ws)
    v3.remove_files("g.txt")
    v3.close()
    v4 = Dataset.create("ds", "proj", parent_datasets=[v3], workspace=ws)
    assert v4.add_files(src / "g.txt") == 1
    v4.close()
    assert v4.list_files() == ["f/x.txt", "g.txt"]
    assert v4.list_added_files() == ["g.txt"]
    out = Path(v4.get_mutable_local_copy(tmp_path / "out"))
    assert (out / "g.txt").read_text() == "g"
    assert (out / "f" / "x.txt").read_text() == "x"
    assert assert_store_consistent(tmp_path / "store") == 4
