"""What an overlay changes in its lower version: the list ``dsmount diff`` prints, and the
file table ``dsmount commit`` records.

Both are read from the upper rows alone (plus point lookups in the lower), never from a
walk of the whole lower tree, except inside a folder that was replaced (an opaque folder
over lower content) or partly renamed away, where the files have to be told apart.

The commit table follows ``tree.merge.apply_changes`` (tombstones first, then sets):
- a whiteout is one TOMBSTONE (``rm -r`` of a folder is one row);
- an opaque folder over lower content is one TOMBSTONE, and every file below it is set;
- a file row is set when it differs from the lower's entry at its path (``same_content``:
  mtime alone is not a change), or always when it lies below a tombstone;
- a reference row is set with its ``loc`` and no source: the bytes are already stored;
- a data row is set without ``loc`` and with its data file as the source to upload.
Empty folders and folder modes have no place in a version's tree and are not recorded.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mountfs.snapshot.entries import FILE, LINK, SYMLINK, TOMBSTONE, Entry
from mountfs.tree.diff import same_content
from mountfs.tree.index import DIR
from mountfs.tree.overlay_store import WHITEOUT, Row, ancestors

if TYPE_CHECKING:
    from mountfs.tree.overlay import Overlay

ADDED = "added"
MODIFIED = "modified"
REMOVED = "removed"
RENAMED = "renamed"


@dataclass(frozen=True, slots=True)
class Change:
    status: str
    """ADDED, MODIFIED, REMOVED or RENAMED."""
    path: str
    kind: str
    """FILE, LINK, SYMLINK, or DIR for a removed folder (listed once, whatever it held)."""
    size: int = 0
    sha256: str = ""
    """Known for lower bytes; for local bytes only when it had to be computed (or ``hash=True``)."""
    old_path: str = ""
    """For RENAMED: where the bytes were in the lower version."""

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "status": self.status,
            "path": self.path,
            "kind": self.kind,
            "size": self.size,
        }
        if self.sha256:
            out["sha256"] = self.sha256
        if self.old_path:
            out["old_path"] = self.old_path
        return out


def _symlink_entry(r: Row) -> Entry:
    """A moved or touched lower symlink keeps the lower's hash; a new one is hashed as
    ``scan.hash_files`` records symlinks (the SHA-256 of the target)."""
    digest = r.sha256 or hashlib.sha256(r.target.encode()).hexdigest()
    return Entry(r.path, SYMLINK, r.size, digest, 0o777, r.mtime_ns, target=r.target, origin=r.origin)


def _data_entry(ov: Overlay, r: Row, sha: str) -> Entry:
    node = ov.node(r.id)
    size, mtime = (node.size, node.mtime_ns) if node is not None else (r.size, r.mtime_ns)
    return Entry(r.path, FILE, size, sha, r.mode, mtime)


def _entry(ov: Overlay, r: Row, *, hash_data: bool) -> Entry:
    if r.kind == SYMLINK:
        return _symlink_entry(r)
    if r.data:
        return _data_entry(ov, r, ov.sha256_of(r.id) if hash_data else "")
    return r.entry()


def _below_any(path: str, roots: set[str]) -> bool:
    return any(folder in roots for folder in ancestors(path)[1:])


def commit_entries(ov: Overlay) -> list[tuple[Entry, str]]:
    """The child version's file table as ``(entry, source)`` rows, the shape of a draft's pending
    rows (``catalogue.put_pending``): source is the data file to upload, or '' when there is
    nothing to upload (tombstones, symlinks, references). Sorted by path. Origin is left empty
    for new bytes: the draft sets its own id."""
    lower = ov.lower
    out: list[tuple[Entry, str]] = []
    tombs: set[str] = set()
    for r in ov.rows():
        if r.kind == WHITEOUT:
            tombs.add(r.path)
            out.append((Entry(r.path, TOMBSTONE), ""))
        elif r.kind == DIR:
            if r.opaque and r.path and (lower.get(r.path) is not None or lower.folder(r.path) is not None):
                tombs.add(r.path)
                out.append((Entry(r.path, TOMBSTONE), ""))
        else:
            entry = _entry(ov, r, hash_data=True)
            if not _below_any(r.path, tombs):
                base = lower.get(r.path)
                if base is not None and same_content(base, entry):
                    continue
            out.append((entry, str(ov.data_path(r.id)) if r.data else ""))
    out.sort(key=lambda pair: pair[0].path)
    return out


def changes(ov: Overlay, *, hash: bool = False) -> list[Change]:
    """The pending changes against the lower version, like ``git status``, sorted by path.

    A lower file whose bytes now live (as a reference) at another path and nowhere at its old
    one is RENAMED, once; further references to it are ADDED copies. A removed folder is one
    REMOVED entry unless some of its files were renamed away, when its other files are listed.
    """
    lower = ov.lower
    rows = ov.rows()
    whiteouts = {r.path for r in rows if r.kind == WHITEOUT}
    bases: dict[str, Entry | None] = {}

    def base_of(path: str) -> Entry | None:
        if path not in bases:
            bases[path] = lower.get(path)
        return bases[path]

    def gone(path: str) -> bool:
        """Nothing shows at ``path`` now; a whiteout on the way answers without a lookup (a renamed
        folder's files all have one)."""
        if path in whiteouts or any(folder in whiteouts for folder in ancestors(path)[1:]):
            return True
        return ov.lookup(path) is None

    sources: dict[str, str] = {}
    for r in rows:
        moved = r.kind in (FILE, LINK) and not r.data and r.ref_path not in ("", r.path)
        if moved and r.ref_path not in sources and base_of(r.path) is None and gone(r.ref_path):
            sources[r.ref_path] = r.path
    renamed_to = {new: old for old, new in sources.items()}
    source_keys = sorted(sources)

    def sources_below(folder: str) -> bool:
        i = bisect_left(source_keys, folder + "/")
        return i < len(source_keys) and source_keys[i].startswith(folder + "/")

    out: list[Change] = []
    replaced: set[str] = set()  # opaque folders whose lower files are listed one by one

    def removed_below(folder: str) -> None:
        for e in lower.iter_entries(folder):
            if e.path in sources:
                continue
            node = ov.lookup(e.path)
            if node is None or node.is_dir:
                out.append(Change(REMOVED, e.path, e.kind, e.size, e.sha256))

    for r in rows:
        if r.kind == WHITEOUT:
            e = lower.get(r.path)
            if e is not None:
                if r.path not in sources:
                    out.append(Change(REMOVED, r.path, e.kind, e.size, e.sha256))
            elif sources_below(r.path):
                removed_below(r.path)
            else:
                out.append(Change(REMOVED, r.path, DIR))
        elif r.kind == DIR:
            over_lower = lower.get(r.path) is not None or lower.folder(r.path) is not None
            if r.opaque and r.path and over_lower and not _below_any(r.path, replaced):
                replaced.add(r.path)
                removed_below(r.path)
        else:
            base = base_of(r.path)
            if base is None and lower.folder(r.path) is not None and not _below_any(r.path, replaced):
                if sources_below(r.path):
                    removed_below(r.path)
                else:
                    out.append(Change(REMOVED, r.path, DIR))
            need_hash = hash or (base is not None and base.kind == FILE and r.kind == FILE)
            entry = _entry(ov, r, hash_data=need_hash)
            if base is None:
                old = renamed_to.get(r.path, "")
                status = RENAMED if old else ADDED
                out.append(Change(status, r.path, entry.kind, entry.size, entry.sha256, old))
            elif not same_content(base, entry):
                out.append(Change(MODIFIED, r.path, entry.kind, entry.size, entry.sha256))
    out.sort(key=lambda c: (c.path, c.status))
    return out


__all__ = ["ADDED", "MODIFIED", "REMOVED", "RENAMED", "Change", "changes", "commit_entries"]
