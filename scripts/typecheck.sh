#!/usr/bin/env bash
# mypy --strict over the whole package as it is installed: daemon/ and cli/ are mapped into
# mountfs.daemon and mountfs.cli, which mypy cannot see through the editable-install hook,
# so type-check a link farm with the installed layout.
set -euo pipefail
cd "$(dirname "$0")/.."
farm=build/typecheck
rm -rf "$farm" && mkdir -p "$farm/mountfs"
for item in mountfs/*; do ln -s "$PWD/$item" "$farm/mountfs/"; done
ln -s "$PWD/daemon" "$farm/mountfs/daemon"
ln -s "$PWD/cli" "$farm/mountfs/cli"
targets=(mountfs)
for extra in tests bench scripts; do
    if compgen -G "$extra/*.py" >/dev/null || compgen -G "$extra/*/*.py" >/dev/null; then
        ln -s "$PWD/$extra" "$farm/$extra"
        targets+=("$extra")
    fi
done
cd "$farm"
exec ../../.venv/bin/mypy --config-file ../../pyproject.toml "${targets[@]}"
