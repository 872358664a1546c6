"""Predicted vs actual time and peak memory of each method's photo preset on a folder (the estimate's check).

    python scripts/bench_photo_presets.py --folder ../shared/data/photos-sample -k 5 [--preset fast]
        [--methods recommended,kmeans,mmdc,...] [--weights FILE] [--output r.json]

Each method runs in its own process (so memory figures do not mix): first the calibration estimate the app
and the folder mode state before training (:mod:`photocluster.estimate`), then — after resetting the
process's peak-memory mark — the real run through the pipeline, timed. Prints one row per method:
predicted and actual seconds, predicted and actual peak resident memory, and the progress bar's ETA checked
against the end: at 25 %, 50 % and 75 % of the run, the ETA the last event showed divided by the time that
was really left (1.00 = exact; the issue's bar is within a factor of 2, i.e. between 0.5 and 2). Writes them
as JSON.
``recommended`` is k-means on the recommended network's embeddings (give --weights offline).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_METHODS = "recommended,kmeans,gmm,agglomerative,spectral,mmdc,dac,ccnn,tlfwr"


def child(args: argparse.Namespace) -> None:
    from photocluster.estimate import estimate_steps, peak_memory_bytes, reset_peak_memory
    from photocluster.methods.recommend import recommended_choice
    from photocluster.pipeline import cluster_steps, decode_size, decode_steps, scan_steps, with_preset
    from photocluster.progress import run_to_end

    method, params = args.child, {"n_clusters": args.k, "random_state": 0}
    if method == "recommended":
        choice = recommended_choice("cpu", args.weights)
        method, params = choice.method, {**params, **choice.params}
    elif args.weights:
        from photocluster.methods.base import method_class

        if "weights" in method_class(method)._param_names():  # methods trained from scratch have none
            params["weights"] = args.weights
    report = run_to_end(scan_steps([Path(args.folder)]))
    decoded = run_to_end(decode_steps(report.photos, name=f"bench:{args.folder}", size=decode_size(method, params)))
    full = with_preset(method, params, args.preset, decoded.dataset)
    estimate = run_to_end(estimate_steps(decoded.dataset, method, full))
    reset_peak_memory()
    etas: list[tuple[float, float]] = []  # (time, ETA the event showed)

    def on_event(event) -> None:
        if event.eta_seconds is not None:
            etas.append((time.perf_counter(), float(event.eta_seconds)))

    started = time.perf_counter()
    run_to_end(cluster_steps(report.photos, method, params, decode_name=f"bench:{args.folder}", record=False,
                             preset=args.preset, estimate=False), on_event)
    ended = time.perf_counter()
    seconds = ended - started
    eta_ratios = {}
    for share in (0.25, 0.5, 0.75):
        moment = started + share * seconds
        shown = [eta for when, eta in etas if when <= moment]
        if shown and ended > moment:
            eta_ratios[f"{share:.0%}"] = round(shown[-1] / (ended - moment), 3)
    print(json.dumps({"method": args.child, "photos": len(decoded.dataset),
                      "predicted_seconds": None if estimate is None else estimate.seconds,
                      "actual_seconds": seconds,
                      "predicted_peak_bytes": None if estimate is None else estimate.peak_bytes,
                      "actual_peak_bytes": peak_memory_bytes(), "eta_ratio": eta_ratios}))


def recorded(script: str) -> dict:
    """How the figures were produced (command, machine, torch, code, date), as the benchmark JSON records it."""
    import shlex

    from photocluster.benchmarks.runner import _run_metadata

    meta = _run_metadata({})
    meta["command"] = shlex.join(["python", f"scripts/{script}", *sys.argv[1:]])
    return meta


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", required=True)
    parser.add_argument("-k", type=int, default=5)
    parser.add_argument("--preset", choices=("fast", "thorough"), default="fast")
    parser.add_argument("--methods", default=DEFAULT_METHODS)
    parser.add_argument("--weights", default=None)
    parser.add_argument("--output", default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return 0
    rows = []
    print(f"{'method':14} {'photos':>6} {'predicted s':>12} {'actual s':>9} {'predicted peak':>15} {'actual peak':>12}"
          f"  ETA shown / real at 25, 50, 75 %")
    for method in args.methods.split(","):
        command = [sys.executable, __file__, "--child", method, "--folder", args.folder, "-k", str(args.k),
                   "--preset", args.preset, *(["--weights", args.weights] if args.weights else [])]
        done = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ))
        if done.returncode != 0:
            print(f"{method:14} failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}")
            continue
        row = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(row)
        predicted_s = "-" if row["predicted_seconds"] is None else f"{row['predicted_seconds']:.0f}"
        predicted_m = "-" if row["predicted_peak_bytes"] is None else f"{row['predicted_peak_bytes'] / 2**30:.2f} GB"
        print(f"{method:14} {row['photos']:>6} {predicted_s:>12} {row['actual_seconds']:>9.0f} {predicted_m:>15} "
              f"{row['actual_peak_bytes'] / 2**30:>9.2f} GB  "
              f"{' / '.join(str(row['eta_ratio'].get(s, '-')) for s in ('25%', '50%', '75%'))}", flush=True)
    if args.output:
        Path(args.output).write_text(json.dumps({"kind": "photo-presets", "folder": args.folder,
                                                 "preset": args.preset, "k": args.k,
                                                 "threads": os.environ.get("OMP_NUM_THREADS"), "runs": rows,
                                                 "recorded": recorded("bench_photo_presets.py")},
                                                indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
