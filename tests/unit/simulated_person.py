"""The person of scripts/bench_corrections.py, for the methods' constraint tests: which photos they move and
what the catalog then says about them."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from photocluster.methods.constraints import Constraints


def corrections(labels: np.ndarray, confidence: np.ndarray, truth: np.ndarray, fraction: float) -> Constraints:
    """The person of scripts/bench_corrections.py: the least-confident photos that sit in a cluster matched to
    another class are moved into the cluster matched to theirs; each is must-linked with that cluster's 10
    surest photos and cannot-linked with the 10 surest of the cluster it left (the catalog's statements)."""
    k = int(truth.max()) + 1
    table = np.zeros((k, k))
    np.add.at(table, (labels, truth), 1)
    clusters, classes = linear_sum_assignment(table, maximize=True)
    cluster_of = dict(zip(classes.tolist(), clusters.tolist()))
    core = {c: np.flatnonzero(labels == c)[np.argsort(-confidence[labels == c], kind="stable")[:10]] for c in range(k)}
    order = np.argsort(confidence, kind="stable")
    wrong = np.array([labels[i] != cluster_of[int(truth[i])] for i in order])
    moved = order[wrong][: int(round(fraction * len(labels)))]
    target = np.array([cluster_of[int(truth[i])] for i in moved])
    statements = [("together", np.concatenate([moved[target == c], core[c]]), ()) for c in range(k) if (target == c).any()]
    for c in range(k):
        left = moved[(labels[moved] == c) & (target != c)]
        if len(left):
            statements.append(("apart", left, core[c]))
    return Constraints.build(len(labels), statements=statements)
