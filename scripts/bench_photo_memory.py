"""Peak resident memory of a method's photo run on 1,000, 5,000 and 20,000 photos: bounded by model and batch?

    python scripts/bench_photo_memory.py [--method mmdc] [--sizes 1000,5000,20000] [--epochs 1]
        [--work /tmp/photocluster-memory] [--output r.json]

Writes synthetic photos (320 x 240 JPEGs of coloured shapes on textured backgrounds, in ten families) into
``--work`` once, then runs the folder mode on the first N of them in a fresh process for each N —
``photocluster --headless --folder DIR -m METHOD -k 10 --preset fast --no-estimate -q`` — and prints its wall
time and peak resident memory (the process's and its decode workers' largest, from ``wait4``). ``--epochs``
shortens training for a memory check (the peak is reached in the first epoch: every epoch trains the same
model on the same batch size); leave it out to time the real preset. Runs use their own PHOTOCLUSTER_HOME
under ``--work``, so the user's catalog and cache are untouched.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
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


def run_once(folder: Path, home: Path, method: str, epochs: int | None) -> tuple[float, int, int]:
    """(seconds, peak bytes, exit code) of one folder-mode run in a fresh process."""
    command = [sys.executable, "-m", "photocluster", "--headless", "--folder", str(folder), "-m", method, "-k", "10",
               "--preset", "fast", "--no-estimate", "-q", *(["-p", f"epochs={epochs}"] if epochs else [])]
    env = dict(os.environ, PHOTOCLUSTER_HOME=str(home))
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        print(process.stderr.read().decode(errors="replace")[-2000:], file=sys.stderr)
    return seconds, int(usage.ru_maxrss) * 1024, process.returncode


def recorded(script: str) -> dict:
    """How the figures were produced (command, machine, torch, code, date), as the benchmark JSON records it."""
    import shlex

    from photocluster.benchmarks.runner import _run_metadata

    meta = _run_metadata({})
    meta["command"] = shlex.join(["python", f"scripts/{script}", *sys.argv[1:]])
    return meta


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="mmdc")
    parser.add_argument("--sizes", default="1000,5000,20000")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--work", default="/tmp/photocluster-memory")
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    work = Path(args.work)
    rows = []
    print(f"{'photos':>7} {'seconds':>8} {'peak RSS':>9}  ({args.method}, fast preset"
          f"{f', {args.epochs} epoch(s)' if args.epochs else ''}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')})")
    for size in (int(s) for s in args.sizes.split(",")):
        folder = work / f"photos-{size}"
        if folder.exists() and len(list(folder.iterdir())) != size:
            import shutil

            shutil.rmtree(folder)
        write_photos(folder, size)
        seconds, peak, code = run_once(folder, work / "home", args.method, args.epochs)
        rows.append({"photos": size, "seconds": seconds, "peak_bytes": peak, "exit_code": code})
        print(f"{size:>7} {seconds:>8.0f} {peak / 2**30:>6.2f} GB" + ("" if code == 0 else f"  (failed: exit {code})"),
              flush=True)
    if args.output:
        Path(args.output).write_text(json.dumps({"kind": "photo-memory", "method": args.method, "preset": "fast",
                                                 "epochs": args.epochs, "threads": os.environ.get("OMP_NUM_THREADS"),
                                                 "runs": rows, "recorded": recorded("bench_photo_memory.py")},
                                                indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
