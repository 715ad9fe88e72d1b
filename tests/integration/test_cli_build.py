"""Building versions with the real ``dsmount``: create, add, remove, sync, upload, close, publish."""

from __future__ import annotations

import os
from pathlib import Path

from mountfs import Dataset, Workspace
from mountfs.snapshot.entries import FILE, LINK, SYMLINK
from tests.conftest import Dsm, MakeTree


def test_create_with_parents_tags_version_storage(
    dsm: Dsm, workspace: Workspace, make_tree: MakeTree, tmp_path: Path
) -> None:
    src = make_tree({"a.txt": "alpha\n", "sub/b.txt": "beta\n"})
    new = make_tree({"n.txt": "only in the child\n"})
    info = dsm.json(
        "create", "--project", "vision", "--name", "base", "--version", "2.0.0",
        "--tags", "raw", "v2", "--description", "first cut", "--chunk-size", "1",
    )  # fmt: skip
    assert {k: info[k] for k in ("project", "name", "version")} == {
        "project": "vision",
        "name": "base",
        "version": "2.0.0",
    }
    base = info["id"]
    dsm("add", "--files", src)
    dsm("close")

    # Text output names the new version; --project comes from the last parent; --storage elsewhere.
    store2 = tmp_path / "store2"
    out = dsm(
        "create", "--name", "child", "--parents", "vision/base@2.0.0", "--storage", store2, "--tags", "x"
    ).out
    assert out.startswith("dataset created: vision/child@1.0.0 id=")
    child = out.strip().rsplit("id=", 1)[1]
    dsm("add", "--files", new / "n.txt", "--dataset-folder", "copied")
    dsm("close", "--id", child[:8])

    alias = dsm.new_id("--project", "vision", "--name", "alias", "--output-uri", tmp_path / "store3")

    b, c = Dataset(workspace, base), Dataset(workspace, child)
    assert (b.version, b.tags, b.description, b.parents) == ("2.0.0", ["raw", "v2"], "first cut", [])
    assert (c.project, c.name, c.version, c.tags, c.parents) == ("vision", "child", "1.0.0", ["x"], [base])
    assert c.get_default_storage() == str(store2)
    assert any(p.name.startswith("chunk-") for p in (store2 / child).iterdir())
    assert not (tmp_path / "home" / "store" / "data" / child).exists()
    assert c.list_files() == ["a.txt", "copied/n.txt", "sub/b.txt"]
    assert Dataset(workspace, alias).get_default_storage() == str(tmp_path / "store3")
    # The API recorded the shell command of each step in the operation log.
    commands = [r.get("command", "") for r in b.summary()["oplog"]]
    assert commands[0].startswith("dsmount create --project vision --name base")
    assert any(cmd.startswith("dsmount add --files") for cmd in commands)


def test_add_files_folders_globs_wildcards_links(dsm: Dsm, workspace: Workspace, make_tree: MakeTree) -> None:
    src = make_tree(
        {
            "one.txt": "1",
            "imgs/x.jpg": "x",
            "imgs/note.txt": "n",
            "imgs/deep/y.jpg": "y",
            "tables/t1.csv": "a,b",
            "tables/t2.csv": "c,d",
            "tables/skip.tsv": "e",
        }
    )
    ext = make_tree({"ext.bin": b"\x00external", "extdir/e1.txt": "e1", "extdir/e2.txt": "e2"})
    vid = dsm.new_id("--project", "p", "--name", "adds")
    assert dsm.json("add", "--files", src / "one.txt") == {"id": vid, "files": 1, "links": 0}
    dsm("add", "--files", src / "imgs", "--dataset-folder", "all")
    dsm("add", "--files", src / "imgs", "--wildcard", "*.jpg", "--dataset-folder", "jpgs")
    dsm("add", "--files", src / "imgs", "--non-recursive", "--dataset-folder", "flat")
    dsm("add", "--files", f"{src}/tables/*.csv", "--dataset-folder", "csv")
    out = dsm("add", "--links", ext / "ext.bin", ext / "extdir", "--dataset-folder", "links").out
    assert "3 link(s)" in out

    entries = {e.path: e for e in Dataset(workspace, vid).list_entries()}
    assert sorted(entries) == [
        "all/deep/y.jpg", "all/note.txt", "all/x.jpg",
        "csv/t1.csv", "csv/t2.csv",
        "flat/note.txt", "flat/x.jpg",
        "jpgs/deep/y.jpg", "jpgs/x.jpg",
        "links/e1.txt", "links/e2.txt", "links/ext.bin",
        "one.txt",
    ]  # fmt: skip
    assert entries["links/ext.bin"].kind == LINK
    assert entries["links/ext.bin"].target.endswith("ext.bin")
    assert entries["one.txt"].kind == FILE
    # The links are fetched from where they are, like stored files.
    dsm("close", "--id", vid)
    copy = Path(dsm("get", "--id", vid, "--copy", dsm.cwd / "out").out.strip())
    assert (copy / "links" / "ext.bin").read_bytes() == b"\x00external"
    assert (copy / "links" / "e2.txt").read_text() == "e2"


