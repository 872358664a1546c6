"""The estimator contract, checked on every registered method (new methods are picked up automatically).

Each method runs with its ``smoke_params()`` (plus ``device="cpu"`` / ``weights="none"`` where it has those
parameters) on a small, well-separated synthetic set: three pattern families (a square top-left, a square
bottom-right, a diagonal cross), 50 images each, 28×28, randomly shifted by up to 2 px, with random
brightness and pixel noise; a grey and an RGB variant.

Quality floor: ACC ≥ 0.6. Measured with k-means (raw pixels) on this set: ACC 1.0 (grey and RGB) — the floor
leaves room for short smoke schedules of the deep methods while still failing a method that returns chance
(≈ 0.33–0.4) or one cluster (0.33).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest

from photocluster.data.dataset import ImageDataset
from photocluster.methods.base import ClusteringMethod, get_method, list_methods, method_class
from photocluster.metrics import clustering_accuracy
from photocluster.progress import CancelToken, Cancelled, ProgressEvent

N_PER_FAMILY = 50
QUALITY_FLOOR = 0.6


def _family_templates(size: int = 28) -> np.ndarray:
    templates = np.zeros((3, size, size), dtype=np.float32)
    templates[0, 4:12, 4:12] = 1.0  # square, top left
    templates[1, 16:24, 16:24] = 1.0  # square, bottom right
    for i in range(4, 24):  # diagonal cross through the centre, 2 px thick
        templates[2, i, i : i + 2] = 1.0
        templates[2, i, size - i - 2 : size - i] = 1.0
    return templates


def synthetic_families(rgb: bool = False, n_per_family: int = N_PER_FAMILY, seed: int = 0) -> ImageDataset:
    """Three visually distinct pattern families; labels 0, 1, 2 interleaved so no method can profit from
    the order of the images."""
    rng = np.random.default_rng(seed)
    templates = _family_templates()
    n = 3 * n_per_family
    labels = np.arange(n) % 3
    images = np.empty((n, 28, 28, 3 if rgb else 1), dtype=np.uint8)
    for i, label in enumerate(labels):
        shifted = np.roll(templates[label], tuple(rng.integers(-2, 3, size=2)), axis=(0, 1))
        grey = shifted * rng.uniform(180, 255) + rng.normal(0, 20, shifted.shape)
        if rgb:
            image = grey[..., None] * rng.uniform(0.7, 1.0, size=3)
        else:
            image = grey[..., None]
        images[i] = np.clip(image, 0, 255).astype(np.uint8)
    return ImageDataset("synthetic-rgb" if rgb else "synthetic", images, labels)


def build(name: str, **extra) -> ClusteringMethod:
    cls = method_class(name)
    params = {"n_clusters": 3, "random_state": 0, **cls.smoke_params(), **extra}
    accepted = cls._param_names()
    if "device" in accepted:
        params["device"] = "cpu"
    if "weights" in accepted:
        params["weights"] = "none"
    return get_method(name, **params)


@lru_cache(maxsize=None)
def grey_set() -> ImageDataset:
    return synthetic_families(rgb=False)


@lru_cache(maxsize=None)
def rgb_set() -> ImageDataset:
    return synthetic_families(rgb=True)


@lru_cache(maxsize=None)
def fitted(name: str, variant: str) -> tuple[ClusteringMethod, list[ProgressEvent]]:
    """Fit once per method and variant; several tests look at the same fit."""
    method = build(name)
    dataset = grey_set() if variant == "grey" else rgb_set()
    events = list(method.fit_steps(dataset))
    return method, events


METHODS = list_methods()


def test_registry_has_the_classical_baselines():
    assert {"kmeans", "gmm", "agglomerative", "spectral", "nmf"} <= set(METHODS)


@pytest.mark.parametrize("name", METHODS)
def test_init_only_stores_parameters(name):
    method = build(name)
    params = method.get_params()
    assert params["n_clusters"] == 3 and params["random_state"] == 0
    assert not hasattr(method, "labels_")
    assert method.name == name and method.description


@pytest.mark.parametrize("name", METHODS)
def test_fit_steps_sets_the_fitted_attributes(name):
    method, _ = fitted(name, "grey")
    n = len(grey_set())
    assert method.labels_.shape == (n,) and method.labels_.dtype == np.int64
    assert method.labels_.min() >= 0 and method.labels_.max() < 3
    assert method.confidence_.shape == (n,) and np.isfinite(method.confidence_).all()
    assert method.embeddings_.ndim == 2 and method.embeddings_.shape[0] == n
    assert method.embeddings_.dtype == np.float32
    assert isinstance(method.history_, list)


@pytest.mark.parametrize("name", METHODS)
def test_fit_steps_yields_progress_events(name):
    _, events = fitted(name, "grey")
    assert events and all(isinstance(event, ProgressEvent) for event in events)
    assert all(event.stage for event in events)


@pytest.mark.parametrize("name", METHODS)
def test_quality_floor_on_well_separated_families(name):
    method, _ = fitted(name, "grey")
    acc = clustering_accuracy(grey_set().labels, method.labels_)
    assert acc >= QUALITY_FLOOR, f"{name}: ACC {acc:.3f} below the floor {QUALITY_FLOOR}"


@pytest.mark.parametrize("name", METHODS)
def test_rgb_images(name):
    method, _ = fitted(name, "rgb")
    dataset = rgb_set()
    assert method.labels_.shape == (len(dataset),)
    assert method.embeddings_.shape[0] == len(dataset)
    acc = clustering_accuracy(dataset.labels, method.labels_)
    assert acc >= QUALITY_FLOOR, f"{name} (RGB): ACC {acc:.3f} below the floor {QUALITY_FLOOR}"


@pytest.mark.parametrize("name", METHODS)
def test_fit_returns_self_and_same_random_state_gives_the_same_labels(name):
    first, _ = fitted(name, "grey")
    second = build(name)
    assert second.fit(grey_set()) is second
    np.testing.assert_array_equal(first.labels_, second.labels_)


@pytest.mark.parametrize("name", METHODS)
def test_cancel_before_start_raises_cancelled(name):
    token = CancelToken()
    token.cancel()
    method = build(name)
    with pytest.raises(Cancelled):
        for _ in method.fit_steps(grey_set(), cancel=token):
            pass
    assert not hasattr(method, "labels_")


@pytest.mark.parametrize("name", METHODS)
def test_predict_labels_new_images_like_the_fit(name):
    method, _ = fitted(name, "grey")
    new = synthetic_families(rgb=False, n_per_family=5, seed=7)
    try:
        predicted = method.predict(new.images)
    except NotImplementedError:
        pytest.skip(f"{name} cannot label new images")
    assert predicted.shape == (15,)
    # New images of the same families: the map learnt on the fit must still hold for most of them.
    assert clustering_accuracy(new.labels, predicted) >= QUALITY_FLOOR


@pytest.mark.parametrize("name", METHODS)
def test_protocols_and_parameter_specs(name):
    cls = method_class(name)
    for protocol in ("quick", "paper"):
        params = cls.protocol_params(protocol, grey_set())
        assert set(params) <= set(cls._param_names())
    described = cls.describe_protocols()
    assert set(described) == {"quick", "paper"}
    spec_names = {spec.name for spec in cls.parameter_specs()}
    assert "n_clusters" in spec_names
    assert spec_names <= set(cls._param_names())
