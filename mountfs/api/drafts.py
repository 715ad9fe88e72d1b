"""Drafts: a version being built. Add, remove and sync record pending changes; upload
writes chunks; close writes the file table and then the manifest.

Crash safety comes from the write order. A chunk is renamed into place whole and
recorded in the catalogue in one transaction with the locations of its files, so
a killed upload resumes from the first chunk not recorded. The manifest is written
last and exclusively: before it exists there is no version, after it the draft is
done (refresh() notices if the catalogue missed it).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace

from mountfs.api import claims
from mountfs.api.faults import crash_point
from mountfs.api.scan import LocalFile, hash_files
from mountfs.api.workspace import Workspace, new_id, now_iso, release_memory, whoami
from mountfs.catalogue.catalogue import Draft
from mountfs.catalogue.refs import next_version
from mountfs.config import DEFAULT_CHUNK_SIZE
from mountfs.errors import (
    DatasetNotFoundError,
    DirtyError,
    IntegrityError,
    NotClosedError,
    UsageError,
    VersionClosedError,
)
from mountfs.progress import progress
from mountfs.snapshot.chunks import MAX_MEMBERS, ChunkResult, PendingFile, write_chunk
from mountfs.snapshot.entries import FILE, LINK, TOMBSTONE, Entry, Location, is_under, normalize_path
from mountfs.snapshot.filetable import FILE_TABLE_NAME, encode_file_table
from mountfs.snapshot.manifest import CLOSED, ChunkRef, Manifest, ObjectRef, Stats
from mountfs.tree.diff import change_table, diff_trees, same_content
from mountfs.tree.index import TreeIndex
from mountfs.tree.merge import apply_changes

log = logging.getLogger("dsmount")


def chunk_key(version_id: str, index: int) -> str:
    return f"{version_id}/chunk-{index:04d}.zip"


def create(
    ws: Workspace,
    *,
    name: str,
    project: str | None,
    parents: Sequence[str] = (),
    version: str | None = None,
    data_url: str | None = None,
    tags: Sequence[str] = (),
    description: str = "",
    chunk_size: int | None = None,
    draft_id: str | None = None,
) -> Draft:
    """Start a draft; parents must be closed versions (ids already resolved).

    ``draft_id``: an id the caller chose (and noted) beforehand, so a crash right after this
    call leaves a draft the caller knows about (``dsmount commit``)."""
    if not name:
        raise UsageError("a dataset needs a name (--name)")
    parent_manifests = []
    for p in parents:
        if ws.catalogue.draft(p) is not None:
            raise NotClosedError(f"parent {p} is a draft; close it before using it as a parent")
        parent_manifests.append(ws.manifest(p))
    if project is None:
        if not parent_manifests:
            raise UsageError("a dataset needs a project (--project) when it has no parents")
        project = parent_manifests[-1].project
    ws.ensure_refreshed()
    version_auto = version is None
    if version is None:
        version = next_version(r.version for r in ws.catalogue.versions_of(project, name))
    elif any(r.version == version for r in ws.catalogue.versions_of(project, name)):
        raise UsageError(f"{project}/{name} already has a version {version}")
    user, host = whoami()
    draft = Draft(
        id=draft_id or new_id(),
        project=project,
        name=name,
        version=version,
        parents=tuple(parents),
        data_url=data_url or ws.default_data_url,
        chunk_size=chunk_size if chunk_size is not None else DEFAULT_CHUNK_SIZE,
        created=now_iso(),
        user=user,
        host=host,
        tags=tuple(tags),
        description=description,
        version_auto=version_auto,
    )
    ws.catalogue.create_draft(draft)
    return draft


def get_draft(ws: Workspace, version_id: str) -> Draft:
    d = ws.catalogue.draft(version_id)
    if d is not None:
        return d
    ws.ensure_refreshed()
    if ws.catalogue.manifest(version_id) is not None:
        raise VersionClosedError(f"version {version_id} is closed; closed versions cannot change")
    raise DatasetNotFoundError(f"no draft {version_id}")


def effective_tree(ws: Workspace, d: Draft) -> dict[str, Entry]:
    """The tree the draft would close to: its parents' merged tree with its pending changes."""
    base = ws.base_tree(d.parents)
    return apply_changes(base, [e for e, _ in ws.catalogue.pending(d.id)])


