"""The overlay store: the merged view, every mutation and its POSIX errors, copy-up, durability
records, the change set and commit's input, against a real TreeIndex lower."""

from __future__ import annotations

import errno
import hashlib
import os
import sqlite3
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from mountfs.errors import IntegrityError
from mountfs.snapshot.entries import FILE, LINK, SYMLINK, TOMBSTONE, Entry, Location, is_under
from mountfs.tree.index import DIR, TreeIndex
from mountfs.tree.merge import apply_changes
from mountfs.tree.overlay import BLOCK, DB_NAME, Node, Overlay
from mountfs.tree.overlay_changes import ADDED, MODIFIED, REMOVED, RENAMED, Change
from mountfs.tree.overlay_store import WHITEOUT, IndexLower, LowerTree

LOWER: dict[str, bytes | str] = {
    "a/b/c.txt": b"hello",
    "a/b/d.bin": bytes(range(256)) * 40,
    "a/e.txt": b"eee",
    "a/link": "b/c.txt",  # a symlink (str: its target)
    "top.txt": b"top level",
    "x/y/z/deep.txt": b"deep",
    "empty": b"",
}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def lower_entries(files: Mapping[str, bytes | str], version: str = "v1") -> dict[str, Entry]:
    tree: dict[str, Entry] = {}
    for i, (path, data) in enumerate(sorted(files.items())):
        if isinstance(data, str):
            tree[path] = Entry(
                path, SYMLINK, len(data), sha(data.encode()), 0o777, 1000 + i, data, None, version
            )
        else:
            loc = Location(version, 0, i * 1000, len(data), 0, zlib.crc32(data))
            tree[path] = Entry(path, FILE, len(data), sha(data), 0o644, 1000 + i, "", loc, version)
    return tree


@dataclass
class Env:
    """A lower version (a real TreeIndex) with known bytes, and an overlay on it."""

    root: Path
    files: dict[str, bytes | str]
    index: TreeIndex
    ov: Overlay
    by_sha: dict[str, bytes]

    def reader(self, path: str, log: list[int] | None = None) -> Callable[[int, int], bytes]:
        """read(offset, size) of the lower bytes at ``path`` (or, for 'P.orig', of lower path P)."""
        if path.endswith(".orig"):
            raw = self.files[path.removesuffix(".orig")]
            assert isinstance(raw, bytes)
            data = raw
        else:
            node = self.ov.getattr(path)
            assert node.entry is not None
            data = self.by_sha[node.entry.sha256]

        def read(offset: int, size: int) -> bytes:
            if log is not None:
                log.append(size)
            return data[offset : offset + size]

        return read

    def content(self, path: str) -> bytes:
        node = self.ov.getattr(path)
        if node.data is not None:
            return node.data.read_bytes()
        assert node.entry is not None
        return self.by_sha[node.entry.sha256]

    def reopen(self) -> Overlay:
        self.ov.close()
        self.ov = Overlay.open(self.root / "ov", self.index)
        return self.ov

    def write(self, path: str, offset: int, data: bytes) -> None:
        node = self.ov.getattr(path)
        read = self.reader(path) if node.data is None and node.size else None
        self.ov.write(path, offset, data, read)


def make_env(root: Path, files: Mapping[str, bytes | str] = LOWER, version: str = "v1") -> Env:
    tree = lower_entries(files, version)
    TreeIndex.build(root / f"{version}.tree", version, tree)
    index = TreeIndex.open(root / f"{version}.tree")
    ov = Overlay.open(root / "ov", index)
    by_sha = {sha(d): d for d in files.values() if isinstance(d, bytes)}
    return Env(root, dict(files), index, ov, by_sha)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = make_env(tmp_path)
    yield e
    e.ov.close()
    e.index.close()


def lower_entry(index: TreeIndex, path: str) -> Entry:
    e = index.get(path)
    assert e is not None
    return e


def names(ov: Overlay, path: str = "") -> list[str]:
    return [n.path.rpartition("/")[2] for n in ov.listdir(path)]


def errno_of(fn: Callable[[], object]) -> int:
    with pytest.raises(OSError, match=r"\[Errno") as info:
        fn()
    assert info.value.errno is not None
    return info.value.errno


def records(ov: Overlay) -> list[tuple[str, str]]:
    """The rows that change content: folder rows that only carry metadata (a mode, an mtime) left out."""
    return [(r.path, r.kind) for r in ov.rows() if r.kind != DIR or r.opaque]


def merged_tree(env: Env) -> dict[str, tuple[str, bytes | str, int]]:
    """Every non-folder path of the merged view: (kind, content or target, mode)."""
    out: dict[str, tuple[str, bytes | str, int]] = {}

    def walk(folder: str) -> None:
        for node in env.ov.listdir(folder):
            if node.is_dir:
                walk(node.path)
            elif node.kind == SYMLINK:
                out[node.path] = (SYMLINK, node.target, node.mode)
            else:
                out[node.path] = (FILE, env.content(node.path), node.mode)

    walk("")
    return out


# -- the merged view -----------------------------------------------------------------------------


def test_fresh_overlay_shows_the_lower(env: Env) -> None:
    assert names(env.ov) == ["a", "empty", "top.txt", "x"]
    assert names(env.ov, "a") == ["b", "e.txt", "link"]
    node = env.ov.getattr("a/b/c.txt")
    assert (node.kind, node.size, node.mode, node.id, node.data) == (FILE, 5, 0o644, 0, None)
    assert node.entry == env.index.get("a/b/c.txt")
    assert env.ov.getattr("a").is_dir
    assert env.ov.getattr("").is_dir
    assert env.ov.readlink("a/link") == "b/c.txt"
    assert env.ov.lookup("a/missing") is None
    assert env.ov.lookup("a/b/c.txt/x") is None
    assert env.ov.is_empty()
    assert env.ov.changes() == []
    assert env.ov.commit_entries() == []


def test_listdir_pages_by_name_across_both_layers(env: Env) -> None:
    env.ov.create("a/aa")
    env.ov.create("a/f")
    env.ov.unlink("a/e.txt")
    assert names(env.ov, "a") == ["aa", "b", "f", "link"]
    assert [n.path for n in env.ov.listdir("a", after="aa", limit=2)] == ["a/b", "a/f"]
    assert [n.path for n in env.ov.listdir("a", after="f")] == ["a/link"]
    assert env.ov.listdir("a", after="link") == []


