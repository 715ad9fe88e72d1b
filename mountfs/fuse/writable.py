"""The pyfuse3 Operations of a writable mount: the kernel's requests, translated to the overlay.

Thin by design: ``mountfs.tree.overlay.Overlay`` owns every rule (whiteouts, copy-up,
renames, durability); this module keeps what only the FUSE side needs:

- an inode table. The overlay speaks paths and its row ids are stable only for upper rows,
  so inodes are numbers handed out here, mapped to paths both ways. A rename rewrites the
  paths of the inodes at and below the old path; a removal unmaps the path, but the inode
  lives on while the kernel still knows it (lookup counts, ``forget``) or a file is open;
- open files. A file opened for writing (or O_TRUNC) is copied up first, streamed from the
  lower through ``ContentReader`` a block at a time, and then served by pread/pwrite on its
  data file. A read-only open of an unchanged lower file reads the lower; once a writer
  copies that inode up, such handles switch to the data file. An unlinked open file keeps
  its descriptor, so it stays readable and writable until closed;
- a write gate. ``frozen()`` (what ``dsmount commit`` holds) makes every request that would
  change the overlay wait, and first waits for those already running; reads go on;
- kernel caching: entries and attributes for ``timeout`` seconds (1 s: every change comes
  through this mount, so the kernel updates its caches itself, the timeout only bounds
  surprises); pages are kept across opens (``keep_cache``) only for lower files opened
  read-only, never for a file with local bytes.

Blocking work (SQLite, copy-up, disk reads and writes, fsync) runs in worker threads;
only ``FUSEError`` leaves a handler (``operations.handler``).
"""

from __future__ import annotations

import errno
import functools
import os
import stat
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager, nullcontext
from dataclasses import replace
from itertools import count
from typing import Any, Concatenate, ParamSpec, TypeVar

import pyfuse3
import trio

from mountfs.api.content import ContentReader, OpenFile
from mountfs.errors import MountError
from mountfs.fuse.operations import XATTR_SHA256, XATTR_VERSION, entry_attributes, handler
from mountfs.fuse.stats import OpStats
from mountfs.snapshot.entries import SYMLINK
from mountfs.tree.index import DIR
from mountfs.tree.overlay import Node, Overlay
from mountfs.tree.overlay_store import join

_READDIR_PAGE = 256
_COOKIES = 65536
"""readdir offsets remembered per open folder (the kernel resumes at the last one it got)."""
_NEVER_FORGOTTEN = 1 << 62

_P = ParamSpec("_P")
_R = TypeVar("_R")


