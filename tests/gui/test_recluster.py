"""Re-cluster in the app (issue 18): locked groups keep their photos and names, moved photos stay where the
person put them, photos a rescan finds are placed, and a summary says how many photos changed group."""

from __future__ import annotations

from pathlib import Path

import pytest

from guitools import COLOURS, PER_COLOUR, run_job, write_colour_photos

pytestmark = pytest.mark.gui


def colour_of(path) -> str:
    return Path(path).name.split("_")[0]


def train_three(qtbot, window) -> None:
    """k-means (one restart, k = 3) on the three colour groups: each cluster is one colour."""
    window.method_picker.set_method("kmeans")
    window.method_picker.set_param_values({"n_init": 1})
    window.method_picker.set_n_clusters(3)
    assert run_job(qtbot, window, window.start_training, 90_000) == ("train", "done")


def cluster_of_colour(window) -> dict[str, int]:
    """The cluster id holding each colour's photos (the clusters are pure after train_three)."""
    found: dict[str, int] = {}
    for cluster in window.cluster_model.clusters():
        colours = {colour_of(p.path) for p in window.catalog.photos_in(cluster.id)}
        assert len(colours) == 1, colours
        found[colours.pop()] = cluster.id
    assert sorted(found) == sorted(COLOURS)
    return found


def photo_ids(window, cluster_id: int) -> set[int]:
    return {p.id for p in window.catalog.photos_in(cluster_id)}


def correct(window) -> tuple[int, set[int], int, int]:
    """The person's corrections: a red photo moved into the green group, the red group locked and renamed
    "Roses", a green photo moved into the blue group. Returns (locked id, its photos, moved photo, its target)."""
    by_colour = cluster_of_colour(window)
    red, green, blue = by_colour["red"], by_colour["green"], by_colour["blue"]
    assert window.move_photos([window.catalog.photos_in(red)[-1].id], green)
    window.select_cluster(red)
    assert window.toggle_lock()
    assert window.rename_cluster(red, "Roses")
    moved = window.catalog.photos_in(green)[0].id  # a green photo the model was sure of
    assert window.move_photos([moved], blue)
    locked_photos = photo_ids(window, red)
    assert len(locked_photos) == PER_COLOUR - 1
    info = window.catalog.cluster(red)
    assert info.locked and info.name == "Roses"
    return red, locked_photos, moved, blue


def recluster(qtbot, window, timeout_ms: int = 90_000) -> tuple[str, str]:
    """Press Re-cluster and wait for its job; while it runs, neither Train nor Re-cluster can be pressed."""
    assert window.recluster_button.isEnabled() and window.recluster_action.isEnabled()
    with qtbot.waitSignal(window.job_finished, timeout=timeout_ms) as blocker:
        window.recluster_button.click()
        assert window.busy
        assert not window.recluster_button.isEnabled() and not window.recluster_action.isEnabled()
        assert not window.train_button.isEnabled() and window.cancel_button.isEnabled()
    assert not window.busy and window.recluster_button.isEnabled() and window.train_button.isEnabled()
    return tuple(blocker.args)  # type: ignore[return-value]


def log_text(window) -> str:
    return window.log_panel.toPlainText()


def test_recluster_keeps_the_locked_group_and_the_moved_photo_and_says_what_changed(
        qtbot, window, generated_photos, dialogs):
    assert not window.recluster_button.isEnabled()  # nothing to sort again yet
    assert run_job(qtbot, window, lambda: window.add_folders([generated_photos])) == ("scan", "done")
    assert not window.recluster_button.isEnabled()  # scanned, but never sorted
    assert "learns from the photos you moved" in window.train_button.toolTip()
    assert window.recluster_button.toolTip().startswith("Sort again, keeping your locked groups")
    train_three(qtbot, window)
    assert window.recluster_button.isEnabled()

    locked, locked_photos, moved, target = correct(window)
    runs_before = len(window.catalog.runs())

    assert recluster(qtbot, window) == ("re-cluster", "done")
    assert not dialogs.shown, dialogs.shown
    assert len(window.catalog.runs()) == runs_before + 1
    assert window.catalog.runs()[-1].method == "kmeans"
    # the locked group: the same cluster, exactly its photos, its name, still locked
    info = window.catalog.cluster(locked)
    assert (info.name, info.locked) == ("Roses", True)
    assert photo_ids(window, locked) == locked_photos
    assert any(c.id == locked and c.name == "Roses" and c.locked for c in window.cluster_model.clusters())
    # the moved photo stays where it was put; every photo is in a group
    assert window.catalog.photo(moved).cluster_id == target
    assert window.catalog.assigned_photo_count() == 3 * PER_COLOUR
    # the summary, in the status bar, the progress line and the log: the colours are far apart, so the
    # corrections hold and nothing else moves (24 photos sorted before, none new)
    message = window.statusBar().currentMessage()
    assert message.startswith("Re-clustered: 0 of 24 photos changed group; "), message
    assert "your corrections (1 locked cluster and 2 " in message, message  # the 2 moves
    assert "new photo" not in message
    assert window.progress_panel.detail_label.text() == message
    assert "re-clustered: 0 of 24 photos changed group" in log_text(window)
    # the scan ran again first, as the log says
    assert log_text(window).count("scan: 24 photos") == 2


def test_recluster_places_photos_a_rescan_found_and_the_corrections_hold(
        qtbot, window, generated_photos, dialogs):
    assert run_job(qtbot, window, lambda: window.add_folders([generated_photos])) == ("scan", "done")
    train_three(qtbot, window)
    locked, locked_photos, moved, target = correct(window)
    by_colour = cluster_of_colour_unlocked(window, locked)

    # three new photos of each colour appear in a folder inside the library
    new_files = write_colour_photos(generated_photos / "later", per_colour=3, seed=1)
    assert recluster(qtbot, window) == ("re-cluster", "done")  # Re-cluster scans the folders again first
    assert not dialogs.shown, dialogs.shown
    assert window.scan_report is not None and len(window.scan_report.photos) == 3 * PER_COLOUR + 9

    # the corrections hold: the locked group exactly as it was, the moved photo where it was put
    info = window.catalog.cluster(locked)
    assert (info.name, info.locked) == ("Roses", True)
    assert photo_ids(window, locked) == locked_photos
    assert window.catalog.photo(moved).cluster_id == target
    # every new photo is placed: the new green and blue ones with their colour's group; the new red ones
    # together, in a group of their own — a locked group is kept exactly as it is (the catalog's rule), so
    # it takes no new photos either
    id_of_path = {Path(p.path).resolve(): p for p in window.catalog.photos()}
    placed = {colour: {id_of_path[p.resolve()].cluster_id for p in paths} for colour, paths in new_files.items()}
    assert placed["green"] == {by_colour["green"]} and placed["blue"] == {by_colour["blue"]}, placed
    assert len(placed["red"]) == 1 and placed["red"].isdisjoint({locked, by_colour["green"], by_colour["blue"], None})
    assert window.catalog.assigned_photo_count() == 3 * PER_COLOUR + 9
    message = window.statusBar().currentMessage()
    assert message.startswith("Re-clustered: 0 of 24 photos changed group; 9 new photos placed"), message
    assert "9 new photos placed" in log_text(window)


def cluster_of_colour_unlocked(window, locked: int) -> dict[str, int]:
    """The cluster of each colour other than the locked one's, by majority (moved photos aside)."""
    found = {}
    for cluster in window.cluster_model.clusters():
        if cluster.id == locked:
            continue
        colours = [colour_of(p.path) for p in window.catalog.photos_in(cluster.id)]
        found[max(set(colours), key=colours.count)] = cluster.id
    return found
