"""Dataset references and version strings, as users type them.

Pure functions, so the rules the CLI, the API and the catalogue share are table-tested
once. A reference is a full id, a unique id prefix, or ``project/name[@version]``, the
forms clearml-data users already know (plus prefixes, which git users expect).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from mountfs.errors import UsageError

ID_LENGTH = 32
MIN_PREFIX = 4
"""Shorter prefixes match too much to be worth the ambiguity errors they cause."""

_HEX_RE = re.compile(r"^[0-9a-fA-F]+$")
_SEMVER_RE = re.compile(r"^\d+(?:\.\d+)*$")

RefKind = Literal["id", "prefix", "name"]


@dataclass(frozen=True, slots=True)
class Ref:
    kind: RefKind
    value: str
    """The id or prefix (lower case) for id/prefix references; the reference as given for names."""
    project: str = ""
    name: str = ""
    version: str = ""
    """Empty when no ``@version`` was given: the highest version is meant."""


def parse_ref(ref: str) -> Ref:
    """Classify a reference without touching any catalogue.

    Hex is tried first, so a bare word is an id or prefix and never a name: a name needs
    its project, which keeps ``abcd`` from meaning two things. The last '/' splits project
    from name because projects nest ('team/vision/coco') and names do not.
    """
    text = ref.strip()
    if not text:
        raise UsageError("empty dataset reference")
    if "/" not in text:
        if "@" not in text and _HEX_RE.match(text):
            if len(text) == ID_LENGTH:
                return Ref("id", text.lower())
            if MIN_PREFIX <= len(text) < ID_LENGTH:
                return Ref("prefix", text.lower())
        raise UsageError(
            f"not a dataset reference: {ref!r} "
            f"(use an id, an id prefix of at least {MIN_PREFIX} hex digits, or project/name[@version])"
        )
    path, at, version = text.partition("@")
    project, _, name = path.rpartition("/")
    if not project or not name or "@" in version or (at and not version):
        raise UsageError(f"not a dataset reference: {ref!r} (expected project/name[@version])")
    if any(not part for part in project.split("/")):
        raise UsageError(f"not a dataset reference: {ref!r} (empty project part)")
    return Ref("name", text, project=project, name=name, version=version)


def parse_version(v: str) -> tuple[int, ...] | None:
    """Numeric components of a semver-ish version, or None when it is not one.

    Only dotted numbers count: pre-release or build suffixes ('1.0.0-rc1') are treated as
    free text, so they never outrank a plain release.
    """
    text = v.strip()
    if not _SEMVER_RE.match(text):
        return None
    return tuple(int(p) for p in text.split("."))


def next_version(existing: Iterable[str]) -> str:
    """The version a new version gets when none is given: like clearml-data, bump the last part."""
    best: tuple[int, ...] | None = None
    for v in existing:
        parsed = parse_version(v)
        if parsed is not None and (best is None or parsed > best):
            best = parsed
    if best is None:
        return "1.0.0"
    return ".".join(str(p) for p in (*best[:-1], best[-1] + 1))


def version_sort_key(version: str, created: str) -> tuple[int, tuple[int, ...], str]:
    """Listing order: semvers ascending, then free-text versions by creation time."""
    parsed = parse_version(version)
    if parsed is None:
        return (1, (), created)
    return (0, parsed, created)


def version_rank_key(version: str, created: str) -> tuple[int, tuple[int, ...], str]:
    """Which version ``project/name`` without ``@version`` means: the max of this key.

    Any semver outranks free text; equal versions (two machines picking the same number)
    fall to the newest creation time.
    """
    parsed = parse_version(version)
    if parsed is None:
        return (0, (), created)
    return (1, parsed, created)
