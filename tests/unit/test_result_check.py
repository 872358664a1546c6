"""collapse_warning: hand-made label vectors on both sides of the 90 % rule."""

from __future__ import annotations

import numpy as np

from photocluster.result_check import collapse_warning


def test_one_cluster_holding_at_least_90_percent_is_reported_with_the_counts():
    labels = np.array([0] * 90 + [1] * 6 + [2] * 4)  # exactly 90 % in cluster 0
    text = collapse_warning(labels, 10, "ccnn")
    assert text is not None
    assert text.startswith("ccnn put 90 of 100 photos (90.0 %) into one cluster; 3 of the 10 clusters asked for")
    assert "try another method" in text
    everything = collapse_warning(np.full(12_345, 7), 5, "dac")
    assert everything is not None and "12,345 of 12,345 photos (100.0 %)" in everything and "; 1 of the 5" in everything


def test_healthy_small_or_single_cluster_runs_are_not_reported():
    assert collapse_warning(np.array([0] * 89 + [1] * 11), 2, "ccnn") is None  # 89 %: below the rule
    assert collapse_warning(np.arange(1000) % 10, 10, "kmeans") is None
    assert collapse_warning(np.zeros(9, dtype=int), 3, "kmeans") is None  # too few photos to judge
    assert collapse_warning(np.zeros(50, dtype=int), 1, "kmeans") is None  # one cluster was asked for


def test_without_an_asked_k_the_sentence_leaves_it_out():
    text = collapse_warning(np.array([-1] * 19 + [0]), None, "dbscan")
    assert text is not None and "19 of 20 photos (95.0 %)" in text and "; 2 are not empty" in text


def test_only_trained_methods_are_checked():
    from photocluster.result_check import result_warnings

    one_cluster = np.zeros(200, dtype=int)
    # k-means leaving one big cluster is what the features say (186 of the 200 sample photos, HOG features)
    assert result_warnings(one_cluster, 5, "kmeans") == []
    assert result_warnings(one_cluster, 5, "ccnn") == [collapse_warning(one_cluster, 5, "ccnn")]
    assert result_warnings(np.arange(200) % 5, 5, "ccnn") == []
