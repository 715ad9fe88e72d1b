"""Retry classification and backoff (pure logic), and the store options read from the environment."""

from __future__ import annotations

import errno

import pytest

from mountfs.errors import UsageError
from mountfs.storage.backends import check_url, family, options_for, redact
from mountfs.storage.retry import RetryPolicy, TransientError, is_transient


class ClientError(Exception):
    """Shaped like botocore's: a response dict with the HTTP status and the error code."""

    def __init__(self, status: int, code: str) -> None:
        super().__init__(code)
        self.response = {"ResponseMetadata": {"HTTPStatusCode": status}, "Error": {"Code": code}}


class HttpError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(f"http {code}")
        self.code = code


class ServerDisconnectedError(Exception):
    pass


def wrapped(inner: BaseException) -> OSError:
    try:
        raise inner
    except BaseException as exc:
        try:
            raise OSError(errno.EIO, "translated by the client") from exc
        except OSError as outer:
            return outer


@pytest.mark.parametrize(
    "exc",
    [
        ClientError(503, "SlowDown"),
        ClientError(500, "InternalError"),
        ClientError(400, "RequestTimeout"),
        HttpError(429),
        HttpError(502),
        ConnectionResetError(errno.ECONNRESET, "reset"),
        TimeoutError(),
        ServerDisconnectedError(),
        TransientError("short body"),
        wrapped(ClientError(503, "SlowDown")),
    ],
    ids=repr,
)
def test_transient(exc: BaseException) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [
        FileNotFoundError("gone"),
        FileExistsError("precondition"),
        PermissionError("denied"),
        ClientError(403, "AccessDenied"),
        ClientError(404, "NoSuchKey"),
        HttpError(412),
        ValueError("bad"),
        wrapped(FileNotFoundError("gone")),
    ],
    ids=repr,
)
def test_not_transient(exc: BaseException) -> None:
    assert not is_transient(exc)


def test_retries_until_success_with_growing_capped_waits() -> None:
    waits: list[float] = []
    calls = 0

    def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 4:
            raise ClientError(503, "SlowDown")
        return "done"

    policy = RetryPolicy(attempts=5, deadline=60, base=0.1, cap=0.3)
    assert policy.call(flaky, "read x", sleep=waits.append) == "done"
    assert calls == 4
    assert len(waits) == 3
    assert all(0 <= w <= 0.3 for w in waits)


def test_gives_up_after_attempts_and_raises_the_last_error() -> None:
    calls = 0

    def down() -> None:
        nonlocal calls
        calls += 1
        raise HttpError(503)

    with pytest.raises(HttpError):
        RetryPolicy(attempts=2, deadline=60).call(down, "read x", sleep=lambda _s: None)
    assert calls == 3


def test_permanent_error_is_not_retried() -> None:
    calls = 0

    def denied() -> None:
        nonlocal calls
        calls += 1
        raise PermissionError("denied")

    with pytest.raises(PermissionError):
        RetryPolicy(attempts=5).call(denied, "read x", sleep=lambda _s: None)
    assert calls == 1


def test_policy_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSMOUNT_RETRIES", "2")
    monkeypatch.setenv("DSMOUNT_RETRY_DEADLINE", "9.5")
    assert RetryPolicy.from_env() == RetryPolicy(attempts=2, deadline=9.5)
    monkeypatch.setenv("DSMOUNT_RETRIES", "many")
    with pytest.raises(UsageError, match="DSMOUNT_RETRIES"):
        RetryPolicy.from_env()


def test_urls_with_credentials_are_refused_and_redacted() -> None:
    with pytest.raises(UsageError, match="credentials"):
        check_url("s3://AKIAXXXX:secret@bucket/data")
    check_url("s3://bucket/data")
    check_url("/home/me/store")
    assert redact("failed on s3://AKIA:secret@bucket/k") == "failed on s3://***@bucket/k"


def test_families() -> None:
    assert [family(u) for u in ("s3://b", "gs://b", "gcs://b", "az://c", "abfs://c", "/x", "memory://m")] == [
        "s3",
        "gs",
        "gs",
        "az",
        "az",
        "file",
        "memory",
    ]


def test_options_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("DSMOUNT_STORAGE_OPTIONS", '{"s3": {"endpoint_url": "http://127.0.0.1:9"}}')
    fresh = {"use_listings_cache": False}
    assert options_for("s3://b") == {**fresh, "endpoint_url": "http://127.0.0.1:9"}
    assert options_for("gs://b") == fresh
    assert options_for("s3://b", {"endpoint_url": "x"}) == {**fresh, "endpoint_url": "x"}
    assert options_for("memory://m") == {}
    monkeypatch.setenv("DSMOUNT_STORAGE_OPTIONS", '{"anon": true}')
    assert options_for("gs://b") == {**fresh, "anon": True}
    monkeypatch.setenv("DSMOUNT_STORAGE_OPTIONS", "[1]")
    with pytest.raises(UsageError, match="JSON object"):
        options_for("s3://b")
    monkeypatch.delenv("DSMOUNT_STORAGE_OPTIONS")
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:4443")
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    assert options_for("gs://b") == {**fresh, "token": "anon"}
