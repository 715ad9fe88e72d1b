"""The container image and the Kubernetes packaging, checked without a cluster or Docker engine.

- packaging/Dockerfile passes hadolint;
- the kustomize base and overlays are rendered by ``kubectl kustomize``, the Helm chart by
  helm-python-sdk (Helm's own Go SDK, no helm binary) with several value sets, and as a
  dependency of a user's chart that includes its named templates;
- every rendered manifest passes ``kubernetes-validate --strict`` for 1.29 (native sidecars on by
  default) and for the newest schema it ships;
- the hand-written YAML passes yamllint;
- ``problems()`` checks what no schema does: Bidirectional propagation only on a privileged
  container, HostToContainer on every app, the sidecar's probes, /dev/fuse, resources, commit in
  the writable variant, no credentials inline. Every rule has a negative test.

The tools come from scripts/install_k8s_tools.sh; a missing tool fails the test (never a skip).
"""

from __future__ import annotations

import copy
import functools
import importlib
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"
KUSTOMIZE = PACKAGING / "kubernetes"
CHART = PACKAGING / "helm" / "dsmount"
INSTALL_HINT = "run `bash scripts/install_k8s_tools.sh` (CI does)"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]

Doc = dict[str, Any]

CREDENTIALS = frozenset(
    {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AZURE_STORAGE_CONNECTION_STRING",
        "AZURE_STORAGE_KEY",
        "AZURE_STORAGE_SAS_TOKEN",
        "AZURE_CLIENT_SECRET",
    }
)
SECRET_TEXT = re.compile(r"AKIA[0-9A-Z]{16}|AccountKey=|BEGIN [A-Z ]*PRIVATE KEY|\"private_key\"")
WORKLOADS = ("Job", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet")


# ---------------------------------------------------------------------------------------------
# Tools


def tool(name: str) -> str:
    """A command-line tool from .venv/bin or PATH; a missing tool fails the test, never skips it."""
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: {INSTALL_HINT}")
    return found


def module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        pytest.fail(f"the Python module {name} is not installed: {INSTALL_HINT}")


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)


def load_all(text: str) -> list[Doc]:
    return [d for d in module("yaml").safe_load_all(text) if d]


def dump_all(docs: list[Doc]) -> str:
    return str(module("yaml").safe_dump_all(docs, sort_keys=False))


# ---------------------------------------------------------------------------------------------
# Rendering


def kustomize(folder: Path) -> list[Doc]:
    result = run(tool("kubectl"), "kustomize", str(folder))
    assert result.returncode == 0, f"kubectl kustomize {folder}:\n{result.stderr}"
    return load_all(result.stdout)


def helm_render(chart: Path, values: dict[str, Any]) -> list[Doc]:
    helm = module("helm_python")
    rendered = helm.Chart.load(str(chart)).render(values, name="demo", namespace="ml")
    return [doc for text in rendered.values() for doc in load_all(text)]


def _example(**values: Any) -> dict[str, Any]:
    return {"example": {"enabled": True}, "dataset": "vision/cats@1.0.0", **values}


