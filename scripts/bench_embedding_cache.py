"""Feature time of a first and a second clustering of one folder (another k): does the second reuse the cache?

    python scripts/bench_embedding_cache.py --folder ../shared/data/photos-sample --weights FILE
        [--backbone mobilenet_v2] [-k 5] [--second-k 8]

Runs the pipeline twice on the folder — k-means on the network's embeddings with -k K, then with the other
k — in a fresh PHOTOCLUSTER_HOME (so the first run finds an empty embedding cache), and prints each run's
feature time (the embedding stage: computing or reading the embeddings) and the ratio.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("-k", type=int, default=5)
    parser.add_argument("--second-k", type=int, default=8)
    args = parser.parse_args()
    os.environ["PHOTOCLUSTER_HOME"] = tempfile.mkdtemp(prefix="photocluster-cache-bench-")

    from photocluster.pipeline import cluster_steps, scan_steps
    from photocluster.progress import run_to_end

    report = run_to_end(scan_steps([Path(args.folder).resolve()]))
    for run, k in (("first", args.k), ("second", args.second_k)):
        span: list[float] = []  # start and end of the method's embedding stage (the first "features" stage)

        def on_event(event) -> None:
            if event.stage == "features" and not span:
                span.append(time.perf_counter())
            elif event.stage != "features" and len(span) == 1:
                span.append(time.perf_counter())

        params = {"n_clusters": k, "features": args.backbone, "weights": args.weights, "n_init": 10}
        outcome = run_to_end(cluster_steps(report.photos, "kmeans", params, record=False, estimate=False), on_event)
        feature_seconds = span[1] - span[0]
        print(f"{run:>6} run, k = {k}: feature time {feature_seconds:.2f} s ({len(outcome.labels)} photos)",
              flush=True)
        if run == "first":
            first = feature_seconds
    print(f"second / first: 1/{first / max(feature_seconds, 1e-9):.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
