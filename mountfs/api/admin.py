"""Operations on closed versions and whole datasets: publish, describe, rename, move,
delete and garbage collection.

Descriptive changes rewrite a manifest whole (atomically); content never changes.
Deletion removes the manifest first, so a crash half way leaves unreferenced data
(which gc removes), never a version with missing data.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from mountfs.api import claims
from mountfs.api.workspace import Workspace, now_iso, registry_key
from mountfs.errors import DatasetNotFoundError, DependentsError, NotClosedError, PublishedError, UsageError
from mountfs.snapshot.manifest import CLOSED, PUBLISHED, Manifest
from mountfs.tree.index import SUFFIX as TREE_SUFFIX


def update_manifest(ws: Workspace, version_id: str, change: Callable[[Manifest], Manifest]) -> Manifest:
    ws.refresh_one(version_id)
    new = change(ws.manifest(version_id))
    ws.write_manifest(new)
    return new


def publish(ws: Workspace, version_id: str) -> Manifest:
    if ws.catalogue.draft(version_id) is not None:
        raise NotClosedError(f"version {version_id} is a draft; close it before publishing")
    m = ws.manifest(version_id)
    if m.state == PUBLISHED:
        return m
    return update_manifest(ws, version_id, lambda m: replace(m, state=PUBLISHED, published=now_iso()))


def set_fields(ws: Workspace, version_id: str, **fields: Any) -> None:
    """Descriptive fields (description, tags, metadata) of a draft or a closed version."""
    if ws.catalogue.draft(version_id) is not None:
        ws.catalogue.update_draft(version_id, **fields)
    else:
        update_manifest(ws, version_id, lambda m: replace(m, **fields))


def rename_dataset(
    ws: Workspace, project: str, name: str, *, new_name: str | None = None, new_project: str | None = None
) -> int:
    """Rename or move every version of project/name; returns how many versions changed."""
    ws.refresh()
    rows = ws.catalogue.versions_of(project, name)
    if not rows:
        raise DatasetNotFoundError(f"no dataset {project}/{name}")
    fields: dict[str, str] = {}
    if new_name:
        fields["name"] = new_name
    if new_project:
        fields["project"] = new_project
    if (new_project or project, new_name or name) != (project, name) and ws.catalogue.versions_of(
        new_project or project, new_name or name
    ):
        raise UsageError(f"a dataset {new_project or project}/{new_name or name} already exists")
    for row in rows:
        set_fields(ws, row.id, **fields)
    return len(rows)


@dataclass(frozen=True)
class Deleted:
    ids: list[str]
    drafts: list[str]


def delete_versions(
    ws: Workspace, ids: list[str], *, force: bool = False, delete_files: bool = True
) -> Deleted:
    """Delete versions (closed or drafts); refuse while versions outside the set depend on them."""
    ws.refresh()
    doomed = set(ids)
    for vid in ids:
        dependents = [c for c in ws.catalogue.children(vid) if c not in doomed]
        if dependents:
            shown = ", ".join(dependents[:5])
            raise DependentsError(
                f"version {vid} is a parent of {len(dependents)} other version(s) ({shown}); "
                "delete them first"
            )
        m = ws.catalogue.manifest(vid)
        if m is not None and m.state == PUBLISHED and not force:
            raise PublishedError(f"version {vid} is published; use --force to delete it")
    done = Deleted([], [])
    # Children before parents, so that a crash never leaves a child whose parent is gone.
    for vid in sorted(ids, key=lambda v: -_depth(ws, v, doomed)):
        draft = ws.catalogue.draft(vid)
        if draft is not None:
            ws.data_store(draft.data_url).delete_prefix(f"{vid}/")
            claims.release(ws, vid, draft.project, draft.name, draft.version)
            ws.catalogue.delete_draft(vid)
            done.drafts.append(vid)
            continue
        m = ws.manifest(vid)
        ws.store.delete(registry_key(vid))
        claims.release(ws, vid, m.project, m.name, m.version)
        ws.catalogue.remove_version(vid)
        if delete_files:
            ws.data_store(m.data_url).delete_prefix(f"{vid}/")
        ws.drop_local(vid)
        done.ids.append(vid)
    return done


def _depth(ws: Workspace, vid: str, within: set[str]) -> int:
    """How many versions of ``within`` lie above ``vid`` (to order deletions)."""
    m = ws.catalogue.manifest(vid)
    d = ws.catalogue.draft(vid)
    parents = m.parents if m is not None else (d.parents if d is not None else ())
    return max((1 + _depth(ws, p, within) for p in parents if p in within), default=0)


@dataclass
class GcReport:
    orphan_objects: list[str]
    orphan_bytes: int
    local_removed: list[str]


def gc(ws: Workspace, *, dry_run: bool = False, grace_seconds: float = 3600.0) -> GcReport:
    """Remove data no manifest or local draft refers to, and local state of deleted versions.

    Objects younger than the grace period are kept: they may belong to an upload in
    progress on another machine, whose draft this catalogue cannot see.
    """
    ws.refresh()
    manifests = {m.id: m for m in ws.all_manifests()}
    drafts = {d.id: d for d in ws.catalogue.drafts()}
    wanted: dict[str, set[str]] = {}
    locations = {ws.default_data_url} | {m.data_url for m in manifests.values()}
    locations |= {d.data_url for d in drafts.values()}
    for m in manifests.values():
        wanted.setdefault(m.id, set()).update({c.key for c in m.chunks} | {m.file_table.key})
    for d in drafts.values():
        wanted.setdefault(d.id, set()).update({c.key for c in d.chunks})
    report = GcReport([], 0, [])
    now = time.time()
    for url in sorted(locations):
        store = ws.data_store(url)
        emptied: set[str] = set()
        for info in store.list(""):
            vid = info.key.split("/", 1)[0]
            if vid in drafts or info.key in wanted.get(vid, set()):
                continue  # a local draft's upload may be writing a chunk right now
            if info.mtime is not None and now - info.mtime < grace_seconds:
                continue
            report.orphan_objects.append(f"{url.rstrip('/')}/{info.key}")
            report.orphan_bytes += info.size
            if not dry_run:
                store.delete(info.key)
                emptied.add(vid)
        if store.is_local:
            # Temp files of writes killed half way: Store.list hides them, so sweep them here.
            for temp, size in _stale_local_temps(store.url, now - grace_seconds):
                report.orphan_objects.append(temp)
                report.orphan_bytes += size
                if not dry_run:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(temp)
                    emptied.add(os.path.relpath(temp, store.url).split(os.sep, 1)[0])
        for vid in sorted(emptied):
            folder = store.local_path(vid) if "/" not in vid else None
            if folder is not None and os.path.isdir(folder):
                # A local folder is not an object, so nothing else removes it; rmdir only if empty.
                with contextlib.suppress(OSError):
                    os.rmdir(folder)
    for info in ws.store.list(claims.CLAIMS + "/"):
        # A claim whose version never got its manifest (a close that crashed and was never
        # resumed, on any machine) only holds a number; past the grace period it is released.
        # A draft that resumes later simply claims again.
        holder = claims.holder_of(ws, info.key)
        if holder in manifests or holder in drafts:
            continue
        if info.mtime is not None and now - info.mtime < grace_seconds:
            continue
        report.orphan_objects.append(f"{ws.store.url.rstrip('/')}/{info.key}")
        report.orphan_bytes += info.size
        if not dry_run:
            ws.store.delete(info.key)
    known = set(manifests)
    for path in sorted(ws.trees_dir.glob("*.sqlite")):
        # Indexes of an older format (another suffix) are never read again: remove them too.
        if path.name.split(".", 1)[0] not in known or not path.name.endswith(TREE_SUFFIX):
            report.local_removed.append(str(path))
            if not dry_run:
                path.unlink(missing_ok=True)
    for path in sorted(ws.copies_dir.iterdir()):
        vid = path.name.split("-", 1)[0].lstrip(".")
        if vid not in known or path.name.startswith(".tmp-"):
            report.local_removed.append(str(path))
            if not dry_run:
                import shutil

                shutil.rmtree(path, ignore_errors=True)
    return report


_TEMP_NAME = re.compile(r"^\..*\.tmp-[0-9a-f]+$")
"""How mountfs.storage.store names an object being written (hidden, renamed into place on success)."""


def _stale_local_temps(root: str, older_than: float) -> list[tuple[str, int]]:
    found = []
    for folder, _dirs, names in os.walk(root):
        for name in names:
            if not _TEMP_NAME.match(name):
                continue
            path = os.path.join(folder, name)
            try:
                st = os.stat(path)
            except FileNotFoundError:
                continue
            if st.st_mtime <= older_than:
                found.append((path, st.st_size))
    return sorted(found)


def check_closed(ws: Workspace, version_id: str) -> Manifest:
    if ws.catalogue.draft(version_id) is not None:
        raise NotClosedError(f"version {version_id} is a draft; close it first")
    m = ws.manifest(version_id)
    if m.state not in (CLOSED, PUBLISHED):
        raise NotClosedError(f"version {version_id} is {m.state}")
    return m
