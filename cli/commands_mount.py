"""Mounts: mount (and the `dsmount ID MOUNTPOINT` shorthand), diff, commit, unmount, status, stats,
prefetch."""

from __future__ import annotations

import time
from typing import Any

from mountfs.cli.main import Context, add_json, command
from mountfs.cli.output import human_size, print_json, print_table

from mountfs.errors import MountError, UsageError


def register(sub: Any) -> None:
    p = command(
        sub,
        "mount",
        mount,
        "mount a closed version as a file system (read-only unless --writable); returns once it answers",
    )
    p.add_argument("ref", metavar="ID", help="dataset version: id, id prefix or project/name[@version]")
    p.add_argument(
        "mountpoint", metavar="MOUNTPOINT", help="an empty folder, or /dev/fd/N (a mounted /dev/fuse)"
    )
    p.add_argument("-f", "--foreground", action="store_true", help="serve in this process until stopped")
    p.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="with -f: log lines on stdout as text or as one JSON object per line (default text)",
    )
    p.add_argument(
        "--mount-path",
        metavar="PATH",
        help="with MOUNTPOINT /dev/fd/N: where the helper mounted it (status and unmount use this path)",
    )
    p.add_argument(
        "--writable", action="store_true", help="accept writes, kept in an overlay on local disk (see diff)"
    )
    p.add_argument(
        "--overlay", metavar="DIR", help="with --writable: the overlay folder (default: in the mount's state)"
    )
    p.add_argument("--allow-other", action="store_true", help="let other users read the mount")
    p.add_argument("--uid", type=int, help="owner shown for every file (default: yours)")
    p.add_argument("--gid", type=int, help="group shown for every file (default: yours)")
    p.add_argument("--prefetch", action="store_true", help="warm the cache with every file once mounted")
    p.add_argument("--nonempty", action="store_true", help="allow mounting over a non-empty folder")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the mount (default 60)")
    p.add_argument("--debug", action="store_true", help="log every request's details")
    add_json(p)

    p = command(sub, "diff", diff, "a writable mount's pending changes, like git status")
    p.add_argument("mountpoint", metavar="MOUNTPOINT")
    add_json(p)

    p = command(
        sub, "commit", commit, "make a writable mount's changes a child version, and mount that version"
    )
    p.add_argument("mountpoint", metavar="MOUNTPOINT")
    p.add_argument("--name", help="dataset name of the child (default: the mounted version's)")
    p.add_argument("--version", help="version number of the child (default: the next free one)")
    p.add_argument("--tags", nargs="+", help="tags of the child (default: the mounted version's)")
    p.add_argument("--description", help="description of the child (default: the mounted version's)")
    p.add_argument(
        "--no-close",
        action="store_true",
        help="upload the changes as a draft and leave it open; the mount keeps its changes",
    )
    add_json(p)

    p = command(sub, "unmount", unmount, "unmount a dsmount mount (or clear a dead one)")
    p.add_argument("mountpoint", metavar="MOUNTPOINT")
    p.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for the daemon (default 15)")

    p = command(sub, "status", status, "state of one mount, or of every mount of this home")
    p.add_argument("mountpoint", metavar="MOUNTPOINT", nargs="?")
    p.add_argument("--ready", action="store_true", help="exit 0 only if the mount is mounted and answering")
    p.add_argument(
        "--timeout", type=float, default=5.0, help="seconds to wait for the daemon and the mount (default 5)"
    )
    add_json(p)

    p = command(sub, "stats", stats, "a mount's cache hits and misses, bytes fetched, operation latencies")
    p.add_argument("mountpoint", metavar="MOUNTPOINT")
    add_json(p)

    p = command(sub, "prefetch", prefetch, "warm the cache with a version's files (all, or PATHS)")
    p.add_argument("ref", metavar="ID", help="dataset version, or a mount point served by dsmount")
    p.add_argument("paths", metavar="PATHS", nargs="*", help="files or folders (default: everything)")
    p.add_argument("--wait", action="store_true", help="with a mount point: wait until the prefetch ends")
    add_json(p)


def _home(ctx: Context) -> Any:
    return ctx.workspace.settings.home


def mount(ctx: Context) -> int:
    from mountfs.daemon.mount import foreground, mount

    args = ctx.args
    ws = ctx.workspace
    ds = ctx.dataset(args.ref)
    options = {
        "allow_other": args.allow_other,
        "uid": args.uid,
        "gid": args.gid,
        "prefetch": args.prefetch,
        "allow_nonempty": args.nonempty,
        "debug": args.debug,
        "mount_path": args.mount_path,
        "writable": args.writable,
        "overlay": args.overlay,
    }
    if args.foreground:
        # the daemon opens its own workspace: nothing of this one stays open while serving
        return foreground(
            ws, ds.id, args.mountpoint, log_format=args.log_format, before_serving=ctx.close, **options
        )
    if args.log_format != "text":
        raise UsageError("--log-format is for -f (a background daemon writes text to its daemon.log)")
    handle = mount(ws, ds.id, args.mountpoint, timeout=args.timeout, **options)
    if args.json:
        out = {"mountpoint": handle.path, "version": handle.version, "pid": handle.pid}
        print_json({**out, "notice": handle.notice} if handle.notice else out)
        return 0
    if handle.notice:
        print(f"note: {handle.notice}")
    label = handle.status().get("label") or f"{ds.project}/{ds.name}@{ds.version}"
    print(f"mounted {label} ({handle.version}) at {handle.path}")
    return 0


_STATUS_WIDTH = len("modified:  ")


