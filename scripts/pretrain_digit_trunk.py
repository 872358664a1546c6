"""Pre-train the simplified (digit) CCNN trunk on a labelled data set, offline: a stand-in for ImageNet.

CCNN's protocol pre-trains conv1–5 on one labelled data set (ImageNet) and then clusters another. No
ImageNet weights exist for the digit network and none can be downloaded here, so this trains its trunk with
labels on Fashion-MNIST (Debian's ``dataset-fashion-mnist``) and saves the trunk's state dict; clustering
MNIST with it is the paper's transfer setting at digit size::

    python scripts/pretrain_digit_trunk.py --out fashion_trunk.pt
    python scripts/bench_ccnn_mnist.py --param weights=fashion_trunk.pt ...

The trunk is trained behind a temporary linear classifier (dropped afterwards), with Adam, as a plain
supervised classifier; it prints the training accuracy of every epoch.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ccnn_mnist import read_idx_gz  # noqa: E402

from photocluster.models.ccnn_net import _digit_trunk  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/usr/share/datasets/fashion-mnist"),
                        help="folder with train-images/labels-idx*-ubyte.gz")
    parser.add_argument("--out", type=Path, required=True, help="where the trunk's state dict goes")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    images = read_idx_gz(args.data / "train-images-idx3-ubyte.gz")
    labels = torch.from_numpy(read_idx_gz(args.data / "train-labels-idx1-ubyte.gz").astype(np.int64))
    # The same input scaling as CCNN's digit network: uint8 → [−1, 1].
    inputs = torch.from_numpy(images[:, None].astype(np.float32) / 127.5 - 1.0)
    torch.manual_seed(args.seed)
    trunk = _digit_trunk(1)
    with torch.no_grad():
        flat = trunk(inputs[:1]).numel()
    model = nn.Sequential(trunk, nn.Flatten(), nn.Linear(flat, int(labels.max()) + 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    start = time.monotonic()
    for epoch in range(args.epochs):
        order = torch.randperm(len(inputs))
        correct = 0
        for first in range(0, len(inputs), 128):
            batch = order[first : first + 128]
            logits = model(inputs[batch])
            loss = nn.functional.cross_entropy(logits, labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            correct += int((logits.argmax(1) == labels[batch]).sum())
        print(f"epoch {epoch + 1}: train accuracy {correct / len(inputs):.4f} ({time.monotonic() - start:.0f} s)", flush=True)
    torch.save(trunk.state_dict(), args.out)
    print(f"trunk state dict written to {args.out}")


if __name__ == "__main__":
    main()
