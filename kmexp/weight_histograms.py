"""Entry point: `python -m kmexp.weight_histograms` runs :mod:`kmexp.reporting.weight_histograms`."""

import sys

from kmexp.reporting.weight_histograms import main

if __name__ == "__main__":
    sys.exit(main())
