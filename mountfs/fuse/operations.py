"""The pyfuse3 Operations of a read-only mount: the index's rows, translated for the kernel.

Deliberately thin: inode numbers are the merged-tree index's own (1 is the root), so
there is no inode table to keep in memory; every lookup, getattr and readdir is one
indexed SQLite query run in a worker thread, and reads go to ``ContentReader``. The
lower tree never changes, so the kernel may cache entries, attributes and pages for
as long as it likes (long timeouts, ``keep_cache``).

Only ``FUSEError`` leaves a handler: ``handler`` times every call and turns anything
else into an errno (EIO for corruption and for the unexpected, which is logged).
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Sequence
from itertools import count
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

import pyfuse3
import trio

from mountfs.api.content import ContentReader, OpenFile
from mountfs.errors import IntegrityError, MountfsError, NotFoundError, StoreError
from mountfs.fuse.stats import OpStats
from mountfs.snapshot.entries import SYMLINK
from mountfs.tree.index import DIR, ROOT_INO, Node, TreeIndex

log = logging.getLogger("dsmount.fuse")

XATTR_SHA256 = b"user.dsmount.sha256"
XATTR_ORIGIN = b"user.dsmount.origin"
XATTR_VERSION = b"user.dsmount.version"
_FILE_XATTRS = (XATTR_SHA256, XATTR_ORIGIN, XATTR_VERSION)
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_TRUNC | os.O_CREAT
_READDIR_PAGE = 256
_REMEMBERED = 16384
_SIBLINGS = 1024
"""Nodes kept in memory (LRU): those just listed or looked up, about to be opened or stat'ed."""
_NOT_ERRORS = (errno.ENOENT, pyfuse3.ENOATTR)
"""Answers, not failures: a missing name or attribute is counted but not as an error."""

P = ParamSpec("P")
R = TypeVar("R")


class _Timed(Protocol):
    stats: OpStats


Ops = TypeVar("Ops", bound=_Timed)


