"""The desktop app (PySide6). The only package that imports Qt; it drives the same core objects as the CLI.

Start it with ``photocluster-gui`` or :func:`photocluster.gui.app.main`.
"""
