"""Where dsmount keeps its machine-local state, and the settings read from the environment.

Everything local derives from one home folder so a test, a container or a user can
move all of it with one variable. The store is separate: it is the shared truth.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from mountfs.errors import UsageError

DEFAULT_CHUNK_SIZE = 512 * 1024 * 1024
DEFAULT_CACHE_SIZE = 20 * 1024**3

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(text: str | int) -> int:
    """Parse '512M', '20GiB', '1.5g' or a plain byte count; units are powers of 1024."""
    if isinstance(text, int):
        return text
    m = _SIZE_RE.match(text)
    if not m:
        raise UsageError(f"not a size: {text!r} (use bytes or a suffix like 512M, 20G)")
    unit = (m.group(2) or "").lower().rstrip("b").rstrip("i")
    return int(float(m.group(1)) * _UNITS[unit])


def default_home() -> Path:
    env = os.environ.get("DSMOUNT_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "dsmount"


@dataclass(frozen=True)
class Settings:
    """Resolved local settings; built once per process by the API or CLI."""

    home: Path
    store_url: str
    cache_dir: Path
    cache_size: int

    @classmethod
    def load(
        cls,
        store: str | None = None,
        home: str | os.PathLike[str] | None = None,
        cache_size: int | str | None = None,
    ) -> Settings:
        home_path = Path(home).expanduser() if home is not None else default_home()
        store_url = store or os.environ.get("DSMOUNT_STORE") or str(home_path / "store")
        cache_dir = Path(os.environ.get("DSMOUNT_CACHE_DIR") or home_path / "cache")
        size = cache_size if cache_size is not None else os.environ.get("DSMOUNT_CACHE_SIZE")
        return cls(
            home=home_path,
            store_url=store_url,
            cache_dir=cache_dir,
            cache_size=parse_size(size) if size is not None else DEFAULT_CACHE_SIZE,
        )