def test_remove_by_wildcard_and_folder(dsm: Dsm, workspace: Workspace, make_tree: MakeTree) -> None:
    src = make_tree({"top.log": "t", "keep.txt": "k", "a/1.txt": "1", "a/2.log": "2", "b/3.log": "3"})
    dsm("sync", "--folder", src, "--project", "p", "--name", "rm")
    child = dsm.new_id("--project", "p", "--name", "rm", "--parents", "p/rm")
    assert dsm.json("remove", "--files", "*.log", "--non-recursive") == {"id": child, "removed": 1}
    assert dsm.json("remove", "--id", child, "--files", "a") == {"id": child, "removed": 2}
    dsm("remove", "--files", "*.log")
    dsm("close")
    assert Dataset(workspace, child).list_files() == ["keep.txt"]


def test_sync_create_skip_close_discard_upload_close_publish(
    dsm: Dsm, workspace: Workspace, make_tree: MakeTree
) -> None:
    src = make_tree({"a.txt": "a", "b.txt": "b", "sub/c.txt": "c"})
    first = dsm.json("sync", "--folder", src, "--project", "p", "--name", "s", "--tags", "t")
    assert (first["added"], first["removed"], first["modified"], first["state"]) == (3, 0, 0, "closed")
    assert Dataset(workspace, first["id"]).state == "closed"

    (src / "b.txt").unlink()
    (src / "a.txt").write_text("changed")
    (src / "sub" / "d.txt").write_text("d")
    second = dsm.json("sync", "--folder", src, "--parents", first["id"][:6])
    assert (second["removed"], second["added"], second["modified"]) == (1, 1, 1)
    assert Dataset(workspace, second["id"]).name == "s"
    assert Dataset(workspace, second["id"]).parents == [first["id"]]

    # A new version that would change nothing is discarded, as clearml-data does.
    workspace.refresh()
    before = {r["id"] for r in Dataset.list_datasets(workspace=workspace, only_completed=False)}
    res = dsm("sync", "--folder", src, "--parents", "p/s", "--project", "p", "--name", "s")
    assert "no changes" in res.out
    workspace.refresh()
    assert {r["id"] for r in Dataset.list_datasets(workspace=workspace, only_completed=False)} == before

    # --skip-close leaves a dirty draft: close --disable-upload refuses, upload then close works.
    (src / "e.txt").write_text("e")
    draft = dsm.json("sync", "--folder", src, "--parents", "p/s", "--skip-close")
    assert draft["state"] == "draft"
    assert draft["added"] == 1
    res = dsm("close", "--disable-upload", rc=4)
    assert res.err.startswith("dsmount: error:")
    assert "upload" in res.err
    dsm("upload", "--chunk-size", "64M", "--max-workers", "1")
    assert not Dataset(workspace, draft["id"]).is_dirty()
    closed = dsm.json("close", "--id", draft["id"], "--disable-upload")
    assert closed["stats"]["added"] == 1
    assert Dataset(workspace, draft["id"]).list_files() == ["a.txt", "e.txt", "sub/c.txt", "sub/d.txt"]

    # sync into an existing draft (--id), then publish.
    third = dsm.new_id("--project", "p", "--name", "s", "--parents", draft["id"])
    (src / "e.txt").unlink()
    res = dsm.json("sync", "--folder", src, "--id", third, "--dataset-folder", "mirror")
    assert res["id"] == third
    assert res["added"] == 3
    dsm("publish", "--id", f"p/s@{Dataset(workspace, third).version}")
    assert Dataset(workspace, third).state == "published"


def test_symlinks_and_modes_survive_add(dsm: Dsm, workspace: Workspace, make_tree: MakeTree) -> None:
    src = make_tree({"run.sh": "#!/bin/sh\n", "data.txt": "d"})
    (src / "run.sh").chmod(0o755)
    os.symlink("data.txt", src / "alias")
    dsm("sync", "--folder", src, "--project", "p", "--name", "modes")
    ds = Dataset.get(dataset_id="p/modes", workspace=workspace)
    entries = ds.file_entries_dict
    assert entries["alias"].kind == SYMLINK
    assert entries["alias"].target == "data.txt"
    assert entries["run.sh"].mode & 0o777 == 0o755
