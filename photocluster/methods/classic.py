"""Classical clustering on handcrafted features or pre-trained embeddings: k-means, GMM, agglomerative,
spectral, NMF.

``features`` is a handcrafted kind (raw pixels, HOG, HOG + colour map, Gabor, PCA) or the name of an
ImageNet backbone (``mobilenet_v2``, ``convnext_tiny``, … see :data:`photocluster.features.pretrained.BACKBONES`):
then the features are that network's L2-normalised embeddings (:mod:`photocluster.features.embeddings`,
cached on disk), with ``weights`` ("default" = torchvision's, downloaded once; a state-dict path; "none")
and ``device`` used only for them. k-means on mobilenet_v2 embeddings is the recommended path for photos.

They are the baselines of DAC's Table 2 (k-means, SC, AC, NMF on raw pixels for MNIST/CIFAR, on HOG + an
8×8 colour map for STL-10 and the ImageNet subsets) and the boot clusterings of the transfer-learning
method (k-means / GMM on raw pixels, Gabor, HOG, raw + PCA).

Each one follows the estimator contract of :mod:`photocluster.methods.base`: ``fit_steps`` yields
``"features"`` events while the features are computed (one per batch, cancel checked each time), then
``"cluster"`` events around the scikit-learn fit. k-means runs its restarts one by one so that a cancel takes
effect between restarts; the other algorithms are a single scikit-learn call that cannot be interrupted.
"""

from __future__ import annotations

import inspect
import time
from typing import Any, ClassVar, Iterator

import numpy as np

from photocluster.data.dataset import ImageDataset
from photocluster.errors import UsageError
from photocluster.features.handcrafted import FEATURE_KINDS as HANDCRAFTED_KINDS
from photocluster.features.handcrafted import feature_steps
from photocluster.features.pretrained import BACKBONE_CHOICES
from photocluster.methods.constraints import Constraints
from photocluster.methods.base import ClusteringMethod, ParamSpec, register
from photocluster.progress import NEVER_CANCELLED, CancelToken, ProgressEvent

__all__ = ["KMeansMethod", "GMMMethod", "AgglomerativeMethod", "SpectralMethod", "NMFMethod"]

#: every value ``features`` takes: the handcrafted kinds, then the backbones whose embeddings can be used
FEATURE_KINDS = (*HANDCRAFTED_KINDS, *BACKBONE_CHOICES)

_COMMON_HELP = {
    "n_clusters": "number of clusters k",
    "features": "input features: " + ", ".join(FEATURE_KINDS),
    "random_state": "seed: the same seed gives the same clustering",
    "pca_components": "number of principal components when features = pca",
    "weights": "pre-trained weights when features is a backbone: default (download once), a file, or none",
    "device": "where a backbone computes embeddings: auto, cpu, cuda, mps",
}


# Data sets on which DAC fed the classical baselines HOG + an 8×8 colour map instead of raw pixels.
_HOG_COLOR_SETS = ("stl10", "imagenet10", "imagenet-dog")


def _distance_confidence(distances: np.ndarray) -> np.ndarray:
    """Map distances to the assigned centre to (0, 1]: 1 at the centre, 0.5 at the mean distance.

    ``1 / (1 + d / mean(d))`` is monotone (closer = surer) and needs no tuning per data set.
    """
    scale = float(distances.mean())
    if scale <= 0:
        return np.ones_like(distances, dtype=np.float32)
    return (1.0 / (1.0 + distances / scale)).astype(np.float32)


