"""How long a clustering of this folder will take on this machine, and how much memory: from a calibration run.

A constant per method would be wrong on every machine but one, so before the real run the pipeline runs
the very same method, parameters and preset on two small samples of the person's own photos (16 and 48 of
them: together about a third of the work of a 200-photo folder, a few percent of a large one), timing each
and reading the process's peak resident memory, and extrapolates:

- time: a straight line through the two samples, ``t(n) = a + b·n``, evaluated at the number of photos.
  Every method here costs a fixed start (building the network, loading weights) plus work proportional to
  the photos it trains on and labels; the fixed part is ``a``. Methods that train on a capped subset
  (MMDC, DAC) make this an over-estimate for very large folders — never an under-estimate.
- memory: every method streams its images, so its peak is bounded by the model and the batch, not by the
  number of photos (``scripts/bench_photo_memory.py`` checks this at 1k, 5k and 20k photos). A sample smaller
  than the method's batch holds smaller batches, though (CCNN's forward batch is 256 photos), so the peak is
  extrapolated along the line through the two samples up to the largest batch the parameters name
  (``batch_size``, ``inference_batch``, ``minibatch``), and no further.

The estimate is what a person plans with ("about 4 minutes, about 1.1 GB"), so it is stated with the
samples it came from; ``scripts/bench_photo_presets.py`` prints it beside the real run's time and memory.
Peak memory is read from ``/proc/self/status`` (``VmHWM``, reset between samples through
``/proc/self/clear_refs``) on Linux, and from ``getrusage`` elsewhere (where it cannot be reset, so the
memory figure is the process's peak so far). Qt-free core.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from photocluster.data.dataset import ImageDataset
from photocluster.progress import NEVER_CANCELLED, CancelToken, ProgressEvent

#: Sample sizes of the two calibration runs (each at most half the folder).
CALIBRATION_SIZES = (16, 48)
#: Parameters that name how many photos a method holds at once (the memory extrapolation stops there).
_BATCH_KEYS = ("batch_size", "inference_batch", "minibatch")
#: Smaller folders are not calibrated: a calibration would cost about as much as the run.
MIN_PHOTOS_TO_CALIBRATE = 96


@dataclass(frozen=True)
class RunEstimate:
    """Expected seconds and peak resident memory (bytes) of a run, and the samples they come from."""

    seconds: float
    peak_bytes: int
    samples: tuple[tuple[int, float, int], ...]  # (photos, seconds, peak bytes) per calibration run

    def describe(self) -> str:
        return (f"expected time about {format_duration(self.seconds)}, peak memory about "
                f"{format_bytes(self.peak_bytes)} (from calibration runs on "
                f"{' and '.join(str(n) for n, _, _ in self.samples)} of the photos)")


def format_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def format_bytes(count: float) -> str:
    return f"{count / 2**30:.1f} GB" if count >= 2**30 else f"{count / 2**20:.0f} MB"


def _status_value(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def reset_peak_memory() -> bool:
    """Start a new peak-memory measurement (Linux); False where the peak cannot be reset."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_memory_bytes() -> int:
    """This process's peak resident memory since the last reset (Linux) or since it started."""
    peak = _status_value("VmHWM")
    if peak is not None:
        return peak
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(usage if sys.platform == "darwin" else usage * 1024)


def calibration_sizes(n_photos: int) -> tuple[int, int] | None:
    if n_photos < MIN_PHOTOS_TO_CALIBRATE:
        return None
    small, large = CALIBRATION_SIZES
    return min(small, n_photos // 6), min(large, n_photos // 2)


def estimate_steps(dataset: ImageDataset, method: str, params: dict[str, Any], *,
                   cancel: CancelToken = NEVER_CANCELLED) -> Iterator[ProgressEvent]:
    """Calibrate ``method`` with ``params`` on two samples of ``dataset``; returns a :class:`RunEstimate`, or
    None for a folder too small to need one. Yields ``"estimate"`` events (cancel is honoured inside the
    calibration runs as in any run)."""
    from photocluster.methods.base import get_method

    sizes = calibration_sizes(len(dataset))
    if sizes is None:
        return None
    rng = np.random.default_rng(int(params.get("random_state") or 0))
    samples = []
    for index, size in enumerate(sizes):
        rows = np.sort(rng.choice(len(dataset), size=size, replace=False))
        sample = dataset.subset(rows)
        sample_params = dict(params)
        if sample_params.get("n_clusters") is not None:
            sample_params["n_clusters"] = max(2, min(int(sample_params["n_clusters"]), size // 4))
        for key in ("train_subset", "n_images_per_pass"):  # a sample trains on itself, like the folder
            if key in sample_params and sample_params[key]:
                sample_params[key] = min(int(sample_params[key]), size)
        yield ProgressEvent("estimate", index, len(sizes), message=f"calibrating on {size} of the photos…")
        reset_peak_memory()
        started = time.perf_counter()
        estimator = get_method(method, **sample_params)
        for _event in estimator.fit_steps(sample, cancel=cancel):
            cancel.raise_if_cancelled()
        samples.append((size, time.perf_counter() - started, peak_memory_bytes()))
    (n1, t1, m1), (n2, t2, m2) = samples
    n = len(dataset)
    slope = max(0.0, (t2 - t1) / (n2 - n1))
    seconds = max(t2, t2 + slope * (n - n2))
    every = {**get_method(method, **params).get_params(), **params}  # the method's defaults name its batches too
    batch = max((int(every[key]) for key in _BATCH_KEYS if isinstance(every.get(key), int)), default=n2)
    memory_slope = max(0.0, (m2 - m1) / (n2 - n1))
    peak = max(m1, m2) + memory_slope * max(0, min(n, batch) - n2)
    result = RunEstimate(seconds, int(peak), tuple(samples))
    yield ProgressEvent("estimate", len(sizes), len(sizes), {"seconds": seconds, "peak_gb": result.peak_bytes / 2**30},
                        message=f"estimate: {result.describe()}")
    return result
