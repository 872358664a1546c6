"""Main-window behaviour around the flow: cancel, errors, closing while training, drops, the method picker."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QApplication, QCheckBox, QComboBox, QLineEdit, QMessageBox, QSpinBox

from guitools import run_job
from photocluster.methods.base import list_methods, method_class

pytestmark = pytest.mark.gui


@pytest.fixture
def scanned(qtbot, window, generated_photos):
    assert run_job(qtbot, window, lambda: window.add_folders([generated_photos])) == ("scan", "done")
    return window


def start_slow_training(qtbot, window):
    window.method_picker.set_method("test-slow")
    window.method_picker.set_n_clusters(2)
    assert window.start_training()
    # wait until the method itself is running (past decoding)
    qtbot.waitUntil(lambda: (e := window.progress_panel.last_event) is not None and e.stage == "train"
                    and e.metrics.get("loss") is not None, timeout=30_000)



def train_three_clusters(qtbot, window) -> None:
    """Cluster the scanned folder into 3 with a one-restart k-means (the setup of the browse/drag tests)."""
    window.method_picker.set_method("kmeans")
    window.method_picker.set_param_values({"n_init": 1})
    window.method_picker.set_n_clusters(3)
    assert run_job(qtbot, window, window.start_training) == ("train", "done")

def test_cancel_mid_training_stops_and_keeps_the_window_usable(qtbot, scanned, dialogs):
    window = scanned
    start_slow_training(qtbot, window)
    assert window.busy and window.cancel_button.isEnabled() and not window.train_button.isEnabled()
    assert "loss" in window.progress_panel.detail_label.text()
    with qtbot.waitSignal(window.job_finished, timeout=3000) as finished:  # the core checks cancel each step
        qtbot.mouseClick(window.cancel_button, Qt.MouseButton.LeftButton)
    assert finished.args == ["train", "cancelled"]
    assert not window.busy and window.train_button.isEnabled()
    assert window.cluster_model.rowCount() == 0  # a cancelled run records no clusters...
    assert [(r.method, r.status) for r in window.catalog.runs()] == [("test-slow", "cancelled")]  # ...only itself
    assert "cancelled" in window.progress_panel.detail_label.text()
    assert not dialogs.shown  # cancelling is not an error


def test_a_failing_method_shows_an_error_dialog_with_the_reason(qtbot, scanned, dialogs):
    window = scanned
    window.method_picker.set_method("test-broken")
    window.method_picker.set_n_clusters(2)
    assert run_job(qtbot, window, window.start_training) == ("train", "failed")
    assert len(dialogs.shown) == 1
    title, text = dialogs.shown[0]
    assert title == "Train failed" and "the network diverged (loss is NaN)" in text
    assert "diverged" in window.log_panel.toPlainText()
    assert [(r.method, r.status) for r in window.catalog.runs()] == [("test-broken", "failed")]
    assert window.train_button.isEnabled()  # never a silent stop, never a stuck window


def test_a_collapsed_training_keeps_its_clusters_and_warns(qtbot, scanned, dialogs):
    window = scanned
    window.method_picker.set_method("test-collapsing")
    window.method_picker.set_n_clusters(3)
    assert run_job(qtbot, window, window.start_training) == ("train", "done")  # nothing failed...
    assert window.cluster_model.rowCount() == 1  # ...the one cluster is shown as it is...
    assert dialogs.shown == [("Check the clusters", "test-collapsing put 24 of 24 photos (100.0 %) into one "
                              "cluster; 1 of the 3 clusters asked for is not empty. The training has probably "
                              "collapsed: try another method (mmdc, kmeans) or other settings.")]
    assert "probably collapsed" in window.log_panel.toPlainText()  # ...and the warning stays in the log


def test_a_healthy_deep_training_shows_no_warning(qtbot, scanned, dialogs):
    window = scanned
    window.method_picker.set_method("test-slow")  # a "deep" method: checked, and its 3 clusters are even
    window.method_picker.set_param_values({"steps": 2, "step_seconds": 0.01})
    window.method_picker.set_n_clusters(3)
    assert run_job(qtbot, window, window.start_training) == ("train", "done")
    assert window.cluster_model.rowCount() == 3 and not dialogs.shown


def test_training_before_any_scan_explains_why_not(window, dialogs):
    assert window.start_training() is False
    assert dialogs.texts() and "add a folder" in dialogs.texts()[0]


def test_closing_while_training_asks_and_no_keeps_training(qtbot, scanned, dialogs):
    window = scanned
    start_slow_training(qtbot, window)
    dialogs.answer = QMessageBox.StandardButton.No
    window.close()
    assert dialogs.questions and dialogs.questions[-1][0] == "Stop and quit?"
    assert window.isVisible() and window.busy and not window.worker.cancel_requested


def test_closing_while_training_asks_then_stops_cleanly(qtbot, scanned, dialogs):
    window = scanned
    start_slow_training(qtbot, window)
    dialogs.answer = QMessageBox.StandardButton.Yes
    window.close()
    assert window.worker.cancel_requested
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=5000)
    assert not window.busy and window.catalog is None  # catalog closed only after the worker stopped


def test_dropping_folders_onto_the_window_adds_and_scans_them(qtbot, window, generated_photos, tmp_path):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(generated_photos)), QUrl.fromLocalFile(str(tmp_path / "missing"))])
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(window.job_finished, timeout=60_000) as finished:
        window.dropEvent(event)
    assert finished.args == ["scan", "done"]
    assert window.folders == [generated_photos.resolve()]
    assert window.scan_report is not None and len(window.scan_report.photos) == 24


def test_dragging_a_cluster_out_carries_its_photo_files(qtbot, scanned):
    window = scanned
    train_three_clusters(qtbot, window)
    cluster = window.cluster_model.cluster(1)
    mime = window.cluster_model.mimeData([window.cluster_model.index(1)])
    files = sorted(Path(url.toLocalFile()) for url in mime.urls())
    assert files == sorted(Path(p.path).resolve() for p in window.catalog.photos_in(cluster.id))
    assert len(files) == cluster.size
    # copy only: a file manager must never move the user's originals away
    assert window.cluster_model.supportedDragActions() == Qt.DropAction.CopyAction
    assert window.photo_model.supportedDragActions() == Qt.DropAction.CopyAction


def test_method_picker_builds_a_form_from_each_methods_parameter_specs(window):
    picker = window.method_picker
    for name in list_methods():
        picker.set_method(name)
        cls = method_class(name)
        assert picker.description_label.text() == (cls.description or "")
        shown = set(picker._param_widgets)
        expected = {s.name for s in cls.parameter_specs()} - {"n_clusters", "device", "checkpoint_dir", "verbose"}
        assert shown == expected, name
        for spec_name, (spec, widget) in picker._param_widgets.items():
            if spec.choices:
                assert isinstance(widget, QComboBox)
            elif spec.kind is bool:
                assert isinstance(widget, QCheckBox)
            elif spec.kind is int and spec.default is not None:
                assert isinstance(widget, QSpinBox)
            else:
                assert isinstance(widget, QLineEdit)
        params = picker.method_params()
        assert set(params) <= set(cls._param_names())
    picker.set_method("kmeans")
    picker.set_n_clusters(7)
    picker.set_param_values({"n_init": 3})
    assert picker.method_params()["n_clusters"] == 7 and picker.method_params()["n_init"] == 3
    picker.set_n_clusters(None)
    assert picker.clusters_spin.text() == "auto" and "n_clusters" not in picker.method_params()
    assert picker.device_label.text().startswith("found: ")


def test_theme_follows_the_forced_scheme(monkeypatch):
    from photocluster.gui.app import apply_theme

    app = QApplication.instance()
    monkeypatch.setenv("PHOTOCLUSTER_THEME", "dark")
    assert apply_theme(app) is True
    assert app.palette().window().color().lightness() < 80
    monkeypatch.setenv("PHOTOCLUSTER_THEME", "light")
    assert apply_theme(app) is False
    assert app.palette().window().color().lightness() > 180


def test_double_click_preview_shows_the_photo_large(qtbot, scanned):
    window = scanned
    train_three_clusters(qtbot, window)
    index = window.photo_model.index(0)
    dialog = window.preview_photo(index)
    qtbot.waitUntil(lambda: dialog.image is not None, timeout=10_000)
    assert dialog.path == window.photo_model.photo(0).path
    assert (dialog.image.width(), dialog.image.height()) == (64, 48)  # the generated photo, not a thumbnail
    assert dialog.image_label.pixmap() is not None and not dialog.image_label.pixmap().isNull()
    dialog.close()


def test_a_large_cluster_loads_into_the_grid_in_the_background(qtbot, scanned, monkeypatch):
    from photocluster.gui import main_window

    window = scanned
    train_three_clusters(qtbot, window)
    monkeypatch.setattr(main_window, "SYNC_GRID_LOAD_LIMIT", 2)  # every cluster counts as large now
    first, second = window.cluster_model.clusters()[:2]
    with qtbot.waitSignal(window.grid_loaded, timeout=10_000) as loaded:
        window.select_cluster(second.id)
        assert window.photo_model.rowCount() == 0  # not read on the GUI thread
    assert loaded.args == [second.id] and window.photo_model.rowCount() == second.size
    # a load overtaken by another selection is dropped: the grid shows the cluster selected last
    with qtbot.waitSignal(window.grid_loaded, timeout=10_000) as loaded:
        window.select_cluster(first.id)
        window.select_cluster(second.id)
    qtbot.waitUntil(lambda: window.photo_model.rowCount() == second.size, timeout=10_000)
    assert {window.photo_model.photo(r).id for r in range(second.size)} == \
        {p.id for p in window.catalog.photos_in(second.id)}


def test_dragging_a_large_cluster_uses_the_file_list_read_in_the_background(qtbot, scanned, monkeypatch):
    from photocluster.gui import main_window

    window = scanned
    train_three_clusters(qtbot, window)
    monkeypatch.setattr(main_window, "SYNC_GRID_LOAD_LIMIT", 2)  # every cluster counts as large now
    cluster = window.cluster_model.cluster(1)
    expected = sorted(Path(p.path).resolve() for p in window.catalog.photos_in(cluster.id))
    with qtbot.waitSignal(window.grid_loaded, timeout=10_000):
        window.select_cluster(cluster.id)

    def no_catalog_reads_on_the_gui_thread(*args, **kwargs):
        raise AssertionError("the drag read the catalog in the GUI thread")

    monkeypatch.setattr(window.catalog, "photos_in", no_catalog_reads_on_the_gui_thread)
    mime = window.cluster_model.mimeData([window.cluster_model.index(1)])
    assert sorted(Path(url.toLocalFile()) for url in mime.urls()) == expected


def test_cluster_drag_data_carries_100k_file_urls(qtbot, tmp_path):
    from photocluster.gui.jobs import file_uri_list
    from photocluster.gui.models import ClusterListModel, ClusterRow, ThumbnailLoader

    paths = [str(tmp_path / f"a folder/photo #{i} é.jpg") for i in range(100_000)]
    uris = file_uri_list(paths)
    model = ClusterListModel(ThumbnailLoader(), cluster_uri_list=lambda cluster_id: uris)
    model.set_clusters([ClusterRow(id=1, name="big", size=len(paths))])
    urls = model.mimeData([model.index(0)]).urls()
    assert len(urls) == 100_000
    assert urls[0].isLocalFile() and urls[0].toLocalFile() == paths[0]  # spaces, '#' and accents survive
    assert urls[-1].toLocalFile() == paths[-1]


def test_a_large_catalog_reads_its_cluster_list_off_the_gui_thread(qtbot, scanned, monkeypatch):
    from photocluster.gui import main_window

    window = scanned
    train_three_clusters(qtbot, window)
    monkeypatch.setattr(main_window, "SYNC_CLUSTER_LIST_LIMIT", 10)  # 24 photos count as a large catalog
    cluster = window.cluster_model.cluster(0)

    def no_catalog_reads_on_the_gui_thread(*args, **kwargs):
        raise AssertionError("the cluster list was read in the GUI thread")

    window.catalog.rename(cluster.id, "Renamed elsewhere")
    monkeypatch.setattr(window.catalog, "clusters", no_catalog_reads_on_the_gui_thread)
    with qtbot.waitSignal(window.clusters_refreshed, timeout=10_000):
        window.refresh_clusters()
        assert window.cluster_model.cluster(0).name != "Renamed elsewhere"  # not yet: it is being read
    assert window.cluster_model.cluster(0).name == "Renamed elsewhere"
    assert sum(c.size for c in window.cluster_model.clusters()) == 24


def test_the_warning_box_opens_without_blocking_the_event_loop(window, monkeypatch):
    from conftest import REAL_MESSAGE_BOX_OPEN

    from photocluster.gui.dialogs import show_warning

    monkeypatch.setattr(QMessageBox, "open", REAL_MESSAGE_BOX_OPEN)  # the dialogs fixture records instead
    box = show_warning(window, "Check the clusters", "one cluster")  # returns at once: no nested exec()
    assert box.isVisible() and box.windowModality() == Qt.WindowModality.WindowModal
    assert box.text() == "one cluster" and box.icon() == QMessageBox.Icon.Warning
    box.close()
