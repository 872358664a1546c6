"""Start the desktop app: ``photocluster-gui`` (gui script), ``photocluster`` with a display, or :func:`main`.

The app uses Qt's Fusion style with a light or a dark palette that follows the system's colour scheme
(``QStyleHints.colorScheme``, Qt ≥ 6.5) and changes with it while running. ``PHOTOCLUSTER_THEME=light|dark``
forces one (screenshots, or a desktop that reports no scheme).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QIcon, QPalette
from PySide6.QtWidgets import QApplication, QStyleFactory

#: resources/ at the repository root (icons, .desktop entry); in a PyInstaller bundle, next to the program.
RESOURCES = Path(getattr(sys, "_MEIPASS", Path(__file__).resolve().parents[2])) / "resources"


def app_icon() -> QIcon:
    """The app icon (SVG for any size, PNG as a fallback where the SVG plugin is missing)."""
    icon = QIcon()
    for name in ("photocluster.svg", "photocluster.png"):
        path = RESOURCES / name
        if path.exists():
            icon.addFile(str(path))
    return icon


def dark_palette() -> QPalette:
    """A dark palette for the Fusion style (Qt ships only the light one)."""
    palette = QPalette()
    window, base, text = QColor(37, 37, 40), QColor(27, 27, 30), QColor(225, 225, 228)
    highlight = QColor(64, 128, 220)
    palette.setColor(QPalette.ColorRole.Window, window)
    palette.setColor(QPalette.ColorRole.WindowText, text)
    palette.setColor(QPalette.ColorRole.Base, base)
    palette.setColor(QPalette.ColorRole.AlternateBase, window)
    palette.setColor(QPalette.ColorRole.ToolTipBase, QColor(50, 50, 54))
    palette.setColor(QPalette.ColorRole.ToolTipText, text)
    palette.setColor(QPalette.ColorRole.PlaceholderText, QColor(140, 140, 145))
    palette.setColor(QPalette.ColorRole.Text, text)
    palette.setColor(QPalette.ColorRole.Button, QColor(48, 48, 52))
    palette.setColor(QPalette.ColorRole.ButtonText, text)
    palette.setColor(QPalette.ColorRole.BrightText, QColor(255, 90, 90))
    palette.setColor(QPalette.ColorRole.Link, QColor(110, 165, 240))
    palette.setColor(QPalette.ColorRole.Highlight, highlight)
    palette.setColor(QPalette.ColorRole.HighlightedText, QColor(255, 255, 255))
    palette.setColor(QPalette.ColorRole.Light, QColor(70, 70, 75))
    palette.setColor(QPalette.ColorRole.Midlight, QColor(58, 58, 62))
    palette.setColor(QPalette.ColorRole.Mid, QColor(45, 45, 48))
    palette.setColor(QPalette.ColorRole.Dark, QColor(20, 20, 22))
    palette.setColor(QPalette.ColorRole.Shadow, QColor(0, 0, 0))
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.WindowText, QPalette.ColorRole.ButtonText):
        palette.setColor(QPalette.ColorGroup.Disabled, role, QColor(120, 120, 125))
    return palette


def system_prefers_dark() -> bool:
    """True when the user forced the dark theme or the system reports a dark colour scheme."""
    forced = os.environ.get("PHOTOCLUSTER_THEME", "").lower()
    if forced in ("dark", "light"):
        return forced == "dark"
    hints = QGuiApplication.styleHints()
    scheme = getattr(hints, "colorScheme", None)  # Qt >= 6.5
    return scheme is not None and scheme() == Qt.ColorScheme.Dark


def apply_theme(app: QApplication, dark: bool | None = None) -> bool:
    """Set the Fusion style with a light or dark palette; ``dark=None`` follows the system. Returns dark."""
    if dark is None:
        dark = system_prefers_dark()
    style = QStyleFactory.create("Fusion")
    if style is not None:
        app.setStyle(style)
    app.setPalette(dark_palette() if dark else app.style().standardPalette())
    app.setProperty("photocluster_dark", dark)
    return dark


def follow_system_theme(app: QApplication) -> None:
    """Re-apply the theme whenever the system switches between light and dark."""
    hints = QGuiApplication.styleHints()
    signal = getattr(hints, "colorSchemeChanged", None)
    if signal is not None:
        signal.connect(lambda _scheme: apply_theme(app))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="photocluster-gui", description="The photocluster desktop app.")
    parser.add_argument("folders", nargs="*", help="photo folders to add and scan at start")
    return parser


def create_main_window(argv: Sequence[str] | None = None):
    """Create (or reuse) the QApplication, apply the theme and show the main window; returns (app, window).

    Parameters
    ----------
    argv:
        Arguments after the program name (photo folders to open); ``None`` means ``sys.argv[1:]``.
    """
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    QApplication.setApplicationName("photocluster")
    QApplication.setApplicationDisplayName("photocluster")
    QApplication.setOrganizationName("photocluster")
    QGuiApplication.setDesktopFileName("photocluster")  # matches resources/photocluster.desktop (Wayland icon)
    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "photocluster"])
    app.setWindowIcon(app_icon())
    apply_theme(app)
    follow_system_theme(app)

    from photocluster.gui.jobs import warm_up_imports
    from photocluster.gui.main_window import MainWindow

    warm_up_imports()  # before the window shows: see WARM_UP_MODULES for the stall this avoids
    window = MainWindow()
    window.show()
    if args.folders:
        window.add_folders([Path(f) for f in args.folders])
    return app, window


def main(argv: Sequence[str] | None = None) -> int:
    """Open the main window and run the Qt event loop; returns the exit code (see :func:`create_main_window`).

    A reason the app cannot start at all (its data folder cannot be written: ``PHOTOCLUSTER_HOME`` on a
    read-only disk) is the command line's one line, on stderr and in a dialog, and exit code 2 — no traceback.
    """
    from photocluster.errors import UsageError

    try:
        app, _window = create_main_window(argv)
    except UsageError as exc:
        print(f"photocluster: error: {exc}", file=sys.stderr)
        if QApplication.instance() is not None:
            from photocluster.gui.dialogs import show_error

            show_error(None, "photocluster cannot start", str(exc))
        return 2
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
