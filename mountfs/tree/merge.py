"""The DAG merge: the full tree of a version from its parents' trees and its own file table.

A *tree* maps a canonical path to its Entry and holds only FILE, LINK and SYMLINK entries;
folders are implicit. A valid tree never holds a path together with a path below it (a
file 'a' and a file 'a/b'), and every function here returns a valid tree when given
valid trees.

Semantics, per version and recursive (this is the contract every reader relies on):

1. ``merge_parents``: the parents' merged trees are united in their listed order and a
   later parent wins per path (ClearML's ``dict.update``). A later parent's path also
   wins a file/folder conflict: its file 'a' removes an earlier 'a/...', its 'a/b'
   removes an earlier file 'a'. Zero parents give the empty tree.
2. ``apply_changes``: the version's own file table is applied to that union. First every
   TOMBSTONE removes its path and everything below it (one tombstone removes a whole
   folder); then every other entry is set in listed order, removing whatever conflicts
   with it (a file at any ancestor, everything below the path), so among conflicting or
   repeated entries of one table the last one listed wins.
3. ``merge_dag``: the tree of a version is step 2 over step 1 over the *merged trees* of
   its parents. It is not a replay of every ancestor's changes in topological order: a
   tombstone acts only within its own version. In the diamond A -> B (B removes x),
   A -> C (C keeps x), D(parents=[B, C]) contains x, because C's tree has x and C is
   the later parent; D(parents=[C, B]) contains x too, because B's tree merely lacks
   x and lacking a path removes nothing.

Entries pass through unchanged, so ``origin`` stays the version that introduced them.
Removing a folder and checking a new path for conflicts use a sorted index of the keys
(built only when first needed, then kept up to date without re-sorting), never a scan
of the tree.
Nothing here does I/O: the callers read file tables and store results.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping, Sequence

from mountfs.errors import IntegrityError
from mountfs.snapshot.entries import FILE, LINK, SYMLINK, TOMBSTONE, Entry

Tree = dict[str, Entry]

TREE_KINDS = frozenset((FILE, LINK, SYMLINK))
"""The kinds a tree may hold: a tombstone is an instruction, never content."""

_REBUILD_MIN = 4096


def _ancestors(path: str) -> Iterator[str]:
    i = path.find("/")
    while i != -1:
        yield path[:i]
        i = path.find("/", i + 1)


class _Editor:
    """A tree we own, edited in place, with what it takes to find folders without a scan.

    A sorted list of the keys (built when first needed) answers "is this a folder" and
    "what lies below it" by bisection. Keys added afterwards go to a plain list, and their
    ancestor folders to a set, so adding many paths never re-sorts; the list is scanned
    only when a folder it touches is queried and is folded into a fresh sort once it
    grows large. Keys removed from the tree may linger in the sorted list; every use
    checks the tree, so they cost a little time, never a wrong answer.
    """

    __slots__ = ("_added", "_added_folders", "_sorted", "tree")

    def __init__(self, tree: Tree) -> None:
        self.tree = tree
        self._sorted: list[str] | None = None
        self._added: list[str] = []
        self._added_folders: set[str] = set()

    def _keys(self, fresh: bool = False) -> list[str]:
        if self._sorted is None or (fresh and len(self._added) > max(_REBUILD_MIN, len(self._sorted) >> 3)):
            self._sorted = sorted(self.tree)
            self._added = []
            self._added_folders = set()
        return self._sorted

    def _is_folder(self, path: str) -> bool:
        if path in self._added_folders:
            return True
        keys = self._keys()
        prefix = path + "/"
        i = bisect_left(keys, prefix)
        return i < len(keys) and keys[i].startswith(prefix)

    def _below(self, folder: str) -> list[str]:
        keys = self._keys(fresh=True)
        lo_key, hi_key = folder + "/", folder + "0"  # '0' follows '/': all of 'folder/...' lie between
        lo = bisect_left(keys, lo_key)
        found = keys[lo : bisect_left(keys, hi_key, lo)]
        if folder in self._added_folders:
            found += [k for k in self._added if k.startswith(lo_key)]
        return found

    def remove(self, path: str) -> None:
        tree = self.tree
        if tree.pop(path, None) is None and self._is_folder(path):
            for key in self._below(path):
                tree.pop(key, None)

    def put(self, entry: Entry) -> None:
        tree = self.tree
        path = entry.path
        if path in tree:  # replacing a file: a valid tree has no conflict with it
            tree[path] = entry
            return
        folders = list(_ancestors(path))
        for folder in folders:
            tree.pop(folder, None)
        if self._is_folder(path):
            for key in self._below(path):
                tree.pop(key, None)
        tree[path] = entry
        self._added.append(path)
        self._added_folders.update(folders)


def _apply(editor: _Editor, changes: Iterable[Entry]) -> None:
    sets: list[Entry] = []
    for entry in changes:
        if entry.kind == TOMBSTONE:
            editor.remove(entry.path)
        elif entry.kind in TREE_KINDS:
            sets.append(entry)
        else:
            raise IntegrityError(f"unknown entry kind {entry.kind!r} for {entry.path!r}")
    for entry in sets:
        editor.put(entry)


def _overlay(editor: _Editor, parent: Mapping[str, Entry]) -> None:
    for entry in parent.values():
        editor.put(entry)


def apply_changes(base: Mapping[str, Entry], changes: Iterable[Entry]) -> Tree:
    """Return ``base`` with one version's file table applied (tombstones first, then sets)."""
    editor = _Editor(dict(base))
    _apply(editor, changes)
    return editor.tree