def test_index_lower_adapter(env: Env) -> None:
    lower = IndexLower(env.index)
    assert lower.version == "v1"
    assert lower.folder("a/b") is not None
    assert lower.folder("a/b/c.txt") is None
    assert lower.folder("nope/x") is None
    assert [name for name, _, _ in lower.list_dir("a")] == ["b", "e.txt", "link"]
    assert [name for name, _, _ in lower.list_dir("a", after="b")] == ["e.txt", "link"]
    assert list(lower.list_dir("a/e.txt")) == []
    assert lower.get("") is None


def test_listdir_of_a_big_lower_folder_pages_through_the_index(tmp_path: Path) -> None:
    files: dict[str, bytes | str] = {f"d/f{i:05d}": b"x" for i in range(2500)}
    e = make_env(tmp_path, files)
    try:
        e.ov.unlink("d/f01000")
        e.ov.create("d/f01000x")
        listing = names(e.ov, "d")
        assert len(listing) == 2500
        assert "f01000" not in listing
        assert listing == sorted(listing)
    finally:
        e.ov.close()
        e.index.close()


# -- creating ------------------------------------------------------------------------------------


def test_create_write_and_read_back(env: Env) -> None:
    node = env.ov.create("a/new.txt", 0o600)
    assert node.data is not None
    assert node.data.parent == env.ov.upper
    assert node.data.name == str(node.id)
    env.ov.write("a/new.txt", 0, b"hello world")
    env.ov.sync("a/new.txt")
    got = env.ov.getattr("a/new.txt")
    assert (got.size, got.mode, got.kind) == (11, 0o600, FILE)
    assert env.content("a/new.txt") == b"hello world"
    assert "new.txt" in names(env.ov, "a")


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("a/b/c.txt", errno.EEXIST),
        ("a", errno.EEXIST),
        ("", errno.EEXIST),
        ("nope/x", errno.ENOENT),
        ("top.txt/x", errno.ENOTDIR),
        ("a/b/c.txt/x/y", errno.ENOTDIR),
    ],
)
def test_create_errors(env: Env, path: str, code: int) -> None:
    assert errno_of(lambda: env.ov.create(path)) == code
    assert errno_of(lambda: env.ov.mkdir(path)) == code
    assert errno_of(lambda: env.ov.symlink(path, "t")) == code


def test_mkdir_and_symlink(env: Env) -> None:
    d = env.ov.mkdir("a/sub", 0o700)
    assert d.is_dir
    assert d.mode == 0o700
    s = env.ov.symlink("a/sub/l", "../e.txt")
    assert s.kind == SYMLINK
    assert s.size == len("../e.txt")
    assert env.ov.readlink("a/sub/l") == "../e.txt"
    assert names(env.ov, "a/sub") == ["l"]
    assert errno_of(lambda: env.ov.readlink("a/e.txt")) == errno.EINVAL


def test_mkdir_over_a_removed_lower_folder_is_opaque(env: Env) -> None:
    env.ov.remove_tree("a")
    env.ov.mkdir("a")
    assert names(env.ov, "a") == []
    env.ov.create("a/e.txt")
    assert names(env.ov, "a") == ["e.txt"]
    assert env.ov.getattr("a/e.txt").size == 0
    assert env.ov.lookup("a/b/c.txt") is None


def test_create_over_a_removed_lower_file_replaces_the_whiteout(env: Env) -> None:
    env.ov.unlink("top.txt")
    env.ov.create("top.txt")
    assert env.ov.getattr("top.txt").size == 0
    assert [kind for _, kind in records(env.ov)] == [FILE]


# -- removing ------------------------------------------------------------------------------------


def test_unlink_lower_file_is_a_whiteout(env: Env) -> None:
    env.ov.unlink("a/e.txt")
    assert env.ov.lookup("a/e.txt") is None
    assert names(env.ov, "a") == ["b", "link"]
    assert records(env.ov) == [("a/e.txt", WHITEOUT)]


def test_unlink_upper_file_leaves_no_record_and_drops_its_data(env: Env) -> None:
    node = env.ov.create("n.txt")
    assert node.data is not None
    assert node.data.exists()
    env.ov.unlink("n.txt")
    assert records(env.ov) == []
    assert not node.data.exists()


def test_unlink_of_an_open_file_keeps_the_open_descriptor_working(env: Env) -> None:
    node = env.ov.create("n.txt")
    assert node.data is not None
    fd = os.open(node.data, os.O_RDWR)
    try:
        env.ov.unlink("n.txt")
        os.pwrite(fd, b"still", 0)
        env.ov.sync(node.id, fd)  # the row is gone: only the data is synced
        assert os.pread(fd, 5, 0) == b"still"
    finally:
        os.close(fd)
    assert env.ov.lookup("n.txt") is None


@pytest.mark.parametrize(
    ("op", "path", "code"),
    [
        ("unlink", "a", errno.EISDIR),
        ("unlink", "missing", errno.ENOENT),
        ("unlink", "top.txt/x", errno.ENOTDIR),
        ("rmdir", "a/e.txt", errno.ENOTDIR),
        ("rmdir", "a", errno.ENOTEMPTY),
        ("rmdir", "missing", errno.ENOENT),
        ("rmdir", "", errno.EBUSY),
        ("remove_tree", "missing", errno.ENOENT),
        ("remove_tree", "", errno.EBUSY),
    ],
)
def test_remove_errors(env: Env, op: str, path: str, code: int) -> None:
    assert errno_of(lambda: getattr(env.ov, op)(path)) == code
    assert env.ov.is_empty()


def test_rmdir_of_a_folder_emptied_by_whiteouts(env: Env) -> None:
    env.ov.unlink("a/b/c.txt")
    assert errno_of(lambda: env.ov.rmdir("a/b")) == errno.ENOTEMPTY
    env.ov.unlink("a/b/d.bin")
    assert names(env.ov, "a/b") == []
    env.ov.rmdir("a/b")
    assert records(env.ov) == [("a/b", WHITEOUT)]
    assert env.ov.lookup("a/b") is None


