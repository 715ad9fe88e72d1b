"""Benchmark runner: dsmount side by side with DVC (and same-machine floors) in one run.

Every measured step is its own child process; the runner records its wall time and the child's
peak resident set size (``os.wait4`` rusage ``ru_maxrss``: the larger of the child and any
descendant it waited for). Each run of each tool starts from fresh folders under ``bench/work/``
and a freshly generated workload (``bench/gen.py``), which are deleted afterwards unless ``--keep``.

    bash bench/setup.sh                                  # DVC into bench/.venv-dvc (once)
    .venv/bin/python bench/run.py --workload all --runs 3

Results: ``bench/results/<stamp>.json`` (every step of every run), ``bench/results/<stamp>.md``
(the same Markdown tables that are printed to stdout) and the step logs in ``bench/results/<stamp>/``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
GEN = BENCH / "gen.py"
WORK = BENCH / "work"
RESULTS = BENCH / "results"
DVC_VENV = BENCH / ".venv-dvc"
DEFAULT_DSMOUNT = REPO / ".venv" / "bin" / "dsmount"
GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else ""

WORKLOADS = ("w1", "w2")
TOOLS = ("dvc", "dsmount")
PROJECT = "bench"
MB = 1_000_000

# dsmount command lines, one per measured step (clearml-data style). Placeholders: {project} {name}
# {data} (the workload folder; its contents become the dataset root) {v1} {v2} (version ids) {dest}.
# `create` and `sync` must print a JSON object with "id" when given --json.
DSMOUNT_COMMANDS: dict[str, list[str]] = {
    "create v1": ["create", "--project", "{project}", "--name", "{name}", "--json"],
    "add v1": ["add", "--id", "{v1}", "--files", "{data}"],
    "close v1": ["close", "--id", "{v1}"],
    "sync v2": [
        "sync",
        "--project",
        "{project}",
        "--name",
        "{name}",
        "--parents",
        "{v1}",
        "--folder",
        "{data}",
        "--json",
    ],
    "get --copy v2": ["get", "--id", "{v2}", "--copy", "{dest}"],
    "get --link v2": ["get", "--id", "{v2}", "--link", "{dest}"],
}
# Local state removed before each cold get (catalogues are kept).
DSMOUNT_COLD_DIRS = ("cache", "copies", "trees")

# Headline figures: (key in RunResult.figures, label, unit). Times sum the steps listed in run_*().
FIGURES: list[tuple[str, str, str]] = [
    ("create_v1", "create+upload+close v1", "s"),
    ("create_v2", "create+upload+close v2", "s"),
    ("store_v1", "store size after v1", "B"),
    ("store_growth_v2", "store growth for v2", "B"),
    ("get_copy", "cold get --copy v2", "s"),
    ("get_link", "cold get --link v2", "s"),
    ("peak_rss", "peak RSS (any step)", "MB"),
]
TIME_TARGET_RATIO = 0.5  # dsmount at most half of DVC's time for create and get
RATIO_TARGETS = {"create_v1", "create_v2", "get_copy", "get_link"}
RSS_TARGET_MB = {"w2": 150.0}  # dsmount peak memory on W2
FLOOR_STEPS = ("cp -r", "zip -qr0", "sha256 (hashlib)")


# --------------------------------------------------------------------------------------------------
# Child processes


class StepFailed(RuntimeError):
    pass


@dataclass
class Step:
    name: str
    cmd: list[str]
    wall_s: float
    peak_rss_mb: float
    rc: int
    timed: bool


@dataclass
class RunResult:
    tool: str
    workload: str
    run: int
    ok: bool = True
    error: str = ""
    figures: dict[str, float] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)
    checks: dict[str, str] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)

    def step(self, name: str) -> Step:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)


class Runner:
    """Runs child processes, timing them and logging their output to ``logs``."""

    def __init__(self, result: RunResult, logs: Path, env: dict[str, str], args: argparse.Namespace):
        self.result = result
        self.logs = logs
        self.env = env
        self.timeout: float = args.timeout
        self.verbose: bool = args.verbose
        self.verify: bool = not args.no_verify
        self._n = 0

    def run(self, name: str, cmd: Sequence[str | os.PathLike[str]], cwd: Path, *, timed: bool = True) -> str:
        """Run ``cmd``; record a Step; return its stdout. Raises StepFailed on a non-zero exit."""
        argv = [os.fspath(c) for c in cmd]
        self._n += 1
        stem = self.logs / f"{self._n:02d}-{_slug(name)}"
        out_path, err_path = stem.with_suffix(".out"), stem.with_suffix(".err")
        rss_path = stem.with_suffix(".rss")
        # A child's ru_maxrss starts at the RSS of the process it was forked from (Linux keeps the
        # pre-exec high-water mark), so measure through GNU time, whose own footprint is ~1 MB.
        spawn = [GNU_TIME, "-f", "%M", "-o", str(rss_path), *argv] if GNU_TIME else argv
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            t0 = time.perf_counter()
            proc = subprocess.Popen(
                spawn, cwd=cwd, env=self.env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                start_new_session=True,
            )  # fmt: skip
            timer = threading.Timer(self.timeout, _kill_group, (proc.pid,))
            timer.start()
            try:
                _, status, usage = os.wait4(proc.pid, 0)
            finally:
                timer.cancel()
            wall = time.perf_counter() - t0
        rc = os.waitstatus_to_exitcode(status)
        proc.returncode = rc  # already reaped by wait4
        rss_kib = usage.ru_maxrss
        if GNU_TIME:
            with contextlib.suppress(OSError, ValueError, IndexError):
                rss_kib = int(rss_path.read_text().split()[-1])
        step = Step(name, argv, wall, rss_kib * 1024 / MB, rc, timed)
        self.result.steps.append(step)
        if self.verbose or timed:
            mark = "" if rc == 0 else f"  rc={rc}"
            print(f"    {name:<28} {wall:8.2f} s {step.peak_rss_mb:7.0f} MB{mark}", file=sys.stderr)
        if rc != 0:
            tail = (
                err_path.read_text(errors="replace")[-1500:] or out_path.read_text(errors="replace")[-1500:]
            )
            raise StepFailed(f"{name}: exit {rc} ({' '.join(argv)})\n{tail}")
        return out_path.read_text(errors="replace")


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-")


# --------------------------------------------------------------------------------------------------
# Trees


def iter_files(root: Path) -> Iterator[tuple[str, str]]:
    """(relative path, absolute path) of every file under root; symlinks to files count as files."""
    stack = [root]
    while stack:
        top = stack.pop()
        with os.scandir(top) as it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    stack.append(Path(e.path))
                elif e.is_file(follow_symlinks=True):
                    yield os.path.relpath(e.path, root), e.path


def tree_bytes(root: Path) -> tuple[int, int]:
    """(apparent bytes, file count) of regular files under root, like ``du -sb`` without folders."""
    total = count = 0
    if not root.exists():
        return 0, 0
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            st = os.lstat(os.path.join(dirpath, f))
            total += st.st_size
            count += 1
    return total, count


def sha256_file(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def manifest(root: Path) -> dict[str, str]:
    return {rel: sha256_file(p) for rel, p in iter_files(root)}


def compare(expected: dict[str, str], root: Path) -> str:
    """'ok' if root holds exactly the expected files with the expected contents."""
    if not root.is_dir():
        return f"FAIL: {root} missing"
    got = manifest(root)
    missing = expected.keys() - got.keys()
    extra = got.keys() - expected.keys()
    differ = [k for k in expected.keys() & got.keys() if expected[k] != got[k]]
    if not (missing or extra or differ):
        return "ok"
    sample = sorted(missing)[:2] + sorted(extra)[:2] + sorted(differ)[:2]
    return f"FAIL: {len(missing)} missing, {len(extra)} extra, {len(differ)} differ, e.g. {sample}"


def trash(path: Path, run_dir: Path) -> None:
    """Move path out of the way inside run_dir; it is deleted with run_dir after the run.

    Deleting during a run would skew later steps: the disk is mounted with online ``discard`` and
    freeing a few GB makes writes crawl for tens of seconds while the discards run.
    """
    if path.exists() or path.is_symlink():
        bin_ = run_dir / ".trash"
        bin_.mkdir(exist_ok=True)
        path.rename(bin_ / f"{len(list(bin_.iterdir())):03d}-{path.name}")


def _discard_stat(path: Path) -> Path | None:
    dev = os.stat(path).st_dev
    stat = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}/stat")
    return stat if stat.exists() and len(stat.read_text().split()) >= 15 else None


def settle(path: Path, quiet_s: float = 2.0, limit_s: float = 300.0) -> float:
    """sync, then wait until the block device has had no discard/in-flight activity for quiet_s.

    Returns the seconds waited. Without a readable /sys stat file it only syncs.
    """
    t0 = time.monotonic()
    os.sync()
    stat = _discard_stat(path)
    if stat is None:
        return time.monotonic() - t0

    def sample() -> tuple[int, int]:
        f = stat.read_text().split()
        return int(f[13]), int(f[8])  # discarded sectors, I/Os in flight

    last, calm_since = sample()[0], time.monotonic()
    while time.monotonic() - t0 < limit_s:
        time.sleep(0.25)
        sectors, in_flight = sample()
        if sectors - last > 4096 or in_flight:  # more than 2 MB discarded since the last look
            calm_since = time.monotonic()
        last = sectors
        if time.monotonic() - calm_since >= quiet_s:
            break
    return time.monotonic() - t0


def rmtree(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        for dirpath, dirs, _files in os.walk(path):  # DVC's cache is read-only; make it deletable
            for d in dirs:
                os.chmod(os.path.join(dirpath, d), 0o755)
        shutil.rmtree(path)


# --------------------------------------------------------------------------------------------------
# Tools


@dataclass
class Context:
    args: argparse.Namespace
    logs: Path
    base_env: dict[str, str]


def generate(r: Runner, workload: str, data: Path, mode: str) -> None:
    """Write or modify the tree (untimed), then let the disk settle before the timed steps."""
    r.run(f"gen {mode}", [sys.executable, GEN, workload, data, mode], data.parent, timed=False)
    waited = settle(data.parent)
    r.result.figures["settle_s"] = r.result.figures.get("settle_s", 0.0) + waited
    if r.verbose:
        print(f"    {'settle (sync + discards)':<28} {waited:8.2f} s", file=sys.stderr)


def run_floors(r: Runner, workload: str, run_dir: Path) -> None:
    data = run_dir / "data"
    generate(r, workload, data, "create")
    r.run("cp -r", ["cp", "-r", "data", "copy"], run_dir)
    r.run("zip -qr0", ["zip", "-qr0", "../data.zip", "."], data)
    r.run("sha256 (hashlib)", [sys.executable, __file__, "_sha256", data], run_dir)
    size, count = tree_bytes(data)
    r.result.figures.update(data_bytes=size, data_files=count)


def dvc_env(base: dict[str, str], run_dir: Path) -> dict[str, str]:
    env = dict(base)
    site, glob, system = run_dir / "dvc-site-cache", run_dir / "dvc-global", run_dir / "dvc-system"
    for d in (site, glob, system):
        d.mkdir(parents=True, exist_ok=True)
    (glob / "config").write_text("[core]\n    analytics = false\n    check_update = false\n")
    env.update(
        DVC_SITE_CACHE_DIR=str(site),  # hash state DB and index: fresh per run
        DVC_GLOBAL_CONFIG_DIR=str(glob),
        DVC_SYSTEM_CONFIG_DIR=str(system),
        DVC_NO_ANALYTICS="1",
        PATH=f"{DVC_VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}",
    )
    return env


def run_dvc(r: Runner, workload: str, run_dir: Path) -> None:
    dvc = str(DVC_VENV / "bin" / "dvc")
    ws, remote = run_dir / "ws", run_dir / "remote"
    ws.mkdir()
    data = ws / "data"
    generate(r, workload, data, "create")
    for name, cmd in [
        ("git init", ["git", "init", "-q"]),
        ("dvc init", [dvc, "init", "-q"]),
        ("dvc remote add", [dvc, "remote", "add", "-d", "local", "../remote"]),
        ("git add init", ["git", "add", ".dvc", ".dvcignore"]),
        ("git commit init", ["git", "commit", "-qm", "init"]),
    ]:
        r.run(name, cmd, ws, timed=False)
    r.run("dvc add v1", [dvc, "add", "data"], ws)
    r.run("dvc push v1", [dvc, "push"], ws)
    r.run("git add v1", ["git", "add", "data.dvc", ".gitignore"], ws, timed=False)
    r.run("git commit v1", ["git", "commit", "-qm", "v1"], ws, timed=False)
    before, objs_before = tree_bytes(remote)
    generate(r, workload, data, "modify")
    r.run("dvc add v2", [dvc, "add", "data"], ws)
    r.run("dvc push v2", [dvc, "push"], ws)
    r.run("git add v2", ["git", "add", "data.dvc"], ws, timed=False)
    r.run("git commit v2", ["git", "commit", "-qm", "v2"], ws, timed=False)
    after, objs_after = tree_bytes(remote)
    f = r.result.figures
    f.update(
        store_v1=before, store_growth_v2=after - before, store_growth_v2_objects=objs_after - objs_before
    )
    f["create_v1"] = _sum(r, "dvc add v1", "dvc push v1")
    f["create_v2"] = _sum(r, "dvc add v2", "dvc push v2")
    expected = manifest(data) if r.verify else {}

    clone = run_dir / "clone-copy"  # fresh clone: empty .dvc/cache, default cache.type (copy on ext4)
    r.run("git clone (copy)", ["git", "clone", "-q", ws, clone], run_dir, timed=False)
    r.run("dvc pull v2 copy", [dvc, "pull"], clone)
    f["get_copy"] = _sum(r, "dvc pull v2 copy")
    if expected:
        r.result.checks["get_copy"] = compare(expected, clone / "data")
    trash(clone, run_dir)

    clone = run_dir / "clone-link"
    r.run("git clone (link)", ["git", "clone", "-q", ws, clone], run_dir, timed=False)
    r.run("dvc config hardlink", [dvc, "config", "cache.type", "hardlink"], clone, timed=False)
    r.run("dvc pull v2 hardlink", [dvc, "pull"], clone)
    f["get_link"] = _sum(r, "dvc pull v2 hardlink")
    if expected:
        r.result.checks["get_link"] = compare(expected, clone / "data")


def dsmount_env(base: dict[str, str], home: Path) -> dict[str, str]:
    env = {k: v for k, v in base.items() if not k.startswith("DSMOUNT_")}
    env.update(DSMOUNT_HOME=str(home), DSMOUNT_NO_PROGRESS="1")
    return env


def parse_id(stdout: str) -> str:
    """The "id" of the JSON object printed by --json (whole output, or the last JSON line)."""
    candidates = [stdout.strip(), *reversed(stdout.strip().splitlines())]
    for text in candidates:
        try:
            obj = json.loads(text)
        except ValueError:
            continue
        if isinstance(obj, dict) and isinstance(ident := obj.get("id"), str):
            return ident
    raise StepFailed(f"no JSON object with an 'id' in output: {stdout[-500:]!r}")


def run_dsmount(r: Runner, workload: str, run_dir: Path, exe: str) -> None:
    home = run_dir / "dsmount-home"
    ws = run_dir / "ws"
    ws.mkdir()
    data = ws / "data"
    generate(r, workload, data, "create")
    values = {"project": PROJECT, "name": workload, "data": str(data)}

    def ds(step: str, **extra: str) -> str:
        argv = [exe] + [a.format(**values, **extra) for a in DSMOUNT_COMMANDS[step]]
        return r.run(step, argv, ws)

    values["v1"] = r.result.ids["v1"] = parse_id(ds("create v1"))
    ds("add v1")
    ds("close v1")
    store = home / "store"
    before, objs_before = tree_bytes(store)
    generate(r, workload, data, "modify")
    values["v2"] = r.result.ids["v2"] = parse_id(ds("sync v2"))
    after, objs_after = tree_bytes(store)
    f = r.result.figures
    f.update(
        store_v1=before, store_growth_v2=after - before, store_growth_v2_objects=objs_after - objs_before
    )
    f["create_v1"] = _sum(r, "create v1", "add v1", "close v1")
    f["create_v2"] = _sum(r, "sync v2")
    expected = manifest(data) if r.verify else {}

    for key, step in (("get_copy", "get --copy v2"), ("get_link", "get --link v2")):
        for d in DSMOUNT_COLD_DIRS:
            trash(home / d, run_dir)
        dest = run_dir / key.replace("_", "-")
        ds(step, dest=str(dest))
        f[key] = _sum(r, step)
        if expected:
            r.result.checks[key] = compare(expected, dest)
        if key == "get_copy":
            trash(dest, run_dir)


def _sum(r: Runner, *steps: str) -> float:
    return sum(r.result.step(s).wall_s for s in steps)


def run_one(ctx: Context, tool: str, workload: str, run: int, stamp_dir: Path) -> RunResult:
    result = RunResult(tool, workload, run)
    run_dir = stamp_dir / f"{workload}-{tool}-r{run}"
    logs = ctx.logs / run_dir.name
    rmtree(run_dir)
    run_dir.mkdir(parents=True)
    logs.mkdir(parents=True, exist_ok=True)
    if tool == "dvc":
        env = dvc_env(ctx.base_env, run_dir)
    elif tool == "dsmount":
        env = dsmount_env(ctx.base_env, run_dir / "dsmount-home")
    else:
        env = dict(ctx.base_env)
    r = Runner(result, logs, env, ctx.args)
    print(f"  {workload} {tool} run {run}  ({run_dir})", file=sys.stderr)
    bodies: dict[str, Callable[[], None]] = {
        "floors": lambda: run_floors(r, workload, run_dir),
        "dvc": lambda: run_dvc(r, workload, run_dir),
        "dsmount": lambda: run_dsmount(r, workload, run_dir, ctx.args.dsmount),
    }
    try:
        bodies[tool]()
    except (StepFailed, OSError) as exc:
        result.ok = False
        result.error = str(exc)
        print(f"    FAILED: {exc}", file=sys.stderr)
    timed = [s.peak_rss_mb for s in result.steps if s.timed]
    if timed and tool != "floors":
        result.figures["peak_rss"] = max(timed)
    for key, verdict in result.checks.items():
        if verdict != "ok":
            print(f"    verify {key}: {verdict}", file=sys.stderr)
    if not ctx.args.keep:
        rmtree(run_dir)
    return result


# --------------------------------------------------------------------------------------------------
# Summary


@dataclass
class Stat:
    median: float
    lo: float
    hi: float
    n: int


def stat(values: Sequence[float]) -> Stat | None:
    if not values:
        return None
    return Stat(statistics.median(values), min(values), max(values), len(values))


def fmt(s: Stat | None, unit: str) -> str:
    if s is None:
        return "–"

    def one(v: float) -> str:
        if unit == "B":
            return f"{v:,.0f}"
        if unit == "MB":
            return f"{v:.0f}"
        return f"{v:.2f}"

    if s.n == 1 or s.lo == s.hi:
        return one(s.median)
    return f"{one(s.median)} [{one(s.lo)}–{one(s.hi)}]"


def summarize(results: list[RunResult]) -> dict[str, dict[str, dict[str, Any]]]:
    """{workload: {tool: {figure or step: Stat as dict}}} over the successful runs."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for res in results:
        if not res.ok:
            continue
        per = out.setdefault(res.workload, {}).setdefault(res.tool, {"_runs": []})
        per["_runs"].append(res)
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for wl, tools in out.items():
        for tool, per in tools.items():
            runs: list[RunResult] = per["_runs"]
            figs: dict[str, Any] = {}
            keys = {k for r in runs for k in r.figures}
            for k in sorted(keys):
                s = stat([r.figures[k] for r in runs if k in r.figures])
                figs[k] = asdict(s) if s else None
            steps: dict[str, Any] = {}
            names = [s.name for s in runs[0].steps if s.timed]
            for name in names:
                walls = [st.wall_s for r in runs for st in r.steps if st.name == name]
                rss = [st.peak_rss_mb for r in runs for st in r.steps if st.name == name]
                steps[name] = {"wall_s": asdict(stat(walls) or Stat(0, 0, 0, 0)), "peak_rss_mb": max(rss)}
            summary.setdefault(wl, {})[tool] = {"figures": figs, "steps": steps, "runs": len(runs)}
    return summary


