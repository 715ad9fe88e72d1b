"""Building versions: create, add, remove, sync, upload, close, publish (clearml-data's flags)."""

from __future__ import annotations

import argparse
from typing import Any

from mountfs.cli.main import Context, add_id, add_json, command, show_args
from mountfs.cli.output import human_size, print_json

from mountfs.errors import UsageError


def register(sub: Any) -> None:
    p = command(sub, "create", create, "create a new dataset version (a draft) and make it the current one")
    p.add_argument("--name", required=True, help="dataset name")
    p.add_argument("--project", help="project (default: the last parent's)")
    p.add_argument("--parents", nargs="+", metavar="ID", default=[], help="parent versions, merged in order")
    p.add_argument("--version", help="version string (default: the latest version + 1, else 1.0.0)")
    _storage(p)
    p.add_argument("--tags", nargs="+", default=[], help="tags")
    p.add_argument("--description", help="free text description")
    add_json(p)

    p = command(sub, "add", add, "add files or external links to a draft (files are hashed now)")
    add_id(p)
    p.add_argument("--files", nargs="+", metavar="PATH", default=[], help="files, folders or globs")
    p.add_argument("--links", nargs="+", metavar="URL", default=[], help="external files: URLs or paths")
    p.add_argument("--dataset-folder", help="folder inside the dataset to add to")
    p.add_argument("--wildcard", nargs="+", metavar="PAT", help="only add files matching these patterns")
    p.add_argument("--non-recursive", action="store_true", help="do not descend into sub-folders")
    p.add_argument("--max-workers", type=int, help="hashing threads (default: cores, at most 8)")
    p.add_argument("--verbose", action="store_true", help="print the arguments")
    add_json(p)

    p = command(
        sub, "remove", remove, "remove files from a draft (paths, folders or wildcards; metadata only)"
    )
    add_id(p)
    p.add_argument(
        "--files", nargs="+", metavar="PAT", required=True, help="dataset paths, folders or wildcards"
    )
    p.add_argument("--non-recursive", action="store_true", help="wildcards match only at their own depth")
    p.add_argument("--verbose", action="store_true", help="print the arguments")
    add_json(p)

    p = command(sub, "sync", sync, "make a version mirror a local folder; creates, uploads and closes it")
    p.add_argument("--folder", required=True, help="local folder to mirror")
    add_id(p)
    p.add_argument("--dataset-folder", help="folder inside the dataset to mirror into")
    p.add_argument(
        "--parents", nargs="+", metavar="ID", default=[], help="create a new version with these parents"
    )
    p.add_argument("--project", help="project of the new version")
    p.add_argument("--name", help="name of the new version")
    p.add_argument("--version", help="version string of the new version")
    p.add_argument("--tags", nargs="+", default=[], help="tags of the new version")
    _storage(p)
    p.add_argument(
        "--skip-close", action="store_true", help="leave the version a draft (no upload, no close)"
    )
    p.add_argument("--verbose", action="store_true", help="print the arguments")
    add_json(p)

    p = command(sub, "upload", upload, "zip the draft's pending files into chunks in its data location")
    add_id(p)
    _storage(p, chunk=True, create=False)
    p.add_argument("--max-workers", type=int, help="chunks written at once (default 2)")
    p.add_argument("--verbose", action="store_true", help="print the arguments")

    p = command(sub, "close", close, "upload what is pending and close the draft: it becomes immutable")
    add_id(p)
    _storage(p, chunk=True, create=False)
    p.add_argument("--max-workers", type=int, help="chunks written at once (default 2)")
    p.add_argument("--disable-upload", action="store_true", help="fail instead of uploading pending files")
    p.add_argument("--verbose", action="store_true", help="print the arguments")
    add_json(p)

    p = command(sub, "publish", publish, "publish a closed version (protects it from deletion)")
    add_id(p)


def _storage(p: argparse.ArgumentParser, *, chunk: bool = True, create: bool = True) -> None:
    p.add_argument("--storage", help="data location URL for the chunks (default: the store's data/)")
    if create:
        p.add_argument("--output-uri", help="alias of --storage (clearml's deprecated name)")
    if chunk:
        p.add_argument(
            "--chunk-size",
            metavar="SIZE",
            help="chunk zip size: 512M, 2G, a bare number in MiB as in clearml-data, -1 for one zip "
            "(default: 512M)",
        )


def _chunk(args: argparse.Namespace) -> Any:
    value = getattr(args, "chunk_size", None)
    if value is None:
        return None
    return -1 if str(value).strip() == "-1" else value


def _with_mb(value: Any) -> Any:
    """clearml's --chunk-size is in MB; a bare number here means MB too."""
    if value is None or value == -1:
        return value
    text = str(value).strip()
    return f"{text}M" if text.isdigit() else text


