"""The overlay against the real thing: a seeded random walk of create, write, truncate, rename,
unlink, mkdir, rmdir, rm -r, chmod, utimens and symlink, run both on an overlay over a lower
version and on a local folder holding the same files. After every step both must have
answered alike (same errno) and show the same tree; at the end the overlay's commit input,
applied to the lower version, must give the local folder's files, and its change list
must describe exactly the difference.
"""

from __future__ import annotations

import errno
import os
import random
import shutil
import stat
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from mountfs.snapshot.entries import FILE, SYMLINK, Entry, is_under
from mountfs.tree.diff import diff_trees
from mountfs.tree.index import TreeIndex
from mountfs.tree.merge import apply_changes
from mountfs.tree.overlay import Overlay
from mountfs.tree.overlay_changes import ADDED, MODIFIED, REMOVED, RENAMED
from tests.unit.test_overlay import lower_entries, sha

LOWER: dict[str, bytes | str] = {
    "a/b/c.txt": b"hello",
    "a/b/d.bin": bytes(range(200)),
    "a/e.txt": b"eee",
    "a/f/g/h": b"deep down",
    "a/f/i": b"",
    "b/one": b"1",
    "b/two": b"22",
    "c": b"top file",
    "d/x/y": b"y",
    "d/x/z": b"zz",
    "d/w": b"w",
    "ln": "nowhere",
}
NAMES = ["a", "b", "c", "d", "e", "n", "m", "x"]
MODES = [0o600, 0o640, 0o644, 0o700, 0o755]


