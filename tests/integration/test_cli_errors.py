"""Errors from the real ``dsmount``: one line on stderr, no traceback, the documented exit code."""

from __future__ import annotations

import hashlib
import random
from dataclasses import replace
from pathlib import Path

import pytest

from mountfs import Dataset, Workspace
from tests.conftest import Dsm, MakeTree, Run


def _one_line_error(res: Run) -> str:
    assert "Traceback" not in res.err
    lines = res.err.splitlines()
    assert len(lines) == 1, res.err
    assert lines[0].startswith("dsmount: error: "), res.err
    return lines[0]


def test_not_found_ambiguous_state_and_usage(
    dsm: Dsm, workspace: Workspace, make_tree: MakeTree, tmp_path: Path
) -> None:
    _one_line_error(dsm("list", "--id", "0123456789abcdef0123456789abcdef", rc=3))
    _one_line_error(dsm("get", "--id", "nope/missing", rc=3))
    assert "--id" in _one_line_error(dsm("list", rc=2))  # no --id and nothing used before
    _one_line_error(dsm("show", "not a ref!", rc=2))

    vid = dsm.json("sync", "--folder", make_tree({"a": "a"}), "--project", "p", "--name", "e")["id"]
    # A second version whose id shares the first one's 6-digit prefix, so that prefix is ambiguous.
    m = workspace.manifest(vid)
    twin = vid[:6] + hashlib.sha256(vid.encode()).hexdigest()[: len(vid) - 6]
    workspace.write_manifest(replace(m, id=twin, version="9.0.0"))
    line = _one_line_error(dsm("show", vid[:6], rc=3))
    assert "matches several versions" in line
    assert vid in line
    assert twin in line
    dsm("show", vid[:7] if vid[6] != twin[6] else vid)

    line = _one_line_error(dsm("add", "--id", vid, "--files", make_tree({"b": "b"}), rc=4))
    assert "closed" in line
    draft = dsm.new_id("--project", "p", "--name", "e2")
    _one_line_error(dsm("add", "--id", draft, "--files", tmp_path / "no-such-file", rc=3))
    _one_line_error(dsm("get", "--id", draft, rc=4))  # a draft cannot be fetched
    _one_line_error(dsm("create", "--project", "p", "--name", "e2", "--version", "1.0.0", rc=2))
    assert dsm("create", "--bogus-flag", rc=2).err.startswith("usage: dsmount create")
    assert "dsmount: error:" in dsm(rc=2).err  # no command


def test_unreadable_store(dsm: Dsm, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    line = _one_line_error(dsm("--store", blocker / "store", "search", rc=5))
    assert str(blocker) in line


def test_corrupt_chunk_is_exit_6_and_leaves_no_wrong_file(
    dsm: Dsm, workspace: Workspace, make_tree: MakeTree, tmp_path: Path
) -> None:
    rng = random.Random(5)
    src = make_tree(
        {"a_first.txt": "fine\n" * 50, "m_big.bin": rng.randbytes(200_000), "z_last.txt": "also fine\n" * 50}
    )
    vid = dsm.json("sync", "--folder", src, "--project", "p", "--name", "bad")["id"]
    entry = Dataset(workspace, vid).file_entries_dict["m_big.bin"]
    assert entry.loc is not None
    chunk = dsm.home / "store" / "data" / vid / f"chunk-{entry.loc.chunk:04d}.zip"
    raw = bytearray(chunk.read_bytes())
    raw[entry.loc.offset + 1000] ^= 0x5A  # inside the member's data, not its headers
    chunk.write_bytes(bytes(raw))

    # A cold cache (another home on the same store) must read the damaged bytes, and refuse them.
    cold = Dsm(tmp_path / "cold-home", tmp_path)
    target = tmp_path / "target"
    store = dsm.home / "store"
    line = _one_line_error(cold("--store", store, "get", "--id", vid, "--copy", target, rc=6))
    assert "m_big.bin" in line
    for p in target.rglob("*") if target.exists() else []:
        if p.is_file():
            assert p.read_bytes() == (src / p.relative_to(target)).read_bytes(), f"wrong bytes left in {p}"
    assert not (target / "m_big.bin").exists()
    _one_line_error(cold("--store", store, "get", "--id", vid, rc=6))
    _one_line_error(cold("--store", store, "get", "--id", vid, "--link", tmp_path / "linked", rc=6))
    assert not (tmp_path / "linked" / "m_big.bin").exists()


def test_local_os_error_is_one_line_exit_1(dsm: Dsm, make_tree: MakeTree, tmp_path: Path) -> None:
    dsm("sync", "--folder", make_tree({"a": "a"}), "--project", "p", "--name", "os")
    blocker = tmp_path / "plain-file"
    blocker.write_text("x")
    line = _one_line_error(dsm("get", "--id", "p/os", "--copy", blocker / "below", rc=1))
    assert str(blocker) in line


@pytest.mark.parametrize(
    ("raised", "rc", "message"),
    [
        (RuntimeError("boom\nsecond line"), 70, "dsmount: internal error: RuntimeError: boom second line"),
        (KeyboardInterrupt(), 130, "dsmount: interrupted"),
    ],
)
def test_internal_error_and_interrupt(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    raised: BaseException,
    rc: int,
    message: str,
) -> None:
    """In process, so a handler can be made to fail the way no real input makes it fail."""
    from mountfs.cli import commands_read, main

    def fail(ctx: object) -> int:
        raise raised

    monkeypatch.setattr(commands_read, "search", fail)
    monkeypatch.setenv("DSMOUNT_HOME", str(tmp_path / "home"))
    assert main.main(["search"]) == rc
    err = capsys.readouterr().err
    assert err.splitlines()[0].startswith(message)
    assert "Traceback" not in err
    if rc == 70:
        assert err.rstrip().endswith("(run with -v for the traceback)")
        assert main.main(["-v", "search"]) == rc
        assert "Traceback" in capsys.readouterr().err
