"""Writable mounts through the real kernel: the same operations applied through the mount and to
a local folder holding the same starting tree give the same tree, bytes, modes and mtimes."""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import shutil
import signal
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mountfs import Dataset, Workspace
from tests.conftest import Dsm, write_tree
from tests.integration.mount_fixtures import (
    NewMountpoint,
    daemon_pid,
    errno_of,
    make_version,
    mounted,
    new_mountpoint,
    wait_for,
)

pytestmark = pytest.mark.uses_fuse
__all__ = ["new_mountpoint"]  # the fixture, imported so pytest finds it here

START: dict[str, bytes | str] = {
    "a/b.txt": "bee\n",
    "a/deep/d.txt": "deep\n",
    "c.txt": "sea\n",
    "big.bin": bytes(range(256)) * 12_000,  # about 3 MiB: stored with block CRCs
    "dir/x.txt": "x\n",
    "dir/sub/y.txt": "y\n",
    "images/01/i1.jpg": os.urandom(5000),
    "images/01/i2.jpg": os.urandom(7000),
    "images/02/i3.jpg": os.urandom(9000),
    "u.txt": "to be unlinked while open\n",
    "run.sh": "#!/bin/sh\necho run\n",
}
SET_MTIME = 1_600_000_000_123_456_789


def make_start(root: Path) -> Path:
    write_tree(root, START)
    os.chmod(root / "run.sh", 0o755)
    os.symlink("a/b.txt", root / "link")
    return root


def snapshot(root: Path) -> dict[str, tuple[Any, ...]]:
    """path -> (kind, mode, size, sha256 or target); folders with their mode."""
    out: dict[str, tuple[Any, ...]] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(folder, name)
            rel = str(p.relative_to(root))
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("symlink", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode))
            else:
                digest = hashlib.sha256(p.read_bytes()).hexdigest()
                out[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_size, digest)
    return out


_libc = ctypes.CDLL(None, use_errno=True)
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
AT_FDCWD = -100


def renameat2(old: Path, new: Path, flags: int) -> None:
    if _libc.renameat2(AT_FDCWD, os.fsencode(old), AT_FDCWD, os.fsencode(new), flags) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def apply_sequence(root: Path) -> dict[str, Any]:
    """Every operation of the issue, on ``root``; returns what programs saw along the way."""
    seen: dict[str, Any] = {}
    (root / "new.txt").write_bytes(b"created\n")  # create + write
    with open(root / "a/b.txt", "ab") as f:  # append to a version's file (copy-up)
        f.write(b"appended\n")
    os.truncate(root / "big.bin", 1000)  # truncate, then extend with zeros
    os.truncate(root / "big.bin", 70_000)
    with open(root / "sparse.bin", "wb") as f:  # sparse: seek past the end
        f.seek(1 << 20)
        f.write(b"end")
    with open(root / "c.txt", "r+b") as f:  # seek past the end of a version's file
        f.seek(100)
        f.write(b"far")
    with open(root / "fsynced.txt", "wb") as f:
        f.write(b"durable\n")
        f.flush()
        os.fsync(f.fileno())
    # rename over an existing file (the version's and a new one)
    os.rename(root / "a/b.txt", root / "c.txt")
    (root / "tmp.txt").write_bytes(b"tmp")
    os.rename(root / "tmp.txt", root / "new.txt")
    # rename a folder holding a copied-up file, a version's file and a new file
    with open(root / "dir/x.txt", "ab") as f:
        f.write(b"x2\n")
    (root / "dir/sub/z.txt").write_bytes(b"z\n")
    os.rename(root / "dir", root / "dir2")
    seen["x2"] = (root / "dir2/x.txt").read_bytes()
    # unlink an open file: still readable and writable through its descriptor
    with open(root / "u.txt", "r+b") as f:
        os.unlink(root / "u.txt")
        f.seek(0, os.SEEK_END)
        f.write(b"after unlink\n")
        f.flush()
        f.seek(0)
        seen["unlinked"] = f.read()
        seen["unlinked_size"] = os.fstat(f.fileno()).st_size
    assert not (root / "u.txt").exists()
    os.makedirs(root / "m/n")
    os.rmdir(root / "m/n")
    shutil.rmtree(root / "images")  # rm -r of a version's folder
    os.chmod(root / "run.sh", 0o700)
    os.chmod(root / "a", 0o750)
    os.utime(root / "a/deep/d.txt", ns=(SET_MTIME, SET_MTIME))
    os.utime(root / "new.txt", ns=(SET_MTIME + 1, SET_MTIME + 1))
    os.symlink("../c.txt", root / "a/s")
    os.unlink(root / "link")
    seen["noreplace"] = errno_of(lambda: renameat2(root / "new.txt", root / "c.txt", RENAME_NOREPLACE))
    # a folder over an existing empty one; a file into the moved folder; names reused after removal
    os.mkdir(root / "empty")
    os.rename(root / "a/deep", root / "empty")
    os.rename(root / "run.sh", root / "empty/run.sh")
    shutil.rmtree(root / "dir2/sub")
    os.mkdir(root / "dir2/sub")
    (root / "dir2/sub/only.txt").write_bytes(b"only\n")
    (root / "link").write_bytes(b"a file where a symlink was\n")
    # a folder listed over several readdir pages, changed while it grows
    os.mkdir(root / "many")
    for i in range(700):
        (root / f"many/f{i:04d}").write_bytes(b"%d" % i)
    for i in range(0, 700, 3):
        os.unlink(root / f"many/f{i:04d}")
    seen["many"] = sorted(os.listdir(root / "many"))
    return seen


