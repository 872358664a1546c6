"""Cluster names in the app: a run names its clusters after what they show and when (here: EXIF dates, as the
method needs no network), and a name the person gives survives the next run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt

from guitools import COLOURS, PER_COLOUR, run_job
from photocluster.methods.recommend import NO_WEIGHTS_CHOICE

pytestmark = pytest.mark.gui

#: when each colour's photos were taken (EXIF DateTime), and the name a cluster of them gets
TAKEN = {"red": ("2021:05:14 10:00:00", "May 2021"), "green": ("2019:08:02 09:30:00", "August 2019"),
         "blue": ("2022:12:24 18:00:00", "December 2022")}


@pytest.fixture
def dated_photos(tmp_path) -> Path:
    folder = tmp_path / "dated"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for colour, rgb in COLOURS.items():
        for i in range(PER_COLOUR):
            pixels = np.clip(np.array(rgb) + rng.normal(0, 18, size=(48, 64, 3)), 0, 255).astype(np.uint8)
            exif = Image.Exif()
            exif[0x0132] = TAKEN[colour][0]  # DateTime
            Image.fromarray(pixels).save(folder / f"{colour}_{i:02d}.jpg", quality=90, exif=exif)
    return folder


def names_by_colour(window) -> dict[str, str]:
    """{colour: name of the cluster holding that colour's photos}; every cluster holds one colour."""
    found = {}
    for cluster in window.cluster_model.clusters():
        colours = {Path(p.path).name.split("_")[0] for p in window.catalog.photos_in(cluster.id)}
        assert len(colours) == 1, colours
        found[colours.pop()] = cluster.name
    return found


def test_a_suggested_name_appears_and_a_rename_survives_the_next_run(qtbot, window, dated_photos, dialogs):
    assert run_job(qtbot, window, lambda: window.add_folders([dated_photos])) == ("scan", "done")
    window.method_picker.set_choice(NO_WEIGHTS_CHOICE)
    window.method_picker.set_n_clusters(3)
    assert run_job(qtbot, window, window.start_training) == ("train", "done")
    assert names_by_colour(window) == {colour: name for colour, (_, name) in TAKEN.items()}
    shown = [window.cluster_model.data(window.cluster_model.index(r), Qt.ItemDataRole.DisplayRole)
             for r in range(window.cluster_model.rowCount())]
    assert any("May 2021" in text for text in shown)  # the list shows the suggested names

    # the person renames the red cluster in place, then trains again
    red = next(r for r, c in enumerate(window.cluster_model.clusters()) if c.name == "May 2021")
    with qtbot.waitSignal(window.clusters_refreshed, timeout=10_000):
        assert window.cluster_model.setData(window.cluster_model.index(red), "Red squares", Qt.ItemDataRole.EditRole)
    assert run_job(qtbot, window, window.start_training) == ("train", "done")
    assert names_by_colour(window) == {"red": "Red squares", "green": "August 2019", "blue": "December 2022"}
    assert not dialogs.shown
