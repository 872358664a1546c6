"""Small labelled image sets the methods' unit tests train on: separable by construction, seconds to fit."""

from __future__ import annotations

import numpy as np

from photocluster.data.dataset import ImageDataset


def bars_dataset(n_per_class: int, seed: int = 0) -> ImageDataset:
    """Three well-separated kinds of 8x8 grey images (horizontal bar, vertical bar, diagonal) with noise."""
    rng = np.random.default_rng(seed)
    templates = np.zeros((3, 8, 8))
    templates[0, 3:5, :] = 1
    templates[1, :, 3:5] = 1
    templates[2][np.eye(8, dtype=bool)] = 1
    labels = np.repeat(np.arange(3), n_per_class)
    images = templates[labels] * 200 + rng.uniform(0, 55, size=(len(labels), 8, 8))
    order = rng.permutation(len(labels))
    return ImageDataset("bars", images[order].astype(np.uint8), labels[order])


def quadrant_images(n_per_class: int, side: int = 16, seed: int = 0) -> ImageDataset:
    """Four well-separated classes: a bright block in one quadrant of a noisy grey image."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    half = side // 2
    for c in range(4):
        y0, x0 = (c // 2) * half, (c % 2) * half
        for _ in range(n_per_class):
            img = rng.integers(0, 40, size=(side, side), dtype=np.int64)
            img[y0 + 1 : y0 + half - 1, x0 + 1 : x0 + half - 1] += 200
            images.append(np.clip(img, 0, 255).astype(np.uint8))
            labels.append(c)
    return ImageDataset("quadrants", np.stack(images)[..., None], np.array(labels))


def as_memmapped_library(dataset: ImageDataset, folder, monkeypatch, every: int) -> tuple[ImageDataset, list]:
    """``dataset`` with its images in a read-only memmap (as a photo library is), and the list that every
    release of its pages is appended to (releases after ``every`` images read, instead of 1,024)."""
    from photocluster.data import dataset as dataset_module

    library = np.memmap(folder / "library.u8", dtype=np.uint8, mode="w+", shape=dataset.images.shape)
    library[:] = dataset.images
    library.flush()
    images = np.memmap(folder / "library.u8", dtype=np.uint8, mode="r", shape=dataset.images.shape)
    released: list = []
    monkeypatch.setattr(dataset_module, "RELEASE_EVERY_IMAGES", every)
    monkeypatch.setattr(dataset_module, "release_read_pages", released.append)
    return ImageDataset(dataset.name, images, dataset.labels), released
