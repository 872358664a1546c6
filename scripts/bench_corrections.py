"""Simulate a person correcting a clustering, re-cluster with and without learning from it, print what it gains.

Usage (from the repository root)::

    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_corrections.py --benchmark digits --method kmeans,mmdc --seeds 3
    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_corrections.py --benchmark mnist --data-dir ../shared/data/mnist \\
        --limit 10000 --method mmdc --seeds 3
    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_corrections.py --benchmark folder:../shared/data/photos-sample \\
        --method kmeans -p features=mobilenet_v2 --weights ../shared/data/weights/mobilenet_v2-imagenet-keras.pth

For each method and seed:

1. the method clusters the data set (its ``quick`` benchmark protocol, k = the number of classes, that seed)
   and the run is recorded in a real catalog (a temporary file), as the app records it;
2. a person corrects it: of the photos the method is least sure of, the first N that sit in the wrong cluster
   (the cluster matched to another class by the Hungarian assignment) are moved into the cluster matched to
   their class — ``Catalog.move_photos``, one move per (from, to) pair of clusters, exactly the edit the app
   makes. N = each ``--fractions`` of the images (1 % and 5 % by default);
3. the method re-clusters twice with the same seed: with the corrections as constraints (the catalog's
   statements → :func:`photocluster.pipeline.constraints_for`, as a Re-cluster does) and without them; both
   results are recorded in the corrected catalog (so the moved photos stay where the person put them in both)
   and scored from the catalog's clusters.

Prints one JSON object per method, seed and fraction on stdout: ``method, seed, corrections, kept,
acc_before, acc_after, acc_unconstrained`` (+ ``fraction``, ``kept_by_method`` — the share of moved photos
the method itself put with their new cluster's core —, ``nmi_*``, ``seconds``). ``kept`` is the share of moved
photos that end in the cluster they were moved to. ``--output FILE`` also stores them, with the command and
machine, for docs/benchmarks.md (``scripts/generate_docs.py``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--benchmark", required=True, help="digits, mnist, fashion-mnist, … or folder:DIR")
    p.add_argument("--method", required=True, help="one method or a comma-separated list")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0 … S-1 (default 3), or from --seed on")
    p.add_argument("--seed", type=int, default=0, help="first seed (default 0): seeds of one study can run as "
                   "separate processes, one per core")
    p.add_argument("--data-dir", help="folder with the data set's files")
    p.add_argument("--limit", type=int, help="use only the first N images (MNIST: 10000)")
    p.add_argument("--fractions", default="0.01,0.05", help="corrections as fractions of the images")
    p.add_argument("--protocol", default="quick", choices=("quick", "paper"))
    p.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE", help="method parameter")
    p.add_argument("--weights", help="pre-trained weights file for methods on a backbone")
    p.add_argument("--output", help="also write the results (with command and machine) to this JSON file")
    return p.parse_args(argv)


def _fit(method: str, params: dict[str, Any], dataset, constraints=None) -> tuple[np.ndarray, np.ndarray]:
    from photocluster.methods.base import get_method

    estimator = get_method(method, **params)
    estimator.fit(dataset, constraints=constraints)
    labels = np.asarray(estimator.labels_, dtype=np.int64)
    confidence = getattr(estimator, "confidence_", None)
    confidence = np.zeros(len(labels)) if confidence is None else np.asarray(confidence, dtype=np.float64)
    return labels, confidence


def _catalog_labels(catalog, photo_ids: list[int]) -> np.ndarray:
    """Each photo's cluster in the catalog, as labels 0 … (clusters numbered by id)."""
    cluster_of = catalog.assignments(photo_ids)
    ids = sorted(set(cluster_of.values()))
    index = {cid: i for i, cid in enumerate(ids)}
    return np.array([index[cluster_of[p]] for p in photo_ids], dtype=np.int64)