HELM_VALUES: dict[str, dict[str, Any]] = {
    "s3-secret": _example(
        store="s3://my-bucket/datasets",
        credentials={"secretName": "dsmount-credentials"},
        env={"AWS_REGION": "eu-west-1", "AWS_ENDPOINT_URL": "https://minio.example.internal:9000"},
    ),
    "gcs-workload-identity": _example(
        store="gs://my-bucket/datasets",
        serviceAccount={
            "name": "train",
            "create": True,
            "annotations": {"iam.gke.io/gcp-service-account": "train@my-project.iam.gserviceaccount.com"},
        },
    ),
    "gcs-key-file": _example(store="gs://my-bucket/datasets", credentials={"gcsKeySecretName": "gcs-key"}),
    "azure-writable-pvc": _example(
        store="az://datasets/team",
        credentials={"secretName": "azure-storage"},
        writable=True,
        uid=1000,
        gid=1000,
        home={"claimName": "dsmount-overlay"},
    ),
    "custom-path-and-image": _example(
        store="s3://b/d",
        mountPath="/mnt/imagenet",
        extraArgs=["--prefetch"],
        image={"repository": "registry.example.com/ml/dsmount", "tag": "0.1.0-rc1"},
        cache={"size": "50G", "volumeSize": "60Gi"},
        resources={"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "4Gi"}},
    ),
}

KUSTOMIZATIONS = ("base", "overlays/s3", "overlays/gcs", "overlays/writable")


def _render_parent_chart(tmp: Path) -> list[Doc]:
    """A user's own chart that depends on dsmount and includes its named templates in a Deployment."""
    parent = tmp / "trainer"
    shutil.copytree(CHART, parent / "charts" / "dsmount")
    (parent / "templates").mkdir(parents=True)
    (parent / "Chart.yaml").write_text(
        "apiVersion: v2\nname: trainer\nversion: 1.0.0\n"
        "dependencies:\n  - name: dsmount\n    version: 0.1.0\n"
    )
    (parent / "values.yaml").write_text(
        "dsmount:\n  dataset: vision/cats@1.0.0\n  store: gs://my-bucket/datasets\n"
        "  serviceAccount:\n    name: trainer\n"
    )
    (parent / "templates" / "deployment.yaml").write_text(
        """apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-trainer
spec:
  selector:
    matchLabels: {app: trainer}
  template:
    metadata:
      labels: {app: trainer}
    spec:
      {{- include "dsmount.podSpec" . | nindent 6 }}
      initContainers:
        {{- include "dsmount.sidecar" . | nindent 8 }}
      containers:
        - name: trainer
          image: my-trainer:1.0
          securityContext: {runAsUser: 1000, runAsNonRoot: true}
          resources:
            requests: {cpu: "2", memory: 4Gi}
            limits: {memory: 8Gi}
          volumeMounts:
            - {name: checkpoints, mountPath: /checkpoints}
            {{- include "dsmount.appMount" . | nindent 12 }}
        {{- include "dsmount.committer" . | nindent 8 }}
      volumes:
        - {name: checkpoints, emptyDir: {}}
        {{- include "dsmount.volumes" . | nindent 8 }}
"""
    )
    return helm_render(parent, {})


def _render_stacked_kustomization(tmp: Path) -> list[Doc]:
    """A user's overlay: the s3 overlay plus the writable component."""
    folder = tmp / "mine"
    folder.mkdir()
    rel = functools.partial(os.path.relpath, start=folder)
    (folder / "kustomization.yaml").write_text(
        f"resources:\n  - {rel(KUSTOMIZE / 'overlays' / 's3')}\n"
        f"components:\n  - {rel(KUSTOMIZE / 'components' / 'writable')}\n"
    )
    return kustomize(folder)


def _kustomization(name: str) -> Callable[[Path], list[Doc]]:
    return lambda _tmp: kustomize(KUSTOMIZE / name)


def _chart_with(values: dict[str, Any]) -> Callable[[Path], list[Doc]]:
    return lambda _tmp: helm_render(CHART, values)


RENDERS: dict[str, Callable[[Path], list[Doc]]] = {
    **{f"kustomize:{name}": _kustomization(name) for name in KUSTOMIZATIONS},
    "kustomize:s3+writable-component": _render_stacked_kustomization,
    **{f"helm:{name}": _chart_with(values) for name, values in HELM_VALUES.items()},
    "helm:as-a-dependency": _render_parent_chart,
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Doc]]:
    out: dict[str, list[Doc]] = {}
    for name, render in RENDERS.items():
        out[name] = render(tmp_path_factory.mktemp(re.sub(r"\W", "-", name)))
    return out


# ---------------------------------------------------------------------------------------------
# The semantic checker


def pod_specs(docs: list[Doc]) -> Iterator[tuple[str, Doc]]:
    for doc in docs:
        kind, name = doc.get("kind"), doc.get("metadata", {}).get("name")
        if kind == "Pod":
            yield f"Pod/{name}", doc["spec"]
        elif kind in WORKLOADS:
            yield f"{kind}/{name}", doc["spec"]["template"]["spec"]
        elif kind == "CronJob":
            yield f"CronJob/{name}", doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def argv(container: Doc) -> list[str]:
    return [str(w) for w in (container.get("command") or []) + (container.get("args") or [])]