def _nearest_centre(features: np.ndarray, centres: np.ndarray, batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Index of and Euclidean distance to the nearest centre, in batches (bounded memory)."""
    labels = np.empty(len(features), dtype=np.int64)
    distances = np.empty(len(features), dtype=np.float32)
    centre_sq = (centres.astype(np.float64) ** 2).sum(axis=1)
    for start in range(0, len(features), batch_size):
        block = features[start : start + batch_size].astype(np.float64)
        sq = (block**2).sum(axis=1)[:, None] - 2.0 * block @ centres.T.astype(np.float64) + centre_sq[None, :]
        np.maximum(sq, 0.0, out=sq)
        nearest = sq.argmin(axis=1)
        labels[start : start + len(block)] = nearest
        distances[start : start + len(block)] = np.sqrt(sq[np.arange(len(block)), nearest])
    return labels, distances


class _FeatureClustering(ClusteringMethod):
    """Shared machinery: validation, feature extraction with events, fitted attributes."""

    family: ClassVar[str] = "classic"
    #: help for each parameter (beyond the common ones), shown by the GUI and ``--list``
    _help: ClassVar[dict[str, str]] = {}
    _choices: ClassVar[dict[str, tuple]] = {"features": FEATURE_KINDS}
    #: feature kinds this algorithm cannot use (NMF needs non-negative input)
    _refused_features: ClassVar[tuple[str, ...]] = ()

    n_clusters: int
    features: str
    random_state: int | None
    pca_components: int

    @classmethod
    def parameter_specs(cls) -> list[ParamSpec]:
        specs = []
        for p in inspect.signature(cls.__init__).parameters.values():
            if p.name == "self" or p.default is inspect.Parameter.empty:
                continue
            kind = type(p.default) if p.default is not None else int
            choices = cls._choices.get(p.name)
            if p.name == "features":
                choices = tuple(k for k in FEATURE_KINDS if k not in cls._refused_features)
            specs.append(ParamSpec(p.name, kind, p.default, cls._help.get(p.name, _COMMON_HELP.get(p.name, "")),
                                   choices=choices, minimum=2 if p.name == "n_clusters" else None))
        return specs

    @classmethod
    def protocol_params(cls, protocol: str, dataset: ImageDataset) -> dict[str, Any]:
        """DAC's baseline inputs: HOG + 8×8 colour map on STL-10 and the ImageNet subsets, raw pixels
        elsewhere (the constructor default). Both protocols are the same: there is no training schedule."""
        super().protocol_params(protocol, dataset)
        return {"features": "hog-color"} if dataset.name in _HOG_COLOR_SETS else {}

    @classmethod
    def describe_protocols(cls) -> dict[str, str]:
        line = "features hog-color on stl10/imagenet10/imagenet-dog, raw pixels elsewhere (DAC's inputs)"
        return {"quick": line, "paper": line}

    # -- helpers ------------------------------------------------------------------------------
    def _validate(self, n_images: int) -> None:
        if not isinstance(self.n_clusters, (int, np.integer)) or isinstance(self.n_clusters, bool) or self.n_clusters < 2:
            raise UsageError(f"{self.name}: n_clusters must be an integer of at least 2, got {self.n_clusters!r}")
        if self.n_clusters > n_images:
            raise UsageError(f"{self.name}: cannot make {self.n_clusters} clusters from {n_images} images")
        if self.features not in FEATURE_KINDS:
            raise UsageError(f"{self.name}: unknown features {self.features!r}; choose one of: {', '.join(FEATURE_KINDS)}")
        if self.features in self._refused_features:
            raise UsageError(f"{self.name} cannot use features={self.features} (needs non-negative input); "
                             f"choose one of: {', '.join(k for k in FEATURE_KINDS if k not in self._refused_features)}")

    def _feature_events(self, images: np.ndarray, cancel: CancelToken) -> Iterator[ProgressEvent]:
        """Compute features into ``self._features`` while yielding progress; fits PCA when asked."""
        if self.features in BACKBONE_CHOICES:
            from photocluster.features.embeddings import embedding_steps

            result = yield from embedding_steps(images, self.features, self.weights, device=self.device,
                                                cancel=cancel)
            self._pca = None
            self._features = result.embeddings
            return
        kind = "raw" if self.features == "pca" else self.features
        steps = feature_steps(images, kind, random_state=self.random_state)
        while True:
            try:
                done, total = next(steps)
            except StopIteration as stop:
                features = stop.value
                break
            cancel.raise_if_cancelled()
            yield ProgressEvent("features", done, total, {}, f"{self.features} features")
        self._pca = None
        if self.features == "pca":
            from sklearn.decomposition import PCA

            n_components = max(1, min(int(self.pca_components), *features.shape))
            self._pca = PCA(n_components=n_components, svd_solver="randomized" if n_components < min(features.shape) // 2
                            else "full", random_state=self.random_state)
            features = self._pca.fit_transform(features).astype(np.float32)
            cancel.raise_if_cancelled()
            yield ProgressEvent("features", len(images), len(images), {"dim": float(features.shape[1])}, "PCA")
        self._features = np.ascontiguousarray(features, dtype=np.float32)

    def _transform(self, images: np.ndarray) -> np.ndarray:
        """Features of new images, the same way as in fit (PCA: the fitted projection)."""
        from photocluster.features.handcrafted import extract_features

        images = np.asarray(images)
        if images.ndim == 3:
            images = images[..., None]
        fitted_shape = getattr(self, "_image_shape", None)
        if fitted_shape is not None and tuple(images.shape[1:]) != tuple(fitted_shape):
            raise UsageError(f"{self.name}: predict needs images of shape {fitted_shape}, got {images.shape[1:]}")
        if self.features in BACKBONE_CHOICES:
            from photocluster.features.embeddings import embedding_steps
            from photocluster.progress import run_to_end

            return run_to_end(embedding_steps(images, self.features, self.weights, device=self.device)).embeddings
        features = extract_features(images, "raw" if self.features == "pca" else self.features)
        if self.features == "pca":
            features = self._pca.transform(features).astype(np.float32)
        return features

    def fit_steps(self, dataset: ImageDataset, cancel: CancelToken = NEVER_CANCELLED,
                  constraints: Constraints | None = None) -> Iterator[ProgressEvent]:
        """Compute the features, then cluster them; sets ``labels_``, ``confidence_``, ``embeddings_``,
        ``history_``."""
        cancel.raise_if_cancelled()
        images = dataset.images
        self._validate(len(images))
        self._image_shape = tuple(images.shape[1:])
        self.history_: list[dict[str, Any]] = []
        started = time.monotonic()
        yield from self._feature_events(images, cancel)
        self.history_.append({"stage": "features", "kind": self.features, "dim": int(self._features.shape[1]),
                              "seconds": time.monotonic() - started})
        started = time.monotonic()
        cluster_steps = self._cluster(self._features, cancel)
        total = 1
        while True:
            try:
                event = next(cluster_steps)
            except StopIteration as stop:
                labels, confidence, extra = stop.value
                break
            total = event.total or total
            yield event
        cancel.raise_if_cancelled()
        self.history_.append({"stage": "cluster", "seconds": time.monotonic() - started, **extra})
        self.labels_ = np.asarray(labels, dtype=np.int64)
        self.confidence_ = np.asarray(confidence, dtype=np.float32)
        self.embeddings_ = self._features
        self._keep_constraints(constraints)
        # The last event completes the clustering stage with the total it announced (k-means: n_init).
        yield ProgressEvent("cluster", total, total, {k: float(v) for k, v in extra.items() if isinstance(v, (int, float))},
                            f"{self.name}: {len(np.unique(self.labels_))} clusters")

    def _cluster(self, features: np.ndarray, cancel: CancelToken):  # pragma: no cover - abstract
        raise NotImplementedError
        yield


@register
class KMeansMethod(_FeatureClustering):
    """k-means (Lloyd, k-means++ seeding) on handcrafted features; the best of ``n_init`` restarts."""

    name = "kmeans"
    description = ("k-means on handcrafted features (raw pixels, HOG, HOG + colour map, Gabor, PCA); "
                   "the best of n_init restarts by inertia. Linear in the number of images.")
    _help = {"n_init": "number of k-means++ restarts; the lowest-inertia one is kept",
             "max_iter": "maximum Lloyd iterations per restart"}

    def __init__(self, n_clusters: int = 10, features: str = "raw", random_state: int | None = 0,
                 n_init: int = 10, max_iter: int = 300, pca_components: int = 50,
                 weights: str = "default", device: str = "auto") -> None:
        self.n_clusters = n_clusters
        self.features = features
        self.random_state = random_state
        self.n_init = n_init
        self.max_iter = max_iter
        self.pca_components = pca_components
        self.weights = weights
        self.device = device

    def _cluster(self, features: np.ndarray, cancel: CancelToken):
        from sklearn.cluster import KMeans

        n_init = max(1, int(self.n_init))
        # One restart per sklearn call, so a cancel takes effect between restarts; the restarts' seeds
        # come from one generator seeded by random_state, so the whole fit is reproducible.
        seeds = np.random.RandomState(self.random_state).randint(0, 2**31 - 1, size=n_init)
        best = None
        for i, seed in enumerate(seeds):
            cancel.raise_if_cancelled()
            yield ProgressEvent("cluster", i, n_init, {} if best is None else {"inertia": float(best.inertia_)},
                                f"k-means restart {i + 1}/{n_init}")
            model = KMeans(n_clusters=self.n_clusters, n_init=1, max_iter=int(self.max_iter), random_state=int(seed))
            model.fit(features)
            if best is None or model.inertia_ < best.inertia_:
                best = model
        self._model = best
        labels, distances = _nearest_centre(features, best.cluster_centers_)
        return labels, _distance_confidence(distances), {"inertia": float(best.inertia_), "n_iter": int(best.n_iter_)}

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Nearest fitted centre of each new image's features."""
        labels, _ = _nearest_centre(self._transform(images), self._model.cluster_centers_)
        return labels


@register
class GMMMethod(_FeatureClustering):
    """Gaussian mixture (EM) on handcrafted features; confidence = the posterior of the chosen component."""

    name = "gmm"
    description = ("Gaussian mixture model (EM, diagonal covariances by default) on handcrafted features; "
                   "confidence is the posterior probability. Linear in the number of images.")
    _help = {"covariance_type": "covariance of each component: diag, spherical, tied or full (full is slow in "
                                "high dimension)",
             "n_init": "number of EM restarts (k-means initialised); the best likelihood is kept",
             "max_iter": "maximum EM iterations",
             "reg_covar": "added to covariance diagonals: keeps constant pixels (image borders) from "
                          "giving singular covariances"}
    _choices = {"features": FEATURE_KINDS, "covariance_type": ("diag", "spherical", "tied", "full")}

    def __init__(self, n_clusters: int = 10, features: str = "raw", random_state: int | None = 0,
                 covariance_type: str = "diag", n_init: int = 1, max_iter: int = 100, reg_covar: float = 1e-3,
                 pca_components: int = 50,
                 weights: str = "default", device: str = "auto") -> None:
        self.n_clusters = n_clusters
        self.features = features
        self.random_state = random_state
        self.covariance_type = covariance_type
        self.n_init = n_init
        self.max_iter = max_iter
        self.reg_covar = reg_covar
        self.pca_components = pca_components
        self.weights = weights
        self.device = device

    def _cluster(self, features: np.ndarray, cancel: CancelToken):
        from sklearn.mixture import GaussianMixture

        if self.covariance_type not in self._choices["covariance_type"]:
            raise UsageError(f"gmm: covariance_type must be one of {', '.join(self._choices['covariance_type'])}")
        yield ProgressEvent("cluster", 0, 1, {}, "EM")
        model = GaussianMixture(n_components=self.n_clusters, covariance_type=self.covariance_type,
                                n_init=max(1, int(self.n_init)), max_iter=int(self.max_iter),
                                reg_covar=float(self.reg_covar), random_state=self.random_state)
        model.fit(features)
        self._model = model
        posterior = model.predict_proba(features)
        return posterior.argmax(axis=1), posterior.max(axis=1), {"log_likelihood": float(model.score(features)),
                                                                 "converged": float(model.converged_)}

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self._model.predict(self._transform(images)).astype(np.int64)


class _QuadraticClustering(_FeatureClustering):
    """Algorithms whose cost grows with N² (pairwise distances or affinities).

    Above ``max_samples`` images they refuse with a UsageError, unless ``subsample=True``: then they cluster
    a random subset of ``max_samples`` images and give every image the label of the nearest cluster mean
    (computed on the subset) — an approximation, said so in ``history_``.
    """

    _default_max_samples: ClassVar[int] = 10_000

    max_samples: int
    subsample: bool

    @classmethod
    def protocol_params(cls, protocol: str, dataset: ImageDataset) -> dict[str, Any]:
        """As the other baselines, plus ``subsample=True`` on sets above ``max_samples`` images: DAC's
        full-set SC/AC on 60,000-70,000 images needs tens of GB here (-p subsample=false to insist)."""
        params = super().protocol_params(protocol, dataset)
        if len(dataset) > cls._default_max_samples:
            params["subsample"] = True
        return params

    @classmethod
    def describe_protocols(cls) -> dict[str, str]:
        line = (super().describe_protocols()["quick"] + f"; above {cls._default_max_samples:,} images: cluster a "
                "random subset, assign the rest to the nearest cluster mean")
        return {"quick": line, "paper": line}

    def _fit_subset(self, features: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _cluster(self, features: np.ndarray, cancel: CancelToken):
        n = len(features)
        limit = int(self.max_samples)
        extra: dict[str, Any] = {"subsampled": 0.0}
        if n > limit and not self.subsample:
            raise UsageError(
                f"{self.name} needs O(N^2) memory and time: {n} images is above its limit of {limit}; use "
                f"--limit {limit}, -p subsample=true (cluster {limit} images, assign the rest to the nearest "
                f"cluster mean) or -p max_samples=N"
            )
        if n > limit:
            subset = np.sort(np.random.RandomState(self.random_state).choice(n, size=limit, replace=False))
            extra["subsampled"] = float(limit)
        else:
            subset = np.arange(n)
        yield ProgressEvent("cluster", 0, 1, {}, f"{self.name} on {len(subset)} images")
        subset_labels = self._fit_subset(features[subset])
        cancel.raise_if_cancelled()
        # Relabel 0..k-1 (an algorithm may leave ids unused) and keep the cluster means for predict().
        _, subset_labels = np.unique(subset_labels, return_inverse=True)
        self._centres = np.stack([features[subset][subset_labels == c].mean(axis=0)
                                  for c in range(subset_labels.max() + 1)]).astype(np.float32)
        labels, distances = _nearest_centre(features, self._centres)
        if len(subset) == n:  # keep the algorithm's own labels; distances to their cluster's mean
            labels = subset_labels.astype(np.int64)
            distances = np.linalg.norm(features - self._centres[labels], axis=1)
        return labels, _distance_confidence(distances), extra

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Nearest cluster mean (the algorithm itself cannot place new points)."""
        labels, _ = _nearest_centre(self._transform(images), self._centres)
        return labels


@register
class AgglomerativeMethod(_QuadraticClustering):
    """Agglomerative (hierarchical) clustering, Ward linkage by default."""

    name = "agglomerative"
    description = ("Agglomerative clustering (Ward linkage) on handcrafted features. O(N^2) memory and time: "
                   "refuses more than max_samples = 10,000 images unless -p subsample=true (cluster a random "
                   "10,000, assign the rest to the nearest cluster mean).")
    _help = {"linkage": "ward, average, complete or single",
             "max_samples": "largest number of images clustered exactly (O(N^2) memory)",
             "subsample": "above max_samples: cluster a random subset and assign the rest to the nearest mean"}
    _choices = {"features": FEATURE_KINDS, "linkage": ("ward", "average", "complete", "single")}

    def __init__(self, n_clusters: int = 10, features: str = "raw", random_state: int | None = 0,
                 linkage: str = "ward", max_samples: int = 10_000, subsample: bool = False,
                 pca_components: int = 50,
                 weights: str = "default", device: str = "auto") -> None:
        self.n_clusters = n_clusters
        self.features = features
        self.random_state = random_state
        self.linkage = linkage
        self.max_samples = max_samples
        self.subsample = subsample
        self.pca_components = pca_components
        self.weights = weights
        self.device = device

    def _fit_subset(self, features: np.ndarray) -> np.ndarray:
        from sklearn.cluster import AgglomerativeClustering

        if self.linkage not in self._choices["linkage"]:
            raise UsageError(f"agglomerative: linkage must be one of {', '.join(self._choices['linkage'])}")
        return AgglomerativeClustering(n_clusters=self.n_clusters, linkage=self.linkage).fit_predict(features)


@register
class SpectralMethod(_QuadraticClustering):
    """Spectral clustering (normalised cuts) on a k-nearest-neighbour affinity graph."""

    name = "spectral"
    description = ("Spectral clustering on a k-nearest-neighbour graph of handcrafted features. O(N^2) "
                   "neighbour search: refuses more than max_samples = 10,000 images unless -p subsample=true "
                   "(cluster a random 10,000, assign the rest to the nearest cluster mean).")
    _help = {"n_neighbors": "neighbours per image in the affinity graph",
             "max_samples": "largest number of images clustered exactly",
             "subsample": "above max_samples: cluster a random subset and assign the rest to the nearest mean"}

    def __init__(self, n_clusters: int = 10, features: str = "raw", random_state: int | None = 0,
                 n_neighbors: int = 10, max_samples: int = 10_000, subsample: bool = False,
                 pca_components: int = 50,
                 weights: str = "default", device: str = "auto") -> None:
        self.n_clusters = n_clusters
        self.features = features
        self.random_state = random_state
        self.n_neighbors = n_neighbors
        self.max_samples = max_samples
        self.subsample = subsample
        self.pca_components = pca_components
        self.weights = weights
        self.device = device

    def _fit_subset(self, features: np.ndarray) -> np.ndarray:
        import warnings

        from sklearn.cluster import SpectralClustering

        model = SpectralClustering(n_clusters=self.n_clusters, affinity="nearest_neighbors",
                                   n_neighbors=min(int(self.n_neighbors), len(features) - 1),
                                   assign_labels="kmeans", random_state=self.random_state, n_jobs=1)
        with warnings.catch_warnings():
            # "Graph is not fully connected": expected for well-separated data, the embedding still works.
            warnings.simplefilter("ignore", UserWarning)
            return model.fit_predict(features)


@register
class NMFMethod(_FeatureClustering):
    """NMF-based clustering: factorise the non-negative features X ≈ W H with k components and assign each
    image to its strongest component (argmax of its row of W)."""

    name = "nmf"
    description = ("NMF clustering: non-negative factorisation with k components, each image goes to its "
                   "strongest component. Needs non-negative features (not pca).")
    _help = {"max_iter": "maximum NMF iterations"}
    _refused_features = ("pca",)

    def __init__(self, n_clusters: int = 10, features: str = "raw", random_state: int | None = 0,
                 max_iter: int = 400, pca_components: int = 50,
                 weights: str = "default", device: str = "auto") -> None:
        self.n_clusters = n_clusters
        self.features = features
        self.random_state = random_state
        self.max_iter = max_iter
        self.pca_components = pca_components
        self.weights = weights
        self.device = device

    def _cluster(self, features: np.ndarray, cancel: CancelToken):
        import warnings

        from sklearn.decomposition import NMF
        from sklearn.exceptions import ConvergenceWarning

        yield ProgressEvent("cluster", 0, 1, {}, "NMF")
        model = NMF(n_components=self.n_clusters, init="nndsvda", max_iter=int(self.max_iter),
                    random_state=self.random_state)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            weights = model.fit_transform(features)
        self._model = model
        return self._labels_from_weights(weights) + ({"reconstruction_err": float(model.reconstruction_err_)},)

    def _labels_from_weights(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        total = weights.sum(axis=1)
        # Share of the image's total weight held by its strongest component, in (0, 1]; an all-zero row
        # (a blank image) is equally unsure about every component: 1/k.
        confidence = np.where(total > 0, weights.max(axis=1) / np.where(total > 0, total, 1.0), 1.0 / self.n_clusters)
        return weights.argmax(axis=1).astype(np.int64), confidence.astype(np.float32)

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self._labels_from_weights(self._model.transform(self._transform(images)))[0]
