"""``dsmount ui``: a local web page (and JSON API) over the same catalogue and store."""

from __future__ import annotations

import json
import sys
from typing import Any

from mountfs.cli.main import Context, add_json, command

READ_ONLY_NOTE = "read-only; --allow-changes enables publish, delete, description and tags"
CHANGES_NOTE = "changes allowed: publish, delete, description and tags"


def register(sub: Any) -> None:
    p = command(sub, "ui", ui, "serve a local web page to browse, search and compare versions")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine)"
    )
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free port)")
    p.add_argument(
        "--allow-changes",
        action="store_true",
        help="let the page publish, delete, and set descriptions and tags (default: read-only)",
    )
    add_json(p)


def ui(ctx: Context) -> int:
    from mountfs.api.workspace import Workspace
    from mountfs.errors import UsageError
    from mountfs.ui.server import serve

    a = ctx.args
    if not 0 <= a.port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535, not {a.port}")

    def ready(url: str, port: int) -> None:
        if a.json:
            doc = {"url": url, "host": a.host, "port": port, "allow_changes": a.allow_changes}
            print(json.dumps(doc), flush=True)
        else:
            note = CHANGES_NOTE if a.allow_changes else READ_ONLY_NOTE
            print(f"dsmount ui: {url} ({note})", flush=True)

    serve(
        a.host,
        a.port,
        a.allow_changes,
        workspace_factory=lambda: Workspace(store=a.store, home=a.home),
        on_ready=ready,
    )
    print("dsmount ui: stopped", file=sys.stderr)
    return 0
