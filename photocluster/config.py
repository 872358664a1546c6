"""Where photocluster keeps its files: platformdirs folders, overridable for tests and portable installs.

``PHOTOCLUSTER_HOME`` (environment) puts data, cache and config under one folder; tests set it to a
temporary folder so they never touch the user's real catalog or cache.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "photocluster"


def _home_override() -> Path | None:
    home = os.environ.get("PHOTOCLUSTER_HOME")
    return Path(home) if home else None


def data_dir() -> Path:
    """Catalog database and user state."""
    home = _home_override()
    path = home / "data" if home else Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir() -> Path:
    """Decoded photo arrays, thumbnails, downloaded weights and data sets — all re-creatable."""
    home = _home_override()
    path = home / "cache" if home else Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def config_dir() -> Path:
    home = _home_override()
    path = home / "config" if home else Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


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
