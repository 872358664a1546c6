"""Edits of large clusters are written by a helper process, in order, and give the catalog what the
synchronous edit gave: the same rows, the same undo and redo, the same session on reopening.

The catalogs are generated (21,000 photo records, no image files): large enough that edits go to the
helper (over ``SYNC_EDIT_LIMIT`` photos) and the cluster list is read in the background (over
``SYNC_CLUSTER_LIST_LIMIT``), small enough to build in a couple of seconds.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import guitools
from photocluster.gui import main_window
from photocluster.gui.edits import SYNC_EDIT_LIMIT
from photocluster.library.catalog import Catalog

N_PHOTOS = 21_000  # over SYNC_CLUSTER_LIST_LIMIT (20,000)


def build_catalog(path: Path) -> tuple[list[int], int, int]:
    """Two clusters (even / odd photos, 10,500 each) and an empty one; returns (photo ids, a, b)."""
    catalog = Catalog(path)
    try:
        ids = catalog.add_photos({"path": f"/nowhere/photo_{i:06d}.jpg", "content_hash": f"{i:064x}"}
                                 for i in range(N_PHOTOS))
        run = catalog.start_run("synthetic", {})
        catalog.record_result(run, ids, np.arange(N_PHOTOS) % 2, np.linspace(0, 1, N_PHOTOS))
        a, b = [c.id for c in catalog.clusters()]
    finally:
        catalog.close()
    return ids, a, b


def state(catalog: Catalog) -> tuple[list, dict]:
    """Everything an edit can change: the current clusters and every photo's assignment."""
    clusters = [(c.id, c.name, c.size, c.locked) for c in catalog.clusters()]
    photos = {p.id: (p.cluster_id, p.confidence, p.source) for p in catalog.photos()}
    return clusters, photos


def same_state(window_catalog: Catalog, reference: Catalog) -> bool:
    return state(window_catalog) == state(reference)


@pytest.fixture
def large(tmp_path, make_window, qtbot):
    """A window on a 21,000-photo catalog (its list read), and a reference catalog built the same way."""
    ids, a, b = build_catalog(tmp_path / "catalog.sqlite3")
    assert build_catalog(tmp_path / "reference.sqlite3") == (ids, a, b)
    reference = Catalog(tmp_path / "reference.sqlite3")
    window = make_window()
    qtbot.waitUntil(lambda: window.cluster_model.rowCount() == 2, timeout=30_000)
    yield window, reference, ids, a, b
    reference.close()


def saved(qtbot, window, action, timeout: int = 60_000) -> None:
    """Run an edit and wait until it is written and the window has re-read the clusters after it."""
    with qtbot.waitSignals([window.edits_saved, window.clusters_refreshed], order="strict", timeout=timeout):
        assert action() is not False


def forbid_gui_thread_writes(monkeypatch, catalog: Catalog) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("a large edit was written by the GUI thread's catalog connection")

    for name in ("move_photos", "merge", "split", "undo", "redo"):
        monkeypatch.setattr(catalog, name, refuse)


def test_moving_many_photos_is_written_in_the_background_and_matches_the_synchronous_edit(
        qtbot, large, monkeypatch):
    window, reference, ids, a, b = large
    before = state(reference)
    evens = ids[0:2 * 8000:2]  # 8,000 photos of cluster a
    assert len(evens) > SYNC_EDIT_LIMIT
    forbid_gui_thread_writes(monkeypatch, window.catalog)

    with qtbot.waitSignals([window.edits_saved, window.clusters_refreshed], order="strict", timeout=60_000):
        assert window.move_photos(evens, b)
        # asked for, not written yet: the window says so and does not pretend the lists are final
        assert window.edits.pending == 1
        assert window.saving_label.isVisibleTo(window) and "move 8000" in window.saving_label.text()
        assert not window.train_action.isEnabled() and not window.split_action.isEnabled()
    assert not window.saving_label.isVisibleTo(window) and window.train_action.isEnabled()

    reference.move_photos(evens, b)
    assert same_state(window.catalog, reference)
    assert {c.id: c.size for c in window.cluster_model.clusters()} == {a: 10_500 - 8000, b: 10_500 + 8000}

    saved(qtbot, window, window.undo)
    assert state(window.catalog) == before  # undo is exact
    saved(qtbot, window, window.redo)
    assert same_state(window.catalog, reference)  # and so is redo
    assert window.catalog.history(1)[0].description == reference.history(1)[0].description


