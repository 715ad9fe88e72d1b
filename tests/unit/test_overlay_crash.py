"""Crash injection: a child process runs a seeded sequence of overlay operations and is killed
with SIGKILL at a random moment; reopening the overlay must give the state after the last
operation the child finished, or after the one it was in the middle of, never anything else,
and no data file left without its row.

The expected states come from replaying the same sequence in this process on a fresh overlay
(the sequence depends only on the seed and the state it has produced, so it replays exactly).
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mountfs.snapshot.entries import SYMLINK
from mountfs.tree.index import TreeIndex
from mountfs.tree.overlay import Overlay
from tests.unit.test_overlay import lower_entries, sha

BIG = bytes(range(256)) * (6 * 4096)  # 6 MiB: copy-ups take long enough to be interrupted
LOWER: dict[str, bytes | str] = {
    "big/one.bin": BIG,
    "big/two.bin": BIG[::-1],
    "a/b/c.txt": b"hello",
    "a/e.txt": b"eee",
    "a/f/g": b"g",
    **{f"many/f{i:03d}": f"{i}".encode() for i in range(200)},
    "ln": "nowhere",
}
BY_SHA = {sha(d): d for d in LOWER.values() if isinstance(d, bytes)}
NAMES = ["a", "b", "n", "m", "big", "many"]

Snapshot = dict[str, tuple[str, str, int]]


def snapshot(ov: Overlay) -> Snapshot:
    """Kind, content hash or target, and mode of every merged path (not mtimes: they are clock reads)."""
    out: Snapshot = {}

    def walk(folder: str) -> None:
        for node in ov.listdir(folder):
            if node.is_dir:
                out[node.path] = ("dir", "", node.mode)
                walk(node.path)
            elif node.kind == SYMLINK:
                out[node.path] = (SYMLINK, node.target, 0)
            elif node.data is not None:
                out[node.path] = ("file", sha(node.data.read_bytes()), node.mode)
            else:
                assert node.entry is not None
                out[node.path] = ("file", node.entry.sha256, node.mode)

    walk("")
    return out


def reader(ov: Overlay, path: str) -> Callable[[int, int], bytes] | None:
    node = ov.lookup(path)
    if node is None or node.entry is None:
        return None
    data = BY_SHA[node.entry.sha256]
    return lambda offset, size: data[offset : offset + size]


def step(ov: Overlay, rng: random.Random) -> None:
    """One operation chosen from the overlay's current view; errors are part of the sequence."""
    view = sorted(snapshot(ov))
    files = [p for p in view if not p.startswith("many/")]
    folders = [""] + [p for p in view if snapshot_kind(ov, p) == "dir"]

    def new_path() -> str:
        base = rng.choice(folders)
        name = rng.choice(NAMES) + str(rng.randint(0, 3))
        return f"{base}/{name}" if base else name

    def some_path() -> str:
        return rng.choice(files) if files and rng.random() < 0.8 else new_path()

    op = rng.choice(["create", "write", "truncate", "mkdir", "unlink", "rmtree", "rename", "rename", "chmod"])
    try:
        if op == "create":
            ov.create(new_path(), 0o640)
        elif op == "write":
            path = some_path()
            ov.write(path, rng.randint(0, 100), rng.randbytes(20), reader(ov, path))
            ov.sync(path)
        elif op == "truncate":
            path = some_path()
            ov.truncate(path, rng.choice([0, 5, 3 << 20]), reader(ov, path))
            ov.sync(path)
        elif op == "mkdir":
            ov.mkdir(new_path())
        elif op == "unlink":
            ov.unlink(some_path())
        elif op == "rmtree":
            ov.remove_tree(rng.choice([*folders[1:], *files]) if len(folders) > 1 else some_path())
        elif op == "rename":
            src = (
                rng.choice([*folders[1:], *files]) if rng.random() < 0.5 and len(folders) > 1 else some_path()
            )
            ov.rename(src, rng.choice([new_path(), some_path()]))
        else:
            ov.setattr(some_path(), mode=rng.choice([0o600, 0o755]))
    except OSError:
        pass
    except ValueError:  # a write or truncate of a lower file given no reader: not an operation
        pass


def snapshot_kind(ov: Overlay, path: str) -> str:
    node = ov.lookup(path)
    return "" if node is None else node.kind