def test_rmdir_of_an_upper_folder_leaves_nothing(env: Env) -> None:
    env.ov.mkdir("new")
    env.ov.rmdir("new")
    assert records(env.ov) == []


def test_remove_tree_of_1000_lower_files_is_one_record(tmp_path: Path) -> None:
    files: dict[str, bytes | str] = {f"big/{i // 100}/f{i}": b"x" for i in range(1000)}
    files["keep.txt"] = b"k"
    e = make_env(tmp_path, files)
    try:
        e.ov.create("big/3/local")  # an upper file inside goes too
        e.ov.remove_tree("big")
        assert records(e.ov) == [("big", WHITEOUT)]
        assert names(e.ov) == ["keep.txt"]
        assert os.listdir(e.ov.upper) == []
        assert e.ov.changes() == [Change(REMOVED, "big", DIR)]
        assert e.ov.commit_entries() == [(Entry("big", TOMBSTONE), "")]
    finally:
        e.ov.close()
        e.index.close()


def test_remove_tree_of_an_upper_only_folder_leaves_nothing(env: Env) -> None:
    env.ov.mkdir("n")
    env.ov.create("n/f")
    env.ov.mkdir("n/m")
    env.ov.remove_tree("n")
    assert records(env.ov) == []


def test_remove_tree_of_a_file(env: Env) -> None:
    env.ov.remove_tree("top.txt")
    assert env.ov.lookup("top.txt") is None


# -- renaming ------------------------------------------------------------------------------------


def test_rename_lower_file_is_a_reference_and_a_whiteout(env: Env) -> None:
    before = env.ov.getattr("a/e.txt")
    env.ov.rename("a/e.txt", "moved.txt")
    assert env.ov.lookup("a/e.txt") is None
    node = env.ov.getattr("moved.txt")
    assert node.data is None
    assert node.entry is not None
    assert node.entry.loc == before.entry.loc if before.entry else False
    assert node.ref_path == "a/e.txt"
    assert env.content("moved.txt") == b"eee"
    assert os.listdir(env.ov.upper) == []
    assert env.ov.changes() == [Change(RENAMED, "moved.txt", FILE, 3, sha(b"eee"), "a/e.txt")]
    [(tomb, src1), (ref, src2)] = env.ov.commit_entries()
    assert (tomb, src1) == (Entry("a/e.txt", TOMBSTONE), "")
    assert ref.loc == lower_entry(env.index, "a/e.txt").loc
    assert (ref.path, ref.kind, ref.sha256, src2) == ("moved.txt", FILE, sha(b"eee"), "")


def test_rename_upper_file_keeps_its_data_file(env: Env) -> None:
    node = env.ov.create("n")
    env.ov.write("n", 0, b"data")
    env.ov.rename("n", "a/m")
    moved = env.ov.getattr("a/m")
    assert moved.id == node.id
    assert moved.data == node.data
    assert env.content("a/m") == b"data"
    assert env.ov.node(node.id) == moved


def test_rename_file_over_file(env: Env) -> None:
    env.ov.rename("a/e.txt", "top.txt")
    assert env.content("top.txt") == b"eee"
    assert env.ov.lookup("a/e.txt") is None
    env.ov.create("n")
    env.ov.write("n", 0, b"new")
    old = env.ov.getattr("top.txt")
    env.ov.rename("n", "top.txt")
    assert env.content("top.txt") == b"new"
    assert old.data is None


def test_rename_over_upper_file_drops_its_data(env: Env) -> None:
    a = env.ov.create("a1")
    env.ov.create("a2")
    env.ov.rename("a2", "a1")
    assert a.data is not None
    assert not a.data.exists()


@pytest.mark.parametrize(
    ("old", "new", "code"),
    [
        ("missing", "x", errno.ENOENT),
        ("a/e.txt", "nope/x", errno.ENOENT),
        ("a/e.txt", "top.txt/x", errno.ENOTDIR),
        ("a/e.txt", "a/b", errno.EISDIR),
        ("a/b", "top.txt", errno.ENOTDIR),
        ("x", "a", errno.ENOTEMPTY),
        ("a", "a/b/c", errno.EINVAL),
        ("a", "a/new", errno.EINVAL),
        ("a/b", "a", errno.ENOTEMPTY),
        ("", "z", errno.EBUSY),
        ("a", "", errno.EBUSY),
    ],
)
def test_rename_errors(env: Env, old: str, new: str, code: int) -> None:
    assert errno_of(lambda: env.ov.rename(old, new)) == code
    assert env.ov.is_empty()


def test_rename_noreplace(env: Env) -> None:
    assert errno_of(lambda: env.ov.rename("a/e.txt", "top.txt", replace=False)) == errno.EEXIST
    env.ov.rename("a/e.txt", "fresh", replace=False)
    assert env.content("fresh") == b"eee"


def test_rename_to_itself_is_a_no_op(env: Env) -> None:
    env.ov.rename("a", "a")
    env.ov.rename("a/e.txt", "a/e.txt")
    assert env.ov.is_empty()


def test_rename_lower_folder_moves_references_only(env: Env) -> None:
    env.ov.rename("a", "moved")
    assert env.ov.lookup("a") is None
    assert names(env.ov, "moved") == ["b", "e.txt", "link"]
    assert names(env.ov, "moved/b") == ["c.txt", "d.bin"]
    assert env.content("moved/b/d.bin") == LOWER["a/b/d.bin"]
    assert env.ov.readlink("moved/link") == "b/c.txt"
    assert os.listdir(env.ov.upper) == []
    entries = env.ov.commit_entries()
    assert all(src == "" for _, src in entries)
    assert [e.path for e, _ in entries if e.kind == TOMBSTONE] == ["a"]
    assert {e.path for e, _ in entries if e.kind == FILE and e.loc is not None} == {
        "moved/b/c.txt",
        "moved/b/d.bin",
        "moved/e.txt",
    }
    ch = env.ov.changes()
    assert {(c.status, c.old_path, c.path) for c in ch} == {
        (RENAMED, "a/b/c.txt", "moved/b/c.txt"),
        (RENAMED, "a/b/d.bin", "moved/b/d.bin"),
        (RENAMED, "a/e.txt", "moved/e.txt"),
        (ADDED, "", "moved/link"),  # symlinks carry no bytes to trace
        (REMOVED, "", "a/link"),
    }


