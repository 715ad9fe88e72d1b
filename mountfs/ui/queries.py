"""The answers of ``dsmount ui``'s JSON API: plain dicts over a Workspace.

Every function here takes a Workspace (opened by the caller, used from one thread for the
duration of the call) and returns the JSON body of one endpoint. They reuse what the CLI
computes (``Dataset.summary`` for show, ``Dataset.compare`` for compare, the catalogue's
search for search), so the page and ``dsmount ... --json`` never disagree.

Closed versions never change their content, so the expensive answers that depend only on
content (a version's change list, a comparison of two closed versions) are kept in small
LRU caches shared by every request; descriptive fields (tags, description, state) are always
read fresh from the catalogue.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Any

from mountfs.api.dataset import Dataset
from mountfs.api.workspace import Workspace
from mountfs.catalogue.catalogue import VersionRow
from mountfs.catalogue.refs import version_sort_key
from mountfs.errors import (
    DatasetNotFoundError,
    NotClosedError,
    PathNotFoundError,
    UsageError,
)
from mountfs.snapshot.entries import LINK, TOMBSTONE, Entry
from mountfs.snapshot.manifest import CLOSED, DRAFT, PUBLISHED, Manifest, Stats
from mountfs.tree.diff import TreeDiff
from mountfs.tree.index import DIR, Node, TreeIndex

STATES = (CLOSED, PUBLISHED, DRAFT)
SORT_KEYS = ("created", "project", "name", "version", "files", "bytes")
MAX_LIMIT = 1000
"""Largest page any endpoint returns: a browser renders that many rows, not 100,000."""
READ_ONLY = "read-only: start dsmount ui with --allow-changes"


class _Lru:
    """A small thread-safe LRU map for answers that never change (closed content)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any, make: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = make()  # outside the lock: two threads may compute the same answer, harmlessly
        with self._lock:
            self._items[key] = value
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_changes_cache = _Lru(8)
_compare_cache = _Lru(8)
_folder_cache = _Lru(256)


def clear_caches() -> None:
    """Forget cached answers (after a delete: a version id is never reused, but be tidy)."""
    _changes_cache.clear()
    _compare_cache.clear()
    _folder_cache.clear()


# ----- small helpers ----------------------------------------------------------------------------


def dsmount_version() -> str:
    try:
        return package_version("dsmount")
    except PackageNotFoundError:
        return "unknown"


def page_args(offset: int, limit: int, *, max_limit: int = MAX_LIMIT) -> tuple[int, int]:
    if offset < 0:
        raise UsageError(f"offset must be 0 or more, not {offset}")
    if not 1 <= limit <= max_limit:
        raise UsageError(f"limit must be between 1 and {max_limit}, not {limit}")
    return offset, limit


def resolve(ws: Workspace, ref: str) -> str:
    """A version id from a full id, unique id prefix or project/name[@version]."""
    ref = ref.strip()
    if not ref:
        raise UsageError("no version given")
    return ws.resolve(ref)


def _manifest(ws: Workspace, vid: str) -> Manifest:
    m = ws.catalogue.manifest(vid)
    if m is not None:
        return m
    if ws.catalogue.draft(vid) is not None:
        raise NotClosedError(f"version {vid} is a draft; close it first")
    raise DatasetNotFoundError(f"no dataset version {vid}")


def _stats(stats: Stats | None) -> dict[str, int]:
    return asdict(stats if stats is not None else Stats())


def location_of(e: Entry) -> str:
    """Where an entry's bytes live: '<version id>/chunk-NNNN.zip', a link's URL, or ''."""
    if e.loc is not None:
        return f"{e.loc.version}/chunk-{e.loc.chunk:04d}.zip"
    if e.kind == LINK:
        return e.target
    return ""


# ----- /api/info ----------------------------------------------------------------------------------


def info(ws: Workspace, *, allow_changes: bool) -> dict[str, Any]:
    return {
        "store": ws.store.url,
        "home": str(ws.settings.home),
        "allow_changes": allow_changes,
        "dsmount": dsmount_version(),
    }


# ----- /api/datasets ------------------------------------------------------------------------------


def _split(values: Iterable[str] | str | None) -> list[str]:
    if values is None:
        return []
    items = [values] if isinstance(values, str) else list(values)
    return [part.strip() for item in items for part in item.split(",") if part.strip()]


def _matches_q(r: VersionRow, q: str) -> bool:
    if r.id.startswith(q):
        return True
    hay = (r.project, r.name, r.version, r.description, *r.tags)
    return any(q in h.casefold() for h in hay)


