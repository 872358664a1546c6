"""``python -m photocluster`` — same as the ``photocluster`` console script."""

from photocluster.cli import main

raise SystemExit(main())
