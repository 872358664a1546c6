"""How pure is tlfwr's first reliable set, per boot, and would another distance in eq. 17 help?

Usage (from the repository root)::

    python scripts/tlfwr_reliable_purity.py --features raw gabor hog pca [--data ../shared/data/mnist]

Same fixed 10,000-image MNIST subset as scripts/bench_ccnn_mnist.py. For every boot feature and clusterer
(the paper's #1–#8) it prints the boot ACC, the cluster sizes and, for the Δ (default 0.2) images closest to their
centre in every cluster (the images whose labels tlfwr fixes in its first round and never changes), the
fraction whose label is right under the best one-to-one cluster-to-class map, overall and in the worst
cluster. For GMM boots it also ranks by the component's (diagonal) Mahalanobis distance and by the posterior
of the assigned component instead of the Euclidean distance to the cluster mean.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ccnn_mnist import read_idx_gz  # noqa: E402

from photocluster.features.handcrafted import feature_steps  # noqa: E402
from photocluster.methods import tlfwr  # noqa: E402
from photocluster.metrics import best_cluster_to_class_map, clustering_accuracy  # noqa: E402

K = 10


def boot_features(images: np.ndarray, kind: str) -> np.ndarray:
    steps = feature_steps(images[..., None], kind, random_state=0)
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return np.asarray(stop.value, dtype=np.float64)


def reliable_purity(ranking: np.ndarray, labels: np.ndarray, correct: np.ndarray, delta: float) -> tuple[float, float]:
    """Fraction of right labels among the first round's reliable images, overall and in the worst cluster."""
    reliable = tlfwr.select_reliable(ranking, labels, np.zeros(len(labels), dtype=bool), delta, K)
    per_cluster = [correct[reliable & (labels == c)].mean() for c in range(K) if (reliable & (labels == c)).any()]
    return float(correct[reliable].mean()), float(min(per_cluster))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/mnist"))
    parser.add_argument("--features", nargs="+", default=list(tlfwr.BOOT_FEATURES), choices=tlfwr.BOOT_FEATURES)
    parser.add_argument("--delta", type=float, nargs="+", default=[0.2], help="first-round Δ (paper default 0.2)")
    args = parser.parse_args()
    from sklearn.mixture import GaussianMixture

    images = read_idx_gz(args.data / "train-images-idx3-ubyte.gz")
    truth = read_idx_gz(args.data / "train-labels-idx1-ubyte.gz").astype(np.int64)
    pick = np.sort(np.random.default_rng(12345).choice(len(images), 10000, replace=False))
    images, truth = images[pick], truth[pick]
    for kind in args.features:
        features = boot_features(images, kind)
        for clusterer in tlfwr.BOOT_CLUSTERERS:
            rankings = {}
            if clusterer == "gmm":  # the same model as tlfwr's boot, kept to read its means and variances
                gmm = GaussianMixture(K, covariance_type="diag", random_state=0, reg_covar=1e-3,
                                      init_params="k-means++", max_iter=100).fit(features)
                labels = gmm.predict(features)
                rankings["mahalanobis"] = (((features - gmm.means_[labels]) ** 2) / gmm.covariances_[labels]).sum(1)
                rankings["posterior"] = -gmm.predict_proba(features)[np.arange(len(features)), labels]
            else:
                labels = tlfwr._boot_cluster(features, K, "kmeans", 0, "diag")
            rankings = {"euclidean": tlfwr.distances_to_centres(features, labels, K), **rankings}
            mapping = best_cluster_to_class_map(truth, labels)
            correct = np.array([mapping.get(int(label), -1) for label in labels]) == truth
            line = (f"{kind}+{clusterer}: boot ACC {clustering_accuracy(truth, labels):.3f}, "
                    f"sizes {sorted(np.bincount(labels, minlength=K).tolist())}")
            for name, ranking in rankings.items():
                for delta in args.delta:
                    overall, worst = reliable_purity(ranking, labels, correct, delta)
                    line += f" | {name} Δ={delta:g}: reliable right {overall:.3f}, worst cluster {worst:.2f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
