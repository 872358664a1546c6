"""Handcrafted image features: raw pixels, HOG, HOG + 8×8 colour map, Gabor, and PCA of raw pixels.

These are the inputs of the classical baselines (DAC's Table 2 uses raw pixels for MNIST/CIFAR and
HOG + an 8×8 colour map for STL-10 and the ImageNet subsets) and the boot features of the transfer-learning
method (raw pixels, Gabor, HOG, raw + PCA).

All extractors work in batches so that memory stays bounded by the output size: only ``batch_size`` images
are converted to floating point at a time. HOG comes from scikit-image (a well-tested implementation of
Dalal & Triggs); Gabor filtering is done here with FFTs over a whole batch at once, which is much faster than
filtering image by image.
"""

from __future__ import annotations

from typing import Any, Generator

import numpy as np

__all__ = ["FEATURE_KINDS", "extract_features", "feature_steps", "to_grey", "colour_map"]

#: the feature kinds :func:`extract_features` accepts
FEATURE_KINDS = ("raw", "hog", "hog-color", "gabor", "pca")

_DEFAULT_BATCH = 1024


def to_grey(images: np.ndarray) -> np.ndarray:
    """(N, H, W, C) uint8 → (N, H, W) float32 in [0, 1]; RGB is mixed with the ITU-R 601 luma weights."""
    images = np.asarray(images)
    if images.ndim == 3:
        return images.astype(np.float32) / 255.0
    if images.shape[-1] == 1:
        return images[..., 0].astype(np.float32) / 255.0
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return (images.astype(np.float32) @ weights) / 255.0


