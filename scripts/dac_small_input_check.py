"""DAC's quick protocol on a digits stand-in built from MNIST, with 8x8 images presented one way or the other.

Used to choose ``small_input`` (``fill`` or ``frame``) without looking at scikit-learn's digits labels: the
first 1,797 MNIST training images (digits' size), each cropped to its central 20x20 box (where MNIST puts
the digit), area-averaged to 8x8 and quantised to 17 grey levels, as the UCI digits were made (counts of
on-pixels in 4x4 blocks, 0..16). The quick protocol's small-set settings apply (3 passes, 3 per selection
batch); the per-pass selection table is kept in the JSON record like a benchmark run's.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python scripts/dac_small_input_check.py {fill,frame} SEED OUT.json
        [--data-dir ../shared/data/mnist]
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch
from torch.nn import functional as F

from photocluster.benchmarks.runner import run_benchmark
from photocluster.data.dataset import ImageDataset
from photocluster.data.datasets import load_dataset
from photocluster.errors import UsageError
from photocluster.methods.dac import SMALL_INPUT_MODES


def mnist_as_digits(mnist: ImageDataset) -> ImageDataset:
    """MNIST images turned into digits-like 8x8 images with 17 grey levels (see the module docstring)."""
    box = torch.from_numpy(np.asarray(mnist.images)).permute(0, 3, 1, 2).float()[:, :, 4:24, 4:24]
    levels = torch.round(F.adaptive_avg_pool2d(box, 8) / 255.0 * 16.0)  # 2.5x2.5-px areas -> 0..16
    images = torch.round(levels * (255.0 / 16.0)).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    # the name starts with "mnist", so augment="auto" picks the digits preset, as for the real digits
    return ImageDataset("mnist8", np.ascontiguousarray(images), mnist.labels, mnist.class_names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=SMALL_INPUT_MODES)
    parser.add_argument("seed", type=int)
    parser.add_argument("output")
    parser.add_argument("--data-dir", default="../shared/data/mnist", help="folder with MNIST's IDX files")
    args = parser.parse_args(argv)
    try:
        mnist = load_dataset("mnist", data_dir=args.data_dir, limit=1797, progress=False)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    record = run_benchmark("mnist8", "dac", seeds=[args.seed], dataset=mnist_as_digits(mnist),
                           overrides={"small_input": args.mode}, progress=False)
    with open(args.output, "w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=1)
    run = record["runs"][0]
    print(f"{args.mode} seed {args.seed}: ACC {run['acc']:.4f} NMI {run['nmi']:.4f} ARI {run['ari']:.4f} "
          f"{run['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
