"""Whole datasets and housekeeping: delete, squash, rename, move, set-description, gc."""

from __future__ import annotations

from typing import Any

from mountfs.cli.main import Context, add_id, add_json, command, show_args
from mountfs.cli.output import human_size, print_json


def register(sub: Any) -> None:
    p = command(
        sub, "delete", delete, "delete a version (refused while others depend on it) or a whole dataset"
    )
    add_id(p, last_used=False)
    p.add_argument("--project", help="with --name: the dataset's project")
    p.add_argument("--name", help="with --project: the dataset's name")
    p.add_argument("--version", help="with --project and --name: this version (default: the highest)")
    p.add_argument(
        "--force", action="store_true", help="also delete published versions; needed for --entire-dataset"
    )
    p.add_argument("--entire-dataset", action="store_true", help="delete every version of the dataset")
    add_json(p)

    p = command(
        sub, "squash", squash, "a new standalone version holding the merged files of several versions"
    )
    p.add_argument("--name", required=True, help="name of the new version")
    p.add_argument(
        "--ids", nargs="+", required=True, metavar="ID", help="versions to merge, in order (later wins)"
    )
    p.add_argument("--project", help="project of the new version (default: the first version's)")
    p.add_argument("--storage", help="data location URL for the new chunks")
    p.add_argument("--verbose", action="store_true", help="print the arguments")
    add_json(p)

    p = command(sub, "rename", rename, "rename a dataset (every version)")
    p.add_argument("--new-name", required=True, help="the new name")
    p.add_argument("--project", required=True, help="the dataset's project")
    p.add_argument("--name", required=True, help="the dataset's current name")

    p = command(sub, "move", move, "move a dataset (every version) to another project")
    p.add_argument("--new-project", required=True, help="the new project")
    p.add_argument("--project", required=True, help="the dataset's current project")
    p.add_argument("--name", required=True, help="the dataset's name")

    p = command(sub, "set-description", set_description, "set a version's description")
    add_id(p)
    p.add_argument("--description", required=True, help="the new description")

    p = command(sub, "gc", gc, "remove store objects no version or draft refers to, and stale local state")
    p.add_argument("--dry-run", action="store_true", help="only report what would be removed")
    p.add_argument(
        "--grace",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="keep objects younger than this (uploads in progress elsewhere); default 3600",
    )
    add_json(p)


def delete(ctx: Context) -> int:
    from mountfs.api.dataset import Dataset

    a = ctx.args
    ids = Dataset.delete(
        dataset_id=ctx.resolve(a.id) if a.id else None,
        dataset_project=a.project,
        dataset_name=a.name,
        dataset_version=a.version,
        force=a.force,
        entire_dataset=a.entire_dataset,
        workspace=ctx.workspace,
    )
    if a.json:
        print_json({"deleted": ids})
    else:
        for vid in ids:
            print(f"deleted {vid}")
    return 0


def squash(ctx: Context) -> int:
    from mountfs.api.dataset import Dataset

    a = ctx.args
    show_args(a)
    ds = Dataset.squash(
        a.name,
        dataset_ids=[ctx.resolve(i) for i in a.ids],
        output_url=a.storage,
        dataset_project=a.project,
        workspace=ctx.workspace,
    )
    if a.json:
        print_json({"id": ds.id, "project": ds.project, "name": ds.name, "version": ds.version})
    else:
        print(f"squashed into {ds.project}/{ds.name}@{ds.version} id={ds.id}")
    return 0


def rename(ctx: Context) -> int:
    from mountfs.api.dataset import LAST_ID, Dataset

    a = ctx.args
    n = Dataset.rename(a.new_name, a.project, a.name, workspace=ctx.workspace)
    ctx.workspace.catalogue.set_state(LAST_ID, None)
    print(f"renamed {n} version(s) of {a.project}/{a.name} to {a.project}/{a.new_name}")
    return 0


def move(ctx: Context) -> int:
    from mountfs.api.dataset import LAST_ID, Dataset

    a = ctx.args
    n = Dataset.move_to_project(a.new_project, a.project, a.name, workspace=ctx.workspace)
    ctx.workspace.catalogue.set_state(LAST_ID, None)
    print(f"moved {n} version(s) of {a.project}/{a.name} to {a.new_project}/{a.name}")
    return 0


def set_description(ctx: Context) -> int:
    ds = ctx.dataset(ctx.args.id)
    ds.set_description(ctx.args.description)
    print(f"description of {ds.id} set")
    return 0


def gc(ctx: Context) -> int:
    from mountfs.api import admin

    a = ctx.args
    report = admin.gc(ctx.workspace, dry_run=a.dry_run, grace_seconds=a.grace)
    if a.json:
        print_json(
            {
                "dry_run": a.dry_run,
                "orphan_objects": report.orphan_objects,
                "orphan_bytes": report.orphan_bytes,
                "local_removed": report.local_removed,
            }
        )
        return 0
    verb = "would remove" if a.dry_run else "removed"
    for obj in report.orphan_objects:
        print(f"{verb} {obj}")
    for path in report.local_removed:
        print(f"{verb} {path}")
    print(
        f"gc: {verb} {len(report.orphan_objects)} orphan object(s) ({human_size(report.orphan_bytes)}) "
        f"and {len(report.local_removed)} local item(s)"
    )
    return 0
