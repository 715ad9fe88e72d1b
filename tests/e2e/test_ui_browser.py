"""Browser tests of ``dsmount ui``: the real server (``dsmount ui --port 0``) over a real home
and store built with the CLI, driven in Debian's Chromium by Playwright.

Every check compares what the page shows with what the CLI says (``search``, ``show``,
``list``, ``compare`` with ``--json``). Screenshots of the main pages are saved under
``$DSMOUNT_TEST_ARTIFACTS`` (default ``<repo>/.test-artifacts/screenshots``).
Needs ``scripts/install_browser.sh`` (chromium + playwright; setup.sh runs it): without them
the module fails to load, so a missing browser is a red run, never a silent skip.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from playwright.sync_api import BrowserContext, Page, expect, sync_playwright

from tests.conftest import DSMOUNT, Dsm, write_tree

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(os.environ.get("DSMOUNT_TEST_ARTIFACTS") or REPO / ".test-artifacts" / "screenshots")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 20_000

if not CHROMIUM.exists():  # pragma: no cover - depends on the machine
    pytest.fail(f"{CHROMIUM} is missing: run scripts/install_browser.sh", pytrace=False)


class Catalogue(NamedTuple):
    dsm: Dsm
    v1: str  # proj/data@1.0.0: a/, b/, many/ (250 files), keep.txt, old.txt
    v2: str  # 1.0.1 <- v1: +c/new.txt ~keep.txt -old.txt
    v3: str  # 1.0.2 <- v1: a/y.txt renamed to a/z.txt
    v4: str  # 1.0.3 <- v2 + v3 (merge): +d/extra.bin -old.txt -a/y.txt
    other: str  # other/eval@2.0.0, tag "eval", no parents


def _id(dsm: Dsm, *args: object) -> str:
    return dsm.new_id(*args)


@pytest.fixture(scope="module")
def cat(tmp_path_factory: pytest.TempPathFactory) -> Catalogue:
    root = tmp_path_factory.mktemp("ui-e2e")
    dsm = Dsm(root / "home", root)
    files: dict[str, bytes | str] = {
        "a/x.txt": "x\n",
        "a/y.txt": "y is renamed later\n",
        "b/big.bin": os.urandom(50_000),
        "keep.txt": "keep\n",
        "old.txt": "old\n",
    }
    files.update({f"many/f{i:03d}.txt": f"{i}\n" for i in range(250)})
    src1 = write_tree(root / "s1", files)
    v1 = _id(dsm, "--project", "proj", "--name", "data", "--version", "1.0.0", "--tags", "raw")
    dsm("add", "--id", v1, "--files", src1)
    dsm("close", "--id", v1)

    src2 = write_tree(root / "s2", {"c/new.txt": "new\n", "keep.txt": "keep, modified\n"})
    v2 = _id(dsm, "--project", "proj", "--name", "data", "--version", "1.0.1", "--parents", v1)
    dsm("add", "--id", v2, "--files", src2)
    dsm("remove", "--id", v2, "--files", "old.txt")
    dsm("close", "--id", v2)

    src3 = write_tree(root / "s3", {"a/z.txt": "y is renamed later\n"})
    v3 = _id(dsm, "--project", "proj", "--name", "data", "--version", "1.0.2", "--parents", v1)
    dsm("add", "--id", v3, "--files", src3)
    dsm("remove", "--id", v3, "--files", "a/y.txt")
    dsm("close", "--id", v3)

    src4 = write_tree(root / "s4", {"d/extra.bin": os.urandom(3000)})
    v4 = _id(dsm, "--project", "proj", "--name", "data", "--version", "1.0.3", "--parents", v2, v3)
    dsm("add", "--id", v4, "--files", src4)
    dsm("remove", "--id", v4, "--files", "old.txt", "a/y.txt")  # a merge keeps both parents' files
    dsm("close", "--id", v4)

    src5 = write_tree(root / "s5", {"eval/one.txt": "1\n", "eval/two.txt": "22\n"})
    other = _id(dsm, "--project", "other", "--name", "eval", "--version", "2.0.0", "--tags", "eval")
    dsm("add", "--id", other, "--files", src5)
    dsm("close", "--id", other)
    return Catalogue(dsm, v1, v2, v3, v4, other)


class Server(NamedTuple):
    url: str
    proc: subprocess.Popen[str]


@contextlib.contextmanager
def ui_server(dsm: Dsm, *flags: str) -> Iterator[Server]:
    """``dsmount ui --port 0`` in a subprocess; yields once it prints its URL; stops it after."""
    proc = subprocess.Popen(
        [str(DSMOUNT), "ui", "--port", "0", *flags],
        cwd=dsm.cwd,
        env=dsm.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        url = None
        seen: list[str] = []
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            m = re.match(r"dsmount ui: (http://\S+/) ", line)
            if m:
                url = m.group(1).rstrip("/")
                break
        assert url, f"dsmount ui did not start: {''.join(seen)}"
        yield Server(url, proc)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture(scope="module")
def server(cat: Catalogue) -> Iterator[Server]:
    """A read-only server (the default)."""
    with ui_server(cat.dsm) as srv:
        yield srv


@pytest.fixture(scope="module")
def browser() -> Iterator[BrowserContext]:
    profile = tempfile.mkdtemp(prefix="dsmount-chromium-")
    try:
        with sync_playwright() as p:
            ctx = p.chromium.launch_persistent_context(
                profile,
                executable_path=str(CHROMIUM),
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": 1300, "height": 950},
            )
            ctx.set_default_timeout(TIMEOUT_MS)
            try:
                yield ctx
            finally:
                ctx.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page_errors() -> list[str]:
    """What went wrong in the test's tab: script errors, failed requests, HTTP answers >= 400."""
    return []


