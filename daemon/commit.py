"""``dsmount commit``: a writable mount's overlay becomes a child version, and the mount moves onto it.

Write order (each step durable before the next; a crash anywhere leaves the old version with
the overlay intact, or the child with a clean overlay):

1. the overlay notes the id the draft will have (meta ``commit_draft``), in one transaction;
2. the draft is created in the catalogue with that id (parents = the mounted version);
3. the overlay's changes become the draft's pending rows: data files to upload, references
   to bytes already stored (renames and copies), one tombstone per removed path or folder;
4. upload, then close (file table, version claim, manifest: the version exists from here);
5. one overlay transaction forgets every change, pins the overlay to the child and drops
   the note (``Overlay.clear``).

Recovery reads the note: a draft whose manifest exists was committed, so step 5 is redone;
any other draft is discarded (its chunks and claim go) and the note dropped, which leaves
the overlay untouched. A running mount recovers before its next commit; a mount starting
over a noted overlay recovers before it serves (``resume``).

The overlay keeps the chain of versions its commits made (meta ``lineage``): a writable
mount of a version on that chain carries on at its newest, so a sidecar restarted with its
original arguments serves what it committed instead of the old version.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mountfs.api import drafts
from mountfs.api.faults import crash_point
from mountfs.api.workspace import Workspace, new_id, registry_key
from mountfs.errors import MountfsError
from mountfs.snapshot.entries import TOMBSTONE, Entry
from mountfs.tree.index import TreeIndex
from mountfs.tree.overlay import Overlay

log = logging.getLogger("dsmount.daemon")

NOTE = "commit_draft"
"""Overlay meta: the draft a commit is building (set before its rows exist, dropped by clear)."""
LINEAGE = "lineage"
"""Overlay meta: the versions this overlay sat on, oldest first, linked by its commits."""


@dataclass(frozen=True)
class CommitRequest:
    """What ``dsmount commit`` asks for; None takes the mounted version's value."""

    name: str | None = None
    version: str | None = None
    tags: Sequence[str] | None = None
    description: str | None = None
    close: bool = True

    @classmethod
    def from_json(cls, req: dict[str, Any]) -> CommitRequest:
        tags = req.get("tags")
        return cls(
            name=req.get("name") or None,
            version=req.get("version") or None,
            tags=None if tags is None else [str(t) for t in tags],
            description=req.get("description"),
            close=bool(req.get("close", True)),
        )


@dataclass(frozen=True)
class CommitResult:
    id: str
    project: str
    name: str
    version: str
    parent: str
    closed: bool
    changes: int
    """As ``dsmount diff`` counts them."""
    files: int
    """Files in the child's tree (closed) or pending rows (a draft)."""
    uploaded_bytes: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "committed": True,
            "id": self.id,
            "project": self.project,
            "name": self.name,
            "version": self.version,
            "parent": self.parent,
            "closed": self.closed,
            "changes": self.changes,
            "files": self.files,
            "uploaded_bytes": self.uploaded_bytes,
            "seconds": self.seconds,
        }


def build(
    ws: Workspace,
    ov: Overlay,
    req: CommitRequest,
    open_tree: Callable[[str], TreeIndex],
    *,
    keep: Collection[str] = (),
) -> CommitResult | None:
    """Worker thread, writes frozen: steps 1-5 for the overlay's changes; None when there are none.

    ``ws`` is the commit's own workspace (its catalogue is written from this thread only);
    ``open_tree`` opens the child's tree for the overlay to sit on (the daemon's workspace);
    ``keep``: files open for writing, whose local bytes stay in the overlay (``Overlay.clear``).
    A failure before the version exists rolls the draft back and leaves the overlay as it was."""
    started = time.monotonic()
    settle(ws, ov, open_tree, keep=keep)  # a commit this mount left half-done comes first
    parent = ov.lower.version
    rows = ov.commit_entries()
    if not rows:
        return None
    changed = len(ov.changes())  # what ``dsmount diff`` lists (a rename is one change, two rows)
    m = ws.manifest(parent)
    draft_id = new_id()
    ov.set_meta({NOTE: draft_id})  # first: a crash from here on finds the draft by this note
    crash_point("commit.noted")
    try:
        d = drafts.create(
            ws,
            name=req.name or m.name,
            project=m.project,
            parents=(parent,),
            version=req.version,
            tags=m.tags if req.tags is None else req.tags,
            description=req.description if req.description is not None else m.description,
            draft_id=draft_id,
        )
        crash_point("commit.draft_created")
        ws.catalogue.put_pending(d.id, (_owned(e, src, d.id) for e, src in rows))
        crash_point("commit.pending")
        uploaded = ws.catalogue.pending_bytes(d.id, only_not_uploaded=True)
        drafts.upload(ws, d, show_progress=False)
        crash_point("commit.uploaded")
        d = drafts.get_draft(ws, d.id)
        if not req.close:
            ov.set_meta({NOTE: None})  # the draft stands alone now: its bytes are in the store
            files = ws.catalogue.pending_count(d.id)
            return CommitResult(
                d.id, d.project, d.name, d.version, parent, False, changed, files, uploaded, _since(started)
            )
        manifest = drafts.close(ws, d, show_progress=False)
    except BaseException:
        _roll_back(ws, ov, draft_id)
        raise
    crash_point("commit.closed")
    _move_on(ov, manifest.id, open_tree, keep)
    crash_point("commit.cleared")
    m = manifest
    files = m.stats.files
    return CommitResult(
        m.id, m.project, m.name, m.version, parent, True, changed, files, uploaded, _since(started)
    )


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)