def mount_writable(dsm: Dsm, vid: str, mnt: Path, *args: object) -> None:
    dsm("mount", vid, mnt, "--writable", *args)


def test_same_as_a_local_folder(dsm: Dsm, tmp_path: Path, new_mountpoint: NewMountpoint) -> None:
    vid = make_version(dsm, make_start(tmp_path / "src"))
    local = make_start(tmp_path / "local")
    mnt = new_mountpoint()
    mount_writable(dsm, vid, mnt)
    assert snapshot(mnt) == snapshot(local)

    seen_local = apply_sequence(local)
    seen_mnt = apply_sequence(mnt)
    assert seen_mnt == seen_local
    assert seen_mnt["noreplace"] == errno.EEXIST
    assert snapshot(mnt) == snapshot(local)
    for rel in ("empty/d.txt", "new.txt"):
        assert os.stat(mnt / rel).st_mtime_ns == os.stat(local / rel).st_mtime_ns
    # after the kernel forgot everything it cached, the daemon answers the same
    dsm("unmount", mnt)
    mount_writable(dsm, vid, mnt)
    assert snapshot(mnt) == snapshot(local)
    assert os.stat(mnt / "new.txt").st_mtime_ns == SET_MTIME + 1


def test_open_readers_see_writes_and_exchange_is_refused(
    dsm: Dsm, tmp_path: Path, new_mountpoint: NewMountpoint
) -> None:
    vid = make_version(dsm, make_start(tmp_path / "src"))
    mnt = new_mountpoint()
    mount_writable(dsm, vid, mnt)
    with open(mnt / "c.txt", "rb") as reader:
        assert reader.read() == b"sea\n"
        with open(mnt / "c.txt", "r+b") as writer:  # copies up under the open reader
            writer.write(b"SEA")
        reader.seek(0)
        assert reader.read() == b"SEA\n"
    assert errno_of(lambda: renameat2(mnt / "c.txt", mnt / "u.txt", RENAME_EXCHANGE)) == errno.EINVAL
    assert errno_of(lambda: os.link(mnt / "c.txt", mnt / "hard")) == errno.EPERM
    assert errno_of(lambda: os.rmdir(mnt / "a")) == errno.ENOTEMPTY
    assert errno_of(lambda: os.rename(mnt / "a", mnt / "a/deep/inside")) == errno.EINVAL
    assert errno_of(lambda: open(mnt / "a/b.txt/x", "w")) == errno.ENOTDIR  # noqa: SIM115
    assert os.statvfs(mnt).f_bavail > 0
    assert os.getxattr(mnt, "user.dsmount.version").decode() == vid
    sha = hashlib.sha256(b"bee\n").hexdigest()
    assert os.getxattr(mnt / "a/b.txt", "user.dsmount.sha256").decode() == sha
    assert errno_of(lambda: os.getxattr(mnt / "c.txt", "user.dsmount.sha256")) == errno.ENODATA  # changed
    assert errno_of(lambda: os.setxattr(mnt / "c.txt", "user.x", b"1")) == errno.ENOTSUP


