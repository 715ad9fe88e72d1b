"""Helpers for tests with real FUSE mounts: fresh mount points that are always cleaned up."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from mountfs.daemon import mountpoint, state

from tests.conftest import Dsm

NewMountpoint = Callable[[], Path]


def mounted(path: Path) -> bool:
    return mountpoint.mounted_at(mountpoint.canonical(path)) is not None


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def errno_of(fn: Callable[[], object]) -> int:
    """The errno of the OSError ``fn`` raises (0 if it raises none)."""
    try:
        fn()
    except OSError as exc:
        return exc.errno or -1
    return 0


def daemon_pid(home: Path, path: Path) -> int:
    st = state.MountState.read(state.state_dir(home, mountpoint.canonical(path)))
    assert st is not None, f"no daemon state for {path}"
    return st.pid


@pytest.fixture
def new_mountpoint(tmp_path: Path, home: Path) -> Iterator[NewMountpoint]:
    """``new_mountpoint()`` makes an empty folder; after the test, each is unmounted, its daemon stopped."""
    made: list[Path] = []

    def make() -> Path:
        p = tmp_path / f"mnt{len(made)}"
        p.mkdir()
        made.append(p)
        return p

    yield make
    for p in made:
        mp = mountpoint.canonical(p)
        st = state.MountState.read(state.state_dir(home, mp))
        if st is not None and state.pid_alive(st.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(st.pid, signal.SIGTERM)
            pid = st.pid
            wait_for(lambda pid=pid: not state.pid_alive(pid), 10)  # type: ignore[misc]
            if state.pid_alive(st.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(st.pid, signal.SIGKILL)
        if mounted(p):
            subprocess.run(["fusermount3", "-u", "-z", str(mp)], check=False, capture_output=True)


def w1_like(root: Path, seed: int = 1) -> dict[str, bytes]:
    """A small W1-like mix: a large stored file (block CRCs), deflated text, many small files,
    an empty file, an executable, unicode names, nested folders."""
    rnd = random.Random(seed)
    files: dict[str, bytes] = {
        "big/video.bin": rnd.randbytes(3 * 1024 * 1024 + 12345),
        "big/mid.bin": rnd.randbytes(300_000),
        "tables/labels.csv": b"".join(b"%d,cat_%d,%d\n" % (i, i % 7, i * 3) for i in range(60_000)),
        "empty.txt": b"",
        "bin/run.sh": b"#!/bin/sh\necho run\n",
        "ünïcode/名前.txt": "unicode ✓\n".encode() * 50,
    }
    for i in range(120):
        files[f"images/{i // 40:02d}/img_{i:04d}.jpg"] = rnd.randbytes(rnd.randint(200, 20_000))
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    (root / "bin/run.sh").chmod(0o755)
    os.symlink("../tables/labels.csv", root / "big/labels-link.csv")
    return files


def make_version(dsm: Dsm, src: Path, *args: object) -> str:
    """create + add + close through the CLI; returns the id."""
    vid = dsm.new_id("--project", "proj", "--name", "data", *args)
    dsm("add", "--id", vid, "--files", src)
    dsm("close", "--id", vid)
    return vid
