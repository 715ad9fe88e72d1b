"""Writable overlay benchmark: `dsmount mount --writable` beside the same work on a local folder.

Every measure runs in a fresh home (store inside) under ``bench/work/overlay-<stamp>/``, on the same
disk as its baseline, and the baseline is measured in the same run (order alternated per run):

1. **copy-up**: a version holding one 256 MiB random file is mounted writable; open it ``r+b``,
   seek to the end, write 1 byte, close (the first write copies the whole file into the overlay)
   against ``cp`` of the same file on the same disk. Both sources are read once first (warm).
   Also the daemon's peak RSS (VmHWM) and ``dsmount stats`` (rss_bytes, copied_up).
2. **creates**: 2,000 new files of 4 KiB (open, write, close) in a new folder of the writable mount
   against the same in a local folder; files/s, without and with the ``sync`` that follows.
3. **commit** (needs ``dsmount commit``): ``dsmount commit MOUNTPOINT --json`` after modifying
   1,000 files of 4 KiB through the mount, and after appending 1 MiB to a 256 MiB file through the
   mount, against ``dsmount create --parents V1`` + ``add`` + ``close`` of the same changed files
   from a local folder (in a second fresh home holding the same V1), and ``cp`` of the changed bytes.
4. **rename store growth** (needs ``dsmount commit``): a version of 1,000 files of 64 KiB; rename
   every file into a new folder through the mount, commit; bytes added under the store folder
   against the size of the new version's file table (``dsmount show ID --json``: file_table.size).
   Target: no new chunk bytes, only the file table (and the manifest).

    .venv/bin/python bench/overlay_bench.py --runs 3     # --quick: small sizes, one run

Results: ``bench/results/overlay-<stamp>.md`` (the table, also printed) and ``overlay-<stamp>.json``.
Needs fusermount3 and /dev/fuse.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
WORK = BENCH / "work"
RESULTS = BENCH / "results"
DEFAULT_DSMOUNT = REPO / ".venv" / "bin" / "dsmount"

KIB = 1024
MIB = 1024 * 1024
SEED = 42


class BenchError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# Helpers (the conventions of mount_bench.py)


def dsmount_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSMOUNT_")}
    env.update(DSMOUNT_HOME=str(home), DSMOUNT_NO_PROGRESS="1", LC_ALL="C")
    return env


def run(
    cmd: Sequence[str | os.PathLike[str]], env: dict[str, str] | None = None, timeout: float = 3600
) -> str:
    argv = [os.fspath(c) for c in cmd]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise BenchError(
            f"exit {proc.returncode}: {' '.join(argv)}\n{proc.stderr[-2000:]}{proc.stdout[-500:]}"
        )
    return proc.stdout


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def settle(quiet_s: float = 2.0, limit_s: float = 120.0) -> float:
    """sync, then wait until the disk shows no discard / in-flight I/O for quiet_s (see run.py)."""
    t0 = time.monotonic()
    os.sync()
    dev = os.stat(BENCH).st_dev
    stat = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}/stat")
    if not stat.exists() or len(stat.read_text().split()) < 15:
        return time.monotonic() - t0

    def sample() -> tuple[int, int]:
        f = stat.read_text().split()
        return int(f[13]), int(f[8])

    last, calm = sample()[0], time.monotonic()
    while time.monotonic() - t0 < limit_s:
        time.sleep(0.25)
        sectors, in_flight = sample()
        if sectors - last > 4096 or in_flight:
            calm = time.monotonic()
        last = sectors
        if time.monotonic() - calm >= quiet_s:
            break
    return time.monotonic() - t0


def is_mounted(path: Path) -> bool:
    target = os.fspath(path).replace(" ", "\\040")
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == target for line in f)


def proc_status(pid: int, key: str) -> int:
    """A kB field of /proc/PID/status (VmHWM, VmRSS) in bytes; 0 if unreadable."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * KIB
    return 0


def tree_size(root: Path) -> int:
    total = 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(os.path.join(folder, name)).st_size
    return total