def _sort_key(sort: str) -> Callable[[VersionRow], Any]:
    keys: dict[str, Callable[[VersionRow], Any]] = {
        "created": lambda r: (r.created, r.id),
        "project": lambda r: (
            r.project.casefold(),
            r.name.casefold(),
            version_sort_key(r.version, r.created),
        ),
        "name": lambda r: (r.name.casefold(), r.project.casefold(), version_sort_key(r.version, r.created)),
        "version": lambda r: (version_sort_key(r.version, r.created), r.project, r.name),
        "files": lambda r: (r.files, r.created),
        "bytes": lambda r: (r.bytes, r.created),
    }
    return keys[sort]


def datasets(
    ws: Workspace,
    *,
    q: str = "",
    project: str | None = None,
    name: str | None = None,
    tags: Sequence[str] | str | None = None,
    state: Sequence[str] | str | None = None,
    sort: str = "created",
    order: str | None = None,
    offset: int = 0,
    limit: int = 50,
) -> dict[str, Any]:
    """Versions of the catalogue (closed, published and this machine's drafts), filtered and paged.

    ``project`` includes sub-projects, ``name`` is a substring or regular expression and
    every tag must be present ('-tag' must be absent): ``dsmount search``'s rules, by the same
    catalogue query. ``q`` is a case-insensitive substring of project, name, version,
    description or a tag, or a prefix of the id.
    """
    offset, limit = page_args(offset, limit)
    if sort not in SORT_KEYS:
        raise UsageError(f"sort must be one of {', '.join(SORT_KEYS)}, not {sort!r}")
    if order is None or order == "":
        order = "desc" if sort == "created" else "asc"
    if order not in ("asc", "desc"):
        raise UsageError(f"order must be asc or desc, not {order!r}")
    states = _split(state)
    bad = [s for s in states if s not in STATES]
    if bad:
        raise UsageError(f"state must be one of {', '.join(STATES)}, not {bad[0]!r}")
    rows = ws.catalogue.search(
        project=project or None,
        name=name or None,
        tags=_split(tags) or None,
        only_completed=False,
        include_drafts=True,
    )
    if states:
        rows = [r for r in rows if r.state in states]
    needle = q.strip().casefold()
    if needle:
        rows = [r for r in rows if _matches_q(r, needle)]
    rows.sort(key=_sort_key(sort), reverse=order == "desc")
    return {"total": len(rows), "items": [r.as_dict() for r in rows[offset : offset + limit]]}


# ----- /api/versions/{ref} ------------------------------------------------------------------------


def version(ws: Workspace, ref: str) -> dict[str, Any]:
    """``dsmount show --json`` plus ``published`` (bool), ``children`` and zeroed stats for drafts."""
    vid = resolve(ws, ref)
    doc = Dataset(ws, vid).summary()
    # show --json's "published" is the time of publishing; here it is a flag, the time moves.
    published_at = doc.get("published")
    doc["published_at"] = published_at if isinstance(published_at, str) else ""
    doc["published"] = doc.get("state") == PUBLISHED
    doc["children"] = ws.catalogue.children(vid)
    doc["parents"] = list(doc.get("parents", []))
    doc["tags"] = list(doc.get("tags", []))
    doc["oplog"] = list(doc.get("oplog", []))
    stats = {**_stats(None), **doc.get("stats", {})}
    doc["stats"] = stats
    for key, default in (("closed", ""), ("file_table", None), ("metadata", {})):
        doc.setdefault(key, default)
    return doc


# ----- /api/versions/{ref}/changes ----------------------------------------------------------------


def _change_item(status: str, e: Entry, old: Entry | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "status": status,
        "path": e.path,
        "kind": e.kind,
        "size": e.size,
        "sha256": e.sha256,
        "location": "" if status == "removed" else location_of(e),
        "origin": e.origin,
    }
    if status == "modified" and old is not None:
        item["old_size"] = old.size
        item["old_sha256"] = old.sha256
    if status != "removed":
        item["reused"] = e.loc is not None and e.loc.version != e.origin
    return item


