#!/usr/bin/env bash
# Everything a fresh Debian machine needs to run dsmount and its tests: system packages,
# a virtual environment in .venv with the package (editable) and its test extras, the
# object-store emulators, the Kubernetes manifest checkers and a headless browser.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pkg in fuse3 libfuse3-dev pkg-config unzip zip gcc; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "setup: installing ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
log=$(mktemp)
if ! { .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip setuptools wheel &&
       .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test,fuse]"; } >"$log" 2>&1; then
    grep -v "is ignored" "$log" >&2
    echo "setup: pip install failed" >&2
    exit 1
fi
rm -f "$log"
.venv/bin/python -c "import mountfs, pyfuse3" || { echo "setup: install failed" >&2; exit 1; }
# What the tests start or run besides dsmount: S3/GCS/Azure emulators, Kubernetes manifest checkers,
# and Debian's Chromium with Playwright for the browser tests of `dsmount ui`.
bash scripts/install_emulators.sh
bash scripts/install_k8s_tools.sh
bash scripts/install_browser.sh
echo "setup: ready (.venv/bin/dsmount)" >&2
