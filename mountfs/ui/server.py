"""The web server of ``dsmount ui``: the JSON API under ``/api`` plus the pages beside it.

Every endpoint's work (SQLite, the store, tree indexes) runs in a worker thread, never on
the event loop. A Catalogue may be used from one thread at a time, so requests borrow a
Workspace from a small pool (one request per Workspace at a time; they all open the same
catalogue file, which SQLite's WAL lets several connections read at once). The registry is
listed again at most every ``refresh_every`` seconds, by the version list; a reference not
yet known triggers a refresh of its own (Workspace.resolve).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import queue
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import anyio.to_thread
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from mountfs.api.workspace import Workspace
from mountfs.errors import (
    AmbiguousReferenceError,
    MountfsError,
    NotFoundError,
    StateError,
    UsageError,
)
from mountfs.ui import queries
from mountfs.ui.pages import routes as page_routes

T = TypeVar("T")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
POOL_SIZE = 4
REFRESH_EVERY = 3.0


class ApiError(Exception):
    """An answer other than 200: its status and one line."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def status_of(exc: MountfsError) -> int:
    """HTTP status of a dsmount error: 404 not found, 409 wrong state, 400 usage, else 500."""
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, AmbiguousReferenceError | UsageError):
        return 400
    if isinstance(exc, StateError) or exc.exit_code == StateError.exit_code:
        return 409
    return 500


def one_line(text: str) -> str:
    return " ".join(text.split()) or "error"


class WorkspacePool:
    """Up to ``size`` Workspaces over one store and home, each used by one thread at a time."""

    def __init__(self, factory: Callable[[], Workspace], size: int = POOL_SIZE, refresh_every: float = 3.0):
        self._factory = factory
        self._size = size
        self._idle: queue.LifoQueue[Workspace] = queue.LifoQueue()
        self._made: list[Workspace] = []
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._refreshed_at = float("-inf")
        self.refresh_every = refresh_every

    @contextlib.contextmanager
    def workspace(self) -> Iterator[Workspace]:
        ws: Workspace | None = None
        try:
            ws = self._idle.get_nowait()
        except queue.Empty:
            with self._lock:
                if len(self._made) < self._size:
                    ws = self._factory()
                    self._made.append(ws)
            if ws is None:
                ws = self._idle.get()
        try:
            yield ws
        finally:
            self._idle.put(ws)

    def refresh(self, ws: Workspace, *, force: bool = False) -> None:
        """List the registry again unless another request did within ``refresh_every`` seconds."""
        with self._refresh_lock:
            if not force and time.monotonic() - self._refreshed_at < self.refresh_every:
                return
            ws.refresh()
            self._refreshed_at = time.monotonic()

    def invalidate(self) -> None:
        """The next list request refreshes (after this server changed the registry)."""
        with self._refresh_lock:
            self._refreshed_at = float("-inf")

    def close(self) -> None:
        with self._lock:
            made, self._made = self._made, []
        for ws in made:
            with contextlib.suppress(Exception):
                ws.close()


