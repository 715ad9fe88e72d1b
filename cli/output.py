"""How the shell talks: tables and sizes for people, JSON for programs, one-line errors.

Kept apart from the commands so every verb prints the same way, and free of mountfs
imports so ``dsmount --help`` stays fast.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

PROG = "dsmount"


def human_size(n: int) -> str:
    """Binary units, as ``ls -h`` and the cache-size settings use: 1536 -> '1.5 KiB'."""
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        value /= 1024
        if value < 1024 or unit == "PiB":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def print_json(doc: Any, out: TextIO | None = None) -> None:
    """Stable, indented JSON on stdout; exact byte counts, never human sizes."""
    print(json.dumps(doc, indent=2, default=str), file=out or sys.stdout)


def print_table(
    headers: Sequence[str], rows: Sequence[Sequence[object]], *, right: Sequence[str] = ()
) -> None:
    """Columns padded to the widest cell; the last column is not padded so lines have no trailing blanks."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(row: Sequence[str]) -> str:
        parts = []
        for i, cell in enumerate(row):
            last = i == len(row) - 1
            if headers[i] in right:
                parts.append(cell.rjust(widths[i]))
            else:
                parts.append(cell if last else cell.ljust(widths[i]))
        return "  ".join(parts).rstrip()

    print(line(list(headers)))
    for row in cells:
        print(line(row))


def one_line(text: str) -> str:
    """Messages may carry newlines (paths, backend errors); the error promise is one line."""
    return " ".join(text.split())


def error(message: str) -> None:
    """The one-line error every failure ends with."""
    print(f"{PROG}: error: {one_line(message)}", file=sys.stderr)
