"""Per-operation counts and latencies of a mount, for ``dsmount stats``.

Latencies go into power-of-two microsecond buckets: constant memory and cost per
request, and percentiles good to a factor of two, which is what a slow mount needs
to be diagnosed (is it 50 µs of Python or 50 ms of network?).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

_BUCKETS = 32


@dataclass
class _Op:
    count: int = 0
    errors: int = 0
    total_ns: int = 0
    max_ns: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * _BUCKETS)


class OpStats:
    """Thread-safe latency recorder keyed by operation name."""

    def __init__(self) -> None:
        self._ops: dict[str, _Op] = {}
        self._lock = threading.Lock()
        self.in_flight = 0

    def record(self, op: str, elapsed_ns: int, *, error: bool = False) -> None:
        bucket = min(_BUCKETS - 1, max(0, elapsed_ns // 1000).bit_length())
        with self._lock:
            s = self._ops.get(op)
            if s is None:
                s = self._ops[op] = _Op()
            s.count += 1
            s.errors += error
            s.total_ns += elapsed_ns
            if elapsed_ns > s.max_ns:
                s.max_ns = elapsed_ns
            s.buckets[bucket] += 1

    def snapshot(self) -> dict[str, dict[str, float]]:
        """For each operation: count, errors, mean/p50/p99/max latency in microseconds."""
        out: dict[str, dict[str, float]] = {}
        with self._lock:
            for op, s in sorted(self._ops.items()):
                out[op] = {
                    "count": s.count,
                    "errors": s.errors,
                    "mean_us": round(s.total_ns / s.count / 1000, 1) if s.count else 0.0,
                    "p50_us": _percentile(s.buckets, s.count, 0.50),
                    "p99_us": _percentile(s.buckets, s.count, 0.99),
                    "max_us": round(s.max_ns / 1000, 1),
                }
        return out


def _percentile(buckets: list[int], count: int, q: float) -> float:
    """Upper bound of the bucket holding the q-th request (bucket b holds < 2**b µs)."""
    if count == 0:
        return 0.0
    rank = q * count
    seen = 0
    for b, n in enumerate(buckets):
        seen += n
        if seen >= rank:
            return float(1 << b)
    return float(1 << (_BUCKETS - 1))
