"""The merged-tree index: round trips, stable inodes, FUSE-style lookups, damaged files."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mountfs.errors import IntegrityError
from mountfs.snapshot.entries import DEFLATED, FILE, LINK, SYMLINK, TOMBSTONE, Entry, Location
from mountfs.tree.index import DIR, DIR_MODE, FORMAT, ROOT_INO, TreeIndex

TREE = {
    e.path: e
    for e in [
        Entry("a/b/c.txt", FILE, 3, "s1", 0o644, 30, "", Location("v1", 0, 100, 3, 0, 123), "v1"),
        Entry("a/b/d.bin", FILE, 5, "s2", 0o600, 50, "", Location("v0", 2, 7, 4, DEFLATED, 9), "v0"),
        Entry("a/e", SYMLINK, 0, "", 0o777, 10, "b/c.txt", None, "v1"),
        Entry("a.txt", FILE, 7, "s3", 0o644, 70, "", Location("v1", 1, 0, 7, 0, 1), "v1"),
        Entry("ab/x", LINK, 11, "s4", 0o644, 5, "s3://bucket/x", None, "v2"),
        Entry("z", FILE, 0, "e3b0", 0o755, 1, "", None, "v2"),
    ]
}


@pytest.fixture
def index(tmp_path: Path) -> Iterator[TreeIndex]:
    path = tmp_path / "v2.tree"
    TreeIndex.build(path, "v2", TREE)
    idx = TreeIndex.open(path)
    yield idx
    idx.close()


def test_round_trip(index: TreeIndex) -> None:
    assert index.version == "v2"
    assert index.to_tree() == TREE
    assert index.count() == 6
    assert index.total_bytes() == 26
    for path, entry in TREE.items():
        assert index.get(path) == entry


@pytest.mark.parametrize(
    ("path", "is_dir", "is_entry"),
    [
        pytest.param("", True, False, id="root"),
        pytest.param("a", True, False, id="folder"),
        pytest.param("a/b", True, False, id="nested-folder"),
        pytest.param("a/b/c.txt", False, True, id="file"),
        pytest.param("a/e", False, True, id="symlink"),
        pytest.param("ab/x", False, True, id="link"),
        pytest.param("missing", False, False, id="absent"),
        pytest.param("a/b/c", False, False, id="prefix-of-a-name"),
    ],
)
def test_get_and_is_dir(index: TreeIndex, path: str, is_dir: bool, is_entry: bool) -> None:
    assert index.is_dir(path) is is_dir
    assert (index.get(path) is not None) is is_entry


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        pytest.param("", ["a.txt", "a/b/c.txt", "a/b/d.bin", "a/e", "ab/x", "z"], id="all"),
        pytest.param("a", ["a/b/c.txt", "a/b/d.bin", "a/e"], id="folder-not-siblings-with-same-start"),
        pytest.param("a/b", ["a/b/c.txt", "a/b/d.bin"], id="nested"),
        pytest.param("z", ["z"], id="a-file-itself"),
        pytest.param("nothing", [], id="absent"),
    ],
)
def test_iter_entries(index: TreeIndex, prefix: str, expected: list[str]) -> None:
    assert [e.path for e in index.iter_entries(prefix)] == expected


def test_nodes_for_the_mount(index: TreeIndex) -> None:
    root = index.node(ROOT_INO)
    assert root is not None
    assert (root.path, root.parent, root.kind, root.mode, root.entry()) == ("", ROOT_INO, DIR, DIR_MODE, None)
    assert root.mtime_ns == 70
    a = index.lookup(ROOT_INO, "a")
    assert a is not None
    assert (a.kind, a.path, a.size, a.mtime_ns) == (DIR, "a", 0, 50)
    b = index.lookup(a.ino, "b")
    assert b is not None
    c = index.lookup(b.ino, "c.txt")
    assert c is not None
    assert c.parent == b.ino
    assert c.entry() == TREE["a/b/c.txt"]
    assert index.node(c.ino) == c
    assert index.lookup(ROOT_INO, "") is None
    assert index.lookup(ROOT_INO, "nope") is None
    assert index.node(10_000) is None
    assert [n.name for n in index.children(ROOT_INO)] == ["a", "a.txt", "ab", "z"]
    assert [n.name for n in index.children(a.ino)] == ["b", "e"]
    assert index.children(c.ino) == []


def test_children_paging(tmp_path: Path) -> None:
    tree = {f"d/f{i:04}": Entry(f"d/f{i:04}", FILE, i) for i in range(2500)}
    TreeIndex.build(tmp_path / "t", "v", tree)
    with TreeIndex.open(tmp_path / "t") as idx:
        d = idx.lookup(ROOT_INO, "d")
        assert d is not None
        names: list[str] = []
        after = ""
        while page := idx.children(d.ino, after, limit=1000):
            assert len(page) <= 1000
            names += [n.name for n in page]
            after = page[-1].name
        assert names == sorted(tree_path.split("/")[1] for tree_path in tree)


@pytest.mark.parametrize("limit", [1, 3, 7, 100])
def test_children_page_lists_folders_first_at_any_offset(tmp_path: Path, limit: int) -> None:
    names = ["b.txt", "a", "c", "A.bin", "z.txt", "m"]
    tree = {f"top/{n}/inner.txt" if n in ("a", "c", "m") else f"top/{n}": None for n in names}
    entries = {p: Entry(p, FILE, 1) for p in tree}
    TreeIndex.build(tmp_path / "t", "v", entries)
    with TreeIndex.open(tmp_path / "t") as idx:
        assert idx.folder_ino("top/b.txt") is None
        assert idx.folder_ino("nowhere") is None
        assert idx.folder_ino("") == ROOT_INO
        ino = idx.folder_ino("top")
        assert ino is not None
        assert idx.child_counts(ino) == (6, 3)
        assert idx.child_counts(ROOT_INO) == (1, 1)
        listed: list[str] = []
        offset = 0
        while page := idx.children_page(ino, offset, limit, 3):
            assert len(page) <= limit
            listed += [n.name for n in page]
            offset += len(page)
        assert listed == ["a", "c", "m", "A.bin", "b.txt", "z.txt"]


def test_inodes_are_stable(tmp_path: Path) -> None:
    TreeIndex.build(tmp_path / "one", "v2", TREE)
    TreeIndex.build(tmp_path / "two", "v2", dict(reversed(TREE.items())))

    def inos(path: Path) -> dict[str, int]:
        with TreeIndex.open(path) as idx:
            found: dict[str, int] = {}
            stack = [ROOT_INO]
            while stack:
                for child in idx.children(stack.pop()):
                    found[child.path] = child.ino
                    stack.append(child.ino)
            return found

    first = inos(tmp_path / "one")
    assert first == inos(tmp_path / "two")
    assert sorted(first, key=first.__getitem__) == sorted(first)  # numbered in path order
    assert len(first) == 6 + 3  # the entries and folders a, a/b, ab; the root is not its own child


def test_empty_tree(tmp_path: Path) -> None:
    TreeIndex.build(tmp_path / "empty", "v0", {})
    with TreeIndex.open(tmp_path / "empty") as idx:
        assert idx.to_tree() == {}
        assert idx.is_dir("")
        assert idx.children(ROOT_INO) == []
        assert (idx.count(), idx.total_bytes()) == (0, 0)


def test_rebuild_replaces_atomically_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "v.tree"
    TreeIndex.build(path, "v", TREE)
    TreeIndex.build(path, "v", {"only": Entry("only", FILE, 1)})
    with TreeIndex.open(path) as idx:
        assert list(idx.to_tree()) == ["only"]
    assert [p.name for p in path.parent.iterdir()] == ["v.tree"]


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param({"x": Entry("x", TOMBSTONE)}, id="tombstone"),
        pytest.param({"x": Entry("y", FILE)}, id="key-mismatch"),
        pytest.param({"a": Entry("a", FILE), "a/b": Entry("a/b", FILE)}, id="file-and-folder"),
    ],
)
def test_build_rejects_invalid_trees(tmp_path: Path, bad: dict[str, Entry]) -> None:
    with pytest.raises(IntegrityError):
        TreeIndex.build(tmp_path / "bad", "v", bad)
    assert list(tmp_path.iterdir()) == []


def test_missing_corrupt_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(IntegrityError, match="missing"):
        TreeIndex.open(tmp_path / "nope")
    junk = tmp_path / "junk"
    junk.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(IntegrityError):
        TreeIndex.open(junk)
    other = tmp_path / "other"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT)")
        conn.execute("INSERT INTO meta VALUES ('format', 'something/9')")
    conn.close()
    with pytest.raises(IntegrityError, match="format"):
        TreeIndex.open(other)
    no_meta = tmp_path / "no_meta"
    sqlite3.connect(no_meta).close()
    with pytest.raises(IntegrityError):
        TreeIndex.open(no_meta)


def test_truncated_file(tmp_path: Path) -> None:
    path = tmp_path / "big"
    TreeIndex.build(path, "v", {f"f{i}": Entry(f"f{i}", FILE, i) for i in range(5000)})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])

    def read_all() -> dict[str, Entry]:
        with TreeIndex.open(path) as idx:
            return idx.to_tree()

    with pytest.raises(IntegrityError):
        read_all()


def test_meta_format(tmp_path: Path) -> None:
    TreeIndex.build(tmp_path / "t", "v9", TREE)
    with sqlite3.connect(tmp_path / "t") as conn:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    conn.close()
    assert meta["format"] == FORMAT
    assert meta["version"] == "v9"


def test_threads_get_their_own_connection(index: TreeIndex) -> None:
    errors: list[BaseException] = []
    results: list[dict[str, Entry]] = []

    def work() -> None:
        try:
            results.append(index.to_tree())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert results == [TREE] * 8
    index.close()
    late = threading.Thread(target=work)
    late.start()
    late.join()
    assert len(errors) == 1
    assert isinstance(errors[0], IntegrityError)
    assert "closed" in str(errors[0])


def test_build_100k_entries(tmp_path: Path) -> None:
    tree = {
        p: Entry(p, FILE, i, f"{i:064x}", 0o644, i, "", Location("v", i // 1000, i * 10, i, 0, i), "v")
        for i in range(100_000)
        for p in [f"d{i % 50}/s{i % 13}/file-{i:06}.bin"]
    }
    start = time.perf_counter()
    TreeIndex.build(tmp_path / "big", "v", tree)
    built = time.perf_counter() - start
    start = time.perf_counter()
    with TreeIndex.open(tmp_path / "big") as idx:
        back = idx.to_tree()
        read = time.perf_counter() - start
        assert idx.count() == 100_000
        assert idx.get("d7/s7/file-000007.bin") == tree["d7/s7/file-000007.bin"]
    assert back == tree
    print(f"TreeIndex: build 100,000 entries {built:.2f} s, to_tree {read:.2f} s")