def _stat(d: dict[str, Any] | None) -> Stat | None:
    return Stat(**d) if d else None


def markdown(summary: dict[str, dict[str, dict[str, Any]]], meta: dict[str, Any]) -> str:
    lines: list[str] = []
    lines.append(
        f"Run {meta['stamp']} on {meta['host']}; {meta['dvc_version']}; dsmount {meta['dsmount_version']}."
    )
    lines.append(
        "Cells: median [min–max] over the runs; seconds unless marked; RSS = peak of the child process."
    )
    for wl in WORKLOADS:
        if wl not in summary:
            continue
        tools = summary[wl]
        dvc = tools.get("dvc", {}).get("figures", {})
        dsm = tools.get("dsmount", {}).get("figures", {})
        nd, nm = tools.get("dvc", {}).get("runs", 0), tools.get("dsmount", {}).get("runs", 0)
        lines += ["", f"### {wl.upper()}  (DVC {nd} runs, dsmount {nm} runs)", ""]
        lines.append("| Figure | DVC | dsmount | dsmount/DVC | Target |")
        lines.append("|---|---|---|---|---|")
        for key, label, unit in FIGURES:
            a, b = _stat(dvc.get(key)), _stat(dsm.get(key))
            ratio = f"{b.median / a.median:.2f}" if a and b and a.median else "–"
            target = "–"
            if key in RATIO_TARGETS:
                target = f"≤ {TIME_TARGET_RATIO}"
                if a and b:
                    target += " met" if b.median <= TIME_TARGET_RATIO * a.median else " MISSED"
            elif key == "peak_rss" and wl in RSS_TARGET_MB:
                target = f"≤ {RSS_TARGET_MB[wl]:.0f} MB"
                if b:
                    target += " met" if b.hi <= RSS_TARGET_MB[wl] else " MISSED"
            u = "" if unit == "s" else f" ({unit})"
            lines.append(f"| {label}{u} | {fmt(a, unit)} | {fmt(b, unit)} | {ratio} | {target} |")
        lines += ["", "| Step | Tool | wall s | peak RSS MB |", "|---|---|---|---|"]
        for tool in ("dvc", "dsmount"):
            for name, st in tools.get(tool, {}).get("steps", {}).items():
                lines.append(
                    f"| {name} | {tool} | {fmt(_stat(st['wall_s']), 's')} | {st['peak_rss_mb']:.0f} |"
                )
        floors = tools.get("floors")
        if floors:
            data = _stat(floors["figures"].get("data_bytes"))
            files = _stat(floors["figures"].get("data_files"))
            size = f"{data.median / MB:,.1f} MB in {files.median:,.0f} files" if data and files else ""
            lines += ["", f"Floors on the v1 tree ({size}): " + "; ".join(
                f"{name} {fmt(_stat(st['wall_s']), 's')} s" for name, st in floors["steps"].items()
            )]  # fmt: skip
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Entry


