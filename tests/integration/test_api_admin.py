"""Administering versions through the Python API: publish, delete, rename, describe, squash, gc."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from mountfs import Dataset, Workspace
from mountfs.api import admin
from mountfs.errors import (
    DatasetNotFoundError,
    DependentsError,
    NotClosedError,
    PublishedError,
    UsageError,
)
from mountfs.storage.store import Store
from tests.integration.api_fixtures import (
    assert_store_consistent,
    registry_docs,
    tree_state,
    workspace,
    write_files,
)


def build(ws: Workspace, files: dict[str, str | bytes], root: Path, **kw: object) -> Dataset:
    ds = Dataset.create(workspace=ws, **kw)  # type: ignore[arg-type]
    ds.add_files(write_files(root, files))
    ds.close()
    return ds


def test_publish(ws: Workspace, tmp_path: Path) -> None:
    draft = Dataset.create("ds", "proj", workspace=ws)
    with pytest.raises(NotClosedError):
        draft.publish()
    assert draft.publish(raise_on_error=False) is False
    draft.close()
    assert draft.publish() is True
    assert draft.state == "published"
    assert draft.is_final()
    assert draft.publish() is True  # idempotent
    doc = registry_docs(tmp_path / "store")[draft.id]
    assert doc["state"] == "published"
    assert doc["published"]
    with workspace(tmp_path, home="other") as other:
        assert Dataset.get(draft.id, workspace=other).state == "published"


def test_delete_rules(ws: Workspace, tmp_path: Path) -> None:
    store = tmp_path / "store"
    v1 = build(ws, {"a.txt": "a"}, tmp_path / "s1", dataset_name="ds", dataset_project="proj")
    v2 = Dataset.create("ds", "proj", parent_datasets=[v1], workspace=ws)
    v2.add_files(write_files(tmp_path / "s2", {"b.txt": "b"}))
    v2.close()
    with pytest.raises(DependentsError):
        Dataset.delete(v1.id, workspace=ws)
    draft_child = Dataset.create("ds", "proj", parent_datasets=[v2], workspace=ws)
    with pytest.raises(DependentsError):  # a local draft depends on it too
        Dataset.delete(v2.id, workspace=ws)
    # A draft's delete removes the chunks it already uploaded.
    draft_child.add_files(write_files(tmp_path / "s3", {"c.bin": os.urandom(3000)}))
    draft_child.upload()
    draft_folder = Path(ws.manifest(v1.id).data_url) / draft_child.id
    assert list(draft_folder.glob("chunk-*.zip"))
    assert Dataset.delete(draft_child.id, workspace=ws) == [draft_child.id]
    assert not draft_folder.exists()
    with pytest.raises(DatasetNotFoundError):
        Dataset.get(draft_child.id, workspace=ws)

    v2.publish()
    with pytest.raises(PublishedError):
        Dataset.delete(v2.id, workspace=ws)
    assert v2.id in registry_docs(store)
    assert Dataset.delete(v2.id, force=True, workspace=ws) == [v2.id]
    assert v2.id not in registry_docs(store)
    assert not (store / "data" / v2.id).exists()
    assert Dataset.delete(dataset_project="proj", dataset_name="ds", workspace=ws) == [v1.id]
    assert registry_docs(store) == {}
    with pytest.raises(DatasetNotFoundError):
        Dataset.get(v1.id, workspace=ws)
    with pytest.raises(UsageError):
        Dataset.delete(workspace=ws)


def test_delete_entire_dataset(ws: Workspace, tmp_path: Path) -> None:
    v1 = build(ws, {"a.txt": "a"}, tmp_path / "s1", dataset_name="ds", dataset_project="proj")
    v2 = build(
        ws, {"b.txt": "b"}, tmp_path / "s2", dataset_name="ds", dataset_project="proj", parent_datasets=[v1]
    )
    v3 = build(
        ws, {"c.txt": "c"}, tmp_path / "s3", dataset_name="ds", dataset_project="proj", parent_datasets=[v2]
    )
    keep = build(ws, {"k.txt": "k"}, tmp_path / "sk", dataset_name="keep", dataset_project="proj")
    v3.publish()
    with pytest.raises(UsageError):
        Dataset.delete(dataset_project="proj", dataset_name="ds", entire_dataset=True, workspace=ws)
    deleted = Dataset.delete(
        dataset_project="proj", dataset_name="ds", entire_dataset=True, force=True, workspace=ws
    )
    assert sorted(deleted) == sorted([v1.id, v2.id, v3.id])
    assert list(registry_docs(tmp_path / "store")) == [keep.id]
    data = tmp_path / "store" / "data"
    assert sorted(p.name for p in data.iterdir()) == [keep.id]
    assert [r["id"] for r in Dataset.list_datasets(workspace=ws)] == [keep.id]


def test_delete_removes_manifest_first(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    v1 = build(ws, {"a.txt": "a" * 1000}, tmp_path / "s1", dataset_name="ds", dataset_project="proj")
    store = tmp_path / "store"

    def fail(self: Store, prefix: str) -> None:
        raise OSError("simulated crash while deleting data")

    monkeypatch.setattr(Store, "delete_prefix", fail)
    with pytest.raises(OSError, match="simulated"):
        Dataset.delete(v1.id, workspace=ws)
    monkeypatch.undo()
    # The version is gone as a whole (no manifest); its data is an orphan for gc.
    assert registry_docs(store) == {}
    assert list((store / "data" / v1.id).glob("chunk-*.zip"))
    assert_store_consistent(store)
    report = admin.gc(ws, grace_seconds=0)
    assert any(v1.id in o for o in report.orphan_objects)
    assert not (store / "data" / v1.id).exists()


def test_rename_and_move(ws: Workspace, tmp_path: Path) -> None:
    v1 = build(ws, {"a.txt": "a"}, tmp_path / "s1", dataset_name="ds", dataset_project="proj")
    v2 = build(
        ws, {"b.txt": "b"}, tmp_path / "s2", dataset_name="ds", dataset_project="proj", parent_datasets=[v1]
    )
    build(ws, {"o.txt": "o"}, tmp_path / "s3", dataset_name="other", dataset_project="proj")
    assert Dataset.rename("renamed", "proj", "ds", workspace=ws) == 2
    assert (v1.name, v2.name) == ("renamed", "renamed")
    assert Dataset.get("proj/renamed", workspace=ws).id == v2.id
    assert (
        Dataset.get(dataset_project="proj", dataset_name="renamed", dataset_version="1.0.0", workspace=ws).id
        == v1.id
    )
    with pytest.raises(DatasetNotFoundError):
        Dataset.get("proj/ds", workspace=ws)
    with pytest.raises(UsageError):
        Dataset.rename("other", "proj", "renamed", workspace=ws)  # taken
    with pytest.raises(DatasetNotFoundError):
        Dataset.rename("x", "proj", "nothing", workspace=ws)

    assert Dataset.move_to_project("archive/2024", "proj", "renamed", workspace=ws) == 2
    assert {d["project"] for d in registry_docs(tmp_path / "store").values() if d["name"] == "renamed"} == {
        "archive/2024"
    }
    assert Dataset.get("archive/2024/renamed", workspace=ws).id == v2.id
    assert v1.project == "archive/2024"
    # Content is untouched: the lineage and the files are the same.
    assert v2.get_dependency_graph() == {v2.id: [v1.id], v1.id: []}
    assert v2.list_files() == ["a.txt", "b.txt"]
    # The next version of the renamed dataset continues its numbering.
    assert Dataset.create("renamed", "archive/2024", workspace=ws).version == "1.0.2"
    with workspace(tmp_path, home="other") as other:
        assert Dataset.get("archive/2024/renamed", workspace=other).id == v2.id


def test_descriptive_fields(ws: Workspace, tmp_path: Path) -> None:
    ds = Dataset.create("ds", "proj", dataset_tags=["a"], workspace=ws)
    ds.set_description("first")
    ds.add_tags(["b", "a"])
    ds.add_tags("c")
    ds.set_metadata({"rows": 10, "cols": ["x", "y"]})
    ds.set_metadata([1, 2, 3], metadata_name="extra")
    assert ds.tags == ["a", "b", "c"]
    assert ds.get_metadata() == {"rows": 10, "cols": ["x", "y"]}
    with pytest.raises(UsageError):
        ds.set_metadata({}, metadata_name="data_x")
    with pytest.raises(UsageError):
        ds.set_metadata(object())
    ds.add_files(write_files(tmp_path / "s", {"a.txt": "a"}))
    ds.close()
    doc = registry_docs(tmp_path / "store")[ds.id]
    assert (doc["description"], doc["tags"]) == ("first", ["a", "b", "c"])
    assert doc["metadata"] == {"metadata": {"rows": 10, "cols": ["x", "y"]}, "extra": [1, 2, 3]}

    # Closed versions accept descriptive changes (the manifest is rewritten whole), not content ones.
    ds.set_description("second")
    ds.add_tags("d")
    ds.tags = ["z"]
    ds.set_metadata({"rows": 11})
    with workspace(tmp_path, home="other") as other:
        seen = Dataset.get(ds.id, workspace=other)
        assert (seen.description, seen.tags) == ("second", ["z"])
        assert seen.get_metadata() == {"rows": 11}
        assert seen.get_metadata("extra") == [1, 2, 3]
        assert seen.get_metadata("missing") is None
        assert seen.list_files() == ["a.txt"]
    doc2 = registry_docs(tmp_path / "store")[ds.id]
    assert doc2["file_table"] == doc["file_table"]
    assert doc2["chunks"] == doc["chunks"]
    assert_store_consistent(tmp_path / "store")


def test_squash_stands_alone(ws: Workspace, tmp_path: Path) -> None:
    src = write_files(tmp_path / "src", {"a.txt": "a" * 500, "d/b.bin": os.urandom(3000), "d/c.txt": "c"})
    os.chmod(src / "a.txt", 0o640)
    os.symlink("b.bin", src / "d" / "link")
    ext = write_files(tmp_path / "ext", {"e.txt": "external"})
    v1 = Dataset.create("ds", "proj", workspace=ws)
    v1.add_files(src)
    v1.add_external_files(str(ext / "e.txt"), dataset_path="ext")
    v1.close()
    v2 = Dataset.create("ds", "proj", parent_datasets=[v1], workspace=ws)
    (src / "d" / "c.txt").unlink()
    write_files(src, {"n.txt": "new", "a.txt": "A" * 500})
    v2.sync_folder(src)
    v2.close()
    other = build(
        ws, {"d/b.bin": b"from other", "o.txt": "o"}, tmp_path / "so", dataset_name="o", dataset_project="p"
    )
    expected = Path(v2.get_mutable_local_copy(tmp_path / "expected"))

    sq = Dataset.squash("flat", dataset_ids=[v2.id], workspace=ws)
    assert sq.parents == []
    assert (sq.project, sq.name, sq.state) == ("proj", "flat", "closed")
    assert sq.get_metadata("squashed_from") == [v2.id]
    assert sq.list_files() == v2.list_files()
    assert sq.link_entries_dict["ext/e.txt"].target == str(ext / "e.txt")

    merged = Dataset.squash("both", dataset_ids=[v2, other.id], dataset_project="p", workspace=ws)
    assert (Path(merged.get_local_copy()) / "d" / "b.bin").read_bytes() == b"from other"  # later wins

    # The history can go; the squashed version still gives the same bytes on a fresh machine.
    Dataset.delete(v2.id, workspace=ws)
    Dataset.delete(v1.id, workspace=ws)
    assert_store_consistent(tmp_path / "store")
    with workspace(tmp_path, home="fresh") as fresh:
        again = Dataset.get(sq.id, workspace=fresh)
        out = Path(again.get_mutable_local_copy(tmp_path / "out"))
        assert tree_state(out) == tree_state(expected)
    with pytest.raises(UsageError):
        Dataset.squash("none", workspace=ws)


def test_gc(ws: Workspace, tmp_path: Path) -> None:
    store = tmp_path / "store"
    v1 = build(
        ws,
        {"a.bin": os.urandom(2000), "b.txt": "b" * 300},
        tmp_path / "s1",
        dataset_name="ds",
        dataset_project="p",
    )
    draft = Dataset.create("ds", "p", parent_datasets=[v1], workspace=ws)
    draft.add_files(write_files(tmp_path / "s2", {"c.bin": os.urandom(2000)}))
    draft.upload()
    data = store / "data"
    orphan_chunk = data / v1.id / "chunk-0099.zip"
    orphan_chunk.write_bytes(b"PK orphan")
    orphan_folder = data / ("f" * 32)
    orphan_folder.mkdir()
    (orphan_folder / "chunk-0000.zip").write_bytes(b"PK orphan too")
    (orphan_folder / "files.json.gz").write_bytes(b"x")
    before = sorted(p for p in data.rglob("*") if p.is_file())

    # Young orphans are kept: an upload on another machine may be writing them.
    assert admin.gc(ws).orphan_objects == []
    report = admin.gc(ws, dry_run=True, grace_seconds=0)
    assert sorted(report.orphan_objects) == sorted(
        str(p) for p in (orphan_chunk, orphan_folder / "chunk-0000.zip", orphan_folder / "files.json.gz")
    )
    assert report.orphan_bytes == len(b"PK orphan") + len(b"PK orphan too") + 1
    assert sorted(p for p in data.rglob("*") if p.is_file()) == before  # dry run removes nothing

    old = time.time() - 7200
    os.utime(orphan_chunk, (old, old))
    assert [Path(o) for o in admin.gc(ws, dry_run=True).orphan_objects] == [orphan_chunk]
    report = admin.gc(ws, grace_seconds=0)
    assert len(report.orphan_objects) == 3
    assert not orphan_chunk.exists()
    assert not orphan_folder.exists()
    assert (data / v1.id).is_dir()
    # Referenced data and the draft's uploaded chunks are kept.
    assert assert_store_consistent(store) == 1
    assert list((data / draft.id).glob("chunk-*.zip"))
    draft.close()
    assert_store_consistent(store)
    with workspace(tmp_path, home="fresh") as fresh:
        out = Path(Dataset.get(draft.id, workspace=fresh).get_mutable_local_copy(tmp_path / "out"))
        assert sorted(tree_state(out)) == ["a.bin", "b.txt", "c.bin"]

    # Local state of a version deleted elsewhere is removed too.
    tree_file = ws.tree_path(v1.id)
    copy = Path(v1.get_local_copy())
    assert tree_file.exists()
    assert copy.exists()
    manifest = store / "registry" / f"{draft.id}.json"
    json.loads(manifest.read_text())  # still a valid manifest
    with workspace(tmp_path, home="fresh") as fresh:
        Dataset.delete(draft.id, workspace=fresh)
        Dataset.delete(v1.id, workspace=fresh)
    report = admin.gc(ws, grace_seconds=0)
    assert str(tree_file) in report.local_removed
    assert not tree_file.exists()
    assert not copy.exists()


def test_gc_removes_stale_temp_files(ws: Workspace, tmp_path: Path) -> None:
    v1 = build(ws, {"a.txt": "a"}, tmp_path / "s1", dataset_name="ds", dataset_project="p")
    folder = tmp_path / "store" / "data" / v1.id
    stale = folder / ".chunk-0001.zip.tmp-0123456789ab"  # what a killed upload leaves
    stale.write_bytes(b"half a chunk")
    fresh = folder / ".chunk-0002.zip.tmp-ba9876543210"
    fresh.write_bytes(b"being written")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    report = admin.gc(ws, dry_run=True)
    assert report.orphan_objects == [str(stale)]
    assert stale.exists()
    assert admin.gc(ws).orphan_objects == [str(stale)]
    assert not stale.exists()
    assert fresh.exists()  # young: an upload may be writing it
    assert_store_consistent(tmp_path / "store")


def test_gc_releases_claims_without_a_version(ws: Workspace, tmp_path: Path) -> None:
    from mountfs.api import claims

    v1 = build(ws, {"a.txt": "a"}, tmp_path / "s1", dataset_name="ds", dataset_project="p")
    draft = Dataset.create("ds", "p", parent_datasets=[v1], workspace=ws)
    # a close that crashed on another machine after claiming 7.0.0: no manifest, no local draft
    stale = claims.claim_key("p", "ds", "7.0.0")
    ws.store.write_bytes(stale, json.dumps({"id": "e" * 32, "version": "7.0.0"}).encode())
    # a claim of a local draft (its close is under way) stays, as does the closed version's
    mine = claims.claim_key("p", "ds", draft.version)
    ws.store.write_bytes(mine, json.dumps({"id": draft.id, "version": draft.version}).encode())
    assert admin.gc(ws).orphan_objects == []  # young: kept
    report = admin.gc(ws, grace_seconds=0)
    assert report.orphan_objects == [f"{ws.store.url}/{stale}"]
    assert not ws.store.exists(stale)
    assert ws.store.exists(mine)
    assert claims.owner(ws, "p", "ds", v1.version) == v1.id
