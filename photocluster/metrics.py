"""Clustering quality, in one place: ACC, NMI, ARI, Jaccard, Fowlkes–Mallows, Davies–Bouldin and η.

All external indices compare ground-truth classes ``y_true`` with predicted clusters ``y_pred``; the cluster
ids are arbitrary integers and their number may differ from the number of classes.

The pair-counting indices (ARI, JC, FMI) are computed from one contingency table:
``TP`` = pairs in the same class and the same cluster, ``FP`` = same cluster but different class,
``FN`` = same class but different cluster.
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn import metrics as skm

__all__ = [
    "clustering_accuracy",
    "best_cluster_to_class_map",
    "nmi",
    "ari",
    "jaccard",
    "fowlkes_mallows",
    "davies_bouldin",
    "normalized_davies_bouldin",
    "index_difference_rate",
    "evaluate",
    "METRIC_KEYS",
]

#: keys of :func:`evaluate`'s result, in display order
METRIC_KEYS = ("acc", "nmi", "nmi_arithmetic", "ari", "jc", "fmi")


def _as_label_arrays(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true).ravel()
    y_pred = np.asarray(y_pred).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred differ in length: {len(y_true)} vs {len(y_pred)}")
    if y_true.size == 0:
        raise ValueError("cannot score an empty clustering")
    return y_true, y_pred


def _contingency(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Dense table ``C[cluster, class]`` = number of images of that class in that cluster."""
    _, true_idx = np.unique(y_true, return_inverse=True)
    _, pred_idx = np.unique(y_pred, return_inverse=True)
    table = np.zeros((pred_idx.max() + 1, true_idx.max() + 1), dtype=np.int64)
    np.add.at(table, (pred_idx, true_idx), 1)
    return table


def best_cluster_to_class_map(y_true: np.ndarray, y_pred: np.ndarray) -> dict[int, int]:
    """The one-to-one map cluster id → class id that maximises the number of correctly placed images.

    Clusters left without a class (more clusters than classes) are absent from the map.
    """
    y_true, y_pred = _as_label_arrays(y_true, y_pred)
    classes = np.unique(y_true)
    clusters = np.unique(y_pred)
    table = _contingency(y_true, y_pred)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return {int(clusters[r]): int(classes[c]) for r, c in zip(rows, cols)}


def clustering_accuracy(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray) -> float:
    """Unsupervised clustering accuracy (ACC): the best one-to-one map of clusters to classes (Hungarian).

    The assignment works on the rectangular contingency table, so the number of clusters may differ from
    the number of classes: images in a cluster that gets no class (or of a class that gets no cluster)
    count as wrong.

    Parameters
    ----------
    y_true, y_pred:
        Ground-truth classes and predicted clusters, one integer per image.

    Returns
    -------
    float
        Fraction of images whose cluster maps to their class, in [0, 1].
    """
    y_true, y_pred = _as_label_arrays(y_true, y_pred)
    table = _contingency(y_true, y_pred)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / y_true.size)


def nmi(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    average: Literal["geometric", "arithmetic"] = "geometric",
) -> float:
    """Normalised mutual information I(Y;C) / mean(H(Y), H(C)).

    ``average="geometric"`` (sqrt(H(Y) H(C))) is what DAC and the transfer-learning paper report
    (scikit-learn's default before 0.22); MMDC reports ``"arithmetic"`` ((H(Y) + H(C)) / 2).
    """
    if average not in ("geometric", "arithmetic"):
        raise ValueError(f"average must be 'geometric' or 'arithmetic', got {average!r}")
    y_true, y_pred = _as_label_arrays(y_true, y_pred)
    return float(skm.normalized_mutual_info_score(y_true, y_pred, average_method=average))


def ari(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray) -> float:
    """Adjusted Rand index (Hubert & Arabie): 0 for chance, 1 for a perfect match."""
    y_true, y_pred = _as_label_arrays(y_true, y_pred)
    return float(skm.adjusted_rand_score(y_true, y_pred))


def _pair_counts(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float, float, float]:
    """(TP, FP, FN) pair counts from the contingency table (floats: counts reach ~N²/2)."""
    table = _contingency(y_true, y_pred).astype(np.float64)

    def pairs(counts: np.ndarray) -> float:
        return float((counts * (counts - 1) / 2).sum())

    tp = pairs(table)
    same_cluster = pairs(table.sum(axis=1))
    same_class = pairs(table.sum(axis=0))
    return tp, same_cluster - tp, same_class - tp


def jaccard(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray) -> float:
    """Pair-counting Jaccard coefficient JC = TP / (TP + FP + FN) (transfer-learning paper)."""
    y_true, y_pred = _as_label_arrays(y_true, y_pred)
    tp, fp, fn = _pair_counts(y_true, y_pred)
    denominator = tp + fp + fn
    return float(tp / denominator) if denominator > 0 else 1.0


def fowlkes_mallows(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray) -> float:
    """Fowlkes–Mallows index FMI = TP / sqrt((TP + FP)(TP + FN))."""
    y_true, y_pred = _as_label_arrays(y_true, y_pred)
    tp, fp, fn = _pair_counts(y_true, y_pred)
    denominator = np.sqrt((tp + fp) * (tp + fn))
    return float(tp / denominator) if denominator > 0 else 0.0


def davies_bouldin(features: np.ndarray, labels: Sequence[int] | np.ndarray) -> float:
    """Davies–Bouldin index of a clustering of ``features`` (N, D): lower = tighter, better separated.

    Needs at least two clusters.
    """
    features = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    labels = np.asarray(labels).ravel()
    if len(np.unique(labels)) < 2:
        raise ValueError("Davies–Bouldin needs at least two clusters")
    return float(skm.davies_bouldin_score(features, labels))


def normalized_davies_bouldin(features: np.ndarray, labels: np.ndarray, boot_labels: np.ndarray) -> float:
    """DBI of ``labels`` divided by the DBI of the boot clustering on the same features.

    The transfer-learning paper reports DBI this way: the boot clustering scores 1.0 and an improved
    clustering scores below 1.
    """
    return davies_bouldin(features, labels) / davies_bouldin(features, boot_labels)


def index_difference_rate(values: Sequence[float] | np.ndarray) -> float:
    """η = std / mean of one metric measured with different boot features (transfer-learning paper).

    Small η means the final quality depends little on the boot feature ("feature-weak-relevant").
    Uses the population standard deviation (ddof = 0).
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("index_difference_rate needs at least one value")
    mean = values.mean()
    if mean == 0:
        raise ValueError("index_difference_rate is undefined when the mean is 0")
    return float(values.std() / mean)


def evaluate(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray) -> dict[str, float]:
    """All external indices at once.

    Returns
    -------
    dict
        ``acc``, ``nmi`` (geometric averaging), ``nmi_arithmetic``, ``ari``, ``jc``, ``fmi``.
    """
    y_true, y_pred = _as_label_arrays(y_true, y_pred)
    return {
        "acc": clustering_accuracy(y_true, y_pred),
        "nmi": nmi(y_true, y_pred, "geometric"),
        "nmi_arithmetic": nmi(y_true, y_pred, "arithmetic"),
        "ari": ari(y_true, y_pred),
        "jc": jaccard(y_true, y_pred),
        "fmi": fowlkes_mallows(y_true, y_pred),
    }
