"""The FUSE Operations awaited directly, without a mount: translation, paging, errors."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pyfuse3
import pytest
import trio

from mountfs import Dataset
from mountfs.api.content import ContentReader
from mountfs.api.workspace import Workspace
from mountfs.fuse.operations import ReadOnlyOperations
from tests.integration.api_fixtures import write_files

T = TypeVar("T")
CTX: Any = None  # the handlers under test never look at the request context


def run(fn: Callable[[], Awaitable[T]]) -> T:
    return trio.run(fn)


@pytest.fixture
def ops(ws: Workspace, tmp_path: Path) -> ReadOnlyOperations:
    files: dict[str, bytes | str] = {f"many/f{i:03d}.txt": f"file {i}\n" for i in range(600)}
    files.update({"a/b.txt": "bee", "big.bin": os.urandom(400_000), "exec.sh": "#!/bin/sh\n"})
    src = write_files(tmp_path / "src", files)
    os.chmod(src / "exec.sh", 0o755)
    os.symlink("a/b.txt", src / "link")
    ds = Dataset.create(dataset_name="ops", dataset_project="p", workspace=ws)
    ds.add_files(src)
    ds.finalize(auto_upload=True)
    return ReadOnlyOperations(ws.tree(ds.id), ContentReader(ws))


async def lookup_path(ops: ReadOnlyOperations, path: str) -> pyfuse3.EntryAttributes:
    ino = pyfuse3.ROOT_INODE
    attrs = await ops.getattr(ino, CTX)
    for part in path.split("/"):
        attrs = await ops.lookup(ino, part.encode(), CTX)
        ino = attrs.st_ino
    return attrs


def test_lookup_getattr_and_kinds(ops: ReadOnlyOperations) -> None:
    async def go() -> None:
        a = await lookup_path(ops, "a")
        assert stat.S_ISDIR(a.st_mode)
        b = await lookup_path(ops, "a/b.txt")
        assert stat.S_ISREG(b.st_mode) and b.st_size == 3  # noqa: PT018
        assert (await ops.getattr(b.st_ino, CTX)).st_ino == b.st_ino
        ex = await lookup_path(ops, "exec.sh")
        assert stat.S_IMODE(ex.st_mode) == 0o755
        link = await lookup_path(ops, "link")
        assert stat.S_ISLNK(link.st_mode)
        assert await ops.readlink(link.st_ino, CTX) == b"a/b.txt"
        miss = await ops.lookup(pyfuse3.ROOT_INODE, b"nope", CTX)
        assert miss.st_ino == 0 and miss.entry_timeout > 0  # a cached negative entry  # noqa: PT018
        assert (await ops.lookup(a.st_ino, b"..", CTX)).st_ino == pyfuse3.ROOT_INODE
        with pytest.raises(pyfuse3.FUSEError) as info:
            await ops.getattr(999_999, CTX)
        assert info.value.errno == errno.ENOENT
        with pytest.raises(pyfuse3.FUSEError) as info:
            await ops.readlink(b.st_ino, CTX)
        assert info.value.errno == errno.EINVAL

    run(go)


def test_readdir_resumes_where_the_kernel_buffer_filled(ops: ReadOnlyOperations) -> None:
    async def go() -> list[str]:
        many = await lookup_path(ops, "many")
        fh = await ops.opendir(many.st_ino, CTX)
        names: list[str] = []
        offset = 0
        while True:
            got: list[tuple[str, int]] = []

            def reply(
                token: Any, name: bytes, attrs: pyfuse3.EntryAttributes, next_id: int, got: list[Any] = got
            ) -> bool:
                if len(got) == 37:  # a small kernel buffer: refuse the 38th entry
                    return False
                assert attrs.st_ino == next_id
                got.append((name.decode(), next_id))
                return True

            ops.readdir_reply = reply
            await ops.readdir(fh, offset, None)  # type: ignore[arg-type]
            if not got:
                break
            names += [n for n, _ in got]
            offset = got[-1][1]
        await ops.releasedir(fh)
        return names

    names = run(go)
    assert names == [f"f{i:03d}.txt" for i in range(600)]


def test_read_paths_and_xattrs(ops: ReadOnlyOperations, tmp_path: Path) -> None:
    expected = (tmp_path / "src/big.bin").read_bytes()

    async def go() -> None:
        big = await lookup_path(ops, "big.bin")
        fi = await ops.open(big.st_ino, os.O_RDONLY, CTX)
        assert fi.keep_cache
        got = b""
        offset = 0
        while offset < len(expected) + 10:
            got += await ops.read(fi.fh, offset, 131072)
            offset += 131072
        assert got == expected
        assert await ops.read(fi.fh, 399_990, 100) == expected[399_990:]
        await ops.release(fi.fh)
        with pytest.raises(pyfuse3.FUSEError) as info:
            await ops.read(fi.fh, 0, 10)
        assert info.value.errno == errno.EBADF
        names = await ops.listxattr(big.st_ino, CTX)
        assert b"user.dsmount.sha256" in names
        sha = await ops.getxattr(big.st_ino, b"user.dsmount.sha256", CTX)
        import hashlib

        assert sha.decode() == hashlib.sha256(expected).hexdigest()
        with pytest.raises(pyfuse3.FUSEError) as info:
            await ops.getxattr(big.st_ino, b"user.other", CTX)
        assert info.value.errno == pyfuse3.ENOATTR
        with pytest.raises(pyfuse3.FUSEError) as info:
            await ops.open(big.st_ino, os.O_WRONLY, CTX)
        assert info.value.errno == errno.EROFS
        for call in (
            ops.unlink(pyfuse3.ROOT_INODE, b"big.bin", CTX),
            ops.mkdir(pyfuse3.ROOT_INODE, b"d", 0o755, CTX),
            ops.write(fi.fh, 0, b"x"),
            ops.rename(1, b"a", 1, b"b", 0, CTX),
        ):
            with pytest.raises(pyfuse3.FUSEError) as info:
                await call
            assert info.value.errno == errno.EROFS
        s = await ops.statfs(CTX)
        assert s.f_files == ops.index.count() + 1

    run(go)


def test_unexpected_errors_become_eio(ops: ReadOnlyOperations, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(ops.index, "node", broken)

    async def go() -> None:
        with pytest.raises(pyfuse3.FUSEError) as info:
            await ops.getattr(pyfuse3.ROOT_INODE, CTX)
        assert info.value.errno == errno.EIO

    run(go)
    assert ops.stats.snapshot()["getattr"]["errors"] == 1


def test_lookups_in_a_folder_query_the_index_once(
    ops: ReadOnlyOperations, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    for name in ("lookup", "children_after", "node"):
        real = getattr(ops.index, name)

        def counted(*args: Any, _real: Any = real, _name: str = name) -> Any:
            calls.append(_name)
            return _real(*args)

        monkeypatch.setattr(ops.index, name, counted)

    async def go() -> None:
        many = await ops.lookup(pyfuse3.ROOT_INODE, b"many", CTX)
        calls.clear()
        for i in range(0, 600, 7):
            attrs = await ops.lookup(many.st_ino, f"f{i:03d}.txt".encode(), CTX)
            assert attrs.st_size == len(f"file {i}\n")
        assert calls == ["children_after"]  # one page of the folder, then memory
        miss = await ops.lookup(many.st_ino, b"absent.txt", CTX)
        assert miss.st_ino == 0
        assert calls == ["children_after"]  # the whole folder is known: no query for a miss

    run(go)
