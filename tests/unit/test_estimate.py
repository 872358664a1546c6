"""Presets for photo folders and the calibration estimate of time and memory."""

from __future__ import annotations

import numpy as np
import pytest

from photocluster.data.dataset import ImageDataset
from photocluster.errors import UsageError
from photocluster.estimate import calibration_sizes, estimate_steps, format_duration, peak_memory_bytes
from photocluster.methods.base import method_class
from photocluster.pipeline import with_preset
from photocluster.progress import run_to_end


def _photos(n: int) -> ImageDataset:
    return ImageDataset("photos", np.random.default_rng(0).integers(0, 256, (n, 96, 96, 3), dtype=np.uint8))


def test_presets_replace_the_paper_schedule_but_not_what_the_person_set():
    photos = _photos(300)
    fast = with_preset("mmdc", {"n_clusters": 5, "epochs": 50}, "fast", photos)  # 50 is the default: preset wins
    assert fast["epochs"] == 6 and fast["input_size"] == 64 and fast["batch_size"] == 32 and fast["n_clusters"] == 5
    mine = with_preset("mmdc", {"n_clusters": 5, "epochs": 3}, "thorough", photos)
    assert mine["epochs"] == 3 and mine["input_size"] == 96
    assert with_preset("dac", {"n_clusters": 5}, "fast", photos)["max_passes"] == 3
    assert with_preset("kmeans", {"n_clusters": 5, "features": "hog"}, "fast", photos) == {"n_clusters": 5, "features": "hog"}
    with pytest.raises(UsageError, match="unknown preset"):
        with_preset("kmeans", {}, "slowest", photos)


def test_every_method_has_both_presets():
    from photocluster.methods.base import PHOTO_PRESETS, list_methods

    for name in list_methods():
        for preset in PHOTO_PRESETS:
            assert isinstance(method_class(name).photo_preset(preset, _photos(120)), dict)


def test_calibration_sizes_and_small_folders():
    assert calibration_sizes(50) is None
    assert calibration_sizes(120) == (16, 48)
    assert calibration_sizes(100_000) == (16, 48)


def test_estimate_extrapolates_a_straight_line_through_two_calibration_runs(monkeypatch):
    import photocluster.estimate as estimate

    # a fake clock: each calibration "takes" 2 s + 0.1 s per photo, so 1,000 photos take 102 s
    clock = iter([0.0, 2.0 + 0.1 * 16, 10.0, 10.0 + 2.0 + 0.1 * 48])
    monkeypatch.setattr(estimate.time, "perf_counter", lambda: next(clock))
    result = run_to_end(estimate_steps(_photos(1000), "kmeans", {"n_clusters": 3, "features": "raw", "n_init": 1}))
    assert [n for n, _, _ in result.samples] == [16, 48]
    assert result.seconds == pytest.approx(102.0)
    assert result.peak_bytes > 0 and "about 2 min" in result.describe()


def test_peak_memory_is_read_and_durations_read_well():
    assert peak_memory_bytes() > 10 * 2**20
    assert [format_duration(s) for s in (0.2, 40, 400, 20000)] == ["1 s", "40 s", "7 min", "5.6 h"]


def test_memory_is_extrapolated_up_to_the_methods_batch_and_no_further(monkeypatch):
    import photocluster.estimate as estimate

    peaks = iter([1000 * 2**20, 1100 * 2**20])  # 16 photos, then 48: 100 MB more for 32 more photos in a batch
    monkeypatch.setattr(estimate, "peak_memory_bytes", lambda: next(peaks))
    monkeypatch.setattr(estimate, "reset_peak_memory", lambda: True)
    params = {"n_clusters": 3, "features": "raw", "n_init": 1, "batch_size": 256}

    monkeypatch.setattr("photocluster.methods.base.get_method",
                        lambda name, **p: type("M", (), {"fit_steps": lambda self, d, cancel=None: iter(()),
                                                         "get_params": lambda self: {"minibatch": 8}})())
    result = run_to_end(estimate_steps(_photos(5000), "kmeans", params))
    assert result.peak_bytes == pytest.approx((1100 + 100 / 32 * (256 - 48)) * 2**20)
    peaks = iter([1000 * 2**20, 1100 * 2**20])
    monkeypatch.setattr(estimate, "peak_memory_bytes", lambda: next(peaks))
    small = run_to_end(estimate_steps(_photos(5000), "kmeans", {**params, "batch_size": 32}))
    assert small.peak_bytes == 1100 * 2**20  # the batch is already inside the samples: their peak