class World:
    def __init__(self, root: Path, index: TreeIndex, files: Mapping[str, bytes | str]) -> None:
        self.real = root / "real"
        self.index = index
        self.root = root
        self.ov = Overlay.open(root / "ov", index)
        self.by_sha = {sha(d): d for d in files.values() if isinstance(d, bytes)}
        self.track_folder_mtimes = False
        self.real.mkdir()
        for path, data in files.items():
            p = self.real / path
            p.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(data, str):
                p.symlink_to(data)
            else:
                p.write_bytes(data)
                p.chmod(0o644)

    def reader(self, path: str) -> Callable[[int, int], bytes] | None:
        node = self.ov.lookup(path)
        if node is None or node.entry is None:
            return None
        data = self.by_sha[node.entry.sha256]
        return lambda offset, size: data[offset : offset + size]

    def rp(self, path: str) -> str:
        return str(self.real / path)

    def through_symlink(self, path: str) -> bool:
        """The kernel resolves symlinks before the overlay sees a path: such steps are not the overlay's."""
        parts = path.split("/")
        return any(os.path.islink(self.rp("/".join(parts[:i]))) for i in range(1, len(parts)))

    def is_symlink(self, path: str) -> bool:
        return os.path.islink(self.rp(path))

    # -- the two trees ------------------------------------------------------------------

    def real_tree(self) -> dict[str, tuple[str, object, int]]:
        out: dict[str, tuple[str, object, int]] = {}
        for folder, dirs, files in os.walk(self.real):
            rel = os.path.relpath(folder, self.real)
            rel = "" if rel == "." else rel
            for name in dirs + files:
                path = f"{rel}/{name}" if rel else name
                st = os.lstat(self.rp(path))
                if stat.S_ISLNK(st.st_mode):
                    out[path] = (SYMLINK, os.readlink(self.rp(path)), 0)
                elif stat.S_ISDIR(st.st_mode):
                    out[path] = ("dir", None, stat.S_IMODE(st.st_mode))
                else:
                    out[path] = (FILE, Path(self.rp(path)).read_bytes(), stat.S_IMODE(st.st_mode))
        return out

    def overlay_tree(self) -> dict[str, tuple[str, object, int]]:
        out: dict[str, tuple[str, object, int]] = {}

        def walk(folder: str) -> None:
            listing = self.ov.listdir(folder)
            assert [n.path for n in listing] == sorted(n.path for n in listing)
            for node in listing:
                assert self.ov.lookup(node.path) == node
                if node.is_dir:
                    out[node.path] = ("dir", None, node.mode)
                    walk(node.path)
                elif node.kind == SYMLINK:
                    out[node.path] = (SYMLINK, node.target, 0)
                else:
                    if node.data is not None:
                        content = node.data.read_bytes()
                    else:
                        assert node.entry is not None
                        content = self.by_sha[node.entry.sha256]
                    assert node.size == len(content)
                    out[node.path] = (FILE, content, node.mode)

        walk("")
        return out

    # -- one step on both ---------------------------------------------------------------

    def pick(self, rng: random.Random) -> str:
        existing = sorted(self.real_tree())
        if existing and rng.random() < 0.7:
            return rng.choice(existing)
        folders = [""] + [p for p in existing if os.path.isdir(self.rp(p)) and not self.is_symlink(p)]
        base = rng.choice(folders + existing[:3])
        name = rng.choice(NAMES)
        return f"{base}/{name}" if base else name

    def step(self, rng: random.Random) -> str:
        op = rng.choice(
            [
                "create",
                "write",
                "write",
                "truncate",
                "mkdir",
                "symlink",
                "unlink",
                "rmdir",
                "rmtree",
                "rename",
                "rename",
                "rename",
                "chmod",
                "utimens",
            ]
        )
        path = self.pick(rng)
        if self.through_symlink(path):
            return "skip"
        real: Callable[[], object]
        over: Callable[[], object]
        if op == "create":
            mode = rng.choice(MODES)

            def real_create() -> None:
                os.close(os.open(self.rp(path), os.O_CREAT | os.O_EXCL | os.O_WRONLY, mode))
                os.chmod(self.rp(path), mode)

            real, over = real_create, lambda: self.ov.create(path, mode)
        elif op == "write":
            if self.is_symlink(path):
                return "skip"
            data = rng.randbytes(rng.randint(1, 40))
            offset = rng.randint(0, 250)

            def real_write() -> None:
                fd = os.open(self.rp(path), os.O_WRONLY)
                try:
                    os.pwrite(fd, data, offset)
                finally:
                    os.close(fd)

            def over_write() -> None:
                self.ov.write(path, offset, data, self.reader(path))
                if rng.random() < 0.5:
                    self.ov.sync(path)

            real, over = real_write, over_write
        elif op == "truncate":
            if self.is_symlink(path):
                return "skip"
            size = rng.choice([0, 1, 3, 7, 100, 300])
            real, over = (
                lambda: os.truncate(self.rp(path), size),
                lambda: self.ov.truncate(path, size, self.reader(path)),
            )
        elif op == "mkdir":
            mode = rng.choice(MODES)

            def real_mkdir() -> None:
                os.mkdir(self.rp(path), mode)
                os.chmod(self.rp(path), mode)

            real, over = real_mkdir, lambda: self.ov.mkdir(path, mode)
        elif op == "symlink":
            real, over = (
                lambda: os.symlink("nowhere", self.rp(path)),
                lambda: self.ov.symlink(path, "nowhere"),
            )
        elif op == "unlink":
            real, over = lambda: os.unlink(self.rp(path)), lambda: self.ov.unlink(path)
        elif op == "rmdir":
            real, over = lambda: os.rmdir(self.rp(path)), lambda: self.ov.rmdir(path)
        elif op == "rmtree":

            def real_rmtree() -> None:
                os.lstat(self.rp(path))
                if os.path.isdir(self.rp(path)) and not self.is_symlink(path):
                    shutil.rmtree(self.rp(path))
                else:
                    os.unlink(self.rp(path))

            real, over = real_rmtree, lambda: self.ov.remove_tree(path)
        elif op == "rename":
            new = self.pick(rng)
            if self.through_symlink(new):
                return "skip"
            op = f"rename -> {new}"
            real, over = lambda: os.rename(self.rp(path), self.rp(new)), lambda: self.ov.rename(path, new)
        elif op == "chmod":
            if self.is_symlink(path):
                return "skip"
            mode = rng.choice(MODES)
            real, over = lambda: os.chmod(self.rp(path), mode), lambda: self.ov.setattr(path, mode=mode)
        else:
            if self.is_symlink(path):
                return "skip"
            t = rng.randint(1, 10**18)
            real, over = lambda: os.utime(self.rp(path), ns=(t, t)), lambda: self.ov.setattr(path, mtime_ns=t)
            if os.path.exists(self.rp(path)) and not os.path.isdir(self.rp(path)):
                real_t, over_t = real, over

                def over_checked() -> None:
                    over_t()
                    assert self.ov.getattr(path).mtime_ns == t

                real, over = real_t, over_checked
        if self.track_folder_mtimes:
            self.reset_folder_mtimes()
        want = _errno(real)
        got = _errno(over)
        assert got == want, f"{op} {path!r}: overlay errno {got}, local folder errno {want}"
        if self.track_folder_mtimes:
            assert self.touched_folders("real") == self.touched_folders("overlay"), f"{op} {path!r}"
        return f"{op} {path} -> {want}"

    # -- folder mtimes: which folders an operation touched ------------------------------

    def folders(self) -> list[str]:
        return ["", *(p for p, v in self.real_tree().items() if v[0] == "dir")]

    def reset_folder_mtimes(self) -> None:
        """Every folder's mtime to 1 on both sides: the kernel's clock is too coarse to see a
        change between two quick steps, a jump from 1 is not."""
        for folder in self.folders():
            os.utime(self.rp(folder), ns=(1, 1))
            self.ov.setattr(folder, mtime_ns=1)

    def touched_folders(self, side: str) -> set[str]:
        if side == "real":
            return {f for f in self.folders() if os.stat(self.rp(f)).st_mtime_ns != 1}
        return {f for f in self.folders() if self.ov.getattr(f).mtime_ns != 1}