def create(ctx: Context) -> int:
    from mountfs.api.dataset import Dataset

    a = ctx.args
    ds = Dataset.create(
        dataset_name=a.name,
        dataset_project=a.project,
        dataset_tags=a.tags,
        parent_datasets=[ctx.resolve(p) for p in a.parents],
        dataset_version=a.version,
        output_uri=a.storage or a.output_uri,
        description=a.description,
        chunk_size=_with_mb(_chunk(a)),
        workspace=ctx.workspace,
    )
    info = {"id": ds.id, "project": ds.project, "name": ds.name, "version": ds.version}
    if a.json:
        print_json(info)
    else:
        print(f"dataset created: {ds.project}/{ds.name}@{ds.version} id={ds.id}")
    return 0


def add(ctx: Context) -> int:
    a = ctx.args
    show_args(a)
    if not a.files and not a.links:
        raise UsageError("add needs --files and/or --links")
    ds = ctx.dataset(a.id)
    files = sum(
        ds.add_files(
            path,
            wildcard=a.wildcard,
            dataset_path=a.dataset_folder,
            recursive=not a.non_recursive,
            max_workers=a.max_workers,
        )
        for path in a.files
    )
    links = (
        ds.add_external_files(
            a.links, wildcard=a.wildcard, dataset_path=a.dataset_folder, recursive=not a.non_recursive
        )
        if a.links
        else 0
    )
    if a.json:
        print_json({"id": ds.id, "files": files, "links": links})
    else:
        print(f"{files} file(s) and {links} link(s) added or changed in {ds.id}")
    return 0


def remove(ctx: Context) -> int:
    a = ctx.args
    show_args(a)
    ds = ctx.dataset(a.id)
    removed = sum(ds.remove_files(pat, recursive=not a.non_recursive) for pat in a.files)
    if a.json:
        print_json({"id": ds.id, "removed": removed})
    else:
        print(f"{removed} file(s) removed from {ds.id}")
    return 0


def sync(ctx: Context) -> int:
    from mountfs.api.dataset import Dataset

    a = ctx.args
    show_args(a)
    created = bool(a.parents or (a.project and a.name))
    if created:
        parents = [ctx.resolve(p) for p in a.parents]
        name = a.name or (Dataset(ctx.workspace, parents[-1]).name if parents else None)
        ds = Dataset.create(
            dataset_name=name,
            dataset_project=a.project,
            dataset_tags=a.tags,
            parent_datasets=parents,
            dataset_version=a.version,
            output_uri=a.storage or a.output_uri,
            chunk_size=_with_mb(_chunk(a)),
            workspace=ctx.workspace,
        )
    else:
        ds = ctx.dataset(a.id)
    removed, added, modified = ds.sync_folder(a.folder, dataset_path=a.dataset_folder)
    result: dict[str, Any] = {"id": ds.id, "removed": removed, "added": added, "modified": modified}
    if created and removed + added + modified == 0 and not a.skip_close:
        ds.discard()
        result["discarded"] = True
        result["id"] = None
        message = "no changes: the new version was discarded"
    elif a.skip_close:
        result["state"] = "draft"
        message = f"synced {ds.id} (draft, not closed)"
    else:
        # A version created above already has its storage; an existing draft may be given one now.
        storage = None if created else a.storage or a.output_uri
        ds.close(chunk_size=_with_mb(_chunk(a)), output_url=storage)
        result["state"] = "closed"
        message = f"synced and closed {ds.project}/{ds.name}@{ds.version} id={ds.id}"
    if a.json:
        print_json(result)
    else:
        print(f"removed {removed}, added {added}, modified {modified}")
        print(message)
    return 0


def upload(ctx: Context) -> int:
    a = ctx.args
    show_args(a)
    ds = ctx.dataset(a.id)
    ds.upload(output_url=a.storage, chunk_size=_with_mb(_chunk(a)), max_workers=a.max_workers)
    chunks = ds.get_num_chunks(include_parents=False)
    print(f"uploaded {ds.id}: {chunks} chunk(s) in {ds.get_default_storage()}")
    return 0


def close(ctx: Context) -> int:
    from mountfs.api.dataset import LAST_ID

    a = ctx.args
    show_args(a)
    ds = ctx.dataset(a.id)
    m = ds.close(
        upload=not a.disable_upload,
        chunk_size=_with_mb(_chunk(a)),
        max_workers=a.max_workers,
        output_url=a.storage,
    )
    ctx.workspace.catalogue.set_state(LAST_ID, None)
    if a.json:
        print_json(
            {"id": m.id, "project": m.project, "name": m.name, "version": m.version, "stats": vars(m.stats)}
        )
    else:
        s = m.stats
        print(
            f"closed {m.project}/{m.name}@{m.version} id={m.id}: {s.files} files; "
            f"+{s.added} ~{s.modified} -{s.removed}; {human_size(s.stored_bytes)} stored, {s.reused} reused"
        )
    return 0


def publish(ctx: Context) -> int:
    from mountfs.api.dataset import LAST_ID

    ds = ctx.dataset(ctx.args.id)
    ds.publish()
    ctx.workspace.catalogue.set_state(LAST_ID, None)
    print(f"published {ds.id}")
    return 0
