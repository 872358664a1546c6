"""Entry point of the PyInstaller bundle: the desktop app, with multiprocessing made frozen-safe.

Decoding photos runs in worker processes started with spawn/forkserver; in a frozen program those children
re-run this executable, and ``freeze_support()`` turns them into workers instead of second app windows.
"""

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()
    from photocluster.gui.app import main

    sys.exit(main())
