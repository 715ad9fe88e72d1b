"""Turning local files and external URLs into entries: walking, filtering, hashing.

Hashing is the expensive part of `add` and `sync`, so it runs in a thread pool in
batches (hashlib releases the GIL), and no file is read twice here.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from mountfs.errors import PathNotFoundError, UsageError
from mountfs.snapshot.entries import FILE, LINK, SYMLINK, Entry, normalize_path
from mountfs.storage.store import link_info, open_link

BLOCK = 1 << 20


@dataclass(frozen=True, slots=True)
class LocalFile:
    """A file found on disk, before hashing."""

    path: str
    """Its dataset path."""
    source: str
    size: int
    mode: int
    mtime_ns: int
    symlink: str = ""
    """Target, when the file is a symlink kept as a symlink."""


def _keep_symlink(link_path: str, root: str) -> str | None:
    """A symlink is kept as a symlink when it points inside the folder being added.

    Links that stay inside the dataset mean the same thing wherever the dataset
    lands; links that leave it would dangle on another machine, so their content
    is stored instead (rsync's --copy-unsafe-links rule).
    """
    target = os.readlink(link_path)
    resolved = os.path.realpath(os.path.join(os.path.dirname(link_path), target))
    root_real = os.path.realpath(root)
    if os.path.isabs(target):
        return None
    if resolved == root_real or resolved.startswith(root_real + os.sep):
        return target
    return None


def _matches(rel: str, patterns: Sequence[str] | None) -> bool:
    if not patterns:
        return True
    name = rel.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(rel, p) for p in patterns)


def walk(
    path: str | os.PathLike[str],
    *,
    wildcard: str | Sequence[str] | None = None,
    local_base_folder: str | os.PathLike[str] | None = None,
    dataset_path: str | None = None,
    recursive: bool = True,
) -> list[LocalFile]:
    """Files under ``path`` (a file, a folder or a glob) with the dataset paths they get.

    The dataset path of a file is ``dataset_path`` joined with its path relative to
    ``local_base_folder`` (default: the folder given, or a file's own folder).
    """
    patterns = [wildcard] if isinstance(wildcard, str) else list(wildcard or [])
    raw = os.fspath(path)
    if any(ch in raw for ch in "*?[") and not os.path.exists(raw):
        import glob

        matches = sorted(glob.glob(raw, recursive=recursive))
        if not matches:
            raise PathNotFoundError(f"no local files match {raw!r}")
        out: list[LocalFile] = []
        for m in matches:
            base = local_base_folder if local_base_folder is not None else os.path.dirname(m) or "."
            out.extend(
                walk(
                    m,
                    wildcard=patterns,
                    local_base_folder=base,
                    dataset_path=dataset_path,
                    recursive=recursive,
                )
            )
        return out
    root = os.path.abspath(raw)
    try:
        st = os.lstat(root)
    except FileNotFoundError:
        raise PathNotFoundError(f"no such file or folder: {raw}") from None
    except OSError as exc:
        raise PathNotFoundError(f"cannot read {raw}: {exc.strerror}") from None
    prefix = (dataset_path or "").strip("/")
    if prefix:
        prefix = normalize_path(prefix)
    if stat.S_ISDIR(st.st_mode):
        base = os.path.abspath(local_base_folder) if local_base_folder is not None else root
        files = list(_walk_dir(root, base, prefix, patterns, recursive))
    else:
        base = os.path.abspath(local_base_folder) if local_base_folder is not None else os.path.dirname(root)
        rel = os.path.relpath(root, base).replace(os.sep, "/")
        if rel.startswith(".."):
            raise UsageError(f"{raw} is not inside the base folder {local_base_folder}")
        files = [_local_file(root, rel, prefix, st, os.path.dirname(root))]
    files.sort(key=lambda f: f.path)
    return files


def _local_file(full: str, rel: str, prefix: str, st: os.stat_result, root: str) -> LocalFile:
    dpath = normalize_path(f"{prefix}/{rel}" if prefix else rel)
    if stat.S_ISLNK(st.st_mode):
        target = _keep_symlink(full, root)
        if target is not None:
            return LocalFile(dpath, full, len(target.encode()), 0o777, st.st_mtime_ns, symlink=target)
        try:
            st = os.stat(full)
        except OSError:
            raise PathNotFoundError(f"broken symlink leaving the dataset folder: {full}") from None
        if stat.S_ISDIR(st.st_mode):
            raise UsageError(f"{full} links to a folder outside the dataset; add that folder itself")
    return LocalFile(dpath, full, st.st_size, stat.S_IMODE(st.st_mode), st.st_mtime_ns)


def _walk_dir(root: str, base: str, prefix: str, patterns: list[str], recursive: bool) -> Iterator[LocalFile]:
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            it = os.scandir(folder)
        except OSError as exc:
            raise PathNotFoundError(f"cannot read folder {folder}: {exc.strerror}") from None
        with it:
            for de in it:
                if de.is_dir(follow_symlinks=False):
                    if recursive:
                        stack.append(de.path)
                    continue
                rel = os.path.relpath(de.path, base).replace(os.sep, "/")
                if rel.startswith(".."):
                    raise UsageError(f"{de.path} is not inside the base folder {base}")
                if not _matches(rel, patterns):
                    continue
                st = de.stat(follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode) or stat.S_ISREG(st.st_mode):
                    yield _local_file(de.path, rel, prefix, st, root)


def sha256_file(path: str) -> tuple[str, int]:
    """SHA-256 and byte count of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    n = 0
    try:
        with open(path, "rb", buffering=0) as f:
            while True:
                block = f.read(BLOCK)
                if not block:
                    break
                h.update(block)
                n += len(block)
    except FileNotFoundError:
        raise PathNotFoundError(f"file vanished while hashing: {path}") from None
    except OSError as exc:
        raise PathNotFoundError(f"cannot read {path}: {exc.strerror}") from None
    return h.hexdigest(), n


def hash_files(
    files: Sequence[LocalFile],
    *,
    origin: str,
    max_workers: int | None = None,
    advance: Callable[[int], None] | None = None,
) -> list[Entry]:
    """Entries for local files, hashed in parallel batches; order follows ``files``."""

    def one(f: LocalFile) -> Entry:
        if f.symlink:
            digest = hashlib.sha256(f.symlink.encode()).hexdigest()
            return Entry(f.path, SYMLINK, f.size, digest, 0o777, f.mtime_ns, target=f.symlink, origin=origin)
        digest, size = sha256_file(f.source)
        return Entry(f.path, FILE, size, digest, f.mode, f.mtime_ns, origin=origin)

    def batch(chunk: Sequence[LocalFile]) -> list[Entry]:
        out = [one(f) for f in chunk]
        if advance is not None:
            advance(sum(f.size for f in chunk))
        return out

    workers = max_workers or min(8, os.cpu_count() or 2)
    batches: list[Sequence[LocalFile]] = []
    current: list[LocalFile] = []
    weight = 0
    for f in files:
        current.append(f)
        weight += f.size + 16384
        if weight >= 8 << 20 or len(current) >= 512:
            batches.append(current)
            current, weight = [], 0
    if current:
        batches.append(current)
    if workers <= 1 or len(batches) <= 1:
        return [e for b in batches for e in batch(b)]
    with ThreadPoolExecutor(workers, thread_name_prefix="dsmount-hash") as pool:
        return [e for result in pool.map(batch, batches) for e in result]


def link_entries(
    source_url: str,
    *,
    wildcard: str | Sequence[str] | None,
    dataset_path: str | None,
    recursive: bool,
    origin: str,
) -> list[Entry]:
    """Entries for external files: their bytes stay at the URL, their SHA-256 is taken now.

    Hashing at add time is what lets `get` and the mount verify external bytes like
    any other file, instead of trusting the size as ClearML does.
    """
    import fsspec

    patterns = [wildcard] if isinstance(wildcard, str) else list(wildcard or [])
    fs, root = fsspec.core.url_to_fs(source_url)
    try:
        is_dir = fs.isdir(root)
    except OSError as exc:
        raise PathNotFoundError(f"cannot reach {source_url}: {exc}") from None
    prefix = (dataset_path or "").strip("/")
    urls: list[tuple[str, str]] = []
    if is_dir:
        found = fs.find(root, maxdepth=None if recursive else 1)
        base = root.rstrip("/")
        for p in sorted(found):
            rel = p[len(base) + 1 :] if p.startswith(base + "/") else p.rsplit("/", 1)[-1]
            if _matches(rel, patterns):
                urls.append((fs.unstrip_protocol(p) if "://" in source_url else p, rel))
    else:
        if not fs.exists(root):
            raise PathNotFoundError(f"no such external file: {source_url}")
        urls.append((source_url if "://" in source_url else os.path.abspath(root), root.rsplit("/", 1)[-1]))
    entries = []
    for url, rel in urls:
        size, canonical = link_info(url)
        h = hashlib.sha256()
        with open_link(canonical) as f:
            while block := f.read(BLOCK):
                h.update(block)
        dpath = normalize_path(f"{prefix}/{rel}" if prefix else rel)
        entries.append(Entry(dpath, LINK, size, h.hexdigest(), 0o644, 0, target=canonical, origin=origin))
    return entries
