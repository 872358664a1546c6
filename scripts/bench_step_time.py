"""Time one full training step against the bare model step, for DAC and MMDC.

A *full step* is what training really does per mini-batch: gather the uint8 images by index, convert,
resize, augment on the device, forward, loss, backward and optimiser update. The *bare step* is the same
forward/loss/backward/update on a float tensor of the same shape that is already prepared on the device.
Their ratio is the overhead of the data path (goal: at most 1.10). Both are measured in the same run,
interleaved (full, bare, full, bare, ...) so that a busy machine slows both alike; the medians are printed.

Usage::

    .venv/bin/python scripts/bench_step_time.py [--device auto] [--repeats 20] [--batch 100] [--only dac|mmdc]
        [--cuda-graph]   (DAC on CUDA: both steps replayed from CUDA graphs)
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _mnist_shaped_dataset(n_images: int = 5000, seed: int = 0):
    """Random uint8 images of MNIST's shape: the step time depends on shapes, not on content."""
    from photocluster.data.dataset import ImageDataset

    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n_images, 28, 28, 1), dtype=np.uint8)
    return ImageDataset("mnist", images, rng.integers(0, 10, size=n_images))


def measure_dac(
    device: str = "auto", batch: int = 100, repeats: int = 20, warmup: int = 3, cuda_graph: bool = False
) -> dict[str, float]:
    """Median seconds of DAC's full training step and of the bare model step (MNIST-shaped input).

    The full step is :meth:`DAC.train_step` (gather by index, resize to the 28-px net, affine augmentation,
    forward, pairwise BCE on selected pairs, backward, RMSprop); the bare step is :meth:`DAC.model_step` on
    an input prepared beforehand. ``cuda_graph`` replays the model step from a CUDA graph (both steps: the
    ratio stays the data path's cost), the full one with its data path inside the graph; each graph's first
    four steps (3 eager, 1 capture) are warm-up then.
    """
    from photocluster.methods.dac import DAC, select_pairs

    dataset = _mnist_shaped_dataset()
    method = DAC(device=device, minibatch=batch, cuda_graph=cuda_graph)
    method.prepare(dataset)
    if method._graphed_step is not None:
        warmup = max(warmup, 5)  # each step has its graph: 3 eager steps and the capture fall in the warm-up
    rng = np.random.default_rng(0)
    # a realistic selection: similarities from random label features, the paper's start thresholds
    features = torch.nn.functional.normalize(torch.rand(batch, 10), dim=1).to(method.device_)
    targets, mask = select_pairs(features @ features.T, 0.95, 0.455)
    ready = method._to_network_input(method._uint8_batch(rng.choice(len(dataset), batch, replace=False)), augment=True)

    full, bare = [], []
    for repeat in range(warmup + repeats):
        indices = rng.choice(len(dataset), batch, replace=False)
        _synchronise(method.device_)
        start = time.perf_counter()
        method.train_step(indices, targets, mask)
        _synchronise(method.device_)
        middle = time.perf_counter()
        method.model_step(ready, targets, mask)
        _synchronise(method.device_)
        end = time.perf_counter()
        if repeat >= warmup:
            full.append(middle - start)
            bare.append(end - middle)
    graphs = [g for g in (method._graphed_train_step, method._graphed_step) if g is not None]
    failures = [g.disabled_reason for g in graphs if g.disabled_reason is not None]
    device_name = str(method.device_) + ("+graph" if graphs and not failures else "")
    for reason in failures:
        print(f"dac: a CUDA graph is off, its steps ran eagerly — {reason}")
    return {"full": statistics.median(full), "bare": statistics.median(bare), "batch": batch, "device": device_name}


def measure_mmdc(device: str = "auto", batch: int = 128, repeats: int = 20, warmup: int = 3) -> dict[str, float] | None:
    """Median seconds of MMDC's full clustering step and of the bare model step (MNIST-shaped input).

    The full step is :meth:`MMDC.cluster_step` (gather the uint8 batch by index, convert, centre view and
    random view — crop, resize, rotation — on the device, then the model step); the bare step is
    :meth:`MMDC.cluster_model_step` on views prepared beforehand: eval-mode embedding of the centre view,
    the Hungarian re-assignment of the batch's targets, forward/backward/SGD on the augmented view. So the
    ratio is the cost of the data path alone. Measured for the quick protocol's network (half-width VGG,
    16-px input: the one returned) and, printed as an extra line, the paper's (full VGG, 32-px input).
    """
    try:
        from photocluster.methods.mmdc import MMDC
    except ModuleNotFoundError:
        print("mmdc: photocluster.methods.mmdc is not there yet — skipped")
        return None

    dataset = _mnist_shaped_dataset()
    results = {}
    for config, settings in (("quick", dict(input_size=16, width=0.5)), ("paper", dict(input_size=32, width=1.0))):
        method = MMDC(device=device, batch_size=batch, architecture="vgg", augment="digits", rotation=False, **settings)
        method.prepare_for_benchmark(dataset)
        generator = torch.Generator().manual_seed(0)
        ready_indices = torch.randperm(len(dataset), generator=generator)[:batch]
        ready_images = method._batch(ready_indices)
        ready_centre = method.augmenter_.centre_view(ready_images)
        ready_augmented = method.augmenter_.train_view(ready_images)
        full, bare = [], []
        for repeat in range(warmup + repeats):
            indices = torch.randperm(len(dataset), generator=generator)[:batch]
            _synchronise(method.device_)
            start = time.perf_counter()
            method.cluster_step(indices)
            _synchronise(method.device_)
            middle = time.perf_counter()
            method.cluster_model_step(ready_indices, ready_centre, ready_augmented)
            _synchronise(method.device_)
            end = time.perf_counter()
            if repeat >= warmup:
                full.append(middle - start)
                bare.append(end - middle)
        results[config] = {"full": statistics.median(full), "bare": statistics.median(bare), "batch": batch,
                           "device": str(method.device_)}
    paper = results["paper"]
    print(f"{'mmdc*':8} {paper['device']:8} {batch:>5} {paper['full'] * 1000:>9.1f} ms "
          f"{paper['bare'] * 1000:>9.1f} ms {paper['full'] / paper['bare']:>7.3f}   (* paper's MNIST net: VGG, 32 px)")
    return results["quick"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, default=None, help="mini-batch size (default: each method's quick protocol)")
    parser.add_argument("--cuda-graph", action="store_true", help="DAC: replay its model step from a CUDA graph (CUDA only)")
    parser.add_argument("--only", choices=("dac", "mmdc"), default=None, help="measure one method")
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    print(f"{'method':8} {'device':8} {'batch':>5} {'full step':>12} {'bare step':>12} {'ratio':>7}")
    for name, measure, default_batch in (("dac", measure_dac, 100), ("mmdc", measure_mmdc, 128)):
        if args.only and name != args.only:
            continue
        extra = {"cuda_graph": args.cuda_graph} if name == "dac" else {}
        result = measure(device=args.device, batch=args.batch or default_batch, repeats=args.repeats, warmup=args.warmup, **extra)
        if result is None:
            continue
        ratio = result["full"] / result["bare"]
        print(
            f"{name:8} {result['device']:8} {result['batch']:>5} {result['full'] * 1000:>9.1f} ms "
            f"{result['bare'] * 1000:>9.1f} ms {ratio:>7.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