def _own_changes(ws: Workspace, vid: str) -> list[dict[str, Any]]:
    """A closed version's file table, resolved against its parents' merged trees.

    The table holds only this version's changes (a removed folder is one tombstone); each
    entry is looked up in the parents' indexes (a later parent wins, as in the merge) to tell
    added from modified, and each tombstone is expanded into the files it removed, so the
    counts equal the manifest's ``stats``.
    """
    m = _manifest(ws, vid)
    table = ws.file_table(m)
    parents: list[TreeIndex] = [ws.tree(p) for p in m.parents]
    kept = [e for e in table if e.kind != TOMBSTONE]
    paths = [e.path for e in kept]
    base: dict[str, Entry] = {}
    for index in parents:  # later parents win
        base.update(index.get_many(paths))
    items: list[dict[str, Any]] = []
    for e in kept:
        old = base.get(e.path)
        items.append(_change_item("added" if old is None else "modified", e, old))
    gone: dict[str, Entry] = {}
    for t in (e for e in table if e.kind == TOMBSTONE):
        for index in parents:
            for old in index.iter_entries(t.path):
                gone[old.path] = old
    items.extend(_change_item("removed", e) for e in gone.values())
    items.sort(key=lambda i: (i["path"], i["status"]))
    return items


def changes(
    ws: Workspace, ref: str, *, status: Sequence[str] | str | None = None, offset: int = 0, limit: int = 200
) -> dict[str, Any]:
    offset, limit = page_args(offset, limit)
    wanted = _split(status)
    bad = [s for s in wanted if s not in ("added", "modified", "removed")]
    if bad:
        raise UsageError(f"status must be added, modified or removed, not {bad[0]!r}")
    vid = resolve(ws, ref)
    _manifest(ws, vid)
    items: list[dict[str, Any]] = _changes_cache.get(vid, lambda: _own_changes(ws, vid))
    counts = {"added": 0, "modified": 0, "removed": 0}
    for i in items:
        counts[i["status"]] += 1
    chosen = [i for i in items if i["status"] in wanted] if wanted else items
    return {
        "id": vid,
        "total": len(chosen),
        "counts": counts,
        "offset": offset,
        "limit": limit,
        "items": chosen[offset : offset + limit],
    }


# ----- /api/versions/{ref}/tree -------------------------------------------------------------------


def _folder_counts(index: TreeIndex, ino: int) -> tuple[int, int]:
    """(children, sub-folders) of a folder: counted once per index, the tree never changes."""
    result: tuple[int, int] = _folder_cache.get((str(index.path), ino), lambda: index.child_counts(ino))
    return result


def _node_item(n: Node) -> dict[str, Any]:
    return {
        "name": n.name,
        "path": n.path,
        "kind": n.kind,
        "size": None if n.kind == DIR else n.size,
        "sha256": n.sha256,
        "target": n.target,
        "origin": n.origin,
        "mode": n.mode,
        "mtime_ns": n.mtime_ns,
    }


def tree(ws: Workspace, ref: str, *, path: str = "", offset: int = 0, limit: int = 200) -> dict[str, Any]:
    """One folder of a closed version's merged tree, folders first, then by name.

    Read from the version's merged-tree index with the ``(parent, name)`` index: a page costs
    the page, plus (once per folder) a count of its children, never the whole tree.
    """
    offset, limit = page_args(offset, limit)
    vid = resolve(ws, ref)
    _manifest(ws, vid)
    index = ws.tree(vid)
    folder = path.strip().strip("/")
    ino = index.folder_ino(folder)
    if ino is None:
        what = "a file, not a folder" if index.get(folder) is not None else "not in this version"
        raise PathNotFoundError(f"{folder!r} is {what}")
    total, dirs = _folder_counts(index, ino)
    rows = index.children_page(ino, offset, limit, dirs) if offset < total else []
    return {
        "id": vid,
        "path": folder,
        "total": total,
        "folders": dirs,
        "offset": offset,
        "limit": limit,
        "items": [_node_item(n) for n in rows],
    }


# ----- /api/versions/{ref}/lineage ----------------------------------------------------------------


def _node(ws: Workspace, vid: str) -> dict[str, Any]:
    m = ws.catalogue.manifest(vid)
    if m is not None:
        return {
            "id": vid,
            "project": m.project,
            "name": m.name,
            "version": m.version,
            "state": m.state,
            "created": m.created,
            "stats": _stats(m.stats),
        }
    d = ws.catalogue.draft(vid)
    if d is not None:
        return {
            "id": vid,
            "project": d.project,
            "name": d.name,
            "version": d.version,
            "state": DRAFT,
            "created": d.created,
            "stats": _stats(None),
        }
    return {
        "id": vid,
        "project": "",
        "name": "",
        "version": "",
        "state": "missing",
        "created": "",
        "stats": {},
    }


def lineage(ws: Workspace, ref: str) -> dict[str, Any]:
    """Every ancestor of the version (the DAG ``dsmount show`` prints) plus its direct children."""
    vid = resolve(ws, ref)
    graph = Dataset(ws, vid).get_dependency_graph()
    children = ws.catalogue.children(vid)
    ids = list(dict.fromkeys([vid, *graph, *(p for ps in graph.values() for p in ps), *children]))
    edges = [{"parent": p, "child": c} for c, ps in graph.items() for p in ps]
    edges += [{"parent": vid, "child": c} for c in children]
    return {"root": vid, "nodes": [_node(ws, i) for i in ids], "edges": edges}


