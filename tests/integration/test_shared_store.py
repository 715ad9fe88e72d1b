"""One bucket, several machines: each with its own catalogue, cache and tree indexes, sharing
only the store on an emulated S3, GCS or Azure. No server of ours is involved."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mountfs import Dataset, Workspace
from mountfs.api import claims
from mountfs.errors import UsageError
from tests.emulators import Emulator, Emulators, clear_fsspec_caches, emulator_env, wanted
from tests.integration.api_fixtures import tree_state, write_files

BACKENDS = [b for b in ("s3", "gs", "az") if b in wanted()]


@pytest.fixture(params=BACKENDS)
def bucket(request: pytest.FixtureRequest, emulators: Emulators) -> Iterator[tuple[Emulator, str]]:
    em = emulators.get(request.param)
    url = f"{em.new_bucket()}/datasets"
    with emulator_env(em):  # configured as a user would be: the cloud's own environment variables
        yield em, url
    clear_fsspec_caches()


class Machine:
    """A machine's local state (home) on the shared store."""

    def __init__(self, tmp: Path, name: str, url: str) -> None:
        self.root = tmp / name
        self.ws = Workspace(url, home=self.root / "home")

    def version(self, name: str, files: dict[str, bytes], *, version: str | None = None) -> str:
        tag = hashlib.sha1(repr(sorted(files)).encode()).hexdigest()[:8]
        src = write_files(self.root / f"src-{tag}", files)
        ds = Dataset.create(name, "shared", dataset_version=version, workspace=self.ws)
        ds.add_files(src)
        ds.close(show_progress=False)
        return ds.id

    def close(self) -> None:
        self.ws.close()


@pytest.fixture
def machines(tmp_path: Path, bucket: tuple[Emulator, str]) -> Iterator[tuple[Machine, Machine]]:
    a, b = Machine(tmp_path, "a", bucket[1]), Machine(tmp_path, "b", bucket[1])
    yield a, b
    a.close()
    b.close()


def test_each_machine_reads_the_others_versions(machines: tuple[Machine, Machine], tmp_path: Path) -> None:
    a, b = machines
    files = {"x/one.bin": b"1" * 70_000, "two.txt": b"two\n" * 999, "empty": b""}
    vid = a.version("d", files)
    b.ws.refresh()
    got = Dataset.get(vid, workspace=b.ws)
    assert got.version == "1.0.0"
    out = Path(got.get_mutable_local_copy(tmp_path / "copy-b", show_progress=False))
    assert {p: out.joinpath(p).read_bytes() for p in files} == files
    # b builds on a's version; a sees b's child and reads it.
    child = Dataset.create("d", "shared", parent_datasets=[vid], workspace=b.ws)
    child.add_files(write_files(tmp_path / "more", {"x/three.bin": b"3" * 5000}))
    child.close(show_progress=False)
    a.ws.refresh()
    seen = Dataset.get(child.id, workspace=a.ws)
    assert seen.version == "1.0.1"
    assert seen.parents == [vid]
    copy = Path(seen.get_mutable_local_copy(tmp_path / "copy-a", show_progress=False))
    assert tree_state(copy, mtimes=False).keys() == {"x/one.bin", "two.txt", "empty", "x/three.bin"}


def test_deleted_versions_vanish_from_the_other_catalogue(machines: tuple[Machine, Machine]) -> None:
    a, b = machines
    vid = a.version("gone", {"f": b"data"})
    b.ws.refresh()
    assert [r["id"] for r in Dataset.list_datasets(workspace=b.ws)] == [vid]
    Dataset.delete(vid, workspace=a.ws)
    b.ws.refresh()
    assert Dataset.list_datasets(workspace=b.ws) == []


def test_concurrent_versions_all_survive_with_distinct_numbers(machines: tuple[Machine, Machine]) -> None:
    a, b = machines
    ids: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(2)

    def work(m: Machine, tag: str) -> None:
        try:
            start.wait()
            for i in range(3):
                vid = m.version("race", {f"{tag}/{i}.txt": f"{tag}{i}".encode() * 100})
                with lock:
                    ids.append(vid)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(m, t)) for m, t in ((a, "a"), (b, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for m in (a, b):
        m.ws.refresh()
        rows = Dataset.list_datasets(partial_name="race", workspace=m.ws)
        assert sorted(r["id"] for r in rows) == sorted(ids)
        versions = [r["version"] for r in rows]
        assert len(set(versions)) == 6, versions
        assert sorted(versions) == [f"1.0.{i}" for i in range(6)]
    # every number is claimed by exactly the version that carries it
    for row in Dataset.list_datasets(partial_name="race", workspace=a.ws):
        assert claims.owner(a.ws, "shared", "race", row["version"]) == row["id"]


def test_explicit_version_taken_elsewhere_fails_keeping_the_draft(machines: tuple[Machine, Machine]) -> None:
    a, b = machines
    late = Dataset.create("pinned", "shared", dataset_version="2.0.0", workspace=b.ws)
    late.add_files(write_files(b.root / "late", {"f": b"late"}))
    a.version("pinned", {"f": b"early"}, version="2.0.0")
    with pytest.raises(UsageError, match=r"version 2\.0\.0 was taken"):
        late.close(show_progress=False)
    assert b.ws.catalogue.draft(late.id) is not None  # nothing lost: the draft waits for a new number


def test_deleting_a_version_frees_its_number(machines: tuple[Machine, Machine]) -> None:
    a, _b = machines
    vid = a.version("again", {"f": b"1"}, version="3.0.0")
    assert claims.owner(a.ws, "shared", "again", "3.0.0") == vid
    Dataset.delete(vid, workspace=a.ws)
    assert claims.owner(a.ws, "shared", "again", "3.0.0") is None
    assert a.version("again", {"f": b"2"}, version="3.0.0") != vid
