"""Deterministic workload generator for the dsmount vs DVC benchmark.

Workloads (same shapes and seeds as the DVC baseline in versioning-peers.md §3, so numbers compare):

* ``w1`` create: 10,000 files of 1-64 KiB under ``small/dNNN/fNNNNN.bin`` (100 per folder) plus
  ``big/big0.bin`` and ``big/big1.bin`` of 200 MiB each = 755,328,000 bytes; all bytes come from
  ``random.Random(42)`` in the reference order, so the tree is byte-identical to the reference ``gen.py``.
  modify: ``random.Random(7)`` picks 100 small files and rewrites them with new bytes of the same size,
  then appends 1 MiB to ``big/big0.bin`` (4,516,864 logical bytes changed).
* ``w2`` create: 100,000 files of 1 KiB under ``dNNN/fNNNNNN.bin`` (1,000 folders x 100 files)
  = 102,400,000 bytes from ``random.Random(42)``. modify: ``random.Random(7)`` rewrites 1,000 of them.

Usage: ``python bench/gen.py {w1,w2} ROOT {create,modify}``; prints one JSON line with the counts.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path

KIB = 1024
MIB = 1024 * 1024

W1_SMALL = 10_000
W1_BIG = 2
W1_BIG_MIB = 200
W1_MODIFIED = 100
W1_APPEND = MIB

W2_FILES = 100_000
W2_PER_DIR = 100
W2_SIZE = KIB
W2_MODIFIED = 1_000

CREATE_SEED = 42
MODIFY_SEED = 7


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def w1_sizes(rng: random.Random) -> list[int]:
    """Sizes of the small files; drawn first from the create RNG, exactly as the reference does."""
    return [rng.randint(1, 64) * KIB for _ in range(W1_SMALL)]


def w1_small(root: Path, i: int) -> Path:
    return root / "small" / f"d{i // 100:03d}" / f"f{i:05d}.bin"


def w1_create(root: Path) -> tuple[int, int]:
    rng = random.Random(CREATE_SEED)
    sizes = w1_sizes(rng)
    total = 0
    for i, size in enumerate(sizes):
        path = w1_small(root, i)
        if i % 100 == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
        _write(path, rng.randbytes(size))
        total += size
    big = root / "big"
    big.mkdir(parents=True, exist_ok=True)
    for b in range(W1_BIG):
        with open(big / f"big{b}.bin", "wb") as f:
            for _ in range(W1_BIG_MIB):  # 1 MiB at a time, the reference's RNG call sequence
                f.write(rng.randbytes(MIB))
        total += W1_BIG_MIB * MIB
    return W1_SMALL + W1_BIG, total


def w1_modify(root: Path) -> tuple[int, int]:
    sizes = w1_sizes(random.Random(CREATE_SEED))
    rng = random.Random(MODIFY_SEED)
    changed = 0
    for i in rng.sample(range(W1_SMALL), W1_MODIFIED):
        _write(w1_small(root, i), rng.randbytes(sizes[i]))
        changed += sizes[i]
    with open(root / "big" / "big0.bin", "ab") as f:
        f.write(rng.randbytes(W1_APPEND))
    return W1_MODIFIED + 1, changed + W1_APPEND


def w2_path(root: Path, i: int) -> Path:
    return root / f"d{i // W2_PER_DIR:03d}" / f"f{i:06d}.bin"


def w2_create(root: Path) -> tuple[int, int]:
    rng = random.Random(CREATE_SEED)
    for i in range(W2_FILES):
        path = w2_path(root, i)
        if i % W2_PER_DIR == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
        _write(path, rng.randbytes(W2_SIZE))
    return W2_FILES, W2_FILES * W2_SIZE


def w2_modify(root: Path) -> tuple[int, int]:
    rng = random.Random(MODIFY_SEED)
    for i in rng.sample(range(W2_FILES), W2_MODIFIED):
        _write(w2_path(root, i), rng.randbytes(W2_SIZE))
    return W2_MODIFIED, W2_MODIFIED * W2_SIZE


def generate(workload: str, root: Path, mode: str) -> tuple[int, int]:
    """Create or modify a workload tree; returns (files written, bytes written)."""
    if mode == "create":
        if root.exists() and any(root.iterdir()):
            raise SystemExit(f"gen.py: {root} is not empty")
        root.mkdir(parents=True, exist_ok=True)
        return w1_create(root) if workload == "w1" else w2_create(root)
    if not root.is_dir():
        raise SystemExit(f"gen.py: {root} does not exist; run create first")
    return w1_modify(root) if workload == "w1" else w2_modify(root)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("workload", choices=["w1", "w2"])
    parser.add_argument("root", type=Path)
    parser.add_argument("mode", nargs="?", default="create", choices=["create", "modify"])
    args = parser.parse_args(argv)
    files, nbytes = generate(args.workload, args.root, args.mode)
    print(json.dumps({"workload": args.workload, "mode": args.mode, "files": files, "bytes": nbytes}))
    sys.stdout.flush()
    os.sync()  # flush dirty pages now so write-back does not land inside a timed step
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
