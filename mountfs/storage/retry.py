"""Retries for object-store calls: which failures are worth another try, and how long to wait.

Clouds fail transiently all the time (503 SlowDown, 429, a reset connection, a read timeout)
and every caller would otherwise need its own loop. Only whole-object operations are retried,
which are idempotent by construction here: objects are immutable and keyed by content or id,
so writing the same bytes twice is harmless, and an exclusive create that may have succeeded
before its answer was lost is settled by the caller reading the object back.

The policy comes from the environment so a training job can be more patient than a laptop:
DSMOUNT_RETRIES (attempts after the first, default 6) and DSMOUNT_RETRY_DEADLINE (seconds for
one operation with all its retries, default 120). Backoff is exponential with full jitter
(AWS's recommendation), from 0.1 s up to 5 s.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from mountfs.errors import UsageError

log = logging.getLogger("dsmount.store")

T = TypeVar("T")

_TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
_TRANSIENT_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "InternalError",
    "ServiceUnavailable",
    "ServerBusy",
    "OperationTimedOut",
    "RequestLimitExceeded",
    "TooManyRequests",
}
_TRANSIENT_ERRNOS = {
    errno.ECONNRESET,
    errno.ECONNREFUSED,
    errno.ECONNABORTED,
    errno.EPIPE,
    errno.ETIMEDOUT,
    errno.EAGAIN,
    errno.EBUSY,
    errno.ENETRESET,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
}
# Class names of the clients' network and timeout errors; matched by name so this module
# needs none of the cloud SDKs installed.
_TRANSIENT_NAMES = {
    "ClientConnectionError",
    "ClientOSError",
    "ClientPayloadError",
    "ServerDisconnectedError",
    "ServerTimeoutError",
    "ConnectionTimeoutError",
    "SocketTimeoutError",
    "EndpointConnectionError",
    "ConnectionClosedError",
    "ReadTimeoutError",
    "ConnectTimeoutError",
    "ResponseStreamingError",
    "IncompleteReadError",
    "ServiceRequestError",
    "ServiceResponseError",
    "IncompleteRead",
    "TransientError",
    "RemoteDisconnected",
}


class TransientError(Exception):
    """Raised by our own code for an answer that should be retried (a short body, say)."""


def _status(exc: BaseException) -> int | None:
    for attr in ("status_code", "status", "code"):
        value = getattr(exc, attr, None)
        if isinstance(value, int) and 100 <= value < 600:
            return value
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        meta = response.get("ResponseMetadata") or {}
        value = meta.get("HTTPStatusCode")
        if isinstance(value, int):
            return value
    return None


def _code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = (response.get("Error") or {}).get("Code")
        if isinstance(code, str):
            return code
    code = getattr(exc, "error_code", None)
    return code if isinstance(code, str) else None


def _one_transient(exc: BaseException) -> bool:
    if isinstance(exc, FileNotFoundError | FileExistsError | PermissionError | IsADirectoryError):
        return False
    if isinstance(exc, TransientError | ConnectionError | TimeoutError):
        return True
    if type(exc).__name__ in _TRANSIENT_NAMES:
        return True
    if isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS:
        return True
    status = _status(exc)
    if status is not None and status in _TRANSIENT_STATUS:
        return True
    code = _code(exc)
    if code is not None and code in _TRANSIENT_CODES:
        return True
    text = str(exc)
    return any(c in text for c in ("SlowDown", "503 Service", "Service Unavailable", "Connection reset"))


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` (or anything it was raised from) is worth retrying."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, FileNotFoundError | FileExistsError | PermissionError):
            return False  # an answer, not a failure to get one
        if _one_transient(cur):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    deadline: float = 120.0
    base: float = 0.1
    cap: float = 5.0

    @classmethod
    def from_env(cls) -> RetryPolicy:
        try:
            attempts = int(os.environ.get("DSMOUNT_RETRIES", "6"))
            deadline = float(os.environ.get("DSMOUNT_RETRY_DEADLINE", "120"))
        except ValueError as exc:
            raise UsageError(f"DSMOUNT_RETRIES/DSMOUNT_RETRY_DEADLINE must be numbers: {exc}") from None
        if attempts < 0 or deadline <= 0:
            raise UsageError("DSMOUNT_RETRIES must be >= 0 and DSMOUNT_RETRY_DEADLINE > 0")
        return cls(attempts=attempts, deadline=deadline)

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.cap, self.base * (2**attempt)))

    def call(self, fn: Callable[[], T], what: str, *, sleep: Callable[[float], None] = time.sleep) -> T:
        """Run ``fn`` until it succeeds, fails for good, or the attempts or deadline run out."""
        start = time.monotonic()
        attempt = 0
        while True:
            try:
                return fn()
            except Exception as exc:
                if attempt >= self.attempts or not is_transient(exc):
                    raise
                wait = self.delay(attempt)
                if time.monotonic() + wait - start > self.deadline:
                    raise
                attempt += 1
                log.info("retrying %s (attempt %d) after %s", what, attempt + 1, type(exc).__name__)
                sleep(wait)
