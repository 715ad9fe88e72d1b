"""Mount benchmark: `dsmount mount` beside the native folder and ratarmount, in one run, on the same data.

One workload version (W1-like: a few thousand small files of 1-64 KiB plus one 256 MiB file) is built
once with the dsmount CLI and cached under ``bench/data/``. Its chunk zips are then read three ways:

* **native**: the chunks unzipped into a folder on the same disk (``unzip``; also cached);
* **ratarmount**: the same chunk zips union-mounted (``ratarmount -f chunk-0000.zip ... MOUNT``,
  index files in a per-run temp folder), from ``bench/.venv-ratarmount`` (``bench/setup_ratarmount.sh``);
* **dsmount**: ``dsmount mount ID MOUNT`` on the version.

Measured in every run, tools interleaved (order rotated per run): mount-ready time (command start
until a stat of a file inside succeeds; first mount without the merged-tree index / ratarmount
index, and re-mount), time to first byte, ``find -printf '%s\\n'`` (stat of every entry) cold and
warm, sequential read of the 256 MiB file cold and warm, small-file reads with 1 and 8 reader
processes cold and warm, and daemon memory (VmRSS). "Cold" = ``sync; echo 3 >
/proc/sys/vm/drop_caches`` and a fresh mount right before the operation. Plus a synthetic version
of 1,000,000 tiny files (built once with ``dsmount create/add/close``, cached): first mount with the
index build, re-mount, daemon RSS after a ``find`` over all files, bytes per file, and a sample of
files read back and checked.

    bash bench/setup_ratarmount.sh                       # once: ratarmount into bench/.venv-ratarmount
    .venv/bin/python bench/mount_bench.py --runs 3       # --quick: small sizes, one run, for a smoke test

Results: ``bench/results/mount-<stamp>.md`` (the tables, also printed) and ``mount-<stamp>.json``.
Needs root (drop_caches), fusermount3 and unzip.
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
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
WORK = BENCH / "work"
DATA = BENCH / "data"
RESULTS = BENCH / "results"
RAT_VENV = BENCH / ".venv-ratarmount"
DEFAULT_DSMOUNT = REPO / ".venv" / "bin" / "dsmount"

KIB = 1024
MIB = 1024 * 1024
TOOLS = ("native", "ratarmount", "dsmount")
SEED = 42
READ_BLOCK = MIB  # sequential reads: 1 MiB read() calls
READERS = (1, 8)
M1_SAMPLE = 1000  # files of the 1,000,000-file version read back and checked per run

# Targets of issue 3.
TARGET_WARM_BIG = 0.9  # warm large-file read ≥ 0.9 × native
TARGET_SMALL_VS_RAT = 10.0  # small-file reads ≥ 10 × ratarmount
TARGET_SMALL_VS_NATIVE = 0.5  # small-file reads ≥ 0.5 × native
TARGET_READY_S = 1.0  # mount ready < 1 s
TARGET_BYTES_PER_FILE = 250.0  # daemon memory per file at 1,000,000 files


class BenchError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# Workload


@dataclass
class Workload:
    """The cached version the comparison runs on."""

    root: Path  # bench/data/mount-<key>/
    version: str
    home: Path  # DSMOUNT_HOME (store inside)
    native: Path  # chunks unzipped
    chunks: list[Path]
    small: list[str]  # relative paths of the small files
    small_bytes: int
    big: str  # relative path of the large file
    big_bytes: int
    sha256: dict[str, str]  # relative path -> sha256 of every file
    build: dict[str, Any]

    @property
    def ready_file(self) -> str:
        return self.small[0]

    @property
    def ttfb_file(self) -> str:
        return self.small[-1]


def small_path(i: int) -> str:
    return f"small/d{i // 100:03d}/f{i:05d}.bin"


def generate_tree(root: Path, n_small: int, big_mib: int) -> None:
    """W1's shapes: small files of 1-64 KiB (random bytes, so zip stores them) and one large file."""
    rng = random.Random(SEED)
    sizes = [rng.randint(1, 64) * KIB for _ in range(n_small)]
    for i, size in enumerate(sizes):
        path = root / small_path(i)
        if i % 100 == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(size))
    (root / "big").mkdir(parents=True, exist_ok=True)
    with open(root / "big" / "big.bin", "wb") as f:
        for _ in range(big_mib):
            f.write(rng.randbytes(MIB))


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


def timed_run(
    cmd: Sequence[str | os.PathLike[str]], env: dict[str, str] | None = None
) -> tuple[str, float, float]:
    """(stdout, wall s, peak RSS MB via GNU time) of one child."""
    with contextlib.ExitStack() as stack:
        rss_file = stack.enter_context(_tempfile())
        argv = ["/usr/bin/time", "-f", "%M", "-o", str(rss_file), *(os.fspath(c) for c in cmd)]
        t0 = time.perf_counter()
        out = run(argv, env)
        wall = time.perf_counter() - t0
        rss = int(rss_file.read_text().split()[-1]) * KIB / 1e6
    return out, wall, rss


