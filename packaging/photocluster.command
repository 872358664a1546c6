#!/bin/sh
# photocluster launcher for macOS: double-click it in Finder (the first time: right-click → Open, since it
# is not signed). The first start creates .venv via bootstrap.py (several minutes: torch is large).
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"
cd "$ROOT" || exit 1
for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        if [ -x .venv/bin/python ] && [ -f .venv/.install-stamp ]; then
            exec .venv/bin/python -m photocluster.gui.app "$@"
        fi
        exec "$candidate" bootstrap.py run "$@"
    fi
done
osascript -e 'display alert "photocluster needs Python 3.11 or newer" message "Install it from python.org or with Homebrew (brew install python), then open this launcher again."' 2>/dev/null
echo "photocluster needs Python 3.11 or newer (python.org or: brew install python)" >&2
exit 1
