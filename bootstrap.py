#!/usr/bin/env python3
"""Set up photocluster in ./.venv and run it — the two commands of the README.

    python3 bootstrap.py run    # create .venv if missing, install, open the app (no display: digits benchmark)
    python3 bootstrap.py test   # create .venv if missing, install with test extras, run the default test suite

Uses only the standard library, so it works on a fresh machine with Python >= 3.11. The install is skipped
when pyproject.toml has not changed since the last one (a stamp file in .venv records its hash).
Extra arguments after ``run`` go to ``photocluster``; after ``test`` to pytest.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".install-stamp"


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_environment(extras: str) -> Path:
    if sys.version_info < (3, 11):
        sys.exit(f"photocluster needs Python >= 3.11; this is {sys.version.split()[0]}")
    if not venv_python().exists():
        print(f"bootstrap: creating the environment in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    # The stamp holds the hash of pyproject.toml and the extras installed with it: "run" after "test" (whose
    # extras include everything "run" needs) must not reinstall.
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    stamp = STAMP.read_text().split() if STAMP.exists() else []
    up_to_date = bool(stamp) and stamp[0] == wanted and (not extras or extras in stamp[1:])
    if not up_to_date:
        print(f"bootstrap: installing photocluster{extras} (first time: several minutes, torch is large)", flush=True)
        py = str(venv_python())
        subprocess.run([py, "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True)
        subprocess.run([py, "-m", "pip", "install", "--quiet", "-e", f"{ROOT}{extras}"], check=True)
        STAMP.write_text(f"{wanted} {extras}".strip())
    return venv_python()


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("run", "test"):
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    if command == "run":
        py = ensure_environment("")
        return subprocess.call([str(py), "-m", "photocluster", *rest])
    py = ensure_environment("[test]")
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    env.setdefault("PHOTOCLUSTER_TEST_DATA", str(ROOT.parent / "shared" / "data"))
    return subprocess.call([str(py), "-m", "pytest", "-m", "not slow", "-q", *rest], cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
