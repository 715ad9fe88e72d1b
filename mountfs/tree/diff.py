"""Differences between two trees, and the file table that turns one into the other.

``diff_trees`` answers compare, diff and the list_added/modified/removed calls;
``change_table`` is how a new version is recorded: only its change against the merged
tree of its parents, never the whole listing. Content equality ignores mtime, byte
location and origin: a file re-added with the same bytes, mode and target is not a
change, so it is neither listed nor stored again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from mountfs.snapshot.entries import FILE, LINK, TOMBSTONE, Entry


def same_content(a: Entry, b: Entry) -> bool:
    """True when a reader of the tree could not tell ``a`` from ``b`` by content or metadata it serves."""
    return (
        a.kind == b.kind
        and a.sha256 == b.sha256
        and a.size == b.size
        and a.target == b.target
        and a.mode == b.mode
    )


@dataclass(frozen=True)
class TreeDiff:
    added: list[Entry]
    """In the new tree only, sorted by path."""
    modified: list[tuple[Entry, Entry]]
    """(old, new) for paths in both whose content differs (see ``same_content``), sorted by path."""
    removed: list[Entry]
    """In the old tree only, sorted by path."""

    @property
    def added_bytes(self) -> int:
        return sum(e.size for e in self.added)

    @property
    def modified_bytes(self) -> int:
        """Sizes after the change: what a reader of the new tree fetches anew."""
        return sum(new.size for _, new in self.modified)

    @property
    def removed_bytes(self) -> int:
        return sum(e.size for e in self.removed)

    @property
    def renamed(self) -> list[tuple[Entry, Entry]]:
        """(removed, added) pairs with the same bytes: likely moves, which cost no new storage.

        Only FILE and LINK entries with a known SHA-256 pair up; each entry is used at most
        once, removed paths taking the first unused added path with their hash, both in
        path order, so the answer is deterministic.
        """
        by_hash: dict[str, deque[Entry]] = {}
        for entry in self.added:
            if entry.kind in (FILE, LINK) and entry.sha256:
                by_hash.setdefault(entry.sha256, deque()).append(entry)
        pairs: list[tuple[Entry, Entry]] = []
        for entry in self.removed:
            if entry.kind in (FILE, LINK) and entry.sha256:
                candidates = by_hash.get(entry.sha256)
                if candidates:
                    pairs.append((entry, candidates.popleft()))
        return pairs


def diff_trees(old: Mapping[str, Entry], new: Mapping[str, Entry]) -> TreeDiff:
    added = [new[p] for p in sorted(new.keys() - old.keys())]
    removed = [old[p] for p in sorted(old.keys() - new.keys())]
    modified = [(old[p], new[p]) for p in sorted(old.keys() & new.keys()) if not same_content(old[p], new[p])]
    return TreeDiff(added=added, modified=modified, removed=removed)


def _folders(path: str) -> list[str]:
    """Proper ancestor folders of ``path``, topmost first."""
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def change_table(base: Mapping[str, Entry], new: Mapping[str, Entry]) -> list[Entry]:
    """Return the smallest file table that turns ``base`` into ``new`` under ``apply_changes``.

    Added and modified entries of ``new`` are listed as they are (keeping their location
    and origin); removed paths become tombstones, where a folder of ``base`` that loses
    all its entries and keeps nothing below it in ``new`` is one tombstone for the topmost
    such folder, so ``rm -r`` of a big folder is one row. A folder replaced by a file of
    the same path is not collapsed (its contents get their own tombstones), so a table
    never lists one path twice. Sorted by path.
    """
    diff = diff_trees(base, new)
    table: list[Entry] = [e for e in diff.added]
    table += [n for _, n in diff.modified]
    if diff.removed:
        total: dict[str, int] = {}
        for path in base:
            for folder in _folders(path):
                total[folder] = total.get(folder, 0) + 1
        gone: dict[str, int] = {}
        for entry in diff.removed:
            for folder in _folders(entry.path):
                gone[folder] = gone.get(folder, 0) + 1
        kept_below: set[str] = set()
        for path in new:
            kept_below.update(_folders(path))

        def collapsible(folder: str) -> bool:
            return gone.get(folder) == total[folder] and folder not in kept_below and folder not in new

        tombstones: dict[str, None] = {}
        for entry in diff.removed:
            top = next((f for f in _folders(entry.path) if collapsible(f)), entry.path)
            tombstones[top] = None
        table += [Entry(path, TOMBSTONE) for path in tombstones]
    table.sort(key=lambda e: e.path)
    return table