def test_diff_lists_exactly_the_changes(dsm: Dsm, tmp_path: Path, new_mountpoint: NewMountpoint) -> None:
    vid = make_version(dsm, make_start(tmp_path / "src"))
    mnt = new_mountpoint()
    mount_writable(dsm, vid, mnt)
    assert dsm.json("diff", mnt)["changes"] == []
    assert "no changes" in dsm("diff", mnt).out
    (mnt / "new.txt").write_bytes(b"new")
    with open(mnt / "a/b.txt", "ab") as f:
        f.write(b"more")
    os.rename(mnt / "c.txt", mnt / "a/c2.txt")
    os.unlink(mnt / "u.txt")
    shutil.rmtree(mnt / "images")
    os.utime(mnt / "run.sh", ns=(SET_MTIME, SET_MTIME))  # mtime alone: not a change
    answer = dsm.json("diff", mnt)
    assert answer["version"] == vid
    got = [(c["status"], c["path"], c.get("old_path", "")) for c in answer["changes"]]
    assert got == [
        ("modified", "a/b.txt", ""),
        ("renamed", "a/c2.txt", "c.txt"),
        ("removed", "images", ""),
        ("added", "new.txt", ""),
        ("removed", "u.txt", ""),
    ]
    text = dsm("diff", mnt).out
    assert "renamed:   c.txt -> a/c2.txt" in text
    assert "removed:   images/" in text


def test_overlay_survives_unmount_and_kill_9(dsm: Dsm, tmp_path: Path, new_mountpoint: NewMountpoint) -> None:
    vid = make_version(dsm, make_start(tmp_path / "src"))
    mnt = new_mountpoint()
    mount_writable(dsm, vid, mnt)
    (mnt / "kept.txt").write_bytes(b"closed before unmount\n")
    os.unlink(mnt / "c.txt")
    dsm("unmount", mnt)
    mount_writable(dsm, vid, mnt)
    assert (mnt / "kept.txt").read_bytes() == b"closed before unmount\n"
    assert not (mnt / "c.txt").exists()
    with open(mnt / "synced.bin", "wb") as f:
        f.write(b"s" * 100_000)
        f.flush()
        os.fsync(f.fileno())
    with open(mnt / "big.bin", "r+b") as f:
        f.seek(5)
        f.write(b"XYZ")
        f.flush()
        os.fsync(f.fileno())
    (mnt / "closed.txt").write_bytes(b"closed, never fsynced\n")  # close alone: survives a kill -9
    os.rename(mnt / "a", mnt / "renamed")
    before = snapshot(mnt)
    pid = daemon_pid(dsm.home, mnt)
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: errno_of(lambda: os.statvfs(mnt)) == errno.ENOTCONN, 10)
    mount_writable(dsm, vid, mnt)  # clears the dead mount, reopens the same overlay
    assert snapshot(mnt) == before
    assert (mnt / "big.bin").read_bytes()[:10] == bytes(range(5)) + b"XYZ" + bytes(range(8, 10))


def test_overlay_of_another_version_is_refused(
    dsm: Dsm, tmp_path: Path, new_mountpoint: NewMountpoint
) -> None:
    src = make_start(tmp_path / "src")
    v1 = make_version(dsm, src)
    (src / "c.txt").write_text("v2\n")
    v2 = dsm.json("sync", "--parents", v1, "--project", "proj", "--name", "data", "--folder", src)["id"]
    mnt = new_mountpoint()
    mount_writable(dsm, v1, mnt)
    (mnt / "change.txt").write_text("on v1\n")
    dsm("unmount", mnt)
    run = dsm("mount", v2, mnt, "--writable", rc=7)
    assert f"holds changes to version {v1}" in run.err
    assert len(run.err.strip().splitlines()) == 1
    assert not mounted(mnt)
    other = tmp_path / "other-overlay"
    mount_writable(dsm, v2, mnt, "--overlay", other)  # another overlay folder is fine
    assert (mnt / "c.txt").read_text() == "v2\n"
    assert not (mnt / "change.txt").exists()
    assert (other / "overlay.db").is_file()
    busy = dsm("mount", v2, new_mountpoint(), "--writable", "--overlay", other, rc=7)
    assert f"overlay {other} is in use by another mount" in busy.err
    dsm("mount", v2, tmp_path, "--overlay", other, rc=2)  # --overlay needs --writable


def test_read_only_mount_is_still_erofs(dsm: Dsm, tmp_path: Path, new_mountpoint: NewMountpoint) -> None:
    vid = make_version(dsm, make_start(tmp_path / "src"))
    mnt = new_mountpoint()
    dsm("mount", vid, mnt)
    attempts: list[Callable[[], object]] = [
        lambda: open(mnt / "c.txt", "a"),  # noqa: SIM115
        lambda: os.mkdir(mnt / "d"),
        lambda: os.rename(mnt / "c.txt", mnt / "e.txt"),
    ]
    for attempt in attempts:
        assert errno_of(attempt) == errno.EROFS
    assert dsm("diff", mnt, rc=7).err.strip().endswith("(mount it with --writable)")


