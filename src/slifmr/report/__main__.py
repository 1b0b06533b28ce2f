"""``python -m slifmr.report``: see :mod:`slifmr.report.cli`."""

import sys

from slifmr.report.cli import main

sys.exit(main())
