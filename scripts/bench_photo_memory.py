"""Time and peak resident memory of a method's photo run on 1,000, 5,000 and 20,000 photos: bounded by model and batch?

    python scripts/bench_photo_memory.py [--method mmdc|recommended|M] [--sizes 1000,5000,20000] [--epochs 1]
        [-k 10|auto] [--weights FILE] [-p KEY=VALUE ...] [--estimate] [--again] [--work /tmp/photocluster-memory]
        [--output r.json]

Writes synthetic photos (320 x 240 JPEGs of coloured shapes on textured backgrounds, in ten families) into
``--work`` once, then runs the folder mode on the first N of them in a fresh process for each N —
``photocluster --headless --folder DIR -m METHOD -k K --preset fast --no-estimate -q`` — and prints its wall
time and peak resident memory (the process's and its decode workers' largest, from ``wait4``), and, where the
run says them, the seconds spent on pre-trained features and the k it chose. ``--method recommended`` runs
what a person gets without choosing (no ``-m``: k-means on the pre-trained embeddings; ``--weights FILE``
names the weights, as the folder mode takes them). ``--again`` runs each folder a second time on the same
cache, as a re-cluster does (decoded photos and embeddings read back, not computed). ``--estimate`` keeps the
calibration estimate a person's run makes before training. ``--epochs`` shortens training for a memory
check (the peak is reached in the first epoch: every epoch trains the same model on the same batch size);
leave it out to time the real preset.
Each run gets a PHOTOCLUSTER_HOME of its own under ``--work``, emptied first, so the user's catalog and cache
are untouched and no run reuses another's decoded photos or embeddings: every figure but ``--again``'s is a
first run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_photos(folder: Path, count: int) -> None:
    """Photos 0..count-1 (those already there are kept): reproducible from the index alone."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        path = folder / f"photo{index:05d}.jpg"
        if path.exists():
            continue
        rng = np.random.default_rng(index)
        family = index % 10
        base = np.array([(family * 53) % 256, (family * 97) % 256, (family * 151) % 256])
        pixels = np.clip(base + rng.normal(0, 40, (240, 320, 3)), 0, 255).astype(np.uint8)
        image = Image.fromarray(pixels)
        draw = ImageDraw.Draw(image)
        for _ in range(3 + family % 4):
            x, y = rng.integers(0, 280), rng.integers(0, 200)
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            (draw.ellipse if family % 2 else draw.rectangle)([x, y, x + 40 + family * 4, y + 40], fill=colour)
        image.save(path, quality=85)


def folder_command(folder: Path, args: argparse.Namespace) -> list[str]:
    """The folder-mode command line of one run (``-m`` left out for the recommended path)."""
    command = [sys.executable, "-m", "photocluster", "--headless", "--folder", str(folder), "-k", str(args.k),
               "--preset", "fast", "-q"]
    if args.method != "recommended":
        command += ["-m", args.method]
    if not args.estimate:
        command.append("--no-estimate")
    if args.weights:
        command += ["--weights", args.weights]
    if args.epochs:
        command += ["-p", f"epochs={args.epochs}"]
    for param in args.param:
        command += ["-p", param]
    return command


#: What the folder mode's stdout says about the work inside a run (see pipeline.py's closing messages).
_FEATURES_LINE = re.compile(r"^features: .* embeddings of (\d+) images \((\d+) from the cache\) in ([0-9.]+) s$", re.M)
_K_LINE = re.compile(r"^k = (\d+) ", re.M)
_ESTIMATE_LINE = re.compile(r"^estimate: expected time about (.+?), peak memory about (.+?) \(", re.M)


def run_once(command: list[str], home: Path) -> dict:
    """Seconds, peak bytes and exit code of one folder-mode run in a fresh process, and what its output says
    about the features it computed and the k it chose."""
    env = dict(os.environ, PHOTOCLUSTER_HOME=str(home))
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if code != 0:
        print(stderr[-2000:], file=sys.stderr)
    row = {"seconds": seconds, "peak_bytes": int(usage.ru_maxrss) * 1024, "exit_code": code}
    features = _FEATURES_LINE.search(stdout)  # the first: where the embeddings were computed
    if features:
        row["features_seconds"] = float(features.group(3))
        row["features_from_cache"] = int(features.group(2))
    k = _K_LINE.search(stdout)
    if k:
        row["k"] = int(k.group(1))
    estimate = _ESTIMATE_LINE.search(stdout)  # the method stage's, as the person reads it
    if estimate:
        row["estimate"] = {"time": estimate.group(1), "peak": estimate.group(2)}
    return row


def recorded(script: str) -> dict:
    """How the figures were produced (command, machine, torch, code, date), as the benchmark JSON records it."""
    import shlex

    from photocluster.benchmarks.runner import _run_metadata

    meta = _run_metadata({})
    meta["command"] = shlex.join(["python", f"scripts/{script}", *sys.argv[1:]])
    return meta


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="mmdc", help="a method, or 'recommended' (what a person gets by default)")
    parser.add_argument("--sizes", default="1000,5000,20000")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("-k", default="10", help="clusters: a number or 'auto' (default 10)")
    parser.add_argument("--weights", default=None, help="pre-trained weights file, as the folder mode takes it")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--estimate", action="store_true", help="keep the calibration estimate before training")
    parser.add_argument("--again", action="store_true",
                        help="run each folder a second time from the cache (what a re-cluster costs)")
    parser.add_argument("--work", default="/tmp/photocluster-memory")
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    work = Path(args.work)
    rows = []
    print(f"{'photos':>7} {'seconds':>8} {'features s':>10} {'k':>3} {'peak RSS':>9}  ({args.method}, fast preset, "
          f"k={args.k}{f', {args.epochs} epoch(s)' if args.epochs else ''}; "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')})")
    for size in (int(s) for s in args.sizes.split(",")):
        folder = work / f"photos-{size}"
        if folder.exists() and len(list(folder.iterdir())) != size:
            shutil.rmtree(folder)
        write_photos(folder, size)
        home = work / f"home-{size}"
        shutil.rmtree(home, ignore_errors=True)
        row = {"photos": size, **run_once(folder_command(folder, args), home)}
        if args.again:
            # The same folder once more, as a Re-cluster runs it: decoded photos and embeddings from the cache.
            row["again"] = run_once(folder_command(folder, args), home)
        rows.append(row)
        features = f"{row['features_seconds']:.0f}" if "features_seconds" in row else "-"
        print(f"{size:>7} {row['seconds']:>8.0f} {features:>10} {row.get('k', '-'):>3} "
              f"{row['peak_bytes'] / 2**30:>6.2f} GB"
              + ("" if row["exit_code"] == 0 else f"  (failed: exit {row['exit_code']})")
              + (f"; again from the cache: {row['again']['seconds']:.0f} s, {row['again']['peak_bytes'] / 2**30:.2f} GB"
                 if "again" in row else ""),
              flush=True)
    if args.output:
        Path(args.output).write_text(json.dumps({"kind": "photo-memory", "method": args.method, "preset": "fast",
                                                 "k": args.k, "epochs": args.epochs, "estimate": args.estimate,
                                                 "fresh_home": True, "threads": os.environ.get("OMP_NUM_THREADS"),
                                                 "runs": rows, "recorded": recorded("bench_photo_memory.py")},
                                                indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
