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


# -- corrections as constraints ----------------------------------------------------------------------


def _active(constraints: Constraints | None, n: int) -> Constraints | None:
    """``constraints`` when there is something to keep, else None (then every method runs exactly as
    without them); a constraint set for another number of rows is an error."""
    if constraints is None or constraints.is_empty:
        return None
    if constraints.n != n:
        raise ValueError(f"constraints cover {constraints.n} photos but the data set has {n}")
    return constraints


def _group_means_input(features: np.ndarray, constraints: Constraints) -> np.ndarray:
    """A copy of ``features`` where every row of a must-link group (a locked cluster included) is replaced
    by the group's mean: the group enters the algorithm as one point of weight m (identical rows)."""
    features = np.array(features, dtype=np.float32, copy=True)
    for rows in constraints.groups():
        if len(rows) > 1:
            features[rows] = features[rows].mean(axis=0, dtype=np.float64)
    return features


def _pad_scores(scores: np.ndarray, k: int) -> np.ndarray:
    """Scores (N, k') with k' < k columns (an algorithm that left labels unused) padded to k columns with a
    value below every real score, so that a group never prefers an empty label."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape[1] >= k:
        return scores
    floor = float(scores.min()) - 1.0 if scores.size else -1.0
    return np.concatenate([scores, np.full((len(scores), k - scores.shape[1]), floor)], axis=1)


def _sq_distances(features: np.ndarray, feature_sq: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances (N, k), float32, from the (centred) rows to the centres."""
    centres = np.asarray(centres, dtype=np.float32)
    sq = features @ centres.T
    sq *= -2.0
    sq += feature_sq[:, None]
    sq += (centres.astype(np.float64) ** 2).sum(axis=1).astype(np.float32)[None, :]
    np.maximum(sq, 0.0, out=sq)
    return sq


def _kmeans_plus_plus(points: np.ndarray, point_sq: np.ndarray, weights: np.ndarray, existing: np.ndarray,
                      n_new: int, rng: np.random.RandomState) -> np.ndarray:
    """``n_new`` rows of ``points`` chosen by greedy k-means++ (Arthur & Vassilvitskii 2007, with the
    2 + log k local trials of scikit-learn): each new centre is drawn with probability ∝ weight × D², D the
    distance to the nearest centre so far — ``existing`` (seeds) included. Returns their indices."""
    n = len(points)
    chosen: list[int] = []
    if n_new <= 0 or n == 0:
        return np.zeros(0, dtype=np.int64)
    n_local = 2 + int(np.log(max(2, n_new + len(existing))))
    if len(existing):
        closest = _sq_distances(points, point_sq, existing).min(axis=1).astype(np.float64)
    else:
        first = int(rng.choice(n, p=weights / weights.sum()))
        chosen.append(first)
        closest = _sq_distances(points, point_sq, points[[first]])[:, 0].astype(np.float64)
        n_new -= 1
    for _ in range(n_new):
        potential = weights * closest
        total = float(potential.sum())
        if total <= 0:  # every point sits on a centre: any unused one will do
            free = np.setdiff1d(np.arange(n), chosen)
            pick = int(rng.choice(free)) if len(free) else int(rng.randint(n))
            chosen.append(pick)
            continue
        candidates = np.searchsorted(np.cumsum(potential), rng.uniform(size=n_local) * total)
        candidates = np.minimum(candidates, n - 1)
        trial = np.minimum(closest[:, None], _sq_distances(points, point_sq, points[candidates]))
        best = int(np.argmin((weights[:, None] * trial).sum(axis=0)))
        chosen.append(int(candidates[best]))
        closest = trial[:, best]
    return np.asarray(chosen, dtype=np.int64)


#: where k-means' constrained iterations start (KMeansMethod's ``correction_start``)
CORRECTION_STARTS = ("previous", "best")


