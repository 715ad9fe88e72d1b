"""The writable FUSE Operations awaited directly, without a mount: the inode table, paging, errors."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import pyfuse3
import pytest
import trio

from mountfs import Dataset
from mountfs.api.content import ContentReader
from mountfs.api.workspace import Workspace
from mountfs.fuse.writable import WritableOperations
from mountfs.tree.overlay import Overlay
from tests.integration.api_fixtures import write_files

T = TypeVar("T")
CTX: Any = None  # the handlers under test never look at the request context
ROOT = pyfuse3.ROOT_INODE


def run(fn: Callable[[], Awaitable[T]]) -> T:
    return trio.run(fn)


@pytest.fixture
def ops(ws: Workspace, tmp_path: Path) -> Iterator[WritableOperations]:
    files: dict[str, bytes | str] = {f"many/f{i:03d}.txt": f"file {i}\n" for i in range(600)}
    files.update({"a/b.txt": "bee", "a/c/d.txt": "dee", "big.bin": os.urandom(400_000)})
    src = write_files(tmp_path / "src", files)
    ds = Dataset.create(dataset_name="ops", dataset_project="p", workspace=ws)
    ds.add_files(src)
    ds.finalize(auto_upload=True)
    ov = Overlay.open(tmp_path / "overlay", ws.tree(ds.id))
    reader = ContentReader(ws)
    operations = WritableOperations(ov, reader)
    yield operations
    operations.close()
    reader.close()


async def lookup_path(ops: WritableOperations, path: str) -> pyfuse3.EntryAttributes:
    ino = ROOT
    attrs = await ops.getattr(ino, CTX)
    for part in path.split("/"):
        attrs = await ops.lookup(ino, part.encode(), CTX)
        ino = attrs.st_ino
    return attrs


async def fuse_errno(call: Awaitable[object]) -> int:
    try:
        await call
    except pyfuse3.FUSEError as exc:
        return exc.errno
    return 0


def test_readdir_pages_resume_where_the_kernel_buffer_filled(ops: WritableOperations) -> None:
    async def go() -> list[str]:
        many = await lookup_path(ops, "many")
        for i in range(0, 600, 2):  # whiteouts between the lower's names
            await ops.unlink(many.st_ino, f"f{i:03d}.txt".encode(), CTX)
        for name in ("f0005.new", "zz.new", "a.new"):  # upper rows merged in by name
            fi, _ = await ops.create(many.st_ino, name.encode(), pyfuse3.ModeT(0o644), pyfuse3.FlagT(0), CTX)
            await ops.release(fi.fh)
        seen: list[tuple[str, int]] = []
        budget = [0]

        def reply(token: Any, name: bytes, attrs: pyfuse3.EntryAttributes, next_id: int) -> bool:
            if budget[0] == 0:
                return False
            budget[0] -= 1
            seen.append((name.decode(), next_id))
            return True

        ops.readdir_reply = reply
        fh = await ops.opendir(many.st_ino, CTX)
        start = 0
        while True:
            budget[0] = 37  # a kernel buffer that fills mid-page
            before = len(seen)
            await ops.readdir(fh, start, CTX)
            if len(seen) == before:
                break
            start = seen[-1][1]
        await ops.releasedir(fh)
        return [name for name, _ in seen]

    names = run(go)
    expected = sorted([f"f{i:03d}.txt" for i in range(1, 600, 2)] + ["f0005.new", "zz.new", "a.new"])
    assert names == expected


def test_inode_table_follows_renames_and_forgets(ops: WritableOperations) -> None:
    async def go() -> None:
        d = await lookup_path(ops, "a/c/d.txt")
        a = await lookup_path(ops, "a")
        await ops.rename(ROOT, b"a", ROOT, b"z", pyfuse3.FlagT(0), CTX)
        assert (await ops.getattr(d.st_ino, CTX)).st_size == 3
        assert (await lookup_path(ops, "z/c/d.txt")).st_ino == d.st_ino
        assert (await ops.lookup(ROOT, b"a", CTX)).st_ino == 0
        assert (await lookup_path(ops, "z")).st_ino == a.st_ino
        before = ops.inodes()
        await ops.forget([(d.st_ino, 2)])
        assert ops.inodes() == before - 1
        assert await fuse_errno(ops.getattr(d.st_ino, CTX)) == errno.ENOENT
        assert (await lookup_path(ops, "z/c/d.txt")).st_ino != d.st_ino  # a new number, same file

    run(go)


def test_unlinked_open_file_lives_until_released(ops: WritableOperations) -> None:
    async def go() -> None:
        b = await lookup_path(ops, "a/b.txt")
        a = await lookup_path(ops, "a")
        fi = await ops.open(b.st_ino, pyfuse3.FlagT(os.O_RDWR), CTX)  # copies up
        await ops.unlink(a.st_ino, b"b.txt", CTX)
        assert await ops.write(fi.fh, 3, b"+more") == 5
        attrs = await ops.getattr(b.st_ino, CTX)
        assert (attrs.st_size, attrs.st_nlink) == (8, 0)
        assert await ops.read(fi.fh, 0, 100) == b"bee+more"
        await ops.fsync(fi.fh, False)
        await ops.forget([(b.st_ino, 1)])
        assert ops.open_files() == 1 and (await ops.getattr(b.st_ino, CTX)).st_size == 8  # noqa: PT018
        await ops.release(fi.fh)
        assert await fuse_errno(ops.getattr(b.st_ino, CTX)) == errno.ENOENT
        assert (await ops.lookup(a.st_ino, b"b.txt", CTX)).st_ino == 0

    run(go)


def fields(**changed: bool) -> Any:
    """A SetattrFields stand-in (pyfuse3's own cannot be set from Python)."""
    names = ("atime", "mtime", "ctime", "mode", "uid", "gid", "size")
    return SimpleNamespace(**{**{f"update_{n}": False for n in names}, **changed})


def test_setattr_truncate_copies_only_what_survives(ops: WritableOperations) -> None:
    async def go() -> None:
        big = await lookup_path(ops, "big.bin")
        attr = pyfuse3.EntryAttributes()
        attr.st_size = 1000
        out = await ops.setattr(big.st_ino, attr, fields(update_size=True), None, CTX)
        assert out.st_size == 1000
        assert ops.copied_up == [1, 1000]
        attr.st_mode = pyfuse3.ModeT(stat.S_IFREG | 0o600)
        changed = await ops.setattr(big.st_ino, attr, fields(update_mode=True), None, CTX)
        assert stat.S_IMODE(changed.st_mode) == 0o600

    run(go)


def test_errors_are_fuse_errors(ops: WritableOperations) -> None:
    async def go() -> None:
        a = await lookup_path(ops, "a")
        mode = pyfuse3.ModeT(0o755)
        assert await fuse_errno(ops.mkdir(ROOT, b"a", mode, CTX)) == errno.EEXIST
        assert await fuse_errno(ops.rmdir(ROOT, b"a", CTX)) == errno.ENOTEMPTY
        assert await fuse_errno(ops.unlink(ROOT, b"nope", CTX)) == errno.ENOENT
        assert await fuse_errno(ops.unlink(ROOT, b"a", CTX)) == errno.EISDIR
        flags = pyfuse3.FlagT(pyfuse3.RENAME_NOREPLACE)
        assert await fuse_errno(ops.rename(ROOT, b"big.bin", a.st_ino, b"b.txt", flags, CTX)) == errno.EEXIST
        exchange = pyfuse3.FlagT(pyfuse3.RENAME_EXCHANGE)
        assert (
            await fuse_errno(ops.rename(ROOT, b"big.bin", a.st_ino, b"b.txt", exchange, CTX)) == errno.EINVAL
        )
        assert await fuse_errno(ops.opendir(999_999, CTX)) == errno.ENOENT
        assert await fuse_errno(ops.read(pyfuse3.FileHandleT(12345), 0, 1)) == errno.EBADF

    run(go)


def test_frozen_holds_changes_back_and_lets_reads_through(ops: WritableOperations) -> None:
    """What commit relies on: under ``frozen()`` a change waits, reads answer at once, and the
    held change runs once the gate opens."""

    async def go() -> None:
        a = await lookup_path(ops, "a")
        done: list[str] = []

        async def change() -> None:
            await ops.mkdir(a.st_ino, b"made", pyfuse3.ModeT(0o755), CTX)
            done.append("mkdir")

        async with trio.open_nursery() as nursery:
            async with ops.frozen():
                nursery.start_soon(change)
                await trio.sleep(0.2)
                assert done == []  # held back
                b = await lookup_path(ops, "a/b.txt")  # reads go on
                fi = await ops.open(b.st_ino, pyfuse3.FlagT(os.O_RDONLY), CTX)
                assert await ops.read(fi.fh, 0, 10) == b"bee"
                await ops.release(fi.fh)
                with pytest.raises(Exception, match="already running"):
                    async with ops.frozen():
                        pass
                writer = await ops.open(b.st_ino, pyfuse3.FlagT(os.O_RDONLY), CTX)
                assert ops.open_for_writing() == []
                await ops.release(writer.fh)
            await trio.sleep(0.2)
            assert done == ["mkdir"]
        fi = await ops.open(b.st_ino, pyfuse3.FlagT(os.O_WRONLY), CTX)
        assert ops.open_for_writing() == ["a/b.txt"]
        await ops.release(fi.fh)
        assert ops.open_for_writing() == []
        assert (await lookup_path(ops, "a/made")).st_ino > 0

    run(go)