def is_sidecar(container: Doc) -> bool:
    words = argv(container)
    return words[:1] == ["mount"] or words[:2] == ["dsmount", "mount"]


def mountpoint_of(sidecar: Doc) -> str:
    words = argv(sidecar)
    i = words.index("mount")
    return words[i + 2] if len(words) > i + 2 else ""


def commits(container: Doc, mountpoint: str) -> bool:
    """Runs `dsmount commit MOUNTPOINT`, as its argv or inside a shell script."""
    words = argv(container)
    if words[:3] == ["dsmount", "commit", mountpoint]:
        return True
    pattern = rf"\bdsmount commit \"?{re.escape(mountpoint)}\"?(\s|$)"
    return any(re.search(pattern, w) for w in words)


def env_of(container: Doc, docs: list[Doc]) -> dict[str, str]:
    """The container's plain environment: ConfigMaps it loads (when in the manifests), then env values."""
    maps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d.get("kind") == "ConfigMap"}
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        ref = source.get("configMapRef")
        if ref:
            env.update(maps.get(ref["name"], {}))
    for item in container.get("env") or []:
        if "value" in item:
            env[item["name"]] = str(item["value"])
    return env


def runs_as_root(container: Doc, pod: Doc) -> bool:
    uid = (container.get("securityContext") or {}).get("runAsUser")
    if uid is None:
        uid = (pod.get("securityContext") or {}).get("runAsUser")
    return uid in (None, 0)


def problems(docs: list[Doc]) -> list[str]:
    """What is wrong with the dsmount sidecar pods in these manifests ([] when nothing is)."""
    out: list[str] = []
    specs = list(pod_specs(docs))
    if not specs:
        out.append("no pod template in the manifests")
    for where, pod in specs:
        out += [f"{where}: {p}" for p in _pod_problems(pod, docs)]
    out += _credential_problems(docs)
    return out


def _pod_problems(pod: Doc, docs: list[Doc]) -> list[str]:
    out: list[str] = []
    inits: list[Doc] = pod.get("initContainers") or []
    apps: list[Doc] = pod.get("containers") or []
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    for c in inits + apps:
        mounts = c.get("volumeMounts") or []
        out += [f"{c['name']}: volume {m['name']} is not defined" for m in mounts if m["name"] not in volumes]
        privileged = (c.get("securityContext") or {}).get("privileged") is True
        for m in mounts:
            if m.get("mountPropagation") == "Bidirectional" and not privileged:
                out.append(f"{c['name']}: Bidirectional propagation needs privileged: true")
        res = c.get("resources") or {}
        if not (res.get("requests", {}).keys() >= {"cpu", "memory"} and "memory" in res.get("limits", {})):
            out.append(f"{c['name']}: resources need requests.cpu, requests.memory and limits.memory")

    sidecars = [c for c in inits if is_sidecar(c)]
    if len(sidecars) != 1:
        return [*out, f"{len(sidecars)} dsmount sidecars (init containers running dsmount mount), not 1"]
    sidecar = sidecars[0]
    name, words, mp = sidecar["name"], argv(sidecar), mountpoint_of(sidecar)
    if sidecar.get("restartPolicy") != "Always":
        out.append(f"{name}: not a native sidecar (restartPolicy: Always)")
    if not {"-f", "--foreground"} & set(words):
        out.append(f"{name}: dsmount mount must run in the foreground (-f)")
    probe = f"dsmount status {mp} --ready"
    startup = ((sidecar.get("startupProbe") or {}).get("exec") or {}).get("command") or []
    if [str(w) for w in startup] != probe.split():
        out.append(f"{name}: the startup probe must run `{probe}`, not {startup}")
    liveness = sidecar.get("livenessProbe")
    if not liveness:
        out.append(f"{name}: no liveness probe")
    elif "exec" in liveness and mp not in [str(w) for w in liveness["exec"].get("command", [])]:
        out.append(f"{name}: the liveness probe does not check {mp}")
    by_path = {m["mountPath"]: m for m in sidecar.get("volumeMounts") or []}
    fuse = by_path.get("/dev/fuse")
    if fuse is None or (volumes.get(fuse["name"], {}).get("hostPath") or {}).get("path") != "/dev/fuse":
        out.append(f"{name}: /dev/fuse is not mounted from the host")
    data = by_path.get(mp)
    if data is None:
        return [*out, f"{name}: no volume mounted at the mount point {mp!r}"]
    if data.get("mountPropagation") != "Bidirectional":
        out.append(f"{name}: the mount point's volume needs mountPropagation: Bidirectional")
    if "emptyDir" not in volumes.get(data["name"], {}):
        out.append(f"{name}: the mount point's volume {data['name']} must be an emptyDir")
    for app in apps:
        shared = [m for m in app.get("volumeMounts") or [] if m["name"] == data["name"]]
        if not shared:
            out.append(f"{app['name']}: does not mount the dataset volume {data['name']}")
        elif any(m.get("mountPropagation") != "HostToContainer" for m in shared):
            out.append(f"{app['name']}: mounts {data['name']} without mountPropagation: HostToContainer")
        if not runs_as_root(app, pod) and "--allow-other" not in words:
            out.append(f"{app['name']}: runs as non-root but the sidecar lacks --allow-other")

    committers = [c for c in apps if commits(c, mp)]
    if "--writable" in words:
        if not committers:
            out.append(f"{name}: a writable mount but no container runs `dsmount commit {mp}`")
        if committers and not pod.get("shareProcessNamespace"):
            out.append("dsmount commit needs shareProcessNamespace: true (it finds the daemon by pid)")
        home = env_of(sidecar, docs).get("DSMOUNT_HOME", "/var/lib/dsmount")
        home_volume = by_path.get(home, {}).get("name")
        if home_volume is None:
            out.append(f"{name}: DSMOUNT_HOME {home} is not on a volume")
        for c in committers:
            theirs = {m["name"] for m in c.get("volumeMounts") or [] if m["mountPath"] == home}
            if home_volume not in theirs:
                out.append(f"{c['name']}: runs dsmount commit without the sidecar's DSMOUNT_HOME volume")
    elif committers:
        out.append(f"{name}: dsmount commit of a mount without --writable")
    return out


