#!/bin/sh
# photocluster launcher for Linux (and other Unix desktops).
#   Double-click it in a file manager ("Run"), or: packaging/photocluster.sh [folders...]
#   packaging/photocluster.sh --install-desktop   adds photocluster to the applications menu
# The first start creates .venv next to the repository via bootstrap.py (several minutes: torch is large).
set -e
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(dirname "$HERE")"

if [ "$1" = "--install-desktop" ]; then
    APPS="${XDG_DATA_HOME:-$HOME/.local/share}/applications"
    mkdir -p "$APPS"
    sed -e "s|^Exec=.*|Exec=\"$HERE/photocluster.sh\" %F|" \
        -e "s|^TryExec=.*|TryExec=$HERE/photocluster.sh|" \
        -e "s|^Icon=.*|Icon=$ROOT/resources/photocluster.png|" \
        "$ROOT/resources/photocluster.desktop" > "$APPS/photocluster.desktop"
    chmod +x "$APPS/photocluster.desktop"
    command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database "$APPS" || true
    echo "installed $APPS/photocluster.desktop"
    exit 0
fi

for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        PYTHON="$candidate"
        break
    fi
done
if [ -z "$PYTHON" ]; then
    MESSAGE="photocluster needs Python 3.11 or newer: install it from your distribution (e.g. apt install python3 python3-venv)."
    command -v notify-send >/dev/null 2>&1 && notify-send "photocluster" "$MESSAGE"
    echo "$MESSAGE" >&2
    exit 1
fi
cd "$ROOT"
if [ -x .venv/bin/python ] && [ -f .venv/.install-stamp ]; then
    # Already set up: start the app directly (bootstrap.py would only check the stamp and do the same).
    exec .venv/bin/python -m photocluster.gui.app "$@"
fi
exec "$PYTHON" bootstrap.py run "$@"
