"""Real FUSE mounts through the `dsmount` executable: what programs read equals `get --copy`."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from mountfs.daemon import mountpoint

from tests.conftest import DSMOUNT, Dsm, MakeTree
from tests.integration.api_fixtures import tree_state
from tests.integration.mount_fixtures import (
    NewMountpoint,
    daemon_pid,
    errno_of,
    make_version,
    mounted,
    new_mountpoint,
    w1_like,
    wait_for,
)

pytestmark = pytest.mark.uses_fuse
__all__ = ["new_mountpoint"]  # the fixture, imported so pytest finds it here


def dirs_of(root: Path) -> set[str]:
    return {os.path.relpath(d, root) for d, _, _ in os.walk(root)}


def assert_same_as_copy(dsm: Dsm, vid: str, mnt: Path, tmp_path: Path) -> None:
    copy = tmp_path / f"copy-{vid[:8]}"
    dsm("get", "--id", vid, "--copy", copy)
    assert tree_state(mnt) == tree_state(copy)
    assert dirs_of(mnt) == dirs_of(copy)


def test_w1_like_tree_and_bytes_equal_get_copy(
    dsm: Dsm, tmp_path: Path, new_mountpoint: NewMountpoint
) -> None:
    src = tmp_path / "src"
    w1_like(src)
    v1 = make_version(dsm, src)
    # v2: modify, remove a folder (one tombstone), add, rename
    (src / "tables/labels.csv").write_bytes(b"replaced\n" * 1000)
    shutil.rmtree(src / "images/01")
    (src / "new.txt").write_text("new file\n")
    os.rename(src / "big/mid.bin", src / "big/mid-renamed.bin")
    v2 = dsm.json("sync", "--parents", v1, "--project", "proj", "--name", "data", "--folder", src)["id"]
    assert v2 != v1

    for vid in (v1, v2):
        mnt = new_mountpoint()
        run = dsm("mount", vid, mnt)
        assert f"at {mnt}" in run.out
        assert_same_as_copy(dsm, vid, mnt, tmp_path)
        dsm("unmount", mnt)
        assert not mounted(mnt)
    assert not (mnt / "images/01").exists()


def test_diamond_dag_with_tombstones(
    dsm: Dsm, make_tree: MakeTree, tmp_path: Path, new_mountpoint: NewMountpoint
) -> None:
    base = make_version(dsm, make_tree({"shared.txt": "base", "gone/a.txt": "a", "keep.txt": "k"}))
    left = dsm.new_id("--project", "proj", "--name", "data", "--parents", base)
    dsm("add", "--id", left, "--files", make_tree({"shared.txt": "left wins?", "l.txt": "l"}))
    dsm("remove", "--id", left, "--files", "gone")
    dsm("close", "--id", left)
    right = dsm.new_id("--project", "proj", "--name", "data", "--parents", base)
    dsm("add", "--id", right, "--files", make_tree({"shared.txt": "right wins", "r.txt": "r"}))
    dsm("close", "--id", right)
    merge = dsm.new_id("--project", "proj", "--name", "data", "--parents", left, right)
    dsm("add", "--id", merge, "--files", make_tree({"m.txt": "m"}))
    assert "a.txt" in dsm("list", "--id", merge).out  # the later parent (right) still has gone/
    dsm("remove", "--id", merge, "--files", "gone")  # one tombstone for the folder
    dsm("close", "--id", merge)

    mnt = new_mountpoint()
    dsm(merge, mnt)  # the shorthand
    assert (mnt / "shared.txt").read_text() == "right wins"  # the later parent wins
    assert not (mnt / "gone").exists()
    assert sorted(os.listdir(mnt)) == ["keep.txt", "l.txt", "m.txt", "r.txt", "shared.txt"]
    assert_same_as_copy(dsm, merge, mnt, tmp_path)
    assert os.getxattr(mnt / "shared.txt", "user.dsmount.origin").decode() == right
    assert os.getxattr(mnt / "keep.txt", "user.dsmount.origin").decode() == base
    assert os.getxattr(mnt, "user.dsmount.version").decode() == merge
    data = (mnt / "l.txt").read_bytes()
    assert os.getxattr(mnt / "l.txt", "user.dsmount.sha256").decode() == hashlib.sha256(data).hexdigest()


def test_writes_are_erofs(dsm: Dsm, make_tree: MakeTree, new_mountpoint: NewMountpoint) -> None:
    vid = make_version(dsm, make_tree({"a/b.txt": "b", "c.txt": "c"}))
    mnt = new_mountpoint()
    dsm("mount", vid, mnt)
    attempts = [
        lambda: open(mnt / "c.txt", "w"),  # noqa: SIM115
        lambda: open(mnt / "c.txt", "a"),  # noqa: SIM115
        lambda: open(mnt / "new.txt", "x"),  # noqa: SIM115
        lambda: os.mkdir(mnt / "d"),
        lambda: os.unlink(mnt / "c.txt"),
        lambda: os.rmdir(mnt / "a"),
        lambda: os.rename(mnt / "c.txt", mnt / "e.txt"),
        lambda: os.chmod(mnt / "c.txt", 0o600),
        lambda: os.utime(mnt / "c.txt", (1, 1)),
        lambda: os.symlink("c.txt", mnt / "s"),
        lambda: os.link(mnt / "c.txt", mnt / "h"),
        lambda: os.truncate(mnt / "c.txt", 0),
        lambda: os.setxattr(mnt / "c.txt", "user.x", b"1"),
    ]
    for attempt in attempts:
        assert errno_of(attempt) == errno.EROFS
    assert (mnt / "c.txt").read_text() == "c"
    with open("/proc/self/mounts") as f:
        assert " ro," in next(line for line in f if f" {mnt} " in line)


READER = """
import hashlib, json, os, sys
root = sys.argv[1]
out = {}
for _ in range(2):
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
print(json.dumps(out))
"""


def test_eight_concurrent_reader_processes(dsm: Dsm, tmp_path: Path, new_mountpoint: NewMountpoint) -> None:
    src = tmp_path / "src"
    files = w1_like(src, seed=5)
    vid = make_version(dsm, src)
    mnt = new_mountpoint()
    dsm("mount", vid, mnt)
    procs = [
        subprocess.Popen([sys.executable, "-c", READER, str(mnt)], stdout=subprocess.PIPE, text=True)
        for _ in range(8)
    ]
    expected = {p: hashlib.sha256(d).hexdigest() for p, d in files.items()}
    expected["big/labels-link.csv"] = expected["tables/labels.csv"]
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        assert json.loads(out) == expected
    stats = dsm.json("stats", mnt)
    assert stats["reads"]["corrupt"] == 0
    assert stats["ops"]["read"]["errors"] == 0


def _flip_byte(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))


def test_corrupt_chunk_is_eio_never_data(
    dsm: Dsm, home: Path, tmp_path: Path, workspace: object, new_mountpoint: NewMountpoint
) -> None:
    src = tmp_path / "src"
    files = w1_like(src, seed=9)
    vid = make_version(dsm, src)
    from mountfs import Workspace

    ws = Workspace(str(home / "store"), home=home)
    try:
        index = ws.tree(vid)
        big = index.get("big/video.bin")
        csv = index.get("tables/labels.csv")
        small = index.get("images/00/img_0003.jpg")
        assert big is not None and big.loc is not None and big.loc.blocks  # noqa: PT018
        assert csv is not None and csv.loc is not None and csv.loc.method == 8  # noqa: PT018
        assert small is not None and small.loc is not None  # noqa: PT018
        chunk_of = {c.index: c.key for c in ws.manifest(vid).chunks}
        data_root = home / "store" / "data"
        _flip_byte(data_root / chunk_of[big.loc.chunk], big.loc.offset + 2 * 1024 * 1024 + 7)
        _flip_byte(data_root / chunk_of[csv.loc.chunk], csv.loc.offset + 100)
        _flip_byte(data_root / chunk_of[small.loc.chunk], small.loc.offset + 5)
    finally:
        ws.close()

    mnt = new_mountpoint()
    dsm("mount", vid, mnt)
    for rel in ("big/video.bin", "tables/labels.csv", "images/00/img_0003.jpg"):
        assert errno_of((mnt / rel).read_bytes) == errno.EIO, rel
    # The start of the big file is intact and verified block by block: still served.
    with open(mnt / "big/video.bin", "rb") as f:
        assert f.read(1 << 20) == files["big/video.bin"][: 1 << 20]
    assert (mnt / "images/00/img_0004.jpg").read_bytes() == files["images/00/img_0004.jpg"]
    stats = dsm.json("stats", mnt)
    assert stats["reads"]["corrupt"] >= 3
    log = next((home / "mounts").glob("*/daemon.log")).read_text()
    assert "corrupt data for big/video.bin" in log
    assert "corrupt data for tables/labels.csv" in log


def test_lazy_reads_fetch_only_what_is_needed(
    dsm: Dsm, tmp_path: Path, new_mountpoint: NewMountpoint
) -> None:
    src = tmp_path / "src"
    files = w1_like(src, seed=3)
    vid = make_version(dsm, src)
    mnt = new_mountpoint()
    dsm("mount", vid, mnt)
    assert len(list(mnt.rglob("*"))) > 120  # listing and stat of everything
    assert dsm.json("stats", mnt)["reads"]["store_bytes"] == 0  # metadata came from the index
    with open(mnt / "big/video.bin", "rb") as f:
        f.seek(1_500_000)
        assert f.read(200_000) == files["big/video.bin"][1_500_000:1_700_000]
    fetched = dsm.json("stats", mnt)["reads"]["store_bytes"]
    assert 200_000 <= fetched <= 1_200_000, fetched  # a few blocks and the kernel's read-ahead, not 3 MiB


def test_sigterm_in_foreground_unmounts_and_exits_zero(
    dsm: Dsm, make_tree: MakeTree, new_mountpoint: NewMountpoint
) -> None:
    vid = make_version(dsm, make_tree({"x.txt": "x"}))
    mnt = new_mountpoint()
    proc = subprocess.Popen(
        [str(DSMOUNT), "mount", "-f", vid, str(mnt)],
        env=dsm.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert wait_for(lambda: dsm("status", mnt, "--ready", rc=None).rc == 0, 30)
        assert (mnt / "x.txt").read_text() == "x"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "mounted" in out
    assert "unmounted" in out
    assert not mounted(mnt)
    assert dsm("status", mnt, "--ready", rc=7).rc == 7


def test_kill_9_leaves_a_stale_mount_that_the_next_mount_clears(
    dsm: Dsm, home: Path, make_tree: MakeTree, new_mountpoint: NewMountpoint
) -> None:
    vid = make_version(dsm, make_tree({"x.txt": "x"}))
    mnt = new_mountpoint()
    dsm("mount", vid, mnt)
    pid = daemon_pid(home, mnt)
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: dsm.json("status", mnt)["state"] == "stale")
    assert errno_of(lambda: os.stat(mnt / "x.txt")) == errno.ENOTCONN
    assert mounted(mnt)
    dsm("mount", vid, mnt)  # clears the dead mount, then mounts again
    assert (mnt / "x.txt").read_text() == "x"
    assert daemon_pid(home, mnt) != pid
    # and unmount clears a dead mount too
    os.kill(daemon_pid(home, mnt), signal.SIGKILL)
    assert wait_for(lambda: dsm.json("status", mnt)["state"] == "stale")
    assert "cleared a stale mount" in dsm("unmount", mnt).out
    assert not mounted(mnt)


def test_mount_errors_are_clear(
    dsm: Dsm, make_tree: MakeTree, tmp_path: Path, new_mountpoint: NewMountpoint
) -> None:
    vid = make_version(dsm, make_tree({"x.txt": "x"}))
    assert "no dataset" in dsm("mount", "0" * 32, new_mountpoint(), rc=3).err
    full = new_mountpoint()
    (full / "file").write_text("here")
    assert "not empty" in dsm("mount", vid, full, rc=7).err
    assert "does not exist" in dsm("mount", vid, tmp_path / "missing", rc=7).err
    mnt = new_mountpoint()
    dsm("mount", vid, mnt)
    assert "already a dsmount mount" in dsm("mount", vid, mnt, rc=7).err
    draft = dsm.new_id("--project", "proj", "--name", "other")
    assert dsm("mount", draft, new_mountpoint(), rc=4).rc == 4
    assert "nothing is mounted" in dsm("unmount", new_mountpoint(), rc=7).err
    busy = new_mountpoint()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(busy)], check=True)
    try:
        assert "busy" in dsm("mount", vid, busy, "--nonempty", rc=7).err
        assert "not a dsmount mount" in dsm("unmount", busy, rc=7).err
    finally:
        subprocess.run(["umount", str(busy)], check=True)
    for r in (dsm("mount", vid, full, rc=7), dsm("unmount", tmp_path, rc=7)):
        assert r.err.count("\n") == 1
        assert r.err.startswith("dsmount: error: ")


def test_status_stats_and_inode_stability(
    dsm: Dsm, make_tree: MakeTree, new_mountpoint: NewMountpoint
) -> None:
    vid = make_version(dsm, make_tree({"a/b/c.txt": "c", "z.bin": b"\0" * 5000}))
    mnt = new_mountpoint()
    dsm("mount", vid, mnt, "--json")
    inodes = {p: os.stat(mnt / p).st_ino for p in ("a", "a/b", "a/b/c.txt", "z.bin")}
    assert os.stat(mnt).st_ino == 1
    s = dsm.json("status", mnt)
    assert s["state"] == "mounted" and s["ready"] and s["version"] == vid  # noqa: PT018
    assert s["files"] == 2 and s["writable"] is False  # noqa: PT018
    assert [m["mountpoint"] for m in dsm.json("status")] == [str(mnt)]
    (mnt / "z.bin").read_bytes()
    stats = dsm.json("stats", mnt)
    assert stats["ops"]["lookup"]["count"] >= 1
    assert stats["ops"]["read"]["count"] >= 1
    assert stats["reads"]["served_bytes"] >= 5000
    assert stats["rss_bytes"] > 0
    assert "OPERATION" in dsm("stats", mnt).out
    dsm("unmount", mnt)
    dsm("mount", vid, mnt)
    assert {p: os.stat(mnt / p).st_ino for p in inodes} == inodes


def test_prefetch_fills_the_cache(
    dsm: Dsm, home: Path, tmp_path: Path, new_mountpoint: NewMountpoint
) -> None:
    src = tmp_path / "src"
    w1_like(src, seed=4)
    vid = make_version(dsm, src)
    out = dsm.json("prefetch", vid, "tables")
    assert out["files"] == 1
    mnt = new_mountpoint()
    dsm("mount", vid, mnt, "--prefetch")
    assert wait_for(lambda: dsm.json("status", mnt)["prefetch"].get("running") is False, 60)
    status = dsm.json("status", mnt)
    assert status["prefetch"]["files"] == status["files"] - 1  # every file but the symlink
    before = dsm.json("stats", mnt)["reads"]
    (mnt / "tables/labels.csv").read_bytes()
    after = dsm.json("stats", mnt)["reads"]
    assert after["cache_misses"] == before["cache_misses"]  # filled by the prefetch, not by the read
    assert after["cache_hits"] > before["cache_hits"]
    assert dsm.json("prefetch", mnt, "big", "--wait")["files"] >= 2


def test_dataset_mount_context_manager(home: Path, make_tree: MakeTree, tmp_path: Path) -> None:
    from mountfs import Dataset, Workspace

    ws = Workspace(str(home / "store"), home=home)
    try:
        ds = Dataset.create(dataset_name="ctx", dataset_project="proj", workspace=ws)
        ds.add_files(make_tree({"x/y.txt": "why"}))
        ds.finalize(auto_upload=True)
        mnt = tmp_path / "ctx-mnt"
        mnt.mkdir()
        with Dataset.get(dataset_id=ds.id, workspace=ws).mount(mnt) as m:
            assert (mnt / "x/y.txt").read_text() == "why"
            assert m.status()["ready"] is True
            assert m.stats()["reads"]["served_bytes"] == 3
        assert not mounted(mnt)
        assert not mountpoint.answers(str(mnt / "x"))
    finally:
        ws.close()


def _as_nobody(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd],
        capture_output=True,
        text=True,
        check=False,
    )


def test_private_unless_allow_other(dsm: Dsm, make_tree: MakeTree) -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.fail("this test needs root and setpriv (util-linux) to act as another user")
    vid = make_version(dsm, make_tree({"x.txt": "shared"}))
    # pytest's tmp folders are private (0700): another user needs a path it may traverse
    top = Path(tempfile.mkdtemp(prefix="dsmount-allow-other-"))
    os.chmod(top, 0o755)
    private, shared = top / "private", top / "shared"
    private.mkdir(mode=0o755)
    shared.mkdir(mode=0o755)
    try:
        dsm("mount", vid, private)
        dsm("mount", vid, shared, "--allow-other", "--uid", "65534", "--gid", "65534")
        denied = _as_nobody("cat", str(private / "x.txt"))
        assert denied.returncode != 0
        assert "Permission denied" in denied.stderr
        allowed = _as_nobody("cat", str(shared / "x.txt"))
        assert allowed.returncode == 0, allowed.stderr
        assert allowed.stdout == "shared"
        st = os.stat(shared / "x.txt")
        assert (st.st_uid, st.st_gid) == (65534, 65534)
    finally:
        for p in (private, shared):
            dsm("unmount", p, rc=None)
        shutil.rmtree(top, ignore_errors=True)