def _credential_problems(docs: list[Doc]) -> list[str]:
    out: list[str] = []
    for doc in docs:
        kind, name = doc.get("kind"), doc.get("metadata", {}).get("name")
        if kind == "Secret" and (doc.get("data") or doc.get("stringData")):
            out.append(f"Secret/{name}: credentials belong in a Secret created out of band, not here")
        if kind == "ConfigMap":
            inline = [k for k in doc.get("data", {}) if k in CREDENTIALS]
            out += [f"ConfigMap/{name}: credential {k} inline" for k in inline]
    for where, pod in pod_specs(docs):
        for c in (pod.get("initContainers") or []) + (pod.get("containers") or []):
            for item in c.get("env") or []:
                if item["name"] in CREDENTIALS and "value" in item:
                    out.append(f"{where}: {c['name']}: credential {item['name']} inline")
    if SECRET_TEXT.search(dump_all(docs)):
        out.append("something that looks like a key is written in the manifests")
    return out


# ---------------------------------------------------------------------------------------------
# The image


def test_dockerfile_passes_hadolint() -> None:
    result = run(tool("hadolint"), str(PACKAGING / "Dockerfile"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_rejects_unpinned_packages(tmp_path: Path) -> None:
    text = (PACKAGING / "Dockerfile").read_text()
    unpinned = re.sub(r"(fuse3|tini)=[^\s\\]+", r"\1", text)
    assert unpinned != text
    (tmp_path / "Dockerfile").write_text(unpinned)
    result = run(tool("hadolint"), str(tmp_path / "Dockerfile"))
    assert result.returncode != 0
    assert "DL3008" in result.stdout


def test_image_is_built_from_the_wheel_with_fuse3() -> None:
    text = (PACKAGING / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", text, flags=re.MULTILINE)
    assert len(stages) == 2, stages
    assert "slim" in stages[-1]
    assert re.search(r"pip wheel .*\.\[s3,gcs,azure,fuse\]", text)
    assert re.search(r"pip install .*--no-index.*\n.*\[s3,gcs,azure,fuse\]", text)
    runtime = text.split("\nFROM ")[-1]
    assert "fuse3=" in runtime
    assert "gcc" not in runtime
    assert "-dev" not in runtime
    assert re.search(r'^ENTRYPOINT \[.*"dsmount"\]$', text, flags=re.MULTILINE)


def test_dockerignore_keeps_what_the_build_copies() -> None:
    lines = (PACKAGING / "Dockerfile.dockerignore").read_text().splitlines()
    ignore = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", (PACKAGING / "Dockerfile").read_text(), re.MULTILINE)
    sources = {s.rstrip("/") for line in copied for s in line.split()}
    assert sources
    assert ignore[0] == "*", "the context starts empty, then lists what the build needs"
    for source in sources:
        assert f"!{source}" in ignore or f"!{source}/" in ignore, f"{source} is excluded from the context"


# ---------------------------------------------------------------------------------------------
# Hand-written YAML


def _handwritten_yaml() -> list[Path]:
    return [*sorted(KUSTOMIZE.rglob("*.yaml")), CHART / "Chart.yaml", CHART / "values.yaml"]


def test_handwritten_yaml_passes_yamllint() -> None:
    files = [str(p) for p in [*_handwritten_yaml(), PACKAGING / ".yamllint.yaml"]]
    assert len(files) >= 10
    result = run(tool("yamllint"), "--strict", "-c", str(PACKAGING / ".yamllint.yaml"), *files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_yamllint_rejects_a_duplicate_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Job\nkind: Pod\n")
    result = run(tool("yamllint"), "--strict", "-c", str(PACKAGING / ".yamllint.yaml"), str(bad))
    assert result.returncode != 0
    assert "duplicate" in result.stdout


# ---------------------------------------------------------------------------------------------
# Schemas


def _validate(docs: list[Doc], tmp_path: Path) -> tuple[list[str], int]:
    """kubernetes-validate --strict for 1.29 and the newest schema; (complaints, resources passed)."""
    newest = module("kubernetes_validate.utils").latest_version()
    target = tmp_path / "rendered.yaml"
    target.write_text(dump_all(docs))
    result = run(tool("kubernetes-validate"), "--strict", "-k", "1.29", "-k", newest, str(target))
    lines = result.stdout.splitlines() + result.stderr.splitlines()
    complaints = [line for line in lines if not line.startswith("INFO ")]
    if result.returncode != 0 and not complaints:
        complaints = [f"exit {result.returncode}"]
    return complaints, sum(" passed for resource " in line for line in lines)


@pytest.mark.parametrize("name", RENDERS)
def test_rendered_manifests_pass_kubernetes_validate(
    name: str, rendered: dict[str, list[Doc]], tmp_path: Path
) -> None:
    docs = rendered[name]
    complaints, passed = _validate(docs, tmp_path)
    assert complaints == []
    assert passed == 2 * len(docs), "every resource must be checked against both versions"


def test_kubernetes_validate_rejects_a_misspelt_field(rendered: dict[str, list[Doc]], tmp_path: Path) -> None:
    docs = copy.deepcopy(rendered["kustomize:base"])
    _, job = _find(docs, "Job")
    job["initContainers"][0]["startupProbes"] = job["initContainers"][0].pop("startupProbe")
    complaints, _ = _validate(docs, tmp_path)
    assert any("startupProbes" in c for c in complaints), complaints


# ---------------------------------------------------------------------------------------------
# Semantics


@pytest.mark.parametrize("name", RENDERS)
def test_rendered_manifests_pass_the_semantic_checks(name: str, rendered: dict[str, list[Doc]]) -> None:
    docs = rendered[name]
    assert problems(docs) == []
    assert list(pod_specs(docs)), "nothing was checked"


def _find(docs: list[Doc], kind: str) -> tuple[Doc, Doc]:
    """The first workload of this kind and its pod spec."""
    doc = next(d for d in docs if d.get("kind") == kind)
    return doc, doc["spec"]["template"]["spec"]


def _writable(pod: Doc) -> bool:
    return any("--writable" in argv(c) for c in pod.get("initContainers") or [] if is_sidecar(c))


@pytest.mark.parametrize(
    ("name", "writable"),
    [
        ("kustomize:base", False),
        ("kustomize:overlays/writable", True),
        ("kustomize:s3+writable-component", True),
        ("helm:s3-secret", False),
        ("helm:azure-writable-pvc", True),
    ],
)
def test_the_writable_variant_commits(name: str, writable: bool, rendered: dict[str, list[Doc]]) -> None:
    _, job = _find(rendered[name], "Job")
    assert _writable(job) is writable
    assert any(commits(c, "/data") for c in job["containers"]) is writable


def test_overlays_point_at_their_store_and_identity(rendered: dict[str, list[Doc]]) -> None:
    for overlay, scheme, annotation in [
        ("s3", "s3://", "eks.amazonaws.com/role-arn"),
        ("gcs", "gs://", "iam.gke.io/gcp-service-account"),
    ]:
        docs = rendered[f"kustomize:overlays/{overlay}"]
        _, job = _find(docs, "Job")
        env = env_of(job["initContainers"][0], docs)
        assert env["DSMOUNT_STORE"].startswith(scheme)
        assert env["DSMOUNT_HOME"] == "/var/lib/dsmount"
        assert env["DSMOUNT_CACHE_SIZE"]
        account = next(d for d in docs if d["kind"] == "ServiceAccount")
        assert annotation in account["metadata"]["annotations"]
        assert job["serviceAccountName"] == account["metadata"]["name"]
        refs = [s["secretRef"] for s in job["initContainers"][0]["envFrom"] if "secretRef" in s]
        assert refs == [{"name": "dsmount-credentials", "optional": True}]


def test_helm_values_reach_the_sidecar(rendered: dict[str, list[Doc]]) -> None:
    _, pod = _find(rendered["helm:custom-path-and-image"], "Job")
    sidecar = pod["initContainers"][0]
    assert sidecar["image"] == "registry.example.com/ml/dsmount:0.1.0-rc1"
    assert argv(sidecar)[:3] == ["mount", "vision/cats@1.0.0", "/mnt/imagenet"]
    assert "--prefetch" in argv(sidecar)
    assert env_of(sidecar, [])["DSMOUNT_CACHE_SIZE"] == "50G"
    assert sidecar["resources"]["limits"]["memory"] == "4Gi"
    _, pod = _find(rendered["helm:azure-writable-pvc"], "Job")
    words = argv(pod["initContainers"][0])
    assert words[words.index("--uid") + 1] == "1000"
    assert words[words.index("--gid") + 1] == "1000"
    home = next(v for v in pod["volumes"] if v["name"] == "dsmount-home")
    assert home["persistentVolumeClaim"]["claimName"] == "dsmount-overlay"
    _, pod = _find(rendered["helm:gcs-key-file"], "Job")
    env = env_of(pod["initContainers"][0], [])
    assert env["GOOGLE_APPLICATION_CREDENTIALS"].startswith("/var/run/secrets/dsmount/gcs/")


def test_every_dsmount_image_is_this_version(rendered: dict[str, list[Doc]]) -> None:
    values = module("yaml").safe_load((CHART / "values.yaml").read_text())
    chart = module("yaml").safe_load((CHART / "Chart.yaml").read_text())
    assert values["image"]["tag"] == chart["appVersion"] == chart["version"] == VERSION
    for name in KUSTOMIZATIONS:
        for _, pod in pod_specs(rendered[f"kustomize:{name}"]):
            for c in (pod.get("initContainers") or []) + pod["containers"]:
                if c["image"].startswith("dsmount"):
                    assert c["image"] == f"dsmount:{VERSION}", (name, c["name"])


def _base_job(rendered: dict[str, list[Doc]]) -> tuple[list[Doc], Doc, Doc, Doc]:
    """A deep copy of the base render (without the Deployment): docs, pod spec, sidecar, app."""
    docs = [copy.deepcopy(d) for d in rendered["kustomize:base"] if d["kind"] != "Deployment"]
    _, pod = _find(docs, "Job")
    return docs, pod, pod["initContainers"][0], pod["containers"][0]


def _mount(container: Doc, path: str) -> Doc:
    return next(m for m in container["volumeMounts"] if m["mountPath"] == path)


Breakage = Callable[[list[Doc], Doc, Doc, Doc], object]

BREAKAGES: dict[str, tuple[Breakage, str]] = {
    "sidecar not privileged": (lambda d, p, s, a: s.pop("securityContext"), "needs privileged"),
    "app without propagation": (
        lambda d, p, s, a: _mount(a, "/data").pop("mountPropagation"),
        "without mountPropagation: HostToContainer",
    ),
    "app propagation misspelt": (
        lambda d, p, s, a: _mount(a, "/data").update(mountPropagation="HostToContainers"),
        "without mountPropagation: HostToContainer",
    ),
    "app Bidirectional unprivileged": (
        lambda d, p, s, a: _mount(a, "/data").update(mountPropagation="Bidirectional"),
        "train: Bidirectional propagation needs privileged",
    ),
    "sidecar propagation None": (
        lambda d, p, s, a: _mount(s, "/data").update(mountPropagation="None"),
        "needs mountPropagation: Bidirectional",
    ),
    "no startup probe": (lambda d, p, s, a: s.pop("startupProbe"), "startup probe must run"),
    "startup probe without --ready": (
        lambda d, p, s, a: s["startupProbe"]["exec"].update(command=["dsmount", "status", "/data"]),
        "startup probe must run",
    ),
    "startup probe on another path": (
        lambda d, p, s, a: s["startupProbe"]["exec"].update(command=["dsmount", "status", "/mnt", "--ready"]),
        "startup probe must run",
    ),
    "no liveness probe": (lambda d, p, s, a: s.pop("livenessProbe"), "no liveness probe"),
    "liveness probe on another path": (
        lambda d, p, s, a: s["livenessProbe"]["exec"].update(
            command=["dsmount", "status", "/mnt", "--ready"]
        ),
        "liveness probe does not check /data",
    ),
    "app does not mount the dataset": (
        lambda d, p, s, a: a["volumeMounts"].remove(_mount(a, "/data")),
        "does not mount the dataset volume",
    ),
    "app mounts another volume": (
        lambda d, p, s, a: _mount(a, "/data").update(name="dsmount-cache"),
        "does not mount the dataset volume",
    ),
    "mount point on a hostPath": (
        lambda d, p, s, a: p["volumes"].__setitem__(0, {"name": "data", "hostPath": {"path": "/mnt"}}),
        "must be an emptyDir",
    ),
    "undefined volume": (lambda d, p, s, a: p["volumes"].pop(), "is not defined"),
    "app without resources": (lambda d, p, s, a: a.pop("resources"), "train: resources need"),
    "sidecar without a memory limit": (
        lambda d, p, s, a: s["resources"].pop("limits"),
        "dsmount: resources need",
    ),
    "no /dev/fuse": (lambda d, p, s, a: s["volumeMounts"].remove(_mount(s, "/dev/fuse")), "/dev/fuse"),
    "not a native sidecar": (lambda d, p, s, a: s.pop("restartPolicy"), "restartPolicy: Always"),
    "sidecar in the background": (lambda d, p, s, a: s["args"].remove("-f"), "foreground"),
    "no --allow-other for a non-root app": (
        lambda d, p, s, a: s["args"].remove("--allow-other"),
        "allow-other",
    ),
    "no sidecar": (lambda d, p, s, a: p.pop("initContainers"), "0 dsmount sidecars"),
    "writable without commit": (lambda d, p, s, a: s["args"].append("--writable"), "no container runs"),
    "commit of a read-only mount": (
        lambda d, p, s, a: a.update(command=["sh", "-c", "python train.py && dsmount commit /data"]),
        "without --writable",
    ),
    "inline secret env": (
        lambda d, p, s, a: s.setdefault("env", []).append({"name": "AWS_SECRET_ACCESS_KEY", "value": "x"}),
        "credential AWS_SECRET_ACCESS_KEY inline",
    ),
    "credential in the ConfigMap": (
        lambda d, p, s, a: next(x for x in d if x["kind"] == "ConfigMap")["data"].update(
            AZURE_STORAGE_CONNECTION_STRING="DefaultEndpointsProtocol=https"
        ),
        "credential AZURE_STORAGE_CONNECTION_STRING inline",
    ),
    "a Secret with data": (
        lambda d, p, s, a: d.append(
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "k"}, "stringData": {"a": "b"}}
        ),
        "Secret/k",
    ),
    "a key in a command": (
        lambda d, p, s, a: a.update(command=["sh", "-c", "export AWS_ACCESS_KEY_ID=AKIAABCDEFGHIJKLMNOP"]),
        "looks like a key",
    ),
}


@pytest.mark.parametrize("breakage", BREAKAGES)
def test_the_semantic_checker_finds_a_broken_manifest(breakage: str, rendered: dict[str, list[Doc]]) -> None:
    docs, pod, sidecar, app = _base_job(rendered)
    assert problems(docs) == []
    damage, expected = BREAKAGES[breakage]
    damage(docs, pod, sidecar, app)
    found = problems(docs)
    assert any(expected in p for p in found), found


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda pod: pod.pop("shareProcessNamespace"), "shareProcessNamespace"),
        (
            lambda pod: pod["containers"][1]["volumeMounts"].remove(
                _mount(pod["containers"][1], "/var/lib/dsmount")
            ),
            "without the sidecar's DSMOUNT_HOME volume",
        ),
        (lambda pod: pod["containers"].pop(1), "no container runs `dsmount commit /data`"),
        (
            lambda pod: pod["initContainers"][0]["volumeMounts"].remove(
                _mount(pod["initContainers"][0], "/var/lib/dsmount")
            ),
            "DSMOUNT_HOME /var/lib/dsmount is not on a volume",
        ),
    ],
    ids=[
        "no shared pid namespace",
        "commit without the home volume",
        "no commit container",
        "home not a volume",
    ],
)
def test_the_semantic_checker_finds_a_broken_writable_manifest(
    damage: Callable[[Doc], object], expected: str, rendered: dict[str, list[Doc]]
) -> None:
    docs = copy.deepcopy(rendered["kustomize:overlays/writable"])
    _, pod = _find(docs, "Job")
    assert pod["containers"][1]["name"] == "dsmount-commit"
    damage(pod)
    found = problems(docs)
    assert any(expected in p for p in found), found


