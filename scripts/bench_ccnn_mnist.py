"""CCNN ablations on MNIST: drift compensation vs Baseline-I (no compensation) vs Baseline-II/III, NMI.

Usage (from the repository root)::

    .venv/bin/python scripts/bench_ccnn_mnist.py --data ../shared/data/mnist --subset 10000 \
        --seeds 0 1 2 --variants ccnn baseline1 baseline2 --epochs 3

Reads the real MNIST idx files (train set), takes a fixed random subset (the quick protocol on a 2-core
CPU), runs each variant with ``weights="none"`` (the simplified digit CCNN has no pre-trained weights) and
prints one line per run plus the mean NMI per variant.

From ImageNet initialisation, on any benchmark the CLI knows (``--benchmark``, loaded exactly as
``photocluster --benchmark`` loads it, ``--limit`` its first images), with the quick protocol's parameters and
``--param`` on top::

    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_ccnn_mnist.py --benchmark mnist \
        --data ../shared/data/mnist --limit 5000 --seeds 0 1 2 --variants ccnn baseline1 baseline2 baseline3 \
        --param network=ccnn --param backbone=mobilenet_v2 --param input_size=64 \
        --param weights=../shared/data/weights/mobilenet_v2-imagenet-keras.pth --param train_layers=adaptation

All runs share one data set, so a frozen trunk's maps are computed once for every variant and seed. The JSON
keeps each run's per-epoch history (mean squared distance to the centroids: the drift).
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from photocluster.data.dataset import ImageDataset
from photocluster.methods.base import get_method
from photocluster.metrics import clustering_accuracy

VARIANT_PARAMS = {
    "ccnn": {"variant": "ccnn", "drift_compensation": True},
    "baseline1": {"variant": "ccnn", "drift_compensation": False},
    "baseline2": {"variant": "baseline2"},
    "baseline3": {"variant": "baseline3"},
}


def read_idx_gz(path: Path) -> np.ndarray:
    """Decode one gzip'd idx file (MNIST's format): magic, dims, then big-endian data."""
    with gzip.open(path, "rb") as handle:
        raw = handle.read()
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">i4", count=ndim, offset=4)
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(tuple(int(d) for d in dims))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/mnist"))
    parser.add_argument("--benchmark", default=None, help="a benchmark name (mnist, folder:PATH, …) instead of "
                        "the idx files: quick-protocol parameters, --param on top")
    parser.add_argument("--limit", type=int, default=None, help="with --benchmark: its first N images")
    parser.add_argument("--split", choices=("train", "t10k"), default="train")
    parser.add_argument("--subset", type=int, default=10000, help="images drawn at random (0 = all)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=["ccnn", "baseline1", "baseline2"], choices=list(VARIANT_PARAMS))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--param", action="append", default=[], help="extra KEY=VALUE (json value) for every run")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    extra = {}
    for item in args.param:
        key, _, value = item.partition("=")
        try:
            extra[key] = json.loads(value)
        except json.JSONDecodeError:
            extra[key] = value
    base: dict = {"n_clusters": 10, "network": "digits", "weights": "none", "epochs": args.epochs}
    if args.benchmark:
        from photocluster.benchmarks.runner import load_benchmark_dataset
        from photocluster.methods.base import method_class

        dataset = load_benchmark_dataset(args.benchmark, data_dir=args.data, limit=args.limit, progress=False,
                                         method_params={"ccnn": extra})
        base = method_class("ccnn").protocol_params("quick", dataset)
        labels = dataset.labels
    else:
        images = read_idx_gz(args.data / f"{args.split}-images-idx3-ubyte.gz")
        labels = read_idx_gz(args.data / f"{args.split}-labels-idx1-ubyte.gz").astype(np.int64)
        if args.subset and args.subset < len(images):
            pick = np.sort(np.random.default_rng(12345).choice(len(images), args.subset, replace=False))
            images, labels = images[pick], labels[pick]
        dataset = ImageDataset("mnist", images[..., None].copy(), labels)
    results = []
    # Seed-major order: if a long run is cut short, every variant has the same seeds done.
    for seed in args.seeds:
        for variant in args.variants:
            params = {**base, "random_state": seed, "device": "cpu", **VARIANT_PARAMS[variant], **extra}
            start = time.monotonic()
            method = get_method("ccnn", **params).fit(dataset)
            seconds = time.monotonic() - start
            nmi = normalized_mutual_info_score(labels, method.labels_)
            ari = adjusted_rand_score(labels, method.labels_)
            acc = clustering_accuracy(labels, method.labels_)
            results.append({"variant": variant, "seed": seed, "nmi": nmi, "ari": ari, "acc": acc, "seconds": seconds,
                            "cluster_sizes": np.bincount(method.labels_, minlength=params["n_clusters"]).tolist(),
                            "params": {k: v for k, v in params.items() if isinstance(v, (int, float, str, bool))},
                            "history": method.history_})
            print(f"{variant:10s} seed={seed} NMI={nmi:.4f} ARI={ari:.4f} ACC={acc:.4f} time={seconds:.0f}s "
                  f"sizes={results[-1]['cluster_sizes']}", flush=True)
            if args.json:
                write_results(args.json, args, len(dataset), results)
    print("mean NMI over seeds:")
    for variant in args.variants:
        values = [r["nmi"] for r in results if r["variant"] == variant]
        print(f"  {variant:10s} {np.mean(values):.4f} ± {np.std(values):.4f}  (n={len(values)})")
    if args.json:
        write_results(args.json, args, len(dataset), results)


def benchmark_results(benchmark: str, n_images: int, runs: list[dict]) -> list[dict]:
    """The runs in the shape ``photocluster --benchmark --output`` writes (one result per variant, each run
    keeping its cluster sizes, parameters and per-epoch history), so docs/results and its generator read them."""
    out = []
    for variant in dict.fromkeys(run["variant"] for run in runs):
        mine = [run for run in runs if run["variant"] == variant]
        metrics = ("acc", "nmi", "ari", "seconds")
        out.append({
            "benchmark": benchmark, "method": "ccnn", "variant": variant, "protocol": "quick",
            "n_images": int(n_images), "n_clusters": int(mine[0]["params"].get("n_clusters", 10)),
            "runs": [{key: value for key, value in run.items() if key != "variant"} for run in mine],
            "mean": {m: float(np.mean([run[m] for run in mine])) for m in metrics},
            "std": {m: float(np.std([run[m] for run in mine])) for m in metrics},
            "best": {m: float(max(run[m] for run in mine)) for m in metrics if m != "seconds"},
            "params": mine[0]["params"],
        })
    return out


def write_results(path: Path, args: argparse.Namespace, n_images: int, runs: list[dict],
                  command: str | None = None) -> None:
    """Write ``runs`` to ``path`` as benchmark results, each recording machine, code, date and ``command``
    (default: this script's own command line)."""
    import shlex
    import sys

    from photocluster.benchmarks.runner import _run_metadata

    command = command or shlex.join(["python", "scripts/bench_ccnn_mnist.py", *sys.argv[1:]])
    results = []
    for result in benchmark_results(args.benchmark or f"mnist-{args.split}", n_images, runs):
        # The command that measures this variant alone (same numbers: every run is seeded), so each result
        # says which ablation it is; the invocation that ran them all together is kept beside it.
        words = shlex.split(command)
        if "--variants" in words:
            start = words.index("--variants") + 1
            end = next((i for i in range(start, len(words)) if words[i].startswith("--")), len(words))
            words[start:end] = ["ccnn"]
        for key, value in VARIANT_PARAMS[result["variant"]].items():
            if (key, value) != ("variant", "ccnn"):
                words += ["--param", f"{key}={value if isinstance(value, str) else json.dumps(value)}"]
        recorded = {**_run_metadata(result), "command": shlex.join(words), "invocation": command}
        results.append({**result, "recorded": recorded})
    path.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
