"""Entry point: `python -m kmexp.reproduce` runs :mod:`kmexp.reporting.reproduce`."""

import sys

from kmexp.reporting.reproduce import entry as main

if __name__ == "__main__":
    sys.exit(main())
