#!/usr/bin/env python3
"""Screenshots of the main window after a scan, during training, with clusters and after a re-cluster → docs/screenshots/.

Runs the real app on a real X server: under Xvfb (``xvfb-run``, started automatically when there is no
display) with Qt's xcb platform, not the offscreen one, so fonts, style and layout are what a user sees.
The photos are ../shared/data/photos-sample when present (200 real flower photos), otherwise a generated
folder of coloured squares. The catalog and cache live in a temporary PHOTOCLUSTER_HOME, so the user's own
catalog is never touched.

The app trains what it opens on — the recommended method — unless ``--method`` names another (with its
seconds-long ``smoke_params``). No machine here can download torchvision's weights, so the pre-trained
network comes from ``--weights FILE`` (default: ../shared/data/weights' mobilenet_v2 file), given to the
app as its weights dialog would; that dialog and the open method list are pictured too.

    .venv/bin/python scripts/take_screenshots.py [--folder DIR] [--method dac] [--out docs/screenshots]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared" / "data" / "photos-sample"
WEIGHTS = REPO.parent / "shared" / "data" / "weights" / "mobilenet_v2-imagenet-keras.pth"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=SAMPLE if SAMPLE.is_dir() else None,
                        help="photo folder (default: ../shared/data/photos-sample, else a generated one)")
    parser.add_argument("--method", default=None,
                        help="method trained for the screenshots, with its own defaults (default: the "
                             "recommended choice the app opens on)")
    parser.add_argument("--weights", type=Path, default=WEIGHTS if WEIGHTS.is_file() else None,
                        help="a weights file for the pre-trained network, used when its download is not cached "
                             "(default: ../shared/data/weights/mobilenet_v2-imagenet-keras.pth)")
    parser.add_argument("--clusters", type=lambda v: None if v == "auto" else int(v), default=None,
                        help="number of clusters, or auto (the default: the app's own)")
    parser.add_argument("--full-params", action="store_true",
                        help="train with the method's default parameters instead of its seconds-long smoke_params")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    parser.add_argument("--no-xvfb", action="store_true", help="use the current display as it is")
    return parser.parse_args(argv)


def rerun_under_xvfb() -> int:
    """Start this script again inside a virtual X server of a fixed size."""
    if shutil.which("xvfb-run") is None:
        sys.exit("no display and no xvfb-run: install xvfb (Debian: apt-get install xvfb) or pass --no-xvfb")
    command = ["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24", sys.executable, __file__, *sys.argv[1:], "--no-xvfb"]
    return subprocess.call(command)


def generated_folder(root: Path) -> Path:
    """Coloured noisy squares in 5 groups of 12 — when the real sample is not there."""
    import numpy as np
    from PIL import Image

    folder = root / "generated photos"
    rng = np.random.default_rng(0)
    colours = [(200, 40, 40), (40, 160, 60), (40, 60, 200), (220, 200, 40), (150, 60, 170)]
    for g, rgb in enumerate(colours):
        sub = folder / f"group {g + 1}"
        sub.mkdir(parents=True, exist_ok=True)
        for i in range(12):
            pixels = np.clip(np.array(rgb) + rng.normal(0, 25, size=(240, 320, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(sub / f"photo_{i:02d}.jpg", quality=90)
    return folder


def main() -> int:
    args = parse_args()
    if not args.no_xvfb and not os.environ.get("DISPLAY"):
        return rerun_under_xvfb()
    os.environ["QT_QPA_PLATFORM"] = "xcb"
    home = Path(tempfile.mkdtemp(prefix="photocluster-screenshots-"))
    os.environ["PHOTOCLUSTER_HOME"] = str(home)  # a fresh catalog; never the user's
    os.environ.setdefault("PHOTOCLUSTER_THEME", "light")
    folder = args.folder or generated_folder(home)

    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from photocluster.gui.app import app_icon, apply_theme
    from photocluster.gui.main_window import MainWindow
    from photocluster.library.catalog import Catalog
    from photocluster.errors import WeightsUnavailable
    from photocluster.features.pretrained import (
        BACKBONES,
        backbone_of_weights_file,
        cached_weights_path,
        default_weights_url,
    )
    from photocluster.methods.base import method_class

    app = QApplication(["photocluster"])
    app.setApplicationDisplayName("photocluster")
    app.setWindowIcon(app_icon())
    apply_theme(app)
    window = MainWindow(catalog=Catalog(home / "catalog.sqlite3"),
                        settings=QSettings(str(home / "gui.ini"), QSettings.Format.IniFormat))
    window.resize(1400, 880)
    window.show()
    outcomes: list[tuple[str, str]] = []
    window.job_finished.connect(lambda name, outcome: outcomes.append((name, outcome)))

    def wait_until(predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out waiting for {what}")
            app.processEvents()
            time.sleep(0.01)

    def settle(seconds: float = 0.5) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            app.processEvents()
            time.sleep(0.01)

    args.out.mkdir(parents=True, exist_ok=True)

    def shoot(name: str, wait: float = 0.5) -> None:
        settle(wait)
        path = args.out / name
        if not window.grab().save(str(path)):
            raise SystemExit(f"could not write {path}")
        print(f"wrote {path}")

    def shoot_screen(name: str, wait: float = 0.5, *others) -> None:
        """The screen where the window (and the ``others``: popups, dialogs, windows of their own) is."""
        settle(wait)
        path = args.out / name
        frame = window.frameGeometry()
        for other in others:
            frame = frame.united(other.frameGeometry())
        if not app.primaryScreen().grabWindow(0, frame.x(), frame.y(), frame.width(), frame.height()).save(str(path)):
            raise SystemExit(f"could not write {path}")
        print(f"wrote {path}")

    # 1. after the scan: the report, the method picker on the recommended choice
    window.add_folders([folder])
    wait_until(lambda: outcomes, 300, "the scan")
    picker = window.method_picker
    if args.method:
        picker.set_method(args.method)
        if not args.full_params:
            picker.set_param_values(method_class(args.method).smoke_params())
    picker.set_n_clusters(args.clusters)
    shoot("01-scan.png")

    # the method list, open: its groups, each choice with one line on when to use it
    picker.method_combo.showPopup()
    shoot_screen("05-method-list.png", 0.5, picker.method_combo.view().window())
    picker.method_combo.hidePopup()

    # the weights dialog, as it opens when the network cannot be downloaded; then the weights file given to
    # the app as its "Choose a weights file…" does
    network = picker.method_params().get("features") or picker.method_params().get("backbone")
    if network in BACKBONES and str(picker.method_params().get("weights")) == "default" \
            and not cached_weights_path(network).exists():
        dialog = window.open_weights_dialog(WeightsUnavailable(
            "offline", backbone=network, url=default_weights_url(network), target=str(cached_weights_path(network)),
            reason="<urlopen error [Errno -3] Temporary failure in name resolution>"))
        shoot_screen("06-weights-offline.png")
        dialog.reject()
        if args.weights is None:
            raise SystemExit(f"the {network} weights are not cached: give --weights FILE")
        picker.use_weights_file(str(args.weights), backbone_of_weights_file(args.weights))

    # 2. during training: progress bar with stage, step, loss and ETA; the log. The picture is taken in the
    # slot that shows the first training event with numbers, so even a quick method is caught mid-run.
    shot_taken: list[bool] = []

    def shoot_during_training(event) -> None:
        if shot_taken or event.stage in ("decode", "list", "scan", "choose k", "estimate"):
            return
        if not event.metrics and not (event.total and 0 < event.step < event.total):
            return
        shot_taken.append(True)
        shoot("02-training.png", wait=0.2)

    window.start_training()
    window.worker.yielded.connect(shoot_during_training)

    # 3. with clusters: the list with representatives, the grid of the first cluster
    wait_until(lambda: len(outcomes) >= 2, 3600, "the end of training")
    if not shot_taken:
        raise SystemExit("the method reported no training step with numbers to show")
    if outcomes[-1] != ("train", "done"):
        raise SystemExit(f"training ended as {outcomes[-1]}")
    clusters = window.cluster_model.clusters()
    # Show a renamed cluster: the largest one, named after the kind of photo it holds most (its folder).
    largest = max(clusters, key=lambda c: c.size)
    kind, count = Counter(Path(p.path).parent.name for p in window.catalog.photos_in(largest.id)).most_common(1)[0]
    window.rename_cluster(largest.id, f"Mostly {kind}" if count * 2 > largest.size else f"Some {kind}")
    window.select_cluster(largest.id)
    wait_until(lambda: all(window.thumbnails.cached(f"photo:{window.photo_model.photo(r).id}") is not None
                           for r in range(min(20, window.photo_model.rowCount()))), 120, "thumbnails")
    wait_until(lambda: all(c.representative is None or window.thumbnails.cached(f"photo:{c.representative.id}")
                           is not None for c in window.cluster_model.clusters()), 120, "cluster thumbnails")
    shoot("03-clusters.png")

    # 4. the same in the dark theme
    apply_theme(app, dark=True)
    shoot("04-clusters-dark.png")
    apply_theme(app, dark=False)

    # 5. a re-cluster after corrections: the renamed cluster locked, a photo of its kind moved into it from
    # another cluster; Re-cluster trains again learning from that, and the status bar says what changed
    stray = next((p for c in clusters if c.id != largest.id for p in window.catalog.photos_in(c.id)
                  if Path(p.path).parent.name == kind), None)
    if stray is not None:
        window.move_photos([stray.id], largest.id)
    window.select_cluster(largest.id)
    window.toggle_lock()
    wait_until(lambda: not window.edits.pending, 120, "the edits to be saved")  # the re-cluster learns from them
    finished = len(outcomes)
    window.recluster_button.click()
    wait_until(lambda: len(outcomes) > finished, 3600, "the end of the re-cluster")
    if outcomes[-1][1] != "done":
        raise SystemExit(f"the re-cluster ended as {outcomes[-1]}")
    window.select_cluster(largest.id)
    shoot("07-recluster.png", wait=1.0)
    window.close()
    shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":  # the guard matters: decoding starts worker processes that import this module
    sys.exit(main())
