"""Helpers shared by the GUI tests (a module, not the conftest, so tests can import them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = {"red": (200, 30, 30), "green": (30, 170, 40), "blue": (30, 40, 200)}
PER_COLOUR = 8


def write_colour_photos(folder: Path, per_colour: int = PER_COLOUR, seed: int = 0) -> dict[str, list[Path]]:
    """Three clearly separated groups of small JPEGs (noisy red, green, blue squares), named by colour."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, list[Path]] = {}
    for colour, rgb in COLOURS.items():
        for i in range(per_colour):
            pixels = np.clip(np.array(rgb) + rng.normal(0, 18, size=(48, 64, 3)), 0, 255).astype(np.uint8)
            path = folder / f"{colour}_{i:02d}.jpg"
            Image.fromarray(pixels).save(path, quality=90)
            written.setdefault(colour, []).append(path)
    return written


def run_job(qtbot, window, start, timeout_ms: int = 60_000) -> tuple[str, str]:
    """Start a job with ``start()`` and wait for the window's job_finished; returns (job, outcome)."""
    with qtbot.waitSignal(window.job_finished, timeout=timeout_ms) as blocker:
        assert start() is not False
    return tuple(blocker.args)  # type: ignore[return-value]
