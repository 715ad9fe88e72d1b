"""Faults between dsmount and the store: 503s, resets before and inside answers, slow answers,
injected by a proxy in front of the S3 emulator. Operations complete through retries, and a
store that stays down leaves no half-made version that anyone can see."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mountfs import Dataset, Workspace
from mountfs.errors import StoreUnavailableError
from tests.emulators import Emulator, Emulators, clear_fsspec_caches, wanted
from tests.faultproxy import FaultProxy
from tests.integration.api_fixtures import tree_state, write_files

pytestmark = pytest.mark.skipif("s3" not in wanted(), reason="DSMOUNT_TEST_EMULATORS excludes s3")

CLIENT_RETRIES_OFF = {"config_kwargs": {"retries": {"max_attempts": 1, "mode": "standard"}}}
"""botocore retries 5xx and throttling itself; off, so dsmount's retries are the ones at work."""


@pytest.fixture
def proxy(emulators: Emulators) -> Iterator[FaultProxy]:
    em = emulators.get("s3")
    p = FaultProxy(int(em.host_port.rsplit(":", 1)[1]))
    yield p
    p.close()
    clear_fsspec_caches()


@pytest.fixture
def bucket(emulators: Emulators) -> str:
    return f"{emulators.get('s3').new_bucket()}/datasets"


def _ws(tmp_path: Path, name: str, url: str, proxy: FaultProxy) -> Workspace:
    options: dict[str, Any] = {
        "endpoint_url": proxy.url,
        "key": "testing",
        "secret": "testing",
        "skip_instance_cache": True,
        **CLIENT_RETRIES_OFF,
    }
    return Workspace(url, home=tmp_path / name, storage_options=options)


def _source(tmp_path: Path) -> Path:
    rnd = random.Random(3)
    files: dict[str, bytes] = {
        f"small/{i:03d}.bin": rnd.randbytes(rnd.randint(10, 30_000)) for i in range(60)
    }
    files["big/one.bin"] = rnd.randbytes(2_500_000)
    files["text/a.txt"] = b"line\n" * 20_000
    return write_files(tmp_path / "src", files)


