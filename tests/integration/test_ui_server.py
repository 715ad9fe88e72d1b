"""``dsmount ui``: the real server (``dsmount ui --port 0`` in a subprocess) over a home and store
built with the CLI, every endpoint checked against what the CLI prints with --json.

The DAG (project ``proj``, dataset ``data``):

    A ── B   modifies mod.txt, removes the folder old/ (2 files), renames mv/src.bin -> mv/dst.bin, adds b.txt
    └─── C   adds c.txt
         D   parents B, C: adds d.txt, modifies a.txt

plus ``proj/big`` (one folder of 10,000 files) and ``scratch/*`` versions that the action tests
publish, describe, tag and delete.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from mountfs.daemon import mountpoint

from tests.conftest import DSMOUNT, Dsm, write_tree
from tests.integration.mount_fixtures import new_mountpoint, wait_for

__all__ = ["new_mountpoint"]  # the fixture, imported so pytest finds it here

BIG = 10_000


@dataclass
class Store:
    dsm: Dsm
    home: Path
    a: str
    b: str
    c: str
    d: str
    big: str
    scratch: str
    scratch_parent: str
    scratch_child: str


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[str]
    first_line: str
    client: httpx.Client
    stderr: str = ""

    def get(self, url_path: str, /, **params: Any) -> httpx.Response:
        return self.client.get(self.url + url_path.lstrip("/"), params=params)

    def ok(self, url_path: str, /, **params: Any) -> Any:
        r = self.get(url_path, **params)
        assert r.status_code == 200, f"{url_path} -> {r.status_code} {r.text}"
        return r.json()

    def post(self, path: str, body: Any = None) -> httpx.Response:
        content = b"" if body is None else json.dumps(body).encode()
        return self.client.post(
            self.url + path.lstrip("/"), content=content, headers={"content-type": "application/json"}
        )


def _make_version(dsm: Dsm, project: str, name: str, *, parents: tuple[str, ...] = (), **steps: Any) -> str:
    """create [--parents], then the given removes and adds, then close; returns the id."""
    args: list[object] = ["--project", project, "--name", name]
    if parents:
        args += ["--parents", *parents]
    vid = dsm.new_id(*args)
    for pattern in steps.get("remove", ()):
        dsm("remove", "--id", vid, "--files", pattern)
    for folder in steps.get("add", ()):
        dsm("add", "--id", vid, "--files", folder)
    dsm("close", "--id", vid)
    return vid


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    root = tmp_path_factory.mktemp("ui")
    home = root / "home"
    dsm = Dsm(home, root)
    src = root / "src"
    a = _make_version(
        dsm,
        "proj",
        "data",
        add=[
            write_tree(
                src / "a",
                {
                    "a.txt": "alpha\n",
                    "mod.txt": "old content\n",
                    "keep/k1.txt": "k1\n",
                    "keep/k2.txt": "k2\n",
                    "old/o1.txt": "o1 bytes\n",
                    "old/o2.txt": "o2 more bytes\n",
                    "mv/src.bin": os.urandom(3000),
                },
            )
        ],
    )
    moved = (src / "a" / "mv" / "src.bin").read_bytes()
    b = _make_version(
        dsm,
        "proj",
        "data",
        parents=(a,),
        remove=["old", "mv/src.bin"],
        add=[
            write_tree(src / "b", {"mod.txt": "new content, longer\n", "b.txt": "bee\n", "mv/dst.bin": moved})
        ],
    )
    c = _make_version(dsm, "proj", "data", parents=(a,), add=[write_tree(src / "c", {"c.txt": "sea\n"})])
    d = _make_version(
        dsm,
        "proj",
        "data",
        parents=(b, c),
        add=[write_tree(src / "d", {"d.txt": "dee\n", "a.txt": "ALPHA!\n"})],
    )
    big = _make_version(
        dsm,
        "proj",
        "big",
        add=[
            write_tree(src / "big", {f"many/f{i:05d}.txt": f"{i}\n" for i in range(BIG)} | {"top.txt": "t"})
        ],
    )
    scratch = _make_version(dsm, "scratch", "one", add=[write_tree(src / "s", {"s.txt": "s\n"})])
    scratch_parent = _make_version(dsm, "scratch", "two", add=[write_tree(src / "s2", {"p.txt": "p\n"})])
    scratch_child = _make_version(
        dsm, "scratch", "two", parents=(scratch_parent,), add=[write_tree(src / "s3", {"q.txt": "q\n"})]
    )
    return Store(dsm, home, a, b, c, d, big, scratch, scratch_parent, scratch_child)


def _start(dsm: Dsm, *args: str) -> Server:
    proc = subprocess.Popen(
        [str(DSMOUNT), "ui", "--port", "0", *args],
        env=dsm.env,
        cwd=dsm.cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    line = proc.stdout.readline() if ready else ""
    if not line.startswith("dsmount ui: http://"):
        proc.kill()
        _, err = proc.communicate(timeout=10)
        raise AssertionError(f"dsmount ui did not start: {line!r} {err}")
    url = line.split()[2]
    return Server(url, proc, line.strip(), httpx.Client(timeout=30))


def _stop(server: Server) -> int:
    """SIGTERM, then wait for the exit and close the pipes; returns the exit status."""
    server.client.close()
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
    try:
        _, server.stderr = server.proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.communicate(timeout=10)
        raise
    return server.proc.returncode


@pytest.fixture(scope="module")
def server(store: Store) -> Iterator[Server]:
    s = _start(store.dsm)
    try:
        yield s
    finally:
        _stop(s)


@pytest.fixture(scope="module")
def writable(store: Store) -> Iterator[Server]:
    s = _start(store.dsm, "--allow-changes")
    try:
        yield s
    finally:
        _stop(s)


# ----- starting and stopping ------------------------------------------------------------------------


def test_announces_its_url_and_mode(server: Server, writable: Server) -> None:
    assert server.first_line.startswith("dsmount ui: http://127.0.0.1:")
    assert server.first_line.endswith(
        "(read-only; --allow-changes enables publish, delete, description and tags)"
    )
    assert server.url != writable.url
    assert "read-only" not in writable.first_line


def test_sigterm_stops_with_status_0(store: Store) -> None:
    s = _start(store.dsm)
    assert s.ok("/api/info")["allow_changes"] is False
    assert _stop(s) == 0, s.stderr
    assert s.stderr == "dsmount ui: stopped\n"


def test_json_ready_line_and_sigint(store: Store) -> None:
    proc = subprocess.Popen(
        [str(DSMOUNT), "ui", "--port", "0", "--json", "--allow-changes"],
        env=store.dsm.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        doc = json.loads(proc.stdout.readline()) if ready else {}
        assert doc["host"] == "127.0.0.1"
        assert doc["allow_changes"] is True
        assert doc["url"] == f"http://127.0.0.1:{doc['port']}/"
        assert httpx.get(doc["url"] + "api/info", timeout=30).json()["allow_changes"] is True
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)


def test_port_in_use_is_one_line_and_exit_2(store: Store, server: Server) -> None:
    port = server.url.rstrip("/").rsplit(":", 1)[1]
    rc, out, err = store.dsm("ui", "--port", port, rc=None)
    assert rc == 2
    assert out == ""
    assert err.count("\n") == 1, err
    assert "in use" in err, err


# ----- /api/info, errors ---------------------------------------------------------------------------


def test_info(server: Server, store: Store) -> None:
    body = server.ok("/api/info")
    assert body["store"] == str(store.home / "store")
    assert body["home"] == str(store.home)
    assert body["allow_changes"] is False
    assert body["dsmount"] == store.dsm("--version").out.split()[1]


def test_unknown_things_are_json_404(server: Server) -> None:
    for path in (
        "/api/nothing",
        "/api/versions/ffffffffffffffffffffffffffffffff",
        "/api/versions/proj/nothing/tree",
    ):
        r = server.get(path)
        assert r.status_code == 404, path
        assert set(r.json()) == {"error"}
        assert "\n" not in r.json()["error"]


def test_bad_arguments_are_400(server: Server, store: Store) -> None:
    assert server.get("/api/datasets", limit="x").status_code == 400
    assert server.get("/api/datasets", sort="colour").status_code == 400
    assert server.get(f"/api/versions/{store.d}/tree", limit=0).status_code == 400
    assert server.get(f"/api/versions/{store.d}/changes", status="lost").status_code == 400
    assert server.get("/api/compare", source=store.a).status_code == 400
    assert server.get("/api/versions/zz!z").status_code == 400  # not a reference at all


# ----- /api/datasets ------------------------------------------------------------------------------


def test_datasets_match_search(server: Server, store: Store) -> None:
    cli = store.dsm.json("search", "--project", "proj")
    body = server.ok("/api/datasets", project="proj", sort="created", order="asc", limit=1000)
    assert body["total"] == len(cli) == 5
    by_id = {r["id"]: r for r in cli}
    assert [i["id"] for i in body["items"]] == sorted(by_id, key=lambda v: (by_id[v]["created"], v))
    for item in body["items"]:
        assert item == by_id[item["id"]]
    newest_first = server.ok("/api/datasets", project="proj")["items"]
    assert [i["id"] for i in newest_first] == [i["id"] for i in reversed(body["items"])]


def test_datasets_filters_sorting_and_paging(server: Server, store: Store) -> None:
    assert {i["id"] for i in server.ok("/api/datasets", q=store.b[:8])["items"]} == {store.b}
    assert {i["id"] for i in server.ok("/api/datasets", q="BIG")["items"]} == {store.big}
    assert server.ok("/api/datasets", name="data", project="proj")["total"] == 4
    assert server.ok("/api/datasets", state="published", project="proj")["total"] == 0
    by_files = server.ok("/api/datasets", project="proj", sort="files", order="desc")["items"]
    assert by_files[0]["id"] == store.big
    assert by_files[0]["files"] == BIG + 1
    versions = [
        i["version"] for i in server.ok("/api/datasets", project="proj", name="data", sort="version")["items"]
    ]
    assert versions == ["1.0.0", "1.0.1", "1.0.2", "1.0.3"]
    page = server.ok("/api/datasets", project="proj", offset=1, limit=2)
    full = server.ok("/api/datasets", project="proj")
    assert page["total"] == 5
    assert page["items"] == full["items"][1:3]


def test_datasets_include_drafts(server: Server, store: Store) -> None:
    draft = store.dsm.new_id("--project", "drafts", "--name", "wip")
    try:
        deadline = time.monotonic() + 10
        items: list[dict[str, Any]] = []
        while time.monotonic() < deadline:  # the list is refreshed from the store at most every 3 s
            items = server.ok("/api/datasets", project="drafts")["items"]
            if items:
                break
            time.sleep(0.5)
        assert [(i["id"], i["state"]) for i in items] == [(draft, "draft")]
    finally:
        store.dsm("delete", "--id", draft)


# ----- /api/versions/{ref} ------------------------------------------------------------------------


def test_version_matches_show(server: Server, store: Store) -> None:
    for vid in (store.a, store.b, store.d):
        shown = store.dsm.json("show", vid)
        body = server.ok(f"/api/versions/{vid[:10]}")
        for key in ("id", "project", "name", "version", "state", "created", "closed", "user", "host"):
            assert body[key] == shown[key], key
        for key in ("data_url", "tags", "description", "metadata", "parents", "stats", "chunks"):
            assert body[key] == shown[key], key
        assert body["file_table"] == shown["file_table"]
        assert body["oplog"] == shown["oplog"]
        assert body["published"] is False
    assert server.ok(f"/api/versions/{store.a}")["children"] == [store.b, store.c]
    assert server.ok(f"/api/versions/{store.d}")["children"] == []
    assert server.ok("/api/versions/proj/data")["id"] == store.d  # project/name: the highest version
    assert server.ok("/api/versions/proj/data@1.0.1")["id"] == store.b


# ----- /api/versions/{ref}/changes ----------------------------------------------------------------


def test_changes_match_list_modified_and_stats(server: Server, store: Store) -> None:
    for vid in (store.a, store.b, store.c, store.d):
        stats = store.dsm.json("show", vid)["stats"]
        own = {e["path"]: e for e in store.dsm.json("list", "--id", vid, "--modified")}
        body = server.ok(f"/api/versions/{vid}/changes")
        assert body["counts"] == {k: stats[k] for k in ("added", "modified", "removed")}
        assert body["total"] == sum(body["counts"].values())
        kept = [i for i in body["items"] if i["status"] != "removed"]
        assert {i["path"] for i in kept} == set(own)
        for i in kept:
            assert (i["size"], i["sha256"], i["kind"]) == (
                own[i["path"]]["size"],
                own[i["path"]]["sha256"],
                own[i["path"]]["kind"],
            )
            assert i["location"].endswith(".zip")
            assert "/chunk-" in i["location"]
        assert [i["path"] for i in body["items"]] == sorted(i["path"] for i in body["items"])
    b = server.ok(f"/api/versions/{store.b}/changes")
    status = {i["path"]: i["status"] for i in b["items"]}
    assert status == {
        "b.txt": "added",
        "mod.txt": "modified",
        "mv/dst.bin": "added",
        "mv/src.bin": "removed",
        "old/o1.txt": "removed",
        "old/o2.txt": "removed",
    }
    removed = {i["path"]: i for i in b["items"] if i["status"] == "removed"}
    assert removed["old/o2.txt"]["size"] == len("o2 more bytes\n")
    assert removed["old/o2.txt"]["location"] == ""
    assert removed["old/o2.txt"]["origin"] == store.a
    # the renamed file's bytes were not stored again: its location is in A's chunk
    dst = next(i for i in b["items"] if i["path"] == "mv/dst.bin")
    assert dst["location"].startswith(store.a + "/chunk-")
    only = server.ok(f"/api/versions/{store.b}/changes", status="removed", offset=1, limit=1)
    assert only["total"] == 3
    assert [i["path"] for i in only["items"]] == ["old/o1.txt"]


# ----- /api/versions/{ref}/tree -------------------------------------------------------------------


def test_tree_matches_list(server: Server, store: Store) -> None:
    listed = {e["path"]: e for e in store.dsm.json("list", "--id", store.d)}
    seen: dict[str, dict[str, Any]] = {}
    folders = [""]
    while folders:
        folder = folders.pop()
        body = server.ok(f"/api/versions/{store.d}/tree", path=folder)
        kinds = [i["kind"] for i in body["items"]]
        assert kinds == sorted(kinds, key=lambda k: k != "dir"), "folders first"
        assert body["total"] == len(body["items"])
        assert body["path"] == folder
        for item in body["items"]:
            if item["kind"] == "dir":
                folders.append(item["path"])
                assert item["size"] is None
            else:
                seen[item["path"]] = item
    assert set(seen) == set(listed)
    for path, item in seen.items():
        for key in ("kind", "size", "sha256", "origin", "mode", "mtime_ns", "target"):
            assert item[key] == listed[path][key], (path, key)
    root = server.ok(f"/api/versions/{store.d}/tree")["items"]
    # old/ is back in D: B removed it, but C (D's later parent) still has it (design.md, the DAG merge)
    assert [i["name"] for i in root] == ["keep", "mv", "old", "a.txt", "b.txt", "c.txt", "d.txt", "mod.txt"]
    names = [i["name"] for i in server.ok(f"/api/versions/{store.d}/tree", path="mv")["items"]]
    assert names == ["dst.bin", "src.bin"]


def test_tree_of_a_file_or_missing_folder_is_404(server: Server, store: Store) -> None:
    assert server.get(f"/api/versions/{store.d}/tree", path="a.txt").status_code == 404
    assert server.get(f"/api/versions/{store.b}/tree", path="old").status_code == 404  # removed in B
    assert server.ok(f"/api/versions/{store.a}/tree", path="old/")["total"] == 2


def test_tree_pages_a_10000_file_folder(server: Server, store: Store) -> None:
    listed = [e["path"] for e in store.dsm.json("list", "--id", store.big, "--filter", "many")]
    assert len(listed) == BIG
    root = server.ok(f"/api/versions/{store.big}/tree")
    assert [(i["name"], i["kind"]) for i in root["items"]] == [("many", "dir"), ("top.txt", "file")]
    server.ok(f"/api/versions/{store.big}/tree", path="many", limit=1)  # counted once, then cached
    times = []
    got: list[str] = []
    for offset in range(0, BIG, 1000):
        start = time.perf_counter()
        body = server.ok(f"/api/versions/{store.big}/tree", path="many", offset=offset, limit=1000)
        times.append(time.perf_counter() - start)
        assert body["total"] == BIG
        got += [i["path"] for i in body["items"]]
    assert got == sorted(listed)
    start = time.perf_counter()
    last = server.ok(f"/api/versions/{store.big}/tree", path="many", offset=9_950, limit=200)
    one_page = time.perf_counter() - start
    assert [i["name"] for i in last["items"]] == [f"f{i:05d}.txt" for i in range(9_950, BIG)]
    print(f"\none page of 200 at offset 9,950 of {BIG}: {one_page * 1000:.1f} ms (HTTP round trip)")
    assert one_page < 0.1, one_page
    assert max(times) < 0.5, times


# ----- /api/versions/{ref}/lineage ----------------------------------------------------------------


def test_lineage_of_the_merge(server: Server, store: Store) -> None:
    graph = store.dsm.json("show", store.d)["lineage"]
    body = server.ok(f"/api/versions/{store.d}/lineage")
    assert body["root"] == store.d
    assert {n["id"] for n in body["nodes"]} == set(graph) == {store.a, store.b, store.c, store.d}
    edges = {(e["parent"], e["child"]) for e in body["edges"]}
    assert edges == {(p, c) for c, ps in graph.items() for p in ps}
    node_b = next(n for n in body["nodes"] if n["id"] == store.b)
    assert node_b["stats"] == store.dsm.json("show", store.b)["stats"]
    assert node_b["version"] == "1.0.1"
    # from A: no ancestors, its two children
    body_a = server.ok(f"/api/versions/{store.a}/lineage")
    assert {n["id"] for n in body_a["nodes"]} == {store.a, store.b, store.c}
    assert {(e["parent"], e["child"]) for e in body_a["edges"]} == {(store.a, store.b), (store.a, store.c)}


# ----- /api/compare -------------------------------------------------------------------------------


@pytest.mark.parametrize(("source", "target"), [("a", "d"), ("a", "b"), ("d", "a"), ("c", "b")])
def test_compare_matches_cli(server: Server, store: Store, source: str, target: str) -> None:
    src, dst = getattr(store, source), getattr(store, target)
    cli = store.dsm.json("compare", "--source", src, "--target", dst)
    body = server.ok("/api/compare", source=src[:8], target=dst)
    assert (body["source"], body["target"]) == (src, dst)
    assert body["counts"] == {
        "added": len(cli["added"]),
        "removed": len(cli["removed"]),
        "modified": len(cli["modified"]),
        "renamed": len(cli["renamed"]),
    }
    assert body["bytes"] == {
        "added": cli["added_bytes"],
        "removed": cli["removed_bytes"],
        "modified": cli["modified_bytes"],
    }
    for status in ("added", "removed", "modified"):
        assert [i["path"] for i in body["items"] if i["status"] == status] == cli[status]
    assert body["total"] == len(body["items"]) == sum(len(cli[k]) for k in ("added", "removed", "modified"))
    tree_src = {e["path"]: e for e in store.dsm.json("list", "--id", src)}
    tree_dst = {e["path"]: e for e in store.dsm.json("list", "--id", dst)}
    for i in body["items"]:
        if i["status"] == "removed":
            assert (i["size"], i["sha256"]) == (tree_src[i["path"]]["size"], tree_src[i["path"]]["sha256"])
        else:
            assert (i["size"], i["sha256"]) == (tree_dst[i["path"]]["size"], tree_dst[i["path"]]["sha256"])
        if i["status"] == "added":
            assert i["old_size"] is None
        if i["status"] == "modified":
            assert i["old_size"] == tree_src[i["path"]]["size"]


def test_compare_names_the_rename_and_pages(server: Server, store: Store) -> None:
    body = server.ok("/api/compare", source=store.a, target=store.b)
    assert body["counts"]["renamed"] == 1
    dst = next(i for i in body["items"] if i["path"] == "mv/dst.bin")
    assert dst["renamed_from"] == "mv/src.bin"
    page = server.ok("/api/compare", source=store.a, target=store.b, offset=2, limit=2)
    assert page["total"] == body["total"]
    assert page["items"] == body["items"][2:4]


# ----- actions ------------------------------------------------------------------------------------


def test_read_only_refuses_every_action(server: Server, store: Store) -> None:
    for action, body in (
        ("publish", {"confirm": True}),
        ("delete", {"confirm": True}),
        ("description", {"confirm": True, "description": "x"}),
        ("tags", {"confirm": True, "tags": ["x"]}),
    ):
        r = server.post(f"/api/versions/{store.scratch}/{action}", body)
        assert r.status_code == 403, action
        assert r.json() == {"error": "read-only: start dsmount ui with --allow-changes"}
    shown = store.dsm.json("show", store.scratch)
    assert (shown["state"], shown["description"], shown["tags"]) == ("closed", "", [])


def test_actions_need_confirm(writable: Server, store: Store) -> None:
    for body in (None, {}, {"confirm": False}, {"confirm": "yes"}, [True]):
        r = writable.post(f"/api/versions/{store.scratch}/publish", body)
        assert r.status_code == 400, body
        assert "error" in r.json()
    assert store.dsm.json("show", store.scratch)["state"] == "closed"


def test_actions_with_allow_changes(writable: Server, store: Store) -> None:
    vid = store.scratch
    body = writable.post(
        f"/api/versions/{vid}/description", {"confirm": True, "description": "from the page"}
    )
    assert body.status_code == 200, body.text
    assert body.json()["description"] == "from the page"
    assert store.dsm.json("show", vid)["description"] == "from the page"

    body = writable.post(f"/api/versions/{vid}/tags", {"confirm": True, "tags": ["x", "y", "x"]})
    assert body.status_code == 200
    assert body.json()["tags"] == ["x", "y"]
    assert store.dsm.json("show", vid)["tags"] == ["x", "y"]
    body = writable.post(f"/api/versions/{vid}/tags", {"confirm": True, "tags": ["z"]})
    assert store.dsm.json("show", vid)["tags"] == ["z"]
    assert writable.post(f"/api/versions/{vid}/tags", {"confirm": True, "tags": "z"}).status_code == 400

    body = writable.post(f"/api/versions/{vid[:8]}/publish", {"confirm": True})
    assert body.status_code == 200
    assert body.json()["published"] is True
    assert body.json()["state"] == "published"
    assert store.dsm.json("show", vid)["state"] == "published"

    # a published version needs force, as on the command line
    r = writable.post(f"/api/versions/{vid}/delete", {"confirm": True})
    assert r.status_code == 409, r.text
    r = writable.post(f"/api/versions/{vid}/delete", {"confirm": True, "force": True})
    assert r.status_code == 200
    assert r.json() == {"deleted": vid}
    assert writable.get(f"/api/versions/{vid}").status_code == 404
    assert store.dsm("show", vid, rc=None).rc == 3


def test_delete_with_children_is_409(writable: Server, store: Store) -> None:
    r = writable.post(f"/api/versions/{store.scratch_parent}/delete", {"confirm": True})
    assert r.status_code == 409
    assert store.scratch_child in r.json()["error"]
    assert writable.ok(f"/api/versions/{store.scratch_parent}")["id"] == store.scratch_parent
    r = writable.post(f"/api/versions/{store.scratch_child}/delete", {"confirm": True})
    assert r.status_code == 200
    assert writable.ok(f"/api/versions/{store.scratch_parent}")["children"] == []


# ----- /api/mounts --------------------------------------------------------------------------------


@pytest.fixture
def home(store: Store) -> Path:
    """new_mountpoint's cleanup looks for daemons in this home."""
    return store.home