def child(folder: Path, index_path: Path, seed: int, progress: int) -> None:
    """The process that gets killed: runs the sequence, reporting each finished step on a pipe."""
    rng = random.Random(seed)
    with TreeIndex.open(index_path) as index, Overlay.open(folder, index) as ov:
        for i in range(10_000):
            step(ov, rng)
            os.write(progress, f"{i}\n".encode())


def replay(folder: Path, index: TreeIndex, seed: int, upto: int) -> tuple[Snapshot, Snapshot]:
    """The states after ``upto`` steps and after one more."""
    rng = random.Random(seed)
    with Overlay.open(folder, index) as ov:
        for _ in range(upto):
            step(ov, rng)
        before = snapshot(ov)
        step(ov, rng)
        return before, snapshot(ov)


def run_and_kill(folder: Path, index_path: Path, seed: int, delay: float) -> int:
    """Fork the child, SIGKILL it after ``delay`` seconds; return how many steps it finished."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns
        os.close(r)
        try:
            child(folder, index_path, seed, w)
        finally:
            os._exit(0)
    os.close(w)
    time.sleep(delay)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    chunks = []
    while block := os.read(r, 65536):
        chunks.append(block)
    os.close(r)
    lines = b"".join(chunks).split()
    return len(lines)


@pytest.mark.parametrize("seed", range(12))
def test_kill_9_at_a_random_point_leaves_the_old_or_the_new_state(tmp_path: Path, seed: int) -> None:
    index_path = tmp_path / "v1.tree"
    TreeIndex.build(index_path, "v1", lower_entries(LOWER))
    delay = random.Random(seed).uniform(0.05, 0.6)
    done = run_and_kill(tmp_path / "ov", index_path, seed, delay)
    with TreeIndex.open(index_path) as index:
        with Overlay.open(tmp_path / "ov", index) as ov:
            got = snapshot(ov)
            data_ids = {str(r.id) for r in ov.rows() if r.data}
            assert set(os.listdir(ov.upper)) == data_ids  # temp files and unrecorded copies are gone
            assert ov.check() == []
        before, after = replay(tmp_path / "replay", index, seed, done)
    assert got in (before, after), f"seed {seed}: killed after {done} steps, state is neither"


def test_kill_9_during_a_copy_up_leaves_the_lower_file(tmp_path: Path) -> None:
    """A copy-up that never finishes: the child is killed while the reader is still being called."""
    index_path = tmp_path / "v1.tree"
    TreeIndex.build(index_path, "v1", lower_entries(LOWER))
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover
        os.close(r)
        try:
            with TreeIndex.open(index_path) as index, Overlay.open(tmp_path / "ov", index) as ov:

                def slow(offset: int, size: int) -> bytes:
                    if offset >= 2 << 20:
                        os.write(w, b"x")
                        time.sleep(60)
                    return BIG[offset : offset + size]

                ov.copy_up("big/one.bin", slow)
        finally:
            os._exit(0)
    os.close(w)
    assert os.read(r, 1) == b"x"
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    os.close(r)
    assert any(name.startswith(".tmp-") for name in os.listdir(tmp_path / "ov" / "upper"))
    with TreeIndex.open(index_path) as index, Overlay.open(tmp_path / "ov", index) as ov:
        assert os.listdir(ov.upper) == []
        assert ov.is_empty()
        node = ov.getattr("big/one.bin")
        assert node.data is None
        assert node.entry is not None


@pytest.mark.parametrize("delay", [0.05, 0.15, 0.3, 0.6])
def test_kill_9_during_the_rename_of_a_big_folder(tmp_path: Path, delay: float) -> None:
    """The rename of a 20,000-file folder is one transaction: killed at any point, the folder is
    wholly at its old path or wholly at its new one."""
    files: dict[str, bytes | str] = {f"d/{i // 1000}/f{i}": b"x" for i in range(20_000)}
    index_path = tmp_path / "v1.tree"
    TreeIndex.build(index_path, "v1", lower_entries(files))
    pid = os.fork()
    if pid == 0:  # pragma: no cover
        try:
            with TreeIndex.open(index_path) as index, Overlay.open(tmp_path / "ov", index) as ov:
                ov.rename("d", "e")
                time.sleep(60)
        finally:
            os._exit(0)
    time.sleep(delay)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    with TreeIndex.open(index_path) as index, Overlay.open(tmp_path / "ov", index) as ov:
        top = [n.path for n in ov.listdir("")]
        assert top in (["d"], ["e"])
        assert sum(len(ov.listdir(f"{top[0]}/{k}")) for k in range(20)) == 20_000
        assert ov.check() == []