@contextlib.contextmanager
def _tempfile() -> Iterator[Path]:
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / f".tmp-{os.getpid()}-{time.monotonic_ns()}"
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def dsmount_build(
    exe: str, home: Path, src: Path, name: str, extra: Sequence[str] = ()
) -> tuple[str, dict[str, Any]]:
    """create + add + close of src as one version; (id, timings)."""
    env = dsmount_env(home)
    out, t_create, _ = timed_run([exe, "create", "--project", "bench", "--name", name, *extra, "--json"], env)
    vid = json.loads(out)["id"]
    _, t_add, rss_add = timed_run([exe, "add", "--id", vid, "--files", str(src)], env)
    _, t_close, rss_close = timed_run([exe, "close", "--id", vid], env)
    return vid, {
        "create_s": round(t_create, 2),
        "add_s": round(t_add, 2),
        "close_s": round(t_close, 2),
        "add_rss_mb": round(rss_add),
        "close_rss_mb": round(rss_close),
    }


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def prepare_workload(exe: str, n_small: int, big_mib: int, chunk: str) -> Workload:
    """Build (once) and load the cached workload version, its native folder and checksums."""
    root = DATA / f"mount-s{n_small}-b{big_mib}-c{chunk}"
    meta_path = root / "meta.json"
    if not meta_path.exists():
        log(f"building workload {root.name} (cached for later runs)")
        rmtree(root)
        root.mkdir(parents=True)
        src, home, native = root / "src", root / "home", root / "native"
        t0 = time.perf_counter()
        generate_tree(src, n_small, big_mib)
        build: dict[str, Any] = {"generate_s": round(time.perf_counter() - t0, 2)}
        vid, times = dsmount_build(exe, home, src, root.name, ["--chunk-size", chunk])
        build.update(times)
        chunks = sorted((home / "store" / "data" / vid).glob("chunk-*.zip"))
        if not chunks:
            raise BenchError(f"no chunks under {home / 'store' / 'data' / vid}")
        native.mkdir()
        t0 = time.perf_counter()
        for c in chunks:
            run(["unzip", "-q", c, "-d", native])
        build["unzip_s"] = round(time.perf_counter() - t0, 2)
        sums = {rel: sha256_file(native / rel) for rel in walk_files(native)}
        want = {rel: sha256_file(src / rel) for rel in walk_files(src)}
        if sums != want:
            raise BenchError("the unzipped chunks differ from the generated tree")
        shutil.rmtree(src)
        meta = {"version": vid, "chunks": [c.name for c in chunks], "sha256": sums, "build": build}
        meta_path.write_text(json.dumps(meta, indent=1))
        settle()
    meta = json.loads(meta_path.read_text())
    vid = meta["version"]
    home = root / "home"
    small = [small_path(i) for i in range(n_small)]
    native = root / "native"
    return Workload(
        root=root,
        version=vid,
        home=home,
        native=native,
        chunks=[home / "store" / "data" / vid / c for c in meta["chunks"]],
        small=small,
        small_bytes=sum((native / p).stat().st_size for p in small),
        big="big/big.bin",
        big_bytes=(native / "big" / "big.bin").stat().st_size,
        sha256=meta["sha256"],
        build=meta["build"],
    )


def m1_content(i: int) -> bytes:
    return b"%07d\n" % i


def m1_path(i: int) -> str:
    return f"d{i // 1000:03d}/f{i:07d}.txt"