def test_merge_and_split_of_a_large_cluster_match_the_synchronous_edits_and_undo_exactly(
        qtbot, large, monkeypatch):
    window, reference, ids, a, b = large
    from photocluster.gui import jobs

    # k-means needs image files; labels suffice. A module-level function, so that the split's child process
    # (a large cluster is split in one) can import it.
    monkeypatch.setattr(jobs, "split_job", guitools.alternating_split)
    monkeypatch.setattr(main_window, "SYNC_GRID_LOAD_LIMIT", 100)  # the split reads the cluster in a helper
    initial = state(reference)
    forbid_gui_thread_writes(monkeypatch, window.catalog)

    saved(qtbot, window, lambda: window.merge_clusters([a, b], into=b))
    reference.merge([a, b], into=b)
    merged = state(reference)
    assert same_state(window.catalog, reference)
    assert [(c.id, c.size) for c in window.cluster_model.clusters()] == [(b, N_PHOTOS)]

    seen = []
    show = window._on_progress
    monkeypatch.setattr(window, "_on_progress", lambda event: (seen.append(event), show(event)))
    with qtbot.waitSignals([window.job_finished, window.edits_saved, window.clusters_refreshed],
                           order="strict", timeout=60_000):
        assert window.split_cluster(b, 3)
    split_pids = {e.metrics["pid"] for e in seen if e.stage == "split" and "pid" in e.metrics}
    assert split_pids and os.getpid() not in split_pids  # a large cluster is clustered in a child process
    order = [p.id for p in reference.photos_in(b)]  # the order the job reads them in
    reference.split(b, order, np.arange(len(order)) % 3)
    assert same_state(window.catalog, reference)
    assert sorted(c.size for c in window.cluster_model.clusters()) == [7000, 7000, 7000]

    saved(qtbot, window, window.undo)
    assert state(window.catalog) == merged
    saved(qtbot, window, window.undo)
    assert state(window.catalog) == initial
    saved(qtbot, window, window.redo)
    assert state(window.catalog) == merged
    saved(qtbot, window, window.redo)
    assert same_state(window.catalog, reference)


def test_an_edit_asked_for_while_another_is_being_written_is_applied_after_it(qtbot, large):
    window, reference, ids, a, b = large
    saved(qtbot, window, lambda: window.rename_cluster(a, "Evens"))  # small: written at once
    assert window.catalog.cluster(a).name == "Evens"
    renamed = state(window.catalog)
    evens = ids[0:2 * 5000:2]

    with qtbot.waitSignals([window.edits_saved, window.clusters_refreshed], order="strict", timeout=60_000):
        assert window.move_photos(evens, b)
        assert window.undo()  # Ctrl+Z at once: must undo the move, not the rename before it
        assert window.rename_cluster(b, "Odds")  # small, but queued behind the others
        assert window.edits.pending == 3
    assert window.catalog.cluster(a).name == "Evens"
    assert window.catalog.cluster(b).name == "Odds"
    clusters, photos = state(window.catalog)
    assert photos == renamed[1]  # the move was undone exactly
    assert [h.description for h in window.catalog.history(3)] == [
        "rename “Cluster 2” to “Odds”", "move 5000 photos to “Cluster 2”", "rename “Cluster 1” to “Evens”"]
    assert [h.state for h in window.catalog.history(3)] == ["done", "discarded", "done"]


def test_a_refused_edit_drops_the_ones_queued_after_it_and_says_so(qtbot, large, dialogs):
    window, reference, ids, a, b = large
    with qtbot.waitSignals([window.edits_saved, window.clusters_refreshed], order="strict", timeout=60_000):
        window.merge_clusters([a, b], into=b)  # a leaves the current clusters
        window.merge_clusters([a, b], into=a)  # refused by the catalog: a is gone by then
        window.rename_cluster(b, "never")
    assert dialogs.texts() and "no current cluster" in dialogs.texts()[-1]
    assert "rename" in dialogs.texts()[-1]  # the dropped edit is named
    assert [(c.id, c.name, c.size) for c in window.catalog.clusters()] == [(b, "Cluster 2", N_PHOTOS)]
    assert not window.edits.pending and window.undo_action.isEnabled()


def test_closing_while_an_edit_is_written_waits_for_it_and_reopening_restores_the_session(
        qtbot, large, make_window):
    window, reference, ids, a, b = large
    odds = ids[1:2 * 6000:2]
    assert window.move_photos(odds, a)
    window.close()  # the edit must not be lost: the window stays until it is written
    assert window.catalog is not None and window.edits.pending
    qtbot.waitUntil(lambda: window.catalog is None, timeout=60_000)
    reference.move_photos(odds, a)
    expected = [(c.id, c.name, c.size, c.locked) for c in reference.clusters()]

    second = make_window()
    # a large catalog: the window shows at once and reads its cluster list in the background
    assert second.cluster_model.rowCount() == 0 and "reading" in second.clusters_label.text()
    qtbot.waitUntil(lambda: second.cluster_model.rowCount() == 2, timeout=30_000)
    assert [(c.id, c.name, c.size, c.locked) for c in second.cluster_model.clusters()] == expected
    assert same_state(second.catalog, reference)
    assert second.undo_action.isEnabled()
    saved(qtbot, second, second.undo)  # the undo history came back too
    assert [c.size for c in second.catalog.clusters()] == [10_500, 10_500]
