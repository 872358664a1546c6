"""The browse models: lazy thumbnails for a very large grid, ordering, drag data, and the app entry point."""

from __future__ import annotations

import json

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from photocluster.gui.models import (
    PHOTO_IDS_MIME,
    ClusterListModel,
    ClusterRow,
    PhotoGridModel,
    PhotoRow,
    ThumbnailLoader,
    photo_ids_from_mime,
)
from photocluster.gui.widgets import PhotoGridView, describe_event, format_eta
from photocluster.progress import ProgressEvent

pytestmark = pytest.mark.gui


def test_a_100k_photo_grid_only_loads_what_is_on_screen(qtbot, tmp_path):
    loader = ThumbnailLoader(thumbnail_size=64)
    model = PhotoGridModel(loader)
    # files that do not exist: each request ends as a broken placeholder, quickly
    model.set_photos([PhotoRow(id=i, path=str(tmp_path / f"p{i}.jpg"), confidence=(i % 97) / 97)
                      for i in range(100_000)])
    view = PhotoGridView(thumbnail_size=64)
    view.setModel(model)
    view.resize(800, 600)
    view.show()
    qtbot.waitUntil(lambda: loader.requests_made > 0, timeout=5000)
    on_screen = (800 // 76 + 1) * (600 // 76 + 2)
    assert 0 < loader.requests_made <= on_screen * 2
    first_batch = loader.requests_made
    view.scrollToBottom()
    qtbot.waitUntil(lambda: loader.requests_made > first_batch, timeout=5000)
    assert loader.requests_made <= first_batch + on_screen * 2  # the rows scrolled past were never asked for
    qtbot.waitUntil(lambda: loader.cached(f"photo:{99_999}") is not None, timeout=5000)
    view.close()
    loader.shutdown()


def test_thumbnails_decode_off_the_gui_thread_and_use_the_cached_file_first(qtbot, tmp_path):
    from PIL import Image

    original = tmp_path / "big.jpg"
    Image.new("RGB", (640, 320), (255, 0, 0)).save(original)
    loader = ThumbnailLoader(thumbnail_size=64)
    with qtbot.waitSignal(loader.loaded, timeout=5000) as loaded:
        assert loader.pixmap("a", [str(tmp_path / "missing-thumb.jpg"), str(original)]) is None
    assert loaded.args == ["a"]
    pixmap = loader.cached("a")
    assert (pixmap.width(), pixmap.height()) == (64, 32)  # aspect kept, long side = thumbnail size
    assert pixmap.toImage().pixelColor(10, 10).red() > 200
    loader.shutdown()


def test_least_confident_first_orders_unknown_confidence_last(qtbot):
    loader = ThumbnailLoader()
    model = PhotoGridModel(loader)
    rows = [PhotoRow(1, "/a.jpg", 0.9), PhotoRow(2, "/b.jpg", None), PhotoRow(3, "/c.jpg", 0.2),
            PhotoRow(4, "/d.jpg", 0.5)]
    model.set_photos(rows)
    assert [model.photo(r).id for r in range(4)] == [1, 2, 3, 4]  # as given (the catalog's surest first)
    model.set_least_confident_first(True)
    assert [model.photo(r).id for r in range(4)] == [3, 4, 1, 2]
    assert model.data(model.index(0), Qt.ItemDataRole.ToolTipRole) == "/c.jpg\nconfidence 0.20"
    model.set_least_confident_first(False)
    assert [model.photo(r).id for r in range(4)] == [1, 2, 3, 4]


def test_photo_drag_data_round_trips_ids_and_file_urls(qtbot):
    model = PhotoGridModel(ThumbnailLoader())
    model.set_photos([PhotoRow(7, "/x/a.jpg"), PhotoRow(9, "/x/b.jpg")])
    mime = model.mimeData([model.index(1), model.index(0)])
    assert json.loads(bytes(mime.data(PHOTO_IDS_MIME).data())) == [7, 9]
    assert photo_ids_from_mime(mime) == [7, 9]
    assert [u.toLocalFile() for u in mime.urls()] == ["/x/a.jpg", "/x/b.jpg"]


def test_cluster_model_turns_edits_and_drops_into_requests(qtbot):
    model = ClusterListModel(ThumbnailLoader())
    model.set_clusters([ClusterRow(10, "Cluster 1", 3), ClusterRow(11, "Beach", 1, locked=True)])
    assert model.data(model.index(1)) == "Beach  \N{LOCK}\n1 photo"
    with qtbot.waitSignal(model.rename_requested) as renamed:
        assert model.setData(model.index(0), "  Dogs ", Qt.ItemDataRole.EditRole)
    assert renamed.args == [10, "Dogs"]
    assert not model.setData(model.index(0), "   ", Qt.ItemDataRole.EditRole)  # empty names are refused
    photos = PhotoGridModel(ThumbnailLoader())
    photos.set_photos([PhotoRow(5, "/p.jpg")])
    with qtbot.waitSignal(model.photos_dropped) as dropped:
        assert model.dropMimeData(photos.mimeData([photos.index(0)]), Qt.DropAction.CopyAction, -1, -1, model.index(1))
    assert dropped.args == [[5], 11]


def test_progress_line_shows_stage_step_loss_and_eta():
    event = ProgressEvent("train", 12, 50, {"loss": 0.43125, "threshold": 0.9}, eta_seconds=75)
    assert describe_event(event) == "train · step 12/50 · loss 0.4313 · threshold 0.9 · ETA 1:15"
    assert format_eta(3725) == "1:02:05" and format_eta(None) == ""


def test_the_entry_point_opens_the_main_window_with_the_folders_given(qtbot, generated_photos):
    from photocluster.gui.app import app_icon, create_main_window

    app, window = create_main_window([str(generated_photos)])
    try:
        assert app is QApplication.instance() and window.isVisible()
        assert window.windowTitle() == "photocluster"
        assert window.folders == [generated_photos.resolve()]
        assert not app_icon().isNull()  # resources/photocluster.svg and .png
        qtbot.waitUntil(lambda: not window.busy, timeout=60_000)  # the scan of the folder given
        assert window.scan_report is not None and len(window.scan_report.photos) == 24
    finally:
        window.close()
        window.deleteLater()


def test_the_grid_repaints_when_a_thumbnail_arrives(qtbot, tmp_path):
    from PIL import Image

    photo = tmp_path / "wide.jpg"
    Image.new("RGB", (300, 100), (0, 0, 255)).save(photo)
    loader = ThumbnailLoader(thumbnail_size=60)
    model = PhotoGridModel(loader)
    model.set_photos([PhotoRow(1, str(photo)), PhotoRow(2, str(tmp_path / "missing.jpg"))])
    first = model.data(model.index(0), Qt.ItemDataRole.DecorationRole)
    assert (first.width(), first.height()) == (60, 60)  # the loading placeholder, square
    with qtbot.waitSignal(model.dataChanged, timeout=5000) as changed:
        model.data(model.index(1), Qt.ItemDataRole.DecorationRole)
    assert changed.args[2] == [Qt.ItemDataRole.DecorationRole]
    qtbot.waitUntil(lambda: loader.cached("photo:1") is not None, timeout=5000)
    shown = model.data(model.index(0), Qt.ItemDataRole.DecorationRole)
    assert (shown.width(), shown.height()) == (60, 20)  # the photo itself, aspect kept
    loader.shutdown()


def test_grid_columns_map_thumbnails_to_rows_in_either_order(qtbot):
    import numpy as np

    loader = ThumbnailLoader()
    model = PhotoGridModel(loader)
    model.set_columns(np.array([30, 10, 20]), ["/c.jpg", "/a.jpg", "/b.jpg"], np.array([0.5, np.nan, 0.1]),
                      ["h30", None, "h20"])
    assert [model.photo(r).id for r in range(3)] == [30, 10, 20]
    assert model.photo(1).confidence is None and model.photo(0).content_hash == "h30"
    changed = []
    model.dataChanged.connect(lambda top, bottom, roles: changed.append(top.row()))
    loader.loaded.emit("photo:20")
    model.set_least_confident_first(True)
    assert [model.photo(r).id for r in range(3)] == [20, 30, 10]
    loader.loaded.emit("photo:20")
    loader.loaded.emit("photo:10")
    loader.loaded.emit("photo:99")  # not in this grid: nothing to repaint
    assert changed == [2, 0, 2]
    with pytest.raises(ValueError):
        model.set_columns(np.array([1]), [], np.array([0.1]), [None])
