"""Re-clustering a folder keeps the person's corrections: a locked cluster comes out with exactly its photos
and name, a moved photo stays, new photos from a rescan are placed, and the summary says what changed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from photocluster.cli import main
from photocluster.library.catalog import Catalog, default_catalog_path

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}


def _photos(folder: Path, colour: str, count: int, start: int = 0, seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(start, start + count):
        image = np.clip(np.array(COLOURS[colour]) + rng.normal(0, 12, (40, 56, 3)), 0, 255).astype(np.uint8)
        path = folder / f"{colour}{i:02d}.png"
        Image.fromarray(image).save(path)
        paths.append(path)
    return paths


def _run(folder: Path, capsys) -> str:
    code = main(["--headless", "--folder", str(folder), "-m", "kmeans", "-k", "3", "-p", "features=hog-color",
                 "--no-estimate", "-q"])
    assert code == 0
    return capsys.readouterr().out


def _cluster_of(catalog: Catalog, path: Path) -> int:
    [row] = [p for p in catalog.photos() if Path(p.path).name == path.name]
    return row.cluster_id


def _names_in(catalog: Catalog, cluster_id: int) -> set[str]:
    return {Path(p.path).name for p in catalog.photos_in(cluster_id)}


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("PHOTOCLUSTER_HOME", str(tmp_path / "home"))
    return tmp_path


def test_a_recluster_keeps_locked_clusters_moves_and_places_new_photos(home, capsys):
    folder = home / "photos"
    reds = _photos(folder, "red", 6)
    greens = _photos(folder, "green", 6, seed=1)
    blues = _photos(folder, "blue", 6, seed=2)
    first = _run(folder, capsys)
    assert "re-clustered" not in first  # nothing to compare with yet

    with Catalog(default_catalog_path()) as catalog:
        red_cluster = _cluster_of(catalog, reds[0])
        assert _names_in(catalog, red_cluster) == {p.name for p in reds}
        catalog.rename(red_cluster, "Roses")
        catalog.set_locked(red_cluster, True)
        blue_cluster = _cluster_of(catalog, blues[0])
        catalog.move_photos([p.id for p in catalog.photos() if Path(p.path).name == greens[0].name], blue_cluster)
        assert len(catalog.corrections().statements) == 2

    new_reds = _photos(folder, "red", 3, start=6, seed=3)  # a rescan finds three more red photos
    second = _run(folder, capsys)
    assert "corrections: learning from 1 locked cluster and 1 move" in second
    assert "re-clustered: " in second and "of 18 photos changed group; 3 new photos placed" in second
    assert "the new grouping keeps all 8 constraints from your corrections (1 locked cluster and 1 move)" in second

    with Catalog(default_catalog_path()) as catalog:
        roses = [c for c in catalog.clusters() if c.name == "Roses"]
        assert len(roses) == 1 and roses[0].locked
        assert _names_in(catalog, roses[0].id) == {p.name for p in reds}  # exactly its photos, no newcomer
        assert _cluster_of(catalog, greens[0]) == _cluster_of(catalog, blues[0])  # the move holds
        placed = [_cluster_of(catalog, p) for p in new_reds]
        assert None not in placed and len(set(placed)) == 1  # the new photos are sorted, together
        assert sum(c.size for c in catalog.clusters()) == 21


def test_ignore_corrections_still_keeps_locked_clusters_in_the_catalog(home, capsys):
    folder = home / "photos"
    reds = _photos(folder, "red", 5)
    _photos(folder, "green", 5, seed=1)
    _photos(folder, "blue", 5, seed=2)
    _run(folder, capsys)
    with Catalog(default_catalog_path()) as catalog:
        catalog.set_locked(_cluster_of(catalog, reds[0]), True)
    code = main(["--headless", "--folder", str(folder), "-m", "kmeans", "-k", "3", "-p", "features=hog-color",
                 "--no-estimate", "-q", "--ignore-corrections"])
    out = capsys.readouterr().out
    assert code == 0
    assert "learning from" not in out
    assert "re-clustered: 0 of 15 photos changed group" in out
