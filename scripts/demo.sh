#!/usr/bin/env bash
# The demo on the embedded default (a local folder as the store, SQLite as the catalogue):
# create a dataset, version it, inspect the change, get it back byte for byte, and mount it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
root=$(mktemp -d /tmp/dsmount-demo.XXXXXX)
export DSMOUNT_HOME="$root/home" DSMOUNT_NO_PROGRESS=1
export PATH="$PWD/.venv/bin:$PATH"
say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }
run() { say "$*"; "$@"; }

.venv/bin/python - "$root/data" <<'PY'
import os, random, sys
root = sys.argv[1]; r = random.Random(1)
for i in range(300):
    p = os.path.join(root, "images", f"class{i % 3}", f"img{i:04d}.bin")
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "wb") as f: f.write(r.randbytes(r.randint(1, 64) * 1024))
os.makedirs(os.path.join(root, "labels"), exist_ok=True)
with open(os.path.join(root, "labels", "train.csv"), "w") as f:
    f.writelines(f"img{i:04d}.bin,{i % 3}\n" for i in range(300))
PY

run dsmount create --project demo --name images --tags raw --description "300 images, 3 classes"
run dsmount add --files "$root/data"
run dsmount close
v1=$(dsmount search --project demo --name images --json | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)[-1]["id"])')

say "edit the data: relabel, drop one class, rename a folder"
echo "img9999.bin,0" >> "$root/data/labels/train.csv"
rm -r "$root/data/images/class2"
mv "$root/data/images/class1" "$root/data/images/class1-renamed"

run dsmount sync --folder "$root/data" --parents "$v1" --project demo --name images
run dsmount show demo/images
run dsmount compare --source demo/images@1.0.0 --target demo/images@1.0.1
run dsmount get --id demo/images --copy "$root/copy"
run dsmount verify --id demo/images --folder "$root/copy"
run diff -r "$root/data" "$root/copy"
say "the store holds only what changed (renamed files are references, not copies):"
du -sh "$DSMOUNT_HOME"/store/data/* | sed "s|$DSMOUNT_HOME/||"
run dsmount search --project demo

say "mount version 1.0.1 read-only: files are fetched (and verified) only when read"
mkdir -p "$root/mnt"
run dsmount demo/images "$root/mnt"
trap 'dsmount unmount "$root/mnt" >/dev/null 2>&1 || true' EXIT
run ls "$root/mnt" "$root/mnt/images"
run diff -r "$root/copy" "$root/mnt"
run dsmount status "$root/mnt"
run dsmount stats "$root/mnt"
run dsmount unmount "$root/mnt"

say "mount it writable, edit in place, and commit the edits as version 1.0.2"
run dsmount mount demo/images "$root/mnt" --writable
say "through the mount: relabel an image, rename one, drop class0 (rm -r)"
echo "img0001.bin,2" >> "$root/mnt/labels/train.csv"
mv "$root/mnt/images/class1-renamed/img0001.bin" "$root/mnt/images/class1-renamed/img0001-relabelled.bin"
rm -r "$root/mnt/images/class0"
run dsmount diff "$root/mnt"
run dsmount commit "$root/mnt" --description "relabelled img0001, dropped class0"
run dsmount status "$root/mnt"
run dsmount unmount "$root/mnt"
trap - EXIT
run dsmount compare --source demo/images@1.0.1 --target demo/images@1.0.2
echo
echo "demo state is in $root (DSMOUNT_HOME=$DSMOUNT_HOME)"
