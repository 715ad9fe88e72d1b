#!/usr/bin/env bash
# The test command: the whole suite, real files, real SQLite, real zips.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p test-output
exec .venv/bin/python -m pytest -q -p no:cacheprovider --junitxml=test-output/junit.xml "$@"