def test_rename_folder_of_1000_lower_files_uploads_nothing(tmp_path: Path) -> None:
    files: dict[str, bytes | str] = {f"d/{i // 100}/f{i}": f"{i}".encode() for i in range(1000)}
    e = make_env(tmp_path, files)
    try:
        e.ov.rename("d", "e")
        entries = e.ov.commit_entries()
        assert len(entries) == 1001
        assert all(src == "" for _, src in entries)
        assert all(x.loc is not None for x, _ in entries if x.kind == FILE)
        assert os.listdir(e.ov.upper) == []
        base = e.index.to_tree()
        after = apply_changes(base, [x for x, _ in entries])
        assert sorted(after) == sorted(p.replace("d/", "e/", 1) for p in base)
        assert all(c.status == RENAMED for c in e.ov.changes())
    finally:
        e.ov.close()
        e.index.close()


def test_rename_folder_holding_copied_up_and_removed_files(env: Env) -> None:
    env.write("a/b/c.txt", 0, b"HE")
    env.ov.unlink("a/b/d.bin")
    env.ov.create("a/new")
    env.ov.mkdir("a/sub")
    env.ov.rename("a", "z")
    assert names(env.ov, "z") == ["b", "e.txt", "link", "new", "sub"]
    assert names(env.ov, "z/b") == ["c.txt"]
    assert env.content("z/b/c.txt") == b"HEllo"
    assert env.ov.lookup("a") is None
    assert not any(r.kind == WHITEOUT and r.path.startswith("z") for r in env.ov.rows())


def test_rename_folder_over_an_empty_folder(env: Env) -> None:
    env.ov.mkdir("empty_dir")
    env.ov.rename("x", "empty_dir")
    assert names(env.ov, "empty_dir/y/z") == ["deep.txt"]
    # over a lower folder emptied by whiteouts: the lower's hidden children must stay hidden
    env.ov.unlink("a/b/c.txt")
    env.ov.unlink("a/b/d.bin")
    env.ov.mkdir("n")
    env.ov.create("n/only")
    env.ov.rename("n", "a/b")
    assert names(env.ov, "a/b") == ["only"]


def test_rename_of_a_folder_emptied_by_whiteouts_keeps_the_empty_folder(env: Env) -> None:
    env.ov.unlink("x/y/z/deep.txt")
    env.ov.rename("x", "w")
    assert names(env.ov, "w") == ["y"]
    assert names(env.ov, "w/y/z") == []


def test_rename_then_rename_back_is_no_change(env: Env) -> None:
    env.ov.rename("a", "tmp")
    env.ov.rename("tmp", "a")
    fresh = make_env(env.root / "fresh")
    try:
        assert merged_tree(env) == merged_tree(fresh)
    finally:
        fresh.ov.close()
        fresh.index.close()
    assert env.ov.changes() == []
    base = env.index.to_tree()
    child = apply_changes(base, [e for e, _ in env.ov.commit_entries()])
    assert {p: (e.kind, e.sha256, e.mode, e.loc) for p, e in child.items()} == {
        p: (e.kind, e.sha256, e.mode, e.loc) for p, e in base.items()
    }


# -- attributes and bytes ------------------------------------------------------------------------


def test_chmod_and_utimens_of_a_lower_file_copy_nothing(env: Env) -> None:
    node = env.ov.setattr("a/e.txt", mode=0o600, mtime_ns=123)
    assert (node.mode, node.mtime_ns, node.data) == (0o600, 123, None)
    assert node.entry is not None
    assert node.entry.loc == lower_entry(env.index, "a/e.txt").loc
    assert os.listdir(env.ov.upper) == []
    assert env.ov.changes() == [Change(MODIFIED, "a/e.txt", FILE, 3, sha(b"eee"))]
    [(entry, src)] = env.ov.commit_entries()
    assert (entry.mode, entry.loc is not None, src) == (0o600, True, "")


def test_utimens_alone_is_not_a_change(env: Env) -> None:
    env.ov.setattr("a/e.txt", mtime_ns=5)
    assert env.ov.getattr("a/e.txt").mtime_ns == 5
    assert env.ov.changes() == []
    assert env.ov.commit_entries() == []


def test_setattr_of_folders_and_upper_files(env: Env) -> None:
    assert env.ov.setattr("a", mode=0o700).mode == 0o700
    assert env.ov.setattr("", mode=0o711).mode == 0o711
    assert names(env.ov, "a") == ["b", "e.txt", "link"]  # a folder's metadata row hides nothing
    env.ov.create("n")
    got = env.ov.setattr("n", mode=0o640, mtime_ns=10**18)
    assert (got.mode, got.mtime_ns) == (0o640, 10**18)
    assert errno_of(lambda: env.ov.setattr("missing", mode=0o600)) == errno.ENOENT


def test_copy_up_streams_in_blocks(tmp_path: Path) -> None:
    big = os.urandom(3 * BLOCK + 123)
    e = make_env(tmp_path, {"big.bin": big})
    try:
        log: list[int] = []
        node = e.ov.copy_up("big.bin", e.reader("big.bin", log))
        assert max(log) <= BLOCK
        assert len(log) == 4
        assert sum(log) == len(big)
        assert node.data is not None
        assert node.data.read_bytes() == big
        assert node.mtime_ns == lower_entry(e.index, "big.bin").mtime_ns
        assert e.ov.copy_up("big.bin", e.reader("big.bin.orig", log)) == node  # already up: nothing read
        assert len(log) == 4
        assert e.ov.changes() == []  # the same bytes: the hash was taken while copying
    finally:
        e.ov.close()
        e.index.close()


def test_copy_up_survives_a_reader_returning_short_blocks(env: Env) -> None:
    data = LOWER["a/b/d.bin"]
    assert isinstance(data, bytes)

    def short(offset: int, size: int) -> bytes:
        return data[offset : offset + min(size, 1000)]

    env.ov.copy_up("a/b/d.bin", short)
    assert env.content("a/b/d.bin") == data


