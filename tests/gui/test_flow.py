"""The whole flow through the main window: scan → train → see clusters → rename → drag → undo → export."""

from __future__ import annotations

import filecmp
from pathlib import Path

import pytest
from PySide6.QtCore import QModelIndex, Qt

from photocluster.methods.base import method_class
from guitools import COLOURS, PER_COLOUR, run_job

pytestmark = pytest.mark.gui


def colour_of(path) -> str:
    return Path(path).name.split("_")[0]


def train(qtbot, window, method: str, k: int, params: dict | None = None, timeout_ms: int = 90_000):
    window.method_picker.set_method(method)
    window.method_picker.set_param_values(params or {})
    window.method_picker.set_n_clusters(k)
    return run_job(qtbot, window, window.start_training, timeout_ms)


def test_whole_flow_on_generated_folder(qtbot, window, generated_photos, tmp_path, dialogs):
    # scan: 24 photos, and the two broken files reported with their reasons
    assert run_job(qtbot, window, lambda: window.add_folders([generated_photos])) == ("scan", "done")
    assert window.scan_summary_label.text().startswith("24 photos, 2 skipped")
    skipped = [window.skipped_list.item(i).text() for i in range(window.skipped_list.count())]
    assert any(s.startswith("empty.jpg:") for s in skipped) and any(s.startswith("notes.png:") for s in skipped)
    assert window.skipped_list.isVisibleTo(window)

    # train k-means (one restart keeps it fast) into 3 clusters
    assert train(qtbot, window, "kmeans", 3, {"n_init": 1}) == ("train", "done")
    clusters = window.cluster_model.clusters()
    assert len(clusters) == 3 and sum(c.size for c in clusters) == 3 * PER_COLOUR
    # the colours are far apart: every cluster is one colour
    by_cluster = {c.id: {colour_of(p.path) for p in window.catalog.photos_in(c.id)} for c in clusters}
    assert sorted(len(colours) for colours in by_cluster.values()) == [1, 1, 1]
    assert window.photo_model.rowCount() == clusters[0].size  # the first cluster is shown

    # rename in place (through the model, as the view's editor does)
    first = window.cluster_model.index(0)
    assert window.cluster_model.setData(first, "Reds and such", Qt.ItemDataRole.EditRole)
    assert window.catalog.cluster(clusters[0].id).name == "Reds and such"
    assert window.cluster_model.data(window.cluster_model.index(0), Qt.ItemDataRole.EditRole) == "Reds and such"

    # drag the first photo of cluster 0 onto cluster 1 (the model-level drop the views perform)
    window.select_cluster(clusters[0].id)
    moved = window.photo_model.photo(0)
    mime = window.photo_model.mimeData([window.photo_model.index(0)])
    assert mime.urls() and Path(mime.urls()[0].toLocalFile()) == Path(moved.path).resolve()
    target = window.cluster_model.index(1)
    assert window.cluster_model.canDropMimeData(mime, Qt.DropAction.CopyAction, -1, -1, target)
    assert not window.cluster_model.canDropMimeData(mime, Qt.DropAction.CopyAction, 0, 0, QModelIndex())
    assert window.cluster_model.dropMimeData(mime, Qt.DropAction.CopyAction, -1, -1, target)
    assert window.catalog.photo(moved.id).cluster_id == clusters[1].id
    sizes = {c.id: c.size for c in window.cluster_model.clusters()}
    assert sizes[clusters[0].id] == clusters[0].size - 1 and sizes[clusters[1].id] == clusters[1].size + 1

    # undo (the Ctrl+Z action) puts it back; redo moves it again; undo once more
    assert window.undo_action.isEnabled()
    assert QKeySequenceText(window.undo_action) == "Ctrl+Z"
    window.undo_action.trigger()
    assert window.catalog.photo(moved.id).cluster_id == clusters[0].id
    assert "Ctrl+Shift+Z" in [s.toString() for s in window.redo_action.shortcuts()]
    window.redo_action.trigger()
    assert window.catalog.photo(moved.id).cluster_id == clusters[1].id
    window.undo_action.trigger()
    assert window.catalog.photo(moved.id).cluster_id == clusters[0].id
    assert window.catalog.cluster(clusters[0].id).name == "Reds and such"  # only the move was undone

    # export (copy): preview first, then the files on disk
    dialog = window.open_export_dialog()
    destination = tmp_path / "exported"
    dialog.destination_edit.setText(str(destination))
    dialog.set_mode("copy")
    assert dialog.preview()
    assert len(dialog.plan_view.toPlainText().splitlines()) == 3 * PER_COLOUR
    assert not destination.exists() or not any(destination.iterdir())  # a dry run writes nothing
    with qtbot.waitSignal(dialog.export_finished, timeout=30_000):
        assert dialog.start_export()
    folders = {p.name: sorted(p.iterdir()) for p in destination.iterdir() if p.is_dir() and not p.name.startswith(".")}
    assert "Reds and such" in folders and len(folders) == 3
    exported = [f for files in folders.values() for f in files]
    assert len(exported) == 3 * PER_COLOUR
    for copy in exported:
        assert filecmp.cmp(copy, generated_photos / copy.name, shallow=False)  # byte-identical
    assert all((generated_photos / f"{c}_00.jpg").exists() for c in COLOURS)  # originals untouched
    assert not dialogs.shown, dialogs.shown  # no error dialog on the way
    dialog.close()


