"""The HTML pages of ``dsmount ui`` and their static assets (filled in by the front end)."""

from __future__ import annotations

from starlette.routing import BaseRoute

routes: list[BaseRoute] = []
"""Routes the server mounts beside ``/api``: the page shells and ``/static``."""