def _errno(fn: Callable[[], object]) -> int:
    try:
        fn()
    except OSError as exc:
        return exc.errno or -1
    return 0


def _check_change_set(w: World) -> None:
    """Commit's input rebuilds the local files over the lower; the change list names the difference."""
    base = w.index.to_tree()
    entries = w.ov.commit_entries()
    child = apply_changes(base, [e for e, _ in entries])
    real = {p: v for p, v in w.real_tree().items() if v[0] != "dir"}
    assert set(child) == set(real)
    for path, (kind, content, mode) in real.items():
        e = child[path]
        assert e.kind == kind
        if kind == FILE:
            assert isinstance(content, bytes)
            assert (e.sha256, e.size, e.mode) == (sha(content), len(content), mode), path
        else:
            assert e.target == content
    for e, src in entries:
        if src:
            assert e.loc is None
            assert Path(src).read_bytes() == real[e.path][1]
        elif e.kind == FILE:
            assert e.loc is not None  # a reference: nothing to upload
    # the change list: every difference is named, nothing else is
    diff = diff_trees(base, child)
    changes = w.ov.changes(hash=True)
    named = {c.path: c for c in changes if c.status != REMOVED}
    removed = [c.path for c in changes if c.status == REMOVED]
    renamed_from = {c.old_path for c in changes if c.status == RENAMED}
    for e in diff.added:
        assert named[e.path].status in (ADDED, RENAMED), e.path
    for _, e in diff.modified:
        assert named[e.path].status == MODIFIED, e.path
    for e in diff.removed:
        assert e.path in renamed_from or any(is_under(e.path, r) for r in removed), e.path
    for c in changes:
        if c.status == MODIFIED:
            assert c.path in base
            assert c.path in child
        elif c.status in (ADDED, RENAMED):
            assert c.path not in base
            assert c.path in child
            if c.status == RENAMED:
                assert c.old_path in base
                assert c.old_path not in child
                assert base[c.old_path].sha256 == child[c.path].sha256
        else:  # a removed folder may have been replaced by a file of the same name
            assert c.path not in child or c.kind == "dir"
            assert any(is_under(p, c.path) for p in base)


@pytest.mark.parametrize("seed", range(int(os.environ.get("OVERLAY_MODEL_SEEDS", "40"))))
def test_random_walk_matches_a_local_folder(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    TreeIndex.build(tmp_path / "v1.tree", "v1", lower_entries(LOWER))
    with TreeIndex.open(tmp_path / "v1.tree") as index:
        w = World(tmp_path, index, LOWER)
        w.track_folder_mtimes = seed % 2 == 1  # odd seeds: every folder has a row (the even ones: few do)
        try:
            assert w.overlay_tree() == w.real_tree()
            log: list[str] = []
            for i in range(150):
                log.append(w.step(rng))
                assert w.overlay_tree() == w.real_tree(), "\n".join(log[-10:])
                assert w.ov.check() == [], "\n".join(log[-10:])
                if i % 50 == 49:
                    w.ov.close()
                    w.ov = Overlay.open(tmp_path / "ov", index)
                    assert w.overlay_tree() == w.real_tree()
            _check_change_set(w)
            assert set(os.listdir(w.ov.upper)) == {str(r.id) for r in w.ov.rows() if r.data}
        finally:
            w.ov.close()


def test_entries_helper_is_the_lower() -> None:
    assert all(isinstance(e, Entry) for e in lower_entries(LOWER).values())
    assert errno.ENOENT != 0
