"""Tree diffs and change tables: tables of expected answers, and round-trip properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mountfs.snapshot.entries import FILE, LINK, SYMLINK, TOMBSTONE, Entry, Location, is_under
from mountfs.tree.diff import change_table, diff_trees, same_content
from mountfs.tree.merge import apply_changes


def f(path: str, sha: str = "h", size: int = 1, **kw: object) -> Entry:
    return Entry(path, FILE, size=size, sha256=sha, **kw)  # type: ignore[arg-type]


def tree(*entries: Entry) -> dict[str, Entry]:
    return {e.path: e for e in entries}


def paths(entries: list[Entry]) -> list[str]:
    return [e.path for e in entries]


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        pytest.param(f("x"), f("x"), True, id="equal"),
        pytest.param(f("x"), f("x", mtime_ns=5, origin="v2"), True, id="mtime-and-origin-ignored"),
        pytest.param(f("x"), f("x", loc=Location("v", 0, 0, 1, 0, 0)), True, id="location-ignored"),
        pytest.param(f("x"), f("x", "other"), False, id="sha"),
        pytest.param(f("x"), f("x", size=2), False, id="size"),
        pytest.param(f("x"), f("x", mode=0o755), False, id="mode"),
        pytest.param(f("x"), Entry("x", LINK, size=1, sha256="h"), False, id="kind"),
        pytest.param(Entry("x", SYMLINK, target="a"), Entry("x", SYMLINK, target="b"), False, id="target"),
    ],
)
def test_same_content(a: Entry, b: Entry, same: bool) -> None:
    assert same_content(a, b) is same


@pytest.mark.parametrize(
    ("old", "new", "added", "modified", "removed", "renamed"),
    [
        pytest.param(tree(), tree(), [], [], [], [], id="empty"),
        pytest.param(
            tree(f("a"), f("b", "1"), f("c")),
            tree(f("b", "2", size=5), f("c", mtime_ns=9), f("d")),
            ["d"],
            ["b"],
            ["a"],
            [("a", "d")],
            id="add-modify-remove-with-rename",
        ),
        pytest.param(
            tree(f("old/1", "s"), f("old/2", "s"), f("keep", "k")),
            tree(f("new/1", "s"), f("keep", "k")),
            ["new/1"],
            [],
            ["old/1", "old/2"],
            [("old/1", "new/1")],
            id="rename-pairs-each-once",
        ),
        pytest.param(
            tree(Entry("l", SYMLINK, target="t")),
            tree(Entry("m", SYMLINK, target="t")),
            ["m"],
            [],
            ["l"],
            [],
            id="symlinks-never-renames",
        ),
        pytest.param(
            tree(Entry("u", LINK, sha256="")),
            tree(Entry("v", LINK, sha256="")),
            ["v"],
            [],
            ["u"],
            [],
            id="unknown-hash-never-renames",
        ),
        pytest.param(tree(f("a")), tree(f("a/b")), ["a/b"], [], ["a"], [("a", "a/b")], id="file-to-folder"),
    ],
)
def test_diff_trees(
    old: dict[str, Entry],
    new: dict[str, Entry],
    added: list[str],
    modified: list[str],
    removed: list[str],
    renamed: list[tuple[str, str]],
) -> None:
    diff = diff_trees(old, new)
    assert paths(diff.added) == added
    assert [n.path for _, n in diff.modified] == modified
    assert all(o.path == n.path for o, n in diff.modified)
    assert paths(diff.removed) == removed
    assert [(r.path, a.path) for r, a in diff.renamed] == renamed


def test_diff_byte_counts() -> None:
    diff = diff_trees(tree(f("a", size=3), f("b", "1", size=4)), tree(f("b", "2", size=10), f("c", size=7)))
    assert (diff.added_bytes, diff.modified_bytes, diff.removed_bytes) == (7, 10, 3)


def t(path: str) -> Entry:
    return Entry(path, TOMBSTONE)


@pytest.mark.parametrize(
    ("base", "new", "expected"),
    [
        pytest.param(tree(f("a")), tree(f("a")), [], id="no-change"),
        pytest.param(
            tree(f("d/x"), f("d/e/y"), f("k")), tree(f("k")), [t("d")], id="whole-folder-one-tombstone"
        ),
        pytest.param(
            tree(f("d/e/x"), f("d/e/y"), f("d/z")),
            tree(f("d/z")),
            [t("d/e")],
            id="topmost-fully-removed-folder",
        ),
        pytest.param(
            tree(f("d/x"), f("d/y"), f("d/z")),
            tree(f("d/z")),
            [t("d/x"), t("d/y")],
            id="partly-removed-per-file",
        ),
        pytest.param(
            tree(f("d/x"), f("d/y")),
            tree(f("d/new")),
            [f("d/new"), t("d/x"), t("d/y")],
            id="removed-folder-with-new-file-below",
        ),
        pytest.param(
            tree(f("d/x"), f("d/e/y")),
            tree(f("d", "file")),
            [f("d", "file"), t("d/e"), t("d/x")],
            id="folder-replaced-by-file-never-lists-a-path-twice",
        ),
        pytest.param(tree(f("d", "file")), tree(f("d/x")), [t("d"), f("d/x")], id="file-replaced-by-folder"),
        pytest.param(
            tree(f("a", "1"), f("b")),
            tree(f("a", "2"), f("b", mtime_ns=7)),
            [f("a", "2")],
            id="modified-only",
        ),
    ],
)
def test_change_table(base: dict[str, Entry], new: dict[str, Entry], expected: list[Entry]) -> None:
    table = change_table(base, new)
    assert table == expected
    assert {p: (e.sha256, e.size) for p, e in apply_changes(base, table).items()} == {
        p: (e.sha256, e.size) for p, e in new.items()
    }


def test_change_table_keeps_entries_as_they_are() -> None:
    entry = f("x", loc=Location("v1", 2, 30, 4, 0, 5), origin="v1")
    assert change_table({}, tree(entry))[0] is entry


# ---- properties -------------------------------------------------------------------------------------

path_st = st.lists(st.sampled_from("abc"), min_size=1, max_size=4).map("/".join)
entry_st = st.builds(
    lambda p, k, s, m: Entry(p, k, size=len(s), sha256=s if k != SYMLINK else "", mode=m, target=s),
    path_st,
    st.sampled_from([FILE, LINK, SYMLINK]),
    st.sampled_from(["", "p", "qq"]),
    st.sampled_from([0o644, 0o755]),
)


def as_tree(entries: list[Entry]) -> dict[str, Entry]:
    """A valid tree: later entries win, and nothing lies below a file."""
    chosen = {e.path: e for e in entries}
    return {p: e for p, e in chosen.items() if not any(q != p and is_under(p, q) for q in chosen)}


trees = st.lists(entry_st, max_size=15).map(as_tree)


@settings(max_examples=400, deadline=None)
@given(trees, trees)
def test_change_table_turns_base_into_new(base: dict[str, Entry], new: dict[str, Entry]) -> None:
    table = change_table(base, new)
    result = apply_changes(base, table)
    assert result.keys() == new.keys()
    assert all(same_content(result[p], new[p]) for p in new)
    assert paths(table) == sorted(paths(table))
    assert len(set(paths(table))) == len(table)
    diff = diff_trees(base, new)
    assert len([e for e in table if e.kind != TOMBSTONE]) == len(diff.added) + len(diff.modified)
    # Minimal: every tombstone removes something that actually goes away.
    for stone in (e for e in table if e.kind == TOMBSTONE):
        below = [p for p in base if is_under(p, stone.path)]
        assert below
        assert not any(p in new for p in below)
        if stone.path not in base:  # a folder tombstone: nothing of the new tree below it
            assert not any(is_under(p, stone.path) for p in new)


@settings(max_examples=400, deadline=None)
@given(trees, trees)
def test_diff_partitions_paths(old: dict[str, Entry], new: dict[str, Entry]) -> None:
    diff = diff_trees(old, new)
    assert set(paths(diff.added)) == new.keys() - old.keys()
    assert set(paths(diff.removed)) == old.keys() - new.keys()
    unchanged = {p for p in old.keys() & new.keys() if same_content(old[p], new[p])}
    assert {n.path for _, n in diff.modified} == (old.keys() & new.keys()) - unchanged
    for removed, added in diff.renamed:
        assert removed.sha256 == added.sha256 != ""
    assert len({r.path for r, _ in diff.renamed}) == len(diff.renamed)
    assert len({a.path for _, a in diff.renamed}) == len(diff.renamed)
    assert diff_trees(old, old) == diff_trees({}, {})
