"""Helpers shared by the GUI tests (a module, not the conftest, so tests can import them)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from photocluster.methods import base
from photocluster.progress import NEVER_CANCELLED, CancelToken, ProgressEvent

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


# -- fake methods: deterministic timing and failures without depending on a real method's speed -------
# (here, not in conftest.py: training runs in a child process, which imports these classes by module name)
class SlowMethod(base.ClusteringMethod):
    """Yields a 'train' event every ``step_seconds`` for ``steps`` steps, checking cancel each time."""

    name = "test-slow"
    description = "A test method that trains slowly and honours cancel."
    family = "deep"

    def __init__(self, n_clusters: int = 2, step_seconds: float = 0.02, steps: int = 100_000, random_state: int = 0):
        self.n_clusters = n_clusters
        self.step_seconds = step_seconds
        self.steps = steps
        self.random_state = random_state

    def fit_steps(self, dataset, cancel: CancelToken = NEVER_CANCELLED, constraints=None) -> Iterator[ProgressEvent]:
        for step in range(self.steps):
            cancel.raise_if_cancelled()
            time.sleep(self.step_seconds)
            # the pid tells the tests which process trains
            yield ProgressEvent("train", step + 1, self.steps, {"loss": 1.0 / (step + 1), "pid": os.getpid()})
        self.labels_ = np.arange(len(dataset)) % self.n_clusters
        self.confidence_ = np.ones(len(dataset))


class CollapsingMethod(SlowMethod):
    """Finishes after one step with every photo in cluster 0, as a deep method whose training collapsed."""

    name = "test-collapsing"
    description = "A test method whose result is one cluster."

    def fit_steps(self, dataset, cancel: CancelToken = NEVER_CANCELLED, constraints=None) -> Iterator[ProgressEvent]:
        yield ProgressEvent("train", 1, 1, {"loss": 0.0})
        self.labels_ = np.zeros(len(dataset), dtype=np.int64)
        self.confidence_ = np.ones(len(dataset))


class BrokenMethod(base.ClusteringMethod):
    """Fails after its first progress event, as a method refusing its input would."""

    name = "test-broken"
    description = "A test method that raises."
    family = "deep"

    def __init__(self, n_clusters: int = 2):
        self.n_clusters = n_clusters

    def fit_steps(self, dataset, cancel: CancelToken = NEVER_CANCELLED, constraints=None) -> Iterator[ProgressEvent]:
        yield ProgressEvent("train", 0, 10)
        self.fail()

    def fail(self) -> None:
        """How this method fails after its first event (subclasses fail in other ways)."""
        raise ValueError("the network diverged (loss is NaN)")


class StubbornMethod(SlowMethod):
    """Never checks its cancel token (as a method stuck in one long call would): must be ended from outside."""

    name = "test-stubborn"
    description = "A test method that ignores cancel."

    def fit_steps(self, dataset, cancel: CancelToken = NEVER_CANCELLED, constraints=None) -> Iterator[ProgressEvent]:
        for step in range(self.steps):
            time.sleep(self.step_seconds)
            yield ProgressEvent("train", step + 1, self.steps, {"loss": 1.0, "pid": os.getpid()})
        self.labels_ = np.arange(len(dataset)) % self.n_clusters


class _UnpicklableError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = __import__("threading").Lock()  # cannot be pickled: the error must travel as text


class UnpicklableErrorMethod(BrokenMethod):
    name = "test-unpicklable-error"
    description = "A test method that raises an exception which cannot be pickled."

    def fail(self) -> None:
        raise _UnpicklableError("the GPU fell off the bus")


class CrashingMethod(BrokenMethod):
    name = "test-crashing"
    description = "A test method whose process dies without a word (as the out-of-memory killer does)."

    def fail(self) -> None:
        os._exit(7)


def endless_work(*, cancel: CancelToken) -> Iterator[ProgressEvent]:
    """Work that runs until cancelled, reporting its process id (for the orphan test)."""
    while True:
        cancel.raise_if_cancelled()
        time.sleep(0.02)
        yield ProgressEvent("work", metrics={"pid": os.getpid()})


def crashing_work(*, cancel: CancelToken) -> Iterator[ProgressEvent]:
    """Work whose process dies at once without a word."""
    yield from ()
    os._exit(5)


def process_running(pid: int) -> bool:
    """True while ``pid`` is a live process (a zombie counts as ended). Linux /proc."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def alternating_split(paths, content_hashes, n_parts, *, cancel: CancelToken = NEVER_CANCELLED):
    """Stand-in for ``jobs.split_job`` on catalogs whose photos are placeholder paths: labels 0, 1, …, n−1, 0, …
    (k-means would need the image files). Module-level, so a split's child process can import it."""
    yield ProgressEvent("split", 0, 1, {"pid": os.getpid()})
    return np.arange(len(paths), dtype=np.int64) % n_parts
