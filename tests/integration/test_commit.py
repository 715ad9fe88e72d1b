"""``dsmount commit`` through real writable mounts: the child version holds exactly what the mount
showed, renames cost no upload, the mount moves onto the child, and kill -9 at any step of a
commit leaves the old version with its overlay or the child with a clean one."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from mountfs.daemon import state

from mountfs import Dataset
from mountfs.tree.overlay import Overlay
from tests.conftest import DSMOUNT, Dsm, write_tree
from tests.integration.mount_fixtures import NewMountpoint, make_version, mounted, new_mountpoint, wait_for
from tests.integration.test_writable import apply_sequence, make_start, mount_writable, snapshot

pytestmark = pytest.mark.uses_fuse
__all__ = ["new_mountpoint"]


def files_of(tree: dict[str, tuple[Any, ...]]) -> dict[str, tuple[Any, ...]]:
    """Files and symlinks only: a version records no folders of its own."""
    return {p: v for p, v in tree.items() if v[0] != "dir"}


def store_objects(home: Path) -> dict[str, int]:
    root = home / "store"
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


def get_copy(dsm: Dsm, vid: str, to: Path) -> Path:
    return Path(dsm("get", "--id", vid, "--copy", to).out.strip())


def overlay_of(home: Path, mnt: Path) -> Path:
    return state.state_dir(home, str(mnt.resolve())) / "overlay"


def test_child_holds_what_the_mount_showed(dsm: Dsm, tmp_path: Path, new_mountpoint: NewMountpoint) -> None:
    vid = make_version(dsm, make_start(tmp_path / "src"))
    mnt = new_mountpoint()
    mount_writable(dsm, vid, mnt)
    apply_sequence(mnt)
    before = snapshot(mnt)
    diff = dsm.json("diff", mnt)["changes"]

    answer = dsm.json("commit", mnt, "--description", "from the mount", "--tags", "t1", "t2")
    assert answer["committed"]
    assert answer["closed"]
    child = answer["id"]
    assert answer["parent"] == vid
    assert answer["version"] == "1.0.1"
    assert answer["changes"] == len(diff)
    # the mount serves the child now, shows the same tree, and has nothing pending
    st = dsm.json("status", mnt)
    assert st["version"] == child
    assert st["label"] == "proj/data@1.0.1"
    # the same files; folders now come from the files (a version records none of its own, so
    # an empty folder and a folder's mode do not outlive the commit)
    assert files_of(snapshot(mnt)) == files_of(before)
    assert dsm.json("diff", mnt)["changes"] == []
    assert os.getxattr(mnt, "user.dsmount.version").decode() == child
    assert os.listdir(overlay_of(dsm.home, mnt) / "upper") == []
    # the child, fetched anew, is byte for byte what the mount showed
    copy = get_copy(dsm, child, tmp_path / "copy")
    assert files_of(snapshot(copy)) == files_of(before)
    assert os.stat(copy / "new.txt").st_mtime_ns == os.stat(mnt / "new.txt").st_mtime_ns
    shown = dsm.json("show", child)
    assert shown["parents"] == [vid]
    assert sorted(shown["tags"]) == ["t1", "t2"]
    assert shown["description"] == "from the mount"
    for chunk in (dsm.home / "store/data" / child).glob("chunk-*.zip"):
        assert subprocess.run(["unzip", "-tq", str(chunk)], capture_output=True).returncode == 0
    dsm("verify", "--id", child)

    # keep writing on the child, commit again: a grandchild whose parent is the child
    (mnt / "after.txt").write_bytes(b"after the first commit\n")
    shutil.rmtree(mnt / "many")
    again = dsm.json("commit", mnt)
    assert again["parent"] == child
    assert again["version"] == "1.0.2"
    assert dsm.json("show", again["id"])["parents"] == [child]
    later = snapshot(mnt)
    assert files_of(snapshot(get_copy(dsm, again["id"], tmp_path / "copy2"))) == files_of(later)

    # a remount of the original version carries on where the commits left the overlay
    dsm("unmount", mnt)
    out = dsm("mount", vid, mnt, "--writable").out
    assert "carries on at " + again["id"] in out
    assert dsm.json("status", mnt)["version"] == again["id"]
    assert snapshot(mnt) == later


def test_renamed_files_are_stored_as_references(
    dsm: Dsm, tmp_path: Path, new_mountpoint: NewMountpoint
) -> None:
    src = tmp_path / "src"
    write_tree(src, {f"in/f{i:03d}.bin": os.urandom(64 * 1024) for i in range(100)})
    vid = make_version(dsm, src)
    mnt = new_mountpoint()
    mount_writable(dsm, vid, mnt)
    os.mkdir(mnt / "out")
    for i in range(100):
        os.rename(mnt / f"in/f{i:03d}.bin", mnt / f"out/g{i:03d}.bin")
    os.rename(mnt / "out", mnt / "moved")  # a renamed folder of renamed files: still references
    before_store = store_objects(dsm.home)
    before = snapshot(mnt)

    answer = dsm.json("commit", mnt)
    child = answer["id"]
    assert answer["uploaded_bytes"] == 0
    grown = {k: v for k, v in store_objects(dsm.home).items() if k not in before_store}
    table = f"data/{child}/files.json.gz"
    assert set(grown) == {table, f"registry/{child}.json", *(k for k in grown if k.startswith("claims/"))}
    assert not list((dsm.home / "store/data" / child).glob("chunk-*"))
    manifest = json.loads((dsm.home / "store/registry" / f"{child}.json").read_text())
    assert manifest["stats"]["stored_bytes"] == grown[table]
    assert files_of(snapshot(get_copy(dsm, child, tmp_path / "copy"))) == files_of(before)


def test_nothing_to_commit_open_files_and_failures(
    dsm: Dsm, tmp_path: Path, new_mountpoint: NewMountpoint
) -> None:
    vid = make_version(dsm, make_start(tmp_path / "src"))
    mnt = new_mountpoint()
    mount_writable(dsm, vid, mnt)
    res = dsm("commit", mnt)
    assert res.out.startswith("nothing to commit")
    assert dsm.json("commit", mnt) == {
        "mountpoint": str(mnt.resolve()),
        "parent": vid,
        "committed": False,
        "id": None,
    }
    (mnt / "new.txt").write_bytes(b"new\n")
    # a file open for writing, and readers of local bytes, stay open across commits
    with open(mnt / "c.txt", "ab") as f, open(mnt / "c.txt", "rb") as r1, open(mnt / "new.txt", "rb") as r2:
        f.write(b"open\n")
        f.flush()
        first = dsm.json("commit", mnt)
        assert first["committed"]
        f.write(b"after\n")  # lands in the overlay on the child
        f.flush()
        assert r1.read() == b"sea\nopen\nafter\n"
        with open(mnt / "new.txt", "ab") as w:  # a new copy-up: the reader follows it
            w.write(b"more\n")
        assert r2.read() == b"new\nmore\n"
    assert {c["path"]: c["status"] for c in dsm.json("diff", mnt)["changes"]} == {
        "c.txt": "modified",
        "new.txt": "modified",
    }
    second = dsm.json("commit", mnt)
    assert (get_copy(dsm, first["id"], tmp_path / "first") / "c.txt").read_bytes() == b"sea\nopen\n"
    assert (get_copy(dsm, second["id"], tmp_path / "second") / "c.txt").read_bytes() == b"sea\nopen\nafter\n"
    vid = second["id"]
    assert dsm.json("status", mnt)["version"] == vid
    # a failure inside the commit (a version number already taken) keeps its exit code, rolls
    # the draft back, and leaves the daemon serving and the overlay as it was
    (mnt / "later.txt").write_bytes(b"later\n")
    changes = dsm.json("diff", mnt)["changes"]
    assert len(changes) == 1
    res = dsm("commit", mnt, "--version", "1.0.0", rc=2)
    assert "already has a version 1.0.0" in res.err
    assert dsm.json("diff", mnt)["changes"] == changes
    assert [r["id"] for r in dsm.json("search", "--not-only-completed") if r["state"] != "closed"] == []
    assert Overlay.read_meta(overlay_of(dsm.home, mnt)).get("commit_draft") is None
    dsm("commit", "/nonexistent/mount", rc=7)
    read_only = new_mountpoint()
    dsm("mount", vid, read_only)
    assert "not a writable mount" in dsm("commit", read_only, rc=7).err


def test_no_close_leaves_an_uploaded_draft(dsm: Dsm, tmp_path: Path, new_mountpoint: NewMountpoint) -> None:
    vid = make_version(dsm, make_start(tmp_path / "src"))
    mnt = new_mountpoint()
    mount_writable(dsm, vid, mnt)
    (mnt / "extra.bin").write_bytes(os.urandom(200_000))
    os.unlink(mnt / "c.txt")
    before = snapshot(mnt)
    answer = dsm.json("commit", mnt, "--no-close", "--name", "branch")
    assert answer["committed"]
    assert not answer["closed"]
    assert answer["name"] == "branch"
    assert dsm.json("status", mnt)["version"] == vid  # the mount keeps its version and its changes
    assert {c["path"] for c in dsm.json("diff", mnt)["changes"]} == {"extra.bin", "c.txt"}
    assert list((dsm.home / "store/data" / answer["id"]).glob("chunk-*.zip"))  # uploaded already
    dsm("unmount", mnt)  # the draft does not need the overlay's files any more
    dsm("close", "--id", answer["id"])
    assert files_of(snapshot(get_copy(dsm, answer["id"], tmp_path / "copy"))) == files_of(before)


def test_python_mount_commit(dsm: Dsm, tmp_path: Path, new_mountpoint: NewMountpoint) -> None:
    vid = make_version(dsm, make_start(tmp_path / "src"))
    mnt = new_mountpoint()
    os.environ["DSMOUNT_HOME"] = str(dsm.home)
    try:
        ds = Dataset.get(dataset_id=vid)
        with ds.mount(mnt, writable=True) as m:
            (mnt / "py.txt").write_text("from python\n")
            answer = m.commit(version="2.0.0", tags=["py"])
            assert m.version == answer["id"]
            assert answer["version"] == "2.0.0"
            assert (mnt / "py.txt").read_text() == "from python\n"
            assert m.diff() == []
        child = Dataset.get(dataset_id=answer["id"])
        assert child.list_added_files() == ["py.txt"]
        assert child.tags == ["py"]
    finally:
        del os.environ["DSMOUNT_HOME"]


# ----- crash injection ---------------------------------------------------------------------------

BEFORE_CLOSE = [
    "commit.noted",
    "commit.draft_created",
    "commit.pending",
    "upload.chunk_written",
    "upload.chunk_recorded",
    "commit.uploaded",
    "close.table_written",
    "close.version_claimed",
]
AFTER_CLOSE = ["close.manifest_written", "commit.closed", "commit.cleared"]


@pytest.mark.parametrize("point", BEFORE_CLOSE + AFTER_CLOSE)
def test_kill_9_at_each_step_of_commit(
    dsm: Dsm, tmp_path: Path, new_mountpoint: NewMountpoint, point: str
) -> None:
    vid = make_version(dsm, make_start(tmp_path / "src"))
    mnt = new_mountpoint()
    dsm("mount", vid, mnt, "--writable", env={"DSMOUNT_CRASH_AT": point})
    pid = state.MountState.read(state.state_dir(dsm.home, str(mnt.resolve())))
    assert pid is not None
    (mnt / "new.bin").write_bytes(os.urandom(300_000))
    with open(mnt / "a/b.txt", "ab") as f:
        f.write(b"more\n")
    os.rename(mnt / "c.txt", mnt / "renamed.txt")
    shutil.rmtree(mnt / "images")
    before = snapshot(mnt)
    changes = dsm.json("diff", mnt)["changes"]
    objects = store_objects(dsm.home)

    res = dsm("commit", mnt, rc=7)
    assert "stopped during the commit" in res.err
    assert wait_for(lambda: not state.pid_alive(pid.pid), 10)

    out = dsm("mount", vid, mnt, "--writable").out  # clears the dead mount, settles the commit
    assert mounted(mnt)
    st = dsm.json("status", mnt)
    assert snapshot(mnt) == before  # no acknowledged change lost, whichever state it settled in
    assert [r["id"] for r in dsm.json("search", "--not-only-completed") if r["state"] != "closed"] == []
    if point in BEFORE_CLOSE:  # the old version, with the overlay intact and nothing left behind
        assert st["version"] == vid
        assert "rolled back an interrupted commit" in out
        assert dsm.json("diff", mnt)["changes"] == changes
        assert set(store_objects(dsm.home)) == set(objects)
        answer = dsm.json("commit", mnt)  # and the commit can simply be run again
        child = answer["id"]
    else:  # the child, with a clean overlay
        child = st["version"]
        assert child != vid
        assert dsm.json("show", child)["parents"] == [vid]
        assert "carries on at" in out or "finished an interrupted commit" in out
        assert dsm.json("diff", mnt)["changes"] == []
        assert Overlay.read_meta(overlay_of(dsm.home, mnt)).get("commit_draft") is None
    assert files_of(snapshot(get_copy(dsm, child, tmp_path / "copy"))) == files_of(before)
    assert [v["id"] for v in dsm.json("search") if v["id"] != vid] == [child]


def test_daemon_killed_mid_commit_by_signal(dsm: Dsm, tmp_path: Path, new_mountpoint: NewMountpoint) -> None:
    """SIGKILL from outside while the commit uploads (a big file keeps it busy long enough)."""
    vid = make_version(dsm, make_start(tmp_path / "src"))
    mnt = new_mountpoint()
    mount_writable(dsm, vid, mnt)
    with open(mnt / "big.out", "wb") as f:
        for _ in range(64):
            f.write(os.urandom(1 << 20))
    before = snapshot(mnt)
    pid = state.MountState.read(state.state_dir(dsm.home, str(mnt.resolve())))
    assert pid is not None
    proc = subprocess.Popen(
        [str(DSMOUNT), "commit", str(mnt)],
        env=dsm.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: len(list((dsm.home / "store/data").iterdir())) > 1 or proc.poll() is not None, 20)
        os.kill(pid.pid, signal.SIGKILL)
    finally:
        proc.communicate(timeout=60)
    dsm("mount", vid, mnt, "--writable")
    assert snapshot(mnt) == before
    st = dsm.json("status", mnt)
    if st["version"] == vid:
        assert dsm.json("diff", mnt)["changes"] != []
    else:
        assert dsm.json("diff", mnt)["changes"] == []
