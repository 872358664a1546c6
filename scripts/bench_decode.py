#!/usr/bin/env python
"""Photos per second: photocluster's scan + decode + thumbnail (cold cache) vs a naive Pillow loop.

Both are measured in the same run on the same folder (default ../shared/data/photos-sample):

* **photocluster** — ``FolderScan`` (walk, BLAKE2b hash, header; empty scan index) then ``LibraryDecoder`` (draft for JPEG,
  EXIF orientation, RGB, 96 px centre crop, 256 px JPEG thumbnail, per-photo cache files, the library
  memmap) with worker processes, into an empty temporary cache;
* **naive** — for each file: ``Image.open``, ``convert("RGB")``, ``resize((96, 96))`` and a 256 px
  thumbnail saved as JPEG to memory, one photo after another in one process (what a first script does).

Also printed: the warm rate (the same library again: scan index and decode cache both hit). Every cache
and index lives in a temporary folder, so the user's own cache is never touched. Usage::

    flock /tmp/pc-heavy.lock .venv/bin/python scripts/bench_decode.py [--folder DIR] [--workers N] [--repeat R]
        [--large N]
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from PIL import Image

from photocluster.library.decode import LibraryDecoder, default_workers
from photocluster.library.scan import FolderScan

DEFAULT_FOLDER = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos-sample"


def naive_loop(paths: list[Path], size: int, thumb_size: int) -> float:
    """Seconds for the naive open-and-resize loop over ``paths``."""
    started = time.perf_counter()
    for path in paths:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
            rgb.resize((size, size), Image.Resampling.BICUBIC)
            thumb = rgb.copy()
            thumb.thumbnail((thumb_size, thumb_size))
            thumb.save(io.BytesIO(), format="JPEG", quality=85)
    return time.perf_counter() - started


def photocluster_pipeline(folder: Path, size: int, thumb_size: int, workers: int | None,
                          cache_root: Path) -> tuple[float, float, int, int]:
    """Seconds for scan, seconds for decode (cold cache in ``cache_root``), photos, worker processes used."""
    started = time.perf_counter()
    report = FolderScan([folder], index=cache_root / "scan-index.sqlite3").run()  # a new, empty index
    scanned = time.perf_counter()
    decoder = LibraryDecoder(report.photos, size=size, thumb_size=thumb_size, workers=workers,
                             cache_root=cache_root)
    result = decoder.run()
    decoded = time.perf_counter()
    assert result.n_decoded == len({p.content_hash for p in report.photos}), "cache was not cold"
    return scanned - started, decoded - scanned, len(report.photos), decoder.used_workers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=DEFAULT_FOLDER)
    parser.add_argument("--workers", type=int, default=None,
                        help="decode processes (default: automatic, as the app does: one per CPU, max 8, when the "
                        "work is large enough to pay for starting them)")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--thumb-size", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; the median is reported")
    parser.add_argument("--large", type=int, default=0, metavar="N",
                        help="also measure N camera-size JPEGs (the folder's first N photos upscaled to 4000 x 3000, "
                        "written to a temporary folder): the case JPEG draft decoding is for")
    args = parser.parse_args()
    if not args.folder.is_dir():
        parser.error(f"folder not found: {args.folder}")
    measure(args.folder, args, "sample folder")
    if args.large:
        with tempfile.TemporaryDirectory(prefix="pc-bench-large-") as tmp:
            large = Path(tmp)
            sources = [p.path for p in FolderScan([args.folder], index=False).run().photos][: args.large]
            for i, source in enumerate(sources):
                with Image.open(source) as img:
                    img.convert("RGB").resize((4000, 3000), Image.Resampling.BICUBIC).save(
                        large / f"large{i:03d}.jpg", quality=90)
            measure(large, args, f"{len(sources)} photos upscaled to 4000 x 3000 (12 MP)")
    return 0


def measure(folder: Path, args: argparse.Namespace, label: str) -> None:
    """Print the three rates and the ratios for one folder."""
    paths = [p.path for p in FolderScan([folder], index=False).run().photos]
    workers = args.workers
    print(f"\n== {label}: {folder} ({len(paths)} photos); machine: {platform.machine()}, "
          f"{os.cpu_count()} CPUs visible (default_workers() = {default_workers()}), "
          f"load average {os.getloadavg()[0]:.1f}")

    naive_rates, cold_rates, warm_rates, scan_shares, used = [], [], [], [], set()
    for _ in range(args.repeat):
        # Alternate the two so that a change in machine load hits both alike.
        naive_rates.append(len(paths) / naive_loop(paths, args.size, args.thumb_size))
        with tempfile.TemporaryDirectory(prefix="pc-bench-cache-") as cache:
            scan_s, decode_s, n, used_workers = photocluster_pipeline(folder, args.size, args.thumb_size, workers,
                                                                      Path(cache))
            used.add(used_workers)
            cold_rates.append(n / (scan_s + decode_s))
            scan_shares.append(scan_s / (scan_s + decode_s))
            started = time.perf_counter()
            report = FolderScan([folder], index=Path(cache) / "scan-index.sqlite3").run()
            warm = LibraryDecoder(report.photos, size=args.size, thumb_size=args.thumb_size, workers=workers,
                                  cache_root=Path(cache)).run()
            assert warm.n_decoded == 0
            warm_rates.append(n / (time.perf_counter() - started))

    naive = statistics.median(naive_rates)
    cold = statistics.median(cold_rates)
    warm = statistics.median(warm_rates)
    print(f"naive Pillow open + convert + resize + thumbnail (1 process): {naive:8.1f} photos/s  "
          f"(runs: {', '.join(f'{r:.1f}' for r in naive_rates)})")
    print(f"photocluster scan + decode + thumbnail, cold cache:            {cold:8.1f} photos/s  "
          f"(runs: {', '.join(f'{r:.1f}' for r in cold_rates)}; scan is {100 * statistics.median(scan_shares):.0f} %; "
          f"worker processes: {', '.join(map(str, sorted(used)))})")
    print(f"photocluster second run (everything from the cache):           {warm:8.1f} photos/s")
    print(f"ratio cold / naive: {cold / naive:.2f}x   ratio warm / naive: {warm / naive:.1f}x")


if __name__ == "__main__":
    raise SystemExit(main())