def merge_parents(parent_trees: Sequence[Mapping[str, Entry]]) -> Tree:
    """Return the ordered union of the parents' trees; a later parent wins per path."""
    if not parent_trees:
        return {}
    editor = _Editor(dict(parent_trees[0]))
    for parent in parent_trees[1:]:
        _overlay(editor, parent)
    return editor.tree


def merge_version(parent_trees: Sequence[Mapping[str, Entry]], own_changes: Iterable[Entry]) -> Tree:
    """Return a version's tree from its parents' merged trees and its own file table."""
    return apply_changes(merge_parents(parent_trees), own_changes)


def topo_order(target: str, parents: Mapping[str, Sequence[str]]) -> list[str]:
    """Return ``target`` and its ancestors, each after all of its parents, ``target`` last.

    Depth-first post-order following each parent list in order, so the same DAG always
    gives the same order. Iterative, so a chain of any depth is fine.
    """
    if target not in parents:
        raise IntegrityError(f"version {target} is missing from the DAG")
    order: list[str] = []
    done: set[str] = set()
    on_path: dict[str, int] = {target: 0}
    stack: list[tuple[str, int]] = [(target, 0)]
    while stack:
        version, i = stack[-1]
        plist = parents[version]
        if i < len(plist):
            stack[-1] = (version, i + 1)
            parent = plist[i]
            if parent in done:
                continue
            if parent in on_path:
                cycle = [v for v, _ in stack[on_path[parent] :]] + [parent]
                raise IntegrityError(f"version {parent} is its own ancestor: {' -> '.join(cycle)}")
            if parent not in parents:
                raise IntegrityError(f"version {version} lists parent {parent}, which is missing")
            on_path[parent] = len(stack)
            stack.append((parent, 0))
        else:
            stack.pop()
            del on_path[version]
            done.add(version)
            order.append(version)
    return order


def merge_dag(
    target: str, parents: Mapping[str, Sequence[str]], tables: Mapping[str, Sequence[Entry]]
) -> Tree:
    """Return the merged tree of ``target`` given every version's parents and own file table.

    Each version's tree is computed once. A tree is dropped as soon as no remaining
    version needs it, and handed over without a copy to a single child that is its last
    user, so a long chain costs its changes, not one tree copy per version.
    """
    order = topo_order(target, parents)
    for version in order:
        if version not in tables:
            raise IntegrityError(f"version {version} has no file table")
    uses: dict[str, int] = {}
    for version in order:
        for parent in parents[version]:
            uses[parent] = uses.get(parent, 0) + 1
    built: dict[str, _Editor] = {}
    for version in order:
        plist = parents[version]
        if not plist:
            editor = _Editor({})
        else:
            first = plist[0]
            # The last user of a tree takes it over instead of copying it.
            editor = built.pop(first) if uses[first] == 1 else _Editor(dict(built[first].tree))
            for parent in plist[1:]:
                _overlay(editor, built[parent].tree)
            for parent in plist:
                uses[parent] -= 1
                if uses[parent] == 0:
                    built.pop(parent, None)
        _apply(editor, tables[version])
        built[version] = editor
    return built[target].tree
