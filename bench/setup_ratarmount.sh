#!/usr/bin/env bash
# Create the separate ratarmount environment used by bench/mount_bench.py: bench/.venv-ratarmount
# Usage: bash bench/setup_ratarmount.sh   (idempotent; RATARMOUNT_SPEC=ratarmount==1.3.0 to pin a version)
# ratarmount mounts archives with FUSE: it needs fusermount3 (Debian: apt-get install fuse3).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv-ratarmount"
spec="${RATARMOUNT_SPEC:-ratarmount}"
command -v fusermount3 >/dev/null || echo "setup_ratarmount.sh: fusermount3 missing (apt-get install fuse3)" >&2
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
pip_install() {  # hide the mirror's "Location ... is ignored" noise, keep real errors
    "$venv/bin/python" -m pip install --quiet "$@" 2> >(grep -v "is ignored: it is neither" >&2)
}
pip_install --upgrade pip
pip_install "$spec"
"$venv/bin/ratarmount" --version > "$venv/version.txt" && head -n 1 "$venv/version.txt"
mkdir -p "$here/work" "$here/results" "$here/data"
