"""Render photocluster.svg to photocluster.png (256 px) for platforms and tools that need a bitmap icon.

Run from the repository root: ``.venv/bin/python resources/render_icon.py``. Uses Qt's SVG renderer, so
the PNG is exactly the SVG; the PNG is committed so packaging does not need to run this.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtGui import QGuiApplication, QImage, QPainter  # noqa: E402
from PySide6.QtSvg import QSvgRenderer  # noqa: E402

HERE = Path(__file__).resolve().parent


def render(size: int = 256) -> Path:
    renderer = QSvgRenderer(str(HERE / "photocluster.svg"))
    if not renderer.isValid():
        raise SystemExit("photocluster.svg could not be read")
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    target = HERE / "photocluster.png"
    image.save(str(target))
    return target


if __name__ == "__main__":
    app = QGuiApplication(sys.argv)
    print(render())
