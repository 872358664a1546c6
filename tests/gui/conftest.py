"""Fixtures for the desktop-app tests: offscreen Qt, generated photo folders, fake methods, mocked dialogs.

Qt must be told to run offscreen before it is imported anywhere (bootstrap.py sets it too), so this module
sets ``QT_QPA_PLATFORM`` at import time.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QSettings  # noqa: E402
from PySide6.QtWidgets import QMessageBox  # noqa: E402

from photocluster.methods import base  # noqa: E402

from guitools import (  # noqa: E402
    BrokenMethod,
    CollapsingMethod,
    CrashingMethod,
    SlowMethod,
    StubbornMethod,
    UnpicklableErrorMethod,
    write_colour_photos,
)

@pytest.fixture
def generated_photos(tmp_path) -> Path:
    """24 photos in 3 colour groups, plus two files the scan must skip with a reason."""
    folder = tmp_path / "photos"
    write_colour_photos(folder)
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.png").write_text("this is not an image")
    return folder


class DialogRecorder:
    """Replaces modal dialogs: records every message box instead of blocking the test on it."""

    def __init__(self) -> None:
        self.shown: list[tuple[str, str]] = []  # (title, text) of each QMessageBox.exec
        self.questions: list[tuple[str, str]] = []
        self.details: list[str] = []  # the "Show Details" text of each message box (tracebacks)
        self.answer: QMessageBox.StandardButton = QMessageBox.StandardButton.Cancel

    def texts(self) -> list[str]:
        return [text for _, text in self.shown]


#: Qt's own QMessageBox.open, for the test that checks a warning really opens without blocking
REAL_MESSAGE_BOX_OPEN = QMessageBox.open


@pytest.fixture(autouse=True)
def dialogs(monkeypatch) -> DialogRecorder:
    recorder = DialogRecorder()

    def fake_exec(box: QMessageBox) -> int:
        recorder.shown.append((box.windowTitle(), box.text()))
        recorder.details.append(box.detailedText())
        return int(QMessageBox.StandardButton.Ok.value)

    def fake_question(parent, title, text, *args, **kwargs):
        recorder.questions.append((title, text))
        return recorder.answer

    def fake_open(box: QMessageBox) -> None:  # non-blocking boxes (warnings) are recorded the same way
        fake_exec(box)

    monkeypatch.setattr(QMessageBox, "exec", fake_exec)
    monkeypatch.setattr(QMessageBox, "open", fake_open)
    monkeypatch.setattr(QMessageBox, "question", staticmethod(fake_question))
    return recorder


# -- fake methods (defined in guitools, an importable module, because training runs in a child process
#    that must import them by name) -------------------------------------------------------------------
@pytest.fixture(autouse=True)
def fake_methods(monkeypatch) -> None:
    base._load_builtin_methods()
    for method in (SlowMethod, BrokenMethod, StubbornMethod, UnpicklableErrorMethod, CrashingMethod, CollapsingMethod):
        monkeypatch.setitem(base._REGISTRY, method.name, method)


@pytest.fixture
def make_window(qtbot, tmp_path):
    """Build main windows on a catalog and settings in tmp_path (a second call reopens the same session)."""
    from photocluster.gui.main_window import MainWindow
    from photocluster.library.catalog import Catalog

    windows = []

    def make() -> Any:
        window = MainWindow(
            catalog=Catalog(tmp_path / "catalog.sqlite3"),
            settings=QSettings(str(tmp_path / "gui.ini"), QSettings.Format.IniFormat),
        )
        window.show()  # not qtbot.addWidget: its teardown closes windows before a running job is stopped
        windows.append(window)
        return window

    yield make
    for window in windows:
        if window.busy:
            window.cancel_work()
            qtbot.waitUntil(lambda w=window: not w.busy, timeout=15_000)
        if window.catalog is not None:
            window.close()
        window.deleteLater()


@pytest.fixture
def window(make_window):
    return make_window()
