"""Where photocluster keeps its files: platformdirs folders, overridable for tests and portable installs.

``PHOTOCLUSTER_HOME`` (environment) puts data, cache and config under one folder; tests set it to a
temporary folder so they never touch the user's real catalog or cache. A folder that cannot be created or
written raises :class:`DataFolderError` (one line, no traceback, from a command or the app).
"""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path

import platformdirs

from photocluster.errors import UsageError

APP_NAME = "photocluster"

#: Folders already found writable in this process (checked once each: a probe file costs a few syscalls).
_writable: set[Path] = set()


class DataFolderError(UsageError, OSError):
    """photocluster's own data, cache or config folder cannot be created or written (a read-only mount,
    a file in its place, no permission). A :class:`~photocluster.errors.UsageError`, so a command shows one
    line and exits 2; an :class:`OSError` too, so code that treats its folder as optional (the scan
    index) goes on without it."""


def _usable_folder(path: Path, what: str) -> Path:
    """Create ``path`` and prove it writable (a probe file, not ``os.access``: root passes that on a
    read-only mount); raise :class:`DataFolderError` with one line a person can act on."""
    if path in _writable:
        return path
    probe = path / f".photocluster-probe-{secrets.token_hex(4)}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        if exc.errno == errno.EROFS:
            cause = "it is on a read-only disk"
        elif exc.errno in (errno.EACCES, errno.EPERM):
            cause = "permission denied"
        elif exc.errno in (errno.ENOSPC, errno.EDQUOT):
            cause = "the disk is full"
        else:
            cause = exc.strerror or str(exc)
        shown = os.fsencode(path).decode("utf-8", "replace")
        hint = ("set PHOTOCLUSTER_HOME to a writable folder" if _home_override() is None
                else "PHOTOCLUSTER_HOME must name a writable folder")
        raise DataFolderError(f"cannot write photocluster's {what} folder {shown} ({cause}); {hint}") from None
    _writable.add(path)
    return path


def _home_override() -> Path | None:
    home = os.environ.get("PHOTOCLUSTER_HOME")
    return Path(home) if home else None


def data_dir() -> Path:
    """Catalog database and user state."""
    home = _home_override()
    path = home / "data" if home else Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
    return _usable_folder(path, "data")


def cache_dir() -> Path:
    """Decoded photo arrays, thumbnails, downloaded weights and data sets — all re-creatable."""
    home = _home_override()
    path = home / "cache" if home else Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))
    return _usable_folder(path, "cache")


def config_dir() -> Path:
    home = _home_override()
    path = home / "config" if home else Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))
    return _usable_folder(path, "config")


def datasets_dir() -> Path:
    """Default root for benchmark data sets (``--data-dir`` overrides it)."""
    path = cache_dir() / "datasets"
    path.mkdir(parents=True, exist_ok=True)
    return path


def weights_dir() -> Path:
    """Downloaded pre-trained weights (torchvision's hub cache is pointed here)."""
    path = cache_dir() / "weights"
    path.mkdir(parents=True, exist_ok=True)
    return path
