"""An HTTP proxy on 127.0.0.1 in front of an object-store emulator that injects the failures
clouds produce: 503 SlowDown answers, connections reset before or in the middle of an answer,
and slow answers. It also counts the bytes of every answer, which the benchmark uses to
compare bytes fetched with bytes needed.

One request per client connection (it answers with ``Connection: close``), so each request
is a unit the fault plan can pick. Plain threads; only for tests and bench.
"""

from __future__ import annotations

import random
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

FAULTS = ("503", "reset", "cut", "slow")


@dataclass
class Counters:
    requests: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    response_bytes: int = 0
    body_bytes: int = 0
    ranged_requests: int = 0
    request_lines: list[bytes] = field(default_factory=list)


def _read_head(sock: socket.socket) -> tuple[bytes, bytes] | None:
    """Read up to the end of the headers; returns (head, what was read past it)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    return head, rest


def _header(head: bytes, name: bytes) -> bytes | None:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return None


def _read_body(sock: socket.socket, head: bytes, rest: bytes) -> bytes:
    length = _header(head, b"content-length")
    if length is not None:
        want = int(length)
        while len(rest) < want:
            chunk = sock.recv(min(1 << 20, want - len(rest)))
            if not chunk:
                break
            rest += chunk
        return rest
    if (_header(head, b"transfer-encoding") or b"").lower() == b"chunked":
        while not rest.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        return rest
    return rest


def _with_connection_close(head: bytes) -> bytes:
    lines = [ln for ln in head.split(b"\r\n") if not ln.lower().startswith((b"connection:", b"keep-alive:"))]
    return b"\r\n".join([*lines, b"Connection: close"])


def _reset(sock: socket.socket) -> None:
    """Close with RST instead of FIN, as a dropped connection looks to the client."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class FaultProxy:
    """``FaultProxy(upstream_port)``; ``plan`` decides a fault (or None) for each request."""

    def __init__(self, upstream_port: int, *, seed: int = 7) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.rate = 0.0
        self.kinds: tuple[str, ...] = FAULTS
        self.slow_seconds = 0.3
        self.only: Callable[[bytes], bool] = lambda _request_line: True
        self.counters = Counters()
        self._rnd = random.Random(seed)
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._stopping = False
        self._thread = threading.Thread(target=self._serve, name="faultproxy", daemon=True)
        self._thread.start()

    def set_faults(self, rate: float, kinds: tuple[str, ...] = FAULTS) -> None:
        with self._lock:
            self.rate = rate
            self.kinds = kinds

    def reset_counters(self) -> None:
        with self._lock:
            self.counters = Counters()

    def close(self) -> None:
        self._stopping = True
        self._server.close()
        self._thread.join(5)

    def _pick(self, request_line: bytes) -> str | None:
        with self._lock:
            self.counters.requests += 1
            self.counters.request_lines.append(request_line)
            if self.rate <= 0 or not self.only(request_line) or self._rnd.random() >= self.rate:
                return None
            kind = self._rnd.choice(self.kinds)
            self.counters.faults[kind] = self.counters.faults.get(kind, 0) + 1
            return kind

    def _serve(self) -> None:
        self._server.settimeout(0.1)  # so close() is noticed at once
        while not self._stopping:
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        try:
            got = _read_head(client)
            if got is None:
                client.close()
                return
            head, rest = got
            if (_header(head, b"expect") or b"").lower() == b"100-continue":
                client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")  # or the client never sends the body
                head = b"\r\n".join(ln for ln in head.split(b"\r\n") if not ln.lower().startswith(b"expect:"))
            body = _read_body(client, head, rest)
            request_line = head.split(b"\r\n", 1)[0]
            fault = self._pick(request_line)
            if fault == "503":
                xml = b"<Error><Code>SlowDown</Code><Message>Reduce your request rate.</Message></Error>"
                head_only = request_line.startswith(b"HEAD ")  # an answer to HEAD has no body
                client.sendall(
                    b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\n"
                    + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(xml)
                    + (b"" if head_only else xml)
                )
                client.close()
                return
            if fault == "reset":
                _reset(client)
                return
            if fault == "slow":
                time.sleep(self.slow_seconds)
            answer = self._forward(_with_connection_close(head) + b"\r\n\r\n" + body)
            with self._lock:
                self.counters.response_bytes += len(answer)
                split = answer.find(b"\r\n\r\n")
                self.counters.body_bytes += len(answer) - split - 4 if split >= 0 else 0
                if _header(head, b"range") is not None:
                    self.counters.ranged_requests += 1
            if fault == "cut":
                # the headers and half the body, then a dropped connection
                split = answer.find(b"\r\n\r\n") + 4
                client.sendall(answer[: split + max(0, (len(answer) - split) // 2)])
                _reset(client)
                return
            client.sendall(answer)
            client.close()
        except OSError:
            client.close()

    def _forward(self, request: bytes) -> bytes:
        with socket.create_connection(self.upstream, timeout=120) as up:
            up.sendall(request)
            parts = []
            while True:
                chunk = up.recv(1 << 20)
                if not chunk:
                    break
                parts.append(chunk)
        answer = b"".join(parts)
        split = answer.find(b"\r\n\r\n")
        if split < 0:
            return answer
        return _with_connection_close(answer[:split]) + answer[split:]
