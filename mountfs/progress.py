"""Progress bars for long work: shown on a terminal, silent otherwise.

Library code reports progress through a plain callable so that the layers below
the API never know whether anybody is watching.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Advance = Callable[[int], None]


def _enabled(show: bool | None) -> bool:
    if show is False or os.environ.get("DSMOUNT_NO_PROGRESS"):
        return False
    return sys.stderr.isatty()


@contextmanager
def progress(total: int, desc: str, *, unit: str = "B", show: bool | None = None) -> Iterator[Advance]:
    """Yield ``advance(n)``; draws a tqdm bar on stderr only when it is a terminal."""
    if not _enabled(show) or total <= 0:
        yield lambda _n: None
        return
    from tqdm import tqdm

    scale = unit == "B"
    with tqdm(
        total=total, desc=desc, unit=unit, unit_scale=scale, unit_divisor=1024 if scale else 1000, leave=False
    ) as bar:

        def advance(n: int) -> None:
            bar.update(n)

        yield advance