def test_copy_up_failing_reader_leaves_the_old_state(env: Env) -> None:
    def broken(offset: int, size: int) -> bytes:
        if offset:
            raise OSError(errno.EIO, "boom")
        return b"he"

    assert errno_of(lambda: env.ov.copy_up("a/b/c.txt", broken)) == errno.EIO
    assert env.ov.is_empty()
    assert os.listdir(env.ov.upper) == []
    assert errno_of(lambda: env.ov.copy_up("a/b/c.txt", lambda o, s: b"")) == errno.EIO
    assert errno_of(lambda: env.ov.copy_up("a", lambda o, s: b"")) == errno.EISDIR
    assert errno_of(lambda: env.ov.copy_up("a/link", lambda o, s: b"")) == errno.EINVAL


def test_copy_up_keeps_chmod_of_the_reference(env: Env) -> None:
    env.ov.setattr("a/e.txt", mode=0o600)
    node = env.ov.copy_up("a/e.txt", env.reader("a/e.txt"))
    assert (node.mode, node.data is not None, node.ref_path) == (0o600, True, "")
    assert env.content("a/e.txt") == b"eee"
    assert len(env.ov.rows()) == 1


def test_write_to_a_lower_file_copies_up(env: Env) -> None:
    env.write("a/b/c.txt", 1, b"EL")
    assert env.content("a/b/c.txt") == b"hELlo"
    env.write("a/b/c.txt", 10, b"!")  # sparse
    assert env.content("a/b/c.txt") == b"hELlo" + bytes(5) + b"!"
    [c] = env.ov.changes()
    assert (c.status, c.size, c.sha256) == (MODIFIED, 11, sha(b"hELlo" + bytes(5) + b"!"))


def test_truncate_lower_file_copies_only_what_survives(env: Env) -> None:
    log: list[int] = []
    node = env.ov.truncate("a/b/d.bin", 10, env.reader("a/b/d.bin", log))
    assert sum(log) == 10
    assert node.size == 10
    assert env.content("a/b/d.bin") == bytes(range(10))
    env.ov.truncate("a/b/d.bin", 20)
    assert env.content("a/b/d.bin") == bytes(range(10)) + bytes(10)
    env.ov.truncate("top.txt", 0)  # to zero: nothing read at all
    assert env.content("top.txt") == b""
    env.ov.truncate("a/e.txt", 6, env.reader("a/e.txt"))  # extend a lower file
    assert env.content("a/e.txt") == b"eee" + bytes(3)
    assert errno_of(lambda: env.ov.truncate("a", 0)) == errno.EISDIR
    assert errno_of(lambda: env.ov.truncate("a/link", 0)) == errno.EINVAL
    assert errno_of(lambda: env.ov.truncate("n", 0)) == errno.ENOENT
    assert errno_of(lambda: env.ov.truncate("top.txt", -1)) == errno.EINVAL
    with pytest.raises(ValueError, match="reader"):
        env.ov.truncate("a/b/c.txt", 2)


def test_copy_up_of_a_renamed_reference_reads_its_bytes(env: Env) -> None:
    env.ov.rename("a/b/c.txt", "r.txt")
    env.write("r.txt", 5, b"!")
    assert env.content("r.txt") == b"hello!"
    assert env.ov.changes() == [
        Change(REMOVED, "a/b/c.txt", FILE, 5, sha(b"hello")),
        Change(ADDED, "r.txt", FILE, 6, ""),  # local bytes are hashed only when asked (hash=True)
    ]


def test_copy_of_a_lower_file_is_added_not_renamed(env: Env) -> None:
    # what a copy_file_range-style copy or a "reflink" could record: a reference at a new path
    env.ov.rename("a/e.txt", "copy.txt")
    env.ov.create("a/e.txt")
    env.ov.write("a/e.txt", 0, b"eee")
    statuses = {c.path: c.status for c in env.ov.changes()}
    assert statuses == {"copy.txt": ADDED}  # a/e.txt has the same bytes again: no change there


# -- durability ----------------------------------------------------------------------------------


def test_sync_records_size_and_mtime(env: Env) -> None:
    node = env.ov.create("n")
    assert node.data is not None
    fd = os.open(node.data, os.O_WRONLY)
    os.pwrite(fd, b"12345", 0)
    env.ov.sync(node.id, fd)
    os.close(fd)
    [row] = [r for r in env.ov.rows() if r.data]
    assert row.size == 5
    assert row.mtime_ns == os.stat(node.data).st_mtime_ns
    env.ov.sync("n")
    env.ov.sync("missing")


def test_reopen_gives_the_same_view(env: Env) -> None:
    env.ov.rename("a", "b")
    env.write("b/e.txt", 0, b"E")
    env.ov.sync("b/e.txt")
    env.ov.mkdir("d")
    env.ov.symlink("d/s", "t")
    env.ov.setattr("top.txt", mode=0o600)
    before = merged_tree(env)
    env.reopen()
    assert merged_tree(env) == before


def test_reopen_removes_crash_leftovers(env: Env) -> None:
    node = env.ov.create("n")
    (env.ov.upper / ".tmp-abc").write_bytes(b"partial copy-up")
    (env.ov.upper / "999").write_bytes(b"renamed but never committed")
    env.reopen()
    assert node.data is not None
    assert sorted(os.listdir(env.ov.upper)) == [node.data.name]


def test_the_database_is_wal_and_synchronous_full(env: Env) -> None:
    conn = sqlite3.connect(env.root / "ov" / DB_NAME)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()
    assert env.ov._conn.execute("PRAGMA synchronous").fetchone()[0] == 2


def test_opening_over_another_version_is_refused_unless_empty(env: Env, tmp_path: Path) -> None:
    env.ov.create("n")
    env.ov.close()
    TreeIndex.build(tmp_path / "v2.tree", "v2", lower_entries(LOWER, "v2"))
    with TreeIndex.open(tmp_path / "v2.tree") as v2:
        with pytest.raises(IntegrityError, match="v1"):
            Overlay.open(tmp_path / "ov", v2)
        assert Overlay.pinned_version(tmp_path / "ov") == "v1"
        env.ov = Overlay.open(tmp_path / "ov", env.index)
        env.ov.clear(v2)
        assert Overlay.pinned_version(tmp_path / "ov") == "v2"
        env.ov.close()
        env.ov = Overlay.open(tmp_path / "ov", v2)
        assert env.ov.is_empty()
        assert os.listdir(env.ov.upper) == []
    assert Overlay.pinned_version(tmp_path / "nothing") is None


