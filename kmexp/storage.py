"""Entry point: `python -m kmexp.storage` runs :mod:`kmexp.reporting.storage`."""

import sys

from kmexp.reporting.storage import main

if __name__ == "__main__":
    sys.exit(main())