def _record(catalog, photo_ids: list[int], method: str, labels: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    run = catalog.start_run(method, {})
    catalog.record_result(run, photo_ids, labels, confidence)
    return _catalog_labels(catalog, photo_ids)


def _corrections_to_make(labels: np.ndarray, confidence: np.ndarray, truth: np.ndarray, count: int
                         ) -> list[tuple[int, int]]:
    """(row, class) of the ``count`` least-confident photos that sit in a cluster matched to another class (a
    photo whose class no cluster is matched to has nowhere to be moved, and is passed over)."""
    from photocluster.metrics import best_cluster_to_class_map

    class_of_cluster = best_cluster_to_class_map(truth, labels)
    matched = set(class_of_cluster.values())  # a run that left a cluster empty has a class with no cluster
    moves = []
    for row in np.argsort(confidence, kind="stable"):
        if class_of_cluster.get(int(labels[row])) != int(truth[row]) and int(truth[row]) in matched:
            moves.append((int(row), int(truth[row])))
            if len(moves) == count:
                break
    return moves


def run_one(method: str, params: dict[str, Any], dataset, seed: int, fractions: list[float], workdir: Path,
            ) -> list[dict[str, Any]]:
    from photocluster.library.catalog import Catalog, PhotoRecord
    from photocluster.metrics import clustering_accuracy, nmi
    from photocluster.pipeline import constraints_for

    truth = np.asarray(dataset.labels, dtype=np.int64)
    n = len(truth)
    started = time.monotonic()
    labels0, confidence0 = _fit(method, params, dataset)
    first_seconds = time.monotonic() - started
    started = time.monotonic()
    labels_free, confidence_free = _fit(method, params, dataset)  # the same re-run, no corrections
    free_seconds = time.monotonic() - started
    photos = [SimpleNamespace(content_hash=f"row{i:07d}") for i in range(n)]
    out = []
    for fraction in fractions:
        base = workdir / f"{method}-{seed}-{fraction}"
        base.mkdir(parents=True)
        corrected = base / "corrected.sqlite3"
        with Catalog(corrected) as catalog:
            photo_ids = catalog.add_photos(PhotoRecord(Path(f"/bench/{i:07d}"), content_hash=photos[i].content_hash)
                                           for i in range(n))
            before = _record(catalog, photo_ids, method, labels0, confidence0)
            moves = _corrections_to_make(labels0, confidence0, truth, int(round(fraction * n)))
            # the cluster matched to each class, as the catalog holds it
            from photocluster.metrics import best_cluster_to_class_map

            cluster_of_class = {cls: cl for cl, cls in best_cluster_to_class_map(truth, labels0).items()}
            catalog_cluster = {int(labels0[r]): catalog.photo(photo_ids[r]).cluster_id for r in range(n)}
            batches: dict[tuple[int, int], list[int]] = {}
            target_of_row = {}
            for row, cls in moves:
                target = catalog_cluster[cluster_of_class[cls]]
                target_of_row[row] = target
                batches.setdefault((catalog.photo(photo_ids[row]).cluster_id, target), []).append(photo_ids[row])
            for (_, target), ids in sorted(batches.items()):
                catalog.move_photos(ids, target)
            corrections = catalog.corrections()
        scratch = base / "unconstrained.sqlite3"
        shutil.copyfile(corrected, scratch)  # closed above: the WAL is checkpointed into the file

        constraints = constraints_for(photos, corrections)
        started = time.monotonic()
        labels_after, confidence_after = _fit(method, params, dataset, constraints)
        constrained_seconds = time.monotonic() - started
        with Catalog(corrected) as catalog:
            final = _record(catalog, photo_ids, method, labels_after, confidence_after)
            kept = np.mean([catalog.photo(photo_ids[r]).cluster_id == t for r, t in target_of_row.items()]) \
                if target_of_row else 1.0
        with Catalog(scratch) as catalog:
            final_free = _record(catalog, photo_ids, method, labels_free, confidence_free)
        # did the method itself put each moved photo with the core it was moved to?
        groups = constraints.group
        by_method = [
            np.bincount(labels_after[(groups == groups[r]) & (np.arange(n) != r)]).argmax() == labels_after[r]
            if ((groups == groups[r]).sum() > 1) else False
            for r in target_of_row
        ]
        out.append({
            "method": method, "seed": seed, "fraction": fraction, "corrections": len(moves),
            "kept": float(kept), "kept_by_method": float(np.mean(by_method)) if by_method else 1.0,
            "acc_before": clustering_accuracy(truth, before),
            "acc_after": clustering_accuracy(truth, final),
            "acc_unconstrained": clustering_accuracy(truth, final_free),
            "nmi_before": nmi(truth, before), "nmi_after": nmi(truth, final), "nmi_unconstrained": nmi(truth, final_free),
            "n_images": n, "n_clusters": int(params.get("n_clusters", 0)),
            "seconds": {"first": round(first_seconds, 2), "unconstrained": round(free_seconds, 2),
                        "constrained": round(constrained_seconds, 2)},
        })
    return out


def main(argv: list[str] | None = None) -> int:
    from photocluster.benchmarks.runner import load_benchmark_dataset
    from photocluster.methods.base import method_class, parse_param_overrides

    args = _args(argv)
    methods = [m.strip() for m in args.method.split(",") if m.strip()]
    fractions = [float(f) for f in args.fractions.split(",")]
    overrides = {m: parse_param_overrides(m, args.param) for m in methods}
    if args.weights:
        for m in methods:
            if "weights" in method_class(m)._param_names():
                overrides[m].setdefault("weights", args.weights)
    dataset = load_benchmark_dataset(args.benchmark, data_dir=args.data_dir, limit=args.limit, progress=False,
                                     method_params=overrides)
    k = len(np.unique(dataset.labels))
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-corrections-") as tmp:
        for method in methods:
            cls = method_class(method)
            for seed in range(args.seed, args.seed + args.seeds):
                params = {**cls.protocol_params(args.protocol, dataset), **overrides[method], "n_clusters": k,
                          "random_state": seed}
                for record in run_one(method, params, dataset, seed, fractions, Path(tmp)):
                    record["benchmark"] = args.benchmark
                    record["params"] = {key: value for key, value in params.items() if key != "random_state"}
                    print(json.dumps(record), flush=True)
                    results.append(record)
    if args.output:
        from photocluster.benchmarks.runner import _run_metadata

        import shlex

        recorded = _run_metadata({"runs": [{"seed": s} for s in range(args.seed, args.seed + args.seeds)]})
        recorded["command"] = shlex.join(["python", "scripts/bench_corrections.py", *(argv or sys.argv[1:])])
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps({"kind": "corrections", "benchmark": args.benchmark,
                                                 "results": results, "recorded": recorded}, indent=2) + "\n")
        print(f"results written to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