def QKeySequenceText(action) -> str:
    return action.shortcut().toString()


def test_session_is_restored_when_the_app_reopens(qtbot, make_window, generated_photos):
    first = make_window()
    run_job(qtbot, first, lambda: first.add_folders([generated_photos]))
    train(qtbot, first, "kmeans", 3, {"n_init": 1})
    clusters = first.cluster_model.clusters()
    first.rename_cluster(clusters[2].id, "Sky")
    photo = first.catalog.photos_in(clusters[0].id)[0]
    first.move_photos([photo.id], clusters[2].id)
    first.toggle_lock()  # the current cluster after the move: the one the photo came from
    expected = [(c.name, c.size, c.locked) for c in first.cluster_model.clusters()]
    first.close()
    assert first.catalog is None  # closed cleanly

    second = make_window()
    assert [(c.name, c.size, c.locked) for c in second.cluster_model.clusters()] == expected
    assert second.folders == [generated_photos.resolve()]  # the folder list came back too
    assert second.undo_action.isEnabled()  # and the undo history


def test_deep_method_with_smoke_params_then_merge_and_split(qtbot, window, generated_photos, dialogs):
    run_job(qtbot, window, lambda: window.add_folders([generated_photos]))
    assert train(qtbot, window, "ccnn", 3, method_class("ccnn").smoke_params(), timeout_ms=120_000) == ("train", "done")
    clusters = window.cluster_model.clusters()
    assert 1 <= len(clusters) <= 3 and sum(c.size for c in clusters) == 3 * PER_COLOUR
    assert window.catalog.runs()[-1].method == "ccnn"

    # merge everything into one cluster, then split it into 3 with k-means: the colours come apart again
    if len(clusters) > 1:
        window.cluster_view.selectAll()
        assert window.merge_selected()
    merged = window.cluster_model.clusters()
    assert len(merged) == 1 and merged[0].size == 3 * PER_COLOUR
    assert run_job(qtbot, window, lambda: window.split_cluster(merged[0].id, 3)) == ("split", "done")
    parts = window.cluster_model.clusters()
    assert len(parts) == 3
    assert sorted(len({colour_of(p.path) for p in window.catalog.photos_in(c.id)}) for c in parts) == [1, 1, 1]
    window.undo()  # undo the split: one cluster again
    assert len(window.cluster_model.clusters()) == 1
    assert not dialogs.shown, dialogs.shown


def test_whole_flow_on_photos_sample(qtbot, window, photos_sample, tmp_path, dialogs):
    assert run_job(qtbot, window, lambda: window.add_folders([photos_sample]), 60_000) == ("scan", "done")
    assert window.scan_summary_label.text().startswith("200 photos, 0 skipped")
    assert train(qtbot, window, "kmeans", 5, {"n_init": 1, "features": "hog"}, 120_000) == ("train", "done")
    clusters = window.cluster_model.clusters()
    assert len(clusters) == 5 and sum(c.size for c in clusters) == 200

    window.rename_cluster(clusters[0].id, "Flowers A")
    window.select_cluster(clusters[0].id)
    window.least_confident_box.setChecked(True)
    confidences = [window.photo_model.photo(r).confidence for r in range(window.photo_model.rowCount())]
    assert confidences == sorted(confidences)  # least confident first
    moved = window.photo_model.photo(0)
    mime = window.photo_model.mimeData([window.photo_model.index(0)])
    window.cluster_model.dropMimeData(mime, Qt.DropAction.CopyAction, -1, -1, window.cluster_model.index(1))
    assert window.catalog.photo(moved.id).cluster_id == clusters[1].id
    window.undo()
    assert window.catalog.photo(moved.id).cluster_id == clusters[0].id

    dialog = window.open_export_dialog()
    destination = tmp_path / "sorted flowers"
    dialog.destination_edit.setText(str(destination))
    with qtbot.waitSignal(dialog.export_finished, timeout=60_000):
        dialog.start_export()
    exported = [p for p in destination.rglob("*.jpg") if ".photocluster-export" not in p.parts]
    assert len(exported) == 200
    assert len(list((destination / "Flowers A").iterdir())) == clusters[0].size
    originals = {p.name: p for p in photos_sample.rglob("*.jpg")}
    for copy in exported[:40]:
        assert filecmp.cmp(copy, originals[copy.name], shallow=False)
    assert not dialogs.shown, dialogs.shown