def test_clear_empties_everything(env: Env) -> None:
    env.ov.create("n")
    env.ov.rename("a", "b")
    env.ov.clear()
    assert env.ov.is_empty()
    assert os.listdir(env.ov.upper) == []
    assert names(env.ov) == ["a", "empty", "top.txt", "x"]
    fresh = env.ov.create("m")  # ids are never reused
    assert fresh.id > 1


def test_clear_keeps_the_local_bytes_it_is_asked_to(env: Env) -> None:
    """What a commit does for a file still open for writing: its row and data file stay, every
    other row and data file goes, and the kept file is no change over a lower that has its bytes."""
    kept = env.ov.create("open.txt")
    env.ov.write("open.txt", 0, b"still open")
    env.ov.create("closed.txt")
    env.ov.unlink("top.txt")
    env.ov.clear(keep=["open.txt", "top.txt", "nowhere"])
    assert [r.path for r in env.ov.rows()] == ["open.txt"]
    assert os.listdir(env.ov.upper) == [str(kept.id)]
    node = env.ov.lookup("open.txt")
    assert node is not None
    assert node.id == kept.id
    assert node.data is not None
    assert node.size == len(b"still open")
    assert env.ov.lookup("closed.txt") is None
    assert env.ov.lookup("top.txt") is not None  # a whiteout is never kept


# -- the change set and commit's input -----------------------------------------------------------


def test_changes_and_commit_entries_together(env: Env) -> None:
    env.ov.create("new.txt")
    env.ov.write("new.txt", 0, b"brand new")
    env.write("a/b/c.txt", 0, b"J")
    env.ov.unlink("top.txt")
    env.ov.rename("a/e.txt", "e2.txt")
    env.ov.remove_tree("x")
    env.ov.symlink("sl", "new.txt")
    env.ov.mkdir("emptydir")
    assert env.ov.changes() == [
        Change(MODIFIED, "a/b/c.txt", FILE, 5, sha(b"Jello")),
        Change(RENAMED, "e2.txt", FILE, 3, sha(b"eee"), "a/e.txt"),
        Change(ADDED, "new.txt", FILE, 9, ""),
        Change(ADDED, "sl", SYMLINK, 7, sha(b"new.txt")),
        Change(REMOVED, "top.txt", FILE, 9, sha(b"top level")),
        Change(REMOVED, "x", DIR),
    ]
    assert env.ov.changes(hash=True)[2].sha256 == sha(b"brand new")
    entries = env.ov.commit_entries()
    by_path = {e.path: (e, src) for e, src in entries}
    assert [e.path for e, _ in entries] == sorted(by_path)
    assert set(by_path) == {"a/b/c.txt", "a/e.txt", "e2.txt", "new.txt", "sl", "top.txt", "x"}
    new, src = by_path["new.txt"]
    assert (new.kind, new.loc, new.sha256, new.size) == (FILE, None, sha(b"brand new"), 9)
    assert Path(src).read_bytes() == b"brand new"
    assert by_path["a/b/c.txt"][0].loc is None
    assert by_path["a/b/c.txt"][1]
    assert by_path["e2.txt"][0].loc is not None
    assert by_path["e2.txt"][1] == ""
    assert by_path["sl"][0].kind == SYMLINK
    assert by_path["sl"][0].target == "new.txt"
    assert by_path["x"][0].kind == TOMBSTONE
    # the child's tree is exactly the merged view (empty folders aside)
    child = apply_changes(env.index.to_tree(), [e for e, _ in entries])
    view = merged_tree(env)
    assert set(child) == set(view)
    for path, (kind, content, mode) in view.items():
        assert child[path].kind == kind
        assert child[path].mode == mode
        if kind == FILE:
            assert isinstance(content, bytes)
            assert child[path].sha256 == sha(content)


def test_a_file_replacing_a_lower_folder(env: Env) -> None:
    env.ov.remove_tree("x")
    env.ov.create("x")
    assert env.ov.changes() == [Change(ADDED, "x", FILE, 0, ""), Change(REMOVED, "x", DIR)]
    child = apply_changes(env.index.to_tree(), [e for e, _ in env.ov.commit_entries()])
    assert "x" in child
    assert not any(p.startswith("x/") for p in child)


def test_a_folder_replacing_a_lower_file_and_a_replaced_folder(env: Env) -> None:
    env.ov.unlink("top.txt")
    env.ov.mkdir("top.txt")
    env.ov.create("top.txt/in")
    env.ov.remove_tree("a")
    env.ov.mkdir("a")
    env.ov.mkdir("a/b")
    env.ov.create("a/b/c.txt")
    env.ov.write("a/b/c.txt", 0, b"hello")  # same bytes as before at the same path: unchanged
    ch = env.ov.changes()
    assert [(c.status, c.path) for c in ch] == [
        (REMOVED, "a/b/d.bin"),
        (REMOVED, "a/e.txt"),
        (REMOVED, "a/link"),
        (REMOVED, "top.txt"),
        (ADDED, "top.txt/in"),
    ]
    entries = env.ov.commit_entries()
    assert [e.path for e, _ in entries if e.kind == TOMBSTONE] == ["a", "top.txt"]
    child = apply_changes(env.index.to_tree(), [e for e, _ in entries])
    assert set(child) == set(merged_tree(env))


def test_link_entries_are_referenced_like_files(tmp_path: Path) -> None:
    tree = {"u": Entry("u", LINK, 4, sha(b"body"), 0o644, 7, "s3://b/u", None, "v1")}
    TreeIndex.build(tmp_path / "v1.tree", "v1", tree)
    with TreeIndex.open(tmp_path / "v1.tree") as index, Overlay.open(tmp_path / "ov", index) as ov:
        ov.rename("u", "w")
        node = ov.getattr("w")
        assert node.kind == LINK
        assert node.entry is not None
        assert node.entry.target == "s3://b/u"
        assert ov.changes() == [Change(RENAMED, "w", LINK, 4, sha(b"body"), "u")]
        copied = ov.copy_up("w", lambda o, s: b"body"[o : o + s])
        assert copied.kind == FILE
        assert copied.data is not None


