"""Crash injection for tests: kill this process at a named point of a write path.

``DSMOUNT_CRASH_AT=<name>`` kills the process with SIGKILL the first time
``crash_point(<name>)`` runs; ``<name>#<n>`` kills it on the n-th time instead. The
variable is read once, at import, so an unset variable costs one comparison per
call. SIGKILL, not an exception: nothing runs after it (no finally blocks, no
atexit, no SQLite rollback), which is what a power cut or the OOM killer does.

Points (in mountfs.api.drafts):
    add.hashed              files hashed, pending rows not yet written
    upload.chunk_written    a chunk is in the store, not yet recorded in the catalogue
    upload.chunk_recorded   a chunk and its files are recorded in the catalogue
    close.table_written     the file table is in the store, the manifest is not
    close.manifest_written  the manifest is in the store, the draft not yet removed
"""

from __future__ import annotations

import os
import signal

ENV = "DSMOUNT_CRASH_AT"


def _parse(value: str) -> tuple[str, int]:
    name, _, nth = value.partition("#")
    return name, int(nth) if nth.isdigit() and int(nth) > 0 else 1


_TARGET, _NTH = _parse(os.environ.get(ENV, ""))
_hits = 0


def crash_point(name: str) -> None:
    """SIGKILL this process if ``name`` is the crash point the environment asks for."""
    global _hits
    if not _TARGET or name != _TARGET:
        return
    _hits += 1
    if _hits >= _NTH:
        os.kill(os.getpid(), signal.SIGKILL)
