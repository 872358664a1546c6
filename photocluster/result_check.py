"""Checks on a finished clustering that a person should hear about before they trust it.

A training run can end "successfully" with a useless result: a deep method whose training collapsed puts
(nearly) every photo into one cluster — measured for CCNN on MNIST from random initialisation, where 99.7 %
of the images end in one cluster (docs/benchmarks.md). Nothing has failed, so no error is raised, but the
person is told plainly, with what to try instead, rather than left to find 9,000 photos in one folder.

Only trained (``family = "deep"``) methods are checked: k-means on real photos often leaves one big
cluster beside a few small groups of odd photos (measured: 186 of the 200 sample photos with HOG features
and one restart), which is what those features say about the photos, not a failed training.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

#: a run is called collapsed when one cluster holds at least this share of the photos...
COLLAPSE_SHARE = 0.9
#: ...and there are at least this many photos (a handful of photos can honestly be one group)
MIN_PHOTOS = 10


def collapse_warning(labels: Sequence[int] | np.ndarray, n_clusters: int | None, method: str) -> str | None:
    """A sentence for the person when one cluster swallowed the photos, else None.

    Parameters
    ----------
    labels:
        The cluster of each photo (any integers; negative ones, e.g. a method's noise label, count as a
        cluster of their own).
    n_clusters:
        How many clusters were asked for (None when the method chose the number itself; the sentence then
        leaves it out).
    method:
        The method's name, for the sentence.

    Returns
    -------
    str or None
        E.g. "ccnn put 9,973 of 10,000 photos (99.7 %) into one cluster; 2 of the 10 clusters asked for are
        not empty. The training has probably collapsed: try another method (mmdc, kmeans) or other settings."
    """
    labels = np.asarray(labels).ravel()
    total = len(labels)
    if total < MIN_PHOTOS or (n_clusters is not None and n_clusters < 2):
        return None
    _, counts = np.unique(labels, return_counts=True)
    largest = int(counts.max())
    if largest < COLLAPSE_SHARE * total:
        return None
    asked = f" of the {n_clusters} clusters asked for" if n_clusters is not None else ""
    return (
        f"{method} put {largest:,} of {total:,} photos ({100.0 * largest / total:.1f} %) into one cluster; "
        f"{len(counts)}{asked} {'is' if len(counts) == 1 else 'are'} not empty. The training has probably "
        f"collapsed: try another method (mmdc, kmeans) or other settings."
    )


def result_warnings(labels: Sequence[int] | np.ndarray, n_clusters: int | None, method: str) -> list[str]:
    """The warnings for a finished run of ``method`` (a registered name): the collapse check for trained methods."""
    from photocluster.methods.base import method_class

    if getattr(method_class(method), "family", "classic") != "deep":
        return []
    warning = collapse_warning(labels, n_clusters, method)
    return [] if warning is None else [warning]