def entry_attributes(
    ino: int,
    kind: str,
    mode: int,
    size: int,
    mtime_ns: int,
    uid: int,
    gid: int,
    timeout: float,
    *,
    nlink: int = 1,
) -> pyfuse3.EntryAttributes:
    """What the kernel is told about a node, for read-only and writable mounts alike.

    nlink 1 on folders: the sub-folder count is unknown, and 1 tells find not to rely on it.
    """
    a = pyfuse3.EntryAttributes()
    a.st_ino = pyfuse3.InodeT(ino)
    a.generation = 0
    a.entry_timeout = timeout
    a.attr_timeout = timeout
    if kind == DIR:
        a.st_mode = pyfuse3.ModeT(stat.S_IFDIR | mode)
    elif kind == SYMLINK:
        a.st_mode = pyfuse3.ModeT(stat.S_IFLNK | 0o777)
    else:
        a.st_mode = pyfuse3.ModeT(stat.S_IFREG | (mode & 0o7777))
    a.st_nlink = nlink
    a.st_size = size
    a.st_blksize = 128 << 10
    a.st_blocks = -(-size // 512)
    a.st_uid = uid
    a.st_gid = gid
    a.st_rdev = 0
    a.st_atime_ns = a.st_mtime_ns = a.st_ctime_ns = mtime_ns
    return a


def errno_of(exc: BaseException) -> int:
    if isinstance(exc, pyfuse3.FUSEError):
        return exc.errno
    if isinstance(exc, IntegrityError):
        return errno.EIO
    if isinstance(exc, NotFoundError):
        return errno.ENOENT
    if isinstance(exc, StoreError):
        return errno.EIO
    if isinstance(exc, OSError) and exc.errno:
        return exc.errno
    return errno.EIO


def handler(
    name: str,
) -> Callable[
    [Callable[Concatenate[Ops, P], Coroutine[Any, Any, R]]],
    Callable[Concatenate[Ops, P], Coroutine[Any, Any, R]],
]:
    """Time the handler and let only FUSEError out of it."""

    def wrap(
        fn: Callable[Concatenate[Ops, P], Coroutine[Any, Any, R]],
    ) -> Callable[Concatenate[Ops, P], Coroutine[Any, Any, R]]:
        async def run(self: Ops, /, *args: P.args, **kwargs: P.kwargs) -> R:
            started = time.monotonic_ns()
            try:
                result = await fn(self, *args, **kwargs)
            except pyfuse3.FUSEError as exc:
                self.stats.record(name, time.monotonic_ns() - started, error=exc.errno not in _NOT_ERRORS)
                raise
            except (MountfsError, OSError) as exc:
                self.stats.record(name, time.monotonic_ns() - started, error=True)
                if not isinstance(exc, IntegrityError):  # corruption was logged where it was found
                    log.warning("%s failed: %s", name, exc)
                raise pyfuse3.FUSEError(errno_of(exc)) from None
            except Exception:
                self.stats.record(name, time.monotonic_ns() - started, error=True)
                log.exception("%s failed unexpectedly", name)
                raise pyfuse3.FUSEError(errno.EIO) from None
            self.stats.record(name, time.monotonic_ns() - started)
            return result

        run.__name__, run.__qualname__, run.__doc__ = fn.__name__, fn.__qualname__, fn.__doc__
        return run

    return wrap


class _Dir:
    """An open folder: the page of children fetched but not yet handed to the kernel."""

    __slots__ = ("ino", "pending", "resume")

    def __init__(self, ino: int) -> None:
        self.ino = ino
        self.pending: list[Node] = []
        self.resume = -1
        """The readdir offset at which ``pending`` continues the listing."""


class ReadOnlyOperations(pyfuse3.Operations):
    """Serve one version's merged tree; every write answers EROFS."""

    supports_dot_lookup = False
    enable_writeback_cache = False
    enable_acl = False

    def __init__(
        self,
        index: TreeIndex,
        reader: ContentReader,
        *,
        uid: int | None = None,
        gid: int | None = None,
        timeout: float = 86400.0,
        stats: OpStats | None = None,
    ) -> None:
        super().__init__()
        self.index = index
        self.reader = reader
        self.version = index.version
        self.uid = os.getuid() if uid is None else uid
        self.gid = os.getgid() if gid is None else gid
        self.timeout = timeout
        self.stats = stats or OpStats()
        self._files: dict[int, OpenFile] = {}
        self._nodes: OrderedDict[int, Node] = OrderedDict()
        self._names: dict[tuple[int, str], int] = {}
        """(parent, name) -> inode of the remembered nodes, so lookups of listed names need no query."""
        self._listed: OrderedDict[int, bool] = OrderedDict()
        """Folders whose first page of children was loaded; True when that page was all of them."""
        self._dirs: dict[int, _Dir] = {}
        self._next_fh = count(1)
        self.readdir_reply: Callable[[Any, bytes, pyfuse3.EntryAttributes, int], bool] = pyfuse3.readdir_reply

    # ----- translation ---------------------------------------------------------------------

    def _attrs(self, node: Node) -> pyfuse3.EntryAttributes:
        size = len(os.fsencode(node.target)) if node.kind == SYMLINK else node.size
        return entry_attributes(
            node.ino, node.kind, node.mode, size, node.mtime_ns, self.uid, self.gid, self.timeout
        )

    def _remember(self, node: Node) -> Node:
        self._nodes[node.ino] = node
        self._names[(node.parent, node.name)] = node.ino
        if len(self._nodes) > _REMEMBERED:
            _, old = self._nodes.popitem(last=False)
            self._names.pop((old.parent, old.name), None)
            self._listed.pop(old.parent, None)  # its listing is no longer all in memory
        return node

    def _lookup_with_siblings(self, parent: int, name: str) -> tuple[Node | None, list[Node]]:
        """Worker thread: the child, plus the folder's first page of children when not loaded yet,
        so the next lookups in that folder (a loader walking a file list) need no query."""
        siblings = [] if parent in self._listed else self.index.children_after(parent, 0, _SIBLINGS)
        found = next((n for n in siblings if n.name == name), None)
        if found is None and not (siblings and len(siblings) < _SIBLINGS):
            found = self.index.lookup(parent, name)
        return found, siblings

    async def _node(self, ino: int) -> Node:
        node = self._nodes.get(ino)
        if node is not None:
            self._nodes.move_to_end(ino)
            return node
        node = await trio.to_thread.run_sync(self.index.node, ino)
        if node is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._remember(node)

    # ----- lookups and listing -------------------------------------------------------------

    @handler("lookup")
    async def lookup(
        self, parent_inode: pyfuse3.InodeT, name: pyfuse3.FileNameT, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        text = os.fsdecode(name)
        if text == ".":
            return self._attrs(await self._node(parent_inode))
        if text == "..":
            parent = await self._node(parent_inode)
            return self._attrs(await self._node(parent.parent))
        parent_ino = int(parent_inode)
        ino = self._names.get((parent_ino, text))
        node: Node | None = self._nodes.get(ino) if ino is not None else None
        if node is None and not self._listed.get(parent_ino, False):
            node, siblings = await trio.to_thread.run_sync(self._lookup_with_siblings, parent_ino, text)
            if siblings:
                for sibling in siblings:
                    self._remember(sibling)
                self._listed[parent_ino] = len(siblings) < _SIBLINGS
                if len(self._listed) > _REMEMBERED // 16:
                    self._listed.popitem(last=False)
        if node is None:
            miss = pyfuse3.EntryAttributes()
            miss.st_ino = pyfuse3.InodeT(0)  # a cached negative entry: the tree never gains it
            miss.entry_timeout = self.timeout
            return miss
        return self._attrs(self._remember(node))

    async def forget(self, inode_list: Sequence[tuple[pyfuse3.InodeT, int]]) -> None:
        """Nothing to drop: inodes are index rows, never objects held in memory."""

    @handler("getattr")
    async def getattr(self, inode: pyfuse3.InodeT, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return self._attrs(await self._node(inode))

    @handler("readlink")
    async def readlink(self, inode: pyfuse3.InodeT, ctx: pyfuse3.RequestContext) -> pyfuse3.FileNameT:
        node = await self._node(inode)
        if node.kind != "symlink":
            raise pyfuse3.FUSEError(errno.EINVAL)
        return pyfuse3.FileNameT(os.fsencode(node.target))

    @handler("opendir")
    async def opendir(self, inode: pyfuse3.InodeT, ctx: pyfuse3.RequestContext) -> pyfuse3.FileHandleT:
        node = await self._node(inode)
        if node.kind != DIR:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        fh = next(self._next_fh)
        self._dirs[fh] = _Dir(inode)
        return pyfuse3.FileHandleT(fh)

    @handler("readdir")
    async def readdir(self, fh: pyfuse3.FileHandleT, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        d = self._dirs.get(fh)
        if d is None:
            raise pyfuse3.FUSEError(errno.EBADF)
        after = start_id
        # The kernel's buffer fills mid-page: keep the rest for the call that resumes there.
        page = d.pending if d.resume == start_id else []
        d.pending = []
        while True:
            if not page:
                page = await trio.to_thread.run_sync(self.index.children_after, d.ino, after, _READDIR_PAGE)
                if not page:
                    return
            for i, node in enumerate(page):
                if not self.readdir_reply(token, os.fsencode(node.name), self._attrs(node), node.ino):
                    d.pending = page[i:]
                    d.resume = page[i - 1].ino if i else after
                    return
                self._remember(node)
            if len(page) < _READDIR_PAGE:
                return
            after = page[-1].ino
            page = []

    @handler("releasedir")
    async def releasedir(self, fh: pyfuse3.FileHandleT) -> None:
        self._dirs.pop(fh, None)

    # ----- files ---------------------------------------------------------------------------

    @handler("open")
    async def open(
        self, inode: pyfuse3.InodeT, flags: pyfuse3.FlagT, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.FileInfo:
        if flags & _WRITE_FLAGS:
            raise pyfuse3.FUSEError(errno.EROFS)
        node = await self._node(inode)
        entry = node.entry()
        if entry is None:
            raise pyfuse3.FUSEError(errno.EISDIR)
        h = self.reader.open_now(entry)
        if h is None:
            h = await trio.to_thread.run_sync(self.reader.open, entry)
        fh = next(self._next_fh)
        self._files[fh] = h
        return pyfuse3.FileInfo(fh=pyfuse3.FileHandleT(fh), keep_cache=True, direct_io=False)

    @handler("read")
    async def read(self, fh: pyfuse3.FileHandleT, off: int, size: int) -> bytes:
        h = self._files.get(fh)
        if h is None:
            raise pyfuse3.FUSEError(errno.EBADF)
        data = self.reader.buffered(h, off, size)
        if data is None:
            data = await trio.to_thread.run_sync(self.reader.read, h, off, size)
        return data

    @handler("release")
    async def release(self, fh: pyfuse3.FileHandleT) -> None:
        h = self._files.pop(fh, None)
        if h is not None:
            self.reader.release(h)

    async def flush(self, fh: pyfuse3.FileHandleT) -> None:
        """Nothing is ever buffered for writing: ENOSYS tells the kernel never to send flush again."""
        raise pyfuse3.FUSEError(errno.ENOSYS)

    # ----- extended attributes and statfs --------------------------------------------------

    @handler("getxattr")
    async def getxattr(
        self, inode: pyfuse3.InodeT, name: pyfuse3.XAttrNameT, ctx: pyfuse3.RequestContext
    ) -> bytes:
        node = await self._node(inode)
        value = self._xattrs(node).get(bytes(name))
        if value is None:
            raise pyfuse3.FUSEError(pyfuse3.ENOATTR)
        return value

    @handler("listxattr")
    async def listxattr(
        self, inode: pyfuse3.InodeT, ctx: pyfuse3.RequestContext
    ) -> Sequence[pyfuse3.XAttrNameT]:
        node = await self._node(inode)
        return [pyfuse3.XAttrNameT(n) for n in self._xattrs(node)]

    def _xattrs(self, node: Node) -> dict[bytes, bytes]:
        out = {XATTR_VERSION: self.version.encode()}
        if node.sha256:
            out[XATTR_SHA256] = node.sha256.encode()
        if node.origin:
            out[XATTR_ORIGIN] = node.origin.encode()
        return {k: out[k] for k in _FILE_XATTRS if k in out}

    @handler("statfs")
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        s = pyfuse3.StatvfsData()
        s.f_bsize = 128 << 10
        s.f_frsize = 4096
        s.f_blocks = -(-self.index.total_bytes() // 4096)
        s.f_bfree = s.f_bavail = 0
        s.f_files = self.index.count() + 1
        s.f_ffree = s.f_favail = 0
        s.f_namemax = 255
        return s

    # ----- every write: read-only file system ----------------------------------------------

    async def setattr(self, *args: Any, **kwargs: Any) -> pyfuse3.EntryAttributes:
        raise pyfuse3.FUSEError(errno.EROFS)

    async def mknod(self, *args: Any, **kwargs: Any) -> pyfuse3.EntryAttributes:
        raise pyfuse3.FUSEError(errno.EROFS)

    async def mkdir(self, *args: Any, **kwargs: Any) -> pyfuse3.EntryAttributes:
        raise pyfuse3.FUSEError(errno.EROFS)

    async def unlink(self, *args: Any, **kwargs: Any) -> None:
        raise pyfuse3.FUSEError(errno.EROFS)

    async def rmdir(self, *args: Any, **kwargs: Any) -> None:
        raise pyfuse3.FUSEError(errno.EROFS)

    async def symlink(self, *args: Any, **kwargs: Any) -> pyfuse3.EntryAttributes:
        raise pyfuse3.FUSEError(errno.EROFS)

    async def rename(self, *args: Any, **kwargs: Any) -> None:
        raise pyfuse3.FUSEError(errno.EROFS)

    async def link(self, *args: Any, **kwargs: Any) -> pyfuse3.EntryAttributes:
        raise pyfuse3.FUSEError(errno.EROFS)

    async def write(self, *args: Any, **kwargs: Any) -> int:
        raise pyfuse3.FUSEError(errno.EROFS)

    async def create(self, *args: Any, **kwargs: Any) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        raise pyfuse3.FUSEError(errno.EROFS)

    async def setxattr(self, *args: Any, **kwargs: Any) -> None:
        raise pyfuse3.FUSEError(errno.EROFS)

    async def removexattr(self, *args: Any, **kwargs: Any) -> None:
        raise pyfuse3.FUSEError(errno.EROFS)

    # ----- lifetime ------------------------------------------------------------------------

    def open_files(self) -> int:
        return len(self._files)

    def root(self) -> int:
        return ROOT_INO