def test_copy_up_streams(dsm: Dsm, tmp_path: Path, new_mountpoint: NewMountpoint) -> None:
    """Appending to a 200 MiB file copies it up without holding it in the daemon's memory."""
    size = 200 << 20
    src = tmp_path / "src"
    src.mkdir()
    block = os.urandom(1 << 20)
    with open(src / "huge.bin", "wb") as f:
        for _ in range(size >> 20):
            f.write(block)
    vid = make_version(dsm, src)
    (src / "huge.bin").unlink()
    mnt = new_mountpoint()
    mount_writable(dsm, vid, mnt)
    rss_before = dsm.json("status", mnt)["rss_bytes"]
    with open(mnt / "huge.bin", "ab") as f:
        f.write(b"tail")
    status = dsm.json("status", mnt)
    rss_after = status["rss_bytes"]
    assert os.stat(mnt / "huge.bin").st_size == size + 4
    assert rss_after - rss_before < 48 << 20, (rss_before, rss_after)
    assert rss_after < size // 2
    with open(mnt / "huge.bin", "rb") as f:
        f.seek(size - 4)
        assert f.read() == block[-4:] + b"tail"
    assert dsm.json("stats", mnt)["copied_up"] == {"files": 1, "bytes": size}
    assert "copied up 1 files (200.0 MiB)" in dsm("stats", mnt).out


def test_python_mount_writable(dsm: Dsm, home: Path, tmp_path: Path, new_mountpoint: NewMountpoint) -> None:
    vid = make_version(dsm, make_start(tmp_path / "src"))
    ws = Workspace(str(home / "store"), home=home)
    try:
        with Dataset.get(dataset_id=vid, workspace=ws).mount(new_mountpoint(), writable=True) as m:
            Path(m.path, "py.txt").write_text("from python\n")
            assert m.status()["writable"] is True
            assert m.status()["overlay"].endswith("/overlay")
            assert [(c["status"], c["path"]) for c in m.diff()] == [("added", "py.txt")]
    finally:
        ws.close()


def random_steps(seed: int, n: int) -> list[tuple[str, str, str]]:
    """A fixed random walk of operations over a small set of names (so they collide often)."""
    import random

    rnd = random.Random(seed)
    names = ["a", "a/b.txt", "a/deep", "a/deep/d.txt", "c.txt", "dir", "dir/x.txt", "dir/sub", "n1", "n2"]
    names += ["dir/sub/y.txt", "a/n3", "dir/n4", "images/01", "images/01/i1.jpg", "u.txt", "link"]
    kinds = ["write", "append", "truncate", "rename", "unlink", "mkdir", "rmdir", "rmtree", "chmod"]
    kinds.append("symlink")
    return [(rnd.choice(kinds), rnd.choice(names), rnd.choice(names)) for _ in range(n)]


def run_step(root: Path, step: tuple[str, str, str], i: int) -> int:
    kind, a, b = step
    pa, pb = root / a, root / b

    def act() -> None:
        if kind == "write":
            with open(pa, "wb") as f:
                f.write(b"w%d\n" % i)
        elif kind == "append":
            with open(pa, "ab") as f:
                f.write(b"+%d" % i)
        elif kind == "truncate":
            os.truncate(pa, i % 7)
        elif kind == "rename":
            os.rename(pa, pb)
        elif kind == "unlink":
            os.unlink(pa)
        elif kind == "mkdir":
            os.mkdir(pa)
        elif kind == "rmdir":
            os.rmdir(pa)
        elif kind == "rmtree":
            if pa.is_dir() and not pa.is_symlink():
                shutil.rmtree(pa)
        elif kind == "chmod":
            if not pa.is_symlink():
                os.chmod(pa, 0o600 + (i % 2) * 0o100)
        elif kind == "symlink":
            os.symlink(f"t{i}", pa)

    return errno_of(act)


def test_random_walk_matches_a_local_folder(dsm: Dsm, tmp_path: Path, new_mountpoint: NewMountpoint) -> None:
    vid = make_version(dsm, make_start(tmp_path / "src"))
    local = make_start(tmp_path / "local")
    mnt = new_mountpoint()
    mount_writable(dsm, vid, mnt)
    for i, step in enumerate(random_steps(4, 250)):
        assert (run_step(mnt, step, i), i, step) == (run_step(local, step, i), i, step)
        if i % 50 == 0:
            assert snapshot(mnt) == snapshot(local), (i, step)
    assert snapshot(mnt) == snapshot(local)
    dsm("unmount", mnt)
    mount_writable(dsm, vid, mnt)
    assert snapshot(mnt) == snapshot(local)
