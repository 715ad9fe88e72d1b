"""``mountfs.Dataset``: clearml.Dataset's methods and arguments, on a serverless store.

A Dataset object is a handle on one version (a draft or a closed version) in a
Workspace. Every method is a thin shell over the draft, fetch and admin modules;
the CLI is a thin shell over this class.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mountfs.api import admin, drafts, fetch, scan
from mountfs.api.workspace import Workspace, now_iso
from mountfs.catalogue.catalogue import Draft
from mountfs.config import parse_size
from mountfs.errors import (
    DatasetNotFoundError,
    NotClosedError,
    UsageError,
)
from mountfs.snapshot.entries import FILE, LINK, SYMLINK, TOMBSTONE, Entry, is_under
from mountfs.snapshot.manifest import CLOSED, DRAFT, PUBLISHED, Manifest
from mountfs.tree.diff import TreeDiff, diff_trees

if TYPE_CHECKING:
    from mountfs.daemon.mount import Mount

LAST_ID = "last_id"


def _ws(workspace: Workspace | None) -> Workspace:
    return workspace if workspace is not None else Workspace.default()


def _listify(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


class Dataset:
    """One version of a dataset: a draft being built, or a closed (immutable) version."""

    def __init__(self, workspace: Workspace, version_id: str) -> None:
        self._ws = workspace
        self._id = version_id

    # ----- identity ---------------------------------------------------------------------

    def _draft(self) -> Draft | None:
        return self._ws.catalogue.draft(self._id)

    def _manifest(self) -> Manifest:
        return self._ws.manifest(self._id)

    def _field(self, name: str) -> Any:
        d = self._draft()
        return getattr(d, name) if d is not None else getattr(self._manifest(), name)

    @property
    def id(self) -> str:
        return self._id

    @property
    def name(self) -> str:
        return str(self._field("name"))

    @property
    def project(self) -> str:
        return str(self._field("project"))

    @property
    def version(self) -> str:
        return str(self._field("version"))

    @property
    def tags(self) -> list[str]:
        return list(self._field("tags"))

    @tags.setter
    def tags(self, values: Sequence[str]) -> None:
        self._set(tags=tuple(values))

    @property
    def description(self) -> str:
        return str(self._field("description"))

    @property
    def parents(self) -> list[str]:
        return list(self._field("parents"))

    @property
    def state(self) -> str:
        return DRAFT if self._draft() is not None else self._manifest().state

    @property
    def workspace(self) -> Workspace:
        return self._ws

    def is_final(self) -> bool:
        return self.state in (CLOSED, PUBLISHED)

    def is_dirty(self) -> bool:
        return (
            self._draft() is not None
            and self._ws.catalogue.pending_count(self._id, only_not_uploaded=True) > 0
        )

    def get_default_storage(self) -> str:
        return str(self._field("data_url"))

    def __repr__(self) -> str:
        return f"<Dataset {self.project}/{self.name}@{self.version} {self._id} {self.state}>"

    def _log(self, op: str, **args: Any) -> None:
        if self._draft() is not None:
            record = {"time": now_iso(), "op": op, "args": {k: _jsonable(v) for k, v in args.items()}}
            command = os.environ.get("DSMOUNT_COMMAND")
            if command:
                record["command"] = command
            self._ws.catalogue.append_oplog(self._id, record)

    def _need_draft(self) -> Draft:
        return drafts.get_draft(self._ws, self._id)

    def _need_closed(self) -> Manifest:
        return admin.check_closed(self._ws, self._id)

    # ----- creating and finding ---------------------------------------------------------

    @classmethod
    def create(
        cls,
        dataset_name: str | None = None,
        dataset_project: str | None = None,
        dataset_tags: Sequence[str] | None = None,
        parent_datasets: Sequence[str | Dataset] | None = None,
        use_current_task: bool = False,
        dataset_version: str | None = None,
        output_uri: str | None = None,
        description: str | None = None,
        *,
        chunk_size: int | str | None = None,
        workspace: Workspace | None = None,
    ) -> Dataset:
        """A new draft; parents (ids, references or Datasets) are merged in order, the later winning."""
        if use_current_task:
            raise UsageError("use_current_task needs a ClearML task; dsmount has none")
        ws = _ws(workspace)
        parents = [p.id if isinstance(p, Dataset) else ws.resolve(p) for p in parent_datasets or []]
        d = drafts.create(
            ws,
            name=dataset_name or "",
            project=dataset_project,
            parents=parents,
            version=dataset_version,
            data_url=output_uri,
            tags=list(dataset_tags or []),
            description=description or "",
            chunk_size=parse_size(chunk_size) if chunk_size is not None else None,
        )
        ws.catalogue.set_state(LAST_ID, d.id)
        ds = cls(ws, d.id)
        ds._log("create", name=d.name, project=d.project, parents=parents, version=d.version)
        return ds

    @classmethod
    def get(
        cls,
        dataset_id: str | None = None,
        dataset_project: str | None = None,
        dataset_name: str | None = None,
        dataset_tags: Sequence[str] | None = None,
        only_completed: bool = False,
        only_published: bool = False,
        include_archived: bool = False,
        auto_create: bool = False,
        writable_copy: bool = False,
        dataset_version: str | None = None,
        alias: str | None = None,
        overridable: bool = False,
        shallow_search: bool = False,
        *,
        workspace: Workspace | None = None,
    ) -> Dataset:
        """A version by id/prefix/reference, or the highest version matching project/name/tags."""
        ws = _ws(workspace)
        if dataset_id:
            vid = ws.resolve(dataset_id)
            if ws.catalogue.draft(vid) is None:
                ws.refresh_one(vid)  # another machine may have deleted, renamed or published it
                if ws.catalogue.manifest(vid) is None:
                    ws.drop_local(vid)
                    raise DatasetNotFoundError(f"dataset version {vid} no longer exists (deleted)")
        else:
            if not (dataset_project or dataset_name):
                raise UsageError("give a dataset id, or a project and/or name")
            ws.refresh()
            rows = ws.catalogue.search(
                project=dataset_project,
                name=None,
                tags=list(dataset_tags or []) or None,
                version=dataset_version,
                only_completed=only_completed or only_published,
                include_drafts=not (only_completed or only_published),
                recursive_project=False,
            )
            rows = [r for r in rows if dataset_name is None or r.name == dataset_name]
            if only_published:
                rows = [r for r in rows if r.state == PUBLISHED]
            if not rows:
                if auto_create and dataset_name:
                    return cls.create(dataset_name, dataset_project, dataset_tags, workspace=ws)
                what = "/".join(x for x in (dataset_project, dataset_name) if x)
                raise DatasetNotFoundError(f"no dataset version matches {what!r}")
            vid = rows[-1].id
        ws.catalogue.set_state(LAST_ID, vid)
        ds = cls(ws, vid)
        if writable_copy:
            return cls.create(ds.name, ds.project, parent_datasets=[ds], workspace=ws)
        return ds

    @classmethod
    def last_used(cls, workspace: Workspace | None = None) -> Dataset:
        """The dataset the previous command worked on (clearml-data's --id default)."""
        ws = _ws(workspace)
        vid = ws.catalogue.get_state(LAST_ID)
        if not vid:
            raise UsageError("no dataset given and none used before; pass --id")
        return cls(ws, ws.resolve(vid))

    # ----- building a draft -------------------------------------------------------------

    def add_files(
        self,
        path: str | os.PathLike[str],
        wildcard: str | Sequence[str] | None = None,
        local_base_folder: str | os.PathLike[str] | None = None,
        dataset_path: str | None = None,
        recursive: bool = True,
        verbose: bool = False,
        max_workers: int | None = None,
    ) -> int:
        """Hash files now and record those that differ; returns how many were added or modified."""
        d = self._need_draft()
        files = scan.walk(
            path,
            wildcard=wildcard,
            local_base_folder=local_base_folder,
            dataset_path=dataset_path,
            recursive=recursive,
        )
        added, modified = drafts.add_files(self._ws, d, files, max_workers=max_workers)
        self._log("add_files", path=path, wildcard=wildcard, dataset_path=dataset_path, recursive=recursive)
        return added + modified

    def add_external_files(
        self,
        source_url: str | Sequence[str],
        wildcard: str | Sequence[str] | None = None,
        dataset_path: str | None = None,
        recursive: bool = True,
        verbose: bool = False,
        max_workers: int | None = None,
    ) -> int:
        """Register files that stay at their URL (links); their bytes are hashed, not copied."""
        d = self._need_draft()
        count = 0
        for url in _listify(source_url):
            entries = scan.link_entries(
                url, wildcard=wildcard, dataset_path=dataset_path, recursive=recursive, origin=d.id
            )
            added, modified = drafts.add_links(self._ws, d, entries)
            count += added + modified
        self._log("add_external_files", source_url=source_url, wildcard=wildcard, dataset_path=dataset_path)
        return count

    def remove_files(
        self, dataset_path: str | None = None, recursive: bool = True, verbose: bool = False
    ) -> int:
        """Remove paths, folders or wildcard matches (or links by URL); metadata only."""
        d = self._need_draft()
        removed = drafts.remove_files(self._ws, d, dataset_path or "*", recursive=recursive)
        self._log("remove_files", dataset_path=dataset_path, recursive=recursive)
        return removed

    def sync_folder(
        self, local_path: str | os.PathLike[str], dataset_path: str | None = None, verbose: bool = False
    ) -> tuple[int, int, int]:
        """Make the dataset (below ``dataset_path``) mirror a local folder: (removed, added, modified)."""
        d = self._need_draft()
        if not Path(local_path).is_dir():
            raise UsageError(f"sync needs a folder: {local_path}")
        prefix = (dataset_path or "").strip("/")
        files = scan.walk(local_path, dataset_path=prefix or None)
        local = {f.path for f in files}
        view = drafts.TreeView(self._ws, d)
        gone = [
            e.path
            for e in view.iter_entries()
            if e.kind != LINK and (not prefix or is_under(e.path, prefix)) and e.path not in local
        ]
        removed = 0
        if gone:
            in_base = view.base_many(gone)
            with self._ws.catalogue.transaction():
                self._ws.catalogue.delete_pending(d.id, gone)
                self._ws.catalogue.put_pending(
                    d.id, [(Entry(p, TOMBSTONE), "") for p in gone if p in in_base]
                )
            removed = len(gone)
        added, modified = drafts.add_files(self._ws, d, files)
        self._log("sync_folder", local_path=local_path, dataset_path=dataset_path)
        return removed, added, modified

    def upload(
        self,
        show_progress: bool = True,
        verbose: bool = False,
        output_url: str | None = None,
        compression: int | None = None,
        chunk_size: int | str | None = None,
        max_workers: int | None = None,
        retries: int = 3,
        preview: bool = True,
    ) -> None:
        """Zip pending files into chunks (about ``chunk_size`` each) in the data location."""
        d = self._need_draft()
        drafts.upload(
            self._ws,
            d,
            chunk_size=_chunk(chunk_size),
            max_workers=max_workers,
            output_url=output_url,
            show_progress=None if show_progress else False,
        )
        self._log("upload", output_url=output_url, chunk_size=chunk_size)

    def finalize(self, verbose: bool = False, raise_on_error: bool = True, auto_upload: bool = False) -> bool:
        """Close the draft: it becomes an immutable version others can use as a parent."""
        d = self._need_draft()
        self._log("finalize", auto_upload=auto_upload)
        d = self._need_draft()
        try:
            drafts.close(self._ws, d, auto_upload=auto_upload)
        except Exception:
            if raise_on_error:
                raise
            return False
        return True

    def close(
        self,
        *,
        upload: bool = True,
        chunk_size: int | str | None = None,
        max_workers: int | None = None,
        output_url: str | None = None,
        show_progress: bool | None = None,
    ) -> Manifest:
        """Upload what is pending (unless ``upload`` is False, then a dirty draft is an error) and close."""
        d = self._need_draft()
        self._log("close", upload=upload)
        d = self._need_draft()
        return drafts.close(
            self._ws,
            d,
            auto_upload=upload,
            chunk_size=_chunk(chunk_size),
            max_workers=max_workers,
            output_url=output_url,
            show_progress=show_progress,
        )

    def publish(self, raise_on_error: bool = True) -> bool:
        try:
            admin.publish(self._ws, self._id)
        except Exception:
            if raise_on_error:
                raise
            return False
        return True

    def discard(self) -> None:
        """Delete this draft and the chunks it uploaded."""
        drafts.discard(self._ws, self._need_draft())

    # ----- descriptive fields -----------------------------------------------------------

    def _set(self, **fields: Any) -> None:
        admin.set_fields(self._ws, self._id, **fields)

    def set_description(self, description: str) -> None:
        self._set(description=description)

    def add_tags(self, tags: str | Sequence[str]) -> None:
        self._set(tags=tuple(dict.fromkeys([*self.tags, *_listify(tags)])))

    def set_metadata(self, metadata: Any, metadata_name: str = "metadata", ui_visible: bool = True) -> None:
        """Attach JSON-serialisable metadata under a name (ClearML takes any artifact; we take JSON)."""
        if metadata_name.startswith("data_"):
            raise UsageError("metadata names may not start with 'data_'")
        try:
            json.dumps(metadata)
        except TypeError as exc:
            raise UsageError(f"metadata must be JSON-serialisable: {exc}") from None
        current = dict(self._field("metadata"))
        current[metadata_name] = metadata
        self._set(metadata=current)

    def get_metadata(self, metadata_name: str = "metadata") -> Any:
        return dict(self._field("metadata")).get(metadata_name)

    # ----- reading ----------------------------------------------------------------------

    def _tree(self) -> Mapping[str, Entry]:
        d = self._draft()
        if d is not None:
            return drafts.effective_tree(self._ws, d)
        self._need_closed()
        return self._ws.tree(self._id).to_tree()

    def _entries(self) -> list[Entry]:
        d = self._draft()
        if d is not None:
            return sorted(drafts.effective_tree(self._ws, d).values(), key=lambda e: e.path)
        self._need_closed()
        return list(self._ws.tree(self._id).iter_entries())

    def list_files(
        self, dataset_path: str | None = None, recursive: bool = True, dataset_id: str | None = None
    ) -> list[str]:
        """Sorted paths, optionally matching a wildcard/folder, or only those introduced by one version."""
        return [e.path for e in self.list_entries(dataset_path, recursive, dataset_id)]

    def list_entries(
        self, dataset_path: str | None = None, recursive: bool = True, dataset_id: str | None = None
    ) -> list[Entry]:
        out = []
        pat = (dataset_path or "").strip("/")
        origin = self._ws.resolve(dataset_id) if dataset_id else None
        for e in self._entries():
            if origin is not None and e.origin != origin:
                continue
            if pat:
                folder_match = is_under(e.path, pat) and (recursive or "/" not in e.path[len(pat) + 1 :])
                wild = drafts.wildcard_match(e.path, pat, recursive)
                if not (folder_match or wild):
                    continue
            elif not recursive and "/" in e.path:
                continue
            out.append(e)
        return out

    def _diff(self, dataset_id: str | None) -> TreeDiff:
        if dataset_id:
            base: Mapping[str, Entry] = Dataset(self._ws, self._ws.resolve(dataset_id))._tree()
        else:
            base = self._ws.base_tree(self.parents)
        return diff_trees(base, self._tree())

    def list_added_files(self, dataset_id: str | None = None) -> list[str]:
        return [e.path for e in self._diff(dataset_id).added]

    def list_modified_files(self, dataset_id: str | None = None) -> list[str]:
        return [new.path for _old, new in self._diff(dataset_id).modified]

    def list_removed_files(self, dataset_id: str | None = None) -> list[str]:
        return [e.path for e in self._diff(dataset_id).removed]

    def compare(self, other: str | Dataset) -> TreeDiff:
        """What changed from ``other`` (the source) to this version (the target)."""
        src = other if isinstance(other, Dataset) else Dataset(self._ws, self._ws.resolve(other))
        return diff_trees(src._tree(), self._tree())

    @property
    def file_entries(self) -> list[Entry]:
        return [e for e in self._entries() if e.kind in (FILE, SYMLINK)]

    @property
    def file_entries_dict(self) -> dict[str, Entry]:
        return {e.path: e for e in self.file_entries}

    @property
    def link_entries(self) -> list[Entry]:
        return [e for e in self._entries() if e.kind == LINK]

    @property
    def link_entries_dict(self) -> dict[str, Entry]:
        return {e.path: e for e in self.link_entries}

    def get_dependency_graph(self) -> dict[str, list[str]]:
        d = self._draft()
        if d is not None:
            graph: dict[str, list[str]] = {self._id: list(d.parents)}
            for p in d.parents:
                graph.update({k: list(v) for k, v in self._ws.ancestors(p).items()})
            return graph
        return {k: list(v) for k, v in self._ws.ancestors(self._id).items()}

    def get_num_chunks(self, include_parents: bool = True) -> int:
        d = self._draft()
        if d is not None:
            own = len(d.chunks)
            ids = [i for p in d.parents for i in self._ws.ancestors(p)] if include_parents else []
        else:
            own = 0
            ids = list(self._ws.ancestors(self._id)) if include_parents else [self._id]
        return own + sum(len(self._ws.manifest(i).chunks) for i in dict.fromkeys(ids))

    def summary(self) -> dict[str, Any]:
        """Everything `dsmount show` prints: metadata, lineage, change summary, operation log."""
        d = self._draft()
        if d is not None:
            diff = self._diff(None)
            tree = self._tree()
            return {
                "id": self._id,
                "project": d.project,
                "name": d.name,
                "version": d.version,
                "state": DRAFT,
                "parents": list(d.parents),
                "tags": list(d.tags),
                "description": d.description,
                "created": d.created,
                "user": d.user,
                "host": d.host,
                "data_url": d.data_url,
                "chunks": len(d.chunks),
                "pending_upload": self._ws.catalogue.pending_count(self._id, only_not_uploaded=True),
                "stats": {
                    "files": len(tree),
                    "bytes": sum(e.size for e in tree.values()),
                    "added": len(diff.added),
                    "modified": len(diff.modified),
                    "removed": len(diff.removed),
                    "added_bytes": diff.added_bytes,
                    "modified_bytes": diff.modified_bytes,
                    "removed_bytes": diff.removed_bytes,
                },
                "metadata": dict(d.metadata),
                "oplog": list(d.oplog),
                "lineage": self.get_dependency_graph(),
            }
        m = self._manifest()
        from dataclasses import asdict

        doc = asdict(m)
        doc["lineage"] = self.get_dependency_graph()
        doc["chunks"] = len(m.chunks)
        return doc

    # ----- getting the files ------------------------------------------------------------

    def _selection(
        self, files: Sequence[str] | None, part: int | None, num_parts: int | None
    ) -> tuple[Iterable[Entry], int]:
        """What a get fetches, and its size; the whole version is streamed from the index."""
        index = self._ws.tree(self._id)
        if not files and part is None and num_parts is None:
            return index.iter_entries(), index.total_bytes()
        chosen = fetch.select(index.iter_entries(), files, part, num_parts)
        return chosen, sum(e.size for e in chosen)

    def get_local_copy(
        self,
        use_soft_links: bool | None = None,
        part: int | None = None,
        num_parts: int | None = None,
        raise_on_error: bool = True,
        max_workers: int | None = None,
        files: Sequence[str] | None = None,
        show_progress: bool | None = None,
    ) -> str:
        """A read-only copy in the local cache folder (hard links into the content cache)."""
        self._need_closed()
        entries, total = self._selection(files, part, num_parts)
        key = ""
        if files or num_parts is not None:
            key = hashlib.sha256(json.dumps([sorted(files or []), part, num_parts]).encode()).hexdigest()[:12]
        path = fetch.cached_copy(
            self._ws,
            self._id,
            entries,
            key,
            total=total,
            max_workers=max_workers,
            show_progress=show_progress,
        )
        self._ws.catalogue.set_state(LAST_ID, self._id)
        return str(path)

    def mount(
        self,
        mountpoint: str | os.PathLike[str],
        *,
        allow_other: bool = False,
        prefetch: bool | Sequence[str] = False,
        uid: int | None = None,
        gid: int | None = None,
        timeout: float = 60.0,
        writable: bool = False,
    ) -> Mount:
        """Mount this closed version read-only at ``mountpoint``; returns once the mount answers.

        The result is a context manager that unmounts on exit; ``prefetch`` (True, or paths)
        warms the cache in the background once mounted. Reads are lazy and verified.
        ``writable`` adds an overlay kept in the mount's state folder (``Mount.diff()`` lists its changes).
        """
        from mountfs.daemon.mount import mount

        self._need_closed()
        paths = [] if isinstance(prefetch, bool) else list(prefetch)
        handle = mount(
            self._ws,
            self._id,
            mountpoint,
            allow_other=allow_other,
            prefetch=bool(prefetch),
            prefetch_paths=paths,
            uid=uid,
            gid=gid,
            timeout=timeout,
            writable=writable,
        )
        self._ws.catalogue.set_state(LAST_ID, self._id)
        return handle

    def get_mutable_local_copy(
        self,
        target_folder: str | os.PathLike[str],
        overwrite: bool = False,
        part: int | None = None,
        num_parts: int | None = None,
        raise_on_error: bool = True,
        max_workers: int | None = None,
        files: Sequence[str] | None = None,
        link: bool = False,
        show_progress: bool | None = None,
    ) -> str:
        """Writable files (modes and mtimes as stored) in ``target_folder``; with ``link``, hard links."""
        self._need_closed()
        entries, total = self._selection(files, part, num_parts)
        target = Path(target_folder).expanduser().absolute()
        fetch.prepare_target(target, overwrite)
        fetch.materialize(
            self._ws,
            entries,
            target,
            mode=fetch.LINK_MODE if link else fetch.COPY_MODE,
            total=total,
            max_workers=max_workers,
            show_progress=show_progress,
        )
        self._ws.catalogue.set_state(LAST_ID, self._id)
        return str(target)

    def verify_dataset_hash(
        self,
        local_copy_path: str | os.PathLike[str] | None = None,
        skip_hash: bool = False,
        verbose: bool = False,
    ) -> list[str]:
        """Paths whose local copy is missing or differs (SHA-256, or size only with ``skip_hash``)."""
        self._need_closed()
        folder = Path(local_copy_path) if local_copy_path is not None else Path(self.get_local_copy())
        if not folder.is_dir():
            raise UsageError(f"not a folder: {folder}")
        return fetch.verify_folder(self._ws.tree(self._id).iter_entries(), folder, skip_hash=skip_hash)

    # ----- whole datasets ---------------------------------------------------------------

    @classmethod
    def list_datasets(
        cls,
        dataset_project: str | None = None,
        partial_name: str | None = None,
        tags: Sequence[str] | None = None,
        ids: Sequence[str] | None = None,
        only_completed: bool = True,
        recursive_project_search: bool = True,
        include_archived: bool = True,
        *,
        workspace: Workspace | None = None,
    ) -> list[dict[str, Any]]:
        ws = _ws(workspace)
        ws.refresh()
        rows = ws.catalogue.search(
            ids=[ws.resolve(i) for i in ids] if ids else None,
            project=dataset_project,
            name=partial_name,
            tags=list(tags) if tags else None,
            only_completed=only_completed,
            recursive_project=recursive_project_search,
            include_drafts=not only_completed,
        )
        return [r.as_dict() for r in rows]

    @classmethod
    def delete(
        cls,
        dataset_id: str | None = None,
        dataset_project: str | None = None,
        dataset_name: str | None = None,
        force: bool = False,
        dataset_version: str | None = None,
        entire_dataset: bool = False,
        shallow_search: bool = False,
        delete_files: bool = True,
        delete_external_files: bool = False,
        *,
        workspace: Workspace | None = None,
    ) -> list[str]:
        """Delete a version (or, with ``entire_dataset`` and ``force``, every version of a dataset).

        Refuses while other versions list it as a parent; a published version needs ``force``.
        External files (links) are never deleted. Returns the deleted ids.
        """
        ws = _ws(workspace)
        if entire_dataset:
            if not force:
                raise UsageError("deleting an entire dataset needs --force")
            if not (dataset_project and dataset_name):
                if not dataset_id:
                    raise UsageError("--entire-dataset needs --project and --name (or --id)")
                one = cls(ws, ws.resolve(dataset_id))
                dataset_project, dataset_name = one.project, one.name
            ws.refresh()
            ids = [r.id for r in ws.catalogue.versions_of(dataset_project, dataset_name)]
            if not ids:
                raise DatasetNotFoundError(f"no dataset {dataset_project}/{dataset_name}")
        elif dataset_id:
            ids = [ws.resolve(dataset_id)]
        elif dataset_project and dataset_name:
            ref = f"{dataset_project}/{dataset_name}" + (f"@{dataset_version}" if dataset_version else "")
            ids = [ws.resolve(ref)]
        else:
            raise UsageError("give --id, or --project and --name")
        done = admin.delete_versions(ws, ids, force=force, delete_files=delete_files)
        if ws.catalogue.get_state(LAST_ID) in ids:
            ws.catalogue.set_state(LAST_ID, None)
        return done.ids + done.drafts

    @classmethod
    def rename(
        cls,
        new_dataset_name: str,
        dataset_project: str,
        dataset_name: str,
        *,
        workspace: Workspace | None = None,
    ) -> int:
        return admin.rename_dataset(_ws(workspace), dataset_project, dataset_name, new_name=new_dataset_name)

    @classmethod
    def move_to_project(
        cls,
        new_dataset_project: str,
        dataset_project: str,
        dataset_name: str,
        *,
        workspace: Workspace | None = None,
    ) -> int:
        return admin.rename_dataset(
            _ws(workspace), dataset_project, dataset_name, new_project=new_dataset_project
        )

    @classmethod
    def squash(
        cls,
        dataset_name: str,
        dataset_ids: Sequence[str | Dataset] | None = None,
        dataset_project_name_pairs: Sequence[tuple[str, str]] | None = None,
        output_url: str | None = None,
        close_squashed_dataset: bool = True,
        *,
        dataset_project: str | None = None,
        workspace: Workspace | None = None,
    ) -> Dataset:
        """A new version with no parents holding the merged tree of the given versions (later wins).

        Its bytes are written again into its own chunks, so the squashed version stands
        alone and the history it came from can be deleted. History is never rewritten.
        """
        ws = _ws(workspace)
        refs: list[str] = [d.id if isinstance(d, Dataset) else d for d in dataset_ids or []]
        refs += [f"{p}/{n}" for p, n in dataset_project_name_pairs or []]
        if not refs:
            raise UsageError("squash needs at least one version (--ids)")
        sources = [cls(ws, ws.resolve(r)) for r in refs]
        for s in sources:
            s._need_closed()
        import tempfile

        from mountfs.tree.merge import merge_parents

        merged = merge_parents([ws.tree(s.id).to_tree() for s in sources])
        out = cls.create(
            dataset_name,
            dataset_project or sources[0].project,
            output_uri=output_url,
            workspace=ws,
        )
        ws.catalogue.update_draft(out.id, metadata={"squashed_from": [s.id for s in sources]})
        with tempfile.TemporaryDirectory(dir=ws.settings.home, prefix=".squash-") as tmp:
            entries = sorted(merged.values(), key=lambda e: e.path)
            fetch.materialize(ws, [e for e in entries if e.kind != LINK], Path(tmp), mode=fetch.COPY_MODE)
            if any(e.kind != LINK for e in entries):
                out.add_files(tmp)
            links = [e for e in entries if e.kind == LINK]
            if links:
                d = out._need_draft()
                drafts.add_links(
                    ws,
                    d,
                    [
                        Entry(e.path, LINK, e.size, e.sha256, e.mode, e.mtime_ns, e.target, origin=out.id)
                        for e in links
                    ],
                )
            out._log("squash", dataset_ids=[s.id for s in sources])
            if close_squashed_dataset:
                out.close()
        return out


def _chunk(value: int | str | None) -> int | None:
    return parse_size(value) if value is not None else None


def _jsonable(v: Any) -> Any:
    if isinstance(v, os.PathLike):
        return os.fspath(v)
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, str | int | float | bool) or v is None:
        return v
    return str(v)


__all__ = ["CLOSED", "DRAFT", "PUBLISHED", "Dataset", "NotClosedError"]
