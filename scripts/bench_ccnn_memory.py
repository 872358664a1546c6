"""Peak memory of ``ccnn`` at 10k and 100k memmap-backed synthetic images: it must stay flat (< 20 % apart).

Usage (from the repository root)::

    .venv/bin/python scripts/bench_ccnn_memory.py              # sizes 10000 and 100000
    .venv/bin/python scripts/bench_ccnn_memory.py --sizes 10000 100000 --epochs 1

Each size runs in a fresh child process (so peaks do not carry over) on a uint8 numpy.memmap written to a
temporary folder: one full epoch of CCNN (every image passes through assignment, k_m selection, fine-tuning
and drift-compensated centroid updates) plus the final streamed labelling pass, with a tiny digit network so
the run stays short. Three figures per size:

* ``rss_anon_peak`` — the process's own memory (anonymous resident pages, sampled every 5 ms from
  /proc/self/status). This is the figure the < 20 % criterion uses: pages of the memmapped image file are
  page cache that the OS can drop at any time, so they are not the program's memory.
* ``vm_hwm`` — the kernel's resident-set high-water mark, memmapped file pages included (for reference:
  it grows with the share of the image file that was read).
* ``tracemalloc_peak`` — Python and numpy allocations only (torch's allocator is not traced); it holds the
  unavoidable N-sized outputs (labels_, confidence_, the N × k embeddings_, the epoch's permutation).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np

SIDE = 28


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


class _PeakSampler(threading.Thread):
    """Samples RssAnon in the background; the largest value seen is the anonymous-memory peak."""

    def __init__(self, interval: float = 0.005) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.peak_kib = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.peak_kib = max(self.peak_kib, _status_kib("RssAnon"))
            time.sleep(self.interval)

    def stop(self) -> int:
        self._halt.set()
        self.join()
        return max(self.peak_kib, _status_kib("RssAnon"))


def _write_images(path: Path, count: int) -> None:
    """Synthetic digit-sized images: 10 bright-square classes plus noise, written in chunks (never whole)."""
    images = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(count, SIDE, SIDE, 1))
    rng = np.random.default_rng(0)
    chunk = 10_000
    for start in range(0, count, chunk):
        stop = min(count, start + chunk)
        block = rng.integers(0, 60, size=(stop - start, SIDE, SIDE, 1), dtype=np.uint8)
        classes = rng.integers(0, 10, size=stop - start)
        for offset, label in enumerate(classes):
            row, col = 2 + 8 * (label // 3 % 3), 2 + 8 * (label % 3)
            block[offset, row : row + 8, col : col + 8] = 230
        images[start:stop] = block
    images.flush()
    del images


def _child(count: int, epochs: int, folder: Path) -> dict:
    import torch

    from photocluster.data.dataset import ImageDataset
    from photocluster.methods.base import get_method
    from photocluster.models.ccnn_net import build_ccnn_net

    # Build (and throw away) one network first so that lazy imports and torch's one-off allocations are
    # not charged to either size.
    warm = build_ccnn_net(10, network="digits", weights="none", in_channels=1, adapt_channels=(8,))
    torch.optim.SGD(warm.parameters(), lr=0.001)  # first use imports torch._dynamo (~50 MiB)
    del warm

    torch.set_num_threads(1)  # the shared 2-core machine; memory does not depend on it
    path = folder / f"images_{count}.npy"
    _write_images(path, count)
    images = np.load(path, mmap_mode="r")
    dataset = ImageDataset(f"synthetic-{count}", images)
    method = get_method(
        "ccnn", n_clusters=10, network="digits", weights="none", adapt_channels="8", epochs=epochs,
        seed_pool=500, device="cpu", random_state=0, lr=0.001,
    )
    # Baseline after imports and model-independent setup, so both sizes start from the same footing.
    baseline_anon = _status_kib("RssAnon")
    sampler = _PeakSampler()
    sampler.start()
    tracemalloc.start()
    start = time.monotonic()
    method.fit(dataset)
    seconds = time.monotonic() - start
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    anon_peak = sampler.stop()
    return {
        "images": count,
        "epochs": epochs,
        "seconds": round(seconds, 1),
        "rss_anon_peak_mib": anon_peak / 1024,
        "rss_anon_before_fit_mib": baseline_anon / 1024,
        "vm_hwm_mib": _status_kib("VmHWM") / 1024,
        "tracemalloc_peak_mib": traced_peak / 2**20,
        "labelled": int(len(method.labels_)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(_child(args.child, args.epochs, args.folder)))
        return

    results = []
    with tempfile.TemporaryDirectory(prefix="ccnn-memory-") as folder:
        for size in args.sizes:
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(size), "--epochs", str(args.epochs), "--folder", folder],
                check=True, capture_output=True, text=True,
            )
            result = json.loads(out.stdout.strip().splitlines()[-1])
            results.append(result)
            print(
                f"{size:>7} images: RssAnon peak {result['rss_anon_peak_mib']:7.1f} MiB "
                f"(before fit {result['rss_anon_before_fit_mib']:.1f}), VmHWM {result['vm_hwm_mib']:7.1f} MiB, "
                f"tracemalloc peak {result['tracemalloc_peak_mib']:6.1f} MiB, {result['seconds']:.0f} s",
                flush=True,
            )
    small, large = results[0], results[-1]
    for key, label in (("rss_anon_peak_mib", "RssAnon peak"), ("vm_hwm_mib", "VmHWM"), ("tracemalloc_peak_mib", "tracemalloc peak")):
        change = 100.0 * (large[key] - small[key]) / small[key]
        print(f"{label}: {small['images']} → {large['images']} images: {change:+.1f} %")
    anon_change = 100.0 * (large["rss_anon_peak_mib"] - small["rss_anon_peak_mib"]) / small["rss_anon_peak_mib"]
    verdict = "PASS" if abs(anon_change) < 20.0 else "FAIL"
    print(f"{verdict}: process memory (RssAnon peak) differs by {anon_change:+.1f} % (limit 20 %)")
    if verdict == "FAIL":
        sys.exit(1)


if __name__ == "__main__":
    main()
