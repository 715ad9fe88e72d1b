"""Object-store benchmark: dsmount over the S3 emulator (moto on 127.0.0.1), in one run.

* **get of W1** (bench/gen.py: 10,000 files of 1-64 KiB and two 200 MiB files) from an S3 store
  into an empty home (cold cache), against the emulator's **raw read throughput** measured in the
  same run: every chunk object of the version read whole with s3fs, with as many parallel streams
  as ``get`` uses (4), and with one stream.
* **Over-fetch of a mount**: bytes the store sent (counted by a proxy in front of moto: the
  bodies of every answer) against bytes the program needed, when a mount of W1 serves (a) 100
  random small files read whole and (b) 1 MiB read from the middle of a 200 MiB file. Each on
  a fresh home and mount, counters reset once the mount is ready. Target: at most 1.2x.

    .venv/bin/python bench/store_bench.py --runs 3      # --quick: a small W1-like tree, 1 run

Results: ``bench/results/store-<stamp>.md`` (printed too) and ``store-<stamp>.json``.
Needs fusermount3 and the emulators (scripts/install_emulators.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

from tests.emulators import moto_server  # noqa: E402  (the same emulator the tests start)
from tests.faultproxy import FaultProxy  # noqa: E402

DATA = BENCH / "data"
RESULTS = BENCH / "results"
DSMOUNT = REPO / ".venv" / "bin" / "dsmount"
MIB = 1 << 20
TARGET_OVERFETCH = 1.2


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def make_source(quick: bool) -> Path:
    """W1 from bench/gen.py (cached under bench/data), or a small W1-like tree for --quick."""
    if quick:
        root = DATA / "store-quick-src"
        if not (root / ".done").exists():
            shutil.rmtree(root, ignore_errors=True)
            rnd = random.Random(42)
            for i in range(1000):
                p = root / "small" / f"d{i // 100:03d}" / f"f{i:05d}.bin"
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(rnd.randbytes(rnd.randint(1024, 64 * 1024)))
            (root / "big").mkdir()
            (root / "big" / "big0.bin").write_bytes(rnd.randbytes(32 * MIB))
            (root / ".done").touch()
        return root
    root = DATA / "w1-src"
    if not (root / ".done").exists():
        shutil.rmtree(root, ignore_errors=True)
        subprocess.run([sys.executable, str(BENCH / "gen.py"), "w1", str(root), "create"], check=True)
        (root / ".done").touch()
    return root


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(DSMOUNT), *args], env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"dsmount {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


@contextmanager
def mounted(env: dict[str, str], vid: str, mnt: Path) -> Iterator[Path]:
    mnt.mkdir(parents=True, exist_ok=True)
    run(env, "mount", vid, str(mnt))
    try:
        yield mnt
    finally:
        run(env, "unmount", str(mnt))


def raw_read(endpoint: str, keys: list[str], streams: int) -> float:
    """Seconds to read every object whole with s3fs (a new client, nothing cached)."""
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=endpoint, key="testing", secret="testing", skip_instance_cache=True)
    start = time.perf_counter()
    with ThreadPoolExecutor(streams) as pool:
        sizes = list(pool.map(lambda k: len(fs.cat_file(k)), keys))
    elapsed = time.perf_counter() - start
    assert sum(sizes) > 0
    return elapsed


RANGE = 16 * MIB  # what get's windows are (mountfs.api.fetch.SPAN_BYTES)


def raw_ranged(endpoint: str, keys: list[str], sizes: list[int]) -> float:
    """Seconds to read every object in 16 MiB ranged GETs, 4 at a time: what any reader that
    fetches by byte range (as get and the mount do) pays on this server."""
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=endpoint, key="testing", secret="testing", skip_instance_cache=True)
    ranges = [
        (k, off, min(off + RANGE, size))
        for k, size in zip(keys, sizes, strict=True)
        for off in range(0, size, RANGE)
    ]
    start = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        got = sum(pool.map(lambda r: len(fs.cat_file(r[0], start=r[1], end=r[2])), ranges))
    elapsed = time.perf_counter() - start
    assert got == sum(sizes)
    return elapsed


def raw_download(endpoint: str, keys: list[str], dest: Path) -> float:
    """Seconds to download every object to a local file with s3fs (one stream per object, 4 at
    a time): the same network read plus writing the bytes once, which a get cannot avoid."""
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=endpoint, key="testing", secret="testing", skip_instance_cache=True)
    dest.mkdir(parents=True)
    start = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda ik: fs.get_file(ik[1], str(dest / f"{ik[0]}.zip")), enumerate(keys)))
    os.sync()
    elapsed = time.perf_counter() - start
    shutil.rmtree(dest)
    return elapsed


def tree_bytes(root: Path) -> tuple[int, int]:
    files = size = 0
    for folder, _dirs, names in os.walk(root):
        for n in names:
            if n == ".done":
                continue
            files += 1
            size += os.path.getsize(os.path.join(folder, n))
    return files, size


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="small W1-like tree, one run")
    args = ap.parse_args()
    runs = 1 if args.quick else args.runs
    src = make_source(args.quick)
    n_files, n_bytes = tree_bytes(src)
    small = sorted(str(p.relative_to(src)) for p in (src / "small").rglob("*.bin"))
    work = Path(tempfile.mkdtemp(prefix="dsmount-store-bench-"))
    result: dict[str, Any] = {"quick": args.quick, "runs": runs, "files": n_files, "bytes": n_bytes}
    try:
        with moto_server() as em:
            proxy = FaultProxy(int(em.host_port.rsplit(":", 1)[1]))
            bucket = em.new_bucket()
            url = f"{bucket}/datasets"
            base = {k: v for k, v in os.environ.items() if not k.startswith(("DSMOUNT_", "AWS_"))}
            direct = {**base, **em.env, "DSMOUNT_STORE": url, "DSMOUNT_NO_PROGRESS": "1"}
            env = {**direct, "DSMOUNT_HOME": str(work / "writer")}
            t = time.perf_counter()
            out = run(env, "sync", "--project", "bench", "--name", "w1", "--folder", str(src), "--json")
            result["upload_s"] = time.perf_counter() - t
            vid = json.loads(out.stdout)["id"]
            import s3fs

            fs = s3fs.S3FileSystem(skip_instance_cache=True, **em.options())
            root = url.split("://", 1)[1]
            manifest = json.loads(fs.cat_file(f"{root}/registry/{vid}.json"))
            chunks = manifest_chunks(manifest, vid)
            result["chunk_bytes"] = sum(int(c["size"]) for c in chunks)
            chunk_keys = [f"{root}/data/{c['key']}" for c in chunks]
            log(f"uploaded {n_files} files, {n_bytes / MIB:.0f} MiB in {result['upload_s']:.1f} s: {vid}")
            gets, raw4, raw1, dl, ranged = [], [], [], [], []
            sizes = [int(c["size"]) for c in chunks]
            fetched_small, needed_small, fetched_mid, needed_mid = [], [], [], []
            for r in range(runs):
                raw4.append(raw_read(em.env["AWS_ENDPOINT_URL"], chunk_keys, 4))
                raw1.append(raw_read(em.env["AWS_ENDPOINT_URL"], chunk_keys, 1))
                ranged.append(raw_ranged(em.env["AWS_ENDPOINT_URL"], chunk_keys, sizes))
                dl.append(raw_download(em.env["AWS_ENDPOINT_URL"], chunk_keys, work / f"dl-{r}"))
                home = work / f"get-{r}"
                t = time.perf_counter()
                run(
                    {**direct, "DSMOUNT_HOME": str(home)},
                    "get",
                    "--id",
                    vid,
                    "--copy",
                    str(work / f"copy-{r}"),
                )
                os.sync()  # a get's bytes are on disk when it ends, like the download baseline's
                gets.append(time.perf_counter() - t)
                got = tree_bytes(work / f"copy-{r}")
                if got != (n_files, n_bytes):
                    raise RuntimeError(f"get copied {got}, expected {(n_files, n_bytes)}")
                shutil.rmtree(work / f"copy-{r}")
                shutil.rmtree(home)
                log(
                    f"run {r + 1}: get {gets[-1]:.2f} s, raw x4 {raw4[-1]:.2f} s, raw x1 {raw1[-1]:.2f} s, "
                    f"download {dl[-1]:.2f} s, 16 MiB ranges x4 {ranged[-1]:.2f} s"
                )
                # over-fetch through the counting proxy, a fresh home per measurement
                via = {**direct, "AWS_ENDPOINT_URL": proxy.url}
                rnd = random.Random(100 + r)
                picked = rnd.sample(small, 100)
                with mounted({**via, "DSMOUNT_HOME": str(work / f"m-{r}")}, vid, work / f"mnt-{r}") as mnt:
                    proxy.reset_counters()
                    need = 0
                    for rel in picked:
                        need += len((mnt / rel).read_bytes())
                    fetched_small.append(proxy.counters.body_bytes)
                    needed_small.append(need)
                with mounted({**via, "DSMOUNT_HOME": str(work / f"n-{r}")}, vid, work / f"mnt2-{r}") as mnt:
                    big = mnt / "big" / "big0.bin"
                    middle = big.stat().st_size // 2
                    proxy.reset_counters()
                    with open(big, "rb") as f:
                        f.seek(middle)
                        need = len(f.read(MIB))
                    fetched_mid.append(proxy.counters.body_bytes)
                    needed_mid.append(need)
                log(
                    f"run {r + 1}: 100 small files {fetched_small[-1] / needed_small[-1]:.3f}x, "
                    f"1 MiB of a big file {fetched_mid[-1] / needed_mid[-1]:.3f}x"
                )
            proxy.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    med = statistics.median
    result.update(
        get_s=gets,
        raw4_s=raw4,
        raw1_s=raw1,
        download_s=dl,
        ranged_s=ranged,
        small_fetched=fetched_small,
        small_needed=needed_small,
        mid_fetched=fetched_mid,
        mid_needed=needed_mid,
    )
    get_mbs = n_bytes / MIB / med(gets)
    raw4_mbs = result["chunk_bytes"] / MIB / med(raw4)
    small_ratio = med(f / n for f, n in zip(fetched_small, needed_small, strict=True))
    mid_ratio = med(f / n for f, n in zip(fetched_mid, needed_mid, strict=True))
    lines = [
        f"# dsmount over the S3 emulator ({'quick' if args.quick else 'W1'}, {runs} run(s), medians)",
        "",
        f"Tree: {n_files} files, {n_bytes / MIB:.1f} MiB; "
        f"upload (`dsmount sync`) {result['upload_s']:.1f} s.",
        "",
        "| measure | dsmount | baseline (same run) | ratio |",
        "|---|---|---|---|",
        f"| get --copy, cold home | {med(gets):.2f} s ({get_mbs:.0f} MiB/s) | raw s3fs read of the chunks, "
        f"4 streams {med(raw4):.2f} s ({raw4_mbs:.0f} MiB/s) / 1 stream {med(raw1):.2f} s | "
        f"{med(raw4) / med(gets):.2f} of 4-stream "
        f"raw, {med(raw1) / med(gets):.2f} of 1-stream |",
        f"| get --copy, cold home | {med(gets):.2f} s | s3fs download of the chunks to local files "
        f"(4 at a time, then sync) {med(dl):.2f} s | {med(dl) / med(gets):.2f} |",
        f"| get --copy, cold home | {med(gets):.2f} s | s3fs read of the chunks in 16 MiB ranged GETs, "
        f"4 at a time {med(ranged):.2f} s | {med(ranged) / med(gets):.2f} |",
        f"| mount: 100 random small files | {med(fetched_small) / 1024:.0f} KiB fetched | "
        f"{med(needed_small) / 1024:.0f} KiB needed | {small_ratio:.3f}x (target <= {TARGET_OVERFETCH}) |",
        f"| mount: 1 MiB from the middle of a {'32' if args.quick else '200'} MiB file | "
        f"{med(fetched_mid) / 1024:.0f} KiB fetched | {med(needed_mid) / 1024:.0f} KiB needed | "
        f"{mid_ratio:.3f}x (target <= {TARGET_OVERFETCH}) |",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"store-{stamp}.md").write_text(text)
    (RESULTS / f"store-{stamp}.json").write_text(json.dumps(result, indent=2))
    return 0 if small_ratio <= TARGET_OVERFETCH and mid_ratio <= TARGET_OVERFETCH else 1


def manifest_chunks(manifest: dict[str, Any], vid: str) -> list[dict[str, Any]]:
    chunks = manifest.get("chunks")
    if isinstance(chunks, list):
        return chunks
    raise RuntimeError(f"show {vid} --json has no chunk list: {sorted(manifest)}")


if __name__ == "__main__":
    sys.exit(main())
