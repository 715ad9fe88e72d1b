#!/usr/bin/env bash
# Create the separate DVC environment used as the benchmark baseline: bench/.venv-dvc
# Usage: bash bench/setup.sh   (idempotent; DVC_SPEC=dvc==3.67.1 to pin a version)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv-dvc"
spec="${DVC_SPEC:-dvc}"
command -v git >/dev/null || { echo "setup.sh: git is required by DVC" >&2; exit 1; }
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
pip_install() {  # hide the mirror's "Location ... is ignored" noise, keep real errors
    "$venv/bin/python" -m pip install --quiet "$@" 2> >(grep -v "is ignored: it is neither" >&2)
}
pip_install --upgrade pip
pip_install "$spec"
"$venv/bin/dvc" --version
mkdir -p "$here/work" "$here/results"