@pytest.mark.uses_fuse
def test_a_live_mount_is_listed(server: Server, store: Store, new_mountpoint: Any) -> None:
    mnt = new_mountpoint()
    assert all(m["state"] != "mounted" for m in server.ok("/api/mounts")["items"])
    store.dsm("mount", store.d, mnt)
    try:
        cli = store.dsm.json("status")
        items = server.ok("/api/mounts")["items"]
        mine = [m for m in items if m["mountpoint"] == mountpoint.canonical(mnt)]
        assert len(mine) == 1, items
        row = mine[0]
        cli_row = next(m for m in cli if m["mountpoint"] == row["mountpoint"])
        for key in ("state", "version", "label", "pid", "files", "bytes", "writable"):
            assert row.get(key) == cli_row.get(key), key
        assert row["version"] == store.d
        assert row["state"] == "mounted"
        assert row["files"] == store.dsm.json("show", store.d)["stats"]["files"]
    finally:
        store.dsm("unmount", mnt)
    assert wait_for(
        lambda: all(
            m["state"] != "mounted"
            for m in server.ok("/api/mounts")["items"]
            if m["mountpoint"] == mountpoint.canonical(mnt)
        ),
        10,
    )


def test_server_answers_while_busy(server: Server, store: Store) -> None:
    """Requests run in worker threads: a burst of parallel requests all answer."""
    import concurrent.futures

    paths = [f"/api/versions/{store.big}/tree?path=many&offset={i * 100}" for i in range(40)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda p: server.get(p).status_code, paths))
    assert codes == [200] * 40
