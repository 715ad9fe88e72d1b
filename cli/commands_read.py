"""Reading versions: get, list, verify, search, show, compare."""

from __future__ import annotations

import sys
from typing import Any

from mountfs.cli.main import Context, add_id, add_json, command, show_args
from mountfs.cli.output import human_size, print_json, print_table

from mountfs.errors import UsageError


def register(sub: Any) -> None:
    p = command(sub, "get", get, "get a version's files: a read-only cached copy (default), --copy or --link")
    add_id(p)
    p.add_argument("--copy", metavar="DIR", help="writable copy in DIR (modes and mtimes as stored)")
    p.add_argument("--link", metavar="DIR", help="hard links into the shared cache in DIR (read-only files)")
    p.add_argument("--files", nargs="+", metavar="PAT", help="only these paths, folders or wildcards")
    p.add_argument("--part", type=int, help="fetch part N (0-based) of --num-parts")
    p.add_argument("--num-parts", type=int, help="split the version into this many parts of similar size")
    p.add_argument("--overwrite", action="store_true", help="replace the contents of a non-empty DIR")
    p.add_argument("--max-workers", type=int, help="chunks read at once (default 4)")
    p.add_argument("--verbose", action="store_true", help="print the arguments")
    add_json(p)

    p = command(sub, "list", list_, "list a version's files with sizes and SHA-256 (downloads nothing)")
    add_id(p)
    _by_name(p)
    p.add_argument(
        "--filter", nargs="+", metavar="PAT", help="only paths matching these wildcards or folders"
    )
    p.add_argument("--modified", action="store_true", help="only entries this version added or changed")
    add_json(p)

    p = command(sub, "verify", verify, "check a local copy against the version's sizes and SHA-256")
    add_id(p)
    p.add_argument("--folder", help="folder to check (default: the read-only cached copy, fetched first)")
    p.add_argument("--filesize", action="store_true", help="compare sizes only (fast)")
    p.add_argument("--verbose", action="store_true", help="print every mismatching path")
    add_json(p)

    p = command(sub, "search", search, "search versions by project, name, tags and ids")
    p.add_argument("--ids", nargs="+", metavar="ID", help="only these versions")
    p.add_argument("--project", help="project (and its sub-projects)")
    p.add_argument("--name", help="name: substring or regular expression")
    p.add_argument("--tags", nargs="+", help="all of these tags ('-tag' excludes)")
    p.add_argument("--not-only-completed", action="store_true", help="include this machine's drafts")
    p.add_argument("--non-recursive-project-search", action="store_true", help="exact project only")
    add_json(p)

    p = command(sub, "show", show, "a version's metadata, lineage, change summary and operation log")
    p.add_argument("ref", nargs="?", metavar="REF", help="version: id, id prefix or project/name[@version]")
    add_id(p)
    add_json(p)

    p = command(sub, "compare", compare, "what changed from --source to --target")
    p.add_argument("--source", required=True, help="the older version")
    p.add_argument("--target", required=True, help="the newer version")
    p.add_argument("--verbose", action="store_true", help="list the files, not only counts")
    add_json(p)


def _by_name(p: Any) -> None:
    p.add_argument("--project", help="with --name: the dataset's project")
    p.add_argument("--name", help="with --project: the dataset's name (highest version)")
    p.add_argument("--version", help="with --project and --name: this version")


def _select(ctx: Context) -> Any:
    a = ctx.args
    if a.project and a.name and not a.id:
        return ctx.dataset(f"{a.project}/{a.name}" + (f"@{a.version}" if a.version else ""))
    return ctx.dataset(a.id)


def get(ctx: Context) -> int:
    a = ctx.args
    show_args(a)
    if a.copy and a.link:
        raise UsageError("give --copy or --link, not both")
    ds = ctx.dataset(a.id)
    kw: dict[str, Any] = {
        "part": a.part,
        "num_parts": a.num_parts,
        "max_workers": a.max_workers,
        "files": a.files,
    }
    if a.copy or a.link:
        path = ds.get_mutable_local_copy(a.copy or a.link, overwrite=a.overwrite, link=bool(a.link), **kw)
    else:
        path = ds.get_local_copy(**kw)
    if a.json:
        print_json({"id": ds.id, "path": path})
    else:
        print(path)
    return 0


def list_(ctx: Context) -> int:
    a = ctx.args
    ds = _select(ctx)
    origin = ds.id if a.modified else None
    entries = []
    for pat in a.filter or [None]:
        entries.extend(ds.list_entries(pat, True, origin))
    entries = sorted({e.path: e for e in entries}.values(), key=lambda e: e.path)
    if a.json:
        print_json(
            [
                {
                    "path": e.path,
                    "kind": e.kind,
                    "size": e.size,
                    "sha256": e.sha256,
                    "mode": e.mode,
                    "mtime_ns": e.mtime_ns,
                    "origin": e.origin,
                    "target": e.target,
                }
                for e in entries
            ]
        )
        return 0
    print_table(["path", "size", "sha256"], [(e.path, human_size(e.size), e.sha256) for e in entries])
    print(f"total {len(entries)} files, {human_size(sum(e.size for e in entries))}")
    return 0