# ----- /api/compare -------------------------------------------------------------------------------


def _compare_items(diff: TreeDiff) -> list[dict[str, Any]]:
    renamed = diff.renamed
    to_new = {old.path: new.path for old, new in renamed}
    from_old = {new.path: old.path for old, new in renamed}
    items: list[dict[str, Any]] = []
    for e in diff.added:
        item = {"status": "added", "path": e.path, "size": e.size, "old_size": None, "sha256": e.sha256}
        if e.path in from_old:
            item["renamed_from"] = from_old[e.path]
        items.append(item)
    for old, new in diff.modified:
        items.append(
            {
                "status": "modified",
                "path": new.path,
                "size": new.size,
                "old_size": old.size,
                "sha256": new.sha256,
                "old_sha256": old.sha256,
            }
        )
    for e in diff.removed:
        item = {"status": "removed", "path": e.path, "size": e.size, "old_size": e.size, "sha256": e.sha256}
        if e.path in to_new:
            item["renamed_to"] = to_new[e.path]
        items.append(item)
    items.sort(key=lambda i: (i["path"], i["status"]))
    return items


def _compare(ws: Workspace, src: str, dst: str) -> dict[str, Any]:
    diff = Dataset(ws, dst).compare(Dataset(ws, src))
    return {
        "counts": {
            "added": len(diff.added),
            "removed": len(diff.removed),
            "modified": len(diff.modified),
            "renamed": len(diff.renamed),
        },
        "bytes": {
            "added": diff.added_bytes,
            "removed": diff.removed_bytes,
            "modified": diff.modified_bytes,
        },
        "items": _compare_items(diff),
    }


def compare(
    ws: Workspace,
    source: str,
    target: str,
    *,
    status: Sequence[str] | str | None = None,
    offset: int = 0,
    limit: int = 200,
) -> dict[str, Any]:
    """What ``dsmount compare --source S --target T --json`` computes, with the files paged by path."""
    offset, limit = page_args(offset, limit)
    if not source or not target:
        raise UsageError("give both source and target")
    src = resolve(ws, source)
    dst = resolve(ws, target)
    drafts = ws.catalogue.draft(src) is not None or ws.catalogue.draft(dst) is not None
    if drafts:  # a draft's tree changes: never cached
        answer = _compare(ws, src, dst)
    else:
        answer = _compare_cache.get((src, dst), lambda: _compare(ws, src, dst))
    wanted = _split(status)
    items = answer["items"]
    chosen = [i for i in items if i["status"] in wanted] if wanted else items
    return {
        "source": src,
        "target": dst,
        "counts": dict(answer["counts"]),
        "bytes": dict(answer["bytes"]),
        "total": len(chosen),
        "offset": offset,
        "limit": limit,
        "items": chosen[offset : offset + limit],
    }


# ----- actions ------------------------------------------------------------------------------------


def publish(ws: Workspace, ref: str) -> dict[str, Any]:
    vid = resolve(ws, ref)
    Dataset(ws, vid).publish()
    return version(ws, vid)


def delete(ws: Workspace, ref: str, *, force: bool = False) -> dict[str, Any]:
    """``dsmount delete --id REF``: refused while other versions list it as a parent."""
    vid = resolve(ws, ref)
    Dataset.delete(dataset_id=vid, force=force, workspace=ws)
    clear_caches()
    return {"deleted": vid}


def set_description(ws: Workspace, ref: str, description: str) -> dict[str, Any]:
    vid = resolve(ws, ref)
    Dataset(ws, vid).set_description(description)
    return version(ws, vid)


def set_tags(ws: Workspace, ref: str, tags: Sequence[str]) -> dict[str, Any]:
    """Replace the version's tag set (order kept, duplicates dropped)."""
    vid = resolve(ws, ref)
    clean = [t.strip() for t in tags]
    if any(not t for t in clean):
        raise UsageError("tags may not be empty")
    Dataset(ws, vid).tags = list(dict.fromkeys(clean))
    return version(ws, vid)


# ----- /api/mounts --------------------------------------------------------------------------------


def mounts(ws: Workspace, *, timeout: float = 2.0) -> dict[str, Any]:
    """``dsmount status --json``: every mount this home knows about."""
    from mountfs.daemon.launch import status

    return {"items": status(ws.settings.home, timeout=timeout)}
