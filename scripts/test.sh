#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite, the real-browser test included.
# Extra options go to pytest (for example -k sample_explorer or -m "not frappe").
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

# The browser test drives Debian's Chromium through Playwright; it never
# downloads a browser of its own.
if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing chromium for the browser test" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "warning: /usr/bin/chromium is missing and cannot be installed here; the browser test will be skipped" >&2
    fi
fi
exec .venv/bin/python -m pytest "$@"