class _ConstrainedKMeans:
    """Constrained k-means: COP-KMeans (Wagstaff et al. 2001) with groups assigned as units, seeded like
    Seeded/Constrained-KMeans (Basu et al. 2002). Vectorised; one instance serves every restart.

    Objective: the k-means sum of squared distances, minimised over labellings that keep the constraints.
    Lloyd's assignment step then gives each must-link group (a locked cluster is one) the label whose
    centre is nearest *in sum over the group's rows* — the group's share of the objective — among the labels
    no group it is apart from took (:meth:`Constraints.group_labels` with scores = -squared distances; locked
    clusters get distinct labels by a Hungarian assignment); free rows go to their nearest centre; every
    centre is the mean of all the rows on its label.
    """

    def __init__(self, features: np.ndarray, n_clusters: int, constraints: Constraints,
                 max_iter: int = 300, tol: float = 1e-4) -> None:
        features = np.asarray(features, dtype=np.float32)
        self.mean = features.mean(axis=0, dtype=np.float64)
        # Centred (as scikit-learn does) so that squared norms stay small next to the distances.
        self.x = np.ascontiguousarray(features - self.mean.astype(np.float32))
        self.x_sq = np.einsum("ij,ij->i", self.x, self.x)
        self.k = int(n_clusters)
        self.constraints = constraints
        self.max_iter = max(1, int(max_iter))
        # scikit-learn's tolerance: relative to the mean variance of the features
        self.tol = float(tol) * float(np.mean(features.var(axis=0, dtype=np.float64)))
        groups = constraints.groups()
        self.group_rows = np.concatenate(groups) if groups else np.zeros(0, dtype=np.int64)
        self.group_sizes = np.array([len(g) for g in groups], dtype=np.int64)
        self.free_rows = np.flatnonzero(constraints.group < 0)
        self.group_means = np.stack([self.x[g].mean(axis=0, dtype=np.float64) for g in groups]).astype(np.float32)
        self.fixed = constraints.fixed_groups()
        if len(self.fixed) > self.k:
            raise UsageError(f"{len(self.fixed)} locked clusters but only {self.k} clusters asked for")
        fixed = set(self.fixed)
        self.others = np.array([g for g in range(len(groups)) if g not in fixed], dtype=np.int64)

    @property
    def deterministic(self) -> bool:
        """True when the seeds fill every centre (no random choice: one restart is enough)."""
        return len(self.fixed) + len(self.others) == self.k

    def initial_centres(self, rng: np.random.RandomState) -> np.ndarray:
        """Seeds: the mean of every locked cluster, then of the other groups (when there are more groups than
        centres, k-means++ among the group means weighted by group size); the centres left by k-means++ on
        the free rows, away from the seeds."""
        centres = self.group_means[self.fixed]
        slots = self.k - len(centres)
        if len(self.others) <= slots:
            picked = self.others
        else:
            means = self.group_means[self.others]
            picked = self.others[_kmeans_plus_plus(means, (means.astype(np.float64) ** 2).sum(axis=1).astype(np.float32),
                                                   self.group_sizes[self.others].astype(np.float64), centres, slots, rng)]
        centres = np.concatenate([centres, self.group_means[picked]]).reshape(-1, self.x.shape[1])
        missing = self.k - len(centres)
        if missing:
            pool = self.free_rows if len(self.free_rows) >= missing else np.arange(len(self.x))
            new = pool[_kmeans_plus_plus(self.x[pool], self.x_sq[pool], np.ones(len(pool)), centres, missing, rng)]
            centres = np.concatenate([centres, self.x[new]])
        return centres.astype(np.float32)

    def assign(self, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Constrained assignment: (labels, squared distances (N, k))."""
        sq = _sq_distances(self.x, self.x_sq, centres)
        labels = sq.argmin(axis=1)
        chosen = self.constraints.group_labels(labels, self.k, scores=-sq.astype(np.float64))
        labels[self.group_rows] = np.repeat(chosen, self.group_sizes)
        return labels, sq

    def _relocate_empty(self, labels: np.ndarray, sq: np.ndarray) -> None:
        """An empty cluster takes the free row farthest from its own centre (as scikit-learn relocates)."""
        counts = np.bincount(labels, minlength=self.k)
        empty = np.flatnonzero(counts == 0)
        if not len(empty) or not len(self.free_rows):
            return
        own = sq[self.free_rows, labels[self.free_rows]]
        order = self.free_rows[np.argsort(-own, kind="stable")]
        taken = 0
        for c in empty:
            while taken < len(order) and counts[labels[order[taken]]] <= 1:
                taken += 1
            if taken == len(order):
                return
            row = order[taken]
            counts[labels[row]] -= 1
            labels[row] = c
            counts[c] += 1
            taken += 1

    def _means(self, labels: np.ndarray, centres: np.ndarray) -> np.ndarray:
        from scipy import sparse

        n = len(labels)
        one_hot = sparse.csr_matrix((np.ones(n, dtype=np.float32), (labels, np.arange(n))), shape=(self.k, n))
        counts = np.bincount(labels, minlength=self.k)
        sums = np.asarray(one_hot @ self.x)
        new = centres.copy()
        filled = counts > 0
        new[filled] = (sums[filled] / counts[filled, None]).astype(np.float32)
        return new

    def run(self, rng: np.random.RandomState | None = None, cancel: CancelToken = NEVER_CANCELLED,
            centres: np.ndarray | None = None) -> dict[str, Any]:
        """One restart: the seeded initialisation (or the given ``centres``, in feature space), then
        constrained Lloyd iterations until the labels stop changing, the centres move less than the
        tolerance, or ``max_iter``."""
        if centres is None:
            centres = self.initial_centres(rng)
        else:
            centres = (np.asarray(centres, dtype=np.float64) - self.mean).astype(np.float32)
        previous = None
        n_iter = 0
        for n_iter in range(1, self.max_iter + 1):
            labels, sq = self.assign(centres)
            self._relocate_empty(labels, sq)
            new = self._means(labels, centres)
            shift = float(((new.astype(np.float64) - centres) ** 2).sum())
            centres = new
            if previous is not None and np.array_equal(labels, previous):
                break
            if shift <= self.tol:
                break
            previous = labels
            if n_iter % 10 == 0:
                cancel.raise_if_cancelled()
        # labels that match the final centres exactly (so enforcing the constraints again changes nothing)
        labels, sq = self.assign(centres)
        distances = sq[np.arange(len(labels)), labels].astype(np.float64)
        return {"labels": labels, "centres": (centres.astype(np.float64) + self.mean).astype(np.float32),
                "inertia": float(distances.sum()), "n_iter": n_iter, "scores": -sq.astype(np.float64),
                "distances": np.sqrt(distances)}


class _FittedCentres:
    """What predict() and the history need of a constrained k-means fit (the fields of sklearn's KMeans)."""

    def __init__(self, cluster_centers_: np.ndarray, inertia_: float, n_iter_: int) -> None:
        self.cluster_centers_ = cluster_centers_
        self.inertia_ = inertia_
        self.n_iter_ = n_iter_


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
        active = _active(constraints, len(images))
        # scores (N, k), higher = better, for the final enforcement: set by _cluster when it has them
        self._constraint_scores: np.ndarray | None = None
        cluster_steps = self._cluster(self._features, cancel, active)
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
        scores = self._constraint_scores
        self._keep_constraints(active, None if scores is None else _pad_scores(scores, int(self.n_clusters)))
        if active is not None:
            self.history_[-1]["constraints_kept"] = float(active.check(self.labels_).all_kept)
        # The last event completes the clustering stage with the total it announced (k-means: n_init).
        yield ProgressEvent("cluster", total, total, {k: float(v) for k, v in extra.items() if isinstance(v, (int, float))},
                            f"{self.name}: {len(np.unique(self.labels_))} clusters")

    def _cluster(self, features: np.ndarray, cancel: CancelToken,
                 constraints: Constraints | None = None):  # pragma: no cover - abstract
        raise NotImplementedError
        yield


@register
class KMeansMethod(_FeatureClustering):
    """k-means (Lloyd, k-means++ seeding) on handcrafted features or embeddings; the best of ``n_init``
    restarts.

    With constraints (a person's corrections) it is a constrained k-means: k-means' objective, the sum of
    squared distances to the centres, minimised over the labellings that keep the constraints — COP-KMeans
    (Wagstaff et al. 2001), with each must-link group assigned as a unit so it scales. Initialisation is
    seeded (Seeded/Constrained-KMeans, Basu et al. 2002): every locked cluster's and must-link group's mean
    is an initial centre, the remaining centres k-means++ on the other rows. Each Lloyd step gives a group
    the label whose centre is nearest summed over its rows, among the labels no group it is apart from took
    (locked clusters on distinct labels), free rows their nearest centre; centres are the means of all rows
    on a label. So the corrected photos are anchors: they pull their clusters' centres, and the untouched
    photos near them follow. Where the constrained iterations start (``correction_start``):

    * ``previous`` (default): from the fit a run without corrections keeps — the lowest-inertia of the
      ``n_init`` unconstrained restarts, i.e. the grouping the person corrected when the photos are the
      same. A re-cluster then moves what the corrections move and little else: on the 200 shared photos a
      locked cluster and one moved photo changed the group of 19 photos under ``best`` (the app's summary).
      The ACC the corrections buy was the same on average (bench_corrections, 3 seeds, 1 % and 5 %: digits
      0.825 against 0.826, the 200 photos 0.561 against 0.563; docs/methods/classic.md).
    * ``best``: every restart's unconstrained fit and a seeded start (once only when the seeds fill all k
      centres: nothing is random then) are refined under the constraints and the lowest constrained inertia
      wins — the objective decides, not the kind of start (the seeded starts alone lost up to 0.19 ACC to the
      unconstrained re-run on the 200 photos: they found worse optima of the objective too). A wider search
      of the constrained objective, but the rest of the grouping is drawn afresh.

    Without constraints the fit is scikit-learn's, unchanged.
    """

    name = "kmeans"
    description = ("k-means on handcrafted features (raw pixels, HOG, HOG + colour map, Gabor, PCA); "
                   "the best of n_init restarts by inertia. Linear in the number of images.")
    _help = {"n_init": "number of k-means++ restarts; the lowest-inertia one is kept",
             "max_iter": "maximum Lloyd iterations per restart",
             "correction_start": "with corrections: refine the grouping a run without them keeps (previous: "
                                 "changes little else) or the best of every start by constrained inertia (best)"}
    _choices = {"features": FEATURE_KINDS, "correction_start": CORRECTION_STARTS}

    def __init__(self, n_clusters: int = 10, features: str = "raw", random_state: int | None = 0,
                 n_init: int = 10, max_iter: int = 300, correction_start: str = "previous",
                 pca_components: int = 50, weights: str = "default", device: str = "auto") -> None:
        self.n_clusters = n_clusters
        self.features = features
        self.random_state = random_state
        self.n_init = n_init
        self.max_iter = max_iter
        self.correction_start = correction_start
        self.pca_components = pca_components
        self.weights = weights
        self.device = device

    def _cluster(self, features: np.ndarray, cancel: CancelToken, constraints: Constraints | None = None):
        n_init = max(1, int(self.n_init))
        # One restart per sklearn call, so a cancel takes effect between restarts; the restarts' seeds
        # come from one generator seeded by random_state, so the whole fit is reproducible.
        seeds = np.random.RandomState(self.random_state).randint(0, 2**31 - 1, size=n_init)
        if constraints is not None:
            return (yield from self._cluster_constrained(features, cancel, constraints, seeds))
        best = None
        for i, seed in enumerate(seeds):
            cancel.raise_if_cancelled()
            yield ProgressEvent("cluster", i, n_init, {} if best is None else {"inertia": float(best.inertia_)},
                                f"k-means restart {i + 1}/{n_init}")
            model = self._unconstrained_restart(features, seed)
            if best is None or model.inertia_ < best.inertia_:
                best = model
        self._model = best
        labels, distances = _nearest_centre(features, best.cluster_centers_)
        return labels, _distance_confidence(distances), {"inertia": float(best.inertia_), "n_iter": int(best.n_iter_)}

    def _cluster_constrained(self, features: np.ndarray, cancel: CancelToken, constraints: Constraints,
                             seeds: np.ndarray):
        if self.correction_start not in CORRECTION_STARTS:
            raise UsageError(f"kmeans: correction_start must be one of {', '.join(CORRECTION_STARTS)}, "
                             f"got {self.correction_start!r}")
        solver = _ConstrainedKMeans(features, self.n_clusters, constraints, max_iter=int(self.max_iter))
        search = self._from_previous if self.correction_start == "previous" else self._best_of_every_start
        best, starts = yield from search(features, cancel, solver, seeds)
        self._model = _FittedCentres(best["centres"], best["inertia"], best["n_iter"])
        self._constraint_scores = best["scores"]
        return best["labels"], _distance_confidence(best["distances"]), {
            "inertia": float(best["inertia"]), "n_iter": int(best["n_iter"]), "restarts": float(starts),
            "start": best["start"]}

    def _unconstrained_restart(self, features: np.ndarray, seed: int):
        from sklearn.cluster import KMeans

        return KMeans(n_clusters=self.n_clusters, n_init=1, max_iter=int(self.max_iter),
                      random_state=int(seed)).fit(features)

    def _from_previous(self, features: np.ndarray, cancel: CancelToken, solver: _ConstrainedKMeans,
                       seeds: np.ndarray):
        """``correction_start=previous``: the fit a run without corrections keeps (its restarts, lowest
        inertia) refined under the constraints, against the seeded start — for corrections the old optimum
        cannot take in (must-links across two of its clusters); the lower constrained inertia wins."""
        previous = None
        for i, seed in enumerate(seeds):
            cancel.raise_if_cancelled()
            yield ProgressEvent("cluster", i, len(seeds), {}, f"k-means restart {i + 1}/{len(seeds)}")
            free = self._unconstrained_restart(features, seed)
            if previous is None or free.inertia_ < previous.inertia_:
                previous = free
        best = dict(solver.run(cancel=cancel, centres=previous.cluster_centers_), start="previous")
        seeded = dict(solver.run(np.random.RandomState(int(seeds[0])), cancel), start="seeded")
        return (seeded if seeded["inertia"] < best["inertia"] else best), 2

    def _best_of_every_start(self, features: np.ndarray, cancel: CancelToken, solver: _ConstrainedKMeans,
                             seeds: np.ndarray):
        """``correction_start=best``: every restart's unconstrained fit refined under the constraints and the
        seeded start; the lowest constrained inertia wins."""
        best, starts = None, 0
        for i, seed in enumerate(seeds):
            cancel.raise_if_cancelled()
            yield ProgressEvent("cluster", i, len(seeds), {} if best is None else {"inertia": best["inertia"]},
                                f"constrained k-means restart {i + 1}/{len(seeds)}")
            free = self._unconstrained_restart(features, seed)
            runs = [dict(solver.run(cancel=cancel, centres=free.cluster_centers_), start="unconstrained")]
            if i == 0 or not solver.deterministic:  # the seeded start is the same every time when seeds fill k
                runs.append(dict(solver.run(np.random.RandomState(int(seed)), cancel), start="seeded"))
            for run in runs:
                starts += 1
                if best is None or run["inertia"] < best["inertia"]:
                    best = run
        return best, starts

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Nearest fitted centre of each new image's features."""
        labels, _ = _nearest_centre(self._transform(images), self._model.cluster_centers_)
        return labels


@register
class GMMMethod(_FeatureClustering):
    """Gaussian mixture (EM) on handcrafted features or embeddings; confidence = the posterior of the chosen
    component.

    With constraints it runs constrained EM (Shental et al. 2004, "Computing Gaussian mixture models with EM
    using equivalence constraints"): the likelihood is maximised under the constraint that every must-link
    group (a "chunklet") comes from one component. The responsibilities start from the constrained k-means of
    :class:`KMeansMethod`: the lowest constrained inertia of the unconstrained EM's own k-means start refined
    under the constraints and of ten seeded starts (group means as centres). In each E-step a group's
    posterior over components is π_c ∏ p(x_i | c) over its rows — Shental's chunklet posterior — made hard
    (one-hot on one component) by :meth:`Constraints.group_labels`, which keeps locked clusters on distinct
    components and a group off the components of groups it is apart from; free rows keep their ordinary
    posteriors, and the M-step is unchanged. Hard rather than soft because cannot-links make the exact
    E-step a joint (Markov-network) inference, and because with hundreds of dimensions a sum of many
    log-likelihoods makes the chunklet posterior one-hot anyway. Without constraints the fit is
    scikit-learn's, unchanged.
    """

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

    def _cluster(self, features: np.ndarray, cancel: CancelToken, constraints: Constraints | None = None):
        from sklearn.mixture import GaussianMixture

        if self.covariance_type not in self._choices["covariance_type"]:
            raise UsageError(f"gmm: covariance_type must be one of {', '.join(self._choices['covariance_type'])}")
        yield ProgressEvent("cluster", 0, 1, {}, "EM" if constraints is None else "constrained EM")
        mixture = GaussianMixture if constraints is None else _constrained_mixture_class()
        model = mixture(n_components=self.n_clusters, covariance_type=self.covariance_type,
                        n_init=max(1, int(self.n_init)), max_iter=int(self.max_iter),
                        reg_covar=float(self.reg_covar), random_state=self.random_state)
        if constraints is not None:
            model.constraints = constraints
        model.fit(features)
        self._model = model
        posterior = model.predict_proba(features)
        if constraints is not None:
            _, log_resp = model._estimate_log_prob_resp(features)
            self._constraint_scores = _chunklet_scores(log_resp, model._estimate_log_weights(), constraints)
        return posterior.argmax(axis=1), posterior.max(axis=1), {"log_likelihood": float(model.score(features)),
                                                                 "converged": float(model.converged_)}

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self._model.predict(self._transform(images)).astype(np.int64)


def _chunklet_scores(log_resp: np.ndarray, log_weights: np.ndarray, constraints: Constraints) -> np.ndarray:
    """Per-row scores (N, k) whose sum over a group is, up to a constant, the log of Shental's chunklet
    posterior π_c ∏_i p(x_i | c): log_resp_ic + (1/m - 1) log π_c for a row of a group of m rows (the
    per-row normaliser of log_resp is the same for every c and drops out of the comparison)."""
    group = constraints.group
    sizes = np.ones(len(group), dtype=np.float64)
    grouped = group >= 0
    sizes[grouped] = np.bincount(group[grouped])[group[grouped]]
    return np.asarray(log_resp, dtype=np.float64) + (1.0 / sizes - 1.0)[:, None] * np.asarray(log_weights)[None, :]


_CONSTRAINED_MIXTURE: list[type] = []
#: seeded constrained k-means restarts among the starts of one EM run (EM is initialisation-sensitive:
#: on sklearn digits a single seeded start lost to the unconstrained re-run on 3 of 5 seeds at 1 %
#: corrections — see docs/methods/classic.md)
_GMM_INIT_RESTARTS = 10


def _constrained_mixture_class() -> type:
    """scikit-learn's GaussianMixture with a seeded initialisation and a constrained E-step (see GMMMethod);
    built on first use so importing this module does not import scikit-learn."""
    if _CONSTRAINED_MIXTURE:
        return _CONSTRAINED_MIXTURE[0]
    from sklearn.mixture import GaussianMixture

    class ConstrainedGaussianMixture(GaussianMixture):
        constraints: Constraints

        def _initialize_parameters(self, X, random_state, xp=None):
            from sklearn.cluster import KMeans

            # Constrained k-means from the k-means an unconstrained EM starts from (the same generator, so
            # the same fit), and from seeded starts; the lowest constrained inertia gives the start.
            solver = _ConstrainedKMeans(X, self.n_components, self.constraints)
            free = KMeans(n_clusters=self.n_components, n_init=1, random_state=random_state).fit(X)
            best = solver.run(centres=free.cluster_centers_)
            restarts = 1 if solver.deterministic else _GMM_INIT_RESTARTS
            for seed in random_state.randint(0, 2**31 - 1, size=restarts):
                run = solver.run(np.random.RandomState(seed))
                if run["inertia"] < best["inertia"]:
                    best = run
            resp = np.zeros((len(X), self.n_components), dtype=X.dtype)
            resp[np.arange(len(X)), best["labels"]] = 1
            self._initialize(X, resp)

        def _e_step(self, X, xp=None):
            log_prob_norm, log_resp = super()._e_step(X, xp=xp)
            scores = _chunklet_scores(log_resp, self._estimate_log_weights(), self.constraints)
            chosen = self.constraints.group_labels(log_resp.argmax(axis=1), self.n_components, scores=scores)
            for rows, label in zip(self.constraints.groups(), chosen):
                log_resp[rows] = -np.inf
                log_resp[rows, label] = 0.0
            return log_prob_norm, log_resp

    _CONSTRAINED_MIXTURE.append(ConstrainedGaussianMixture)
    return ConstrainedGaussianMixture


class _QuadraticClustering(_FeatureClustering):
    """Algorithms whose cost grows with N² (pairwise distances or affinities).

    Above ``max_samples`` images they refuse with a UsageError, unless ``subsample=True``: then they cluster
    a random subset of ``max_samples`` images and give every image the label of the nearest cluster mean
    (computed on the subset) — an approximation, said so in ``history_``. With constraints the constrained
    images are always in the subset (the rest of it random), and the algorithm gets them in its input (each
    subclass says how); the labels then keep them (ranked by distance to the cluster means).
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

    def _fit_subset(self, features: np.ndarray,
                    constraints: Constraints | None = None) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _cluster(self, features: np.ndarray, cancel: CancelToken, constraints: Constraints | None = None):
        n = len(features)
        limit = int(self.max_samples)
        extra: dict[str, Any] = {"subsampled": 0.0}
        if n > limit and not self.subsample:
            raise UsageError(
                f"{self.name} needs O(N^2) memory and time: {n} images is above its limit of {limit}; use "
                f"--limit {limit}, -p subsample=true (cluster {limit} images, assign the rest to the nearest "
                f"cluster mean) or -p max_samples=N"
            )
        if n > limit and constraints is not None:
            # the corrected photos are always clustered exactly; the rest of the subset is random
            rng = np.random.RandomState(self.random_state)
            forced = constraints.constrained_rows()
            if len(forced) >= limit:
                subset = np.sort(rng.choice(forced, size=limit, replace=False))
            else:
                others = np.setdiff1d(np.arange(n), forced)
                subset = np.sort(np.concatenate([forced, rng.choice(others, size=limit - len(forced), replace=False)]))
            extra["subsampled"] = float(limit)
        elif n > limit:
            subset = np.sort(np.random.RandomState(self.random_state).choice(n, size=limit, replace=False))
            extra["subsampled"] = float(limit)
        else:
            subset = np.arange(n)
        yield ProgressEvent("cluster", 0, 1, {}, f"{self.name} on {len(subset)} images")
        if constraints is None:
            subset_labels = self._fit_subset(features[subset])
        else:
            inner = constraints if len(subset) == n else constraints.subset(subset)
            subset_labels = self._fit_subset(features[subset], None if inner.is_empty else inner)
        cancel.raise_if_cancelled()
        # Relabel 0..k-1 (an algorithm may leave ids unused) and keep the cluster means for predict().
        _, subset_labels = np.unique(subset_labels, return_inverse=True)
        self._centres = np.stack([features[subset][subset_labels == c].mean(axis=0)
                                  for c in range(subset_labels.max() + 1)]).astype(np.float32)
        labels, distances = _nearest_centre(features, self._centres)
        if len(subset) == n:  # keep the algorithm's own labels; distances to their cluster's mean
            labels = subset_labels.astype(np.int64)
            distances = np.linalg.norm(features - self._centres[labels], axis=1)
        if constraints is not None:
            centred = features - features.mean(axis=0)
            self._constraint_scores = -_sq_distances(centred, np.einsum("ij,ij->i", centred, centred),
                                                     self._centres - features.mean(axis=0)).astype(np.float64)
        return labels, _distance_confidence(distances), extra

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Nearest cluster mean (the algorithm itself cannot place new points)."""
        labels, _ = _nearest_centre(self._transform(images), self._centres)
        return labels


@register
class AgglomerativeMethod(_QuadraticClustering):
    """Agglomerative (hierarchical) clustering, Ward linkage by default.

    With constraints every must-link group (a locked cluster included) enters as its mean: its rows are
    replaced by m identical points, which merge first at zero cost, and the merged node is then the group's
    centroid with weight m — exactly the node Ward's criterion (the increase of the within-cluster sum of
    squares) would build if the group were merged first, as must-link demands (the other linkages see the
    group at its mean). Cannot-links cannot be put into scikit-learn's merge order; the final labels keep
    them where another label is possible (:meth:`Constraints.enforce`, ranked by distance to the cluster
    means).
    """

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

    def _fit_subset(self, features: np.ndarray, constraints: Constraints | None = None) -> np.ndarray:
        from sklearn.cluster import AgglomerativeClustering

        if self.linkage not in self._choices["linkage"]:
            raise UsageError(f"agglomerative: linkage must be one of {', '.join(self._choices['linkage'])}")
        if constraints is not None:
            features = _group_means_input(features, constraints)
        return AgglomerativeClustering(n_clusters=self.n_clusters, linkage=self.linkage).fit_predict(features)


@register
class SpectralMethod(_QuadraticClustering):
    """Spectral clustering (normalised cuts) on a k-nearest-neighbour affinity graph.

    With constraints the affinity graph carries them, as in spectral learning (Kamvar, Klein & Manning
    2003): the affinity of every must-link pair is set to the maximum, 1 (the group becomes a clique the
    normalised cut will not split), of every cannot-link pair to 0 (no edge the cut must pay for); at most
    200,000 pairs of each kind, sampled. The graph is otherwise scikit-learn's, 0.5 (C + Cᵀ) of the
    kNN connectivity C. The final labels keep the constraints (:meth:`Constraints.enforce`).
    """

    #: most must-link / cannot-link pairs written into the affinity graph
    _max_constraint_pairs: ClassVar[int] = 200_000

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

    def _fit_subset(self, features: np.ndarray, constraints: Constraints | None = None) -> np.ndarray:
        import warnings

        from sklearn.cluster import SpectralClustering

        n_neighbors = min(int(self.n_neighbors), len(features) - 1)
        model = SpectralClustering(n_clusters=self.n_clusters, affinity="nearest_neighbors",
                                   n_neighbors=n_neighbors,
                                   assign_labels="kmeans", random_state=self.random_state, n_jobs=1)
        data = features
        if constraints is not None:
            model.set_params(affinity="precomputed")
            data = self._constrained_affinity(features, n_neighbors, constraints)
        with warnings.catch_warnings():
            # "Graph is not fully connected": expected for well-separated data, the embedding still works.
            warnings.simplefilter("ignore", UserWarning)
            return model.fit_predict(data)

    def _constrained_affinity(self, features: np.ndarray, n_neighbors: int, constraints: Constraints):
        """scikit-learn's kNN affinity with must-link pairs at 1 and cannot-link pairs at 0."""
        from scipy import sparse
        from sklearn.neighbors import kneighbors_graph

        n = len(features)
        connectivity = kneighbors_graph(np.asarray(features, dtype=np.float64), n_neighbors=n_neighbors,
                                        include_self=True, n_jobs=1)
        affinity = (0.5 * (connectivity + connectivity.T)).tocsr()
        rng = np.random.default_rng(0 if self.random_state is None else self.random_state)

        def pair_matrix(pairs: np.ndarray):
            rows = np.concatenate([pairs[:, 0], pairs[:, 1]])
            cols = np.concatenate([pairs[:, 1], pairs[:, 0]])
            matrix = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
            matrix.data[:] = 1.0  # duplicates summed: back to 1
            return matrix

        cannot = constraints.cannot_link_pairs(self._max_constraint_pairs, rng)
        if len(cannot):
            affinity = (affinity - affinity.multiply(pair_matrix(cannot))).tocsr()
        must = constraints.must_link_pairs(self._max_constraint_pairs, rng)
        if len(must):
            affinity = affinity.maximum(pair_matrix(must)).tocsr()
        affinity.eliminate_zeros()
        return affinity


@register
class NMFMethod(_FeatureClustering):
    """NMF-based clustering: factorise the non-negative features X ≈ W H with k components and assign each
    image to its strongest component (argmax of its row of W).

    With constraints (a person's corrections):

    * every must-link group (a locked cluster included) enters as its mean: its rows are replaced by their
      mean, so the Frobenius objective ||X - W H||² counts the group as one point of weight m, and identical
      rows get identical rows of W (the same initialisation, the same updates) — one component for the whole
      group;
    * the factorisation is seeded (as k-means is, Basu et al. 2002; centroid initialisation of NMF, Wild
      et al. 2004): the initial H holds the mean of every group (locked clusters first) as a component,
      the remaining components k-means++ rows, and the initial W the clipped least-squares weights
      max(X H⁺, 10⁻⁶); so the corrected groups become prototypes that the untouched images are measured
      against, instead of parts nndsvda finds on its own.

    Cannot-links have no place in the factorisation; the final labels keep them where another label is
    possible (:meth:`Constraints.enforce`, ranked by each image's share of weight on a component).
    """

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

    def _cluster(self, features: np.ndarray, cancel: CancelToken, constraints: Constraints | None = None):
        import warnings

        from sklearn.decomposition import NMF
        from sklearn.exceptions import ConvergenceWarning

        yield ProgressEvent("cluster", 0, 1, {}, "NMF" if constraints is None else "seeded NMF")
        model = NMF(n_components=self.n_clusters, init="nndsvda" if constraints is None else "custom",
                    max_iter=int(self.max_iter), random_state=self.random_state)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            if constraints is None:
                weights = model.fit_transform(features)
            else:
                data = _group_means_input(features, constraints)
                start_w, start_h = self._seeded_start(data, features, constraints)
                weights = model.fit_transform(data, W=start_w, H=start_h)
        self._model = model
        if constraints is not None:
            total = weights.sum(axis=1, keepdims=True)
            self._constraint_scores = np.where(total > 0, weights / np.where(total > 0, total, 1.0), 1.0 / self.n_clusters)
        return self._labels_from_weights(weights) + ({"reconstruction_err": float(model.reconstruction_err_)},)

    def _seeded_start(self, data: np.ndarray, features: np.ndarray,
                      constraints: Constraints) -> tuple[np.ndarray, np.ndarray]:
        """Initial (W, H): H = the seeded centres of constrained k-means (group means, then k-means++ rows),
        W = the least-squares weights of ``data`` on them, clipped to stay positive."""
        solver = _ConstrainedKMeans(features, self.n_clusters, constraints)
        centres = solver.initial_centres(np.random.RandomState(self.random_state)).astype(np.float64) + solver.mean
        start_h = np.maximum(centres, 0.0)
        start_w = np.maximum(data.astype(np.float64) @ np.linalg.pinv(start_h), 1e-6)
        return start_w.astype(data.dtype), start_h.astype(data.dtype)

    def _labels_from_weights(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        total = weights.sum(axis=1)
        # Share of the image's total weight held by its strongest component, in (0, 1]; an all-zero row
        # (a blank image) is equally unsure about every component: 1/k.
        confidence = np.where(total > 0, weights.max(axis=1) / np.where(total > 0, total, 1.0), 1.0 / self.n_clusters)
        return weights.argmax(axis=1).astype(np.int64), confidence.astype(np.float32)

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self._labels_from_weights(self._model.transform(self._transform(images)))[0]
