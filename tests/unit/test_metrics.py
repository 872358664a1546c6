"""Metrics against cases computed by hand (the computation is written next to each expected value)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from photocluster import metrics

# The running example: 6 images, 2 classes, 2 clusters.
#   y_true = 0 0 0 1 1 1
#   y_pred = 0 0 1 1 1 1
# Contingency (cluster × class): cluster 0 = {class 0: 2}, cluster 1 = {class 0: 1, class 1: 3}.
Y_TRUE = [0, 0, 0, 1, 1, 1]
Y_PRED = [0, 0, 1, 1, 1, 1]


def test_accuracy_uses_the_best_one_to_one_map():
    # cluster 0 → class 0 (2 right), cluster 1 → class 1 (3 right): 5 / 6.
    assert metrics.clustering_accuracy(Y_TRUE, Y_PRED) == pytest.approx(5 / 6)


def test_accuracy_ignores_cluster_ids():
    # Renaming clusters (0 → 7, 1 → 3) changes nothing.
    assert metrics.clustering_accuracy(Y_TRUE, [7, 7, 3, 3, 3, 3]) == pytest.approx(5 / 6)
    assert metrics.clustering_accuracy([0, 1, 2, 0, 1, 2], [2, 0, 1, 2, 0, 1]) == 1.0


def test_accuracy_with_more_clusters_than_classes():
    # y_true 0 0 1 1, y_pred 0 1 2 2: clusters 0 and 1 both hold one class-0 image; only one of them can map
    # to class 0, cluster 2 → class 1 (2 right); the other class-0 image is wrong: 3 / 4.
    assert metrics.clustering_accuracy([0, 0, 1, 1], [0, 1, 2, 2]) == pytest.approx(3 / 4)


def test_accuracy_with_fewer_clusters_than_classes():
    # y_true 0 1 2 2, y_pred 0 0 1 1: cluster 0 → class 0 or 1 (1 right), cluster 1 → class 2 (2 right): 3 / 4.
    assert metrics.clustering_accuracy([0, 1, 2, 2], [0, 0, 1, 1]) == pytest.approx(3 / 4)


def test_best_map_is_one_to_one():
    mapping = metrics.best_cluster_to_class_map(np.array([0, 0, 1, 1]), np.array([5, 5, 9, 9]))
    assert mapping == {5: 0, 9: 1}


# Entropies of the running example (natural log):
#   H(Y) = ln 2 = 0.693147                           (classes 3/6, 3/6)
#   H(C) = -(1/3 ln 1/3 + 2/3 ln 2/3) = 0.636514     (clusters 2/6, 4/6)
#   I    = 1/3 ln((1/3)/(1/3·1/2)) + 1/6 ln((1/6)/(2/3·1/2)) + 1/2 ln((1/2)/(2/3·1/2))
#        = 1/3 ln 2 + 1/6 ln(1/2) + 1/2 ln(3/2) = 0.231049 − 0.115525 + 0.202733 = 0.318257
H_Y = math.log(2)
H_C = -(1 / 3 * math.log(1 / 3) + 2 / 3 * math.log(2 / 3))
MI = 1 / 3 * math.log(2) + 1 / 6 * math.log(1 / 2) + 1 / 2 * math.log(3 / 2)


def test_nmi_geometric_by_hand():
    # 0.318257 / sqrt(0.693147 · 0.636514) = 0.318257 / 0.664232 = 0.479139
    assert MI / math.sqrt(H_Y * H_C) == pytest.approx(0.479139, abs=1e-5)
    assert metrics.nmi(Y_TRUE, Y_PRED) == pytest.approx(0.479139, abs=1e-5)


def test_nmi_arithmetic_by_hand():
    # 0.318257 / ((0.693147 + 0.636514) / 2) = 0.318257 / 0.664831 = 0.478704
    assert metrics.nmi(Y_TRUE, Y_PRED, average="arithmetic") == pytest.approx(0.478704, abs=1e-5)


def test_nmi_rejects_unknown_averaging():
    with pytest.raises(ValueError, match="geometric"):
        metrics.nmi(Y_TRUE, Y_PRED, average="max")  # type: ignore[arg-type]


# Pair counts of the running example (15 pairs in all):
#   TP = C(2,2) + C(1,2) + C(3,2) = 1 + 0 + 3 = 4          same class, same cluster
#   same cluster = C(2,2) + C(4,2) = 1 + 6 = 7  → FP = 3
#   same class   = C(3,2) + C(3,2) = 6          → FN = 2


def test_jaccard_by_hand():
    # JC = TP / (TP + FP + FN) = 4 / 9
    assert metrics.jaccard(Y_TRUE, Y_PRED) == pytest.approx(4 / 9)


def test_fowlkes_mallows_by_hand():
    # FMI = TP / sqrt((TP + FP)(TP + FN)) = 4 / sqrt(7 · 6)
    assert metrics.fowlkes_mallows(Y_TRUE, Y_PRED) == pytest.approx(4 / math.sqrt(42))


def test_ari_by_hand():
    # index = 4, expected = 7 · 6 / 15 = 2.8, max = (7 + 6) / 2 = 6.5 → (4 − 2.8) / (6.5 − 2.8) = 1.2 / 3.7
    assert metrics.ari(Y_TRUE, Y_PRED) == pytest.approx(1.2 / 3.7)


def test_perfect_and_single_cluster_cases():
    assert metrics.evaluate([0, 0, 1, 1], [1, 1, 0, 0]) == pytest.approx(
        {"acc": 1.0, "nmi": 1.0, "nmi_arithmetic": 1.0, "ari": 1.0, "jc": 1.0, "fmi": 1.0})
    # Everything in one cluster: y_true 0 0 1 1 → ACC 2/4; TP = 2, FP = C(4,2) − 2 = 4, FN = 0 → JC 2/6.
    assert metrics.clustering_accuracy([0, 0, 1, 1], [0, 0, 0, 0]) == 0.5
    assert metrics.jaccard([0, 0, 1, 1], [0, 0, 0, 0]) == pytest.approx(1 / 3)


def test_evaluate_keys_and_values():
    result = metrics.evaluate(Y_TRUE, Y_PRED)
    assert tuple(result) == metrics.METRIC_KEYS
    assert result["acc"] == pytest.approx(5 / 6)
    assert result["nmi"] == pytest.approx(0.479139, abs=1e-5)
    assert result["nmi_arithmetic"] == pytest.approx(0.478704, abs=1e-5)
    assert result["ari"] == pytest.approx(1.2 / 3.7)
    assert result["jc"] == pytest.approx(4 / 9)
    assert result["fmi"] == pytest.approx(4 / math.sqrt(42))


def test_mismatched_or_empty_labels_are_errors():
    with pytest.raises(ValueError, match="differ"):
        metrics.evaluate([0, 1], [0, 1, 1])
    with pytest.raises(ValueError, match="empty"):
        metrics.clustering_accuracy([], [])


# Davies–Bouldin on 1-D points 0, 2 | 10, 12:
#   centroids 1 and 11; scatter s = mean distance to centroid = 1 for both; centroid distance 10
#   DBI = mean over clusters of max_j (s_i + s_j) / d_ij = (1 + 1) / 10 = 0.2
POINTS = np.array([[0.0], [2.0], [10.0], [12.0]])


def test_davies_bouldin_by_hand():
    assert metrics.davies_bouldin(POINTS, [0, 0, 1, 1]) == pytest.approx(0.2)


def test_normalized_davies_bouldin_by_hand():
    # Boot clustering {0, 10} | {2, 12}: centroids 5 and 7, s = 5 each, distance 2 → DBI (5 + 5) / 2 = 5.
    # Normalised: 0.2 / 5 = 0.04.
    assert metrics.normalized_davies_bouldin(POINTS, [0, 0, 1, 1], [0, 1, 0, 1]) == pytest.approx(0.04)


def test_davies_bouldin_needs_two_clusters():
    with pytest.raises(ValueError, match="two clusters"):
        metrics.davies_bouldin(POINTS, [0, 0, 0, 0])


def test_index_difference_rate_by_hand():
    # values 0.5, 0.7: mean 0.6, population std 0.1 → η = 1/6
    assert metrics.index_difference_rate([0.5, 0.7]) == pytest.approx(1 / 6)
    # The transfer paper's point: equal values → η = 0.
    assert metrics.index_difference_rate([0.65, 0.65, 0.65]) == 0.0
    with pytest.raises(ValueError):
        metrics.index_difference_rate([])
