"""Handcrafted features: sizes computed by hand, values on images whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from photocluster.features.handcrafted import FEATURE_KINDS, colour_map, extract_features, feature_steps, to_grey

RNG = np.random.default_rng(1)


def stripes(n: int, vertical: bool, size: int = 28, period: int = 4) -> np.ndarray:
    coords = np.arange(size)
    wave = ((coords // (period // 2)) % 2 * 255).astype(np.uint8)
    image = np.tile(wave, (size, 1)) if vertical else np.tile(wave[:, None], (1, size))
    return np.repeat(image[None, :, :, None], n, axis=0)


def test_raw_is_pixels_over_255():
    images = RNG.integers(0, 256, (4, 5, 6, 3), dtype=np.uint8)
    features = extract_features(images, "raw")
    assert features.dtype == np.float32 and features.shape == (4, 5 * 6 * 3)
    np.testing.assert_allclose(features, images.reshape(4, -1) / 255.0, rtol=1e-6)


def test_hog_dimension_by_hand():
    # 28 px → 7-px cells → 4×4 cells → 3×3 blocks of 2×2 cells × 9 orientations = 3·3·4·9 = 324
    assert extract_features(RNG.integers(0, 256, (2, 28, 28, 1), dtype=np.uint8), "hog").shape == (2, 324)
    # 96 px → 8-px cells → 12×12 cells → 11×11 blocks × 36 = 4356
    assert extract_features(RNG.integers(0, 256, (1, 96, 96, 3), dtype=np.uint8), "hog").shape == (1, 4356)


def test_hog_sees_orientation():
    vertical = extract_features(stripes(1, True), "hog")[0]
    horizontal = extract_features(stripes(1, False), "hog")[0]
    # Per cell, 9 orientation bins; vertical stripes have horizontal gradients (bin 0), horizontal stripes
    # vertical gradients (bin 4 of 0..8 covering 0..180°).
    per_bin_v = vertical.reshape(-1, 9).sum(axis=0)
    per_bin_h = horizontal.reshape(-1, 9).sum(axis=0)
    assert per_bin_v.argmax() == 0
    assert per_bin_h.argmax() == 4


def test_colour_map_by_hand():
    # 16×16 RGB image: left half pure red, right half black → 8×8 map, red channel 1 in columns 0-3, 0 in 4-7.
    image = np.zeros((1, 16, 16, 3), dtype=np.uint8)
    image[:, :, :8, 0] = 255
    cmap = colour_map(image).reshape(8, 8, 3)
    np.testing.assert_allclose(cmap[:, :4, 0], 1.0)
    np.testing.assert_allclose(cmap[:, 4:, 0], 0.0)
    np.testing.assert_allclose(cmap[..., 1:], 0.0)


def test_hog_color_is_hog_then_colour_map():
    images = RNG.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    combined = extract_features(images, "hog-color")
    hog = extract_features(images, "hog")
    assert combined.shape == (3, hog.shape[1] + 8 * 8 * 3)
    np.testing.assert_allclose(combined[:, : hog.shape[1]], hog)
    np.testing.assert_allclose(combined[:, hog.shape[1] :], colour_map(images))


def test_gabor_dimension_and_orientation():
    vertical = extract_features(stripes(1, True), "gabor")
    horizontal = extract_features(stripes(1, False), "gabor")
    # 8 orientations × 4 frequencies × 4×4 grid = 512
    assert vertical.shape == (1, 512)
    # Filter θ = 0 responds to vertical stripes (variation along x), θ = 90° (index 4) to horizontal ones,
    # at the stripes' frequency 1/4 cycles per pixel (nearest bank frequency 0.2, index 1).
    energy_v = vertical.reshape(4, 8, 16).mean(axis=2)[1]
    energy_h = horizontal.reshape(4, 8, 16).mean(axis=2)[1]
    assert energy_v.argmax() == 0
    assert energy_h.argmax() == 4


def test_pca_keeps_distances_within_the_subspace():
    # Points on a 2-D plane in 64-D pixel space: PCA with 2 components is an isometry on them.
    basis = np.zeros((2, 64))
    basis[0, :32] = 1
    basis[1, 32:] = 1
    coeffs = RNG.integers(0, 8, (20, 2))
    images = (coeffs @ basis * 30).astype(np.uint8).reshape(20, 8, 8, 1)
    reduced = extract_features(images, "pca", n_components=2)
    raw = extract_features(images, "raw")
    assert reduced.shape == (20, 2)
    d_raw = np.linalg.norm(raw[:, None] - raw[None], axis=2)
    d_pca = np.linalg.norm(reduced[:, None] - reduced[None], axis=2)
    np.testing.assert_allclose(d_pca, d_raw, atol=1e-4)


def test_batches_do_not_change_the_result():
    images = RNG.integers(0, 256, (7, 28, 28, 1), dtype=np.uint8)
    for kind in ("raw", "hog", "gabor"):
        np.testing.assert_allclose(extract_features(images, kind, batch_size=3), extract_features(images, kind),
                                   rtol=1e-5, atol=1e-6)


def test_feature_steps_reports_progress_per_batch():
    images = RNG.integers(0, 256, (5, 8, 8, 1), dtype=np.uint8)
    steps = feature_steps(images, "raw", batch_size=2)
    reports = []
    while True:
        try:
            reports.append(next(steps))
        except StopIteration as stop:
            result = stop.value
            break
    assert reports == [(2, 5), (4, 5), (5, 5)]
    assert result.shape == (5, 64)


def test_memmap_input(tmp_path):
    images = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.uint8, shape=(4, 28, 28, 1))
    images[:] = RNG.integers(0, 256, images.shape, dtype=np.uint8)
    for kind in FEATURE_KINDS:
        features = extract_features(images, kind, **({"n_components": 3} if kind == "pca" else {}))
        assert features.dtype == np.float32 and len(features) == 4 and np.isfinite(features).all()


def test_grey_conversion_uses_luma_weights():
    pixel = np.array([[[[255, 0, 0]]]], dtype=np.uint8)
    assert to_grey(pixel)[0, 0, 0] == pytest.approx(0.299)


def test_unknown_kind():
    with pytest.raises(ValueError, match="hog-color"):
        extract_features(np.zeros((1, 8, 8, 1), np.uint8), "sift")
