"""Crash safety: a process SIGKILLed anywhere while building a version never leaves a half-made one.

Each test runs the build in a child interpreter (the same home and store as the test),
kills it at a named point (mountfs.api.faults) or at a random moment, then checks the
store from the outside, resumes or deletes the draft, and compares the result with the
source byte for byte.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mountfs import Dataset
from mountfs.api import admin
from tests.integration.api_fixtures import (
    assert_store_consistent,
    clean_env,
    registry_docs,
    run_child,
    tree_state,
    workspace,
    write_files,
)

CHILD = """
import sys
from pathlib import Path
from mountfs import Dataset, Workspace

root, src, chunk = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
ws = Workspace(str(root / "store"), home=root / "home")
ds = Dataset.create("ds", "proj", chunk_size=chunk, workspace=ws)
(root / "draft-id.tmp").write_text(ds.id)
(root / "draft-id.tmp").rename(root / "draft-id")
ds.add_files(src)
ds.upload(show_progress=False)
ds.close(show_progress=False)
print("closed", ds.id)
"""

POINTS = [
    "add.hashed",
    "upload.chunk_written",
    "upload.chunk_recorded",
    "close.table_written",
    "close.version_claimed",
    "close.manifest_written",
]


def _source(root: Path) -> Path:
    rng = random.Random(7)
    files: dict[str, bytes | str] = {f"d{i % 3}/f{i:02d}.bin": rng.randbytes(3000 + i) for i in range(12)}
    files["text/readme.txt"] = "readme\n" * 400
    src = write_files(root / "src", files)
    os.chmod(src / "d0" / "f00.bin", 0o750)
    os.symlink("../text/readme.txt", src / "d1" / "readme")
    return src


def _run(root: Path, src: Path, crash_at: str, chunk: str = "8000") -> str:
    code = f"exec(compile({CHILD!r}, 'child', 'exec'))"
    res = subprocess.run(
        [sys.executable, "-c", code, str(root), str(src), chunk],
        env={**clean_env(), "DSMOUNT_CRASH_AT": crash_at},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == -signal.SIGKILL, f"child was not killed at {crash_at}: {res.stdout}{res.stderr}"
    assert "closed" not in res.stdout
    return (root / "draft-id").read_text()


def _resume(root: Path, src: Path, vid: str) -> None:
    with workspace(root) as ws:
        ds = Dataset.get(vid, workspace=ws)
        if ds.state == "draft":
            if ws.catalogue.pending_count(vid) == 0:
                assert ds.add_files(src) == len(tree_state(src))  # the crash came before add recorded
            else:
                assert ds.add_files(src) == 0  # what add recorded survived the crash
            ds.upload(show_progress=False)
            assert not ds.is_dirty()
            ds.close(upload=False)
        assert ds.state == "closed"
        out = Path(ds.get_mutable_local_copy(root / "out"))
        assert tree_state(out) == tree_state(src)
    assert_store_consistent(root / "store")


@pytest.mark.parametrize("point", POINTS)
def test_crash_point_then_resume(tmp_path: Path, point: str) -> None:
    src = _source(tmp_path)
    vid = _run(tmp_path, src, point)
    store = tmp_path / "store"
    assert_store_consistent(store)
    data = store / "data" / vid
    chunks_on_disk = sorted(p.name for p in data.glob("chunk-*.zip")) if data.is_dir() else []
    with workspace(tmp_path) as ws:
        rows = {r["id"]: r for r in Dataset.list_datasets(only_completed=False, workspace=ws)}
        assert vid in rows
        draft = ws.catalogue.draft(vid)
        if point == "close.manifest_written":
            # The version exists; the refresh finished the draft the crash left behind.
            assert vid in registry_docs(store)
            assert rows[vid]["state"] == "closed"
            assert draft is None
        else:
            assert vid not in registry_docs(store)
            assert rows[vid]["state"] == "draft"
            assert draft is not None
            recorded = [c.key.rsplit("/", 1)[-1] for c in draft.chunks]
            if point == "add.hashed":
                assert ws.catalogue.pending_count(vid) == 0
                assert chunks_on_disk == []
            elif point == "upload.chunk_written":
                assert recorded == []
                assert chunks_on_disk  # written, not recorded: resumed uploads overwrite it
            elif point == "upload.chunk_recorded":
                assert recorded == ["chunk-0000.zip"]
            else:
                assert len(recorded) >= 4
                assert (data / "files.json.gz").is_file()
    _resume(tmp_path, src, vid)


def test_resume_keeps_recorded_chunks(tmp_path: Path) -> None:
    src = _source(tmp_path)
    vid = _run(tmp_path, src, "upload.chunk_recorded#3")
    data = tmp_path / "store" / "data" / vid
    with workspace(tmp_path) as ws:
        draft = ws.catalogue.draft(vid)
        assert draft is not None
        assert [c.index for c in draft.chunks] == [0, 1, 2]
        assert ws.catalogue.pending_count(vid, only_not_uploaded=True) > 0
    first = [(data / f"chunk-{i:04d}.zip").stat() for i in range(3)]
    _resume(tmp_path, src, vid)
    again = [(data / f"chunk-{i:04d}.zip").stat() for i in range(3)]
    assert [(s.st_ino, s.st_mtime_ns) for s in first] == [(s.st_ino, s.st_mtime_ns) for s in again]
    with workspace(tmp_path) as ws:
        m = ws.manifest(vid)
        assert [c.index for c in m.chunks] == list(range(len(m.chunks)))
        assert len(m.chunks) >= 5


@pytest.mark.parametrize("point", POINTS)
def test_crash_point_then_delete(tmp_path: Path, point: str) -> None:
    src = _source(tmp_path)
    vid = _run(tmp_path, src, point)
    store = tmp_path / "store"
    with workspace(tmp_path) as ws:
        assert Dataset.delete(vid, workspace=ws) == [vid]
        assert vid not in registry_docs(store)
        assert not (store / "data" / vid).exists()
        assert Dataset.list_datasets(only_completed=False, workspace=ws) == []
        assert admin.gc(ws, grace_seconds=0).orphan_objects == []
    assert_store_consistent(store)
    # The same source builds cleanly afterwards.
    res = run_child(CHILD_OK.format(root=str(tmp_path), src=str(src)), {})
    assert res.returncode == 0, res.stderr
    with workspace(tmp_path) as ws:
        ds = Dataset.get("proj/ds", workspace=ws)
        assert tree_state(Path(ds.get_mutable_local_copy(tmp_path / "out"))) == tree_state(src)
    assert assert_store_consistent(store) == 1


CHILD_OK = """
from pathlib import Path
from mountfs import Dataset, Workspace
ws = Workspace({root!r} + "/store", home=Path({root!r}) / "home")
ds = Dataset.create("ds", "proj", chunk_size=8000, workspace=ws)
ds.add_files({src!r})
ds.close(show_progress=False)
"""


# ----- a real kill at a random moment --------------------------------------------------------


@pytest.fixture(scope="module")
def big_source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, tuple[object, ...]]]:
    root = tmp_path_factory.mktemp("big")
    rng = random.Random(42)
    files: dict[str, bytes | str] = {
        f"part{i // 10}/blob{i:02d}.bin": rng.randbytes(4 << 20) for i in range(50)
    }
    files["small/notes.txt"] = "notes\n" * 1000
    src = write_files(root / "src", files)
    return src, tree_state(src)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_kill_then_resume(
    tmp_path: Path, big_source: tuple[Path, dict[str, tuple[object, ...]]], seed: int
) -> None:
    src, expected = big_source
    delay = random.Random(seed).uniform(0.2, 1.5)
    code = f"exec(compile({CHILD!r}, 'child', 'exec'))"
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path), str(src), "8M"],
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    id_file = tmp_path / "draft-id"
    deadline = time.monotonic() + 30
    while not id_file.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert id_file.exists(), "the child never created its draft"
    time.sleep(delay)
    child.send_signal(signal.SIGKILL)
    _out, err = child.communicate(timeout=30)
    finished = child.returncode == 0
    assert finished or child.returncode == -signal.SIGKILL, err
    vid = id_file.read_text()
    assert_store_consistent(tmp_path / "store")
    with workspace(tmp_path) as ws:
        rows = {r["id"]: r["state"] for r in Dataset.list_datasets(only_completed=False, workspace=ws)}
        assert vid in rows
        ds = Dataset.get(vid, workspace=ws)
        if ds.state == "draft":
            ds.add_files(src)
            ds.close(show_progress=False)
        m = ws.manifest(vid)
        assert len(m.chunks) >= 20  # about 200 MB in 8 MB chunks
        target = Path(ds.get_mutable_local_copy(tmp_path / "out", show_progress=False))
        assert tree_state(target) == expected
        assert ds.verify_dataset_hash(target) == []
        admin.gc(ws, grace_seconds=0)
    # Temp files of the killed writes and unrecorded chunks are gone: only the version's objects remain.
    names = sorted(p.name for p in (tmp_path / "store" / "data" / vid).iterdir())
    assert names == sorted([c.key.rsplit("/", 1)[-1] for c in m.chunks] + ["files.json.gz"])
    assert assert_store_consistent(tmp_path / "store") == 1