def mutation(
    fn: Callable[Concatenate[WritableOperations, _P], Coroutine[Any, Any, _R]],
) -> Callable[Concatenate[WritableOperations, _P], Coroutine[Any, Any, _R]]:
    """A request that changes the overlay: it waits while a commit holds the write gate."""

    @functools.wraps(fn)
    async def run(self: WritableOperations, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        async with self._mutating():
            return await fn(self, *args, **kwargs)

    return run


class _File:
    """An open file: a data-file descriptor, or a ContentReader handle on the lower bytes."""

    __slots__ = ("fd", "ino", "lower", "node", "writing")

    def __init__(
        self, ino: int, node: Node, fd: int = -1, lower: OpenFile | None = None, *, writing: bool = False
    ) -> None:
        self.ino = ino
        self.writing = writing
        self.node = node
        """The node as opened (its id survives renames; its mode answers fstat once unlinked)."""
        self.fd = fd
        self.lower = lower


class _Dir:
    __slots__ = ("cookies", "next", "path")

    def __init__(self, path: str) -> None:
        self.path = path
        self.cookies: OrderedDict[int, str] = OrderedDict()
        """readdir offset -> the name it follows."""
        self.next = count(1)


class WritableOperations(pyfuse3.Operations):
    """Serve an overlay over one version's tree, read-write."""

    supports_dot_lookup = False
    enable_writeback_cache = False
    enable_acl = False

    def __init__(
        self,
        overlay: Overlay,
        reader: ContentReader,
        *,
        uid: int | None = None,
        gid: int | None = None,
        timeout: float = 1.0,
        stats: OpStats | None = None,
    ) -> None:
        super().__init__()
        self.ov = overlay
        self.reader = reader
        self.uid = os.getuid() if uid is None else uid
        self.gid = os.getgid() if gid is None else gid
        self.timeout = timeout
        self.stats = stats or OpStats()
        self.copied_up = [0, 0]
        """Files and bytes copied up from the lower (for ``dsmount stats``)."""
        root = int(pyfuse3.ROOT_INODE)
        self._paths: dict[int, str | None] = {root: ""}
        """inode -> path; None once removed (the kernel or an open file may still hold it)."""
        self._inos: dict[str, int] = {"": root}
        self._lookups: dict[int, int] = {root: _NEVER_FORGOTTEN}
        self._folders: set[int] = {root}
        """Inodes of folders: a rename or removal walks the table only below one of these."""
        self._opened: dict[int, int] = {}
        """inode -> open file handles: an open inode outlives its lookups."""
        self._copied: dict[int, int] = {}
        """inode -> copy-ups seen: a read-only open that raced one switches to the data file."""
        self._next_ino = count(root + 1)
        self._files: dict[int, _File] = {}
        self._dirs: dict[int, _Dir] = {}
        self._next_fh = count(1)
        self.readdir_reply: Callable[[Any, bytes, pyfuse3.EntryAttributes, int], bool] = pyfuse3.readdir_reply
        self._gate: trio.Event | None = None
        """Set while a commit holds the write gate; mutations wait for it."""
        self._changing = 0
        """Mutations running now."""
        self._drained: trio.Event | None = None

    # ----- the write gate ------------------------------------------------------------------

    @asynccontextmanager
    async def _mutating(self) -> AsyncIterator[None]:
        while self._gate is not None:
            await self._gate.wait()
        self._changing += 1
        try:
            yield
        finally:
            self._changing -= 1
            if self._changing == 0 and self._drained is not None:
                self._drained.set()

    @asynccontextmanager
    async def frozen(self) -> AsyncIterator[None]:
        """Hold every change back (reads go on) once the changes already running have finished:
        what commit needs to read one consistent overlay and then swap its lower."""
        if self._gate is not None:
            raise MountError("a commit is already running on this mount")
        self._gate = trio.Event()
        try:
            while self._changing:
                self._drained = trio.Event()
                await self._drained.wait()
            self._drained = None
            yield
        finally:
            gate, self._gate = self._gate, None
            gate.set()

    def open_for_writing(self) -> list[str]:
        """Paths of files open for writing (an unlinked one is not in any tree and not listed)."""
        return sorted(
            {p for f in self._files.values() if f.writing and (p := self._paths.get(f.ino)) is not None}
        )

    @property
    def version(self) -> str:
        return self.ov.lower.version

    # ----- the inode table -----------------------------------------------------------------

    def _path(self, ino: int) -> str:
        path = self._paths.get(ino)
        if path is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return path

    def _child(self, parent: int, name: bytes) -> str:
        text = os.fsdecode(name)
        if text in (".", "..") or "/" in text:
            raise pyfuse3.FUSEError(errno.EINVAL)
        return join(self._path(parent), text)

    def _ino_of(self, path: str) -> int:
        ino = self._inos.get(path)
        if ino is None:
            ino = next(self._next_ino)
            self._inos[path] = ino
            self._paths[ino] = path
            self._lookups[ino] = 0
        return ino

    def _entry(self, path: str, node: Node) -> pyfuse3.EntryAttributes:
        """Attributes for a reply that makes the kernel count one more lookup of the inode."""
        ino = self._ino_of(path)
        self._lookups[ino] += 1
        return self._attrs(ino, node)

    def _at_and_below(self, path: str) -> list[tuple[str, int]]:
        """The mapped paths at and below ``path``: a walk of the table only for a folder."""
        ino = self._inos.get(path)
        if ino is None:
            return []
        if ino not in self._folders:
            return [(path, ino)]
        prefix = path + "/"
        return [(p, i) for p, i in self._inos.items() if p == path or p.startswith(prefix)]

    def _unmap(self, path: str) -> None:
        """``path`` and everything below it are gone: their inodes live on unmapped."""
        for p, ino in self._at_and_below(path):
            del self._inos[p]
            self._paths[ino] = None
            self._drop_if_unused(ino)

    def _move(self, old: str, new: str) -> None:
        self._unmap(new)
        moved = self._at_and_below(old)
        for p, _ in moved:
            del self._inos[p]
        for p, ino in moved:
            to = new + p[len(old) :]
            self._inos[to] = ino
            self._paths[ino] = to

    def _drop_if_unused(self, ino: int) -> None:
        if self._lookups.get(ino, 0) > 0 or self._opened.get(ino, 0) > 0:
            return
        path = self._paths.pop(ino, None)
        self._lookups.pop(ino, None)
        self._folders.discard(ino)
        self._copied.pop(ino, None)
        if path is not None and self._inos.get(path) == ino:
            del self._inos[path]

    # ----- translation ---------------------------------------------------------------------

    def _attrs(self, ino: int, node: Node, *, nlink: int = 1) -> pyfuse3.EntryAttributes:
        if node.kind == DIR:
            self._folders.add(ino)
        return entry_attributes(
            ino, node.kind, node.mode, node.size, node.mtime_ns, self.uid, self.gid, self.timeout, nlink=nlink
        )

    async def _node(self, ino: int) -> Node:
        """The inode's node now; for a removed file still open, what its descriptor says."""
        path = self._paths.get(ino)
        if path is not None:
            return await trio.to_thread.run_sync(self.ov.getattr, path)
        if ino not in self._paths:
            raise pyfuse3.FUSEError(errno.ENOENT)
        h = next((f for f in self._files.values() if f.ino == ino), None)
        if h is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        if h.fd >= 0:
            st = os.fstat(h.fd)
            return replace(h.node, size=st.st_size, mtime_ns=st.st_mtime_ns)
        return h.node

    async def _answer(self, ino: int) -> pyfuse3.EntryAttributes:
        node = await self._node(ino)
        return self._attrs(ino, node, nlink=0 if self._paths.get(ino) is None else 1)

    # ----- copy-up -------------------------------------------------------------------------

    def _copy_up(self, path: str, limit: int | None = None) -> Node:
        """Worker thread: give the file local bytes, streamed from the lower a block at a time."""
        node = self.ov.getattr(path)
        if node.data is not None or node.is_dir or node.kind == SYMLINK or node.entry is None:
            return node
        h = self.reader.open(node.entry)
        try:
            done = self.ov.copy_up(path, lambda off, size: self.reader.read(h, off, size), limit=limit)
        finally:
            self.reader.release(h)
        self.copied_up[0] += 1
        self.copied_up[1] += done.size
        return done

    def _switch_readers(self, ino: int, node: Node) -> None:
        """Read-only handles of ``ino`` read ``node``'s data file from now on: those on the lower
        bytes, and those on a data file a commit has since dropped (its bytes went into the
        version the copy-up just started from)."""
        if node.data is None:
            return
        self._copied[ino] = self._copied.get(ino, 0) + 1
        for f in self._files.values():
            if f.ino != ino or f.writing or (f.fd >= 0 and f.node.id == node.id):
                continue
            fd = os.open(node.data, os.O_RDONLY | os.O_CLOEXEC)
            if f.fd >= 0:
                os.close(f.fd)
            if f.lower is not None:
                self.reader.release(f.lower)
            f.fd, f.lower, f.node = fd, None, node

    # ----- lookups and listing -------------------------------------------------------------

    @handler("lookup")
    async def lookup(
        self, parent_inode: pyfuse3.InodeT, name: pyfuse3.FileNameT, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        text = os.fsdecode(name)
        parent = self._path(parent_inode)
        if text == ".":
            path = parent
        elif text == "..":
            path = parent.rpartition("/")[0]
        else:
            path = join(parent, text)
        node = await trio.to_thread.run_sync(self.ov.lookup, path)
        if node is None:
            miss = pyfuse3.EntryAttributes()
            miss.st_ino = pyfuse3.InodeT(0)
            miss.entry_timeout = self.timeout
            return miss
        return self._entry(path, node)

    async def forget(self, inode_list: Sequence[tuple[pyfuse3.InodeT, int]]) -> None:
        for ino, n in inode_list:
            left = self._lookups.get(ino, 0) - n
            if ino in self._lookups:
                self._lookups[ino] = max(left, 0)
            self._drop_if_unused(ino)

    @handler("getattr")
    async def getattr(self, inode: pyfuse3.InodeT, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return await self._answer(inode)

    @handler("readlink")
    async def readlink(self, inode: pyfuse3.InodeT, ctx: pyfuse3.RequestContext) -> pyfuse3.FileNameT:
        target = await trio.to_thread.run_sync(self.ov.readlink, self._path(inode))
        return pyfuse3.FileNameT(os.fsencode(target))

    @handler("opendir")
    async def opendir(self, inode: pyfuse3.InodeT, ctx: pyfuse3.RequestContext) -> pyfuse3.FileHandleT:
        path = self._path(inode)
        node = await trio.to_thread.run_sync(self.ov.getattr, path)
        if not node.is_dir:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        fh = next(self._next_fh)
        self._dirs[fh] = _Dir(path)
        return pyfuse3.FileHandleT(fh)

    @handler("readdir")
    async def readdir(self, fh: pyfuse3.FileHandleT, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        d = self._dirs.get(fh)
        if d is None:
            raise pyfuse3.FUSEError(errno.EBADF)
        after = "" if start_id == 0 else d.cookies.get(start_id)
        if after is None:
            raise pyfuse3.FUSEError(errno.EINVAL)
        while True:
            page = await trio.to_thread.run_sync(self.ov.listdir, d.path, after, _READDIR_PAGE)
            for node in page:
                name = node.path.rpartition("/")[2]
                ino = self._ino_of(node.path)
                cookie = next(d.next)
                entry = pyfuse3.FileNameT(os.fsencode(name))
                if not self.readdir_reply(token, entry, self._attrs(ino, node), cookie):
                    self._drop_if_unused(ino)
                    return
                self._lookups[ino] += 1
                d.cookies[cookie] = name
                if len(d.cookies) > _COOKIES:
                    d.cookies.popitem(last=False)
            if len(page) < _READDIR_PAGE:
                return
            after = page[-1].path.rpartition("/")[2]

    @handler("releasedir")
    async def releasedir(self, fh: pyfuse3.FileHandleT) -> None:
        self._dirs.pop(fh, None)

    # ----- files ---------------------------------------------------------------------------

    def _open_fh(self, f: _File) -> pyfuse3.FileInfo:
        fh = next(self._next_fh)
        self._files[fh] = f
        self._opened[f.ino] = self._opened.get(f.ino, 0) + 1
        keep = f.fd < 0  # unchanged lower bytes only: local bytes are never served from old pages
        return pyfuse3.FileInfo(fh=pyfuse3.FileHandleT(fh), keep_cache=keep, direct_io=False)

    @handler("open")
    async def open(
        self, inode: pyfuse3.InodeT, flags: pyfuse3.FlagT, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.FileInfo:
        writing = (flags & os.O_ACCMODE) != os.O_RDONLY
        changing = writing or bool(flags & os.O_TRUNC)
        async with self._mutating() if changing else nullcontext():
            return await self._open(inode, flags, writing)

    async def _open(self, inode: pyfuse3.InodeT, flags: int, writing: bool) -> pyfuse3.FileInfo:
        path = self._path(inode)
        copies = self._copied.get(inode, 0)
        node = await trio.to_thread.run_sync(self.ov.getattr, path)
        if node.is_dir:
            raise pyfuse3.FUSEError(errno.EISDIR)
        if writing or flags & os.O_TRUNC:
            if node.data is None:
                limit = 0 if flags & os.O_TRUNC else None
                node = await trio.to_thread.run_sync(self._copy_up, path, limit)
                self._switch_readers(inode, node)
            elif flags & os.O_TRUNC:
                node = await trio.to_thread.run_sync(self.ov.truncate, path, 0)
            assert node.data is not None
            mode = os.O_RDWR if writing else os.O_RDONLY
            fd = os.open(node.data, mode | os.O_CLOEXEC)
            return self._open_fh(_File(inode, node, fd, writing=writing))
        if node.data is not None:
            fd = os.open(node.data, os.O_RDONLY | os.O_CLOEXEC)
            return self._open_fh(_File(inode, node, fd))
        if node.entry is None:
            raise pyfuse3.FUSEError(errno.EINVAL)
        h = self.reader.open_now(node.entry)
        if h is None:
            h = await trio.to_thread.run_sync(self.reader.open, node.entry)
        info = self._open_fh(_File(inode, node, lower=h))
        now = self._paths.get(inode)
        if self._copied.get(inode, 0) != copies and now is not None:  # a writer copied it up meanwhile
            fresh = await trio.to_thread.run_sync(self.ov.lookup, now)
            if fresh is not None:
                self._switch_readers(inode, fresh)
        return info

    @handler("create")
    @mutation
    async def create(
        self,
        parent_inode: pyfuse3.InodeT,
        name: pyfuse3.FileNameT,
        mode: pyfuse3.ModeT,
        flags: pyfuse3.FlagT,
        ctx: pyfuse3.RequestContext,
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        path = self._child(parent_inode, name)
        node = await trio.to_thread.run_sync(self.ov.create, path, mode & 0o7777)
        assert node.data is not None
        fd = os.open(node.data, os.O_RDWR | os.O_CLOEXEC)
        attrs = self._entry(path, node)
        return self._open_fh(_File(int(attrs.st_ino), node, fd, writing=True)), attrs

    @handler("read")
    async def read(self, fh: pyfuse3.FileHandleT, off: int, size: int) -> bytes:
        f = self._files.get(fh)
        if f is None:
            raise pyfuse3.FUSEError(errno.EBADF)
        if f.fd >= 0:
            return await trio.to_thread.run_sync(os.pread, f.fd, size, off)
        assert f.lower is not None
        h = f.lower
        data = self.reader.buffered(h, off, size)
        if data is None:
            data = await trio.to_thread.run_sync(self.reader.read, h, off, size)
        return data

    @handler("write")
    @mutation
    async def write(self, fh: pyfuse3.FileHandleT, off: int, buf: bytes) -> int:
        f = self._files.get(fh)
        if f is None or f.fd < 0:
            raise pyfuse3.FUSEError(errno.EBADF)
        return await trio.to_thread.run_sync(os.pwrite, f.fd, buf, off)

    async def flush(self, fh: pyfuse3.FileHandleT) -> None:
        """Nothing is buffered here: writes went to the data file's page cache already."""

    @handler("fsync")
    @mutation
    async def fsync(self, fh: pyfuse3.FileHandleT, datasync: bool) -> None:
        f = self._files.get(fh)
        if f is None:
            raise pyfuse3.FUSEError(errno.EBADF)
        if f.fd >= 0 and f.node.id:
            await trio.to_thread.run_sync(self.ov.sync, f.node.id, f.fd)

    @handler("release")
    async def release(self, fh: pyfuse3.FileHandleT) -> None:
        f = self._files.pop(fh, None)
        if f is None:
            return
        if f.fd >= 0:
            os.close(f.fd)
        if f.lower is not None:
            self.reader.release(f.lower)
        left = self._opened.pop(f.ino, 1) - 1
        if left:
            self._opened[f.ino] = left
        self._drop_if_unused(f.ino)

    # ----- attributes ----------------------------------------------------------------------

    @handler("setattr")
    @mutation
    async def setattr(
        self,
        inode: pyfuse3.InodeT,
        attr: pyfuse3.EntryAttributes,
        fields: pyfuse3.SetattrFields,
        fh: pyfuse3.FileHandleT | None,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        if (fields.update_uid and attr.st_uid != self.uid) or (fields.update_gid and attr.st_gid != self.gid):
            raise pyfuse3.FUSEError(errno.EPERM)
        path = self._paths.get(inode)
        if path is None:  # removed, still open: only its bytes are left to change
            f = next((f for f in self._files.values() if f.ino == inode and f.fd >= 0), None)
            if f is None:
                raise pyfuse3.FUSEError(errno.ENOENT)
            if fields.update_size:
                os.ftruncate(f.fd, attr.st_size)
            if fields.update_mode:
                f.node = replace(f.node, mode=attr.st_mode & 0o7777)
            return await self._answer(inode)
        if fields.update_size:
            node = await trio.to_thread.run_sync(self._truncate, path, attr.st_size)
            self._switch_readers(inode, node)
        if fields.update_mode or fields.update_mtime:
            mode = attr.st_mode if fields.update_mode else None
            mtime = attr.st_mtime_ns if fields.update_mtime else None
            await trio.to_thread.run_sync(lambda: self.ov.setattr(path, mode=mode, mtime_ns=mtime))
        return await self._answer(inode)

    def _truncate(self, path: str, size: int) -> Node:
        node = self._copy_up(path, limit=size)
        return self.ov.truncate(path, size) if node.data is not None else node

    # ----- the tree ------------------------------------------------------------------------

    @handler("mkdir")
    @mutation
    async def mkdir(
        self,
        parent_inode: pyfuse3.InodeT,
        name: pyfuse3.FileNameT,
        mode: pyfuse3.ModeT,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        path = self._child(parent_inode, name)
        node = await trio.to_thread.run_sync(self.ov.mkdir, path, mode & 0o7777)
        return self._entry(path, node)

    @handler("mknod")
    @mutation
    async def mknod(
        self,
        parent_inode: pyfuse3.InodeT,
        name: pyfuse3.FileNameT,
        mode: pyfuse3.ModeT,
        rdev: int,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        if not stat.S_ISREG(mode):
            raise pyfuse3.FUSEError(errno.EPERM)  # a version holds files, folders and symlinks only
        path = self._child(parent_inode, name)
        node = await trio.to_thread.run_sync(self.ov.create, path, mode & 0o7777)
        return self._entry(path, node)

    @handler("symlink")
    @mutation
    async def symlink(
        self,
        parent_inode: pyfuse3.InodeT,
        name: pyfuse3.FileNameT,
        target: pyfuse3.FileNameT,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        path = self._child(parent_inode, name)
        node = await trio.to_thread.run_sync(self.ov.symlink, path, os.fsdecode(target))
        return self._entry(path, node)

    @handler("unlink")
    @mutation
    async def unlink(
        self, parent_inode: pyfuse3.InodeT, name: pyfuse3.FileNameT, ctx: pyfuse3.RequestContext
    ) -> None:
        path = self._child(parent_inode, name)
        await trio.to_thread.run_sync(self.ov.unlink, path)
        self._unmap(path)

    @handler("rmdir")
    @mutation
    async def rmdir(
        self, parent_inode: pyfuse3.InodeT, name: pyfuse3.FileNameT, ctx: pyfuse3.RequestContext
    ) -> None:
        path = self._child(parent_inode, name)
        await trio.to_thread.run_sync(self.ov.rmdir, path)
        self._unmap(path)

    @handler("rename")
    @mutation
    async def rename(
        self,
        parent_inode_old: pyfuse3.InodeT,
        name_old: pyfuse3.FileNameT,
        parent_inode_new: pyfuse3.InodeT,
        name_new: pyfuse3.FileNameT,
        flags: pyfuse3.FlagT,
        ctx: pyfuse3.RequestContext,
    ) -> None:
        if flags & pyfuse3.RENAME_EXCHANGE:
            raise pyfuse3.FUSEError(errno.EINVAL)
        old = self._child(parent_inode_old, name_old)
        new = self._child(parent_inode_new, name_new)
        no_replace = bool(flags & pyfuse3.RENAME_NOREPLACE)
        await trio.to_thread.run_sync(lambda: self.ov.rename(old, new, replace=not no_replace))
        if old != new:
            self._move(old, new)

    @handler("link")
    async def link(
        self,
        inode: pyfuse3.InodeT,
        new_parent_inode: pyfuse3.InodeT,
        new_name: pyfuse3.FileNameT,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        raise pyfuse3.FUSEError(errno.EPERM)  # hard links have no place in a version's tree

    # ----- extended attributes and statfs --------------------------------------------------

    async def _xattrs(self, ino: int) -> dict[bytes, bytes]:
        node = await self._node(ino)
        out = {XATTR_VERSION: self.version.encode()}
        if node.data is None and node.entry is not None and node.entry.sha256:
            out[XATTR_SHA256] = node.entry.sha256.encode()
        return out

    @handler("getxattr")
    async def getxattr(
        self, inode: pyfuse3.InodeT, name: pyfuse3.XAttrNameT, ctx: pyfuse3.RequestContext
    ) -> bytes:
        if bytes(name) not in (XATTR_SHA256, XATTR_VERSION):  # security.capability before each write
            raise pyfuse3.FUSEError(pyfuse3.ENOATTR)
        value = (await self._xattrs(inode)).get(bytes(name))
        if value is None:
            raise pyfuse3.FUSEError(pyfuse3.ENOATTR)
        return value

    @handler("listxattr")
    async def listxattr(
        self, inode: pyfuse3.InodeT, ctx: pyfuse3.RequestContext
    ) -> Sequence[pyfuse3.XAttrNameT]:
        return [pyfuse3.XAttrNameT(n) for n in await self._xattrs(inode)]

    async def setxattr(self, *args: object, **kwargs: object) -> None:
        raise pyfuse3.FUSEError(errno.ENOTSUP)

    async def removexattr(self, *args: object, **kwargs: object) -> None:
        raise pyfuse3.FUSEError(errno.ENOTSUP)

    @handler("statfs")
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        """The free space of the disk holding the overlay: what writes can still use."""
        local = await trio.to_thread.run_sync(os.statvfs, self.ov.folder)
        s = pyfuse3.StatvfsData()
        s.f_bsize = local.f_bsize
        s.f_frsize = local.f_frsize
        s.f_blocks = local.f_blocks
        s.f_bfree = local.f_bfree
        s.f_bavail = local.f_bavail
        s.f_files = local.f_files
        s.f_ffree = local.f_ffree
        s.f_favail = local.f_favail
        s.f_namemax = 255
        return s

    # ----- lifetime ------------------------------------------------------------------------

    def open_files(self) -> int:
        return len(self._files)

    def inodes(self) -> int:
        return len(self._paths)

    def close(self) -> None:
        for f in self._files.values():
            if f.fd >= 0:
                os.close(f.fd)
            if f.lower is not None:
                self.reader.release(f.lower)
        self._files.clear()
        self.ov.close()