def colour_map(images: np.ndarray, grid: int = 8) -> np.ndarray:
    """The ``grid``×``grid`` colour map of DAC's baseline input: each image averaged over a grid of cells,
    one value per cell and channel, in [0, 1] → (N, grid·grid·C)."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    n, height, width, channels = images.shape
    # Cell borders by rounding, so sizes that do not divide by ``grid`` (e.g. 28 px) still work.
    rows = np.linspace(0, height, grid + 1).round().astype(int)
    cols = np.linspace(0, width, grid + 1).round().astype(int)
    out = np.empty((n, grid, grid, channels), dtype=np.float32)
    as_float = images.astype(np.float32) / 255.0
    for i in range(grid):
        r0, r1 = rows[i], max(rows[i + 1], rows[i] + 1)
        for j in range(grid):
            c0, c1 = cols[j], max(cols[j + 1], cols[j] + 1)
            out[:, i, j, :] = as_float[:, r0:r1, c0:c1, :].mean(axis=(1, 2))
    return out.reshape(n, -1)


def _hog_cell(side: int) -> int:
    # 8-px cells (Dalal & Triggs) for natural images of 64 px and more; small images get 4 cells per side so
    # that 2×2 blocks still fit (MNIST 28 px → 7-px cells, digits 8 px → 2-px cells).
    return 8 if side >= 64 else max(2, side // 4)


def _hog_batch(images: np.ndarray, cell: int, orientations: int) -> np.ndarray:
    from skimage.feature import hog

    grey = to_grey(images)
    return np.stack([
        hog(image, orientations=orientations, pixels_per_cell=(cell, cell), cells_per_block=(2, 2),
            block_norm="L2-Hys", feature_vector=True)
        for image in grey
    ]).astype(np.float32)


def _gabor_bank(height: int, width: int, n_orientations: int, frequencies: tuple[float, ...]) -> np.ndarray:
    """Frequency responses (F, H, W) of complex Gabor filters sized to the image (for FFT filtering)."""
    from skimage.filters import gabor_kernel

    bank = []
    for frequency in frequencies:
        for k in range(n_orientations):
            theta = np.pi * k / n_orientations
            kernel = gabor_kernel(frequency, theta=theta)
            # Crop kernels larger than the image (low frequencies on tiny images): the tails are ~0 anyway.
            kh, kw = kernel.shape
            if kh > height or kw > width:
                top, left = max(0, (kh - height) // 2), max(0, (kw - width) // 2)
                kernel = kernel[top : top + min(kh, height), left : left + min(kw, width)]
                kh, kw = kernel.shape
            padded = np.zeros((height, width), dtype=np.complex128)
            padded[:kh, :kw] = kernel
            # Centre the kernel at the origin so the response is not shifted.
            padded = np.roll(padded, (-(kh // 2), -(kw // 2)), axis=(0, 1))
            bank.append(np.fft.fft2(padded))
    return np.stack(bank).astype(np.complex64)


def _pool(maps: np.ndarray, grid: int) -> np.ndarray:
    """Mean over a grid×grid partition of the last two axes: (N, F, H, W) → (N, F·grid·grid)."""
    n, f, height, width = maps.shape
    rows = np.linspace(0, height, grid + 1).round().astype(int)
    cols = np.linspace(0, width, grid + 1).round().astype(int)
    out = np.empty((n, f, grid, grid), dtype=np.float32)
    for i in range(grid):
        for j in range(grid):
            out[:, :, i, j] = maps[:, :, rows[i] : max(rows[i + 1], rows[i] + 1), cols[j] : max(cols[j + 1], cols[j] + 1)].mean(axis=(2, 3))
    return out.reshape(n, -1)


def _gabor_batch(images: np.ndarray, bank: np.ndarray, grid: int) -> np.ndarray:
    grey = to_grey(images)
    spectrum = np.fft.fft2(grey)[:, None, :, :]  # (N, 1, H, W)
    magnitude = np.abs(np.fft.ifft2(spectrum * bank[None]))  # (N, F, H, W)
    return _pool(magnitude.astype(np.float32), grid)


def feature_steps(
    images: np.ndarray,
    kind: str,
    batch_size: int = _DEFAULT_BATCH,
    random_state: int | None = 0,
    **kw: Any,
) -> Generator[tuple[int, int], None, np.ndarray]:
    """Generator form of :func:`extract_features`: yields ``(done, total)`` after each batch, returns the
    features. Lets a method's ``fit_steps`` report progress and honour cancel while features are computed
    (``features = yield from ...``)."""
    if kind not in FEATURE_KINDS:
        raise ValueError(f"unknown feature kind {kind!r}; choose one of: {', '.join(FEATURE_KINDS)}")
    images = np.asarray(images) if not isinstance(images, np.memmap) else images
    if images.ndim == 3:
        images = images[..., None]
    n, height, width, _ = images.shape
    total = n
    batch_size = max(1, int(batch_size))

    if kind == "pca":
        return (yield from _pca_steps(images, batch_size, random_state, **kw))

    if kind in ("hog", "hog-color"):
        cell = int(kw.get("cell", _hog_cell(min(height, width))))
        orientations = int(kw.get("orientations", 9))
        grid = int(kw.get("color_grid", 8))

        def compute(batch: np.ndarray) -> np.ndarray:
            parts = [_hog_batch(batch, cell, orientations)]
            if kind == "hog-color":
                parts.append(colour_map(batch, grid))
            return np.concatenate(parts, axis=1)

    elif kind == "gabor":
        orientations = int(kw.get("orientations", 8))
        # Frequencies in cycles per pixel, from fine (0.4) to coarse; four scales an octave apart
        # approximate the usual 5-scale × 8-orientation bank at a quarter of the cost on small images.
        frequencies = tuple(kw.get("frequencies", (0.4, 0.2, 0.1, 0.05)))
        grid = int(kw.get("grid", 4))
        bank = _gabor_bank(height, width, orientations, frequencies)
        # FFT filtering expands each image to F complex maps: shrink the batch to keep memory bounded.
        batch_size = max(1, min(batch_size, (64 << 20) // max(1, len(bank) * height * width * 8)))

        def compute(batch: np.ndarray) -> np.ndarray:
            return _gabor_batch(batch, bank, grid)

    else:  # raw

        def compute(batch: np.ndarray) -> np.ndarray:
            return batch.reshape(len(batch), -1).astype(np.float32) / 255.0

    out: np.ndarray | None = None
    for start in range(0, n, batch_size):
        block = compute(np.asarray(images[start : start + batch_size]))
        if out is None:
            out = np.empty((n, block.shape[1]), dtype=np.float32)
        out[start : start + len(block)] = block
        yield min(start + batch_size, n), total
    assert out is not None, "no images"
    return out


def _pca_steps(images: np.ndarray, batch_size: int, random_state: int | None, **kw: Any) -> Generator[tuple[int, int], None, np.ndarray]:
    n = len(images)
    dims = int(np.prod(images.shape[1:]))
    n_components = int(kw.get("n_components", 50))
    n_components = max(1, min(n_components, n, dims))
    raw = yield from feature_steps(images, "raw", batch_size=batch_size)
    from sklearn.decomposition import PCA

    # Randomised SVD: the same principal subspace as the full SVD for the leading components, far faster
    # on 70,000 × 784 (MNIST). Seeded, so features are reproducible.
    pca = PCA(n_components=n_components, svd_solver="randomized" if n_components < min(n, dims) // 2 else "full",
              whiten=bool(kw.get("whiten", False)), random_state=random_state)
    reduced = pca.fit_transform(raw).astype(np.float32)
    yield n, n
    return reduced


def extract_features(images: np.ndarray, kind: str, **kw: Any) -> np.ndarray:
    """Compute handcrafted features of uint8 images.

    Parameters
    ----------
    images:
        uint8 array (N, H, W, C) with C = 1 or 3, or (N, H, W); may be a memmap (read in batches).
    kind:
        One of :data:`FEATURE_KINDS`:

        * ``"raw"`` — pixel intensities scaled to [0, 1], flattened;
        * ``"hog"`` — HOG of the grey image (9 orientations, 2×2-cell blocks, L2-Hys; 8-px cells for images
          of 64 px and more, else 4 cells per side; override with ``cell=``, ``orientations=``);
        * ``"hog-color"`` — HOG followed by the 8×8 colour map (DAC's baseline input for STL-10 and the
          ImageNet subsets; ``color_grid=``);
        * ``"gabor"`` — mean magnitude of a Gabor filter bank (8 orientations × 4 frequencies) over a 4×4 grid
          (``orientations=``, ``frequencies=``, ``grid=``);
        * ``"pca"`` — raw pixels projected on their first ``n_components`` (default 50) principal components
          (``whiten=``, ``random_state=``).
    batch_size:
        Images processed at a time (default 1024).

    Returns
    -------
    numpy.ndarray
        float32 (N, D).
    """
    steps = feature_steps(images, kind, **kw)
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value