def _sha256_tree(root: str) -> int:
    n = 0
    for _rel, path in iter_files(Path(root)):
        sha256_file(path)
        n += 1
    print(n)
    return 0


def _version(cmd: list[str], env: dict[str, str] | None = None) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False, env=env)
    except OSError:
        return "not installed"
    return (out.stdout.strip() or out.stderr.strip() or f"exit {out.returncode}").splitlines()[-1]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_sha256"]:  # floor helper, run as its own timed child
        return _sha256_tree(argv[1])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workload", choices=[*WORKLOADS, "all"], default="all")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--tools", default="dvc,dsmount", help="comma list of: dvc, dsmount")
    p.add_argument("--no-floors", action="store_true", help="skip the cp -r / zip / sha256 floors")
    p.add_argument("--keep", action="store_true", help="keep bench/work/<stamp>/ (several GB for W1)")
    p.add_argument("--no-verify", action="store_true", help="skip checking the got trees against v2")
    p.add_argument("--dsmount", default=str(DEFAULT_DSMOUNT), help="dsmount executable")
    p.add_argument("--timeout", type=float, default=3600.0, help="per-step limit in seconds")
    p.add_argument("--verbose", action="store_true", help="also print untimed steps")
    args = p.parse_args(argv)
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    if bad := [t for t in tools if t not in TOOLS]:
        p.error(f"unknown tool(s) {bad}; choose from {TOOLS}")
    if "dvc" in tools and not (DVC_VENV / "bin" / "dvc").exists():
        p.error(f"{DVC_VENV}/bin/dvc missing: run `bash bench/setup.sh` first")
    if "dsmount" in tools and not shutil.which(args.dsmount):
        p.error(f"dsmount executable {args.dsmount} not found (--dsmount PATH, or --tools dvc)")
    if not args.no_floors:
        tools = ["floors", *tools]
    workloads = list(WORKLOADS) if args.workload == "all" else [args.workload]

    # One benchmark at a time: two runs sharing 2 cores measure each other.
    WORK.mkdir(parents=True, exist_ok=True)
    lock = open(WORK / ".lock", "w")  # noqa: SIM115 (held until exit)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("another bench/run.py is running; waiting for it to finish", file=sys.stderr)
        fcntl.flock(lock, fcntl.LOCK_EX)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    stamp_dir = WORK / stamp
    logs = RESULTS / stamp
    stamp_dir.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "GIT_"))}
    base_env.update(
        LC_ALL="C",
        GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="bench@localhost",
        GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@localhost",
        GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull,
    )  # fmt: skip
    meta: dict[str, Any] = {
        "stamp": stamp,
        "host": f"{platform.node()} {platform.system()} {platform.release()}, {os.cpu_count()} CPU",
        "python": platform.python_version(),
        "git": _version(["git", "--version"]),
        "dvc_version": "dvc " + _version([str(DVC_VENV / "bin" / "dvc"), "--version"])
        if "dvc" in tools
        else "dvc not run",
        "dsmount_version": _version([args.dsmount, "--version"], dsmount_env(base_env, stamp_dir / "home"))
        if "dsmount" in tools
        else "not run",
        "rss_method": "GNU time %M" if GNU_TIME else "os.wait4 ru_maxrss (includes the runner's RSS)",
        "args": vars(args),
        "dsmount_commands": DSMOUNT_COMMANDS,
    }
    ctx = Context(args, logs, base_env)
    results: list[RunResult] = []
    for wl in workloads:
        for run in range(1, args.runs + 1):
            for tool in tools:  # tools interleaved within each run so drift hits all alike
                results.append(run_one(ctx, tool, wl, run, stamp_dir))
    if not args.keep:
        shutil.rmtree(stamp_dir, ignore_errors=True)

    summary = summarize(results)
    md = markdown(summary, meta)
    payload = {
        "meta": meta,
        "summary": summary,
        "runs": [asdict(r) for r in results],
    }
    (RESULTS / f"{stamp}.json").write_text(json.dumps(payload, indent=1, default=str))
    (RESULTS / f"{stamp}.md").write_text(md + "\n")
    print(md)
    print(f"\nresults: {RESULTS / stamp}.json, logs: {logs}/", file=sys.stderr)
    failed = [r for r in results if not r.ok or any(v != "ok" for v in r.checks.values())]
    for r in failed:
        print(f"FAILED {r.workload} {r.tool} run {r.run}: {r.error or r.checks}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