def test_node_by_id_follows_renames(env: Env) -> None:
    node = env.ov.create("n")
    env.ov.mkdir("d")
    env.ov.rename("n", "d/n")
    env.ov.rename("d", "e")
    found = env.ov.node(node.id)
    assert found is not None
    assert found.path == "e/n"
    env.ov.unlink("e/n")
    assert env.ov.node(node.id) is None


def test_node_is_what_lookup_gives(env: Env) -> None:
    assert isinstance(env.ov.getattr("a"), Node)
    assert env.ov.getattr("a") == env.ov.listdir("")[0]


def test_rm_r_as_the_kernel_sends_it_ends_as_one_record(tmp_path: Path) -> None:
    """Through FUSE, ``rm -r`` arrives as one unlink per file and one rmdir per folder; the
    whiteouts of the files are folded into the folder's when it goes."""
    files: dict[str, bytes | str] = {f"big/{i // 100}/f{i}": b"x" for i in range(1000)}
    files["keep"] = b"k"
    e = make_env(tmp_path, files)
    try:
        for d in range(10):
            for i in range(d * 100, d * 100 + 100):
                e.ov.unlink(f"big/{d}/f{i}")
            e.ov.rmdir(f"big/{d}")
        e.ov.rmdir("big")
        assert records(e.ov) == [("big", WHITEOUT)]
        assert e.ov.commit_entries() == [(Entry("big", TOMBSTONE), "")]
    finally:
        e.ov.close()
        e.index.close()


def test_concurrent_operations_from_many_threads(env: Env) -> None:
    import threading

    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            env.ov.mkdir(f"t{n}")
            for i in range(20):
                env.ov.create(f"t{n}/f{i}")
                env.ov.write(f"t{n}/f{i}", 0, f"{n}-{i}".encode())
                env.ov.sync(f"t{n}/f{i}")
            env.ov.rename(f"t{n}", f"u{n}")
            env.ov.copy_up("a/b/d.bin", env.reader("a/b/d.bin.orig"))  # all race for the same copy-up
            env.ov.rename(f"u{n}/f0", f"u{n}/g0")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for n in range(8):
        assert names(env.ov, f"u{n}") == sorted(["g0", *(f"f{i}" for i in range(1, 20))])
        assert env.content(f"u{n}/f5") == f"{n}-5".encode()
    assert env.content("a/b/d.bin") == LOWER["a/b/d.bin"]
    assert len([r for r in env.ov.rows() if r.path == "a/b/d.bin"]) == 1
    assert set(os.listdir(env.ov.upper)) == {str(r.id) for r in env.ov.rows() if r.data}


def test_rename_of_a_big_lower_folder_is_one_quick_transaction(tmp_path: Path) -> None:
    files: dict[str, bytes | str] = {f"d/{i // 1000}/f{i}": b"x" for i in range(20_000)}
    e = make_env(tmp_path, files)
    try:
        import time

        t0 = time.monotonic()
        e.ov.rename("d", "e")
        elapsed = time.monotonic() - t0
        # the references, their folders, the new folder, the whiteout, the root's mtime
        assert len(e.ov.rows()) == 20_000 + 20 + 2 + 1
        assert elapsed < 10, elapsed
        assert len(e.ov.listdir("e/7")) == 1000
    finally:
        e.ov.close()
        e.index.close()


def test_check_reports_broken_invariants(env: Env) -> None:
    node = env.ov.create("n")
    env.ov.unlink("a/e.txt")
    assert env.ov.check() == []
    assert node.data is not None
    node.data.unlink()
    (env.ov.upper / "stray").write_bytes(b"")
    with env.ov._tx() as conn:
        conn.execute(
            "INSERT INTO nodes(path, parent, kind, mode, mtime_ns, size) VALUES ('n/x', 'n', 'dir', 0, 0, 0)"
        )
        conn.execute("UPDATE nodes SET path = 'nothing', parent = '' WHERE kind = 'whiteout'")
    assert env.ov.check() == [
        "n: data file 1 is missing",
        "n/x: a row below a whiteout or a non-folder",
        "n/x: its parent is not a folder of the merged view",
        "nothing: a whiteout over nothing of the lower",
        "upper/stray: owned by no row",
    ]


def test_folder_mtimes_follow_their_entries(env: Env) -> None:
    import time

    lower_a = env.ov.getattr("a").mtime_ns
    t0 = time.time_ns()
    env.ov.create("a/new")
    assert env.ov.getattr("a").mtime_ns >= t0 > lower_a
    env.ov.setattr("a", mtime_ns=1)
    env.ov.setattr("x", mtime_ns=1)
    env.ov.rename("a/new", "x/new")
    assert env.ov.getattr("a").mtime_ns >= t0
    assert env.ov.getattr("x").mtime_ns >= t0
    env.ov.setattr("x", mtime_ns=1)
    env.ov.setattr("x/y", mtime_ns=1)
    env.ov.remove_tree("x/y")
    assert env.ov.getattr("x").mtime_ns >= t0
    env.ov.setattr("x", mtime_ns=1)
    with pytest.raises(FileExistsError):
        env.ov.mkdir("x/new")
    assert env.ov.getattr("x").mtime_ns == 1  # a failed operation touches nothing
    assert env.ov.changes() == [
        Change(ADDED, "x/new", FILE, 0, ""),
        Change(REMOVED, "x/y", DIR),
    ]  # folder times are not changes a version can record


class DictLower:
    """The smallest LowerTree, a dict of entries: the overlay needs nothing of TreeIndex but the protocol."""

    def __init__(self, version: str, tree: Mapping[str, Entry]) -> None:
        self.version = version
        self.tree = dict(tree)
        self.dirs = {"/".join(p.split("/")[:i]) for p in tree for i in range(1, p.count("/") + 1)}

    def get(self, path: str) -> Entry | None:
        return self.tree.get(path)

    def folder(self, path: str) -> int | None:
        return 0 if path == "" or path in self.dirs else None

    def list_dir(self, path: str, after: str = "") -> Iterator[tuple[str, Entry | None, int]]:
        prefix = f"{path}/" if path else ""
        names = {p[len(prefix) :].split("/")[0] for p in [*self.tree, *self.dirs] if p.startswith(prefix)}
        for name in sorted(n for n in names if n > after):
            yield name, self.tree.get(prefix + name), 0

    def iter_entries(self, prefix: str = "") -> Iterator[Entry]:
        return iter([e for p, e in sorted(self.tree.items()) if prefix == "" or is_under(p, prefix)])