def test_the_semantic_checker_needs_a_pod() -> None:
    assert problems([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}]) == [
        "no pod template in the manifests"
    ]


# ---------------------------------------------------------------------------------------------
# The chart


def test_helm_lint_is_clean() -> None:
    helm = module("helm_python")
    for values in [{}, *HELM_VALUES.values()]:
        report = helm.lint(str(CHART), values, strict=True)
        serious = [m for m in report["messages"] if m["severity"] >= 2]
        assert report["errors"] == [], (values, report)
        assert serious == [], (values, report)


def test_chart_renders_nothing_by_default() -> None:
    assert helm_render(CHART, {}) == []


@pytest.mark.parametrize(
    ("values", "error", "message"),
    [
        (_example(store="s3://b/d", dataset=""), "HelmRenderError", "set dataset"),
        (_example(), "HelmRenderError", "set store"),
        (
            _example(store="s3://b/d", env={"AWS_SECRET_ACCESS_KEY": "x"}),
            "HelmRenderError",
            "is a credential",
        ),
        (_example(store="s3://b/d", writable=True), "HelmRenderError", "needs uid and gid"),
        (_example(store="s3://b/d", uid="root"), "HelmValuesError", "/uid"),
        (_example(store="s3://b/d", mountPath="data"), "HelmValuesError", "/mountPath"),
    ],
    ids=[
        "no dataset",
        "no store",
        "inline credential",
        "writable example without uid",
        "bad uid",
        "relative path",
    ],
)
def test_chart_refuses_bad_values(values: dict[str, Any], error: str, message: str) -> None:
    helm = module("helm_python")
    with pytest.raises(getattr(helm, error), match=re.escape(message)):
        helm.Chart.load(str(CHART)).render(values, name="demo")


# ---------------------------------------------------------------------------------------------
# The docs


def test_docs_name_files_that_exist() -> None:
    text = (ROOT / "docs" / "kubernetes.md").read_text()
    paths = set(re.findall(r"\b((?:packaging|scripts|tests)/[\w./-]*\w)", text))
    assert len(paths) >= 5
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert missing == []