class TreeView:
    """Point lookups in a draft's current tree (its parents' merged tree with its pending
    changes) without building that tree.

    Add and sync compare every local file with it; building a 100,000-file parent tree
    in memory for that would cost more than the comparison and most of the memory budget.
    """

    def __init__(self, ws: Workspace, d: Draft) -> None:
        self._pending = {e.path: e for e, _ in ws.catalogue.pending(d.id)}
        self._tombs = {p for p, e in self._pending.items() if e.kind == TOMBSTONE}
        self._files = {p for p, e in self._pending.items() if e.kind != TOMBSTONE}
        self._base_many: Callable[[Sequence[str]], dict[str, Entry]]
        if not d.parents:
            self._base_many = lambda paths: {}
            self._base_iter: Callable[[], Iterator[Entry]] = lambda: iter(())
        elif len(d.parents) == 1:
            index = ws.tree(d.parents[0])
            self._base_many = index.get_many
            self._base_iter = index.iter_entries
        else:
            merged = ws.base_tree(d.parents)
            self._base_many = lambda paths: {p: merged[p] for p in paths if p in merged}
            self._base_iter = lambda: iter(sorted(merged.values(), key=lambda e: e.path))

    def _hidden(self, path: str) -> bool:
        """Removed by a pending tombstone on it or a folder above it, or by a pending file above it."""
        if path in self._tombs:
            return True
        i = path.find("/")
        while i != -1:
            folder = path[:i]
            if folder in self._tombs or folder in self._files:
                return True
            i = path.find("/", i + 1)
        return False

    def base_many(self, paths: Sequence[str]) -> dict[str, Entry]:
        """Entries of the parents' merged tree only (pending changes ignored)."""
        return self._base_many(paths)

    def get_many(self, paths: Sequence[str]) -> dict[str, Entry]:
        out: dict[str, Entry] = {}
        ask = []
        for p in paths:
            e = self._pending.get(p)
            if e is not None:
                if e.kind != TOMBSTONE:
                    out[p] = e
            elif not self._hidden(p):
                ask.append(p)
        out.update(self._base_many(ask))
        return out

    def iter_entries(self) -> Iterator[Entry]:
        """Every entry of the current tree (base entries streamed, not held)."""
        for e in self._base_iter():
            if e.path not in self._pending and not self._hidden(e.path):
                yield e
        for e in self._pending.values():
            if e.kind != TOMBSTONE and not self._hidden(e.path):
                yield e


def add_files(
    ws: Workspace,
    d: Draft,
    files: Sequence[LocalFile],
    *,
    max_workers: int | None = None,
    show_progress: bool | None = None,
) -> tuple[int, int]:
    """Hash local files and record those that differ from the draft's tree: (added, modified).

    Files are hashed and compared in batches, so memory grows with what changed, not with
    the size of the folder; the changes are then recorded in one transaction.
    """
    view = TreeView(ws, d)
    changed: list[tuple[Entry, str]] = []
    added = modified = 0
    with progress(sum(f.size for f in files), "hashing", show=show_progress) as advance:
        for i in range(0, len(files), 8192):
            batch = files[i : i + 8192]
            entries = hash_files(batch, origin=d.id, max_workers=max_workers, advance=advance)
            crash_point("add.hashed")
            a, m = _compare(
                view,
                [(e, f.source if e.kind == FILE else "") for e, f in zip(entries, batch, strict=True)],
                changed,
            )
            added += a
            modified += m
    ws.catalogue.put_pending(d.id, changed)
    return added, modified


def add_links(ws: Workspace, d: Draft, entries: Sequence[Entry]) -> tuple[int, int]:
    changed: list[tuple[Entry, str]] = []
    added, modified = _compare(TreeView(ws, d), [(e, "") for e in entries], changed)
    ws.catalogue.put_pending(d.id, changed)
    return added, modified


def _compare(
    view: TreeView, rows: list[tuple[Entry, str]], changed: list[tuple[Entry, str]]
) -> tuple[int, int]:
    current = view.get_many([e.path for e, _ in rows])
    added = modified = 0
    for e, src in rows:
        old = current.get(e.path)
        if old is not None and same_content(old, e):
            continue
        if old is None:
            added += 1
        else:
            modified += 1
        changed.append((e, src))
    return added, modified


def wildcard_match(path: str, pattern: str, recursive: bool) -> bool:
    """clearml's ``matches_any_wildcard`` for one pattern.

    With ``recursive``, ``*`` spans folders and a pattern without '/' also matches file
    names in any folder. Without it, the pattern matches segment by segment, so it only
    names paths at its own depth ('*.log' matches 'a.log', not 'k/a.log').
    """
    import fnmatch

    if not recursive:
        parts, pats = path.split("/"), pattern.split("/")
        return len(parts) == len(pats) and all(
            fnmatch.fnmatchcase(part, pat) for part, pat in zip(parts, pats, strict=True)
        )
    name = path.rsplit("/", 1)[-1]
    return fnmatch.fnmatchcase(path, pattern) or ("/" not in pattern and fnmatch.fnmatchcase(name, pattern))