def _int(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer, not {raw!r}") from None


def _list(request: Request, name: str) -> list[str]:
    return [v for v in request.query_params.getlist(name) if v]


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        raise ApiError(400, 'send a JSON body with "confirm": true')
    try:
        body = json.loads(raw)
    except ValueError:
        raise ApiError(400, "the body is not JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    if body.get("confirm") is not True:
        raise ApiError(400, 'not confirmed: send "confirm": true')
    return body


def create_app(
    workspace_factory: Callable[[], Workspace] | None = None,
    *,
    store: str | None = None,
    home: str | os.PathLike[str] | None = None,
    allow_changes: bool = False,
    pool_size: int = POOL_SIZE,
    refresh_every: float = REFRESH_EVERY,
) -> Starlette:
    """The ASGI app: ``/api/...`` over Workspaces made by ``workspace_factory`` (default: one
    over ``store`` and ``home``), then the pages of ``mountfs.ui.pages``.

    Without ``allow_changes`` every action answers 403.
    """
    factory = workspace_factory or (lambda: Workspace(store=store, home=home))
    pool = WorkspacePool(factory, pool_size, refresh_every)

    async def run(work: Callable[[Workspace], T]) -> T:
        def call() -> T:
            with pool.workspace() as ws:
                return work(ws)

        return await anyio.to_thread.run_sync(call)

    def endpoint(
        handler: Callable[[Request], Awaitable[Any]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def wrapped(request: Request) -> Response:
            try:
                return JSONResponse(await handler(request))
            except ApiError as exc:
                return JSONResponse({"error": one_line(exc.message)}, status_code=exc.status)
            except MountfsError as exc:
                return JSONResponse(
                    {"error": one_line(str(exc) or type(exc).__name__)}, status_code=status_of(exc)
                )
            except Exception as exc:
                message = f"internal error: {type(exc).__name__}: {one_line(str(exc))}"
                return JSONResponse({"error": message}, status_code=500)

        return wrapped

    def action(
        handler: Callable[[Request, dict[str, Any]], Awaitable[Any]],
    ) -> Callable[[Request], Awaitable[Any]]:
        async def wrapped(request: Request) -> Any:
            if not allow_changes:
                raise ApiError(403, queries.READ_ONLY)
            body = await _body(request)
            result = await handler(request, body)
            pool.invalidate()
            return result

        return wrapped

    async def info(request: Request) -> Any:
        return await run(lambda ws: queries.info(ws, allow_changes=allow_changes))

    async def datasets(request: Request) -> Any:
        qp = request.query_params
        offset, limit = _int(request, "offset", 0), _int(request, "limit", 50)

        def work(ws: Workspace) -> Any:
            pool.refresh(ws)
            return queries.datasets(
                ws,
                q=qp.get("q", ""),
                project=qp.get("project"),
                name=qp.get("name"),
                tags=_list(request, "tag") + _list(request, "tags"),
                state=_list(request, "state"),
                sort=qp.get("sort") or "created",
                order=qp.get("order"),
                offset=offset,
                limit=limit,
            )

        return await run(work)

    async def version(request: Request) -> Any:
        ref = request.path_params["ref"]
        return await run(lambda ws: queries.version(ws, ref))

    async def changes(request: Request) -> Any:
        ref = request.path_params["ref"]
        offset, limit = _int(request, "offset", 0), _int(request, "limit", 200)
        status = _list(request, "status")
        return await run(lambda ws: queries.changes(ws, ref, status=status, offset=offset, limit=limit))

    async def tree(request: Request) -> Any:
        ref = request.path_params["ref"]
        offset, limit = _int(request, "offset", 0), _int(request, "limit", 200)
        path = request.query_params.get("path", "")
        return await run(lambda ws: queries.tree(ws, ref, path=path, offset=offset, limit=limit))

    async def lineage(request: Request) -> Any:
        ref = request.path_params["ref"]
        return await run(lambda ws: queries.lineage(ws, ref))

    async def compare(request: Request) -> Any:
        qp = request.query_params
        offset, limit = _int(request, "offset", 0), _int(request, "limit", 200)
        source, target = qp.get("source", ""), qp.get("target", "")
        status = _list(request, "status")
        return await run(
            lambda ws: queries.compare(ws, source, target, status=status, offset=offset, limit=limit)
        )

    async def mounts(request: Request) -> Any:
        # No catalogue needed, but the home is the workspace's.
        return await run(queries.mounts)

    async def publish(request: Request, body: dict[str, Any]) -> Any:
        ref = request.path_params["ref"]
        return await run(lambda ws: queries.publish(ws, ref))

    async def delete(request: Request, body: dict[str, Any]) -> Any:
        ref = request.path_params["ref"]
        force = body.get("force") is True
        return await run(lambda ws: queries.delete(ws, ref, force=force))

    async def description(request: Request, body: dict[str, Any]) -> Any:
        ref = request.path_params["ref"]
        text = body.get("description")
        if not isinstance(text, str):
            raise ApiError(400, 'give "description": a string')
        return await run(lambda ws: queries.set_description(ws, ref, text))

    async def tags(request: Request, body: dict[str, Any]) -> Any:
        ref = request.path_params["ref"]
        given = body.get("tags")
        if not isinstance(given, list) or not all(isinstance(t, str) for t in given):
            raise ApiError(400, 'give "tags": a list of strings')
        return await run(lambda ws: queries.set_tags(ws, ref, given))

    async def not_found(request: Request) -> Any:
        raise ApiError(404, f"no such API endpoint: {request.method} {request.url.path}")

    # {ref:path}: a name reference (project/name[@version]) holds slashes. The endpoint words
    # after it are tried first, so a dataset named like one of them needs @version or its id.
    api: list[BaseRoute] = [
        Route("/api/info", endpoint(info)),
        Route("/api/datasets", endpoint(datasets)),
        Route("/api/compare", endpoint(compare)),
        Route("/api/mounts", endpoint(mounts)),
        Route("/api/versions/{ref:path}/changes", endpoint(changes)),
        Route("/api/versions/{ref:path}/tree", endpoint(tree)),
        Route("/api/versions/{ref:path}/lineage", endpoint(lineage)),
        Route("/api/versions/{ref:path}/publish", endpoint(action(publish)), methods=["POST"]),
        Route("/api/versions/{ref:path}/delete", endpoint(action(delete)), methods=["POST"]),
        Route("/api/versions/{ref:path}/description", endpoint(action(description)), methods=["POST"]),
        Route("/api/versions/{ref:path}/tags", endpoint(action(tags)), methods=["POST"]),
        Route("/api/versions/{ref:path}", endpoint(version)),
        Route("/api/{rest:path}", endpoint(not_found), methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        code = exc.status_code if isinstance(exc, HTTPException) else 500
        detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": one_line(str(detail))}, status_code=code)
        return Response(str(detail), status_code=code, media_type="text/plain")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            pool.close()

    app = Starlette(
        routes=[*api, *page_routes],
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )
    app.state.pool = pool
    app.state.allow_changes = allow_changes
    return app


class _Server(uvicorn.Server):
    """uvicorn's server, calling ``on_ready(port)`` once it listens."""

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[int], None]) -> None:
        super().__init__(config)
        self._on_ready = on_ready
        self.port = 0

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """SIGINT and SIGTERM stop the server, which then returns normally (exit status 0);
        uvicorn's own version re-raises the signal after the shutdown."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and sockets:
            self.port = int(sockets[0].getsockname()[1])
            self._on_ready(self.port)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: one the system picks), or a one-line UsageError."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UsageError(f"cannot listen on {host!r}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(f"port {port} on {host} is in use; pick another with --port") from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise UsageError(f"not allowed to listen on {host}:{port}; pick a port above 1023") from None
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def url_of(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def serve(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    allow_changes: bool = False,
    *,
    store: str | None = None,
    home: str | os.PathLike[str] | None = None,
    workspace_factory: Callable[[], Workspace] | None = None,
    on_ready: Callable[[str, int], None] | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM; ``on_ready(url, port)`` once the server listens."""
    # Fail early, on the terminal, if the home cannot be opened or the store read.
    factory = workspace_factory or (lambda: Workspace(store=store, home=home))
    ws = factory()
    try:
        ws.refresh()
    finally:
        ws.close()
    sock = bind(host, port)
    app = create_app(factory, allow_changes=allow_changes)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    server = _Server(config, lambda p: on_ready(url_of(host, p), p) if on_ready else None)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