def test_operations_complete_through_injected_faults(
    tmp_path: Path, bucket: str, proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DSMOUNT_RETRIES", "10")
    src = _source(tmp_path)
    proxy.set_faults(0.25)
    a = _ws(tmp_path, "a", bucket, proxy)
    ds = Dataset.create("faulty", "p", chunk_size="300K", workspace=a)
    ds.add_files(src)
    ds.close(show_progress=False)
    b = _ws(tmp_path, "b", bucket, proxy)
    b.refresh()
    got = Dataset.get(ds.id, workspace=b)
    copy = Path(got.get_mutable_local_copy(tmp_path / "copy", show_progress=False))
    assert tree_state(copy, mtimes=False) == tree_state(src, mtimes=False)
    faults = proxy.counters.faults
    assert sum(faults.values()) >= 10, faults
    assert set(faults) == {"503", "reset", "cut", "slow"}, faults
    a.close()
    b.close()


def test_a_store_that_stays_down_leaves_no_version_then_resumes(
    tmp_path: Path, bucket: str, proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DSMOUNT_RETRIES", "1")
    src = _source(tmp_path)
    a = _ws(tmp_path, "a", bucket, proxy)
    ds = Dataset.create("down", "p", chunk_size="300K", workspace=a)
    ds.add_files(src)
    proxy.set_faults(1.0, ("503", "reset"))
    with pytest.raises(StoreUnavailableError, match=r"store s3://.* failed on"):
        ds.close(show_progress=False)
    proxy.set_faults(0.0)
    b = _ws(tmp_path, "b", bucket, proxy)
    b.refresh()
    assert Dataset.list_datasets(only_completed=False, workspace=b) == []  # nothing half-made visible
    assert a.catalogue.draft(ds.id) is not None  # and nothing lost here
    ds.close(show_progress=False)
    b.refresh()
    copy = Path(
        Dataset.get(ds.id, workspace=b).get_mutable_local_copy(tmp_path / "copy", show_progress=False)
    )
    assert tree_state(copy, mtimes=False) == tree_state(src, mtimes=False)
    a.close()
    b.close()


def test_timeouts_are_retried(
    tmp_path: Path, bucket: str, proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DSMOUNT_RETRIES", "8")
    proxy.slow_seconds = 1.0
    proxy.set_faults(0.3, ("slow",))
    options: dict[str, Any] = {
        "endpoint_url": proxy.url,
        "key": "testing",
        "secret": "testing",
        "skip_instance_cache": True,
        "config_kwargs": {"retries": {"max_attempts": 1}, "read_timeout": 0.4, "connect_timeout": 1},
    }
    ws = Workspace(bucket, home=tmp_path / "h", storage_options=options)
    for i in range(5):
        ws.store.write_bytes(f"t/{i}", b"%d" % i)
    assert [ws.store.read_bytes(f"t/{i}") for i in range(5)] == [b"%d" % i for i in range(5)]
    assert proxy.counters.faults.get("slow", 0) >= 2
    ws.close()


def test_store_error_is_one_line_without_credentials(
    tmp_path: Path, bucket: str, proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DSMOUNT_RETRIES", "1")
    proxy.set_faults(1.0, ("503",))
    options = {
        "endpoint_url": proxy.url,
        "key": "AKIDEXAMPLE",
        "secret": "s3cr3t-value",
        **CLIENT_RETRIES_OFF,
    }
    ws = Workspace(bucket, home=tmp_path / "h", storage_options=options)
    with pytest.raises(StoreUnavailableError) as info:
        ws.store.read_bytes("registry/x.json")
    message = str(info.value)
    assert "\n" not in message
    assert "s3cr3t" not in message
    ws.close()


def test_an_interrupted_upload_resumes_without_sending_stored_chunks_again(
    tmp_path: Path, bucket: str, proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DSMOUNT_RETRIES", "1")
    src = _source(tmp_path)
    a = _ws(tmp_path, "a", bucket, proxy)
    ds = Dataset.create("resume", "p", chunk_size="300K", workspace=a)
    ds.add_files(src)
    proxy.only = lambda line: b"chunk-0003" in line and line.startswith(b"PUT")
    proxy.set_faults(1.0, ("503",))
    with pytest.raises(StoreUnavailableError):
        ds.close(show_progress=False)
    draft = a.catalogue.draft(ds.id)
    assert draft is not None
    stored = {c.key.rsplit("/", 1)[-1] for c in draft.chunks}
    assert len(stored) >= 2  # chunks before the failing one are recorded
    proxy.set_faults(0.0)
    proxy.reset_counters()
    ds.close(show_progress=False)
    sent = {
        line.split(b" ")[1].split(b"?")[0].rsplit(b"/", 1)[-1].decode()
        for line in proxy.counters.request_lines
        if line.startswith(b"PUT") and b"/chunk-" in line
    }
    assert sent  # the rest was uploaded
    assert not sent & stored  # and nothing already stored went again
    manifest = a.manifest(ds.id)
    assert {c.key.rsplit("/", 1)[-1] for c in manifest.chunks} == stored | sent
    a.close()


def _gcs_via(em: Emulator, proxy: FaultProxy) -> dict[str, Any]:
    return {"endpoint_url": proxy.url, "token": "anon", "project": "test", "skip_instance_cache": True}


@pytest.mark.skipif("gs" not in wanted(), reason="DSMOUNT_TEST_EMULATORS excludes gs")
def test_gcs_completes_through_injected_faults(
    tmp_path: Path, emulators: Emulators, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same faults on the GCS emulator (gcsfs keeps its own retries). Azure is left out on
    purpose: azure-storage-blob backs off 15 s, 18 s, 24 s ... by itself before dsmount's retries
    see a failure, and adlfs offers no way to change that, so the same test takes minutes."""
    monkeypatch.setenv("DSMOUNT_RETRIES", "10")
    em = emulators.get("gs")
    proxy = FaultProxy(int(em.host_port.rsplit(":", 1)[1]), seed=11)
    try:
        url = f"{em.new_bucket()}/datasets"
        src = _source(tmp_path)
        proxy.set_faults(0.2, ("503", "reset", "cut"))
        a = Workspace(url, home=tmp_path / "a", storage_options=_gcs_via(em, proxy))
        ds = Dataset.create("faulty", "p", chunk_size="300K", workspace=a)
        ds.add_files(src)
        ds.close(show_progress=False)
        b = Workspace(url, home=tmp_path / "b", storage_options=_gcs_via(em, proxy))
        b.refresh()
        got = Dataset.get(ds.id, workspace=b)
        copy = Path(got.get_mutable_local_copy(tmp_path / "copy", show_progress=False))
        assert tree_state(copy, mtimes=False) == tree_state(src, mtimes=False)
        assert sum(proxy.counters.faults.values()) >= 5, proxy.counters.faults
        a.close()
        b.close()
    finally:
        proxy.close()