def matching_paths(tree_paths: Sequence[str], pattern: str, recursive: bool) -> tuple[list[str], list[str]]:
    """(folders, files) of the tree that a remove pattern names.

    A folder path removes the folder; otherwise the pattern is a wildcard (see
    ``wildcard_match``) over dataset paths.
    """
    import fnmatch

    pat = pattern.strip("/")
    if not pat or pat in ("*", "**"):
        return [""], []
    folder_prefix = pat + "/"
    if any(p.startswith(folder_prefix) for p in tree_paths) and not any(ch in pat for ch in "*?["):
        return [pat], []
    files = []
    for p in tree_paths:
        if wildcard_match(p, pat, recursive) or (recursive and fnmatch.fnmatchcase(p, pat + "/*")):
            files.append(p)
    return [], files


def remove_files(ws: Workspace, d: Draft, pattern: str, *, recursive: bool = True) -> int:
    """Remove matching paths from the draft's tree; a removed folder is one tombstone."""
    current = effective_tree(ws, d)
    base = ws.base_tree(d.parents)
    by_link = [p for p, e in current.items() if e.kind == LINK and e.target == pattern]
    folders, files = ([], by_link) if by_link else matching_paths(sorted(current), pattern, recursive)
    removed = 0
    tombstones: list[tuple[Entry, str]] = []
    for folder in folders:
        under = [p for p in current if folder == "" or is_under(p, folder)]
        removed += len(under)
        ws.catalogue.delete_pending_under(d.id, folder)
        if folder == "":
            tombstones.extend((Entry(normalize_path(top), TOMBSTONE), "") for top in _top_level(base))
        elif any(is_under(p, folder) for p in base):
            tombstones.append((Entry(folder, TOMBSTONE), ""))
    if files:
        removed += len(files)
        ws.catalogue.delete_pending(d.id, files)
        tombstones.extend((Entry(p, TOMBSTONE), "") for p in files if p in base)
    ws.catalogue.put_pending(d.id, tombstones)
    return removed


def _top_level(tree: dict[str, Entry]) -> list[str]:
    return sorted({p.split("/", 1)[0] for p in tree})


def upload(
    ws: Workspace,
    d: Draft,
    *,
    chunk_size: int | None = None,
    max_workers: int | None = None,
    output_url: str | None = None,
    show_progress: bool | None = None,
) -> int:
    """Zip the draft's files not stored yet into chunks; returns how many chunks were written.

    Files whose SHA-256 is already stored (in the parents' tree, or earlier in this
    draft) become references to those bytes and are not written again.
    """
    if output_url and output_url != d.data_url:
        if d.chunks:
            raise UsageError(f"draft {d.id} already has chunks in {d.data_url}; cannot move its storage")
        ws.catalogue.update_draft(d.id, data_url=output_url)
        d = get_draft(ws, d.id)
    if not ws.catalogue.pending_count(d.id, only_not_uploaded=True):
        return 0
    # Streamed, never a whole tree in memory: only a SHA-256 -> location map of stored bytes.
    known: dict[str, Location] = {}
    for parent in d.parents:
        for e in ws.tree(parent).iter_entries():
            if e.kind == FILE and e.loc is not None:
                known.setdefault(e.sha256, e.loc)
    for e, _ in ws.catalogue.pending(d.id):
        if e.kind == FILE and e.loc is not None:
            known.setdefault(e.sha256, e.loc)
    size = chunk_size if chunk_size is not None else d.chunk_size
    cap = size if size > 0 else 1 << 62
    index = max((c.index for c in d.chunks), default=-1) + 1
    data = ws.data_store(d.data_url)
    workers = max(1, max_workers or 2)
    written = 0

    def job(index: int, files: Sequence[PendingFile], advance: object) -> tuple[int, ChunkResult]:
        with data.writer(chunk_key(d.id, index)) as out:
            result = write_chunk(out, files, version=d.id, chunk=index, progress=advance)  # type: ignore[arg-type]
        return index, result

    # One pass over the pending rows in path order: references are recorded in batches,
    # files are cut into chunks as they come, and at most workers + 1 chunks are in
    # flight, so memory stays flat however many files the draft holds.
    refs: list[Entry] = []
    first: set[str] = set()
    later: list[Entry] = []
    in_flight: deque[Future[tuple[int, ChunkResult]]] = deque()
    error: BaseException | None = None

    def finish(fut: Future[tuple[int, ChunkResult]]) -> None:
        nonlocal error, written
        try:
            done_index, result = fut.result()
        except BaseException as exc:  # record what succeeded, then report the first failure
            error = error or exc
            return
        crash_point("upload.chunk_written")
        ref = ChunkRef(done_index, chunk_key(d.id, done_index), result.size, result.sha256)
        ws.catalogue.record_upload(d.id, result.entries, ref)
        crash_point("upload.chunk_recorded")
        written += 1
        for e in result.entries:
            assert e.loc is not None
            known.setdefault(e.sha256, e.loc)

    total = ws.catalogue.pending_bytes(d.id, only_not_uploaded=True)
    with (
        progress(total, "uploading", show=show_progress) as advance,
        ThreadPoolExecutor(workers, thread_name_prefix="dsmount-zip") as pool,
    ):
        current: list[PendingFile] = []
        filled = 0

        def submit() -> None:
            nonlocal current, filled, index
            in_flight.append(pool.submit(job, index, current, advance))
            index += 1
            current, filled = [], 0
            while len(in_flight) > workers:
                finish(in_flight.popleft())

        for e, src in ws.catalogue.pending(d.id, only_not_uploaded=True):
            if error is not None:
                break  # a chunk failed: finish what is in flight, record it, and report
            if e.sha256 in known:
                refs.append(replace(e, loc=known[e.sha256]))
                advance(e.size)
                if len(refs) >= 4096:
                    ws.catalogue.record_upload(d.id, refs, None)
                    refs = []
            elif e.sha256 in first:
                later.append(e)
            else:
                first.add(e.sha256)
                if current and (filled + e.size > cap or len(current) >= MAX_MEMBERS):
                    submit()
                current.append(PendingFile(e.path, src, e.size, e.sha256, e.mode, e.mtime_ns))
                filled += e.size
        if current and error is None:
            submit()
        while in_flight:
            finish(in_flight.popleft())
    if refs:
        ws.catalogue.record_upload(d.id, refs, None)
    if error is not None:
        raise error
    if later:
        ws.catalogue.record_upload(d.id, [replace(e, loc=known[e.sha256]) for e in later], None)
    return written