def _owned(e: Entry, source: str, draft_id: str) -> tuple[Entry, str]:
    """New bytes (and new symlinks) come from the child; references keep the version they came from."""
    if e.kind != TOMBSTONE and not e.origin:
        e = replace(e, origin=draft_id)
    return e, source


def _move_on(
    ov: Overlay, child: str, open_tree: Callable[[str], TreeIndex], keep: Collection[str] = ()
) -> None:
    """Step 5: one transaction clears the overlay onto the child and extends the lineage."""
    parent = ov.lower.version
    chain = (ov.get_meta(LINEAGE) or "").split()
    if not chain or chain[-1] != parent:
        chain = [parent]
    ov.clear(open_tree(child), meta={NOTE: None, LINEAGE: " ".join([*chain, child])}, keep=keep)


def _roll_back(ws: Workspace, ov: Overlay, draft_id: str) -> None:
    """Undo a commit that failed before its version existed; if the store cannot be reached to
    delete its chunks, the note stays and the next commit or mount finishes the job."""
    try:
        d = ws.catalogue.draft(draft_id)
        if d is not None:
            drafts.discard(ws, d)
        ov.set_meta({NOTE: None})
    except MountfsError as exc:
        log.warning("could not roll back draft %s yet: %s", draft_id, exc)


def settle(
    ws: Workspace, ov: Overlay, open_tree: Callable[[str], TreeIndex], *, keep: Collection[str] = ()
) -> str:
    """Finish or undo a commit noted in the overlay; returns 'finished', 'rolled back' or ''."""
    draft_id = ov.get_meta(NOTE)
    if not draft_id:
        return ""
    if ws.store.exists(registry_key(draft_id)):  # closed: the child holds every change
        if ws.catalogue.draft(draft_id) is not None:
            ws.refresh_one(draft_id)
            ws.catalogue.delete_draft(draft_id)
        _move_on(ov, draft_id, open_tree, keep)
        log.warning("finished commit %s, interrupted after its version was closed", draft_id)
        return "finished"
    d = ws.catalogue.draft(draft_id)
    if d is not None:
        drafts.discard(ws, d)
    ov.set_meta({NOTE: None})
    log.warning("rolled back commit %s, interrupted before its version was closed", draft_id)
    return "rolled back"


def resume(ws: Workspace, folder: Path, requested: str) -> tuple[str, str]:
    """Before a writable mount serves: settle an interrupted commit, then pick the version to serve.

    Returns (version, why): ``requested``, or the newest version of the overlay's lineage when
    ``requested`` is on it (the mount carries on where its commits left it). The caller holds
    the overlay's lock."""
    meta = Overlay.read_meta(folder)
    done = ""
    if meta.get(NOTE):
        with Overlay.open(folder, ws.tree(meta["lower_version"])) as ov:
            done = settle(ws, ov, ws.tree)
        meta = Overlay.read_meta(folder)
    pinned = meta.get("lower_version", "")
    chain = meta.get(LINEAGE, "").split()
    if pinned and pinned != requested and chain and chain[-1] == pinned and requested in chain[:-1]:
        why = f"the overlay carries on at {pinned}, committed from {requested}"
        return pinned, f"{why} (finished an interrupted commit)" if done == "finished" else why
    if done:
        return requested, f"{done} an interrupted commit"
    return requested, ""
