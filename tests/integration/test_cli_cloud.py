"""The CLI on S3, GCS and Azure emulators, configured only through each cloud's standard
environment variables, as a user would: versions, listing, get, and a lazy mount. Credentials
never land in the store, the catalogue, the trees or the logs."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest

from mountfs import Dataset, Workspace
from tests.conftest import Dsm
from tests.emulators import Emulator, Emulators, clear_fsspec_caches, wanted
from tests.integration.api_fixtures import tree_state
from tests.integration.mount_fixtures import NewMountpoint, make_version, mounted, new_mountpoint, w1_like

__all__ = ["new_mountpoint"]

BACKENDS = [b for b in ("s3", "gs", "az") if b in wanted()]


@pytest.fixture(params=BACKENDS)
def cloud(request: pytest.FixtureRequest, emulators: Emulators, dsm: Dsm) -> Iterator[tuple[Emulator, str]]:
    em = emulators.get(request.param)
    url = f"{em.new_bucket()}/team/datasets"
    env = {**em.env, "DSMOUNT_STORE": url}
    if em.scheme == "s3":  # distinctive credentials, to look for them afterwards (moto takes any)
        env["AWS_ACCESS_KEY_ID"] = f"AKID{uuid.uuid4().hex[:16].upper()}"
        env["AWS_SECRET_ACCESS_KEY"] = f"secret-{uuid.uuid4().hex}"
    dsm.env.update(env)
    yield em, url
    clear_fsspec_caches()


def test_versions_list_get_on_a_cloud_store(dsm: Dsm, cloud: tuple[Emulator, str], tmp_path: Path) -> None:
    em, url = cloud
    src = tmp_path / "src"
    w1_like(src)
    v1 = make_version(dsm, src, "--tags", "cloud")
    (src / "new.txt").write_text("added\n")
    v2 = dsm.json("sync", "--parents", v1, "--project", "proj", "--name", "data", "--folder", src)["id"]
    rows = dsm.json("search", "--tags", "cloud")
    assert [r["id"] for r in rows] == [v1]
    dsm("get", "--id", v2, "--copy", tmp_path / "copy")
    assert tree_state(tmp_path / "copy") == tree_state(src)
    # the objects really are in the bucket, under the store URL
    fs = fsspec.filesystem(em.scheme, skip_instance_cache=True, **em.options())
    root = url.split("://", 1)[1]
    keys = {p[len(root) + 1 :] for p in fs.find(root)}
    assert f"registry/{v1}.json" in keys
    assert f"registry/{v2}.json" in keys
    assert any(k.startswith(f"data/{v2}/chunk-") for k in keys)
    # a second machine (another home) sees both, with nothing but the environment
    other = Dsm(tmp_path / "home2", tmp_path)
    other.env.update({k: v for k, v in dsm.env.items() if k != "DSMOUNT_HOME"})
    assert {r["id"] for r in other.json("search")} == {v1, v2}


@pytest.mark.parametrize("cloud", [b for b in BACKENDS if b != "gs"], indirect=True)  # GCS's takes none
def test_credentials_are_never_written(dsm: Dsm, cloud: tuple[Emulator, str], tmp_path: Path) -> None:
    em, url = cloud
    src = tmp_path / "src"
    w1_like(src)
    vid = make_version(dsm, src)
    dsm("get", "--id", vid, "--copy", tmp_path / "copy")
    secrets = [dsm.env[k].encode() for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY") if k in dsm.env]
    if em.scheme == "az":
        conn = dsm.env["AZURE_STORAGE_CONNECTION_STRING"]
        secrets.append(conn.split("AccountKey=", 1)[1].split(";", 1)[0].encode())
    assert secrets
    fs = fsspec.filesystem(em.scheme, skip_instance_cache=True, **em.options())
    root = url.split("://", 1)[1]
    for path in fs.find(root):
        data = fs.cat_file(path)
        for s in secrets:
            assert s not in data, f"credentials in {path}"
    for folder, _dirs, files in os.walk(dsm.home):
        for name in files:
            data = Path(folder, name).read_bytes()
            for s in secrets:
                assert s not in data, f"credentials in {Path(folder, name)}"


@pytest.mark.uses_fuse
def test_mount_reads_lazily_from_a_cloud_store(
    dsm: Dsm, cloud: tuple[Emulator, str], tmp_path: Path, new_mountpoint: NewMountpoint
) -> None:
    src = tmp_path / "src"
    files = w1_like(src)
    vid = make_version(dsm, src)
    mnt = new_mountpoint()
    dsm("mount", vid, mnt)
    with open(mnt / "big/video.bin", "rb") as f:
        f.seek(1_000_000)
        assert f.read(100) == files["big/video.bin"][1_000_000:1_000_100]
    stats = json.loads(dsm("stats", mnt, "--json").out)
    fetched = stats["reads"]["store_bytes"]
    assert 0 < fetched < len(files["big/video.bin"]) // 4  # a byte range, not the whole file
    dsm("get", "--id", vid, "--copy", tmp_path / "copy")
    assert tree_state(mnt) == tree_state(tmp_path / "copy")
    dsm("unmount", mnt)
    assert not mounted(mnt)


@pytest.mark.uses_fuse
def test_python_mount_with_explicit_storage_options(
    emulators: Emulators, tmp_path: Path, new_mountpoint: NewMountpoint
) -> None:
    """Options given to the Workspace (not the environment) reach the mount's daemon."""
    em = emulators.get("s3" if "s3" in BACKENDS else BACKENDS[0])
    assert not any(k in os.environ for k in em.env)
    ws = Workspace(f"{em.new_bucket()}/py", home=tmp_path / "home", storage_options=em.options())
    files = w1_like(tmp_path / "src")
    ds = Dataset.create("d", "p", workspace=ws)
    ds.add_files(tmp_path / "src")
    ds.close(show_progress=False)
    with ds.mount(new_mountpoint()) as m:
        assert Path(m.path, "tables/labels.csv").read_bytes() == files["tables/labels.csv"]
        assert m.stats()["reads"]["store_bytes"] > 0
    ws.close()
