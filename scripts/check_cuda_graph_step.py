"""On a CUDA machine: does DAC's CUDA-graph step capture, train like the eager step, and how much faster is it?

The step is DAC's ``-p cuda_graph=true``. Two DAC models with the same seed take the same ``--steps`` full
training steps (same images, same pair targets, mini-batch 32 as in the paper protocol, plus one odd-sized
mini-batch every 32 steps like the last one of a 1,000-image selection batch); one eagerly, one through
:class:`photocluster.cuda_graph.GraphedStep` (the whole step after the gather: conversion, resize,
augmentation, model step). Printed: whether the graph was used (replays, eager warm-up steps, or why it was
turned off), the largest loss and weight differences, and the median time of a step of each (after the
first 20).
Exit status 1 when the graph was not used or the two trainings differ by more than ``--tolerance``.

Usage::

    python scripts/check_cuda_graph_step.py [--steps 300] [--batch 32] [--tolerance 1e-3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import torch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--tolerance", type=float, default=1e-3, help="largest relative weight difference accepted")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("check_cuda_graph_step: needs a CUDA GPU; none is visible", file=sys.stderr)
        return 2

    from photocluster.data.dataset import ImageDataset
    from photocluster.methods.dac import DAC, select_pairs

    rng = np.random.default_rng(0)
    dataset = ImageDataset("mnist", rng.integers(0, 256, size=(5000, 28, 28, 1), dtype=np.uint8), rng.integers(0, 10, 5000))
    features = torch.nn.functional.normalize(torch.rand(args.batch, 10, generator=torch.Generator().manual_seed(0)), dim=1)
    full_targets, full_mask = select_pairs(features @ features.T, 0.95, 0.455)
    odd = 8  # 1,000 = 31 x 32 + 8: the last mini-batch of every selection batch
    plan = [rng.choice(len(dataset), odd if (step + 1) % 32 == 0 else args.batch, replace=False) for step in range(args.steps)]

    results = {}
    for graphed in (False, True):
        method = DAC(device="cuda", minibatch=args.batch, cuda_graph=graphed)
        method.prepare(dataset)
        targets, mask = full_targets.to(method.device_), full_mask.to(method.device_)
        losses, times = [], []
        for indices in plan:
            n = len(indices)
            torch.cuda.synchronize()
            start = time.perf_counter()
            loss = method.train_step(indices, targets[:n, :n], mask[:n, :n])
            torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
            losses.append(float(loss))
        weights = torch.cat([p.detach().float().flatten() for p in method.model_.parameters()])
        results[graphed] = (np.array(losses), weights, statistics.median(times[20:]), method._graphed_train_step)

    eager_losses, eager_weights, eager_time, _ = results[False]
    graph_losses, graph_weights, graph_time, graphed_step = results[True]
    used = graphed_step is not None and graphed_step.disabled_reason is None and graphed_step.replays > 0
    loss_diff = float(np.abs(eager_losses - graph_losses).max())
    weight_diff = float(((eager_weights - graph_weights).abs().max() / eager_weights.abs().max().clamp_min(1e-12)).cpu())
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}")
    if graphed_step is None:
        print("graph: not built (cuda_graph was ignored: float16 loss scaling on this GPU?)")
    else:
        print(f"graph: {graphed_step.replays} replays, {graphed_step.eager_calls} eager steps"
              + (f", turned off: {graphed_step.disabled_reason}" if graphed_step.disabled_reason else ""))
    print(f"largest loss difference {loss_diff:.3g}, largest weight difference {weight_diff:.3g} (relative to the largest weight)")
    print(f"median step, batch {args.batch}: eager {eager_time * 1000:.2f} ms, graph {graph_time * 1000:.2f} ms "
          f"({eager_time / graph_time:.2f}x)")
    return 0 if used and weight_diff <= args.tolerance else 1


if __name__ == "__main__":
    raise SystemExit(main())