def verify(ctx: Context) -> int:
    a = ctx.args
    ds = ctx.dataset(a.id)
    bad = ds.verify_dataset_hash(a.folder, skip_hash=a.filesize)
    if a.json:
        print_json({"id": ds.id, "ok": not bad, "mismatches": bad})
    elif bad:
        for path in bad if a.verbose or len(bad) <= 50 else bad[:50]:
            print(path)
    if bad:
        print(f"dsmount: verify: {len(bad)} file(s) missing or different", file=sys.stderr)
        return 1
    if not a.json:
        print(f"verified {ds.id}: all files match ({'sizes' if a.filesize else 'SHA-256'})")
    return 0


def search(ctx: Context) -> int:
    from mountfs.api.dataset import Dataset

    a = ctx.args
    rows = Dataset.list_datasets(
        dataset_project=a.project,
        partial_name=a.name,
        tags=a.tags,
        ids=a.ids,
        only_completed=not a.not_only_completed,
        recursive_project_search=not a.non_recursive_project_search,
        workspace=ctx.workspace,
    )
    if a.json:
        print_json(rows)
        return 0
    print_table(
        ["project", "name", "version", "tags", "state", "files", "size", "created", "id"],
        [
            (
                r["project"],
                r["name"],
                r["version"],
                ",".join(r["tags"]),
                r["state"],
                r["files"],
                human_size(r["bytes"]),
                r["created"][:19].replace("T", " "),
                r["id"],
            )
            for r in rows
        ],
    )
    return 0


def show(ctx: Context) -> int:
    a = ctx.args
    if a.ref and a.id:
        raise UsageError("give the version once: REF or --id")
    ds = ctx.dataset(a.ref or a.id)
    info = ds.summary()
    if a.json:
        print_json(info)
        return 0
    s = info["stats"]
    print(f"{info['project']}/{info['name']}@{info['version']}  {info['id']}  [{info['state']}]")
    if info.get("description"):
        print(f"  {info['description']}")
    print(f"tags:     {', '.join(info['tags']) or '-'}")
    print(f"created:  {info['created']} by {info['user']}@{info['host']}")
    print(f"storage:  {info['data_url']}  ({info['chunks']} chunk(s) of its own)")
    print(f"files:    {s['files']} ({human_size(s['bytes'])})")
    print(
        f"changes:  +{s['added']} ({human_size(s['added_bytes'])})"
        f"  ~{s['modified']} ({human_size(s['modified_bytes'])})"
        f"  -{s['removed']} ({human_size(s['removed_bytes'])})"
    )
    print("lineage:")
    _lineage(ctx, info["id"], info["lineage"], "  ", set())
    if info["oplog"]:
        print("log:")
        last = None
        for rec in info["oplog"]:
            command = rec.get("command")
            shown = f"  {command}" if command and command != last else ""
            print(f"  {rec.get('time', '')[:19]}  {rec.get('op')}{shown}")
            last = command
    return 0


def _lineage(ctx: Context, vid: str, graph: dict[str, list[str]], indent: str, seen: set[str]) -> None:
    label = vid[:12]
    m = ctx.workspace.catalogue.manifest(vid) or ctx.workspace.catalogue.draft(vid)
    if m is not None:
        label += f" {m.project}/{m.name}@{m.version}"
    print(f"{indent}{label}{' (see above)' if vid in seen else ''}")
    if vid in seen:
        return
    seen.add(vid)
    for parent in graph.get(vid, []):
        _lineage(ctx, parent, graph, indent + "  ", seen)


def compare(ctx: Context) -> int:
    from mountfs.api.dataset import Dataset

    a = ctx.args
    src = Dataset(ctx.workspace, ctx.resolve(a.source))
    dst = Dataset(ctx.workspace, ctx.resolve(a.target))
    diff = dst.compare(src)
    if a.json:
        print_json(
            {
                "source": src.id,
                "target": dst.id,
                "added": [e.path for e in diff.added],
                "modified": [new.path for _old, new in diff.modified],
                "removed": [e.path for e in diff.removed],
                "renamed": [[old.path, new.path] for old, new in diff.renamed],
                "added_bytes": diff.added_bytes,
                "modified_bytes": diff.modified_bytes,
                "removed_bytes": diff.removed_bytes,
            }
        )
        return 0
    print(f"from {src.id} to {dst.id}:")
    print(f"  added    {len(diff.added)} ({human_size(diff.added_bytes)})")
    print(f"  modified {len(diff.modified)} ({human_size(diff.modified_bytes)})")
    print(f"  removed  {len(diff.removed)} ({human_size(diff.removed_bytes)})")
    print(f"  of which renamed {len(diff.renamed)} (same content at a new path)")
    if a.verbose:
        for e in diff.added:
            print(f"+ {e.path}")
        for _old, new in diff.modified:
            print(f"~ {new.path}")
        for e in diff.removed:
            print(f"- {e.path}")
    return 0
