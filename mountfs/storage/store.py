"""The store: immutable objects under one root URL, local or remote, behind one small interface.

Everything above this layer speaks keys ('registry/<id>.json', '<id>/chunk-0001.zip'), never
paths or URLs, so a local folder, ``memory://`` in tests and S3/GCS/Azure later are the same
code. A local folder is served with ``os`` directly because that is where the guarantees live
(atomic rename, fsync, ``pread``); anything else goes through fsspec's generic blocking API so
a new backend needs no change here. Every backend error leaves this module as a
``StoreError`` with a one-line message naming the store and the key.
"""

from __future__ import annotations

import builtins
import logging
import os
import re
import secrets
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO, NoReturn, TypeVar, cast

from mountfs.errors import IntegrityError, MountfsError, ObjectMissingError, StoreUnavailableError, UsageError
from mountfs.storage.backends import check_url, missing_package_message, options_for, redact
from mountfs.storage.retry import RetryPolicy, TransientError

log = logging.getLogger("dsmount.store")

T = TypeVar("T")
_TEMP_RE = re.compile(r"^\..*\.tmp-[0-9a-f]+$")
_FILE_SCHEME = "file://"


@dataclass(frozen=True)
class ObjectInfo:
    """What a caller needs to notice that an object was replaced without reading it."""

    key: str
    size: int
    etag: str
    mtime: float | None = None  # seconds since the epoch, when the backend says; gc's grace period uses it


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _raise_translated(exc: BaseException, url: str, key: str) -> NoReturn:
    """Map any backend failure onto our hierarchy so callers handle two cases, not fifty."""
    if isinstance(exc, MountfsError):
        raise exc
    if isinstance(exc, FileNotFoundError):
        raise ObjectMissingError(f"missing in store {url}: {key}") from exc
    if isinstance(exc, TransientError):
        raise IntegrityError(f"store {url} failed on {key}: {_one_line(exc)}") from exc
    if isinstance(exc, ImportError):
        raise UsageError(missing_package_message(url, exc)) from exc
    raise StoreUnavailableError(
        redact(f"store {url} failed on {key or '/'}: {type(exc).__name__}: {_one_line(exc)}")
    ) from exc


@contextmanager
def _translated(url: str, key: str) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        _raise_translated(exc, url, key)


def _is_local_url(url: str) -> bool:
    return url.startswith(_FILE_SCHEME) or "://" not in url


def _local_abspath(url: str) -> str:
    if url.startswith(_FILE_SCHEME):
        url = url[len(_FILE_SCHEME) :]
    return os.path.abspath(os.path.expanduser(url))


