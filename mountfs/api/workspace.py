"""The machine-local view of one store: catalogue, content cache and merged-tree indexes.

A Workspace is what every API call and CLI command works through. The store's
registry is the truth; everything here is derived from it (or is a draft) and
can be rebuilt, which is why refresh() may run at any time.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import socket
import threading
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mountfs.catalogue.catalogue import Catalogue
from mountfs.catalogue.refs import parse_ref
from mountfs.config import Settings
from mountfs.errors import (
    DatasetNotFoundError,
    IntegrityError,
    MountfsError,
    NotClosedError,
    ObjectMissingError,
    StoreUnavailableError,
)
from mountfs.snapshot.entries import Entry
from mountfs.snapshot.filetable import decode_file_table
from mountfs.snapshot.manifest import Manifest
from mountfs.storage.cache import ContentCache
from mountfs.storage.store import Store
from mountfs.tree.index import SUFFIX as TREE_SUFFIX
from mountfs.tree.index import TreeIndex
from mountfs.tree.merge import merge_parents, merge_version, topo_order

REGISTRY = "registry/"


def registry_key(version_id: str) -> str:
    return f"{REGISTRY}{version_id}.json"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def new_id() -> str:
    return uuid.uuid4().hex


def whoami() -> tuple[str, str]:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return user, socket.gethostname()


class Workspace:
    """One store URL plus this machine's catalogue, cache and tree indexes for it."""

    _default: Workspace | None = None
    _default_key: tuple[str, str, int] | None = None
    _lock = threading.Lock()

    def __init__(
        self,
        store: str | None = None,
        *,
        home: str | os.PathLike[str] | None = None,
        cache_size: int | str | None = None,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        self.settings = Settings.load(store=store, home=home, cache_size=cache_size)
        self.storage_options = storage_options or {}
        self.store = Store(self.settings.store_url, storage_options=self.storage_options)
        home_path = self.settings.home
        home_path.mkdir(parents=True, exist_ok=True)
        store_key = hashlib.sha256(self.store.url.encode()).hexdigest()[:16]
        (home_path / "catalogues").mkdir(exist_ok=True)
        self.catalogue = Catalogue(home_path / "catalogues" / f"{store_key}.db")
        self.cache = ContentCache(self.settings.cache_dir, self.settings.cache_size)
        self.trees_dir = home_path / "trees"
        self.trees_dir.mkdir(exist_ok=True)
        self.copies_dir = home_path / "copies"
        self.copies_dir.mkdir(exist_ok=True)
        self._data_stores: dict[str, Store] = {}
        self._trees: dict[str, TreeIndex] = {}
        self._refreshed = False

    @classmethod
    def default(cls) -> Workspace:
        """The workspace named by the environment, shared by API calls that do not pass one."""
        settings = Settings.load()
        key = (settings.store_url, str(settings.home), settings.cache_size)
        with cls._lock:
            if cls._default is None or cls._default_key != key:
                cls._default = cls()
                cls._default_key = key
            return cls._default

    @property
    def default_data_url(self) -> str:
        return self.store.url.rstrip("/") + "/data"

    def data_store(self, url: str) -> Store:
        store = self._data_stores.get(url)
        if store is None:
            store = Store(url, storage_options=self.storage_options)
            self._data_stores[url] = store
        return store

    def close(self) -> None:
        for tree in self._trees.values():
            tree.close()
        self._trees.clear()
        self.cache.close()
        self.catalogue.close()

    # ----- the registry ---------------------------------------------------------------------

    def refresh(self) -> None:
        """Bring the catalogue in line with the registry: new, replaced and deleted manifests.

        Only manifests whose etag changed are read, so a refresh of an unchanged
        registry costs one listing.
        """
        if self.store.exists(REGISTRY.rstrip("/")):
            # Listing 'registry/' would return the file itself and make every version vanish.
            raise StoreUnavailableError(
                f"store {self.store.url} is damaged: 'registry' is a file, not a folder"
            )
        known = self.catalogue.etags()
        seen: set[str] = set()
        changed: dict[str, str] = {}
        for info in self.store.list(REGISTRY):
            name = info.key.rsplit("/", 1)[-1]
            if not name.endswith(".json"):
                continue
            vid = name[: -len(".json")]
            seen.add(vid)
            if known.get(vid) != info.etag:
                changed[info.key] = info.etag
        keys = sorted(changed)
        for start in range(0, len(keys), 256):  # concurrent reads on a remote registry
            got = self.store.read_many(keys[start : start + 256])
            found = []
            for key in keys[start : start + 256]:
                raw = got[key]
                if isinstance(raw, ObjectMissingError):
                    continue  # deleted while we listed
                if isinstance(raw, MountfsError):
                    raise raw
                found.append((Manifest.from_json(raw, where=key), changed[key]))
            self.catalogue.upsert_manifests(found)
        for vid in known.keys() - seen:
            self.catalogue.remove_version(vid)
        for draft in self.catalogue.drafts():
            if draft.id in seen:
                # A close killed after its manifest: the version exists, the draft is done. Checked
                # for every draft, not only changed manifests, because that close already indexed it.
                self.catalogue.delete_draft(draft.id)
        self._refreshed = True

    def ensure_refreshed(self) -> None:
        if not self._refreshed:
            self.refresh()

    def refresh_one(self, version_id: str) -> None:
        """Re-read one manifest from the registry before changing it (another machine may have)."""
        key = registry_key(version_id)
        try:
            info = self.store.info(key)
            manifest = Manifest.from_json(self.store.read_bytes(key), where=key)
        except ObjectMissingError:
            self.catalogue.remove_version(version_id)
            return
        self.catalogue.upsert_manifest(manifest, info.etag)

    def all_manifests(self) -> list[Manifest]:
        """Every closed version the catalogue knows (call refresh() first for the registry's view)."""
        out = []
        for row in self.catalogue.search(only_completed=True):
            m = self.catalogue.manifest(row.id)
            if m is not None:
                out.append(m)
        return out

    def resolve(self, ref: str, *, include_drafts: bool = True) -> str:
        """Full id, unique id prefix or project/name[@version] to a version id.

        A name reference is resolved against a fresh registry listing: its newest version
        may have been created (or deleted) on another machine since the last refresh.
        """
        if not self._refreshed or parse_ref(ref).kind == "name":
            self.refresh()
        try:
            return self.catalogue.resolve(ref, include_drafts=include_drafts)
        except DatasetNotFoundError:
            self.refresh()
            return self.catalogue.resolve(ref, include_drafts=include_drafts)

    def manifest(self, version_id: str) -> Manifest:
        m = self.catalogue.manifest(version_id)
        if m is not None:
            return m
        try:
            info = self.store.info(registry_key(version_id))
            m = Manifest.from_json(self.store.read_bytes(registry_key(version_id)), where=info.key)
        except ObjectMissingError:
            if self.catalogue.draft(version_id) is not None:
                raise NotClosedError(f"version {version_id} is a draft; close it first") from None
            raise DatasetNotFoundError(f"no dataset version {version_id}") from None
        self.catalogue.upsert_manifest(m, info.etag)
        return m

    def write_manifest(self, m: Manifest, *, exclusive: bool = False) -> bool:
        """Write (or atomically replace) a manifest, then index it; False if exclusive and present."""
        key = registry_key(m.id)
        if not self.store.write_bytes(key, m.to_json(), exclusive=exclusive):
            return False
        self.catalogue.upsert_manifest(m, self.store.info(key).etag)
        return True

    # ----- file tables and merged trees -----------------------------------------------------

    def file_table(self, m: Manifest) -> list[Entry]:
        """A version's own changes, verified against the size and SHA-256 its manifest records."""
        raw = self.data_store(m.data_url).read_bytes(m.file_table.key)
        if len(raw) != m.file_table.size or hashlib.sha256(raw).hexdigest() != m.file_table.sha256:
            raise IntegrityError(f"file table of {m.id} does not match its manifest ({m.file_table.key})")
        return decode_file_table(raw, m.id)

    def tree_path(self, version_id: str) -> Path:
        return self.trees_dir / f"{version_id}{TREE_SUFFIX}"

    def tree(self, version_id: str) -> TreeIndex:
        """The merged-tree index of a closed version, built once from the DAG's file tables."""
        cached = self._trees.get(version_id)
        if cached is not None:
            return cached
        path = self.tree_path(version_id)
        if not path.exists():
            self._build_trees(version_id)
        index = TreeIndex.open(path)
        self._trees[version_id] = index
        return index

    def _build_trees(self, version_id: str) -> None:
        # Walk up only as far as versions whose index already exists: those are leaves here.
        parents: dict[str, Sequence[str]] = {}
        stack = [version_id]
        while stack:
            vid = stack.pop()
            if vid in parents:
                continue
            if vid != version_id and self.tree_path(vid).exists():
                parents[vid] = ()
                continue
            parents[vid] = self.manifest(vid).parents
            stack.extend(p for p in parents[vid] if p not in parents)
        # Walking down a chain, the tree just built is the next one's parent: keep it instead
        # of reading it back, and never hold two whole trees beyond that.
        last: tuple[str, dict[str, Entry]] | None = None
        for vid in topo_order(version_id, parents):
            if vid != version_id and self.tree_path(vid).exists():
                continue
            m = self.manifest(vid)
            if last is not None and tuple(m.parents) == (last[0],):
                parent_trees = [last[1]]
            else:
                parent_trees = [self.tree(p).to_tree() for p in m.parents]
            last = None
            merged = merge_version(parent_trees, self.file_table(m))
            del parent_trees
            TreeIndex.build(self.tree_path(vid), vid, merged)
            last = (vid, merged)
            del merged
        del last
        release_memory()

    def base_tree(self, parents: Iterable[str]) -> dict[str, Entry]:
        """The merged trees of ``parents`` in order: what a draft with those parents starts from."""
        return merge_parents([self.tree(p).to_tree() for p in parents])

    def ancestors(self, version_id: str) -> dict[str, tuple[str, ...]]:
        """The DAG above a closed version: {id: parents} including the version itself."""
        graph: dict[str, tuple[str, ...]] = {}
        stack = [version_id]
        while stack:
            vid = stack.pop()
            if vid in graph:
                continue
            graph[vid] = tuple(self.manifest(vid).parents)
            stack.extend(graph[vid])
        return graph

    def drop_local(self, version_id: str) -> None:
        """Forget what this machine derived from a version (tree index, read-only copies)."""
        tree = self._trees.pop(version_id, None)
        if tree is not None:
            tree.close()
        self.tree_path(version_id).unlink(missing_ok=True)


def release_memory() -> None:
    """Give the heap freed by a tree build back to the OS before the files are fetched.

    glibc keeps freed memory mapped; without this, a get's peak is the tree build's peak
    plus the fetch's. Harmless elsewhere (no glibc: nothing to do).
    """
    import contextlib
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    name = ctypes.util.find_library("c")
    if name:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(name).malloc_trim(0)
