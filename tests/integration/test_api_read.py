"""Reading versions through the Python API: copies, listings, diffs, verification, lookups."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest

from mountfs import Dataset, Workspace
from mountfs.errors import (
    DatasetNotFoundError,
    NotClosedError,
    UsageError,
)
from tests.integration.api_fixtures import (
    cache_objects_ok,
    tree_state,
    workspace,
    write_files,
)


@dataclass
class History:
    """v1 <- v2 <- v3 of proj/ds, plus the source folder of each."""

    ws: Workspace
    src1: Path
    src3: Path
    v1: Dataset
    v2: Dataset
    v3: Dataset


@pytest.fixture
def history(ws: Workspace, tmp_path: Path) -> History:
    src1 = write_files(
        tmp_path / "src1",
        {
            "readme.txt": "hello\n" * 50,
            "run.sh": "#!/bin/sh\necho hi\n",
            "data/a.csv": "1,2\n" * 300,
            "data/b.csv": "3,4\n",
            "data/raw/blob.bin": os.urandom(20000),
            "docs/guide.txt": "guide",
            "docs/secret.txt": "secret",
        },
    )
    os.chmod(src1 / "run.sh", 0o755)
    os.chmod(src1 / "docs" / "secret.txt", 0o600)
    os.utime(src1 / "readme.txt", ns=(1_500_000_000_123_456_789, 1_500_000_000_123_456_789))
    os.symlink("data/a.csv", src1 / "latest.csv")
    v1 = Dataset.create("ds", "proj", dataset_tags=["raw"], chunk_size=8000, workspace=ws)
    v1.add_files(src1)
    v1.close()

    v2 = Dataset.create("ds", "proj", parent_datasets=[v1], dataset_tags=["clean"], workspace=ws)
    v2.remove_files("docs/secret.txt")
    v2.add_files(
        write_files(tmp_path / "add2", {"b.csv": "changed\n", "c.csv": "5,6\n"}), dataset_path="data"
    )
    v2.close()

    src3 = tmp_path / "src3"
    v3 = Dataset.create("ds", "proj", parent_datasets=[v2], dataset_tags=["clean", "final"], workspace=ws)
    v3.add_files(write_files(src3, {"extra/new.txt": "new"}))
    v3.remove_files("docs")
    v3.close()
    return History(ws, src1, src3, v1, v2, v3)


# ----- local copies --------------------------------------------------------------------------


def test_mutable_copy_byte_for_byte(history: History, tmp_path: Path) -> None:
    out = Path(history.v1.get_mutable_local_copy(tmp_path / "out"))
    assert tree_state(out) == tree_state(history.src1)  # bytes, modes, mtimes, symlinks
    assert stat.S_IMODE(os.stat(out / "run.sh").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(out / "docs" / "secret.txt").st_mode) == 0o600
    assert os.stat(out / "readme.txt").st_mtime_ns == 1_500_000_000_123_456_789
    assert os.readlink(out / "latest.csv") == "data/a.csv"
    (out / "readme.txt").write_text("mine now")  # writable, and not shared with the cache
    assert (Path(history.v1.get_local_copy()) / "readme.txt").read_text() == "hello\n" * 50
    assert cache_objects_ok(history.ws.settings.cache_dir) > 0

    # Overwrite semantics: a non-empty target needs overwrite=True, which replaces it whole.
    with pytest.raises(UsageError, match="not empty"):
        history.v3.get_mutable_local_copy(out)
    (out / "stale.txt").write_text("stale")
    history.v3.get_mutable_local_copy(out, overwrite=True)
    assert sorted(tree_state(out)) == history.v3.list_files()
    assert (out / "readme.txt").read_text() == "hello\n" * 50
    empty = tmp_path / "empty"
    empty.mkdir()
    history.v2.get_mutable_local_copy(empty)  # an empty folder is fine without overwrite
    assert sorted(tree_state(empty)) == history.v2.list_files()
    with pytest.raises(UsageError):
        history.v2.get_mutable_local_copy(out / "readme.txt")


def test_mutable_copy_as_hard_links(history: History, tmp_path: Path) -> None:
    out = Path(history.v3.get_mutable_local_copy(tmp_path / "out", link=True))
    assert (out / "extra" / "new.txt").read_text() == "new"
    assert os.stat(out / "data" / "a.csv").st_nlink >= 2  # shares the cache object


def test_local_copy_read_only_and_reused(history: History, tmp_path: Path) -> None:
    path = Path(history.v2.get_local_copy())
    assert path.is_relative_to(history.ws.settings.home)
    assert sorted(tree_state(path, mtimes=False)) == history.v2.list_files()
    assert (path / "data" / "b.csv").read_text() == "changed\n"
    for name in ("readme.txt", "data/raw/blob.bin", "run.sh"):
        mode = os.stat(path / name).st_mode
        assert mode & 0o222 == 0, f"{name} is writable"
    assert os.stat(path / "run.sh").st_mode & 0o111  # still executable
    assert os.readlink(path / "latest.csv") == "data/a.csv"
    inode = os.stat(path / "readme.txt").st_ino
    # The second call reuses the copy: it no longer needs the store at all.
    store = Path(history.ws.manifest(history.v1.id).data_url)
    moved = store.with_name("moved-away")
    store.rename(moved)
    try:
        assert Path(history.v2.get_local_copy()) == path
        assert os.stat(path / "readme.txt").st_ino == inode
    finally:
        moved.rename(store)
    # A draft has no local copy.
    with pytest.raises(NotClosedError):
        Dataset.create("ds", "proj", workspace=history.ws).get_local_copy()


def test_partial_copies(history: History) -> None:
    only = Path(history.v3.get_local_copy(files=["data"]))
    assert sorted(tree_state(only)) == ["data/a.csv", "data/b.csv", "data/c.csv", "data/raw/blob.bin"]
    assert only != Path(history.v3.get_local_copy())
    one = Path(history.v3.get_local_copy(files=["*.txt"]))
    assert sorted(tree_state(one)) == ["extra/new.txt", "readme.txt"]

    parts = []
    for part in range(3):
        p = Path(history.v3.get_local_copy(part=part, num_parts=3))
        parts.append(set(tree_state(p)))
    assert set().union(*parts) == set(history.v3.list_files())
    assert sum(len(p) for p in parts) == len(history.v3.list_files())  # disjoint
    with pytest.raises(UsageError):
        history.v3.get_local_copy(part=3, num_parts=3)
    with pytest.raises(UsageError):
        history.v3.get_local_copy(part=0)


# ----- listing and diffs ---------------------------------------------------------------------


def test_list_files_filters(history: History) -> None:
    v3 = history.v3
    assert v3.list_files() == [
        "data/a.csv",
        "data/b.csv",
        "data/c.csv",
        "data/raw/blob.bin",
        "extra/new.txt",
        "latest.csv",
        "readme.txt",
        "run.sh",
    ]
    assert v3.list_files("*.csv") == ["data/a.csv", "data/b.csv", "data/c.csv", "latest.csv"]
    assert v3.list_files("*.csv", recursive=False) == ["latest.csv"]
    assert v3.list_files("data/*.csv", recursive=False) == ["data/a.csv", "data/b.csv", "data/c.csv"]
    assert v3.list_files("data") == ["data/a.csv", "data/b.csv", "data/c.csv", "data/raw/blob.bin"]
    assert v3.list_files("data", recursive=False) == ["data/a.csv", "data/b.csv", "data/c.csv"]
    assert v3.list_files(recursive=False) == ["latest.csv", "readme.txt", "run.sh"]
    assert v3.list_files(dataset_id=history.v2.id) == ["data/b.csv", "data/c.csv"]
    assert v3.list_files(dataset_id=history.v3.id) == ["extra/new.txt"]
    assert v3.list_files("data", dataset_id=history.v1.id) == ["data/a.csv", "data/raw/blob.bin"]
    assert v3.list_files("nothing") == []


def test_added_modified_removed(history: History) -> None:
    v1, v2, v3 = history.v1, history.v2, history.v3
    assert v2.list_added_files() == ["data/c.csv"]
    assert v2.list_modified_files() == ["data/b.csv"]
    assert v2.list_removed_files() == ["docs/secret.txt"]
    assert v3.list_added_files() == ["extra/new.txt"]
    assert v3.list_modified_files() == []
    assert v3.list_removed_files() == ["docs/guide.txt"]
    # Against a given version.
    assert v3.list_added_files(v1.id) == ["data/c.csv", "extra/new.txt"]
    assert v3.list_modified_files(v1.id) == ["data/b.csv"]
    assert v3.list_removed_files(v1.id) == ["docs/guide.txt", "docs/secret.txt"]
    assert v1.list_added_files(v3.id) == ["docs/guide.txt", "docs/secret.txt"]
    assert v1.list_added_files() == sorted(tree_state(history.src1))  # no parents: everything is new

    diff = v3.compare(v1)
    assert [e.path for e in diff.added] == ["data/c.csv", "extra/new.txt"]
    assert [(old.path, new.path) for old, new in diff.modified] == [("data/b.csv", "data/b.csv")]
    assert [e.path for e in diff.removed] == ["docs/guide.txt", "docs/secret.txt"]
    assert v3.compare(v3.id).added == []


def test_verify_dataset_hash(history: History, tmp_path: Path) -> None:
    v3 = history.v3
    assert v3.verify_dataset_hash() == []  # the cached copy
    out = Path(v3.get_mutable_local_copy(tmp_path / "out"))
    assert v3.verify_dataset_hash(out) == []
    blob = out / "data" / "raw" / "blob.bin"
    raw = bytearray(blob.read_bytes())
    raw[100] ^= 0xFF
    blob.write_bytes(bytes(raw))
    assert v3.verify_dataset_hash(out) == ["data/raw/blob.bin"]
    assert v3.verify_dataset_hash(out, skip_hash=True) == []  # same size
    (out / "readme.txt").write_text("short")
    (out / "extra" / "new.txt").unlink()
    os.unlink(out / "latest.csv")
    os.symlink("elsewhere", out / "latest.csv")
    assert v3.verify_dataset_hash(out, skip_hash=True) == ["extra/new.txt", "latest.csv", "readme.txt"]
    assert v3.verify_dataset_hash(out) == ["data/raw/blob.bin", "extra/new.txt", "latest.csv", "readme.txt"]
    with pytest.raises(UsageError):
        v3.verify_dataset_hash(tmp_path / "missing")


def test_entries_graph_chunks_summary(history: History) -> None:
    v1, v2, v3 = history.v1, history.v2, history.v3
    entries = v3.file_entries_dict
    assert entries["data/b.csv"].origin == v2.id
    assert entries["data/a.csv"].origin == v1.id
    assert entries["latest.csv"].kind == "symlink"
    assert entries["data/a.csv"].size == len("1,2\n" * 300)
    assert v3.link_entries == []
    assert v3.get_dependency_graph() == {v3.id: [v2.id], v2.id: [v1.id], v1.id: []}
    m1, m2, m3 = (history.ws.manifest(v.id) for v in (v1, v2, v3))
    assert len(m1.chunks) >= 2  # chunk_size 8000 with a 20 kB blob
    assert v1.get_num_chunks() == len(m1.chunks)
    assert v3.get_num_chunks(include_parents=False) == len(m3.chunks) == 1
    assert v3.get_num_chunks() == len(m1.chunks) + len(m2.chunks) + len(m3.chunks)
    s = v3.summary()
    assert (s["id"], s["state"], s["version"], list(s["parents"])) == (v3.id, "closed", "1.0.2", [v2.id])
    assert s["stats"]["files"] == 8
    assert (s["stats"]["added"], s["stats"]["removed"]) == (1, 1)
    assert s["lineage"] == v3.get_dependency_graph()
    assert [op["op"] for op in s["oplog"]][:3] == ["create", "add_files", "remove_files"]
    draft = Dataset.create("ds", "proj", parent_datasets=[v3], workspace=history.ws)
    draft.remove_files("run.sh")
    d = draft.summary()
    assert (d["state"], d["stats"]["removed"], d["stats"]["files"]) == ("draft", 1, 7)
    assert draft.get_dependency_graph()[draft.id] == [v3.id]
    assert draft.get_num_chunks() == v3.get_num_chunks()


# ----- finding versions ----------------------------------------------------------------------


def test_get_by_reference(history: History) -> None:
    ws, v1, v2, v3 = history.ws, history.v1, history.v2, history.v3
    assert Dataset.get(v2.id, workspace=ws).id == v2.id
    assert Dataset.get(v2.id[:10], workspace=ws).id == v2.id
    assert Dataset.get("proj/ds", workspace=ws).id == v3.id
    assert Dataset.get("proj/ds@1.0.0", workspace=ws).id == v1.id
    assert Dataset.get(dataset_project="proj", dataset_name="ds", workspace=ws).id == v3.id
    assert (
        Dataset.get(dataset_project="proj", dataset_name="ds", dataset_version="1.0.1", workspace=ws).id
        == v2.id
    )
    assert Dataset.get(dataset_project="proj", dataset_tags=["raw"], workspace=ws).id == v1.id
    assert Dataset.get(dataset_name="ds", dataset_tags=["clean"], workspace=ws).id == v3.id
    with pytest.raises(DatasetNotFoundError):
        Dataset.get(dataset_project="proj", dataset_name="ds", only_published=True, workspace=ws)
    v2.publish()
    assert (
        Dataset.get(dataset_project="proj", dataset_name="ds", only_published=True, workspace=ws).id == v2.id
    )
    with pytest.raises(DatasetNotFoundError):
        Dataset.get("0" * 32, workspace=ws)
    with pytest.raises(DatasetNotFoundError):
        Dataset.get(dataset_project="nope", dataset_name="ds", workspace=ws)
    with pytest.raises(UsageError):
        Dataset.get(workspace=ws)
    draft = Dataset.create("ds", "proj", workspace=ws)
    # A draft is the newest match unless only completed versions are asked for.
    assert Dataset.get(dataset_project="proj", dataset_name="ds", workspace=ws).id == draft.id
    assert (
        Dataset.get(dataset_project="proj", dataset_name="ds", only_completed=True, workspace=ws).id == v3.id
    )
    with pytest.raises(UsageError):
        Dataset.get("abc", workspace=ws)  # shorter than an id prefix may be

    copy = Dataset.get(v3.id, writable_copy=True, workspace=ws)
    assert copy.state == "draft"
    assert copy.parents == [v3.id]
    assert (copy.project, copy.name) == ("proj", "ds")
    assert copy.list_files() == v3.list_files()
    auto = Dataset.get(dataset_project="p2", dataset_name="fresh", auto_create=True, workspace=ws)
    assert (auto.state, auto.project, auto.name) == ("draft", "p2", "fresh")


def test_list_datasets_filters(history: History, tmp_path: Path) -> None:
    ws = history.ws
    other = Dataset.create("images", "proj/sub", dataset_tags=["raw"], workspace=ws)
    other.add_files(write_files(tmp_path / "img", {"i.png": "png"}))
    other.close()
    Dataset.create("pending", "proj", workspace=ws)

    def names(rows: list[dict[str, object]]) -> list[tuple[object, object]]:
        return [(r["name"], r["version"]) for r in rows]

    every = Dataset.list_datasets(workspace=ws)
    assert names(every) == [("ds", "1.0.0"), ("ds", "1.0.1"), ("ds", "1.0.2"), ("images", "1.0.0")]
    assert {r["id"] for r in every} >= {history.v1.id, history.v3.id}
    row = next(r for r in every if r["id"] == history.v3.id)
    assert (row["files"], row["state"], row["parents"]) == (8, "closed", [history.v2.id])
    assert names(Dataset.list_datasets(dataset_project="proj/sub", workspace=ws)) == [("images", "1.0.0")]
    assert len(Dataset.list_datasets(dataset_project="proj", workspace=ws)) == 4
    assert (
        len(Dataset.list_datasets(dataset_project="proj", recursive_project_search=False, workspace=ws)) == 3
    )
    assert names(Dataset.list_datasets(partial_name="IMA", workspace=ws)) == [("images", "1.0.0")]
    assert names(Dataset.list_datasets(tags=["raw"], workspace=ws)) == [("ds", "1.0.0"), ("images", "1.0.0")]
    assert names(Dataset.list_datasets(tags=["clean", "-final"], workspace=ws)) == [("ds", "1.0.1")]
    assert names(Dataset.list_datasets(ids=[history.v2.id[:12]], workspace=ws)) == [("ds", "1.0.1")]
    with_drafts = Dataset.list_datasets(only_completed=False, workspace=ws)
    assert ("pending", "1.0.0") in names(with_drafts)
    assert next(r for r in with_drafts if r["name"] == "pending")["state"] == "draft"


# ----- two machines, one store ---------------------------------------------------------------


def test_two_workspaces_share_a_store(history: History, tmp_path: Path) -> None:
    with workspace(tmp_path, home="machine-b") as other:
        listed = Dataset.list_datasets(workspace=other)
        assert [r["id"] for r in listed] == [history.v1.id, history.v2.id, history.v3.id]
        remote = Dataset.get("proj/ds", workspace=other)
        assert remote.id == history.v3.id
        out = Path(remote.get_mutable_local_copy(tmp_path / "b-out"))
        mine = Path(history.v3.get_mutable_local_copy(tmp_path / "a-out"))
        assert tree_state(out) == tree_state(mine)
        assert remote.verify_dataset_hash(out) == []

        # A version made on machine B shows up on machine A.
        new = Dataset.create("ds", "proj", parent_datasets=[remote], workspace=other)
        assert new.version == "1.0.3"
        new.add_files(write_files(tmp_path / "b-src", {"from-b.txt": "b"}))
        new.close()
        seen = Dataset.get("proj/ds", workspace=history.ws)
        assert seen.id == new.id
        assert "from-b.txt" in seen.list_files()
        assert (Path(seen.get_local_copy()) / "from-b.txt").read_text() == "b"
        # Drafts stay on their machine.
        draft_b = Dataset.create("ds", "proj", workspace=other)
        with pytest.raises(DatasetNotFoundError):
            Dataset.get(draft_b.id, workspace=history.ws)
        Dataset.delete(draft_b.id, workspace=other)

        # A deletion on A is noticed on B, even by a lookup by id with no listing in between.
        Dataset.delete(new.id, workspace=history.ws)
        with pytest.raises(DatasetNotFoundError):
            Dataset.get(new.id, workspace=other)
        assert [r["id"] for r in Dataset.list_datasets(workspace=other)] == [
            history.v1.id,
            history.v2.id,
            history.v3.id,
        ]
        with pytest.raises(DatasetNotFoundError):
            Dataset.get(new.id, workspace=other)
        assert Dataset.get("proj/ds", workspace=other).id == history.v3.id
        # A rename on B is noticed on A.
        assert Dataset.rename("renamed", "proj", "ds", workspace=other) == 3
        assert Dataset.get("proj/renamed", workspace=history.ws).id == history.v3.id
