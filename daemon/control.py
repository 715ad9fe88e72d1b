"""The control socket: one JSON request per line, one JSON answer per line.

Requests are ``{"op": "status" | "stats" | "diff" | "commit" | "unmount" | "prefetch", ...}``; answers are
objects, with ``"error"`` set when the request failed. Only the mounting user can
connect (socket mode 0600 in a 0700 folder).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from mountfs.errors import (
    IntegrityError,
    MountError,
    MountfsError,
    NotFoundError,
    StateError,
    StoreError,
    UsageError,
)

log = logging.getLogger("dsmount.daemon")
_ERRORS: dict[int, type[MountfsError]] = {
    e.exit_code: e
    for e in (MountfsError, UsageError, NotFoundError, StateError, StoreError, IntegrityError, MountError)
}
"""An error answered over the socket comes back as the class of its exit code."""
Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
_MAX_LINE = 1 << 20


def request(path: str, op: str, *, timeout: float | None = 5.0, **args: Any) -> dict[str, Any]:
    """Send one request and wait for its answer (``timeout`` None: as long as it takes, for a
    commit); MountError if the daemon does not answer."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(path)
            s.sendall(json.dumps({"op": op, **args}).encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                part = s.recv(65536)
                if not part:
                    break
                buf += part
                if len(buf) > _MAX_LINE:
                    raise MountError("the daemon's answer is too long")
    except (OSError, TimeoutError) as exc:
        raise MountError(f"the mount daemon does not answer ({exc.strerror or exc})") from None
    try:
        answer = json.loads(buf)
    except ValueError:
        raise MountError("the mount daemon gave no answer") from None
    if not isinstance(answer, dict):
        raise MountError("the mount daemon gave a malformed answer")
    if answer.get("error"):
        code = answer.get("exit_code")
        cls = _ERRORS.get(code, MountError) if isinstance(code, int) else MountError
        raise cls(str(answer["error"]))
    return answer


async def serve(path: str, handler: Handler, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Listen on ``path`` until cancelled; each connection may send several requests."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        await sock.bind(path)
    finally:
        os.umask(old)
    sock.listen(16)
    listener = trio.SocketListener(sock)
    task_status.started()
    try:

        async def on_connection(stream: trio.SocketStream) -> None:
            await _connection(stream, handler)

        await trio.serve_listeners(on_connection, [listener])
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


async def _connection(stream: trio.abc.Stream, handler: Handler) -> None:
    buf = b""
    async with stream:
        while True:
            try:
                part = await stream.receive_some(65536)
            except trio.BrokenResourceError:
                return
            if not part:
                return
            buf += part
            if len(buf) > _MAX_LINE:
                return
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                try:
                    req = json.loads(line)
                    if not isinstance(req, dict):
                        raise ValueError("not an object")
                    answer = await handler(req)
                except ValueError as exc:
                    answer = {"error": f"bad request: {exc}", "exit_code": UsageError.exit_code}
                except MountfsError as exc:  # the caller's error, with the exit code it would have had
                    answer = {"error": str(exc), "exit_code": exc.exit_code}
                except Exception as exc:  # a bug must not take the mount down with it
                    log.exception(
                        "control request %r failed", req.get("op") if isinstance(req, dict) else "?"
                    )
                    answer = {"error": f"internal error: {exc}", "exit_code": MountfsError.exit_code}
                try:
                    await stream.send_all(json.dumps(answer).encode() + b"\n")
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
