"""The ``photocluster`` command: opens the desktop app, or runs headless benchmarks and folder sorting.

Every error a user can cause (unknown data set or method, k < 2, missing data, bad folder) is printed as
one line ``photocluster: error: ...`` and exits with code 2. Ctrl-C cancels the running work cleanly.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from photocluster.errors import UsageError


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse prints usage + message; we want one line
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    p = _OneLineParser(
        prog="photocluster",
        description="Cluster photos with DAC, MMDC, CCNN, the transfer-learning method or classical baselines. "
        "Without --headless it opens the desktop app.",
    )
    p.add_argument("--headless", action="store_true", help="run without the GUI")
    p.add_argument("--list", action="store_true", help="list data sets, methods and protocols")
    p.add_argument("--version", action="store_true", help="print the version")

    bench = p.add_argument_group("benchmark")
    bench.add_argument("--benchmark", metavar="NAME", help="data set: mnist, fashion-mnist, cifar10, cifar100-20, "
                       "stl10, imagenet10, imagenet-dog, tiny-imagenet, digits, folder:PATH")
    bench.add_argument("--method", "-m", metavar="M", default=None,
                       help="method name, or several separated by commas (see --list)")
    bench.add_argument("--protocol", choices=("quick", "paper"), default="quick",
                       help="quick: reduced schedule for a CPU; paper: the paper's full schedule (default quick)")
    bench.add_argument("--seeds", type=int, default=1, metavar="N", help="number of seeds (default 1)")
    bench.add_argument("--seed", type=int, default=0, metavar="S", help="first seed (default 0)")
    bench.add_argument("--data-dir", metavar="D", help="folder with the data set's files")
    bench.add_argument("--download", action="store_true", help="download missing data sets / weights")
    bench.add_argument("--output", "-o", metavar="FILE", help="write results as JSON")
    bench.add_argument("--limit", type=int, metavar="N", help="use only the first N images (smoke runs)")

    common = p.add_argument_group("method settings")
    common.add_argument("-k", "--clusters", metavar="K", default=None,
                        help="number of clusters (benchmarks: default = number of classes; folders: a number or 'auto')")
    common.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")
    common.add_argument("--weights", metavar="PATH|default|none",
                        help="pre-trained backbone weights: a local state-dict file, 'default' (download on first "
                        "use) or 'none' (random initialisation)")
    common.add_argument("--boot", metavar="FEATURE", help="tlfwr boot feature(s), or 'all'")
    common.add_argument("--param", "-p", action="append", default=[], metavar="KEY=VALUE",
                        help="set any method parameter, e.g. -p epochs=5 (repeatable)")
    common.add_argument("--quiet", "-q", action="store_true", help="no progress bars")

    folder = p.add_argument_group("sorting your own photos")
    folder.add_argument("--folder", action="append", default=[], metavar="DIR", help="photo folder (repeatable)")
    folder.add_argument("--export", metavar="DEST", help="export each cluster into DEST/<cluster name>/")
    folder.add_argument("--mode", choices=("copy", "move", "hardlink", "symlink"), default=None,
                        help="how --export places the photos (default copy)")
    folder.add_argument("--preset", choices=("fast", "thorough"), default="fast",
                        help="a method's settings for photo folders: fast (minutes on a laptop) or thorough "
                        "(default fast; -p KEY=VALUE overrides either)")
    folder.add_argument("--no-estimate", action="store_true",
                        help="skip the calibration runs that estimate time and memory before training")
    folder.add_argument("--ignore-corrections", action="store_true",
                        help="re-cluster without learning from the corrections made in the catalog (locked "
                        "groups and the photos you placed still stay where they are)")
    folder.add_argument("--dry-run", action="store_true", help="show the export plan, change nothing")
    folder.add_argument("--include-hidden", action="store_true", help="also scan hidden files and folders")
    folder.add_argument("--follow-links", action="store_true", help="follow symbolic links (loops are detected)")
    return p


def has_display() -> bool:
    """False on a Linux/BSD machine without an X or Wayland display (servers, CI)."""
    if sys.platform.startswith(("win", "darwin")):
        return True
    if os.environ.get("QT_QPA_PLATFORM", "") in ("offscreen", "minimal"):
        return False
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _dispatch(parser, args)
    except UsageError as exc:
        print(f"photocluster: error: {exc}", file=sys.stderr)
        return 2


def _dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.version:
        from photocluster import __version__

        print(f"photocluster {__version__}")
        return 0
    if args.seeds < 1:
        raise UsageError("--seeds must be at least 1")
    if args.list:
        from photocluster.benchmarks.runner import print_listing

        print_listing()
        return 0
    if args.benchmark and args.folder:
        raise UsageError("use either --benchmark or --folder, not both")
    if args.benchmark:
        from photocluster.benchmarks.runner import run_benchmark_command

        return run_benchmark_command(args)
    if args.folder:
        from photocluster.folder_mode import run_folder_command

        return run_folder_command(args)
    if args.headless:
        raise UsageError("--headless needs --benchmark NAME, --folder DIR or --list")
    # No mode asked for: the desktop app, or on a machine without a display the quick digits benchmark.
    if has_display():
        from photocluster.gui.app import main as gui_main

        return gui_main([])
    print("photocluster: no display found, so the desktop app cannot open; running the quick headless "
          "benchmark on the embedded 'digits' set instead.", file=sys.stderr)
    from photocluster.benchmarks.runner import run_benchmark_command

    args.benchmark = "digits"
    args.method = args.method or "kmeans,mmdc"  # mmdc: the deep method that trains on digits in ~30 s on a CPU
    return run_benchmark_command(args)