@pytest.fixture
def page(browser: BrowserContext, page_errors: list[str]) -> Iterator[Page]:
    """A fresh tab; the test fails on anything in ``page_errors`` it did not clear itself."""
    tab = browser.new_page()
    errors = page_errors
    tab.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    tab.on(
        "console",
        lambda msg: (
            errors.append(f"console {msg.type}: {msg.text}")
            if msg.type == "error" and not msg.text.startswith("Failed to load resource")
            else None
        ),
    )
    tab.on("requestfailed", lambda req: errors.append(f"request failed: {req.url} {req.failure}"))
    tab.on(
        "response",
        lambda resp: (
            errors.append(f"HTTP {resp.status} {resp.request.method} {resp.url}")
            if resp.status >= 400
            else None
        ),
    )
    yield tab
    tab.close()
    assert errors == [], "\n".join(errors)


def open_page(page: Page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']")
    expect(page.get_by_test_id("error")).to_have_count(0)


def shot(page: Page, name: str, selector: str | None = None) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    if selector is None:
        page.screenshot(path=str(path), full_page=True)
    else:
        page.locator(selector).screenshot(path=str(path))
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert len(data) > 5_000, f"{path} is nearly empty"
    return path


def row_ids(page: Page) -> list[str]:
    return [str(r.get_attribute("data-id")) for r in page.get_by_test_id("dataset-row").all()]


def texts(page: Page, testid: str) -> list[str]:
    return [t.strip() for t in page.get_by_test_id(testid).all_inner_texts()]


# ----- the list ---------------------------------------------------------------------------------------


def test_list_shows_the_catalogue(cat: Catalogue, server: Server, page: Page) -> None:
    expected = cat.dsm.json("search")
    assert len(expected) == 5
    open_page(page, server.url + "/")
    expect(page.get_by_test_id("dataset-row")).to_have_count(len(expected))
    by_id = {v["id"]: v for v in expected}
    ids = row_ids(page)
    assert sorted(ids) == sorted(by_id)
    # newest first by default
    created = [by_id[i]["created"] for i in ids]
    assert created == sorted(created, reverse=True)
    for row in page.get_by_test_id("dataset-row").all():
        v = by_id[str(row.get_attribute("data-id"))]
        assert row.get_by_test_id("cell-project").inner_text() == v["project"]
        assert row.get_by_test_id("cell-name").inner_text() == v["name"]
        assert row.get_by_test_id("cell-version").inner_text() == v["version"]
        assert row.get_by_test_id("cell-files").inner_text() == f"{v['files']:,}"
        assert row.get_by_test_id("state").inner_text() == v["state"]
        assert [t.strip() for t in row.get_by_test_id("tag").all_inner_texts()] == v["tags"]
    assert page.get_by_test_id("pager-range").inner_text() == f"1–{len(expected)} of {len(expected)}"
    expect(page.get_by_test_id("mode")).to_have_text("read-only")
    shot(page, "list")


def test_search_filters_and_sort_narrow_the_list(cat: Catalogue, server: Server, page: Page) -> None:
    open_page(page, server.url + "/")
    expect(page.get_by_test_id("dataset-row")).to_have_count(5)
    page.get_by_test_id("search").fill("eval")
    expect(page.get_by_test_id("dataset-row")).to_have_count(1)
    assert row_ids(page) == [cat.other]
    assert "q=eval" in page.url  # the URL keeps the search
    page.get_by_test_id("search").fill("")
    expect(page.get_by_test_id("dataset-row")).to_have_count(5)
    page.get_by_test_id("filter-tag").fill("raw")
    expect(page.get_by_test_id("dataset-row")).to_have_count(1)
    assert row_ids(page) == [cat.v1]
    page.get_by_test_id("filter-tag").fill("")
    page.get_by_test_id("filter-project").fill("proj")
    expect(page.get_by_test_id("dataset-row")).to_have_count(4)
    assert sorted(row_ids(page)) == sorted([cat.v1, cat.v2, cat.v3, cat.v4])
    page.get_by_test_id("search").fill("no such dataset anywhere")
    expect(page.get_by_test_id("no-datasets")).to_have_count(1)
    expect(page.get_by_test_id("dataset-row")).to_have_count(0)

    # sorting by version: ascending, then descending on a second click
    open_page(page, server.url + "/?project=proj")
    expect(page.get_by_test_id("dataset-row")).to_have_count(4)
    page.get_by_test_id("col-version").click()
    expect(page.get_by_test_id("col-version")).to_contain_text("▲")
    expect(page.get_by_test_id("cell-version")).to_have_text(["1.0.0", "1.0.1", "1.0.2", "1.0.3"])
    page.get_by_test_id("col-version").click()
    expect(page.get_by_test_id("cell-version")).to_have_text(["1.0.3", "1.0.2", "1.0.1", "1.0.0"])
    page.get_by_test_id("col-files").click()  # numbers: largest first
    expect(page.get_by_test_id("col-files")).to_contain_text("▼")
    expect(page.get_by_test_id("cell-files").first).to_have_text("256")
    assert page.get_by_test_id("dataset-row").first.get_attribute("data-id") == cat.v4


def test_list_pages(cat: Catalogue, server: Server, page: Page) -> None:
    newest_first = [v["id"] for v in sorted(cat.dsm.json("search"), key=lambda v: v["created"], reverse=True)]
    open_page(page, server.url + "/?limit=2")
    expect(page.get_by_test_id("dataset-row")).to_have_count(2)
    assert row_ids(page) == newest_first[0:2]
    expect(page.get_by_test_id("pager-range")).to_have_text("1–2 of 5")
    expect(page.get_by_test_id("pager-prev")).to_be_disabled()
    page.get_by_test_id("pager-next").click()
    expect(page.get_by_test_id("pager-range")).to_have_text("3–4 of 5")
    assert row_ids(page) == newest_first[2:4]
    page.get_by_test_id("pager-next").click()
    expect(page.get_by_test_id("pager-range")).to_have_text("5–5 of 5")
    assert row_ids(page) == newest_first[4:]
    expect(page.get_by_test_id("pager-next")).to_be_disabled()
    assert "offset=4" in page.url
    page.get_by_test_id("pager-prev").click()
    expect(page.get_by_test_id("pager-range")).to_have_text("3–4 of 5")


# ----- one version ------------------------------------------------------------------------------------


def test_version_page_matches_show(cat: Catalogue, server: Server, page: Page) -> None:
    shown = cat.dsm.json("show", cat.v2)
    open_page(page, f"{server.url}/v/{cat.v2}")
    expect(page.get_by_test_id("version-title")).to_contain_text("proj/data@1.0.1")
    assert page.get_by_test_id("meta-id").inner_text() == cat.v2
    assert page.get_by_test_id("meta-state").inner_text() == shown["state"]
    assert page.get_by_test_id("meta-files").inner_text() == f"{shown['stats']['files']:,}"
    assert f"({shown['stats']['bytes']:,} bytes)" in page.get_by_test_id("meta-bytes").inner_text()
    stats = shown["stats"]
    assert (stats["added"], stats["modified"], stats["removed"]) == (1, 1, 1)
    for kind in ("added", "modified", "removed"):
        assert page.get_by_test_id(f"count-{kind}").inner_text() == str(stats[kind])
        title = page.get_by_test_id(f"bytes-{kind}").get_attribute("title")
        assert title == f"{stats[kind + '_bytes']:,} bytes"
    parents = [str(a.get_attribute("href")) for a in page.get_by_test_id("parent-link").all()]
    assert parents == [f"/v/{p}" for p in shown["parents"]]
    children = {str(a.get_attribute("href")) for a in page.get_by_test_id("child-link").all()}
    assert children == {f"/v/{cat.v4}"}
    expect(page.get_by_test_id("oplog-row")).to_have_count(len(shown["oplog"]))
    changes = {
        r.get_attribute("data-path"): r.get_attribute("data-status")
        for r in page.get_by_test_id("change-row").all()
    }
    assert changes == {"c/new.txt": "added", "keep.txt": "modified", "old.txt": "removed"}
    assert "null" not in page.get_by_test_id("app").inner_text().split()
    assert "undefined" not in page.get_by_test_id("app").inner_text()
    # read-only server: no actions at all
    expect(page.get_by_test_id("actions")).to_have_count(0)
    shot(page, "dataset")
    page.get_by_test_id("changes-status").select_option("removed")
    expect(page.get_by_test_id("change-row")).to_have_count(1)
    expect(page.get_by_test_id("change-row")).to_have_attribute("data-path", "old.txt")
    expect(page.get_by_test_id("changes-pager-range")).to_have_text("1–1 of 1")


def test_content_tree_browses_folders_in_pages(cat: Catalogue, server: Server, page: Page) -> None:
    listing = {e["path"]: e for e in cat.dsm.json("list", "--id", cat.v2)}
    open_page(page, f"{server.url}/v/{cat.v2}")
    tree = page.get_by_test_id("tree")
    top = sorted({p.split("/")[0] for p in listing})
    folders = sorted({p.split("/")[0] for p in listing if "/" in p})
    rows = tree.get_by_test_id("tree-row")
    expect(rows).to_have_count(len(top))
    got = [str(r.get_attribute("data-path")) for r in rows.all()]
    assert got == folders + sorted(set(top) - set(folders)), "folders first, then files, by name"
    keep = tree.locator("[data-testid=tree-row][data-path='keep.txt']")
    assert keep.locator("td.hash").get_attribute("title") == listing["keep.txt"]["sha256"]

    # expand a/ in place
    tree.locator("[data-testid=tree-row][data-path='a']").get_by_test_id("tree-toggle").click()
    expect(tree.locator("[data-testid=tree-row][data-depth='1']")).to_have_count(
        len([p for p in listing if p.startswith("a/")])
    )
    x = tree.locator("[data-testid=tree-row][data-path='a/x.txt']")
    assert x.locator("td.hash").get_attribute("title") == listing["a/x.txt"]["sha256"]
    tree.locator("[data-testid=tree-row][data-path='a']").get_by_test_id("tree-toggle").click()
    expect(tree.locator("[data-testid=tree-row][data-depth='1']")).to_have_count(0)

    # many/ (250 files) expanded in place: 200, then the rest, and all gone on collapse
    many = tree.locator("[data-testid=tree-row][data-path='many']")
    many.get_by_test_id("tree-toggle").click()
    nested = tree.locator("[data-testid=tree-row][data-depth='1']")
    expect(nested).to_have_count(200)
    tree.get_by_test_id("tree-more-button").click()
    expect(nested).to_have_count(250)
    assert [r.get_attribute("data-path") for r in nested.all()] == sorted(
        p for p in listing if p.startswith("many/")
    )
    many.get_by_test_id("tree-toggle").click()
    expect(nested).to_have_count(0)
    expect(rows).to_have_count(len(top))

    # navigate into many/ (250 files): 200 first, then the rest
    tree.locator("[data-testid=tree-row][data-path='many']").get_by_test_id("tree-open").click()
    expect(tree).to_have_attribute("data-path", "many")
    expect(page.get_by_test_id("tree-crumbs")).to_have_text("/many/")
    expect(rows).to_have_count(200)
    assert tree.get_attribute("data-total") == "250"
    assert "path=many" in page.url
    page.get_by_test_id("tree-more-button").click()
    expect(rows).to_have_count(250)
    expect(page.get_by_test_id("tree-more")).to_have_count(0)
    names = [str(r.get_attribute("data-path")) for r in rows.all()]
    assert names == sorted(p for p in listing if p.startswith("many/"))
    # back to the root through the breadcrumbs
    page.get_by_test_id("crumb").first.click()
    expect(rows).to_have_count(len(top))


# ----- the lineage graph ------------------------------------------------------------------------------


def graph_counts(page: Page) -> tuple[int, int]:
    page.wait_for_selector("[data-testid=dag][data-ready='1']")
    counts = page.evaluate("[window.dsmountGraph.nodes().length, window.dsmountGraph.edges().length]")
    return int(counts[0]), int(counts[1])


def test_lineage_graph_matches_the_dag_and_opens_versions(cat: Catalogue, server: Server, page: Page) -> None:
    lineage: dict[str, list[str]] = cat.dsm.json("show", cat.v4)["lineage"]
    assert set(lineage) == {cat.v1, cat.v2, cat.v3, cat.v4}
    open_page(page, f"{server.url}/v/{cat.v4}")
    nodes, edges = graph_counts(page)
    assert nodes == len(lineage)
    assert edges == sum(len(ps) for ps in lineage.values()) == 4
    dag = page.get_by_test_id("dag")
    assert dag.get_attribute("data-nodes") == str(nodes)
    labels = page.evaluate("window.dsmountGraph.nodes().map(n => n.data('label'))")
    assert sorted(label.split("\n")[0] for label in labels) == [f"data@1.0.{i}" for i in range(4)]
    stats2 = cat.dsm.json("show", cat.v2)["stats"]
    label2 = page.evaluate(f"window.dsmountGraph.getElementById('{cat.v2}').data('label')")
    assert label2 == f"data@1.0.1\n+{stats2['added']} ~{stats2['modified']} -{stats2['removed']}"
    # drawn top-down: every parent above its children
    for child, parents in lineage.items():
        for parent in parents:
            ys = page.evaluate(
                f"['{parent}', '{child}'].map(i => window.dsmountGraph.getElementById(i).position('y'))"
            )
            assert ys[0] < ys[1], f"{parent} is not above {child}"
    shot(page, "dag", "[data-testid=dag]")

    # the oldest version: itself plus its direct children (v2 and v3)
    searched = cat.dsm.json("search")
    children = [v["id"] for v in searched if cat.v1 in v["parents"]]
    assert sorted(children) == sorted([cat.v2, cat.v3])
    open_page(page, f"{server.url}/v/{cat.v1}")
    assert graph_counts(page) == (1 + len(children), len(children))

    # a real mouse click on the node of v3 opens its page
    box = dag.bounding_box()
    assert box is not None
    pos = page.evaluate(f"window.dsmountGraph.getElementById('{cat.v3}').renderedPosition()")
    page.mouse.click(box["x"] + pos["x"], box["y"] + pos["y"])
    page.wait_for_url(f"**/v/{cat.v3}")
    page.wait_for_selector("body[data-ready='1']")
    expect(page.get_by_test_id("version-title")).to_contain_text("proj/data@1.0.2")
    assert page.get_by_test_id("meta-id").inner_text() == cat.v3


def test_version_page_by_name_and_unknown_version(
    cat: Catalogue, server: Server, page: Page, page_errors: list[str]
) -> None:
    open_page(page, f"{server.url}/v/proj/data@1.0.2")
    assert page.get_by_test_id("meta-id").inner_text() == cat.v3
    open_page(page, f"{server.url}/v/{cat.v3[:8]}")
    assert page.get_by_test_id("meta-id").inner_text() == cat.v3
    page.goto(f"{server.url}/v/proj/nosuch@9")
    page.wait_for_selector("body[data-ready='1']")
    expect(page.get_by_test_id("error")).to_have_count(1)
    assert len(page_errors) == 1
    assert page_errors[0].startswith("HTTP 404 GET ")
    page_errors.clear()


# ----- compare ----------------------------------------------------------------------------------------


def expect_compare(page: Page, cmp: dict[str, Any]) -> None:
    counts = {k: len(cmp[k]) for k in ("added", "modified", "removed", "renamed")}
    for kind, n in counts.items():
        expect(page.get_by_test_id(f"cmp-count-{kind}")).to_have_text(str(n))
    for kind in ("added", "modified", "removed"):
        title = page.get_by_test_id(f"cmp-bytes-{kind}").get_attribute("title")
        assert title == f"{cmp[kind + '_bytes']:,} bytes"
    rows = {
        (r.get_attribute("data-status"), r.get_attribute("data-path"))
        for r in page.get_by_test_id("cmp-row").all()
    }
    want = {(k, p) for k in ("added", "modified", "removed") for p in cmp[k]}
    assert want <= rows
    assert len(rows) == page.get_by_test_id("cmp-row").count()


def test_compare_matches_cli(cat: Catalogue, server: Server, page: Page) -> None:
    cmp = cat.dsm.json("compare", "--source", cat.v1, "--target", cat.v4)
    for kind in ("added", "removed", "renamed"):
        assert cmp[kind], f"the catalogue should give a compare with {kind} files"
    open_page(page, f"{server.url}/compare?source={cat.v1}&target={cat.v4}")
    expect_compare(page, cmp)
    shot(page, "compare")

    # the pickers: another pair, typed in
    cmp2 = cat.dsm.json("compare", "--source", cat.v1, "--target", cat.v2)
    assert cmp2["modified"] == ["keep.txt"]
    page.get_by_test_id("pick-source").fill(cat.v1)
    page.get_by_test_id("pick-target").fill(cat.v2)
    page.get_by_test_id("compare-go").click()
    expect(page.get_by_test_id("cmp-target")).to_have_attribute("href", f"/v/{cat.v2}")
    expect_compare(page, cmp2)
    assert f"target={cat.v2}" in page.url

    # "compare with parent" on the version page
    open_page(page, f"{server.url}/v/{cat.v3}")
    page.get_by_test_id("compare-parent").click()
    page.wait_for_url("**/compare?*")
    page.wait_for_selector("body[data-ready='1']")
    cmp3 = cat.dsm.json("compare", "--source", cat.v1, "--target", cat.v3)
    assert len(cmp3["renamed"]) == 1
    expect_compare(page, cmp3)


# ----- mounts -----------------------------------------------------------------------------------------


@pytest.mark.uses_fuse
def test_mounts_page_shows_a_live_mount(cat: Catalogue, server: Server, page: Page, tmp_path: Path) -> None:
    from tests.integration.mount_fixtures import daemon_pid, mounted, wait_for

    open_page(page, f"{server.url}/mounts")
    expect(page.get_by_test_id("no-mounts")).to_have_count(1)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    cat.dsm("mount", cat.v2, mnt)
    try:
        assert mounted(mnt)
        status = cat.dsm.json("status")
        mine = [m for m in status if m["mountpoint"] == str(mnt.resolve())]
        assert len(mine) == 1
        open_page(page, f"{server.url}/mounts")
        expect(page.get_by_test_id("mount-row")).to_have_count(1)
        row = page.get_by_test_id("mount-row")
        assert row.get_by_test_id("mount-point").inner_text() == mine[0]["mountpoint"]
        assert row.get_by_test_id("mount-state").inner_text() == mine[0]["state"]
        expect(row.locator(f"a[href='/v/{cat.v2}']")).to_have_count(1)
        shot(page, "mounts")
    finally:
        pid = daemon_pid(cat.dsm.home, mnt) if mounted(mnt) else None
        cat.dsm("unmount", mnt, rc=None)
        if pid is not None and not wait_for(lambda: not mounted(mnt), 10):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            subprocess.run(["fusermount3", "-u", "-z", str(mnt)], check=False, capture_output=True)
    open_page(page, f"{server.url}/mounts")
    expect(page.get_by_test_id("mount-row")).to_have_count(0)


# ----- actions ----------------------------------------------------------------------------------------


def test_actions_after_confirmation(cat: Catalogue, page: Page, page_errors: list[str]) -> None:
    before = cat.dsm.json("show", cat.v3)
    with ui_server(cat.dsm, "--allow-changes") as srv:
        open_page(page, f"{srv.url}/v/{cat.v3}")
        expect(page.get_by_test_id("mode")).to_have_text("changes allowed")
        expect(page.get_by_test_id("action-publish")).to_have_count(1)
        expect(page.get_by_test_id("action-delete")).to_have_count(1)

        # cancel: nothing is sent
        page.get_by_test_id("action-description").click()
        expect(page.get_by_test_id("confirm-dialog")).to_be_visible()
        page.get_by_test_id("confirm-field-description").fill("never saved")
        page.get_by_test_id("confirm-cancel").click()
        expect(page.get_by_test_id("confirm-dialog")).to_have_count(0)
        assert cat.dsm.json("show", cat.v3)["description"] == before["description"]

        # confirm: saved, and the page shows it after reloading
        text = "Renamed y to z.\nChecked in the browser test."
        page.get_by_test_id("action-description").click()
        page.get_by_test_id("confirm-field-description").fill(text)
        with page.expect_navigation():
            page.get_by_test_id("confirm-ok").click()
        page.wait_for_selector("body[data-ready='1']")
        expect(page.get_by_test_id("description")).to_have_text(text)
        assert cat.dsm.json("show", cat.v3)["description"] == text

        page.get_by_test_id("action-tags").click()
        page.get_by_test_id("confirm-field-tags").fill("renamed, checked")
        with page.expect_navigation():
            page.get_by_test_id("confirm-ok").click()
        page.wait_for_selector("body[data-ready='1']")
        expect(page.get_by_test_id("meta-tags").get_by_test_id("tag")).to_have_text(["renamed", "checked"])
        assert cat.dsm.json("show", cat.v3)["tags"] == ["renamed", "checked"]
        shot(page, "dataset-edited")

        # publish v3: confirmed, then the list's state filter finds it
        expect(page.get_by_test_id("state").first).to_have_text("closed")
        page.get_by_test_id("action-publish").click()
        expect(page.get_by_test_id("confirm-message")).to_contain_text("proj/data@1.0.2")
        with page.expect_navigation():
            page.get_by_test_id("confirm-ok").click()
        page.wait_for_selector("body[data-ready='1']")
        expect(page.get_by_test_id("version-title").get_by_test_id("state")).to_have_text("published")
        assert cat.dsm.json("show", cat.v3)["state"] == "published"
        expect(page.get_by_test_id("action-publish")).to_have_count(0)
        open_page(page, f"{srv.url}/")
        page.get_by_test_id("filter-state").select_option("published")
        expect(page.get_by_test_id("dataset-row")).to_have_count(1)
        assert row_ids(page) == [cat.v3]

        # delete the version nobody depends on: back on the list, and gone from the catalogue
        open_page(page, f"{srv.url}/v/{cat.other}")
        page.get_by_test_id("action-delete").click()
        expect(page.get_by_test_id("confirm-dialog")).to_be_visible()
        with page.expect_navigation():
            page.get_by_test_id("confirm-ok").click()
        page.wait_for_selector("body[data-ready='1']")
        assert page.url.rstrip("/") == srv.url
        expect(page.get_by_test_id("dataset-row")).to_have_count(4)
        assert cat.other not in row_ids(page)
        assert cat.other not in {v["id"] for v in cat.dsm.json("search")}

        # a refusal (v1 is a parent) is shown on the page, and nothing changes
        open_page(page, f"{srv.url}/v/{cat.v1}")
        page.get_by_test_id("action-delete").click()
        page.get_by_test_id("confirm-ok").click()
        expect(page.get_by_test_id("action-status").get_by_test_id("error")).to_have_count(1)
        assert cat.v1 in {v["id"] for v in cat.dsm.json("search")}
        assert page_errors == [f"HTTP 409 POST {srv.url}/api/versions/{cat.v1}/delete"]
        page_errors.clear()
