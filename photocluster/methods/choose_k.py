"""Choosing the number of clusters when the person did not say: the best silhouette of k-means.

``-k auto`` in the folder mode and "Automatic" in the app both come here (through
:mod:`photocluster.pipeline`). The features are the ones the method itself clusters on when it has them (a
pre-trained network's embeddings), else HOG: the k that separates the photos best in the space the method
will work in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from photocluster.errors import UsageError
from photocluster.progress import CancelToken

#: The largest k tried (and at most N / 5, so a cluster has about five photos or more).
AUTO_K_MAX = 20
#: Silhouette on more points than this is computed on a random sample of this size (it is O(N^2)).
SILHOUETTE_SAMPLE = 3000


@dataclass(frozen=True)
class KChoice:
    """The chosen k, a sentence saying how, the silhouette of every k tried, and how sure the choice is.

    ``margin`` is the best silhouette minus the runner-up's: near 0 means another k was almost as good.
    """

    k: int
    how: str
    scores: dict[int, float] = field(default_factory=dict)

    @property
    def margin(self) -> float:
        ranked = sorted(self.scores.values(), reverse=True)
        return float(ranked[0] - ranked[1]) if len(ranked) > 1 else 0.0

    @property
    def confidence_words(self) -> str:
        """"clear" / "likely" / "uncertain" — for people, from the margin between the two best k."""
        if self.margin >= 0.02:
            return "clear"
        if self.margin >= 0.005:
            return "likely"
        return "uncertain"


def handcrafted_features_for_k(images: np.ndarray) -> tuple[np.ndarray, str]:
    """HOG features of uint8 images (N, H, W, C), and their name for the explanation."""
    from photocluster.features.handcrafted import extract_features

    return np.asarray(extract_features(images, "hog"), dtype=np.float32), "HOG features"


def estimate_k(features: np.ndarray, *, feature_name: str, k_max: int = AUTO_K_MAX, random_state: int = 0,
               cancel: CancelToken | None = None) -> KChoice:
    """Choose the number of clusters by the best silhouette of k-means on ``features`` (N, D).

    The range is k = 2 .. min(k_max, N // 5) (at least 2). Features are standardised and, above 64
    dimensions, projected on 64 principal components: the same structure, far less time.
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score
    from sklearn.preprocessing import StandardScaler

    n = len(features)
    if n < 4:
        raise UsageError(f"choosing the number of groups automatically needs at least 4 photos, found {n}")
    features = StandardScaler().fit_transform(np.asarray(features, dtype=np.float32))
    if features.shape[1] > 64:
        from sklearn.decomposition import PCA

        features = PCA(n_components=min(64, n - 1), random_state=random_state).fit_transform(features)
    top = max(2, min(k_max, n // 5))
    scores: dict[int, float] = {}
    sample = min(n, SILHOUETTE_SAMPLE)
    for k in range(2, top + 1):
        if cancel is not None:
            cancel.raise_if_cancelled()
        labels = KMeans(n_clusters=k, n_init=4, random_state=random_state).fit_predict(features)
        if len(set(labels.tolist())) < 2:
            continue
        scores[k] = float(silhouette_score(features, labels, sample_size=sample if sample < n else None,
                                           random_state=random_state))
    best = max(scores, key=lambda k: scores[k]) if scores else 2
    how = f"auto: best silhouette of k-means on {feature_name} over k = 2..{top}"
    return KChoice(best, how, scores)