def _check_key(key: str, *, allow_empty: bool = False) -> str:
    """Refuse keys that could escape the root or alias another key; a prefix may end in '/'."""
    if allow_empty:
        if key == "":
            return key
        key = key[:-1] if key.endswith("/") else key
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\x00" in key:
        raise UsageError(f"bad store key {key!r}: keys are relative '/'-separated paths without '..'")
    return key


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _new_local_temp(path: str) -> tuple[str, BinaryIO]:
    """A temp file next to ``path``: same filesystem, so publishing it is one atomic rename."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp-{secrets.token_hex(6)}")
    return tmp, cast(BinaryIO, open(tmp, "x+b"))  # closed by _discard


def _publish_local(tmp: str, f: BinaryIO, path: str, *, exclusive: bool) -> bool:
    f.flush()
    os.fsync(f.fileno())
    f.close()
    if exclusive:
        try:
            os.link(tmp, path)  # atomic create-if-absent, which os.replace is not
        except FileExistsError:
            return False
    else:
        os.replace(tmp, path)
    _fsync_dir(os.path.dirname(path))
    return True


def _discard(tmp: str, f: BinaryIO) -> None:
    f.close()
    with suppress(FileNotFoundError):
        os.unlink(tmp)


def _local_info(key: str, st: os.stat_result) -> ObjectInfo:
    return ObjectInfo(key, st.st_size, f"{st.st_mtime_ns}-{st.st_size}-{st.st_ino}", st.st_mtime)


def _mtime(info: dict[str, Any]) -> float | None:
    for field in ("mtime", "LastModified", "last_modified", "updated", "created"):
        value = info.get(field)
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return None


def _etag(info: dict[str, Any]) -> str:
    """Pick whatever the backend offers that changes when an object is replaced."""
    for field in ("ETag", "etag", "md5", "content_md5", "generation", "version_id"):
        value = info.get(field)
        if value:
            return str(value).strip('"')
    stamp = info.get("mtime") or info.get("LastModified") or info.get("last_modified") or info.get("created")
    return f"{stamp}-{info.get('size')}"


class Store:
    """One root URL; keys are relative '/'-separated paths below it."""

    def __init__(
        self, url: str, *, storage_options: dict[str, Any] | None = None, create: bool = True
    ) -> None:
        check_url(url)
        self._explicit = dict(storage_options or {})
        self._create = create
        self.is_local = _is_local_url(url)
        self._retry = RetryPolicy.from_env()
        if self.is_local:
            self.url = _local_abspath(url)
            self._root = self.url
            self._fs: Any = None
            if create:
                with _translated(self.url, ""):
                    os.makedirs(self._root, exist_ok=True)
        else:
            self.url = url.rstrip("/")
            with _translated(self.url, ""):
                import fsspec.core  # lazy: 13 MB that a local store never needs

                self._fs, root = fsspec.core.url_to_fs(self.url, **options_for(self.url, self._explicit))
            self._root = str(root).rstrip("/")
            if not self._root:
                raise UsageError(f"store URL {self.url} names no bucket")

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    def _path(self, key: str) -> str:
        return os.path.join(self._root, key) if self.is_local else f"{self._root}/{key}"

    def local_path(self, key: str) -> str | None:
        return self._path(_check_key(key)) if self.is_local else None

    def _remote(self, key: str, what: str, fn: Callable[[], T]) -> T:
        """One remote operation: retried on transient failures, then translated."""
        with _translated(self.url, key):
            return self._retry.call(fn, f"{what} {key}")

    # -- reading -------------------------------------------------------------------------------

    def read_bytes(self, key: str) -> bytes:
        path = self._path(_check_key(key))
        if not self.is_local:
            return self._remote(key, "read", lambda: cast(bytes, self._fs.cat_file(path)))
        with _translated(self.url, key), open(path, "rb") as f:
            return f.read()

    def read_many(self, keys: Sequence[str]) -> dict[str, bytes | MountfsError]:
        """Whole objects, fetched concurrently from a remote store; a failure is returned per key."""
        out: dict[str, bytes | MountfsError] = {}
        if self.is_local or len(keys) < 2:
            for key in keys:
                try:
                    out[key] = self.read_bytes(key)
                except MountfsError as exc:
                    out[key] = exc
            return out
        paths = {self._path(_check_key(k)): k for k in keys}
        try:
            got = self._remote("", "read", lambda: self._fs.cat(list(paths), on_error="return"))
        except MountfsError:
            got = {}
        for path, key in paths.items():
            value = got.get(path) if isinstance(got, dict) else None
            if isinstance(value, bytes):
                out[key] = value
                continue
            try:  # one by one, with retries, what the batch did not bring
                out[key] = self.read_bytes(key)
            except MountfsError as exc:
                out[key] = exc
        return out

    def read_range(self, key: str, start: int, length: int) -> bytes:
        path = self._path(_check_key(key))
        if start < 0 or length < 0:
            raise UsageError(f"bad range {start}+{length} for {key}")
        if length == 0:
            return b""
        if not self.is_local:
            return self._remote(key, "read", lambda: self._fetch_range(key, path, start, length))
        with _translated(self.url, key):
            fd = os.open(path, os.O_RDONLY)
            try:
                parts: builtins.list[bytes] = []
                got = 0
                while got < length:
                    chunk = os.pread(fd, length - got, start + got)
                    if not chunk:
                        break
                    parts.append(chunk)
                    got += len(chunk)
            finally:
                os.close(fd)
        data = b"".join(parts)
        if len(data) != length:
            raise self._short(key, len(data), length, start)
        return data

    def _short(self, key: str, got: int, length: int, start: int) -> IntegrityError:
        return IntegrityError(
            f"short read in store {self.url}: {key} has {got} of {length} bytes at offset {start}"
        )

    def _fetch_range(self, key: str, path: str, start: int, length: int) -> bytes:
        data = cast(bytes, self._fs.cat_file(path, start=start, end=start + length))
        if len(data) != length:
            if start + length > int(self._fs.info(path)["size"]):
                raise self._short(key, len(data), length, start)  # the object really is shorter
            raise TransientError(f"short read: {key} gave {len(data)} of {length} bytes at {start}")
        return data

    def open_read(self, key: str, block_size: int = 1 << 20) -> BinaryIO:
        """Seekable stream; reads after open are the backend's own errors (fsspec does not wrap them)."""
        path = self._path(_check_key(key))
        with _translated(self.url, key):
            if self.is_local:
                return open(path, "rb")
            return cast(BinaryIO, self._fs.open(path, "rb", block_size=block_size, cache_type="readahead"))

    def get_file(self, key: str, local_path: str | os.PathLike[str]) -> None:
        path = self._path(_check_key(key))
        if not self.is_local:
            self._remote(key, "download", lambda: self._fs.get_file(path, os.fspath(local_path)))
            return
        with _translated(self.url, key):
            shutil.copyfile(path, local_path)

    def exists(self, key: str) -> bool:
        path = self._path(_check_key(key))
        if not self.is_local:
            return self._remote(key, "stat", lambda: bool(self._fs.isfile(path)))
        with _translated(self.url, key):
            return os.path.isfile(path)

    def info(self, key: str) -> ObjectInfo:
        path = self._path(_check_key(key))
        if not self.is_local:
            raw: dict[str, Any] = self._remote(key, "stat", lambda: self._fs.info(path))
            if raw.get("type") != "file":
                raise ObjectMissingError(f"missing in store {self.url}: {key}")
            return ObjectInfo(key, int(raw["size"]), _etag(raw), _mtime(raw))
        with _translated(self.url, key):
            st = os.stat(path)
            if not stat.S_ISREG(st.st_mode):
                raise FileNotFoundError(path)
            return _local_info(key, st)

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Every object below a folder-like prefix (or the object named by it), sorted by key."""
        prefix = _check_key(prefix, allow_empty=True)
        if self.is_local:
            with _translated(self.url, prefix):
                found = self._list_local(prefix)
        else:
            found = self._remote(prefix, "list", lambda: self._list_remote(prefix))
        return sorted(found, key=lambda o: o.key)

    def _list_local(self, prefix: str) -> builtins.list[ObjectInfo]:
        top = self._path(prefix) if prefix else self._root
        out: builtins.list[ObjectInfo] = []
        if os.path.isfile(top):
            return [self.info(prefix)]

        def walk_error(exc: OSError) -> None:
            if not isinstance(exc, FileNotFoundError):
                raise exc

        for dirpath, _dirs, files in os.walk(top, onerror=walk_error):
            rel_dir = os.path.relpath(dirpath, self._root)
            for name in files:
                if _TEMP_RE.match(name):
                    continue
                key = name if rel_dir == "." else f"{rel_dir.replace(os.sep, '/')}/{name}"
                try:
                    st = os.stat(os.path.join(dirpath, name))
                except FileNotFoundError:
                    continue  # deleted while listing
                out.append(_local_info(key, st))
        return out

    def _list_remote(self, prefix: str) -> builtins.list[ObjectInfo]:
        top = self._path(prefix) if prefix else self._root
        try:
            found: dict[str, dict[str, Any]] = self._fs.find(top, detail=True)
        except FileNotFoundError:
            return []
        out: builtins.list[ObjectInfo] = []
        root = self._root + "/"
        for name, raw in found.items():
            name = name.rstrip("/")
            if raw.get("type", "file") != "file" or not name.startswith(root):
                continue
            key = name[len(root) :]
            if _TEMP_RE.match(key.rsplit("/", 1)[-1]):
                continue
            out.append(ObjectInfo(key, int(raw.get("size") or 0), _etag(raw), _mtime(raw)))
        return out

    # -- writing -------------------------------------------------------------------------------

    def write_bytes(self, key: str, data: bytes, *, exclusive: bool = False) -> bool:
        """Atomic whole-object write; exclusive=True is create-if-absent and reports who won.

        Remote exclusive writes are the backend's conditional create (S3 If-None-Match: *,
        GCS ifGenerationMatch=0, Azure If-None-Match: *), so two machines racing for one key
        cannot both win. An attempt whose answer was lost may have created the object: when
        a retry then finds it present, the object is read back, and the write counts as ours
        only if the bytes are exactly ours (manifests and claims carry their writer's id).
        """
        path = self._path(_check_key(key))
        if not self.is_local:
            if not exclusive:
                self._remote(key, "write", lambda: self._fs.pipe_file(path, data))
                return True
            return self._create_remote(key, path, data)
        with _translated(self.url, key):
            tmp, f = _new_local_temp(path)
            try:
                f.write(data)
                return _publish_local(tmp, f, path, exclusive=exclusive)
            finally:
                _discard(tmp, f)

    def _create_remote(self, key: str, path: str, data: bytes) -> bool:
        tries = 0

        def create() -> bool:
            nonlocal tries
            tries += 1
            try:
                self._fs.pipe_file(path, data, mode="create")
            except FileExistsError:
                if tries == 1:
                    return False
                return bool(self._fs.cat_file(path) == data)  # our own lost success, or another's
            return True

        return self._remote(key, "create", create)

    @contextmanager
    def writer(self, key: str) -> Iterator[BinaryIO]:
        """A real seekable local file (zipfile seeks back into it); the object appears only on success.

        Errors raised by the caller's block pass through untranslated; only ours are translated.
        """
        path = self._path(_check_key(key))
        if self.is_local:
            with _translated(self.url, key):
                tmp, f = _new_local_temp(path)
            try:
                yield f
                with _translated(self.url, key):
                    _publish_local(tmp, f, path, exclusive=False)
            finally:
                _discard(tmp, f)
            return
        fd, tmp = tempfile.mkstemp(prefix="dsmount-upload-")
        try:
            with os.fdopen(fd, "w+b") as f:
                yield cast(BinaryIO, f)
            self._remote(key, "upload", lambda: self._fs.put_file(tmp, path))
        finally:
            os.unlink(tmp)

    def put_file(self, local_path: str | os.PathLike[str], key: str) -> None:
        path = self._path(_check_key(key))
        if not self.is_local:
            self._remote(key, "upload", lambda: self._fs.put_file(os.fspath(local_path), path))
            return
        with _translated(self.url, key):
            tmp, f = _new_local_temp(path)
            try:
                with open(local_path, "rb") as src:
                    shutil.copyfileobj(src, f, 1 << 20)
                _publish_local(tmp, f, path, exclusive=False)
            finally:
                _discard(tmp, f)

    def delete(self, key: str) -> None:
        path = self._path(_check_key(key))

        def remove() -> None:
            with suppress(FileNotFoundError):
                if self.is_local:
                    os.unlink(path)
                else:
                    self._fs.rm_file(path)

        if self.is_local:
            with _translated(self.url, key):
                remove()
        else:
            self._remote(key, "delete", remove)

    def delete_prefix(self, prefix: str) -> None:
        prefix = _check_key(prefix, allow_empty=True)
        with _translated(self.url, prefix):
            if self.is_local:
                top = self._path(prefix) if prefix else self._root
                if os.path.isdir(top):
                    names = os.listdir(top) if not prefix else [None]
                    for name in names:
                        target = top if name is None else os.path.join(top, name)
                        if os.path.isdir(target) and not os.path.islink(target):
                            shutil.rmtree(target, ignore_errors=False)
                        else:
                            os.unlink(target)
                elif os.path.lexists(top):
                    os.unlink(top)
                return
            # Never rm the root itself: for a bucket URL that would be the bucket.
            top = self._path(prefix) if prefix else self._root

            def remove_all() -> None:
                try:
                    names = list(self._fs.find(top))
                except FileNotFoundError:
                    return
                if names:
                    self._fs.rm(names)

            self._retry.call(remove_all, f"delete {prefix}/")

    def child(self, subpath: str) -> Store:
        subpath = _check_key(subpath)
        url = os.path.join(self.url, subpath) if self.is_local else f"{self.url}/{subpath}"
        return Store(url, storage_options=self._explicit, create=self._create)


# -- external links (clearml-data --links) ---------------------------------------------------------


def link_info(url: str) -> tuple[int, str]:
    """Size and canonical form of an external file; local links stay absolute paths."""
    with _translated(url, url):
        if _is_local_url(url):
            path = _local_abspath(url)
            if not os.path.isfile(path):
                raise FileNotFoundError(path)
            return os.stat(path).st_size, path
        import fsspec.core

        fs, path = fsspec.core.url_to_fs(url, **options_for(url))
        raw = fs.info(path)
        if raw.get("type") != "file":
            raise FileNotFoundError(path)
        return int(raw["size"]), url


def open_link(url: str) -> BinaryIO:
    with _translated(url, url):
        if _is_local_url(url):
            return open(_local_abspath(url), "rb")
        import fsspec.core

        fs, path = fsspec.core.url_to_fs(url, **options_for(url))
        return cast(BinaryIO, fs.open(path, "rb"))
