"""Which cloud a URL names, and the client options for it, from the clouds' own settings.

Credentials are never ours to store: s3fs, gcsfs and adlfs each find them the way their cloud's
tools do (environment, config files, instance or workload identity), so a URL in a manifest
or a file table is all another machine needs, with its own credentials. What we add is the
small set of settings those clients do not read from the environment by themselves, and
DSMOUNT_STORAGE_OPTIONS (JSON, per scheme) for anything else, such as a private endpoint.
A URL that carries credentials (``s3://KEY:SECRET@bucket``) is refused: it would end up in
manifests and logs.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from mountfs.errors import UsageError

# gcsfs (2026.x) probes the Storage Control gRPC API for every bucket unless this is off, which
# costs seconds per call and fails outright against emulators; it is read at gcsfs's import.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

SCHEMES = {
    "s3": "s3",
    "s3a": "s3",
    "gs": "gs",
    "gcs": "gs",
    "az": "az",
    "abfs": "az",
    "abfss": "az",
    "adl": "az",
    "memory": "memory",
}
"""URL scheme -> the family whose settings apply."""

PACKAGES = {"s3": "s3fs (pip install 'dsmount[s3]')", "gs": "gcsfs (pip install 'dsmount[gcs]')"}
PACKAGES["az"] = "adlfs (pip install 'dsmount[azure]')"

_USERINFO = re.compile(r"^[a-z0-9+.-]+://[^/@]*:[^/@]*@", re.IGNORECASE)


def scheme_of(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else "file"


def family(url: str) -> str:
    """'s3', 'gs', 'az', 'memory', 'file' or the scheme itself for other fsspec backends."""
    scheme = scheme_of(url)
    return SCHEMES.get(scheme, scheme)


def check_url(url: str) -> None:
    """Refuse URLs with credentials in them before they reach a manifest or a log."""
    if _USERINFO.match(url):
        raise UsageError(
            "store URLs must not carry credentials (user:secret@); "
            "use the cloud's environment variables or config files instead"
        )


def redact(text: str) -> str:
    """Hide anything that looks like credentials in a URL inside a message."""
    return re.sub(r"(://)[^/@\s]*:[^/@\s]*@", r"\1***@", text)


def _env_options() -> dict[str, Any]:
    raw = os.environ.get("DSMOUNT_STORAGE_OPTIONS")
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise UsageError(f"DSMOUNT_STORAGE_OPTIONS is not JSON: {exc.msg}") from None
    if not isinstance(value, dict):
        raise UsageError('DSMOUNT_STORAGE_OPTIONS must be a JSON object, e.g. {"s3": {"endpoint_url": ...}}')
    return value


def options_for(url: str, explicit: dict[str, Any] | None = None) -> dict[str, Any]:
    """fsspec options for ``url``: defaults, then DSMOUNT_STORAGE_OPTIONS, then ``explicit``.

    DSMOUNT_STORAGE_OPTIONS holds either options for every scheme or an object keyed by
    family ('s3', 'gs', 'az'), e.g. ``{"s3": {"endpoint_url": "http://127.0.0.1:9000"}}``.
    """
    fam = family(url)
    opts: dict[str, Any] = {}
    if fam in ("s3", "gs", "az"):
        # Other machines write to a shared store: a listing cached by the client would hide
        # their objects from info/exists in a long-lived process.
        opts["use_listings_cache"] = False
    emulated = os.environ.get("STORAGE_EMULATOR_HOST") and "GOOGLE_APPLICATION_CREDENTIALS" not in os.environ
    if fam == "gs" and emulated:
        # gcsfs reads STORAGE_EMULATOR_HOST but would still look for Google credentials,
        # ending at the GCE metadata server; an emulator takes none.
        opts["token"] = "anon"
    # s3fs reads AWS_* (endpoint included) through botocore; adlfs reads AZURE_STORAGE_* and
    # falls back to DefaultAzureCredential (managed and workload identity): nothing to add.
    env = _env_options()
    if env and any(k in SCHEMES.values() for k in env):
        scoped = env.get(fam) or {}
        if not isinstance(scoped, dict):
            raise UsageError(f"DSMOUNT_STORAGE_OPTIONS[{fam!r}] must be a JSON object")
        opts.update(scoped)
    else:
        opts.update(env)
    opts.update(explicit or {})
    return opts


def missing_package_message(url: str, exc: ImportError) -> str:
    fam = family(url)
    need = PACKAGES.get(fam)
    if need:
        return f"{scheme_of(url)}:// stores need {need}"
    return f"no filesystem for {scheme_of(url)}:// URLs: {exc}"
