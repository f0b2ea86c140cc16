"""Entry point: `python -m kmexp.results` runs :mod:`kmexp.reporting.results`."""

import sys

from kmexp.reporting.results import main

if __name__ == "__main__":
    sys.exit(main())