def prepare_m1(exe: str, n: int) -> tuple[Path, str, dict[str, Any]]:
    """The synthetic n-file version (tiny files, 1,000 per folder): (home, id, build timings)."""
    root = DATA / f"m1-{n}"
    meta_path = root / "meta.json"
    if not meta_path.exists():
        log(f"building the {n:,}-file version {root.name} (cached for later runs)")
        rmtree(root)
        root.mkdir(parents=True)
        shm = Path("/dev/shm")  # tmpfs: creating and deleting the source files costs no disk I/O
        src = (shm if shm.is_dir() else WORK) / f"dsmount-bench-m1-{os.getpid()}"
        rmtree(src)
        try:
            t0 = time.perf_counter()
            for d in range((n + 999) // 1000):
                folder = src / f"d{d:03d}"
                folder.mkdir(parents=True)
                for i in range(d * 1000, min(n, d * 1000 + 1000)):
                    fd = os.open(folder / f"f{i:07d}.txt", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                    os.write(fd, m1_content(i))
                    os.close(fd)
            gen_s = time.perf_counter() - t0
            vid, times = dsmount_build(exe, root / "home", src, "m1")
        finally:
            rmtree(src)
        meta = {"version": vid, "files": n, "gen_s": round(gen_s, 2), **times}
        meta_path.write_text(json.dumps(meta, indent=1))
        settle()
    meta = json.loads(meta_path.read_text())
    if meta["files"] != n:
        raise BenchError(f"{meta_path}: built for {meta['files']} files, not {n}")
    return root / "home", meta["version"], meta


def walk_files(root: Path) -> list[str]:
    out: list[str] = []
    for dirpath, _dirs, files in os.walk(root):
        out += [os.path.relpath(os.path.join(dirpath, f), root) for f in files]
    return sorted(out)


def rmtree(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


# --------------------------------------------------------------------------------------------------
# Machine state


def drop_caches() -> None:
    """Write back, then drop the page cache, dentries and inodes (root only)."""
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


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


def mounted(path: Path) -> bool:
    target = os.fspath(path).replace(" ", "\\040")
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == target for line in f)


def vm_rss(pid: int) -> int:
    """VmRSS of pid plus its descendants, in bytes."""
    total = 0
    for p in [pid, *descendants(pid)]:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * KIB
    return total


def descendants(pid: int) -> list[int]:
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{p}/task").iterdir():
                kids = (task / "children").read_text().split()
                out += map(int, kids)
                todo += map(int, kids)
    return out


def other_bench_running() -> list[str]:
    me = os.getpid()
    out = subprocess.run(
        ["pgrep", "-af", "bench/run.py|remote_bench.py"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return [line for line in out.splitlines() if line.split()[0] not in (str(me), str(os.getppid()))]


# --------------------------------------------------------------------------------------------------
# The three ways to read the version


class Tool:
    """A way to see the version's tree: mount()/unmount() and the root to read under."""

    name = ""

    def __init__(self, wl: Workload, work: Path):
        self.wl = wl
        self.work = work
        self.mnt = work / f"mnt-{self.name}"

    @property
    def root(self) -> Path:
        return self.mnt

    def reset_index(self) -> None:
        """Forget what a first mount builds (index files)."""

    def mount(self) -> None:
        raise NotImplementedError

    def unmount(self) -> None:
        raise NotImplementedError

    def pid(self) -> int | None:
        return None

    def extra(self) -> dict[str, Any]:
        return {}


class Native(Tool):
    name = "native"

    @property
    def root(self) -> Path:
        return self.wl.native

    def mount(self) -> None:
        pass

    def unmount(self) -> None:
        pass


class Ratarmount(Tool):
    name = "ratarmount"

    def __init__(self, wl: Workload, work: Path):
        super().__init__(wl, work)
        self.index = work / "ratarmount-index"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = work / "ratarmount.log"

    def reset_index(self) -> None:
        rmtree(self.index)

    def mount(self) -> None:
        self.index.mkdir(parents=True, exist_ok=True)
        self.mnt.mkdir(parents=True, exist_ok=True)
        cmd = [
            str(RAT_VENV / "bin" / "ratarmount"),
            "-f",  # foreground: this process is the daemon, so its pid and RSS are ours to read
            "--index-folders",
            str(self.index),
            *map(str, self.wl.chunks),
            str(self.mnt),
        ]
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf)

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace")[-1500:]
            raise BenchError(f"ratarmount exited {self.proc.returncode}:\n{tail}")

    def unmount(self) -> None:
        proc, self.proc = self.proc, None
        try:
            if mounted(self.mnt):
                subprocess.run(["fusermount3", "-u", str(self.mnt)], capture_output=True, check=False)
            if proc is not None:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
        finally:
            if mounted(self.mnt):  # last resort
                subprocess.run(["fusermount3", "-u", "-z", str(self.mnt)], capture_output=True, check=False)

    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None


class Dsmount(Tool):
    name = "dsmount"

    def __init__(self, wl: Workload, work: Path, exe: str, home: Path | None = None, version: str = ""):
        super().__init__(wl, work)
        self.exe = exe
        self.home = home or wl.home
        self.version = version or wl.version
        self.env = dsmount_env(self.home)
        self._pid: int | None = None

    def reset_index(self) -> None:
        trees = self.home / "trees"
        if trees.is_dir():
            for p in trees.iterdir():
                rmtree(p)

    def mount(self) -> None:
        self.mnt.mkdir(parents=True, exist_ok=True)
        out = run([self.exe, "mount", self.version, str(self.mnt), "--json"], self.env, timeout=1800)
        self._pid = int(json.loads(out)["pid"])

    def status(self) -> dict[str, Any]:
        return dict(json.loads(run([self.exe, "status", str(self.mnt), "--json"], self.env, timeout=60)))

    def stats(self) -> dict[str, Any]:
        return dict(json.loads(run([self.exe, "stats", str(self.mnt), "--json"], self.env, timeout=60)))

    def unmount(self) -> None:
        pid, self._pid = self._pid, None
        try:
            if mounted(self.mnt):
                run([self.exe, "unmount", str(self.mnt)], self.env, timeout=60)
        except (BenchError, subprocess.TimeoutExpired) as exc:
            log(f"    dsmount unmount failed: {exc}")
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
                time.sleep(2)
        finally:
            if mounted(self.mnt):
                subprocess.run(["fusermount3", "-u", "-z", str(self.mnt)], capture_output=True, check=False)

    def pid(self) -> int | None:
        return self._pid

    def extra(self) -> dict[str, Any]:
        s = self.stats()
        return {"stats_reads": s.get("reads"), "status_rss_bytes": s.get("rss_bytes")}


# --------------------------------------------------------------------------------------------------
# Operations


def wait_stat(path: Path, limit_s: float, alive: Callable[[], None]) -> None:
    deadline = time.perf_counter() + limit_s
    while True:
        try:
            os.stat(path)
            return
        except OSError:
            if time.perf_counter() > deadline:
                raise BenchError(f"no stat of {path} within {limit_s} s") from None
            alive()
            time.sleep(0.002)


def mount_ready(tool: Tool, limit_s: float = 1800) -> float:
    """Seconds from the mount command's start until a stat of a file inside succeeds."""
    t0 = time.perf_counter()
    tool.mount()
    alive = tool.check_alive if isinstance(tool, Ratarmount) else (lambda: None)
    wait_stat(tool.root / tool.wl.ready_file, limit_s, alive)
    return time.perf_counter() - t0


def first_byte(path: Path) -> float:
    t0 = time.perf_counter()
    fd = os.open(path, os.O_RDONLY)
    try:
        if len(os.read(fd, 1)) != 1:
            raise BenchError(f"no byte from {path}")
    finally:
        os.close(fd)
    return time.perf_counter() - t0


def find_all(root: Path) -> tuple[float, int]:
    """``find ROOT -printf '%s\\n'`` (an lstat of every entry): (seconds, entries)."""
    t0 = time.perf_counter()
    proc = subprocess.run(["find", str(root), "-printf", "%s\\n"], capture_output=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise BenchError(f"find {root}: exit {proc.returncode}: {proc.stderr[-500:]!r}")
    return wall, proc.stdout.count(b"\n")


def read_seq(path: Path) -> tuple[float, int]:
    buf = bytearray(READ_BLOCK)
    view = memoryview(buf)
    total = 0
    t0 = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(view):
            total += n
    return time.perf_counter() - t0, total


def read_files(root: Path, paths: Sequence[str], readers: int) -> tuple[float, int]:
    """Read every file (whole) with `readers` forked processes, each a stripe of the list.

    The clock starts when all readers are forked and waiting, and stops when the last has exited.
    Returns (seconds, bytes read).
    """
    go_r, go_w = os.pipe()
    ready_r, ready_w = os.pipe()
    res_r, res_w = os.pipe()
    pids = []
    for k in range(readers):
        pid = os.fork()
        if pid == 0:  # reader
            code = 1
            try:
                os.close(go_w)
                os.write(ready_w, b"r")
                os.read(go_r, 1)
                total = 0
                for rel in paths[k::readers]:
                    fd = os.open(os.path.join(root, rel), os.O_RDONLY)
                    try:
                        while chunk := os.read(fd, 256 * KIB):
                            total += len(chunk)
                    finally:
                        os.close(fd)
                os.write(res_w, b"%d\n" % total)
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    for _ in range(readers):
        os.read(ready_r, 1)
    t0 = time.perf_counter()
    os.write(go_w, b"g" * readers)
    failed = 0
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        failed += os.waitstatus_to_exitcode(status) != 0
    wall = time.perf_counter() - t0
    os.close(res_w)
    with os.fdopen(res_r, "rb") as f:
        total = sum(int(line) for line in f.read().split())
    for fd in (go_r, go_w, ready_r, ready_w):
        os.close(fd)
    if failed:
        raise BenchError(f"{failed} of {readers} readers failed under {root}")
    return wall, total


def verify_sample(tool: Tool, rng: random.Random, n: int = 200) -> str:
    wl = tool.wl
    picks = [*rng.sample(wl.small, min(n, len(wl.small))), wl.big]
    bad = [p for p in picks if sha256_file(tool.root / p) != wl.sha256[p]]
    return "ok" if not bad else f"FAIL: {len(bad)} of {len(picks)} differ, e.g. {bad[:3]}"


# --------------------------------------------------------------------------------------------------
# One run of one tool


@dataclass
class ToolRun:
    tool: str
    run: int
    ok: bool = True
    error: str = ""
    values: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


@contextlib.contextmanager
def mounted_tool(tool: Tool, tr: ToolRun, key: str | None, *, cold: bool = True) -> Iterator[None]:
    """Drop caches (cold), mount (timing it as `key`), yield, record RSS, unmount in any case."""
    if cold:
        drop_caches()
    try:
        t = mount_ready(tool)
        if key and not isinstance(tool, Native):  # a folder has nothing to mount
            tr.values[key] = t
        pid = tool.pid()
        if pid is not None:
            tr.info.setdefault("rss_after_mount", {})[key or "mount"] = vm_rss(pid)
        yield
        pid = tool.pid()
        if pid is not None:
            rss = vm_rss(pid)
            tr.info.setdefault("rss_by_phase", {})[key or "mount"] = rss
            tr.values["rss_mb"] = max(tr.values.get("rss_mb", 0.0), rss / 1e6)
            with contextlib.suppress(BenchError, ValueError):
                tr.info.setdefault("extra", {})[key or "mount"] = tool.extra()
    finally:
        tool.unmount()


def run_tool(tool: Tool, run_no: int, small_order: list[str], verbose: bool) -> ToolRun:
    tr = ToolRun(tool.name, run_no)
    wl = tool.wl
    v = tr.values
    log(f"  run {run_no}: {tool.name}")
    try:
        # Phase 1: first mount (no index), time to first byte, find cold and warm.
        tool.reset_index()
        with mounted_tool(tool, tr, "ready_first_s"):
            v["ttfb_first_s"] = first_byte(tool.root / wl.ttfb_file)
            v["find_cold_s"], n = find_all(tool.root)
            v["find_warm_s"], n2 = find_all(tool.root)
            tr.info["find_entries"] = [n, n2]
        # Phase 2: re-mount, time to first byte, the large file cold and warm.
        with mounted_tool(tool, tr, "ready_s"):
            v["ttfb_s"] = first_byte(tool.root / wl.ttfb_file)
            t, nbytes = read_seq(tool.root / wl.big)
            if nbytes != wl.big_bytes:
                raise BenchError(f"{wl.big}: read {nbytes} bytes, expected {wl.big_bytes}")
            v["big_cold_mibs"] = nbytes / MIB / t
            t, nbytes = read_seq(tool.root / wl.big)
            v["big_warm_mibs"] = nbytes / MIB / t
        # Phase 3: small files, 1 and 8 readers, each cold on a fresh mount, then warm.
        for readers in READERS:
            with mounted_tool(tool, tr, None):
                for temp in ("cold", "warm"):
                    t, nbytes = read_files(tool.root, small_order, readers)
                    if nbytes != wl.small_bytes:
                        raise BenchError(f"small files: read {nbytes} bytes, expected {wl.small_bytes}")
                    v[f"small{readers}_{temp}_fps"] = len(small_order) / t
                if readers == READERS[-1]:
                    tr.info["verify"] = verify_sample(tool, random.Random(run_no))
                    if tr.info["verify"] != "ok":
                        raise BenchError(f"verify: {tr.info['verify']}")
        # Phase 4: re-mount with a warm page cache (right after the last unmount, nothing dropped).
        with mounted_tool(tool, tr, "ready_warm_s", cold=False):
            pass
    except (BenchError, OSError, subprocess.TimeoutExpired, ValueError) as exc:
        tr.ok = False
        tr.error = str(exc)
        log(f"    FAILED: {exc}")
    if verbose or tr.ok:
        log("    " + "  ".join(f"{k}={val:.3g}" for k, val in v.items()))
    return tr


def run_m1(exe: str, home: Path, version: str, n: int, work: Path, run_no: int) -> ToolRun:
    """First mount (index build), find over all files + RSS, sample check, re-mount."""
    tr = ToolRun("dsmount-m1", run_no)
    v = tr.values
    log(f"  run {run_no}: dsmount, {n:,}-file version")
    dummy = Workload(
        root=home.parent, version=version, home=home, native=home, chunks=[],
        small=[m1_path(0), m1_path(n - 1)], small_bytes=0, big="", big_bytes=0, sha256={}, build={},
    )  # fmt: skip
    tool = Dsmount(dummy, work, exe, home, version)
    tool.mnt = work / "mnt-m1"
    try:
        tool.reset_index()
        with mounted_tool(tool, tr, "m1_ready_first_s"):
            v["m1_rss_mounted_mb"] = vm_rss(tool.pid() or 0) / 1e6
            v["m1_find_s"], entries = find_all(tool.root)
            tr.info["find_entries"] = entries
            rss = vm_rss(tool.pid() or 0)
            v["m1_rss_after_find_mb"] = rss / 1e6
            v["m1_bytes_per_file"] = rss / n
            rng = random.Random(run_no)
            picks = rng.sample(range(n), min(M1_SAMPLE, n))
            t0 = time.perf_counter()
            bad = [i for i in picks if (tool.root / m1_path(i)).read_bytes() != m1_content(i)]
            v["m1_sample_fps"] = len(picks) / (time.perf_counter() - t0)
            tr.info["verify"] = "ok" if not bad else f"FAIL: {len(bad)} of {len(picks)} differ"
            v["m1_rss_end_mb"] = vm_rss(tool.pid() or 0) / 1e6
            if bad:
                raise BenchError(str(tr.info["verify"]))
            if entries < n:
                raise BenchError(f"find saw {entries} entries, expected at least {n}")
        with mounted_tool(tool, tr, "m1_ready_s"):
            v["m1_rss_remounted_mb"] = vm_rss(tool.pid() or 0) / 1e6
        with mounted_tool(tool, tr, "m1_ready_warm_s", cold=False):
            pass
    except (BenchError, OSError, subprocess.TimeoutExpired, ValueError) as exc:
        tr.ok = False
        tr.error = str(exc)
        log(f"    FAILED: {exc}")
    v.pop("rss_mb", None)
    log("    " + "  ".join(f"{k}={val:.4g}" for k, val in v.items()))
    return tr


# --------------------------------------------------------------------------------------------------
# Summary


@dataclass
class Stat:
    median: float
    lo: float
    hi: float
    n: int


def stat_of(values: Sequence[float]) -> Stat | None:
    if not values:
        return None
    return Stat(statistics.median(values), min(values), max(values), len(values))


def values(runs: list[ToolRun], tool: str, key: str) -> list[float]:
    return [r.values[key] for r in runs if r.tool == tool and r.ok and key in r.values]


def ratios(runs: list[ToolRun], key: str, num: str, den: str) -> list[float]:
    """Per-run ratio num/den of the same run (same-run ratios, then their median)."""
    out = []
    for r in {r.run for r in runs}:
        a = [x.values.get(key) for x in runs if x.run == r and x.tool == num and x.ok]
        b = [x.values.get(key) for x in runs if x.run == r and x.tool == den and x.ok]
        if a and b and a[0] is not None and b[0]:
            out.append(a[0] / b[0])
    return out


def fmt(s: Stat | None, digits: int = 2, scale: float = 1.0) -> str:
    if s is None:
        return "–"

    def one(x: float) -> str:
        x *= scale
        if abs(x) >= 1000:
            return f"{x:,.0f}"
        return f"{x:.{digits}f}"

    if s.n == 1 or s.lo == s.hi:
        return one(s.median)
    return f"{one(s.median)} [{one(s.lo)}–{one(s.hi)}]"


# (key, label, unit, scale, higher is better)
ROWS: list[tuple[str, str, str, float, bool]] = [
    ("ready_first_s", "mount ready, first mount (no index)", "ms", 1000, False),
    ("ready_s", "mount ready, re-mount", "ms", 1000, False),
    ("ready_warm_s", "mount ready, re-mount, page cache warm", "ms", 1000, False),
    ("ttfb_first_s", "time to first byte, first mount (cold)", "ms", 1000, False),
    ("ttfb_s", "time to first byte, re-mount (cold)", "ms", 1000, False),
    ("find_cold_s", "find -printf %s, cold", "s", 1, False),
    ("find_warm_s", "find -printf %s, warm", "s", 1, False),
    ("big_cold_mibs", "large file sequential read, cold", "MiB/s", 1, True),
    ("big_warm_mibs", "large file sequential read, warm", "MiB/s", 1, True),
    ("small1_cold_fps", "small files, 1 reader, cold", "files/s", 1, True),
    ("small1_warm_fps", "small files, 1 reader, warm", "files/s", 1, True),
    ("small8_cold_fps", "small files, 8 readers, cold", "files/s", 1, True),
    ("small8_warm_fps", "small files, 8 readers, warm", "files/s", 1, True),
    ("rss_mb", "daemon RSS after the runs (max over mounts)", "MB", 1, False),
]

M1_ROWS: list[tuple[str, str, str, float]] = [
    ("m1_ready_first_s", "mount ready, first mount (builds the index)", "s", 1),
    ("m1_ready_s", "mount ready, re-mount", "s", 1),
    ("m1_ready_warm_s", "mount ready, re-mount, page cache warm", "s", 1),
    ("m1_rss_mounted_mb", "daemon RSS right after the first mount", "MB", 1),
    ("m1_find_s", "find -printf %s over all files (cold)", "s", 1),
    ("m1_rss_after_find_mb", "daemon RSS after find", "MB", 1),
    ("m1_bytes_per_file", "daemon RSS after find / files", "B/file", 1),
    (
        "m1_marginal_bytes_per_file",
        "(RSS after find − idle daemon of the small version) / files",
        "B/file",
        1,
    ),
    ("m1_rss_end_mb", f"daemon RSS after reading {M1_SAMPLE:,} sampled files", "MB", 1),
    ("m1_sample_fps", f"{M1_SAMPLE:,} sampled files read and checked (cold, random)", "files/s", 1),
    ("m1_rss_remounted_mb", "daemon RSS right after a re-mount", "MB", 1),
]


def verdicts(runs: list[ToolRun]) -> dict[str, str]:
    """Target checks on same-run ratios (median of the per-run ratios)."""
    out: dict[str, str] = {}

    def med(xs: list[float]) -> float | None:
        return statistics.median(xs) if xs else None

    warm = med(ratios(runs, "big_warm_mibs", "dsmount", "native"))
    if warm is not None:
        out["big_warm_mibs"] = (
            f"≥ {TARGET_WARM_BIG} × native: {'met' if warm >= TARGET_WARM_BIG else 'MISSED'}"
        )
    for key in ("small1_cold_fps", "small1_warm_fps", "small8_cold_fps", "small8_warm_fps"):
        rr = med(ratios(runs, key, "dsmount", "ratarmount"))
        rn = med(ratios(runs, key, "dsmount", "native"))
        parts: list[str] = []
        if rr is not None:
            parts.append(
                f"≥ {TARGET_SMALL_VS_RAT:.0f} × rat: {'met' if rr >= TARGET_SMALL_VS_RAT else 'MISSED'}"
            )
        if rn is not None:
            ok = rn >= TARGET_SMALL_VS_NATIVE
            parts.append(f"≥ {TARGET_SMALL_VS_NATIVE} × native: {'met' if ok else 'MISSED'}")
        if parts:
            out[key] = "; ".join(parts)
    for key in ("ready_first_s", "ready_s", "ready_warm_s"):
        s = stat_of(values(runs, "dsmount", key))
        if s is not None:
            out[key] = f"< {TARGET_READY_S:.0f} s: {'met' if s.hi < TARGET_READY_S else 'MISSED'}"
    for key in ("m1_ready_first_s", "m1_ready_s", "m1_ready_warm_s"):
        s = stat_of(values(runs, "dsmount-m1", key))
        if s is not None:
            out[key] = f"< {TARGET_READY_S:.0f} s: {'met' if s.hi < TARGET_READY_S else 'MISSED'}"
    s = stat_of(values(runs, "dsmount-m1", "m1_bytes_per_file"))
    if s is not None:
        out["m1_bytes_per_file"] = (
            f"< {TARGET_BYTES_PER_FILE:.0f}: {'met' if s.hi < TARGET_BYTES_PER_FILE else 'MISSED'}"
        )
    s = stat_of(values(runs, "dsmount-m1", "m1_marginal_bytes_per_file"))
    if s is not None:
        ok = s.hi < TARGET_BYTES_PER_FILE
        out["m1_marginal_bytes_per_file"] = f"< {TARGET_BYTES_PER_FILE:.0f}: {'met' if ok else 'MISSED'}"
    return out


def markdown(runs: list[ToolRun], meta: dict[str, Any]) -> str:
    tools = [t for t in TOOLS if any(r.tool == t for r in runs)]
    n_ok = {t: sum(1 for r in runs if r.tool == t and r.ok) for t in [*tools, "dsmount-m1"]}
    check = verdicts(runs)
    lines = [
        f"Run {meta['stamp']} on {meta['host']}; {meta['ratarmount_version']}; {meta['dsmount_version']}.",
        f"Workload: {meta['workload']}.",
        "Cells: median [min–max] over the runs ("
        + ", ".join(f"{t} {n_ok[t]}" for t in tools)
        + "); ratios: median [min–max] of the per-run ratios (same run).",
        "",
        "| Figure | unit | native | ratarmount | dsmount | dsmount/native | dsmount/ratarmount | Target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, label, unit, scale, _higher in ROWS:
        cells = [fmt(stat_of(values(runs, t, key)), 2 if unit != "MB" else 0, scale) for t in TOOLS]
        r_nat = fmt(stat_of(ratios(runs, key, "dsmount", "native")))
        r_rat = fmt(stat_of(ratios(runs, key, "dsmount", "ratarmount")))
        if key in ("ready_first_s", "ready_s", "ready_warm_s", "rss_mb"):
            r_nat = "–"
        lines.append(
            f"| {label} | {unit} | {' | '.join(cells)} | {r_nat} | {r_rat} | {check.get(key, '–')} |"
        )
    m1 = [r for r in runs if r.tool == "dsmount-m1"]
    if m1:
        lines += [
            "",
            f"Synthetic version of {meta['m1_files']:,} files ({n_ok['dsmount-m1']} runs; built once in "
            f"{meta['m1_build']}):",
            "",
            "| Figure | unit | dsmount | Target |",
            "|---|---|---|---|",
        ]
        for key, label, unit, scale in M1_ROWS:
            s = stat_of(values(runs, "dsmount-m1", key))
            digits = 0 if unit in ("MB", "B/file", "files/s") else 2
            lines.append(f"| {label} | {unit} | {fmt(s, digits, scale)} | {check.get(key, '–')} |")
    bad = [r for r in runs if not r.ok]
    if bad:
        lines += ["", "Failed: " + "; ".join(f"{r.tool} run {r.run}: {r.error.splitlines()[0]}" for r in bad)]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Entry


def version_of(cmd: list[str], env: dict[str, str] | None = None) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False, env=env)
    except OSError:
        return "not installed"
    return (out.stdout.strip() or out.stderr.strip() or f"exit {out.returncode}").splitlines()[0]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="small sizes and one run: a smoke test")
    p.add_argument("--small-files", type=int, default=None, help="small files (default 5000; quick 300)")
    p.add_argument("--big-mib", type=int, default=None, help="size of the large file (default 256; quick 16)")
    p.add_argument("--chunk-size", default=None, help="dsmount --chunk-size (default 64M: several chunks)")
    p.add_argument("--m1-files", type=int, default=None, help="files of the synthetic version (1,000,000)")
    p.add_argument("--no-m1", action="store_true", help="skip the synthetic version")
    p.add_argument("--tools", default=",".join(TOOLS), help="comma list of: native, ratarmount, dsmount")
    p.add_argument("--dsmount", default=str(DEFAULT_DSMOUNT), help="dsmount executable")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    quick = args.quick
    n_small = args.small_files or (300 if quick else 5000)
    big_mib = args.big_mib or (16 if quick else 256)
    chunk = args.chunk_size or ("4M" if quick else "64M")
    m1_files = args.m1_files or (20_000 if quick else 1_000_000)
    runs_n = 1 if quick and args.runs == 3 else args.runs
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    if bad := [t for t in tools if t not in TOOLS]:
        p.error(f"unknown tool(s) {bad}; choose from {TOOLS}")
    if os.geteuid() != 0:
        p.error("needs root: cold runs drop the page cache through /proc/sys/vm/drop_caches")
    if "ratarmount" in tools and not (RAT_VENV / "bin" / "ratarmount").exists():
        p.error(f"{RAT_VENV}/bin/ratarmount missing: run `bash bench/setup_ratarmount.sh` first")
    for exe in ("fusermount3", "unzip", "find", "/usr/bin/time"):
        if not shutil.which(exe):
            p.error(f"{exe} not found")

    # One benchmark at a time (shared with run.py): two runs on 2 cores would measure each other.
    WORK.mkdir(parents=True, exist_ok=True)
    lock = open(WORK / ".lock", "w")  # noqa: SIM115 (held until exit)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log("another benchmark holds bench/work/.lock; waiting for it to finish")
        fcntl.flock(lock, fcntl.LOCK_EX)
    while others := other_bench_running():
        log(f"waiting for another benchmark to finish: {others[0]}")
        time.sleep(30)

    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    work = WORK / f"mount-{stamp}"
    work.mkdir(parents=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    wl = prepare_workload(args.dsmount, n_small, big_mib, chunk)
    m1: tuple[Path, str, dict[str, Any]] | None = None
    if not args.no_m1:
        m1 = prepare_m1(args.dsmount, m1_files)
    meta: dict[str, Any] = {
        "stamp": stamp,
        "host": f"{platform.node()} {platform.system()} {platform.release()}, {os.cpu_count()} CPU",
        "python": platform.python_version(),
        "ratarmount_version": version_of([str(RAT_VENV / "bin" / "ratarmount"), "--version"]),
        "dsmount_version": version_of([args.dsmount, "--version"], dsmount_env(wl.home)),
        "dsmount_commit": version_of(["git", "-C", str(REPO), "log", "-1", "--format=%h %s"]),
        "args": vars(args),
        "workload": (
            f"{len(wl.small):,} small files ({wl.small_bytes / 1e6:,.1f} MB, 1–64 KiB, random bytes: "
            f"zip stores them) + {wl.big} of {wl.big_bytes / MIB:.0f} MiB in {len(wl.chunks)} chunk zips "
            f"(dsmount --chunk-size {chunk}); small files read in a fixed shuffled order"
        ),
        "workload_build": wl.build,
        "m1_files": m1_files,
        "m1_build": (
            f"{m1[2]['gen_s']:.0f} s to write the files to tmpfs, add {m1[2]['add_s']:.0f} s, close "
            f"{m1[2]['close_s']:.0f} s"
            if m1
            else ""
        ),
    }
    log(f"workload: {meta['workload']}")
    small_order = list(wl.small)
    random.Random(SEED).shuffle(small_order)
    results: list[ToolRun] = []
    try:
        for run_no in range(1, runs_n + 1):
            k = (run_no - 1) % len(tools)
            for name in tools[k:] + tools[:k]:  # rotate the order per run so drift hits all alike
                tool: Tool
                if name == "native":
                    tool = Native(wl, work)
                elif name == "ratarmount":
                    tool = Ratarmount(wl, work)
                else:
                    tool = Dsmount(wl, work, args.dsmount)
                results.append(run_tool(tool, run_no, small_order, args.verbose))
            if m1 is not None:
                results.append(run_m1(args.dsmount, m1[0], m1[1], m1_files, work, run_no))
    finally:
        for mnt in work.glob("mnt-*"):  # nothing of ours may stay mounted
            if mounted(mnt):
                log(f"still mounted, detaching: {mnt}")
                subprocess.run(["fusermount3", "-u", "-z", str(mnt)], capture_output=True, check=False)
    # Marginal bytes per file: RSS after find minus the idle daemon of the small version.
    idle = [r.info.get("rss_after_mount", {}).get("ready_s") for r in results if r.tool == "dsmount" and r.ok]
    idle_b = statistics.median([x for x in idle if x]) if any(idle) else None
    for r in results:
        if r.tool == "dsmount-m1" and "m1_rss_after_find_mb" in r.values and idle_b:
            r.values["m1_marginal_bytes_per_file"] = (
                r.values["m1_rss_after_find_mb"] * 1e6 - idle_b
            ) / m1_files
    meta["idle_daemon_rss_mb"] = idle_b / 1e6 if idle_b else None
    md = markdown(results, meta)
    payload = {"meta": meta, "runs": [vars(r) for r in results]}
    (RESULTS / f"mount-{stamp}.json").write_text(json.dumps(payload, indent=1, default=str))
    (RESULTS / f"mount-{stamp}.md").write_text(md + "\n")
    print(md)
    log(f"\nresults: {RESULTS / f'mount-{stamp}'}.md/.json")
    shutil.rmtree(work, ignore_errors=True)
    return 1 if any(not r.ok for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
