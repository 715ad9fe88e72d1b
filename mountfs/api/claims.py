"""Version numbers that never collide when several machines close versions of one dataset.

A version's id is random, so manifests never collide; its number (``1.0.3``) is chosen from
what the local catalogue knew at create time, and two machines can pick the same one. Before
a close writes its manifest it claims the number with a conditional create of
``claims/<hash of project and name>/<version>.json`` holding the version's id. The store lets
exactly one writer create that object. The loser of an automatic number takes the next one
free (after every claimed and every known number) and tries again; an explicit number
(``--version``) fails with a clear error instead, since the user asked for that one.

A claim whose close then crashes stays behind: the same draft finds its own id there and
goes on; a draft that is discarded or a version that is deleted releases its claim. A claim
left by a machine that never came back holds its number until gc releases it (admin.gc).
"""

from __future__ import annotations

import hashlib
import json
import logging

from mountfs.api.workspace import Workspace
from mountfs.catalogue.catalogue import Draft
from mountfs.catalogue.refs import next_version
from mountfs.errors import MountfsError, ObjectMissingError, UsageError

log = logging.getLogger("dsmount")

CLAIMS = "claims"
_MAX_TRIES = 1000


def claims_prefix(project: str, name: str) -> str:
    digest = hashlib.sha256(f"{project}\x00{name}".encode()).hexdigest()[:32]
    return f"{CLAIMS}/{digest}/"


def claim_key(project: str, name: str, version: str) -> str:
    return f"{claims_prefix(project, name)}{version}.json"


def _body(version_id: str, project: str, name: str, version: str) -> bytes:
    doc = {"id": version_id, "project": project, "name": name, "version": version}
    return json.dumps(doc, sort_keys=True).encode()


def owner(ws: Workspace, project: str, name: str, version: str) -> str | None:
    """The id holding a claim on that number, or None when nobody does."""
    return holder_of(ws, claim_key(project, name, version))


def holder_of(ws: Workspace, key: str) -> str | None:
    try:
        raw = ws.store.read_bytes(key)
    except ObjectMissingError:
        return None
    try:
        return str(json.loads(raw)["id"])
    except (ValueError, KeyError, TypeError):
        return "?"  # a damaged claim still holds its number


def claimed_versions(ws: Workspace, project: str, name: str) -> set[str]:
    prefix = claims_prefix(project, name)
    return {o.key[len(prefix) : -len(".json")] for o in ws.store.list(prefix) if o.key.endswith(".json")}


def claim(ws: Workspace, d: Draft) -> str:
    """Reserve a number for the draft in the shared store; returns the number it got."""
    version = d.version
    if d.version_auto:
        ws.refresh()
        known = {r.version for r in ws.catalogue.versions_of(d.project, d.name) if r.id != d.id}
        if version in known:
            version = next_version(known | claimed_versions(ws, d.project, d.name))
    for _ in range(_MAX_TRIES):
        key = claim_key(d.project, d.name, version)
        if ws.store.write_bytes(key, _body(d.id, d.project, d.name, version), exclusive=True):
            break
        holder = owner(ws, d.project, d.name, version)
        if holder == d.id:
            break  # our own claim, from a close that did not finish
        if holder is None:
            continue  # released between our write and our read: try the same number again
        if not d.version_auto:
            raise UsageError(
                f"{d.project}/{d.name} version {version} was taken by {holder} (closed elsewhere); "
                "choose another --version"
            )
        taken = claimed_versions(ws, d.project, d.name)
        taken |= {r.version for r in ws.catalogue.versions_of(d.project, d.name)}
        version = next_version(taken | {version})
    else:
        raise MountfsError(f"could not claim a version number for {d.project}/{d.name}")
    if version != d.version:
        log.warning(
            "%s/%s: version %s was taken elsewhere; this one is %s", d.project, d.name, d.version, version
        )
        ws.catalogue.update_draft(d.id, version=version)
    return version


def release(ws: Workspace, version_id: str, project: str, name: str, version: str) -> None:
    """Drop a claim if it is ours (a deleted version, a discarded draft): best effort."""
    try:
        if owner(ws, project, name, version) == version_id:
            ws.store.delete(claim_key(project, name, version))
    except MountfsError as exc:
        log.warning("could not release the claim on %s/%s %s: %s", project, name, version, exc)
