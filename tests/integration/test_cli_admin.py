"""Whole datasets and housekeeping with the real ``dsmount``: delete, squash, rename, move,
set-description, gc."""

from __future__ import annotations

import os
import time
from pathlib import Path

from mountfs import Dataset, Workspace
from tests.conftest import Dsm, MakeTree


def _ids(ws: Workspace) -> set[str]:
    ws.refresh()
    return {r["id"] for r in Dataset.list_datasets(workspace=ws, only_completed=False)}


def test_delete_dependents_published_and_entire_dataset(
    dsm: Dsm, workspace: Workspace, make_tree: MakeTree
) -> None:
    v1 = dsm.json("sync", "--folder", make_tree({"a": "1"}), "--project", "p", "--name", "d")["id"]
    v2 = dsm.json("sync", "--folder", make_tree({"a": "2"}), "--parents", v1)["id"]
    v3 = dsm.json("sync", "--folder", make_tree({"a": "3"}), "--parents", v2)["id"]
    other = dsm.json("sync", "--folder", make_tree({"o": "o"}), "--project", "p", "--name", "other")["id"]

    res = dsm("delete", "--id", v1, rc=4)
    assert res.err.count("\n") == 1
    assert "parent" in res.err
    dsm("publish", "--id", v3)
    assert "published" in dsm("delete", "--project", "p", "--name", "d", rc=4).err  # the highest: v3
    assert dsm.json("delete", "--project", "p", "--name", "d", "--version", "1.0.2", "--force") == {
        "deleted": [v3]
    }
    assert "--force" in dsm("delete", "--project", "p", "--name", "d", "--entire-dataset", rc=2).err
    out = dsm("delete", "--project", "p", "--name", "d", "--entire-dataset", "--force").out
    assert sorted(line.split()[-1] for line in out.splitlines()) == sorted([v1, v2])
    assert _ids(workspace) == {other}
    assert not (dsm.home / "store" / "data" / v1).exists()
    dsm("delete", "--id", v1, rc=3)


def test_squash(dsm: Dsm, workspace: Workspace, make_tree: MakeTree) -> None:
    a = dsm.json("sync", "--folder", make_tree({"x": "a", "only_a": "a"}), "--project", "p", "--name", "a")
    dsm.json("sync", "--folder", make_tree({"x": "b", "only_b": "b"}), "--project", "q", "--name", "b")
    doc = dsm.json("squash", "--name", "flat", "--ids", a["id"], "q/b")
    assert (doc["project"], doc["name"]) == ("p", "flat")
    sq = Dataset(workspace, doc["id"])
    assert sq.parents == []
    assert sq.state == "closed"
    assert sq.list_files() == ["only_a", "only_b", "x"]
    copy = Path(dsm("get", "--id", doc["id"], "--copy", dsm.cwd / "sq").out.strip())
    assert (copy / "x").read_text() == "b", "the later version wins"
    out = dsm("squash", "--name", "flat2", "--ids", "q/b", a["id"][:6], "--project", "z").out
    assert out.startswith("squashed into z/flat2@1.0.0 id=")
    vid = out.strip().rsplit("id=", 1)[1]
    assert (Path(dsm("get", "--id", vid).out.strip()) / "x").read_text() == "a"


def test_rename_move_set_description(dsm: Dsm, workspace: Workspace, make_tree: MakeTree) -> None:
    v1 = dsm.json("sync", "--folder", make_tree({"a": "1"}), "--project", "p", "--name", "old")["id"]
    v2 = dsm.json("sync", "--folder", make_tree({"a": "2"}), "--parents", v1)["id"]
    assert "renamed 2 version(s)" in dsm("rename", "--project", "p", "--name", "old", "--new-name", "new").out
    assert "moved 2 version(s)" in dsm("move", "--project", "p", "--name", "new", "--new-project", "q/r").out
    dsm("set-description", "--id", "q/r/new@1.0.0", "--description", "the first one")
    dsm("get", "--id", v2)
    dsm("set-description", "--description", "the last used one")
    workspace.refresh()
    d1, d2 = Dataset(workspace, v1), Dataset(workspace, v2)
    assert (d1.project, d1.name, d1.description) == ("q/r", "new", "the first one")
    assert (d2.project, d2.name, d2.description) == ("q/r", "new", "the last used one")
    # No dataset p/old any more: not found, exit 3.
    res = dsm("rename", "--project", "p", "--name", "old", "--new-name", "x", rc=None)
    assert res.rc == 3
    assert res.err.startswith("dsmount: error: no dataset p/old")


def test_gc_removes_old_orphans_and_keeps_referenced_data(
    dsm: Dsm, workspace: Workspace, make_tree: MakeTree
) -> None:
    vid = dsm.json("sync", "--folder", make_tree({"a": "keep me"}), "--project", "p", "--name", "g")["id"]
    data = dsm.home / "store" / "data"
    kept = sorted(p.name for p in (data / vid).iterdir())
    orphan = data / ("f" * 32) / "chunk-0000.zip"
    orphan.parent.mkdir()
    orphan.write_bytes(b"PK" + b"\x00" * 98)
    old = time.time() - 10
    os.utime(orphan, (old, old))

    dry = dsm.json("gc", "--dry-run", "--grace", "0")
    assert dry["orphan_objects"] == [str(orphan)]
    assert dry["orphan_bytes"] == 100
    assert orphan.exists()
    assert dsm.json("gc", "--grace", "3600")["orphan_objects"] == []  # younger than the grace period
    out = dsm("gc", "--grace", "0").out
    assert f"removed {orphan}" in out
    assert "1 orphan object(s) (100 B)" in out
    assert not orphan.exists()
    assert sorted(p.name for p in (data / vid).iterdir()) == kept
    dsm("verify", "--id", vid)