def read_all(path: Path) -> int:
    """Read a file once (into the page cache); bytes read."""
    total = 0
    with open(path, "rb", buffering=0) as f:
        while n := len(f.read(4 * MIB)):
            total += n
    return total


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def write_files(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


class Dsm:
    """The dsmount CLI on one home."""

    def __init__(self, exe: str, home: Path):
        self.exe = exe
        self.home = home
        self.env = dsmount_env(home)

    def __call__(self, *args: str | os.PathLike[str], timeout: float = 3600) -> str:
        return run([self.exe, *args], self.env, timeout)

    def json(self, *args: str | os.PathLike[str]) -> Any:
        return json.loads(self(*args, "--json"))

    def build(self, src: Path, name: str, parents: Sequence[str] = ()) -> tuple[str, dict[str, float]]:
        """create (+ --parents) + add + close of src as one version: (id, seconds per step)."""
        extra = ["--parents", *parents] if parents else ["--project", "bench"]
        out, t_create = timed(lambda: self.json("create", *extra, "--name", name))
        vid = out["id"]
        _, t_add = timed(lambda: self("add", "--id", vid, "--files", src))
        _, t_close = timed(lambda: self("close", "--id", vid))
        return vid, {"create_s": t_create, "add_s": t_add, "close_s": t_close}

    def chunks(self, vid: str) -> list[Path]:
        return sorted((self.home / "store" / "data" / vid).glob("chunk-*.zip"))


class WritableMount:
    """``dsmount mount ID MNT --writable``; unmounted in any case by the with block."""

    def __init__(self, dsm: Dsm, vid: str, mnt: Path):
        self.dsm, self.vid, self.mnt = dsm, vid, mnt
        self.pid: int | None = None

    def __enter__(self) -> WritableMount:
        self.mnt.mkdir(parents=True, exist_ok=True)
        out = self.dsm.json("mount", self.vid, self.mnt, "--writable")
        self.pid = int(out["pid"])
        return self

    def stats(self) -> dict[str, Any]:
        return dict(self.dsm.json("stats", self.mnt))

    def peak_rss(self) -> int:
        return proc_status(self.pid, "VmHWM") if self.pid else 0

    def __exit__(self, *exc: object) -> None:
        pid, self.pid = self.pid, None
        try:
            if is_mounted(self.mnt):
                self.dsm("unmount", self.mnt, timeout=120)
        except (BenchError, subprocess.TimeoutExpired) as err:
            log(f"    dsmount unmount failed: {err}")
            if pid is not None:  # only the daemon this mount started
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
                time.sleep(2)
        finally:
            if is_mounted(self.mnt):
                subprocess.run(["fusermount3", "-u", "-z", str(self.mnt)], capture_output=True, check=False)


def commit_available(exe: str) -> bool:
    proc = subprocess.run([exe, "commit", "--help"], capture_output=True, text=True, check=False)
    return proc.returncode == 0


# --------------------------------------------------------------------------------------------------
# Workload data (generated once per invocation, shared by the runs)


class Data:
    def __init__(self, root: Path, big_mib: int, n_creates: int, n_modify: int, n_rename: int):
        rng = random.Random(SEED)
        self.root = root
        self.big_src = root / "big-src"  # one file: big.bin
        self.big_bytes = big_mib * MIB
        self.big_src.mkdir(parents=True)
        h = hashlib.sha256()
        with open(self.big_src / "big.bin", "wb") as f:
            for _ in range(big_mib):
                block = rng.randbytes(MIB)
                h.update(block)
                f.write(block)
        self.big_sha_plus1 = h.copy()
        self.big_sha_plus1.update(b"\x01")
        self.append = rng.randbytes(MIB)  # what measure 3 appends to big.bin
        self.creates = [rng.randbytes(4 * KIB) for _ in range(n_creates)]
        self.modify_src = root / "modify-src"  # n_modify files of 4 KiB in folders of 100
        self.modify_paths = [f"d{i // 100:02d}/f{i:05d}.bin" for i in range(n_modify)]
        write_files(self.modify_src, {p: rng.randbytes(4 * KIB) for p in self.modify_paths})
        self.modify_new = {p: rng.randbytes(4 * KIB) for p in self.modify_paths}
        self.rename_src = root / "rename-src"  # n_rename files of 64 KiB in folders of 100
        self.rename_paths = [f"d{i // 100:02d}/f{i:05d}.bin" for i in range(n_rename)]
        write_files(self.rename_src, {p: rng.randbytes(64 * KIB) for p in self.rename_paths})
        self.tiny_src = root / "tiny-src"  # the version measure 2 creates files in
        write_files(self.tiny_src, {"readme.txt": b"tiny\n"})


# --------------------------------------------------------------------------------------------------
# The measures; each returns the values of one run


def measure_copyup(exe: str, data: Data, d: Path, *, dsm_first: bool) -> dict[str, Any]:
    dsm = Dsm(exe, d / "home")
    vid, _ = dsm.build(data.big_src, "copyup")
    src = data.big_src / "big.bin"
    chunks = dsm.chunks(vid)
    v: dict[str, Any] = {}
    with WritableMount(dsm, vid, d / "mnt") as m:
        target = m.mnt / "big.bin"
        if target.stat().st_size != data.big_bytes:
            raise BenchError(f"{target}: size {target.stat().st_size}, expected {data.big_bytes}")
        rss_before = m.stats().get("rss_bytes", 0)

        def copy_up() -> None:
            with open(target, "r+b") as f:
                f.seek(0, os.SEEK_END)
                f.write(b"\x01")

        def cp() -> None:
            run(["cp", src, d / "cp.bin"])

        steps = [("dsmount", copy_up, chunks), ("cp", cp, [src])]
        for name, fn, sources in steps if dsm_first else steps[::-1]:
            for s in sources:  # warm: both read their source once first
                read_all(s)
            os.sync()
            t0 = time.perf_counter()
            fn()
            v[f"{name}_s"] = time.perf_counter() - t0
            os.sync()
            v[f"{name}_sync_s"] = time.perf_counter() - t0
        st = m.stats()
        v["rss_before_bytes"] = rss_before
        v["rss_after_bytes"] = st.get("rss_bytes")
        v["peak_rss_bytes"] = m.peak_rss()
        v["copied_up"] = st.get("copied_up")
        if target.stat().st_size != data.big_bytes + 1:
            raise BenchError(f"after the append {target} has {target.stat().st_size} bytes")
        if sha256_file(target) != data.big_sha_plus1.hexdigest():
            raise BenchError(f"{target}: wrong bytes after the copy-up")
    v["ratio"] = v["dsmount_s"] / v["cp_s"]
    v["ratio_sync"] = v["dsmount_sync_s"] / v["cp_sync_s"]
    return v


def measure_creates(exe: str, data: Data, d: Path, *, dsm_first: bool) -> dict[str, Any]:
    dsm = Dsm(exe, d / "home")
    vid, _ = dsm.build(data.tiny_src, "creates")
    local = d / "local" / "new"
    local.parent.mkdir(parents=True)
    v: dict[str, Any] = {}
    n = len(data.creates)

    def create_all(folder: Path, fsync: bool = False) -> None:
        folder.mkdir()
        for i, blob in enumerate(data.creates):
            fd = os.open(folder / f"f{i:05d}.bin", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                os.write(fd, blob)
                if fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)

    with WritableMount(dsm, vid, d / "mnt") as m:
        # local_fsync: the same with an fsync of each file before its close, for scale (the
        # overlay records each create in a SQLite transaction with synchronous=FULL)
        steps = [("dsmount", m.mnt / "new"), ("local", local), ("local_fsync", d / "local" / "new-fsync")]
        for name, folder in steps if dsm_first else steps[::-1]:
            os.sync()
            t0 = time.perf_counter()
            create_all(folder, fsync=name == "local_fsync")
            t = time.perf_counter() - t0
            os.sync()
            t_sync = time.perf_counter() - t0
            v[f"{name}_fps"] = n / t
            v[f"{name}_sync_fps"] = n / t_sync
        got = sorted(os.listdir(m.mnt / "new"))
        if len(got) != n or (m.mnt / "new" / got[-1]).read_bytes() != data.creates[-1]:
            raise BenchError(f"the mount holds {len(got)} new files, expected {n}")
        v["peak_rss_bytes"] = m.peak_rss()
        st = m.stats()
        v["rss_after_bytes"] = st.get("rss_bytes")
        v["ops"] = st.get("ops")  # per FUSE operation: count and latency, to see where a create goes
    v["ratio"] = v["dsmount_fps"] / v["local_fps"]
    v["ratio_sync"] = v["dsmount_sync_fps"] / v["local_sync_fps"]
    v["ratio_fsync"] = v["dsmount_fps"] / v["local_fsync_fps"]
    return v


def commit(m: WritableMount) -> tuple[dict[str, Any], float]:
    out, t = timed(lambda: m.dsm.json("commit", m.mnt))
    if not isinstance(out, dict) or "id" not in out:
        raise BenchError(f"dsmount commit --json printed {out!r}")
    return out, t


def measure_commit(
    exe: str, src: Path, change: Callable[[Path], None], dsm_first: bool, d: Path
) -> dict[str, Any]:
    """Apply change() through a writable mount of src's version, then `dsmount commit`; baseline:
    the same change() on a local copy, then create --parents + add + close of the changed files
    (in a second home holding the same version), and cp of the changed files."""
    dsm = Dsm(exe, d / "home")
    vid, _ = dsm.build(src, "commit")
    base = Dsm(exe, d / "home-base")
    vid_base, _ = base.build(src, "commit")
    local = d / "local"
    shutil.copytree(src, local)
    before = {p: sha256_file(p) for p in local.rglob("*") if p.is_file()}
    change(local)
    changed = d / "changed"  # only the changed files, as `add` of a child version takes them
    for p in local.rglob("*"):
        if p.is_file() and before.get(p) != sha256_file(p):
            rel = p.relative_to(local)
            (changed / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, changed / rel)
    v: dict[str, Any] = {"changed_files": sum(1 for p in changed.rglob("*") if p.is_file())}
    v["changed_bytes"] = tree_size(changed)
    with WritableMount(dsm, vid, d / "mnt") as m:
        change(m.mnt)
        diff = dsm.json("diff", m.mnt)["changes"]
        v["diff_changes"] = len(diff)

        def do_commit() -> None:
            out, v["dsmount_s"] = commit(m)
            v["commit_json"] = out
            if isinstance(out.get("seconds"), int | float):
                v["daemon_commit_s"] = out["seconds"]
            v["peak_rss_bytes"] = m.peak_rss()

        def do_base() -> None:
            new, steps = base.build(changed, "commit", parents=[vid_base])
            v["base_s"] = sum(steps.values())
            v["base_steps"] = steps
            v["base_id"] = new

        def do_cp() -> None:
            read_all_tree(changed)
            os.sync()
            _, v["cp_s"] = timed(lambda: run(["cp", "-r", changed, d / "cp"]))

        steps = [do_commit, do_base] if dsm_first else [do_base, do_commit]
        for fn in [*steps, do_cp]:
            settle()
            fn()
    new_id = v["commit_json"]["id"]
    shown = dsm.json("show", new_id)
    v["commit_stats"] = shown.get("stats")
    base_stats = base.json("show", v["base_id"]).get("stats")
    v["base_stats"] = base_stats
    v["ratio"] = v["dsmount_s"] / v["base_s"]
    v["ratio_cp"] = v["dsmount_s"] / v["cp_s"]
    return v


def read_all_tree(root: Path) -> None:
    for p in root.rglob("*"):
        if p.is_file():
            read_all(p)


def measure_rename(exe: str, data: Data, d: Path) -> dict[str, Any]:
    dsm = Dsm(exe, d / "home")
    vid, _ = dsm.build(data.rename_src, "rename")
    store = d / "home" / "store"
    v: dict[str, Any] = {}
    with WritableMount(dsm, vid, d / "mnt") as m:
        (m.mnt / "moved").mkdir()
        t0 = time.perf_counter()
        for rel in data.rename_paths:
            os.rename(m.mnt / rel, m.mnt / "moved" / Path(rel).name)
        v["renames_per_s"] = len(data.rename_paths) / (time.perf_counter() - t0)
        diff = dsm.json("diff", m.mnt)["changes"]
        v["diff"] = {s: sum(1 for c in diff if c["status"] == s) for s in {c["status"] for c in diff}}
        settle()
        size_before = tree_size(store)
        files_before = {str(p.relative_to(store)) for p in store.rglob("*") if p.is_file()}
        out, v["commit_s"] = commit(m)
        v["peak_rss_bytes"] = m.peak_rss()
    new_id = out["id"]
    v["commit_json"] = out
    v["store_growth_bytes"] = tree_size(store) - size_before
    new_files = {
        str(p.relative_to(store)): p.stat().st_size
        for p in store.rglob("*")
        if p.is_file() and str(p.relative_to(store)) not in files_before
    }
    v["new_store_files"] = new_files
    v["new_chunk_bytes"] = sum(s for p, s in new_files.items() if Path(p).name.startswith("chunk-"))
    shown = dsm.json("show", new_id)
    v["file_table_bytes"] = int(shown["file_table"]["size"])
    v["manifest_bytes"] = (store / "registry" / f"{new_id}.json").stat().st_size
    v["commit_stats"] = shown.get("stats")
    listing = dsm.json("list", "--id", new_id)
    moved = [e for e in listing if e["path"].startswith("moved/")]
    if len(listing) != len(data.rename_paths) or len(moved) != len(data.rename_paths):
        raise BenchError(f"the committed version lists {len(listing)} files, {len(moved)} under moved/")
    v["ratio_growth_to_file_table"] = v["store_growth_bytes"] / v["file_table_bytes"]
    return v


# --------------------------------------------------------------------------------------------------
# Summary


def med_range(xs: Sequence[float], fmt: str = "{:.2f}") -> str:
    xs = [x for x in xs if x is not None]
    if not xs:
        return "–"

    def one(x: float) -> str:
        return f"{x:,.0f}" if abs(x) >= 1000 else fmt.format(x)

    if len(xs) == 1 or min(xs) == max(xs):
        return one(statistics.median(xs))
    return f"{one(statistics.median(xs))} [{one(min(xs))}–{one(max(xs))}]"


def col(runs: list[dict[str, Any]], measure: str, key: str, scale: float = 1.0) -> list[float]:
    out = []
    for r in runs:
        val = r.get(measure, {}).get(key)
        if isinstance(val, int | float):
            out.append(val * scale)
    return out


def markdown(runs: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    ok = {k: sum(1 for r in runs if k in r) for k in ("copyup", "creates", "commit_small", "commit_big")}
    lines = [
        f"Run {meta['stamp']} on {meta['host']}; {meta['dsmount_version']} at {meta['dsmount_commit']}"
        + (f" + {len(meta['uncommitted'])} uncommitted file(s)." if meta["uncommitted"] else "."),
        f"Cells: median [min–max] over {meta['runs']} run(s); ratio: median [min–max] of the per-run "
        "ratios (same run).",
        "",
        "| measure | dsmount | baseline (same run) | ratio dsmount/baseline |",
        "|---|---|---|---|",
    ]
    big = f"{meta['big_mib']} MiB"
    if ok["copyup"]:
        lines.append(
            f"| copy-up: open r+b, write 1 byte at the end, close of a {big} file (s) | "
            f"{med_range(col(runs, 'copyup', 'dsmount_s'))} | `cp` of the file: "
            f"{med_range(col(runs, 'copyup', 'cp_s'))} | {med_range(col(runs, 'copyup', 'ratio'))} |"
        )
        lines.append(
            f"| copy-up as above, then `sync` (s) | {med_range(col(runs, 'copyup', 'dsmount_sync_s'))} | "
            f"`cp`, then `sync`: {med_range(col(runs, 'copyup', 'cp_sync_s'))} | "
            f"{med_range(col(runs, 'copyup', 'ratio_sync'))} |"
        )
        lines.append(
            "| daemon peak RSS (VmHWM) after the copy-up (MB) | "
            f"{med_range(col(runs, 'copyup', 'peak_rss_bytes', 1e-6), '{:.0f}')} | – | – |"
        )
    if ok["creates"]:
        n = meta["creates"]
        lines.append(
            f"| {n:,} creates of 4 KiB (files/s) | {med_range(col(runs, 'creates', 'dsmount_fps'))} | "
            f"local folder: {med_range(col(runs, 'creates', 'local_fps'))} | "
            f"{med_range(col(runs, 'creates', 'ratio'))} |"
        )
        lines.append(
            f"| {n:,} creates of 4 KiB, then `sync` (files/s) | "
            f"{med_range(col(runs, 'creates', 'dsmount_sync_fps'))} | "
            f"local folder: {med_range(col(runs, 'creates', 'local_sync_fps'))} | "
            f"{med_range(col(runs, 'creates', 'ratio_sync'))} |"
        )
        lines.append(
            f"| {n:,} creates of 4 KiB (files/s) | {med_range(col(runs, 'creates', 'dsmount_fps'))} | "
            f"local folder, fsync of each file: {med_range(col(runs, 'creates', 'local_fsync_fps'))} | "
            f"{med_range(col(runs, 'creates', 'ratio_fsync'))} |"
        )
    for key, label in (
        ("commit_small", f"{meta['modify']:,} files of 4 KiB modified"),
        ("commit_big", f"1 MiB appended to a {big} file"),
    ):
        if ok[key]:
            lines.append(
                f"| `dsmount commit`, {label} (s) | {med_range(col(runs, key, 'dsmount_s'))} | "
                f"`create --parents` + `add` + `close` of the changed files: "
                f"{med_range(col(runs, key, 'base_s'))} | {med_range(col(runs, key, 'ratio'))} |"
            )
            lines.append(
                f"| `dsmount commit`, {label} (s) | {med_range(col(runs, key, 'dsmount_s'))} | "
                f"`cp -r` of the changed files: {med_range(col(runs, key, 'cp_s'))} | "
                f"{med_range(col(runs, key, 'ratio_cp'))} |"
            )
            lines.append(
                f"| of which the daemon's commit (its JSON `seconds`) (s) | "
                f"{med_range(col(runs, key, 'daemon_commit_s'))} | – | – |"
            )
    if any("rename" in r for r in runs):
        n = meta["rename"]
        lines.append(
            f"| store growth after renaming {n:,} files of 64 KiB + commit (B) | "
            f"{med_range(col(runs, 'rename', 'store_growth_bytes'), '{:.0f}')} "
            f"(new chunk bytes: {med_range(col(runs, 'rename', 'new_chunk_bytes'), '{:.0f}')}) | "
            f"file table of the new version: {med_range(col(runs, 'rename', 'file_table_bytes'), '{:.0f}')}"
            f" (+ manifest {med_range(col(runs, 'rename', 'manifest_bytes'), '{:.0f}')}) | "
            f"{med_range(col(runs, 'rename', 'ratio_growth_to_file_table'))} |"
        )
        lines.append(
            f"| `dsmount commit` of the {n:,} renames (s) | {med_range(col(runs, 'rename', 'commit_s'))} "
            "| – | – |"
        )
    if meta.get("not_run"):
        lines += ["", "Not run: " + "; ".join(meta["not_run"])]
    failed = [f"run {r['run']}: {k}: {e}" for r in runs for k, e in r.get("errors", {}).items()]
    if failed:
        lines += ["", "Failed: " + "; ".join(failed)]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Entry


def version_of(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    except OSError:
        return "not installed"
    return (out.stdout.strip() or out.stderr.strip() or f"exit {out.returncode}").splitlines()[0]


@contextlib.contextmanager
def bench_lock() -> Iterator[None]:
    """One benchmark at a time (the lock run.py and mount_bench.py take)."""
    WORK.mkdir(parents=True, exist_ok=True)
    with open(WORK / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log("another benchmark holds bench/work/.lock; waiting for it to finish")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="small sizes and one run: a smoke test")
    p.add_argument("--big-mib", type=int, default=None, help="size of the large file (256; quick 16)")
    p.add_argument("--creates", type=int, default=None, help="files created (2000; quick 200)")
    p.add_argument(
        "--modify", type=int, default=None, help="files modified before a commit (1000; quick 100)"
    )
    p.add_argument("--rename", type=int, default=None, help="files renamed before a commit (1000; quick 100)")
    p.add_argument("--dsmount", default=str(DEFAULT_DSMOUNT), help="dsmount executable")
    p.add_argument("--keep", action="store_true", help="keep bench/work/overlay-<stamp>/")
    args = p.parse_args(argv)
    quick = args.quick
    runs_n = 1 if quick and args.runs == 3 else args.runs
    big_mib = args.big_mib or (16 if quick else 256)
    n_creates = args.creates or (200 if quick else 2000)
    n_modify = args.modify or (100 if quick else 1000)
    n_rename = args.rename or (100 if quick else 1000)
    for exe in ("fusermount3", "cp"):
        if not shutil.which(exe):
            p.error(f"{exe} not found")
    has_commit = commit_available(args.dsmount)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    meta: dict[str, Any] = {
        "stamp": stamp,
        "host": f"{platform.node()} {platform.system()} {platform.release()}, {os.cpu_count()} CPU",
        "python": platform.python_version(),
        "dsmount_version": version_of([args.dsmount, "--version"]),
        "dsmount_commit": version_of(["git", "-C", str(REPO), "log", "-1", "--format=%h"]),
        "uncommitted": run(["git", "-C", str(REPO), "status", "--porcelain"]).splitlines(),
        "args": vars(args),
        "runs": runs_n,
        "big_mib": big_mib,
        "creates": n_creates,
        "modify": n_modify,
        "rename": n_rename,
        "not_run": [] if has_commit else ["measures 3 and 4 (`dsmount commit` is not available)"],
    }
    runs: list[dict[str, Any]] = []
    work = WORK / f"overlay-{stamp}"
    with bench_lock():
        work.mkdir(parents=True)
        try:
            log(f"generating the data under {work}")
            data = Data(work / "data", big_mib, n_creates, n_modify, n_rename)
            settle()

            def append_big(root: Path) -> None:
                with open(root / "big.bin", "ab") as f:
                    f.write(data.append)

            def modify_small(root: Path) -> None:
                for rel in data.modify_paths:
                    with open(root / rel, "r+b") as f:
                        f.write(data.modify_new[rel])

            for r in range(1, runs_n + 1):
                rec: dict[str, Any] = {"run": r, "errors": {}}
                runs.append(rec)
                dsm_first = r % 2 == 1
                rd = work / f"run{r}"
                exe = args.dsmount
                todo: list[tuple[str, Callable[[Path], dict[str, Any]]]] = [
                    ("copyup", partial(measure_copyup, exe, data, dsm_first=dsm_first)),
                    ("creates", partial(measure_creates, exe, data, dsm_first=dsm_first)),
                ]
                if has_commit:
                    todo += [
                        (
                            "commit_small",
                            partial(measure_commit, exe, data.modify_src, modify_small, dsm_first),
                        ),
                        ("commit_big", partial(measure_commit, exe, data.big_src, append_big, dsm_first)),
                        ("rename", partial(measure_rename, exe, data)),
                    ]
                for name, fn in todo:
                    log(f"run {r}: {name}")
                    d = rd / name
                    d.mkdir(parents=True)
                    try:
                        rec[name] = fn(d)
                        shown = {k: x for k, x in rec[name].items() if isinstance(x, float | int)}
                        log("    " + "  ".join(f"{k}={x:.4g}" for k, x in shown.items()))
                    except (BenchError, OSError, subprocess.TimeoutExpired, ValueError, KeyError) as exc:
                        rec["errors"][name] = str(exc).splitlines()[0] if str(exc) else repr(exc)
                        log(f"    FAILED: {exc}")
                if not args.keep:
                    shutil.rmtree(rd, ignore_errors=True)
                    settle()
        finally:
            for mnt in work.glob("run*/*/mnt"):  # nothing of ours may stay mounted
                if is_mounted(mnt):
                    log(f"still mounted, detaching: {mnt}")
                    subprocess.run(["fusermount3", "-u", "-z", str(mnt)], capture_output=True, check=False)
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)
    md = markdown(runs, meta)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"overlay-{stamp}.json").write_text(json.dumps({"meta": meta, "runs": runs}, indent=1))
    (RESULTS / f"overlay-{stamp}.md").write_text(md + "\n")
    print(md)
    log(f"\nresults: {RESULTS / f'overlay-{stamp}'}.md/.json")
    return 1 if any(r["errors"] for r in runs) else 0


if __name__ == "__main__":
    raise SystemExit(main())
