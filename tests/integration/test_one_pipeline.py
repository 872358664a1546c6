"""The folder mode and the app's training job are drivers of one pipeline: same folder, method, parameters and
seed give the same clusters through both (DESIGN.md, "One photo pipeline, three drivers")."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from photocluster.cli import main
from photocluster.pipeline import scan_steps
from photocluster.progress import CancelToken, run_to_end
from photocluster.training_process import train_photos


def _noisy_folder(root: Path, n: int = 24) -> Path:
    """Photos of four colours with noise: a k-means split that depends on the seed's restarts and on the
    exact features, so two pipelines that decoded or featurised differently would part ways."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(7)
    for i in range(n):
        base = rng.integers(0, 256, 3)
        image = np.clip(base + rng.normal(0, 60, (48, 64, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(image).save(root / f"p{i:02d}.png")
    return root


def _partition(groups: list[list[str]]) -> set[frozenset[str]]:
    return {frozenset(group) for group in groups if group}  # (the export's own folders hold no photo)


def test_folder_mode_and_app_training_give_the_same_clusters(tmp_path):
    folder = _noisy_folder(tmp_path / "photos")
    dest = tmp_path / "out"
    params = ["-p", "features=hog-color", "-p", "n_init=2", "--seed", "3"]
    assert main(["--headless", "--folder", str(folder), "--method", "kmeans", "-k", "4", *params, "-q",
                 "--export", str(dest)]) == 0
    by_folder = _partition([[p.name for p in cluster.iterdir() if p.suffix == ".png"]
                            for cluster in dest.iterdir() if cluster.is_dir()])

    report = run_to_end(scan_steps([folder]))
    result = run_to_end(train_photos(report.photos, "kmeans",
                                     {"n_clusters": 4, "features": "hog-color", "n_init": 2, "random_state": 3},
                                     cancel=CancelToken()))
    names = [Path(p.path).name for p in result.photos]
    by_app = _partition([[names[i] for i in np.flatnonzero(result.labels == label)] for label in np.unique(result.labels)])

    assert sum(len(group) for group in by_folder) == 24
    assert len(by_app) == 4
    assert by_folder == by_app