def diff(ctx: Context) -> int:
    """Asks the daemon (control socket), which reads its overlay: the one source of truth while mounted."""
    from mountfs.daemon.launch import ask

    answer = ask(_home(ctx), ctx.args.mountpoint, "diff")
    changes = answer["changes"]
    if ctx.args.json:
        print_json(answer)
        return 0
    if not changes:
        print(f"no changes to {answer['version']} at {answer['mountpoint']}")
        return 0
    for c in changes:
        what = f"{c['old_path']} -> {c['path']}" if c["status"] == "renamed" else c["path"]
        if c["kind"] == "dir":
            what += "/"
        print(f"{c['status'] + ':':<{_STATUS_WIDTH}}{what}")
    return 0


def commit(ctx: Context) -> int:
    from mountfs.daemon.mount import commit

    a = ctx.args
    answer = commit(
        _home(ctx),
        a.mountpoint,
        name=a.name,
        version=a.version,
        tags=a.tags,
        description=a.description,
        close=not a.no_close,
    )
    if a.json:
        print_json(answer)
    elif not answer["committed"]:
        print(f"nothing to commit: no changes to {answer['parent']} at {answer['mountpoint']}")
    elif answer["closed"]:
        print(
            f"committed {answer['changes']} change(s) as {answer['project']}/{answer['name']}@"
            f"{answer['version']}; {answer['mountpoint']} now serves it"
        )
        print(answer["id"])
    else:
        print(
            f"uploaded {answer['changes']} change(s) as draft {answer['project']}/{answer['name']}@"
            f"{answer['version']}; close it with `dsmount close {answer['id']}`"
        )
        print(answer["id"])
    return 0


def unmount(ctx: Context) -> int:
    from mountfs.daemon.launch import unmount

    done = unmount(_home(ctx), ctx.args.mountpoint, timeout=ctx.args.timeout)
    print(f"{done}: {ctx.args.mountpoint}")
    return 0


def status(ctx: Context) -> int:
    from mountfs.daemon.launch import status

    found = status(_home(ctx), ctx.args.mountpoint, timeout=ctx.args.timeout)
    ready = bool(found) and all(s.get("ready") for s in found)
    if ctx.args.json:
        print_json(found[0] if ctx.args.mountpoint else found)
    elif not found:
        print("no mounts")
    else:
        rows = [
            [
                s["mountpoint"],
                s.get("state", ""),
                s.get("label") or s.get("version", ""),
                str(s.get("pid", "")),
                str(s.get("files", "")),
                human_size(int(s["bytes"])) if "bytes" in s else "",
            ]
            for s in found
        ]
        print_table(["MOUNTPOINT", "STATE", "VERSION", "PID", "FILES", "SIZE"], rows)
    if ctx.args.ready and not ready:
        return MountError.exit_code
    return 0


def stats(ctx: Context) -> int:
    from mountfs.daemon.launch import ask

    s = ask(_home(ctx), ctx.args.mountpoint, "stats")
    if ctx.args.json:
        print_json(s)
        return 0
    r = s["reads"]
    print(f"{s['mountpoint']}: {s.get('label', '')} ({s['version']}), up {s['uptime_s']:.0f} s")
    print(
        f"served {human_size(r['served_bytes'])}; fetched {human_size(r['store_bytes'])} from the store "
        f"in {r['store_reads']} reads; cache hits {r['cache_hits']}, misses {r['cache_misses']}, "
        f"fills {r['cache_fills']}; corrupt {r['corrupt']}"
    )
    print(f"daemon memory {human_size(s['rss_bytes'])}; cache {human_size(s['cache_bytes'])}")
    if "copied_up" in s:
        copied = s["copied_up"]
        print(f"copied up {copied['files']} files ({human_size(copied['bytes'])}); {s['inodes']} inodes")
    rows = [
        [op, str(int(v["count"])), str(int(v["errors"])), f"{v['mean_us']:.0f}", f"{v['p99_us']:.0f}"]
        for op, v in s["ops"].items()
    ]
    print_table(["OPERATION", "COUNT", "ERRORS", "MEAN µs", "P99 µs"], rows)
    return 0


def prefetch(ctx: Context) -> int:
    import os

    args = ctx.args
    if os.path.isdir(args.ref) and _served(ctx, args.ref):
        from mountfs.daemon.launch import ask

        ask(_home(ctx), args.ref, "prefetch", paths=args.paths)
        if args.wait:
            while ask(_home(ctx), args.ref, "status")["prefetch"].get("running", True):
                time.sleep(0.2)
        state = ask(_home(ctx), args.ref, "status")["prefetch"]
        if args.json:
            print_json(state)
        else:
            print(f"prefetch {'running' if state.get('running') else 'done'} on {args.ref}")
        return 0
    from mountfs.api.content import ContentReader

    ds = ctx.dataset(args.ref)
    ds._need_closed()
    ws = ctx.workspace
    index = ws.tree(ds.id)
    for p in args.paths:
        clean = p.strip("/")
        if index.get(clean) is None and not index.is_dir(clean):
            raise UsageError(f"no file or folder {p!r} in {ds.id}")
    reader = ContentReader(ws)
    started = time.monotonic()
    files = nbytes = 0
    try:
        for part in args.paths or [""]:
            n, b = reader.prefetch(index.iter_entries(part.strip("/")))
            files += n
            nbytes += b
    finally:
        reader.close()
    seconds = time.monotonic() - started
    if args.json:
        print_json({"files": files, "bytes": nbytes, "seconds": round(seconds, 3)})
    else:
        print(f"prefetched {files} files ({human_size(nbytes)}) of {ds.id} in {seconds:.1f} s")
    return 0


def _served(ctx: Context, path: str) -> bool:
    from mountfs.daemon.launch import status

    return status(_home(ctx), path)[0].get("state") == "mounted"
