"""Reading versions with the real ``dsmount``: get, list, verify, search, show, compare, references.

One module-wide store is built once (two versions of r/data and a diamond r/dia); each
test reads it into its own folders, so the tests stay independent and the suite fast.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mountfs import Dataset, Workspace
from tests.conftest import Dsm, write_tree
from tests.integration.api_fixtures import tree_state

MTIME_NS = 1_600_000_000_123_456_789


@dataclass
class Built:
    dsm: Dsm
    ws: Workspace
    src: Path
    """The folder v1 was made from: what a --copy of v1 must equal."""
    v1: str
    v2: str
    dia: dict[str, str]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    root = tmp_path_factory.mktemp("read")
    dsm = Dsm(root / "home", root)
    rng = random.Random(7)
    src = write_tree(
        root / "v1",
        {
            "a.txt": "alpha\n" * 100,
            "bin/rand.bin": rng.randbytes(150_000),
            "bin/more.bin": rng.randbytes(150_000),
            "bin/tool.sh": "#!/bin/sh\necho hi\n",
            "docs/readme.md": "# readme\n",
            "docs/deep/x.txt": "x\n",
            "empty": "",
        },
    )
    (src / "bin" / "tool.sh").chmod(0o755)
    (src / "docs" / "readme.md").chmod(0o600)
    os.symlink("a.txt", src / "link")
    for p in src.rglob("*"):
        if p.is_file() and not p.is_symlink():
            os.utime(p, ns=(MTIME_NS, MTIME_NS))
    v1 = dsm.json("sync", "--folder", src, "--project", "r", "--name", "data", "--chunk-size", "100K")["id"]
    v2_src = root / "v2"
    shutil.copytree(src, v2_src, symlinks=True)
    (v2_src / "docs" / "readme.md").write_text("# readme, second edition\n")
    (v2_src / "new.txt").write_text("new\n")
    shutil.rmtree(v2_src / "docs" / "deep")
    v2 = dsm.json("sync", "--folder", v2_src, "--parents", v1)["id"]

    dia: dict[str, str] = {}
    for name, parents in (("A", []), ("B", ["A"]), ("C", ["A"]), ("D", ["B", "C"])):
        folder = write_tree(root / f"dia{name}", {f"{name}.txt": name})
        where = ["--parents", *(dia[p] for p in parents)] if parents else ["--project", "r", "--name", "dia"]
        dia[name] = dsm.json("sync", "--folder", folder, *where)["id"]
    ws = Workspace(str(root / "home" / "store"), home=root / "home")
    try:
        yield Built(dsm, ws, src, v1, v2, dia)
    finally:
        ws.close()


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() or p.is_symlink())


def test_get_default_copy_link_and_overwrite(built: Built, tmp_path: Path) -> None:
    dsm = built.dsm
    cached = Path(dsm("get", "--id", "r/data@1.0.0").out.strip())
    assert cached.is_dir()
    assert _files(cached) == _files(built.src)
    for p in cached.rglob("*"):
        if p.is_file() and not p.is_symlink():
            assert stat.S_IMODE(p.stat().st_mode) & 0o222 == 0, f"{p} is writable"
    assert tree_state(cached, mtimes=False).keys() == tree_state(built.src).keys()

    # --copy: the source tree byte for byte, with modes, mtimes and the symlink.
    copy = tmp_path / "copy"
    assert dsm.json("get", "--id", built.v1, "--copy", copy) == {"id": built.v1, "path": str(copy)}
    assert tree_state(copy) == tree_state(built.src)
    assert os.readlink(copy / "link") == "a.txt"

    # --link: hard links into the content cache (shared inode), not copies.
    linked = Path(dsm("get", "--id", built.v1, "--link", tmp_path / "linked").out.strip())
    entry = Dataset(built.ws, built.v1).file_entries_dict["a.txt"]
    st = (linked / "a.txt").stat()
    assert st.st_nlink >= 2
    assert st.st_ino == built.ws.cache.path_for(entry.sha256).stat().st_ino
    assert (linked / "bin" / "rand.bin").read_bytes() == (built.src / "bin" / "rand.bin").read_bytes()

    # A non-empty target needs --overwrite, which replaces its contents.
    res = dsm("get", "--id", built.v1, "--copy", copy, rc=2)
    assert "--overwrite" in res.err
    (copy / "stray.txt").write_text("not from the dataset")
    dsm("get", "--id", built.v1, "--copy", copy, "--overwrite")
    assert tree_state(copy) == tree_state(built.src)


def test_partial_get_by_files_and_parts(built: Built, tmp_path: Path) -> None:
    dsm = built.dsm
    docs = Path(
        dsm("get", "--id", built.v1, "--files", "docs", "*.sh", "--copy", tmp_path / "docs").out.strip()
    )
    assert _files(docs) == ["bin/tool.sh", "docs/deep/x.txt", "docs/readme.md"]
    cached = Path(dsm("get", "--id", built.v1, "--files", "a.txt").out.strip())
    assert _files(cached) == ["a.txt"]

    parts = []
    for n in range(3):
        out = dsm("get", "--id", built.v1, "--part", n, "--num-parts", 3, "--copy", tmp_path / f"p{n}").out
        parts.append(_files(Path(out.strip())))
    union = [p for part in parts for p in part]
    assert sorted(union) == _files(built.src), "every file in exactly one part"
    assert sum(1 for part in parts if part) >= 2
    dsm("get", "--id", built.v1, "--part", 1, rc=2)


def test_list_filter_modified_json(built: Built) -> None:
    dsm = built.dsm
    out = dsm("list", "--project", "r", "--name", "data", "--version", "1.0.0").out
    lines = out.splitlines()
    assert lines[0].split() == ["path", "size", "sha256"]
    assert any(line.startswith("bin/rand.bin") and "146.5 KiB" in line for line in lines)
    assert lines[-1].startswith("total 8 files")

    rows = dsm.json("list", "--id", built.v2, "--filter", "docs/*", "*.sh")
    assert [r["path"] for r in rows] == ["bin/tool.sh", "docs/readme.md"]
    tool = rows[0]
    assert set(tool) == {"path", "kind", "size", "sha256", "mode", "mtime_ns", "origin", "target"}
    assert (tool["kind"], tool["size"], tool["mode"] & 0o777, tool["origin"]) == ("file", 18, 0o755, built.v1)
    assert tool["mtime_ns"] == MTIME_NS

    modified = dsm.json("list", "--id", built.v2, "--modified")
    assert [r["path"] for r in modified] == ["docs/readme.md", "new.txt"]
    assert all(r["origin"] == built.v2 for r in modified)
    assert [r["path"] for r in dsm.json("list", "--project", "r", "--name", "data")] == Dataset(
        built.ws, built.v2
    ).list_files()


def test_verify_ok_tampered_and_filesize(built: Built, tmp_path: Path) -> None:
    dsm = built.dsm
    copy = tmp_path / "copy"
    dsm("get", "--id", built.v2, "--copy", copy)
    assert "all files match" in dsm("verify", "--id", built.v2, "--folder", copy).out
    dsm("verify", "--id", built.v2)  # the cached copy, fetched first

    (copy / "a.txt").write_text("ALPHA\n" * 100)  # same size, other bytes
    res = dsm("verify", "--id", built.v2, "--folder", copy, rc=1)
    assert res.out.split() == ["a.txt"]
    assert len(res.err.strip().splitlines()) == 1
    assert "1 file" in res.err
    assert dsm.json("verify", "--id", built.v2, "--folder", copy, "--filesize") == {
        "id": built.v2,
        "ok": True,
        "mismatches": [],
    }
    (copy / "new.txt").write_text("longer than before\n")
    res = dsm("verify", "--id", built.v2, "--folder", copy, "--filesize", rc=1)
    assert res.out.split() == ["new.txt"]


def test_search(built: Built, tmp_path: Path) -> None:
    dsm = built.dsm
    folder = write_tree(tmp_path / "s", {"s.txt": "s"})
    sub = dsm.json("sync", "--folder", folder, "--project", "r/sub", "--name", "nested", "--tags", "gold")[
        "id"
    ]
    draft = dsm.new_id("--project", "r", "--name", "pending", "--tags", "gold")

    everything = dsm.json("search", "--project", "r")
    assert {r["id"] for r in everything} == {built.v1, built.v2, sub, *built.dia.values()}
    assert set(everything[0]) >= {
        "id",
        "project",
        "name",
        "version",
        "tags",
        "state",
        "files",
        "bytes",
        "created",
    }
    top = dsm.json("search", "--project", "r", "--non-recursive-project-search")
    assert sub not in {r["id"] for r in top}
    assert {r["id"] for r in dsm.json("search", "--tags", "gold")} == {sub}
    assert {r["id"] for r in dsm.json("search", "--tags", "gold", "--not-only-completed")} == {sub, draft}
    assert [r["version"] for r in dsm.json("search", "--name", "dat")] == ["1.0.0", "1.0.1"]
    assert [r["id"] for r in dsm.json("search", "--ids", built.v1[:10], "r/dia@1.0.1")] == [
        built.v1,
        built.dia["B"],
    ]
    table = dsm("search", "--name", "data").out.splitlines()
    assert table[0].split() == [
        "project",
        "name",
        "version",
        "tags",
        "state",
        "files",
        "size",
        "created",
        "id",
    ]
    assert built.v2 in table[2]


def test_show_text_and_json_of_a_diamond(built: Built) -> None:
    dsm = built.dsm
    d = built.dia
    doc = dsm.json("show", d["D"][:8])
    assert doc == json.loads(json.dumps(Dataset(built.ws, d["D"]).summary()))
    assert doc["lineage"] == {d["D"]: [d["B"], d["C"]], d["B"]: [d["A"]], d["C"]: [d["A"]], d["A"]: []}

    text = dsm("show", "--id", "r/dia").out
    assert f"r/dia@1.0.3  {d['D']}  [closed]" in text
    lineage = text.split("lineage:\n", 1)[1].split("log:", 1)[0].splitlines()
    assert lineage[0] == f"  {d['D'][:12]} r/dia@1.0.3"
    assert lineage[1] == f"    {d['B'][:12]} r/dia@1.0.1"
    assert lineage[2] == f"      {d['A'][:12]} r/dia@1.0.0"
    assert lineage[3] == f"    {d['C'][:12]} r/dia@1.0.2"
    assert lineage[4].startswith(f"      {d['A'][:12]} r/dia@1.0.0")
    assert "changes:  +1 (1 B)" in text
    assert "dsmount sync --folder" in text.split("log:", 1)[1]


def test_compare_counts_verbose_json(built: Built) -> None:
    dsm = built.dsm
    text = dsm("compare", "--source", built.v1, "--target", "r/data").out
    assert "added    1" in text
    assert "modified 1" in text
    assert "removed  1" in text
    assert "+ new.txt" not in text
    verbose = dsm("compare", "--source", "r/data@1.0.0", "--target", built.v2[:6], "--verbose").out
    assert {"+ new.txt", "~ docs/readme.md", "- docs/deep/x.txt"} <= set(verbose.splitlines())
    doc = dsm.json("compare", "--source", built.v1, "--target", built.v2)
    assert (doc["added"], doc["modified"], doc["removed"]) == (
        ["new.txt"],
        ["docs/readme.md"],
        ["docs/deep/x.txt"],
    )
    assert doc["added_bytes"] == 4


def test_references_and_the_last_used_default(built: Built) -> None:
    dsm = built.dsm
    dsm("get", "--id", built.v1[:5])  # a prefix; makes v1 the last used dataset
    assert [r["path"] for r in dsm.json("list")] == Dataset(built.ws, built.v1).list_files()
    assert dsm.json("show")["id"] == built.v1
    dsm("list", "--id", "r/data@1.0.1")  # a name reference makes v2 the last used
    assert dsm.json("show")["id"] == built.v2
