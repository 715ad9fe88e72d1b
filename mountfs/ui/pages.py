"""The HTML pages of ``dsmount ui`` and their static assets.

Every page is the same small shell (``static/index.html``): it loads ``static/app.js``, an ES
module that reads the URL and draws the page from the JSON API. Nothing is built: the
JavaScript, the CSS and the vendored libraries (cytoscape.js with cytoscape-dagre for the
lineage graph, under ``static/vendor/``) are served as they are, so the page works offline.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).with_name("static")
"""HTML, JavaScript, CSS and vendored libraries, served under ``/static``."""

_SHELL = STATIC_DIR / "index.html"


async def _shell(request: Request) -> Response:
    """The page shell; the browser's script draws the page the URL names."""
    return FileResponse(_SHELL, media_type="text/html", headers={"Cache-Control": "no-cache"})


routes: list[BaseRoute] = [
    Route("/", _shell, methods=["GET"], name="page_datasets"),
    Route("/v/{ref:path}", _shell, methods=["GET"], name="page_version"),
    Route("/compare", _shell, methods=["GET"], name="page_compare"),
    Route("/mounts", _shell, methods=["GET"], name="page_mounts"),
    Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
]
"""Routes the server mounts beside ``/api``: the page shells and ``/static``."""
