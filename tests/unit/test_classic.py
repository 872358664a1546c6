"""Classical baselines: what the contract test does not cover — features, limits, confidences, protocols."""

from __future__ import annotations

import numpy as np
import pytest

from photocluster.data.dataset import ImageDataset
from photocluster.errors import UsageError
from photocluster.methods.base import get_method
from photocluster.metrics import clustering_accuracy
from photocluster.progress import CancelToken, Cancelled

CLASSIC = ("kmeans", "gmm", "agglomerative", "spectral", "nmf")


def blobs(n_per_class: int = 20, size: int = 8, seed: int = 0, rgb: bool = False) -> ImageDataset:
    """Two classes of 8×8 images: bright left half vs bright top half, with noise. (Not left vs right: HOG
    uses unsigned gradients, so mirror-image edges would give the same HOG.)"""
    rng = np.random.default_rng(seed)
    labels = np.arange(2 * n_per_class) % 2
    images = rng.normal(30, 10, (len(labels), size, size, 3 if rgb else 1))
    for i, label in enumerate(labels):
        if label == 0:
            images[i, :, : size // 2] += 180
        else:
            images[i, : size // 2, :] += 180
    return ImageDataset("blobs", np.clip(images, 0, 255).astype(np.uint8), labels)


@pytest.mark.parametrize("features", ["raw", "hog", "hog-color", "gabor", "pca"])
def test_kmeans_on_every_feature_kind(features):
    dataset = blobs(rgb=True)
    method = get_method("kmeans", n_clusters=2, features=features, pca_components=5, n_init=2).fit(dataset)
    assert clustering_accuracy(dataset.labels, method.labels_) == 1.0
    assert method.history_[0]["kind"] == features


def test_kmeans_confidence_is_in_unit_interval_and_higher_near_the_centre():
    dataset = blobs()
    method = get_method("kmeans", n_clusters=2).fit(dataset)
    assert (method.confidence_ > 0).all() and (method.confidence_ <= 1).all()
    # 1 / (1 + d / mean d): the image nearest its centre is the surest.
    centres = method._model.cluster_centers_
    distances = np.linalg.norm(method.embeddings_ - centres[method.labels_], axis=1)
    assert method.confidence_.argmax() == distances.argmin()
    np.testing.assert_allclose(method.confidence_, 1 / (1 + distances / distances.mean()), rtol=1e-4)


def test_kmeans_keeps_the_best_restart():
    dataset = blobs()
    one = get_method("kmeans", n_clusters=5, n_init=1).fit(dataset)
    many = get_method("kmeans", n_clusters=5, n_init=8).fit(dataset)
    assert many.history_[1]["inertia"] <= one.history_[1]["inertia"] + 1e-6


def test_kmeans_predict_matches_fit_labels():
    dataset = blobs()
    method = get_method("kmeans", n_clusters=2).fit(dataset)
    np.testing.assert_array_equal(method.predict(dataset.images), method.labels_)
    with pytest.raises(UsageError, match="shape"):
        method.predict(np.zeros((1, 4, 4, 1), np.uint8))


def test_gmm_confidence_is_the_posterior():
    dataset = blobs()
    method = get_method("gmm", n_clusters=2).fit(dataset)
    posterior = method._model.predict_proba(method.embeddings_)
    np.testing.assert_allclose(method.confidence_, posterior.max(axis=1), rtol=1e-5)
    with pytest.raises(UsageError, match="covariance_type"):
        get_method("gmm", n_clusters=2, covariance_type="weird").fit(dataset)


def test_nmf_refuses_negative_features():
    with pytest.raises(UsageError, match="non-negative"):
        get_method("nmf", n_clusters=2, features="pca").fit(blobs())


def test_nmf_confidence_is_the_share_of_the_strongest_component():
    dataset = blobs()
    method = get_method("nmf", n_clusters=2).fit(dataset)
    # transform() re-solves W with H fixed, so it matches fit_transform's W only to about 1e-3.
    weights = method._model.transform(method.embeddings_)
    np.testing.assert_allclose(method.confidence_, weights.max(axis=1) / weights.sum(axis=1), atol=2e-3)
    assert clustering_accuracy(dataset.labels, method.labels_) == 1.0


@pytest.mark.parametrize("name", ["agglomerative", "spectral"])
def test_quadratic_methods_refuse_large_sets_unless_subsampling(name):
    dataset = blobs(n_per_class=30)
    with pytest.raises(UsageError, match="O\\(N\\^2\\)"):
        get_method(name, n_clusters=2, max_samples=40).fit(dataset)
    method = get_method(name, n_clusters=2, max_samples=40, subsample=True).fit(dataset)
    # 40 of 60 images clustered exactly; the other 20 go to the nearest cluster mean.
    assert method.history_[1]["subsampled"] == 40
    assert method.labels_.shape == (60,)
    assert clustering_accuracy(dataset.labels, method.labels_) == 1.0


def test_quadratic_protocol_subsamples_big_sets_only():
    from photocluster.methods.base import method_class

    cls = method_class("agglomerative")
    small = blobs()
    big = ImageDataset("big", np.zeros((10_001, 1, 1, 1), np.uint8), np.zeros(10_001, np.int64))
    assert "subsample" not in cls.protocol_params("quick", small)
    assert cls.protocol_params("paper", big)["subsample"] is True


@pytest.mark.parametrize("name", CLASSIC)
def test_dac_inputs_per_data_set(name):
    from photocluster.methods.base import method_class

    cls = method_class(name)
    stl = ImageDataset("stl10", np.zeros((2, 96, 96, 3), np.uint8))
    mnist = ImageDataset("mnist", np.zeros((2, 28, 28, 1), np.uint8))
    assert cls.protocol_params("paper", stl)["features"] == "hog-color"
    assert "features" not in cls.protocol_params("quick", mnist)


@pytest.mark.parametrize("name", CLASSIC)
def test_bad_parameters_are_usage_errors(name):
    dataset = blobs()
    with pytest.raises(UsageError, match="at least 2"):
        get_method(name, n_clusters=1).fit(dataset)
    with pytest.raises(UsageError, match="cannot make"):
        get_method(name, n_clusters=41).fit(dataset)
    with pytest.raises(UsageError, match="unknown features"):
        get_method(name, n_clusters=2, features="sift").fit(dataset)


def test_cancel_during_features_stops_before_clustering():
    dataset = blobs(n_per_class=600)  # 1,200 images = 2 feature batches
    token = CancelToken()
    method = get_method("kmeans", n_clusters=2)
    steps = method.fit_steps(dataset, cancel=token)
    first = next(steps)
    assert first.stage == "features" and first.total == 1200
    token.cancel()
    with pytest.raises(Cancelled):
        list(steps)
    assert not hasattr(method, "labels_")


def test_parameter_specs_have_help_and_choices():
    from photocluster.methods.base import method_class

    specs = {spec.name: spec for spec in method_class("nmf").parameter_specs()}
    assert "pca" not in specs["features"].choices
    assert specs["n_clusters"].minimum == 2
    assert all(spec.help for spec in specs.values())
