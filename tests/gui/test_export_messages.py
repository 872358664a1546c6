"""Issue 20 in the app: the export dialog says what the folder mode says.

A photo whose file name is not valid UTF-8 is exported (the plan and the summary shown with U+FFFD, the
same lines the command prints), and a destination another export is running into is refused with the
command's very sentence ("the destination … is busy (another export is running into it, …)").
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from guitools import write_colour_photos
from photocluster.cli import main

pytestmark = pytest.mark.skipif(os.name != "posix", reason="bytes file names and flock are POSIX")

FAST = ["-p", "n_init=1", "-p", "features=hog", "-q"]


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A catalog of this test's own: the dialog exports what the command recorded there."""
    monkeypatch.setenv("PHOTOCLUSTER_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def photos(tmp_path) -> Path:
    folder = tmp_path / "photos"
    written = write_colour_photos(folder, per_colour=3)
    # One photo with a name from an old camera's disk: Latin-1 bytes, not valid UTF-8.
    odd = folder / os.fsdecode(b"caf\xe9-red.jpg")
    written["red"][0].rename(odd)
    return folder


def _dialog(qtbot, destination: Path):
    from photocluster.gui.dialogs import ExportDialog
    from photocluster.library.catalog import Catalog

    catalog = Catalog()

    def items():
        return catalog.export_items()

    dialog = ExportDialog(items, default_destination=str(destination))
    qtbot.addWidget(dialog)
    dialog.finished.connect(catalog.close)
    return dialog, catalog


def test_a_non_utf8_file_name_is_exported_with_the_commands_plan_and_summary(qtbot, home, photos, tmp_path, capsys):
    cli_dest, app_dest = tmp_path / "by-command", tmp_path / "by-app"
    argv = ["--headless", "--folder", str(photos), "-k", "3", "--export", str(cli_dest), *FAST]
    assert main([*argv, "--dry-run"]) == 0
    cli_plan = [line for line in capsys.readouterr().out.splitlines() if line.startswith("copy ")]
    assert any(f"{photos}/caf\ufffd-red.jpg -> " in line for line in cli_plan)

    dialog, catalog = _dialog(qtbot, app_dest)
    assert dialog.preview()
    app_plan = dialog.plan_view.toPlainText().splitlines()
    # The same operations, line for line (the app's destination in place of the command's).
    assert sorted(app_plan) == sorted(line.replace(str(cli_dest), str(app_dest)) for line in cli_plan)

    with qtbot.waitSignal(dialog.export_finished, timeout=30_000) as finished:
        assert dialog.start_export()
    report = finished.args[0]
    assert report.ok and len(report.exported) == 9
    assert (app_dest / "Cluster 1").exists() or any(app_dest.iterdir())
    assert "caf\ufffd-red.jpg" in {p.name for p in app_dest.rglob("*.jpg")}
    assert main(argv) == 0
    cli_summary = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("export: "))
    assert dialog.status_label.text() == "Export finished.\n" + cli_summary[len("export: "):].replace(
        str(cli_dest), str(app_dest))


def test_a_busy_destination_gets_the_commands_sentence(qtbot, home, photos, tmp_path, capsys, dialogs):
    from photocluster.library.export import DestinationLock

    dest = tmp_path / "library"
    assert main(["--headless", "--folder", str(photos), "-k", "3", *FAST]) == 0  # clusters in the catalog
    capsys.readouterr()
    other_export = DestinationLock(dest)  # another export running into it (a command, another window)
    try:
        assert main(["--headless", "--folder", str(photos), "-k", "3", "--export", str(dest), *FAST]) == 2
        [cli_line] = [line for line in capsys.readouterr().err.splitlines() if line.startswith("photocluster: error: ")]
        sentence = cli_line[len("photocluster: error: "):]
        assert sentence.startswith(f"the destination {dest} is busy (another export is running into it, process ")

        dialog, catalog = _dialog(qtbot, dest)
        with qtbot.waitSignal(dialog.export_failed, timeout=30_000) as failed:
            assert dialog.start_export()
        qtbot.waitUntil(lambda: not dialog.exporting, timeout=10_000)
    finally:
        other_export.release()
    assert str(failed.args[0]) == sentence
    assert dialog.status_label.text() == f"Export failed: {sentence}"
    assert ("Export failed", f"Export failed: {sentence}") in dialogs.shown
    assert not [p for p in dest.rglob("*.jpg")]  # nothing written
    # Once the other export is done, the same dialog exports.
    with qtbot.waitSignal(dialog.export_finished, timeout=30_000):
        assert dialog.start_export()
    assert len([p for p in dest.rglob("*.jpg") if ".photocluster-export" not in p.parts]) == 9


def test_the_app_leaves_its_export_destination_out_of_the_scan(qtbot, window, tmp_path):
    from guitools import run_job

    folder = tmp_path / "library"
    write_colour_photos(folder, per_colour=2)
    exported = folder / "sorted" / "Cluster 1"
    write_colour_photos(exported, per_colour=2)  # what an earlier export put inside the scanned folder
    window.settings.setValue("export_destination", str(folder / "sorted"))
    assert run_job(qtbot, window, lambda: window.add_folders([folder])) == ("scan", "done")
    assert len(window.scan_report.photos) == 6
    assert window.scan_report.excluded == [folder / "sorted"]
    assert "1 folder(s) excluded" in window.scan_summary_label.text()


def test_an_unwritable_data_folder_stops_the_app_with_the_commands_line(tmp_path, monkeypatch, capsys, dialogs):
    from photocluster.gui import app

    (tmp_path / "a-file").write_text("in the way")
    monkeypatch.setenv("PHOTOCLUSTER_HOME", str(tmp_path / "a-file" / "home"))
    assert app.main([]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("photocluster: error: cannot write photocluster's ") and "PHOTOCLUSTER_HOME" in line
    assert dialogs.shown == [("photocluster cannot start",
                              "photocluster cannot start: " + line[len("photocluster: error: "):])]
