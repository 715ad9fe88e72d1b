"""The DAG merge: table tests of its semantics and properties against a naive reference."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mountfs.tree.merge as merge_module
from mountfs.errors import IntegrityError
from mountfs.snapshot.entries import FILE, LINK, SYMLINK, TOMBSTONE, Entry, is_under
from mountfs.tree.diff import change_table
from mountfs.tree.merge import apply_changes, merge_dag, merge_parents, merge_version, topo_order


def f(path: str, sha: str = "h", origin: str = "") -> Entry:
    return Entry(path, FILE, size=len(sha), sha256=sha, origin=origin)


def gone(path: str) -> Entry:
    return Entry(path, TOMBSTONE)


def view(tree: Mapping[str, Entry]) -> dict[str, str]:
    """path -> sha, the part of a tree these tables talk about."""
    return {p: e.sha256 for p, e in tree.items()}


# Each case: parents {version: [parents]}, tables {version: [changes]}, target, expected {path: sha}.
DAG_CASES = [
    pytest.param(
        {"A": [], "B": ["A"], "C": ["B"]},
        {"A": [f("x", "1"), f("y", "1")], "B": [f("x", "2"), f("z", "1")], "C": [gone("y")]},
        "C",
        {"x": "2", "z": "1"},
        id="chain-add-modify-remove",
    ),
    pytest.param(
        {"A": [], "B": ["A"], "C": ["B"]},
        {"A": [f("x", "1")], "B": [gone("x")], "C": [f("x", "3")]},
        "C",
        {"x": "3"},
        id="remove-then-readd-later-version",
    ),
    pytest.param(
        {"A": [], "B": ["A"]},
        {"A": [f("a/x", "1"), f("a/y", "1"), f("b", "1")], "B": [gone("a"), f("a/x", "2")]},
        "B",
        {"a/x": "2", "b": "1"},
        id="remove-then-readd-same-version",
    ),
    pytest.param(
        {"A": [], "B": ["A"]},
        {"A": [f("a/x"), f("a/b/y"), f("ab"), f("a.txt"), f("c/a/x")], "B": [gone("a")]},
        "B",
        {"ab": "h", "a.txt": "h", "c/a/x": "h"},
        id="folder-tombstone",
    ),
    pytest.param(
        {"A": [], "B": ["A"], "C": ["A"], "D": ["B", "C"]},
        {"A": [f("x", "1"), f("k", "1")], "B": [gone("x")], "C": [f("k", "2")], "D": []},
        "D",
        {"x": "1", "k": "2"},
        id="diamond-remover-first",
    ),
    pytest.param(
        {"A": [], "B": ["A"], "C": ["A"], "D": ["C", "B"]},
        {"A": [f("x", "1"), f("k", "1")], "B": [gone("x")], "C": [f("k", "2")], "D": []},
        "D",
        {"x": "1", "k": "1"},
        id="diamond-remover-last",
    ),
    pytest.param(
        {"A": [], "B": [], "C": [], "D": ["A", "B", "C"]},
        {
            "A": [f("p", "a"), f("q", "a"), f("r", "a")],
            "B": [f("p", "b"), f("q", "b")],
            "C": [f("p", "c")],
            "D": [],
        },
        "D",
        {"p": "c", "q": "b", "r": "a"},
        id="three-parents-later-wins",
    ),
    pytest.param(
        {"A": [], "B": [], "D": ["A", "B"]},
        {"A": [f("a", "1"), f("z", "1")], "B": [f("a/b", "2")], "D": []},
        "D",
        {"a/b": "2", "z": "1"},
        id="file-then-folder",
    ),
    pytest.param(
        {"A": [], "B": [], "D": ["A", "B"]},
        {"A": [f("a/b", "1"), f("a/c/d", "1"), f("z", "1")], "B": [f("a", "2")], "D": []},
        "D",
        {"a": "2", "z": "1"},
        id="folder-then-file",
    ),
    pytest.param(
        {"A": [], "B": ["A"]},
        {"A": [f("a/b", "1")], "B": [f("a", "2"), f("a/c", "3")]},
        "B",
        {"a/c": "3"},
        id="conflict-within-one-table-last-wins",
    ),
    pytest.param(
        {"A": [], "B": ["A"]},
        {"A": [f("a", "1")], "B": [f("a", "2"), f("a", "3")]},
        "B",
        {"a": "3"},
        id="duplicate-in-one-table-last-wins",
    ),
    pytest.param(
        {"A": [], "B": ["A"]},
        {"A": [f("a")], "B": [gone("nothing/here"), gone("a/b")]},
        "B",
        {"a": "h"},
        id="tombstone-of-absent-path-is-noop",
    ),
]


@pytest.mark.parametrize(("parents", "tables", "target", "expected"), DAG_CASES)
def test_merge_dag_table(
    parents: dict[str, list[str]],
    tables: dict[str, list[Entry]],
    target: str,
    expected: dict[str, str],
) -> None:
    assert view(merge_dag(target, parents, tables)) == expected


def test_diamond_matches_merge_version_by_hand() -> None:
    a = apply_changes({}, [f("x", "1")])
    b = apply_changes(a, [gone("x")])
    c = apply_changes(a, [])
    assert "x" in merge_version([b, c], [])
    assert "x" in merge_version([c, b], [])


def test_origins_are_preserved() -> None:
    parents = {"A": [], "B": ["A"], "C": ["B"]}
    tables = {
        "A": [f("x", "1", origin="A"), f("y", "1", origin="A")],
        "B": [f("y", "2", origin="B")],
        "C": [f("z", "1", origin="C")],
    }
    tree = merge_dag("C", parents, tables)
    assert {p: e.origin for p, e in tree.items()} == {"x": "A", "y": "B", "z": "C"}
    assert tree["x"] is tables["A"][0]


def test_base_is_never_mutated() -> None:
    base = {"a/x": f("a/x"), "b": f("b")}
    snapshot = dict(base)
    apply_changes(base, [gone("a"), f("b/c"), f("n")])
    merge_parents([base, {"a": f("a")}])
    assert base == snapshot


def test_merge_parents_edge_cases() -> None:
    assert merge_parents([]) == {}
    one = {"a": f("a")}
    copy = merge_parents([one])
    assert copy == one
    assert copy is not one


def test_deep_chain_has_no_recursion_limit() -> None:
    n = 2000
    parents = {f"v{i}": ([f"v{i - 1}"] if i else []) for i in range(n)}
    tables = {f"v{i}": [f(f"d{i % 7}/f{i}", str(i), origin=f"v{i}")] for i in range(n)}
    tables["v1999"] = [*tables["v1999"], gone("d0")]
    tree = merge_dag("v1999", parents, tables)
    assert len(tree) == n - len([i for i in range(n) if i % 7 == 0])
    assert tree["d4/f1999"].origin == "v1999"
    assert "d0/f1995" not in tree
    order = topo_order("v1999", parents)
    assert order[0] == "v0"
    assert order[-1] == "v1999"


@pytest.mark.parametrize(
    ("parents", "target", "needle"),
    [
        pytest.param({"A": ["B"], "B": ["A"]}, "A", "A", id="two-cycle"),
        pytest.param({"A": ["A"]}, "A", "A", id="self-parent"),
        pytest.param({"A": [], "B": ["A", "C"], "C": ["D"], "D": ["B"]}, "B", "B", id="long-cycle"),
        pytest.param({"A": [], "B": ["A", "ghost"]}, "B", "ghost", id="missing-parent"),
        pytest.param({"A": []}, "ghost", "ghost", id="missing-target"),
    ],
)
def test_bad_dag_raises_integrity_error(parents: dict[str, list[str]], target: str, needle: str) -> None:
    with pytest.raises(IntegrityError, match=needle):
        topo_order(target, parents)
    with pytest.raises(IntegrityError, match=needle):
        merge_dag(target, parents, {v: [] for v in parents})


def test_missing_file_table_raises() -> None:
    with pytest.raises(IntegrityError, match="B"):
        merge_dag("B", {"A": [], "B": ["A"]}, {"A": []})


def test_unknown_kind_raises() -> None:
    with pytest.raises(IntegrityError, match="bogus"):
        apply_changes({}, [Entry("a", "bogus")])


def test_topo_order_is_post_order_in_parent_order() -> None:
    parents = {"A": [], "B": ["A"], "C": ["A"], "D": ["C", "B"]}
    assert topo_order("D", parents) == ["A", "C", "B", "D"]


def test_apply_changes_is_fast_on_a_large_tree() -> None:
    base = {f"d{i % 100}/s{i % 7}/f{i}": f(f"d{i % 100}/s{i % 7}/f{i}") for i in range(100_000)}
    changes = [gone(f"d{i}") for i in range(10)]
    changes += [f(f"new{i}/x") for i in range(490)]
    changes += [f(f"d50/s{i % 7}/f{i}", "2") for i in range(50, 50_050, 100)]
    start = time.perf_counter()
    tree = apply_changes(base, changes)
    elapsed = time.perf_counter() - start
    print(f"apply_changes: 1,000 changes on 100,000 entries in {elapsed * 1000:.1f} ms")
    assert len(tree) == 100_000 - 10_000 + 490
    assert tree["d50/s0/f350"].sha256 == "2"
    assert elapsed < 5  # generous: the target is well under 0.5 s, measured in bench/


# ---- properties against a naive, obviously correct reference -------------------------------------


def naive_set(tree: dict[str, Entry], entry: Entry) -> None:
    for path in list(tree):
        if is_under(path, entry.path) or is_under(entry.path, path):
            del tree[path]
    tree[entry.path] = entry


def naive_version(parent_trees: Sequence[dict[str, Entry]], changes: Sequence[Entry]) -> dict[str, Entry]:
    tree: dict[str, Entry] = {}
    for parent in parent_trees:
        for entry in parent.values():
            naive_set(tree, entry)
    for change in changes:
        if change.kind == TOMBSTONE:
            tree = {p: e for p, e in tree.items() if not is_under(p, change.path)}
    for change in changes:
        if change.kind != TOMBSTONE:
            naive_set(tree, change)
    return tree


def naive_dag(
    target: str, parents: Mapping[str, Sequence[str]], tables: Mapping[str, Sequence[Entry]]
) -> dict[str, Entry]:
    return naive_version([naive_dag(p, parents, tables) for p in parents[target]], tables[target])


paths = st.lists(st.sampled_from("abc"), min_size=1, max_size=3).map("/".join)
kinds = st.sampled_from([FILE, FILE, LINK, SYMLINK, TOMBSTONE, TOMBSTONE])


@st.composite
def change(draw: st.DrawFn, origin: str) -> Entry:
    kind = draw(kinds)
    path = draw(paths)
    if kind == TOMBSTONE:
        return Entry(path, TOMBSTONE)
    return Entry(path, kind, sha256=draw(st.sampled_from("xyz")), origin=origin)


@st.composite
def dags(draw: st.DrawFn) -> tuple[dict[str, list[str]], dict[str, list[Entry]]]:
    n = draw(st.integers(1, 7))
    names = [f"v{i}" for i in range(n)]
    parents: dict[str, list[str]] = {}
    tables: dict[str, list[Entry]] = {}
    for i, name in enumerate(names):
        chosen = draw(st.lists(st.sampled_from(names[:i]), unique=True, max_size=3)) if i else []
        parents[name] = chosen
        tables[name] = draw(st.lists(change(name), max_size=6))
    return parents, tables


@settings(max_examples=300, deadline=None)
@given(dags())
def test_merge_dag_matches_naive_reference(dag: tuple[dict[str, list[str]], dict[str, list[Entry]]]) -> None:
    parents, tables = dag
    for target in parents:
        assert merge_dag(target, parents, tables) == naive_dag(target, parents, tables)


@settings(max_examples=200, deadline=None)
@given(dags())
def test_merge_dag_matches_reference_when_the_key_index_is_rebuilt_often(
    dag: tuple[dict[str, list[str]], dict[str, list[Entry]]],
) -> None:
    parents, tables = dag
    saved = merge_module._REBUILD_MIN
    merge_module._REBUILD_MIN = 0  # small trees then take the re-sort path as well as the added-list path
    try:
        for target in parents:
            assert merge_dag(target, parents, tables) == naive_dag(target, parents, tables)
    finally:
        merge_module._REBUILD_MIN = saved


def test_large_tables_with_folder_removals_and_replacements() -> None:
    first = [f(f"d{i % 40}/s{i % 3}/f{i}", origin="A") for i in range(20_000)]
    second = [gone("d1"), gone("d2/s0"), f("d3/s1", "file"), f("d4/s2/f2", "2"), f("d5/s2/f5/deeper", "3")]
    second += [f(f"d1/again{i}") for i in range(3)]
    tree = merge_dag("B", {"A": [], "B": ["A"]}, {"A": first, "B": second})
    expected = {e.path: e.sha256 for e in first}
    expected = {
        p: h
        for p, h in expected.items()
        if not (is_under(p, "d1") or is_under(p, "d2/s0") or is_under(p, "d3/s1") or p == "d5/s2/f5")
    }
    expected |= {"d3/s1": "file", "d4/s2/f2": "2", "d5/s2/f5/deeper": "3"}
    expected |= {f"d1/again{i}": "h" for i in range(3)}
    assert view(tree) == expected
    assert "d5/s2/f5" not in tree


def valid_tree(draw_paths: list[str], sha: str, origin: str) -> dict[str, Entry]:
    """Make a tree with no path below another by dropping paths that have an ancestor."""
    chosen = set(draw_paths)
    keep = [p for p in chosen if not any(is_under(p, q) and p != q for q in chosen)]
    return {p: Entry(p, FILE, size=len(p), sha256=sha + p[-1], origin=origin) for p in keep}


@settings(max_examples=300, deadline=None)
@given(
    st.lists(paths, max_size=12),
    st.lists(paths, max_size=12),
    st.sampled_from("xy"),
)
def test_change_table_round_trip(base_paths: list[str], new_paths: list[str], sha: str) -> None:
    base = valid_tree(base_paths, "x", "old")
    new = valid_tree(new_paths, sha, "new")
    table = change_table(base, new)
    strip = {p: (e.kind, e.sha256, e.size) for p, e in new.items()}
    assert {p: (e.kind, e.sha256, e.size) for p, e in apply_changes(base, table).items()} == strip
    assert len({e.path for e in table}) == len(table)