def test_any_lower_tree_protocol_will_do(tmp_path: Path) -> None:
    lower: LowerTree = DictLower("v9", lower_entries(LOWER, "v9"))
    with Overlay.open(tmp_path / "ov", lower) as ov:
        assert [n.path for n in ov.listdir("a")] == ["a/b", "a/e.txt", "a/link"]
        ov.rename("a", "z")
        ov.remove_tree("x")
        assert [n.path for n in ov.listdir("")] == ["empty", "top.txt", "z"]
        assert ov.check() == []
        assert {e.path for e, _ in ov.commit_entries() if e.kind == TOMBSTONE} == {"a", "x"}


def test_commit_then_clear_onto_the_child_shows_the_same_tree(env: Env, tmp_path: Path) -> None:
    """The lead's commit, in miniature: the child version is the lower plus commit_entries (new bytes
    given a location, as upload would); after clear(child) the view is what it was before."""
    env.ov.create("new.txt")
    env.ov.write("new.txt", 0, b"new bytes")
    env.write("a/b/c.txt", 0, b"J")
    env.ov.rename("a/b", "moved")
    env.ov.remove_tree("x")
    env.ov.setattr("top.txt", mode=0o600)
    before = merged_tree(env)
    table = []
    for i, (e, src) in enumerate(env.ov.commit_entries()):
        if src:
            data = Path(src).read_bytes()
            env.by_sha[sha(data)] = data
            e = replace(e, loc=Location("v2", 0, i, len(data), 0, zlib.crc32(data)), origin="v2")
        table.append(e)
    child = apply_changes(env.index.to_tree(), table)
    TreeIndex.build(tmp_path / "v2.tree", "v2", child)
    with TreeIndex.open(tmp_path / "v2.tree") as v2:
        env.ov.clear(v2)
        assert env.ov.is_empty()
        assert env.ov.lower.version == "v2"
        assert merged_tree(env) == before
        env.ov.close()
        env.ov = Overlay.open(tmp_path / "ov", v2)
        assert merged_tree(env) == before
        env.ov.close()
        env.ov = Overlay.open(tmp_path / "ov", env.index)  # back on the parent: allowed, nothing pending


def test_hashes_of_recently_changed_files_are_not_cached(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    from mountfs.tree import overlay_view

    node = env.ov.create("n")
    env.ov.write("n", 0, b"one")
    cached = "SELECT sha256 FROM hashes WHERE id = ?"
    assert env.ov.sha256_of(node.id) == sha(b"one")
    assert env.ov._conn.execute(cached, (node.id,)).fetchone() is None  # changed just now: racy
    monkeypatch.setattr(overlay_view, "RACY_NS", -(10**12))
    assert env.ov.sha256_of(node.id) == sha(b"one")
    assert env.ov._conn.execute(cached, (node.id,)).fetchone() == (sha(b"one"),)
    env.ov.write("n", 0, b"two")  # a write the clock may not see...
    env.ov.sync("n")  # ...but sync drops the cached hash
    assert env.ov.sha256_of(node.id) == sha(b"two")


def test_copy_up_seeds_the_hash_cache(env: Env) -> None:
    node = env.ov.copy_up("a/b/d.bin", env.reader("a/b/d.bin"))
    row = env.ov._conn.execute("SELECT sha256 FROM hashes WHERE id = ?", (node.id,)).fetchone()
    assert row == (sha(LOWER["a/b/d.bin"]),)  # type: ignore[arg-type]
    assert env.ov.changes() == []


def test_meta_is_recorded_and_cleared_with_the_changes(env: Env) -> None:
    env.ov.set_meta({"committing": "draft-1"})
    env.ov.create("n")
    assert env.reopen().get_meta("committing") == "draft-1"
    env.ov.clear(meta={"committing": None, "committed": "child-1"})
    assert env.ov.get_meta("committing") is None
    assert env.ov.get_meta("committed") == "child-1"
    assert env.ov.get_meta("lower_version") == "v1"
    with pytest.raises(ValueError, match="own"):
        env.ov.set_meta({"lower_version": "v9"})


def test_touching_a_lower_symlink_is_not_a_change(env: Env) -> None:
    env.ov.setattr("a/link", mtime_ns=5)
    assert env.ov.changes() == []
    assert env.ov.commit_entries() == []
    env.ov.rename("a/link", "l2")
    [(entry, src)] = [pair for pair in env.ov.commit_entries() if pair[0].kind == SYMLINK]
    assert (entry.path, entry.target, entry.sha256, src) == ("l2", "b/c.txt", sha(b"b/c.txt"), "")


def test_a_damaged_overlay_database_is_an_integrity_error(env: Env, tmp_path: Path) -> None:
    env.ov.close()
    for name in os.listdir(tmp_path / "ov"):
        if name.startswith(DB_NAME):
            (tmp_path / "ov" / name).unlink()
    (tmp_path / "ov" / DB_NAME).write_bytes(b"not a database at all" * 100)
    with pytest.raises(IntegrityError, match="unreadable"):
        Overlay.open(tmp_path / "ov", env.index)
    with pytest.raises(IntegrityError, match="unreadable"):
        Overlay.pinned_version(tmp_path / "ov")
    (tmp_path / "ov" / DB_NAME).unlink()
    env.ov = Overlay.open(tmp_path / "ov", env.index)


def test_paging_through_a_folder_mixing_both_layers(tmp_path: Path) -> None:
    files: dict[str, bytes | str] = {f"d/f{i:04d}": b"x" for i in range(0, 3000, 2)}
    e = make_env(tmp_path, files)
    try:
        for i in range(1, 3000, 2):
            e.ov.create(f"d/f{i:04d}")
        for i in range(0, 3000, 6):
            e.ov.unlink(f"d/f{i:04d}")
        want = [f"f{i:04d}" for i in range(3000) if i % 6 != 0]
        got: list[str] = []
        after = ""
        while page := e.ov.listdir("d", after=after, limit=100):
            assert len(page) <= 100
            got += [n.path.rpartition("/")[2] for n in page]
            after = got[-1]
        assert got == want
    finally:
        e.ov.close()
        e.index.close()
