"""Helpers shared by the API integration tests: real folders, real stores, real zips.

Every helper works on plain paths so a test can point two workspaces (two machines)
at one store folder, or check a store written by a child process it killed.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mountfs import Workspace

ENV_VARS = ("DSMOUNT_HOME", "DSMOUNT_STORE", "DSMOUNT_CACHE_DIR", "DSMOUNT_CACHE_SIZE", "DSMOUNT_CRASH_AT")


def clean_env() -> dict[str, str]:
    """The environment without any dsmount setting, for child processes."""
    return {k: v for k, v in os.environ.items() if k not in ENV_VARS}


def open_ws(root: Path, home: str = "home", store: Path | None = None) -> Workspace:
    """A workspace whose home is ``root/home`` and whose store is ``store`` (default ``root/store``)."""
    return Workspace(str(store if store is not None else root / "store"), home=root / home)


@contextmanager
def workspace(root: Path, home: str = "home", store: Path | None = None) -> Iterator[Workspace]:
    ws = open_ws(root, home, store)
    try:
        yield ws
    finally:
        ws.close()


def write_files(root: Path, files: Mapping[str, bytes | str]) -> Path:
    """Create ``files`` (dataset path -> content) below ``root``; returns ``root``."""
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content.encode() if isinstance(content, str) else content)
    return root


def tree_state(root: Path, *, mtimes: bool = True) -> dict[str, tuple[Any, ...]]:
    """Everything a byte-for-byte comparison looks at: kind, bytes (or link target), mode, mtime."""
    out: dict[str, tuple[Any, ...]] = {}
    for folder, dirs, files in os.walk(root):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            full = os.path.join(folder, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("symlink", os.readlink(full))
            else:
                with open(full, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
                item: tuple[Any, ...] = ("file", digest, st.st_size, stat.S_IMODE(st.st_mode))
                out[rel] = (*item, st.st_mtime_ns) if mtimes else item
    return out


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def unzip_test(path: Path) -> None:
    """``unzip -t`` must accept the chunk: any standard unzip reads our zips."""
    res = subprocess.run(["unzip", "-tq", str(path)], capture_output=True, text=True, check=False)
    assert res.returncode == 0, f"unzip -t {path}: {res.stdout} {res.stderr}"


def zip_names(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as zf:
        return zf.namelist()


def registry_docs(store: Path) -> dict[str, dict[str, Any]]:
    """Every manifest in a store folder, parsed as plain JSON, by version id."""
    reg = store / "registry"
    if not reg.is_dir():
        return {}
    return {p.stem: json.loads(p.read_bytes()) for p in sorted(reg.glob("*.json"))}


def assert_store_consistent(store: Path) -> int:
    """No half-made version: every manifest's file table and chunks exist with their sizes and SHA-256s.

    Also checks every chunk with ``unzip -t`` and that every byte location in every file
    table points at a chunk some manifest lists. Returns the number of versions checked.
    """
    from mountfs.snapshot.filetable import decode_file_table

    docs = registry_docs(store)
    chunks_of: dict[str, set[int]] = {}
    for vid, doc in docs.items():
        data = Path(doc["data_url"])
        ft = data / doc["file_table"]["key"]
        assert ft.is_file(), f"{vid}: file table {ft} missing"
        assert ft.stat().st_size == doc["file_table"]["size"], f"{vid}: file table size differs"
        assert sha256_of(ft) == doc["file_table"]["sha256"], f"{vid}: file table sha256 differs"
        chunks_of[vid] = set()
        for c in doc["chunks"]:
            p = data / c["key"]
            assert p.is_file(), f"{vid}: chunk {p} missing"
            assert p.stat().st_size == c["size"], f"{vid}: chunk {p} size differs"
            assert sha256_of(p) == c["sha256"], f"{vid}: chunk {p} sha256 differs"
            unzip_test(p)
            chunks_of[vid].add(c["index"])
        for parent in doc["parents"]:
            assert parent in docs, f"{vid}: parent {parent} has no manifest"
    for vid, doc in docs.items():
        raw = (Path(doc["data_url"]) / doc["file_table"]["key"]).read_bytes()
        for e in decode_file_table(raw, vid):
            if e.loc is not None:
                assert e.loc.chunk in chunks_of.get(e.loc.version, set()), (
                    f"{vid}: {e.path} points at chunk {e.loc.chunk} of {e.loc.version}, which is not listed"
                )
    return len(docs)


def cache_objects_ok(cache_dir: Path) -> int:
    """Every object in a content cache hashes to its name; returns how many there are."""
    n = 0
    objects = cache_dir / "objects"
    if not objects.is_dir():
        return 0
    for p in objects.rglob("*"):
        if p.is_file() and len(p.name) == 64:
            assert sha256_of(p) == p.name, f"bad object in the cache: {p}"
            n += 1
    return n


def run_child(code: str, env: Mapping[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run Python code in a fresh interpreter with ``env`` added to a clean environment."""
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**clean_env(), **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
