"""photocluster: cluster a photo library with deep clustering methods.

The package is a Qt-free core (everything except :mod:`photocluster.gui`) that the command line and
the desktop app drive in the same way.
"""

__version__ = "0.1.0"
