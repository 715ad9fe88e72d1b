#!/usr/bin/env bash
# What the browser tests of `dsmount ui` (tests/e2e) need: Debian's Chromium and Playwright
# for Python in .venv. Playwright drives /usr/bin/chromium; no browser is downloaded
# (no `playwright install`). Idempotent; run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
if [ ! -x /usr/bin/chromium ]; then
    echo "install_browser: installing chromium" >&2
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; } >"$log" 2>&1; then
        tail -n 20 "$log" >&2
        echo "install_browser: apt-get install chromium failed (log: $log)" >&2
        exit 1
    fi
fi
if ! .venv/bin/python -c "import playwright" 2>/dev/null; then
    if ! .venv/bin/python -m pip install -q --disable-pip-version-check playwright >"$log" 2>&1; then
        grep -v "is ignored" "$log" >&2
        echo "install_browser: pip install playwright failed" >&2
        exit 1
    fi
fi
rm -f "$log"
/usr/bin/chromium --version >/dev/null 2>&1 || { echo "install_browser: chromium does not run" >&2; exit 1; }
.venv/bin/python -c "import playwright.sync_api" || { echo "install_browser: import check failed" >&2; exit 1; }
echo "install_browser: ready ($(/usr/bin/chromium --version 2>/dev/null | head -n 1), playwright)" >&2