def close(
    ws: Workspace,
    d: Draft,
    *,
    auto_upload: bool = True,
    chunk_size: int | None = None,
    max_workers: int | None = None,
    output_url: str | None = None,
    show_progress: bool | None = None,
) -> Manifest:
    """Upload what is pending (if allowed), then write the file table and the manifest."""
    if ws.catalogue.pending_count(d.id, only_not_uploaded=True):
        if not auto_upload:
            raise DirtyError(f"draft {d.id} has files not uploaded yet; run upload first")
        upload(
            ws,
            d,
            chunk_size=chunk_size,
            max_workers=max_workers,
            output_url=output_url,
            show_progress=show_progress,
        )
        release_memory()  # upload's peak and close's must not stack up
        d = get_draft(ws, d.id)
    base = ws.base_tree(d.parents)
    pending = [e for e, _ in ws.catalogue.pending(d.id)]
    table = change_table(base, apply_changes(base, pending))
    for e in table:
        if e.kind == FILE and e.loc is None:
            raise IntegrityError(f"{e.path} has no stored bytes; run upload again")
    final = apply_changes(base, table)
    diff = diff_trees(base, final)
    raw = encode_file_table(d.id, table)
    data = ws.data_store(d.data_url)
    table_key = f"{d.id}/{FILE_TABLE_NAME}"
    data.write_bytes(table_key, raw)
    crash_point("close.table_written")
    import hashlib

    version = claims.claim(ws, d)  # the number is ours in the shared store from here on
    crash_point("close.version_claimed")
    stats = Stats(
        files=len(final),
        bytes=sum(e.size for e in final.values()),
        added=len(diff.added),
        modified=len(diff.modified),
        removed=len(diff.removed),
        added_bytes=diff.added_bytes,
        modified_bytes=diff.modified_bytes,
        removed_bytes=diff.removed_bytes,
        stored_bytes=sum(c.size for c in d.chunks) + len(raw),
        reused=sum(1 for e in table if e.kind == FILE and e.loc is not None and e.loc.version != d.id),
    )
    manifest = Manifest(
        id=d.id,
        project=d.project,
        name=d.name,
        version=version,
        parents=tuple(d.parents),
        state=CLOSED,
        created=d.created,
        closed=now_iso(),
        user=d.user,
        host=d.host,
        data_url=d.data_url,
        chunks=tuple(sorted(d.chunks, key=lambda c: c.index)),
        file_table=ObjectRef(table_key, len(raw), hashlib.sha256(raw).hexdigest()),
        stats=stats,
        tags=tuple(d.tags),
        description=d.description,
        metadata=dict(d.metadata),
        oplog=tuple(d.oplog),
    )
    if not ws.write_manifest(manifest, exclusive=True):
        manifest = ws.manifest(d.id)  # a close that crashed after its manifest: the version is there
    crash_point("close.manifest_written")
    TreeIndex.build(ws.tree_path(d.id), d.id, final)
    ws.catalogue.delete_draft(d.id)
    return manifest


def discard(ws: Workspace, d: Draft) -> None:
    """Delete a draft and whatever chunks it already uploaded."""
    ws.data_store(d.data_url).delete_prefix(f"{d.id}/")
    claims.release(ws, d.id, d.project, d.name, d.version)
    ws.catalogue.delete_draft(d.id)
